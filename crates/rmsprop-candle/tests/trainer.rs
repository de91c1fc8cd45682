//! The `Trainer`: construction by name, in-place steps, refused steps, dtypes and devices.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Module, VarBuilder, VarMap};
use rmsprop::{Flavor, NonFinitePolicy, StepOutcome};
use rmsprop_candle::{Error, Trainer};

fn model(dtype: DType) -> (VarMap, candle_nn::Linear) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu);
    let net = candle_nn::linear(3, 1, vb.pp("fc")).unwrap();
    (varmap, net)
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap()
}

/// One step of PyTorch's RMSprop by hand, rounded as its CPU kernels round it:
/// `s = fma((1-α) g, g, α·0)`, `x += (-lr g) / (sqrt(s) + eps)`.
#[test]
fn a_step_updates_the_variables_in_place_as_torch_rmsprop_would() {
    let x = Var::new(&[1.0f64, -2.0, 3.0], &Device::Cpu).unwrap();
    let mut trainer = Trainer::from_named([("x".to_string(), x.clone())], Flavor::PyTorch.rmsprop()).unwrap();
    let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap(); // g = 2x
    assert_eq!(trainer.backward_step(&loss).unwrap(), StepOutcome::Applied);
    let one_minus_alpha = 1.0 - 0.99;
    let square = |g: f64| (one_minus_alpha * g) * g;
    let expected: Vec<f64> = [1.0f64, -2.0, 3.0]
        .iter()
        .map(|&x0| {
            let g = 2.0 * x0;
            x0 + (-0.01 * g) / (square(g).sqrt() + 1e-8)
        })
        .collect();
    assert_eq!(values(x.as_tensor()), expected);
    assert_eq!(trainer.state("x", "square_avg").unwrap(), [2.0, -4.0, 6.0].map(square));
}

#[test]
fn each_frameworks_names_build_the_same_optimizer() {
    let (varmap, _) = model(DType::F32);
    for (name, hyper) in [
        ("mxnet.rmsprop", vec![("learning_rate", 0.01), ("gamma1", 0.9)]),
        ("pytorch.rmsprop", vec![("lr", 0.01), ("alpha", 0.9)]),
        ("optax.rmsprop", vec![("learning_rate", 0.01), ("decay", 0.9)]),
        ("keras.rmsprop", vec![("learning_rate", 0.01), ("rho", 0.9)]),
    ] {
        let t = Trainer::by_name(&varmap, name, hyper).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(t.learning_rate(), 0.01, "{name}");
    }
    let unknown = Trainer::by_name(&varmap, "pytorch.rmsprop", [("gamma9", 0.9)]).unwrap_err();
    assert!(unknown.to_string().contains("gamma9"), "{unknown}");
    assert!(Trainer::by_name(&varmap, "nesterov.rmsprop", [("lr", 0.1)]).is_err());
}

#[test]
fn a_refused_step_changes_no_variable_and_no_state() {
    let (varmap, net) = model(DType::F32);
    let mut trainer = Trainer::new(&varmap, Flavor::PyTorch.rmsprop()).unwrap();
    let x = Tensor::new(&[[1.0f32, 2.0, 3.0]], &Device::Cpu).unwrap();
    trainer.backward_step(&net.forward(&x).unwrap().sum_all().unwrap()).unwrap();
    let before: Vec<Vec<f64>> = varmap.all_vars().iter().map(|v| values(v.as_tensor())).collect();
    let state = trainer.state("fc.weight", "square_avg").unwrap();
    // a gradient whose square overflows f32
    let huge = Tensor::new(&[[1e25f32, 0.0, 0.0]], &Device::Cpu).unwrap();
    let e = trainer.backward_step(&net.forward(&huge).unwrap().sum_all().unwrap()).unwrap_err();
    assert!(matches!(e, Error::Optimizer(rmsprop::Error::NonFiniteResult { .. })), "{e}");
    let after: Vec<Vec<f64>> = varmap.all_vars().iter().map(|v| values(v.as_tensor())).collect();
    assert_eq!(before, after);
    assert_eq!(trainer.state("fc.weight", "square_avg").unwrap(), state);
    assert_eq!(trainer.step_count(), 1);
    // a NaN gradient, skipped
    let mut trainer = trainer.with_nonfinite_policy(NonFinitePolicy::Skip);
    let nan = Tensor::new(&[[f32::NAN, 0.0, 0.0]], &Device::Cpu).unwrap();
    let outcome = trainer.backward_step(&net.forward(&nan).unwrap().sum_all().unwrap()).unwrap();
    assert_eq!((outcome, trainer.skipped_steps()), (StepOutcome::Skipped, 1));
}

