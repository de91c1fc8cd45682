//! Hostile configurations get a typed error instead of an abort, a panic, a wrapped count or
//! a silently non-finite step; a refused step changes nothing.

use rmsprop::{
    Adadelta, Adagrad, Adam, EpsPlacement, Error, HyperPrecision, NormScope, Optimizer, RmsProp, Schedule, by_name,
};

#[test]
fn absurd_shapes_are_errors_not_aborts_or_wrapped_counts() {
    for shape in [vec![usize::MAX, 2], vec![1 << 63, 2], vec![1 << 32, 1 << 32]] {
        let e = Optimizer::<f32>::new(RmsProp::default(), &[("w", &shape[..])]).unwrap_err();
        assert!(matches!(e, Error::TooLarge { .. }), "{shape:?}: {e}");
        assert!(e.to_string().contains("its element count overflows usize"), "{e}");
    }
    // 2^46 f32 elements (256 TiB) fit in usize but not in any machine: the allocation fails
    let e = Optimizer::<f32>::new(RmsProp::default(), &[("w", &[1usize << 46][..])]).unwrap_err();
    assert!(e.to_string().starts_with("tensor \"w\" of shape [70368744177664]: cannot allocate"), "{e}");
    // centred + momentum: three state arrays, each alone too large
    let big = RmsProp::default().with_centered(true);
    assert!(Optimizer::<f64>::new(big, &[("a", &[1usize << 45][..]), ("b", &[3][..])]).is_err());
    // and nothing half-registered: a failed add_group leaves the optimizer as it was
    let mut opt = Optimizer::<f32>::new(RmsProp::default(), &[("w", &[4][..])]).unwrap();
    assert!(opt.add_group(RmsProp::default(), &[("v", &[1usize << 46][..])]).is_err());
    assert_eq!(opt.tensors().count(), 1);
    let mut x = [vec![1.0f32; 4]];
    opt.step(&mut x, &[vec![0.5f32; 4]]).unwrap();
    // packed state too: 2^46 codes (64 TiB) and their scales, or bfloat16 values
    for storage in [rmsprop::StateStorage::Int8, rmsprop::StateStorage::Bf16] {
        let packed = RmsProp::default().with_state_storage(storage);
        let e = Optimizer::<f32>::new(packed.clone(), &[("w", &[1usize << 46][..])]).unwrap_err();
        assert!(e.to_string().starts_with("tensor \"w\" of shape [70368744177664]: cannot allocate"), "{e}");
        let e = Optimizer::<f32>::new(packed.clone(), &[("w", &[usize::MAX / 2 + 1][..])]).unwrap_err();
        assert!(matches!(e, Error::TooLarge { .. }), "{storage}: {e}");
        assert!(opt.add_group(packed, &[("v", &[1usize << 46][..])]).is_err());
        assert_eq!(opt.tensors().count(), 1);
        opt.step(&mut x, &[vec![0.5f32; 4]]).unwrap();
    }
}

#[test]
fn a_group_past_the_last_is_an_error() {
    let mut opt = Optimizer::<f64>::new(RmsProp::default(), &[("w", &[2][..])]).unwrap();
    let expected = "no parameter group 5: the optimizer has 1 (0 to 0)";
    assert_eq!(opt.group(5).unwrap_err().to_string(), expected);
    assert_eq!(opt.group_mut(5).unwrap_err().to_string(), expected);
    assert_eq!(opt.current_lr(5).unwrap_err().to_string(), expected);
    assert_eq!(opt.current_lr(0).unwrap(), 0.01);
}

/// A schedule whose rate is not a finite number >= 0 at some step: that step is refused and
/// changes nothing; the steps before it went through.
#[test]
fn schedules_are_checked_at_every_step() {
    let cases: [(&str, Schedule, u64); 6] = [
        ("NaN", Schedule::custom(|_, _| f64::NAN), 1),
        ("negative", Schedule::custom(|t, lr| if t < 3 { lr } else { -1.0 }), 3),
        ("infinite", Schedule::custom(|_, _| f64::INFINITY), 1),
        ("cosine below 0", Schedule::Cosine { t_max: 4, eta_min: -5.0 }, 2),
        ("step gamma NaN", Schedule::Step { step_size: 2, gamma: f64::NAN }, 3),
        ("exponential overflow", Schedule::Exponential { gamma: 1e300 }, 3),
    ];
    for (what, schedule, bad_step) in cases {
        let mut opt = Optimizer::<f64>::new(RmsProp::default(), &[("w", &[3][..])]).unwrap().with_schedule(schedule);
        let mut x = [vec![1.0, -2.0, 3.0]];
        let g = [vec![0.5, 0.25, -1.0]];
        for _ in 1..bad_step {
            opt.step(&mut x, &g).unwrap_or_else(|e| panic!("{what}: an early step refused: {e}"));
        }
        let (before, state) = (x.clone(), opt.state("w", "square_avg").unwrap().to_vec());
        let e = opt.step(&mut x, &g).unwrap_err();
        assert!(matches!(e, Error::InvalidSchedule { step, .. } if step == bad_step), "{what}: {e}");
        assert!(e.to_string().ends_with("expected a finite number >= 0; nothing was updated"), "{e}");
        assert_eq!(x, before, "{what}");
        assert_eq!(opt.state("w", "square_avg").unwrap(), &state[..], "{what}");
        assert_eq!(opt.step_count(), bad_step - 1);
    }
}

