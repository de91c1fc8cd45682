//! Half-precision parameters (bf16, f16) with f32 state and f32 arithmetic.

use half::{bf16, f16};
use rmsprop::{Flavor, MomentumStyle, Optimizer, OptimizerConfig, Param, RmsProp};

/// A half-precision step is the f32 step on the widened parameters, rounded back:
/// same state bits, parameters equal to the rounded f32 result.
fn matches_rounded_f32<H: Param<Acc = f32> + PartialEq>(config: OptimizerConfig) {
    let n = 1000;
    let x0: Vec<H> = (0..n).map(|i| H::store((i as f32 / 100.0).sin())).collect();
    let grads: Vec<Vec<H>> =
        (0..5).map(|t| (0..n).map(|i| H::store(((i * 31 + t * 7) % 97) as f32 / 97.0 - 0.5)).collect()).collect();
    let mut half_opt = Optimizer::<H>::new(config.clone(), &[("w", &[n][..])]).unwrap();
    let mut wide_opt = Optimizer::<f32>::new(config, &[("w", &[n][..])]).unwrap();
    let mut xh = vec![x0.clone()];
    let mut xf = vec![x0.iter().map(|v| v.load()).collect::<Vec<f32>>()];
    for g in &grads {
        half_opt.step(&mut xh, std::slice::from_ref(g)).unwrap();
        wide_opt.step(&mut xf, &[g.iter().map(|v| v.load()).collect::<Vec<f32>>()]).unwrap();
        // the f32 run keeps full precision between steps; round it as the half run does
        let rounded: Vec<H> = xf[0].iter().map(|&v| H::store(v)).collect();
        assert!(xh[0] == rounded, "{}: parameters differ", H::NAME);
        xf[0] = rounded.iter().map(|v| v.load()).collect();
        for name in half_opt.group(0).unwrap().state_names() {
            assert_eq!(half_opt.state("w", name), wide_opt.state("w", name), "{} {name}", H::NAME);
        }
    }
}

#[test]
fn bf16_and_f16_parameters_step_in_f32() {
    let configs: Vec<OptimizerConfig> = vec![
        RmsProp::default().into(),
        Flavor::PyTorch.rmsprop().with_centered(true).with_momentum(0.9, MomentumStyle::LrOutsideBuffer).into(),
        rmsprop::Adam::default().into(),
    ];
    for c in configs {
        matches_rounded_f32::<bf16>(c.clone());
        matches_rounded_f32::<f16>(c);
    }
}

/// A gradient of 1e-4 squares to 1e-8, below f16's smallest subnormal (6e-8): f16 state
/// would hold 0 and divide by sqrt(eps) or by zero. The f32 state keeps it.
#[test]
fn small_f16_gradients_do_not_vanish_or_blow_up() {
    let config = Flavor::PyTorch.rmsprop().with_eps(1e-8, rmsprop::EpsPlacement::OutsideSqrt);
    let mut opt = Optimizer::<f16>::new(config, &[("w", &[4][..])]).unwrap();
    let mut x = vec![vec![f16::from_f32(1.0); 4]];
    let g = vec![vec![f16::from_f32(1e-4); 4]];
    opt.step(&mut x, &g).unwrap();
    let s = opt.state("w", "square_avg").unwrap()[0];
    assert!(s > 0.0 && (s - 0.01 * 1e-8).abs() < 1e-12, "f32 state holds (1-α) g² = {s}");
    // step = lr * g / (sqrt(s) + eps) = 0.01 * 1e-4 / 1e-5 = 0.1
    assert_eq!(x[0][0], f16::from_f32(0.9), "{}", x[0][0]);
    assert!(x[0].iter().all(|v| v.is_finite()));
}

#[test]
fn nonfinite_half_gradients_are_refused() {
    let mut opt = Optimizer::<bf16>::new(RmsProp::default(), &[("w", &[2][..])]).unwrap();
    let mut x = vec![vec![bf16::ONE; 2]];
    let e = opt.step(&mut x, &[vec![bf16::ONE, bf16::NAN]]).unwrap_err().to_string();
    assert!(e.contains("tensor \"w\" at element 1"), "{e}");
    assert_eq!(x[0], vec![bf16::ONE; 2]);
}
