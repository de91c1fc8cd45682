//! The MLP through candle in the chapter's loop (`rmsprop_lab::mlp`, feature `candle`; the
//! workspace's tests build it: `rmsprop-candle`'s tests enable it).
#![cfg(feature = "candle")]

use rmsprop::by_name::config;
use rmsprop_lab::data::{self, Dataset, FEATURES};
use rmsprop_lab::{mlp, train};

fn chapter_trainer() -> rmsprop::OptimizerConfig {
    config("mxnet.rmsprop", [("learning_rate", 0.01), ("gamma1", 0.9)]).unwrap()
}

/// The least mean `(x·w + b - y)² / 2` any linear model reaches on `d`: the normal
/// equations `[X 1]ᵀ[X 1] θ = [X 1]ᵀ y`, solved in f64 by Gaussian elimination.
fn best_linear_loss(d: &Dataset) -> f64 {
    const N: usize = FEATURES + 1;
    let row = |i: usize| -> [f64; N] {
        let mut r = [1.0; N];
        r[..FEATURES].iter_mut().zip(d.row(i)).for_each(|(r, x)| *r = f64::from(*x));
        r
    };
    let mut a = [[0.0f64; N + 1]; N];
    for i in 0..d.rows {
        let (r, y) = (row(i), f64::from(d.labels[i]));
        for j in 0..N {
            for k in 0..N {
                a[j][k] += r[j] * r[k];
            }
            a[j][N] += r[j] * y;
        }
    }
    for c in 0..N {
        let p = (c..N).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs())).unwrap();
        a.swap(c, p);
        for r in 0..N {
            if r != c {
                let f = a[r][c] / a[c][c];
                let pivot = a[c];
                a[r].iter_mut().zip(pivot).for_each(|(v, p)| *v -= f * p);
            }
        }
    }
    let theta: Vec<f64> = (0..N).map(|j| a[j][N] / a[j][j]).collect();
    let sq: f64 = (0..d.rows)
        .map(|i| (row(i).iter().zip(&theta).map(|(x, t)| x * t).sum::<f64>() - f64::from(d.labels[i])).powi(2) / 2.0)
        .sum();
    sq / d.rows as f64
}

/// The point of a hidden layer: in the chapter's two epochs, with the chapter's trainer,
/// the MLP ends below the best any linear model can do (the chapter's own linear runs end
/// at 0.243-0.25).
#[test]
fn the_mlp_ends_below_the_best_linear_fit() {
    let d = data::embedded();
    let best = best_linear_loss(&d);
    assert!((0.2..0.243).contains(&best), "least-squares loss {best}");
    for seed in [0, 1] {
        let protocol = train::Protocol { seed, ..Default::default() };
        let curve = mlp::train(&d, &chapter_trainer(), &protocol).unwrap();
        assert!(!curve.diverged(), "{}", curve.printed());
        // the chapter's logging: 15 points an epoch after the initial one
        assert_eq!(curve.epochs.len(), 31);
        assert!(curve.final_loss() < best, "seed {seed}: {} is not below {best}", curve.final_loss());
    }
}

#[test]
fn a_seed_fixes_the_run() {
    let d = data::embedded().truncated(300);
    let run = |seed| mlp::train(&d, &chapter_trainer(), &train::Protocol { seed, ..Default::default() }).unwrap();
    let (a, b) = (run(3), run(3));
    assert_eq!((a.epochs, a.loss), (b.epochs, b.loss));
    assert_ne!(run(3).loss, run(4).loss);
}

/// γ = 1 (an exercise): s stays 0, the step is η g/√ε and the run leaves; the curve says
/// where, as for the linear model. An invalid configuration is an error.
#[test]
fn a_diverging_run_is_an_outcome_and_an_invalid_one_an_error() {
    let d = data::embedded();
    let gamma_one = config("mxnet.rmsprop", [("learning_rate", 0.01), ("gamma1", 1.0)]).unwrap();
    let curve = mlp::train(&d, &gamma_one, &train::Protocol::default()).unwrap();
    let diverged = curve.diverged.as_ref().expect("γ = 1 diverges");
    assert!(diverged.step < 20, "{}", curve.printed());
    assert!(curve.loss.iter().all(|l| l.is_finite()));

    let negative = rmsprop::Flavor::PyTorch.rmsprop().with_lr(-0.01).into();
    let e = mlp::train(&d, &negative, &train::Protocol::default()).unwrap_err();
    assert!(e.to_string().contains("lr"), "{e}");
}