#[test]
fn half_precision_variables_step_with_f32_state() {
    let (varmap, net) = model(DType::BF16);
    let mut trainer = Trainer::new(&varmap, Flavor::D2l.rmsprop()).unwrap();
    let before = values(varmap.data().lock().unwrap()["fc.weight"].as_tensor());
    let x = Tensor::new(&[[1.0f32, 2.0, 3.0]], &Device::Cpu).unwrap().to_dtype(DType::BF16).unwrap();
    trainer.backward_step(&net.forward(&x).unwrap().sum_all().unwrap()).unwrap();
    let after = values(varmap.data().lock().unwrap()["fc.weight"].as_tensor());
    assert!(before.iter().zip(&after).all(|(b, a)| a < b), "every weight moves against its gradient");
    assert_eq!(trainer.state("fc.weight", "square_avg").unwrap().len(), 3);
}

#[test]
fn a_model_the_trainer_cannot_step_is_an_error() {
    let a = Var::new(&[1.0f32], &Device::Cpu).unwrap();
    let b = Var::new(&[1.0f64], &Device::Cpu).unwrap();
    let mixed = Trainer::from_named([("a".into(), a.clone()), ("b".into(), b)], Flavor::D2l.rmsprop()).unwrap_err();
    assert!(matches!(mixed, Error::MixedDtypes { .. }), "{mixed}");
    let ints = Var::new(&[1u32], &Device::Cpu).unwrap();
    let e = Trainer::from_named([("i".into(), ints)], Flavor::D2l.rmsprop()).unwrap_err();
    assert!(matches!(e, Error::UnsupportedDtype { .. }), "{e}");
    assert!(matches!(Trainer::from_named([], Flavor::D2l.rmsprop()), Err(Error::Empty)));
    // a variable the loss does not use has no gradient: nothing is updated
    let unused = Var::new(&[2.0f32], &Device::Cpu).unwrap();
    let mut t = Trainer::from_named([("a".into(), a.clone()), ("u".into(), unused)], Flavor::D2l.rmsprop()).unwrap();
    let e = t.backward_step(&a.as_tensor().sqr().unwrap().sum_all().unwrap()).unwrap_err();
    assert!(matches!(&e, Error::NoGradient { name } if name == "u"), "{e}");
    assert_eq!(values(a.as_tensor()), [1.0]);
}

#[test]
fn groups_by_pattern_have_their_own_hyperparameters() {
    let (varmap, net) = model(DType::F64);
    let base = Flavor::PyTorch.rmsprop();
    let mut trainer = Trainer::grouped(&varmap, base.clone(), [("*.bias", base.clone().with_lr(0.0))]).unwrap();
    let get = |name: &str| values(varmap.data().lock().unwrap()[name].as_tensor());
    let (bias, weight) = (get("fc.bias"), get("fc.weight"));
    let x = Tensor::new(&[[1.0f64, 2.0, 3.0]], &Device::Cpu).unwrap();
    trainer.backward_step(&net.forward(&x).unwrap().sum_all().unwrap()).unwrap();
    assert_eq!(get("fc.bias"), bias, "lr 0 in the bias group");
    assert!(get("fc.weight").iter().zip(&weight).all(|(a, b)| a != b));
    assert!(trainer.state("fc.bias", "square_avg").unwrap()[0] > 0.0, "the bias group still accumulates");

    let typo = Trainer::grouped(&varmap, base.clone(), [("*.bais", base.clone())]).unwrap_err();
    assert!(typo.to_string().contains("matches no variable") && typo.to_string().contains("fc.bias"), "{typo}");
    let bad = Trainer::grouped(&varmap, base.clone(), [("[", base.clone())]).unwrap_err();
    assert!(bad.to_string().contains("not a glob"), "{bad}");
}

