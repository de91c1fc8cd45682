//! The chapter's 2-D demonstration and exercises, through the public API.

use rmsprop::{Adagrad, Optimizer, RmsProp};

fn run(config: impl Into<rmsprop::OptimizerConfig>) -> [f64; 2] {
    let mut opt = Optimizer::<f64>::new(config, &[("x", &[2][..])]).unwrap();
    let mut x = vec![vec![-5.0, -2.0]];
    for _ in 0..20 {
        let g = vec![vec![0.2 * x[0][0], 4.0 * x[0][1]]];
        opt.step(&mut x, &g).unwrap();
    }
    [x[0][0], x[0][1]]
}

fn printed([x1, x2]: [f64; 2]) -> String {
    format!("epoch 20, x1 {x1:.6}, x2 {x2:.6}")
}

#[test]
fn rmsprop_2d_prints_the_chapters_line() {
    assert_eq!(printed(run(RmsProp::default().with_lr(0.4))), "epoch 20, x1 -0.010599, x2 0.000000");
}

#[test]
fn adagrad_at_the_same_rate_crawls() {
    assert_eq!(printed(run(Adagrad::default().with_lr(0.4))), "epoch 20, x1 -2.382563, x2 -0.158591");
}

#[test]
fn gamma_one_diverges_and_gamma_zero_does_not() {
    let [x1, x2] = run(RmsProp::default().with_lr(0.4).with_decay(1.0));
    assert!(x1.abs() > 1e30 && x2.abs() > 1e30, "γ = 1 keeps s at 0, so steps are η g / sqrt(ε)");
    let [x1, x2] = run(RmsProp::default().with_lr(0.4).with_decay(0.0));
    assert!(x1.abs() < 1.0 && x2.abs() < 1.0);
}