/// What a framework accepts is accepted, even where it is certain to give 0 / 0 (Keras' and
/// TF's own tests run RMSProp with `epsilon = 0`; PyTorch takes `eps = 0` in every
/// optimizer; optax divides by `1 - decay^t` whatever the decay): the step that would
/// write NaN is then the non-finite policy's — refused under `Error` with nothing changed,
/// skipped under `Skip`, written under `Propagate` as the framework writes it.
#[test]
fn certain_nan_is_accepted_and_left_to_the_policy() {
    use by_name::Value::{Bool, Num};
    use rmsprop::{NonFinitePolicy, OptimizerConfig, StepOutcome};
    let cases: Vec<(&str, OptimizerConfig)> = vec![
        ("rmsprop eps 0", RmsProp::default().with_eps(0.0, EpsPlacement::InsideSqrt).into()),
        ("keras rho 0 eps 0", by_name::config("keras.rmsprop", [("rho", 0.0), ("epsilon", 0.0)]).unwrap()),
        ("pytorch rmsprop eps 0", by_name::config("pytorch.rmsprop", [("eps", 0.0)]).unwrap()),
        ("adagrad eps 0", Adagrad::default().with_eps(0.0, EpsPlacement::InsideSqrt).into()),
        ("pytorch adam eps 0", Adam::default().with_eps(0.0).into()),
        ("pytorch adamw eps 0", by_name::config("pytorch.adamw", [("eps", 0.0)]).unwrap()),
        ("mxnet adam eps 0", by_name::config("mxnet.adam", [("epsilon", 0.0)]).unwrap()),
        ("optax adam eps 0", by_name::config("optax.adam", [("eps", 0.0)]).unwrap()),
        ("adadelta eps 0", Adadelta::default().with_eps(0.0).into()),
        (
            "optax rmsprop decay 1 bias-corrected",
            by_name::config("optax.rmsprop", [("decay", Num(1.0)), ("bias_correction", Bool(true))]).unwrap(),
        ),
    ];
    for (what, config) in cases {
        let new =
            |policy| Optimizer::<f64>::new(config.clone(), &[("w", &[2][..])]).unwrap().with_nonfinite_policy(policy);
        let (x0, g) = ([vec![1.0, 2.0]], [vec![0.0, 1.0]]);
        let mut opt = new(NonFinitePolicy::Error);
        let mut x = x0.clone();
        let e = opt.step(&mut x, &g).unwrap_err();
        assert!(matches!(e, Error::NonFiniteResult { step: 1, .. }), "{what}: {e}");
        assert_eq!(x, x0, "{what}: a refused step changed the parameters");
        assert_eq!(opt.step_count(), 0, "{what}");
        let mut opt = new(NonFinitePolicy::Skip);
        assert_eq!(opt.step(&mut x, &g).unwrap(), StepOutcome::Skipped, "{what}");
        assert_eq!(x, x0, "{what}");
        let mut opt = new(NonFinitePolicy::Propagate);
        assert_eq!(opt.step(&mut x, &g).unwrap(), StepOutcome::Applied, "{what}");
        assert!(x[0].iter().any(|v| v.is_nan()), "{what}: as the framework, NaN where 0 / 0: {x:?}");
    }
    // eps = 0 where nothing is 0 / 0 steps as usual: TF1 starts s at 1
    let tf1 = RmsProp::default().with_eps(0.0, EpsPlacement::InsideSqrt).with_initial_accumulator(1.0);
    let mut opt = Optimizer::<f64>::new(tf1, &[("w", &[2][..])]).unwrap();
    let mut x = [vec![1.0, 2.0]];
    opt.step(&mut x, &[vec![0.0, 1.0]]).unwrap();
    assert!(x[0].iter().all(|v| v.is_finite()), "{x:?}");
}

