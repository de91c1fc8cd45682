//! The driver: parameter groups, schedules, norm clipping, and no allocation per step.

use rmsprop::{NormScope, Optimizer, OptimizerConfig, RmsProp, Schedule, Sgd};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations made by the current thread (tests run on several threads).
struct Counting;
thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn step_allocates_nothing() {
    let configs: Vec<rmsprop::OptimizerConfig> = rmsprop::by_name::optimizers()
        .into_iter()
        .flat_map(|name| rmsprop::Flavor::ALL.iter().filter_map(move |f| f.config(name).ok()))
        .chain([RmsProp::default().with_centered(true).with_clip_norm(1.0, NormScope::Global).into()])
        .collect();
    for config in configs {
        let opt = Optimizer::<f32>::new(config.clone(), &[("w", &[5, 1][..]), ("b", &[1][..])]).unwrap();
        assert_eq!(allocations_in_steps(opt, 5), 0, "{} allocated during step", config.name());
        // state in bfloat16 and 8 bits: staged in the scratch allocated with the tensors
        for storage in [rmsprop::StateStorage::Bf16, rmsprop::StateStorage::Int8] {
            let mut config = config.clone();
            config.common_mut().state_storage = storage;
            let opt = Optimizer::<f32>::new(config.clone(), &[("w", &[5000][..]), ("b", &[1][..])])
                .unwrap()
                .with_parallelism(rmsprop::Parallelism::Serial);
            assert_eq!(allocations_in_steps(opt, 5000), 0, "{} with {storage} state allocated", config.name());
        }
    }
}

/// Allocations of ten steps of `opt` over a tensor `w` of `n` elements and a bias, after a
/// first step.
fn allocations_in_steps(mut opt: Optimizer<f32>, n: usize) -> usize {
    let mut p = [vec![0.1f32; n], vec![0.2]];
    let g = [vec![0.5f32; n], vec![-0.5]];
    opt.step(&mut p, &g).unwrap();
    let before = allocations();
    for _ in 0..10 {
        opt.step(&mut p, &g).unwrap();
    }
    allocations() - before
}

#[test]
fn groups_have_their_own_hyperparameters() {
    let mut opt = Optimizer::<f64>::new(Sgd::default().with_lr(0.1), &[("w", &[2][..])]).unwrap();
    opt.add_group(Sgd::default().with_lr(0.01), &[("b", &[1][..])]).unwrap();
    let mut p = vec![vec![1.0, 1.0], vec![1.0]];
    opt.step(&mut p, &[vec![1.0, 1.0], vec![1.0]]).unwrap();
    assert_eq!(p, vec![vec![0.9, 0.9], vec![0.99]]);
    assert!(opt.add_group(Sgd::default(), &[("w", &[1][..])]).is_err(), "names are unique across groups");
}

#[test]
fn schedules_set_each_steps_rate() {
    let mut opt = Optimizer::<f64>::new(Sgd::default().with_lr(1.0), &[("x", &[1][..])])
        .unwrap()
        .with_schedule(Schedule::Exponential { gamma: 0.5 });
    let mut x = vec![vec![0.0]];
    for _ in 0..3 {
        opt.step(&mut x, &[vec![-1.0]]).unwrap();
    }
    assert_eq!(x[0][0], 1.0 + 0.5 + 0.25);
    assert_eq!(opt.current_lr(0).unwrap(), 0.125);
    let cosine = Schedule::Cosine { t_max: 10, eta_min: 0.0 };
    assert_eq!(cosine.lr(1.0, 1), 1.0);
    assert!((cosine.lr(1.0, 6) - 0.5).abs() < 1e-15);
    assert_eq!(cosine.lr(1.0, 11), 0.0);
}

#[test]
fn global_norm_clipping_scales_every_tensor_alike() {
    // ||(3, 4)|| = 5, clipped to 1: SGD moves by g·(1/5), the coefficient formed first as
    // torch's clip_grad_norm_ does (so a large bound cannot overflow g·c)
    let config = Sgd::default().with_lr(1.0).with_clip_norm(1.0, NormScope::Global);
    let mut opt = Optimizer::<f64>::new(config, &[("a", &[1][..]), ("b", &[1][..])]).unwrap();
    let mut p = vec![vec![0.0], vec![0.0]];
    opt.step(&mut p, &[vec![3.0], vec![4.0]]).unwrap();
    assert_eq!(p, vec![vec![-(3.0 * (1.0 / 5.0))], vec![-(4.0 * (1.0 / 5.0))]]);
    assert_eq!(p[0][0], -0.6000000000000001);
    let per_tensor = Sgd::default().with_lr(1.0).with_clip_norm(1.0, NormScope::PerTensor);
    let mut opt = Optimizer::<f64>::new(per_tensor, &[("a", &[1][..]), ("b", &[1][..])]).unwrap();
    let mut p = vec![vec![0.0], vec![0.0]];
    opt.step(&mut p, &[vec![3.0], vec![0.5]]).unwrap();
    assert_eq!(p, vec![vec![-1.0], vec![-0.5]]);
}

