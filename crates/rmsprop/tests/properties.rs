//! Invariants that hold for every input (proptest).

use proptest::prelude::*;
use rmsprop::{EpsPlacement, Flavor, MomentumStyle, NonFinitePolicy, Optimizer, OptimizerConfig, RmsProp};

const SHAPES: [(&str, usize); 2] = [("w", 5), ("b", 1)];

fn optimizer(config: OptimizerConfig) -> Optimizer<f32> {
    Optimizer::new(config, &[("w", &[5, 1][..]), ("b", &[1][..])]).unwrap()
}

/// Every state buffer of every tensor, as bits.
fn snapshot(opt: &Optimizer<f32>) -> Vec<u32> {
    let mut out = vec![opt.step_count() as u32];
    for (name, _) in SHAPES {
        for slot in opt.group(0).unwrap().state_names() {
            out.extend(opt.state(name, slot).unwrap().iter().map(|v| v.to_bits()));
        }
    }
    out
}

fn any_config() -> impl Strategy<Value = OptimizerConfig> {
    let flavors = prop::sample::select(Flavor::ALL.to_vec());
    let names = prop::sample::select(rmsprop::by_name::optimizers());
    (flavors, names, any::<bool>(), 0.0f64..0.99).prop_map(|(flavor, name, centered, momentum)| {
        match flavor.config(name) {
            Ok(OptimizerConfig::RmsProp(r)) => {
                let style = r.momentum_style;
                r.with_centered(centered).with_momentum(momentum, style).into()
            }
            Ok(c) => c,
            Err(_) => flavor.rmsprop().into(),
        }
    })
}

fn grads() -> impl Strategy<Value = Vec<Vec<f32>>> {
    (prop::collection::vec(-10.0f32..10.0, 5), -10.0f32..10.0).prop_map(|(w, b)| vec![w, vec![b]])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_failed_step_changes_nothing(
        config in any_config(),
        history in prop::collection::vec(grads(), 0..5),
        bad in grads(),
        at in 0usize..6,
        poison in prop::sample::select(vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY]),
    ) {
        let mut opt = optimizer(config);
        let mut p = vec![vec![0.3f32; 5], vec![-0.2]];
        for g in &history {
            opt.step(&mut p, g).unwrap();
        }
        let (p0, s0) = (p.clone(), snapshot(&opt));
        let mut bad = bad;
        if at < 5 { bad[0][at] = poison } else { bad[1][0] = poison }
        prop_assert!(opt.step(&mut p, &bad).is_err());
        let mut short = bad.clone();
        short[0].pop();
        prop_assert!(opt.step(&mut p, &short).is_err());
        prop_assert_eq!(p.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        p0.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>());
        prop_assert_eq!(snapshot(&opt), s0);
    }

    #[test]
    fn save_then_load_is_the_identity(config in any_config(), history in prop::collection::vec(grads(), 0..5)) {
        let path = std::env::temp_dir().join(format!("rmsprop-prop-{}.safetensors", std::process::id()));
        let mut opt = optimizer(config.clone());
        let mut p = vec![vec![0.3f32; 5], vec![-0.2]];
        for g in &history {
            opt.step(&mut p, g).unwrap();
        }
        opt.save(&path).unwrap();
        let mut loaded = optimizer(config);
        loaded.load(&path).unwrap();
        prop_assert_eq!(snapshot(&loaded), snapshot(&opt));
        prop_assert_eq!(loaded.step_count(), opt.step_count());
    }

    /// The chapter's exercise γ = 0: `s = g²`, so every step moves by `η |g| / sqrt(g² + ε)`.
    #[test]
    fn gamma_zero_steps_by_lr_g_over_root_g2_eps(
        lr in 1e-4f64..1.0,
        eps in 1e-10f64..1e-2,
        steps in prop::collection::vec(prop::collection::vec(-100.0f64..100.0, 3), 1..8),
    ) {
        let config = RmsProp::default().with_lr(lr).with_decay(0.0).with_eps(eps, EpsPlacement::InsideSqrt);
        let mut opt = Optimizer::<f64>::new(config, &[("x", &[3][..])]).unwrap();
        let mut x = vec![vec![1.0, -2.0, 3.0]];
        for g in steps {
            let before = x[0].clone();
            opt.step(&mut x, std::slice::from_ref(&g)).unwrap();
            for i in 0..3 {
                let expected = lr * g[i].abs() / (g[i] * g[i] + eps).sqrt();
                let moved = (before[i] - x[0][i]) * g[i].signum();
                prop_assert!((moved - expected).abs() <= 1e-12 * (1.0 + before[i].abs()),
                    "moved {moved}, expected {expected}");
            }
        }
    }

    /// With the clamp, rounding can never make centred RMSProp take the root of a
    /// negative variance, even where `s ≈ m²` (a gradient that barely changes).
    #[test]
    fn clamped_centered_rmsprop_never_makes_nan(
        base in prop::collection::vec(-1e6f32..1e6, 6),
        jitter in prop::collection::vec(prop::collection::vec(-1e-3f32..1e-3, 6), 1..60),
        decay in 0.0f64..=1.0,
        eps in prop::sample::select(vec![1e-12, 1e-8]),
        outside in any::<bool>(),
        momentum in 0.0f64..0.99,
    ) {
        let placement = if outside { EpsPlacement::OutsideSqrt } else { EpsPlacement::InsideSqrt };
        let config = RmsProp::default()
            .with_decay(decay)
            .with_eps(eps, placement)
            .with_centered(true)
            .with_clamp_variance(true)
            .with_momentum(momentum, MomentumStyle::LrInsideBuffer);
        let mut opt = optimizer(config.into()).with_nonfinite_policy(NonFinitePolicy::Propagate);
        let mut p = vec![vec![0.0f32; 5], vec![0.0]];
        for j in jitter {
            let g: Vec<f32> = base.iter().zip(&j).map(|(b, d)| b * (1.0 + d)).collect();
            opt.step(&mut p, &[g[..5].to_vec(), vec![g[5]]]).unwrap();
            prop_assert!(p.iter().flatten().all(|v| !v.is_nan()), "NaN in {p:?}");
        }
    }
}