/// A hyperparameter a framework does not have is refused by name: PyTorch's and MXNet's
/// Adam add no ε inside the root, so `eps_root` there would be silently unused (and the
/// guard's bound on the denominator wrong).
#[test]
fn eps_root_is_optax_only() {
    for name in ["pytorch.adam", "pytorch.adamw", "mxnet.adam", "pytorch.yogi"] {
        let e = by_name::config(name, [("eps", 0.0), ("eps_root", 1e-8)]).unwrap_err().to_string();
        assert!(e.contains("eps_root = 0.00000001 is optax's"), "{name}: {e}");
    }
    assert!(by_name::config("optax.adam", [("eps", 0.0), ("eps_root", 1e-8)]).is_ok());
    assert!(by_name::config("optax.yogi", [("eps", 0.0), ("eps_root", 1e-8)]).is_ok());
    // no framework's Yogi corrects only its learning rate (MXNet's Adam does)
    let e = by_name::config("d2l.yogi", [("bias_correction", "lr_only")]).unwrap_err().to_string();
    assert!(e.contains("bias_correction = lr_only is MXNet's Adam"), "{e}");
    let e = Optimizer::<f32>::new(Adam::default().with_eps(0.0), &[("w", &[1][..])]);
    assert!(e.is_ok(), "eps = 0 alone is PyTorch's right");
}

/// A value finite in f64 but not in the type the step computes in is refused.
#[test]
fn hyperparameters_must_fit_the_step_type() {
    let lr = RmsProp::default().with_lr(1e300);
    let e = Optimizer::<f32>::new(lr.clone(), &[("w", &[2][..])]).unwrap_err().to_string();
    assert!(e.starts_with("invalid hyperparameter rmsprop.lr = 1e300: expected"), "{e}");
    assert!(e.contains("float32's range"), "{e}");
    assert!(Optimizer::<f64>::new(lr, &[("w", &[2][..])]).is_ok(), "fine in f64");
    let mut held = by_name::config("mxnet.rmsprop", [("rescale_grad", 5.1e39)]).unwrap();
    assert_eq!(held.common().precision, HyperPrecision::F32);
    assert!(Optimizer::<f64>::new(held.clone(), &[("w", &[2][..])]).is_err(), "held in f32 by MXNet");
    held.common_mut().rescale_grad = 1.0;
    held.common_mut().weight_decay = 4.4e38;
    assert!(Optimizer::<f64>::new(held, &[("w", &[2][..])]).unwrap_err().to_string().contains("weight_decay"));
    // a change through group_mut is checked at the next step, which then changes nothing
    let mut opt = Optimizer::<f32>::new(RmsProp::default(), &[("w", &[2][..])]).unwrap();
    opt.group_mut(0).unwrap().common_mut().lr = 1e39;
    let mut x = [vec![1.0f32, 2.0]];
    assert!(opt.step(&mut x, &[vec![1.0f32, 1.0]]).is_err());
    assert_eq!(x, [vec![1.0f32, 2.0]]);
}

/// Norm clipping forms c / norm first: a large bound cannot overflow g·c in f32.
#[test]
fn a_large_clip_norm_does_not_overflow_in_f32() {
    let config = rmsprop::Sgd::default().with_lr(1e-30).with_clip_norm(1e10, NormScope::PerTensor);
    let mut opt = Optimizer::<f32>::new(config, &[("w", &[2][..])]).unwrap();
    let mut x = [vec![0.0f32; 2]];
    opt.step(&mut x, &[vec![3e30f32, 4e30]]).unwrap();
    // g·(c/‖g‖) = (3e30, 4e30)·(1e10/5e30) = (6e9, 8e9); times lr 1e-30
    let want = [-(3e30f32 * (1e10f32 / 5e30f32)) * 1e-30, -(4e30f32 * (1e10f32 / 5e30f32)) * 1e-30];
    assert!(x[0].iter().all(|v| v.is_finite()), "{x:?}");
    for (a, w) in x[0].iter().zip(want) {
        assert!((a - w).abs() <= 1e-6 * w.abs(), "{a} against {w}");
    }
}

/// A million one-element tensors register (before: the duplicate-name check compared each
/// name with every earlier one, hours of work, and the test never finished). Not a timing:
/// a watchdog of five minutes turns the quadratic check's hang into a failure.
#[test]
fn a_million_small_tensors_register() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let names: Vec<String> = (0..1_000_000).map(|i| format!("t{i}")).collect();
        let specs: Vec<(&str, &[usize])> = names.iter().map(|n| (n.as_str(), &[1usize][..])).collect();
        let count = Optimizer::<f32>::new(RmsProp::default(), &specs).map(|o| o.tensors().count());
        // a duplicate among them is still found
        let mut dup = specs.clone();
        dup.push(("t500000", &[1][..]));
        let duplicate =
            matches!(Optimizer::<f32>::new(RmsProp::default(), &dup), Err(Error::DuplicateTensor(n)) if n == "t500000");
        let _ = tx.send((count.ok(), duplicate));
    });
    let (count, duplicate) = rx.recv_timeout(std::time::Duration::from_secs(300)).expect("registration hangs");
    assert_eq!(count, Some(1_000_000));
    assert!(duplicate, "the duplicate name was not found");
}