#[test]
fn parallel_and_serial_steps_are_bit_identical() {
    use rmsprop::{MomentumStyle, Parallelism};
    let sizes = [300_000usize, 17, 40_000, 1, 65_536];
    let specs: Vec<(String, Vec<usize>)> = sizes.iter().enumerate().map(|(i, &n)| (format!("t{i}"), vec![n])).collect();
    let specs: Vec<rmsprop::TensorSpec> = specs.iter().map(|(n, s)| rmsprop::TensorSpec::new(n.clone(), s)).collect();
    let grads: Vec<Vec<f32>> = sizes
        .iter()
        .map(|&n| (0..n).map(|i| ((i * 2654435761usize % 2001) as f32 - 1000.0) / 97.0).collect())
        .collect();
    let configs: Vec<rmsprop::OptimizerConfig> = vec![
        RmsProp::default().into(),
        RmsProp::default().with_centered(true).with_momentum(0.9, MomentumStyle::LrInsideBuffer).into(),
        rmsprop::Flavor::PyTorch.rmsprop().with_momentum(0.5, MomentumStyle::LrOutsideBuffer).into(),
        rmsprop::Adam::default().into(),
    ];
    for config in configs {
        let run = |p: Parallelism| {
            let mut opt = Optimizer::<f32>::new(config.clone(), &specs).unwrap().with_parallelism(p);
            let mut x: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![0.5; n]).collect();
            for _ in 0..3 {
                opt.step(&mut x, &grads).unwrap();
            }
            let state: Vec<u32> = opt
                .group(0)
                .unwrap()
                .state_names()
                .iter()
                .flat_map(|s| opt.state("t0", s).unwrap().to_vec())
                .map(f32::to_bits)
                .collect();
            (x.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>(), state)
        };
        assert_eq!(run(Parallelism::Serial), run(Parallelism::Parallel), "{}", config.name());
    }
}

/// A step reuses the kernel planned for the last one when nothing it depends on changed;
/// every change must still reach the next step. Reference: the chapter's update
/// (D2L eq. 12.8.1) written out here.
#[test]
fn every_change_reaches_the_next_step() {
    let (mut x, mut s, g) = (1.0f64, 0.0f64, 0.5f64);
    let mut d2l = |lr: f64, gamma: f64| {
        s = gamma * s + (1.0 - gamma) * g * g;
        x -= lr * g / (s + 1e-6).sqrt();
        x
    };
    let mut opt = Optimizer::<f64>::new(RmsProp::default(), &[("x", &[1][..])]).unwrap();
    let mut p = vec![vec![1.0]];
    let mut step = |opt: &mut Optimizer<f64>, want: f64, what: &str| {
        opt.step(&mut p, &[vec![g]]).unwrap();
        assert!((p[0][0] - want).abs() <= 1e-14 * want.abs(), "{what}: {} against {want}", p[0][0]);
    };
    for _ in 0..2 {
        step(&mut opt, d2l(0.01, 0.9), "unchanged");
    }
    opt.group_mut(0).unwrap().common_mut().lr = 0.1;
    step(&mut opt, d2l(0.1, 0.9), "learning rate");
    let OptimizerConfig::RmsProp(r) = opt.group_mut(0).unwrap() else { unreachable!() };
    r.decay = 0.5;
    step(&mut opt, d2l(0.1, 0.5), "decay");
    let mut opt = opt.with_schedule(Schedule::Exponential { gamma: 0.5 }); // steps 5 and 6
    step(&mut opt, d2l(0.1 * 0.5f64.powi(4), 0.5), "schedule");
    step(&mut opt, d2l(0.1 * 0.5f64.powi(5), 0.5), "schedule, next step");
}

/// Bias correction reads the step number: its kernel must be planned at every step
/// (optax `scale_by_rms` with `bias_correction`, `s_hat = s / (1 - γ^t)`).
#[test]
fn bias_correction_follows_the_step_number() {
    let (gamma, lr, eps, g) = (0.9f64, 0.01, 1e-6, 0.5f64);
    let mut opt = Optimizer::<f64>::new(RmsProp::default().with_bias_correction(true), &[("x", &[1][..])]).unwrap();
    let (mut p, mut x, mut s) = (vec![vec![1.0]], 1.0f64, 0.0f64);
    for t in 1..=4 {
        opt.step(&mut p, &[vec![g]]).unwrap();
        s = gamma * s + (1.0 - gamma) * g * g;
        x -= lr * g / (s / (1.0 - gamma.powi(t)) + eps).sqrt();
        assert!((p[0][0] - x).abs() <= 1e-14, "step {t}: {} against {x}", p[0][0]);
    }
}
