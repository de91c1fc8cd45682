//! Kernel benchmarks: `cargo bench -p rmsprop`. One optimizer step per iteration, f32,
//! in cache (1e4) and in memory (1e7), for RMSProp's variants (the rarer options
//! included), the family, and framework presets with their own rounding. For bandwidth
//! ratios against a probe, use `rmsprop bench`.

use rmsprop::{
    Adadelta, Adagrad, Adam, BiasCorrection, Flavor, MomentumStyle, NonFinitePolicy, Optimizer, OptimizerConfig,
    RmsProp, Sgd, SgdMomentum, WeightDecayMode,
};

fn main() {
    divan::main();
}

fn configs() -> Vec<(&'static str, OptimizerConfig)> {
    vec![
        ("plain", RmsProp::default().into()),
        ("plain_rsqrt", RmsProp::default().with_fast_rsqrt(true).into()),
        ("centered", RmsProp::default().with_centered(true).into()),
        ("momentum", RmsProp::default().with_momentum(0.9, MomentumStyle::LrOutsideBuffer).into()),
        ("nesterov", RmsProp::default().with_momentum(0.9, MomentumStyle::LrInsideBuffer).with_nesterov(true).into()),
        ("bias_correction", RmsProp::default().with_bias_correction(true).into()),
        ("decoupled", RmsProp::default().with_weight_decay(0.01, WeightDecayMode::Decoupled).into()),
        ("clip_weights", RmsProp::default().with_clip_weights(3.0).into()),
        ("adam", Adam::default().into()),
        ("adamw", Adam::adamw().into()),
        ("adam_optax", Adam { bias_correction: BiasCorrection::Moments, ..Adam::default() }.into()),
        ("adagrad", Adagrad::default().into()),
        ("sgd_momentum", Sgd::default().with_momentum(0.9, SgdMomentum::Torch).into()),
        ("adadelta", Adadelta::default().into()),
        ("pytorch", Flavor::PyTorch.rmsprop().into()),
        ("pytorch_centered", Flavor::PyTorch.rmsprop().with_centered(true).into()),
        ("pytorch_adam", Flavor::PyTorch.config("adam").unwrap()),
        ("mxnet_centered", Flavor::Mxnet.rmsprop().with_centered(true).into()),
        ("optax", Flavor::Optax.rmsprop().into()),
    ]
}

/// Step of configuration `VARIANT` (an index into `configs`).
#[divan::bench(args = [10_000, 10_000_000], consts = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18])]
fn step<const VARIANT: usize>(bencher: divan::Bencher, n: usize) {
    let (_, config) = configs().swap_remove(VARIANT);
    let mut opt =
        Optimizer::<f32>::new(config, &[("w", &[n][..])]).unwrap().with_nonfinite_policy(NonFinitePolicy::Propagate);
    let mut x = vec![rmsprop::Buffer::filled(n, 1.0f32)];
    let g = vec![rmsprop::Buffer::filled(n, 1e-3f32)];
    bencher.counter(divan::counter::ItemsCount::new(n)).bench_local(|| {
        opt.step(&mut x, &g).unwrap();
    });
}

#[divan::bench]
fn chapter_step(bencher: divan::Bencher) {
    let mut opt = Optimizer::<f32>::new(RmsProp::default(), &[("w", &[5, 1][..]), ("b", &[1][..])]).unwrap();
    let mut p = [vec![0.1f32; 5], vec![0.0]];
    let g = [vec![0.01f32; 5], vec![0.02]];
    bencher.bench_local(|| {
        opt.step(&mut p, &g).unwrap();
    });
}