/// A gradient put in the store by hand may be strided (here a transposed tensor): the step
/// is the one of its contiguous copy. A gradient of another shape is refused.
#[test]
fn a_strided_gradient_steps_as_its_contiguous_copy_and_a_misshapen_one_is_refused() {
    let start = [[1.0f32, -2.0, 3.0], [0.5, 4.0, -1.0]];
    let grad = Tensor::new(&[[0.1f32, 0.3], [-0.2, 0.4], [0.7, -0.5]], &Device::Cpu).unwrap().t().unwrap();
    assert!(!grad.is_contiguous());
    let run = |g: &Tensor| {
        let w = Var::new(&start, &Device::Cpu).unwrap();
        let mut trainer = Trainer::from_named([("w".to_string(), w.clone())], Flavor::PyTorch.rmsprop()).unwrap();
        let mut grads = w.as_tensor().sum_all().unwrap().backward().unwrap();
        grads.insert(&w, g.clone());
        trainer.step(&grads).map(|_| (values(w.as_tensor()), trainer.state("w", "square_avg").unwrap()))
    };
    let strided = run(&grad).unwrap();
    assert_eq!(strided, run(&grad.contiguous().unwrap()).unwrap());
    assert_ne!(strided.0, values(&Tensor::new(&start, &Device::Cpu).unwrap()));

    let flat = Tensor::new(&[0.1f32, 0.3, -0.2, 0.4, 0.7, -0.5], &Device::Cpu).unwrap();
    let e = run(&flat).unwrap_err();
    assert!(e.to_string().contains("shape [6]") && e.to_string().contains("[2, 3]"), "{e}");
}

#[test]
fn set_learning_rate_keeps_the_groups_ratios() {
    let (varmap, net) = model(DType::F64);
    let base = Flavor::PyTorch.rmsprop().with_lr(0.01);
    let mut trainer = Trainer::grouped(&varmap, base.clone(), [("*.bias", base.clone().with_lr(0.1))]).unwrap();
    assert_eq!((trainer.learning_rate(), trainer.learning_rates()), (0.1, vec![0.1, 0.01]));
    trainer.set_learning_rate(0.05);
    assert_eq!(trainer.learning_rates(), [0.05, 0.005]);
    // through candle's trait, as a training loop with a schedule would call it
    candle_nn::Optimizer::set_learning_rate(&mut trainer, 0.2);
    assert_eq!(candle_nn::Optimizer::learning_rate(&trainer), 0.2);
    assert_eq!(trainer.learning_rates(), [0.2, 0.02]);
    // an invalid rate refuses the next step, and changes nothing
    trainer.set_learning_rate(-1.0);
    let get = |name: &str| values(varmap.data().lock().unwrap()[name].as_tensor());
    let weight = get("fc.weight");
    let x = Tensor::new(&[[1.0f64, 2.0, 3.0]], &Device::Cpu).unwrap();
    let e = trainer.backward_step(&net.forward(&x).unwrap().sum_all().unwrap()).unwrap_err();
    assert!(e.to_string().contains("lr"), "{e}");
    assert_eq!((get("fc.weight"), trainer.step_count()), (weight, 0));
}

/// A schedule scales the rate of each step from the base rate, PyTorch's way (epoch
/// `t - 1`); `set_learning_rate` changes the base. Plain SGD on `loss = x` (g = 1) shows the
/// rate of every step.
#[test]
fn a_schedule_sets_each_steps_rate_from_the_base_rate() {
    let x = Var::new(&[1.0f64], &Device::Cpu).unwrap();
    let sgd = rmsprop::by_name::config("pytorch.sgd", [("lr", 0.1)]).unwrap();
    let mut trainer = Trainer::from_named([("x".to_string(), x.clone())], sgd)
        .unwrap()
        .with_schedule(rmsprop::Schedule::Exponential { gamma: 0.5 });
    let step = |trainer: &mut Trainer| {
        trainer.backward_step(&x.as_tensor().sum_all().unwrap()).unwrap();
        values(x.as_tensor())[0]
    };
    assert_eq!(step(&mut trainer), 1.0 - 0.1);
    assert_eq!(step(&mut trainer), 1.0 - 0.1 - 0.05);
    trainer.set_learning_rate(0.2);
    assert_eq!(step(&mut trainer), 1.0 - 0.1 - 0.05 - 0.2 * 0.25);
}

mod allocations {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// Counts allocations made by the current thread (tests run on several threads).
    pub struct Counting;
    thread_local! {
        static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    }

    pub fn count() -> usize {
        ALLOCATIONS.with(Cell::get)
    }

    // SAFETY: forwards to the system allocator, counting.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }
}

#[global_allocator]
static GLOBAL: allocations::Counting = allocations::Counting;

/// An in-place op that does nothing: what candle itself allocates to open a storage.
struct Open;
impl candle_core::InplaceOp2 for Open {
    fn name(&self) -> &'static str {
        "open"
    }
    fn cpu_fwd(
        &self,
        _: &mut candle_core::CpuStorage,
        _: &candle_core::Layout,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        Ok(())
    }
}

#[test]
fn a_step_allocates_nothing_beyond_candles_own_in_place_ops() {
    let (varmap, net) = model(DType::F32);
    let x = Tensor::new(&[[1.0f32, 2.0, 3.0]], &Device::Cpu).unwrap();
    let grads = net.forward(&x).unwrap().sum_all().unwrap().backward().unwrap();
    // candle 0.11 allocates in `inplace_op` (its overlap check of a 2-D layout)
    let vars = varmap.all_vars();
    let open_all = || vars.iter().for_each(|v| v.inplace_op2(grads.get(v).unwrap(), &Open).unwrap());
    open_all(); // once for anything candle sets up on first use
    let before = allocations::count();
    open_all();
    let candles_own = allocations::count() - before;
    // a step opens every variable twice (check, update): PyTorch's centred variance,
    // unclamped, too, its probe run in the check's pass from the second step on
    for (config, opens) in [(Flavor::PyTorch.rmsprop().with_centered(true), 2), (Flavor::D2l.rmsprop(), 2)] {
        let mut trainer = Trainer::new(&varmap, config).unwrap();
        trainer.step(&grads).unwrap();
        let before = allocations::count();
        for _ in 0..5 {
            trainer.step(&grads).unwrap();
        }
        assert_eq!(allocations::count() - before, 5 * opens * candles_own, "the adapter or the optimizer allocated");
    }
}

/// The trainer keeps the state the configuration asks for: 8-bit codes for the 64x80 weight
/// (a scale per 256), f32 for the bias (below min_8bit_size); its steps are the core
/// optimizer's with the same storage, bit for bit. A float64 model cannot pack its state.
#[test]
fn state_kept_in_8_bits_steps_as_the_core_optimizer_does() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = candle_nn::linear(80, 64, vb.pp("fc")).unwrap();
    let hyper = [("lr", rmsprop::by_name::Value::Num(0.01)), ("state_storage", "int8".into())];
    let mut trainer = Trainer::by_name(&varmap, "pytorch.rmsprop", hyper.clone()).unwrap();
    assert_eq!(trainer.state_bytes(), 5120 + 5120 / 256 * 4 + 64 * 4);
    let config = rmsprop::by_name::config("pytorch.rmsprop", hyper).unwrap();
    let (w0, b0) =
        (net.weight().flatten_all().unwrap().to_vec1::<f32>().unwrap(), net.bias().unwrap().to_vec1::<f32>().unwrap());
    let mut core =
        rmsprop::Optimizer::<f32>::new(config, &[("fc.weight", &[64, 80][..]), ("fc.bias", &[64][..])]).unwrap();
    let mut x = vec![w0, b0];
    let input =
        Tensor::arange(0f32, 160.0, &Device::Cpu).unwrap().reshape((2, 80)).unwrap().affine(0.01, -0.5).unwrap();
    for _ in 0..3 {
        let loss = net.forward(&input).unwrap().sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let g: Vec<Vec<f32>> = [net.weight(), net.bias().unwrap()]
            .iter()
            .map(|v| grads.get(v).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect();
        trainer.step(&grads).unwrap();
        core.step(&mut x, &g).unwrap();
        assert_eq!(net.weight().flatten_all().unwrap().to_vec1::<f32>().unwrap(), x[0]);
        assert_eq!(net.bias().unwrap().to_vec1::<f32>().unwrap(), x[1]);
    }
    let kept = core.state("fc.weight", "square_avg").unwrap().iter().map(|&v| v as f64).collect::<Vec<_>>();
    assert_eq!(trainer.state("fc.weight", "square_avg").unwrap(), kept);
    let (varmap64, _) = model(DType::F64);
    let e = Trainer::by_name(&varmap64, "pytorch.rmsprop", [("state_storage", "int8")]).unwrap_err().to_string();
    assert!(e.contains("packs float32 state"), "{e}");
}
