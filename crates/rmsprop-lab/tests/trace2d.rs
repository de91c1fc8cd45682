//! The 2-D demonstration reproduces the chapter's traces (`testdata/golden/d2l_chapter.json`).

use rmsprop::{Adagrad, EpsPlacement, OptimizerConfig, RmsProp};
use rmsprop_lab::trace2d::{objective, objectives, run};
use std::path::PathBuf;

fn golden() -> serde_json::Value {
    let f = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/golden/d2l_chapter.json");
    let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_chapter_trace_is_reproduced() {
    let g = golden();
    let traces = g["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 7);
    let mut diverged = 0;
    for t in traces {
        let h = &t["hyperparams"];
        let (eta, eps) = (h["eta"].as_f64().unwrap(), h["eps"].as_f64().unwrap());
        let config: OptimizerConfig = match t["algorithm"].as_str().unwrap() {
            "rmsprop" => RmsProp::default()
                .with_lr(eta)
                .with_decay(h["gamma"].as_f64().unwrap())
                .with_eps(eps, EpsPlacement::InsideSqrt)
                .into(),
            _ => Adagrad::default().with_lr(eta).with_eps(eps, EpsPlacement::InsideSqrt).into(),
        };
        let name = if t["objective"].as_str().unwrap().contains("(x1+x2)") { "rotated" } else { "chapter" };
        let traj = run(&objective(name).unwrap(), config, [-5.0, -2.0], 20).unwrap();
        let expected: Vec<[f64; 2]> = serde_json::from_value(t["points"].clone()).unwrap();
        let f: Vec<f64> = serde_json::from_value(t["f"].clone()).unwrap();
        // the divergence rule, applied to the recorded trace: |x| beyond 1e6 × 5 or f beyond 1e6 × f(x0)
        let left = (1..expected.len()).find(|&k| expected[k].iter().any(|v| v.abs() > 5e6) || f[k] > 1e6 * f[0]);
        match left {
            None => assert_eq!(traj.printed(), t["printed"].as_str().unwrap(), "{}", t["name"]),
            Some(k) => {
                let d = traj.diverged.as_ref().unwrap_or_else(|| panic!("{}: not reported as diverged", t["name"]));
                assert_eq!(d.step, k as u64, "{}", t["name"]);
                assert!(traj.printed().starts_with(&format!("diverged at step {k}: ")), "{}", traj.printed());
                assert_eq!(traj.points.len(), k + 1, "the run stops where it diverged");
            }
        }
        for (k, (a, e)) in traj.points.iter().zip(&expected).enumerate() {
            for i in 0..2 {
                let scale = expected.iter().map(|p| p[i].abs()).fold(0.0, f64::max);
                assert!((a[i] - e[i]).abs() <= 1e-12 * scale, "{} point {k}: {a:?} vs {e:?}", t["name"]);
            }
        }
        diverged += usize::from(traj.diverged());
    }
    assert_eq!(diverged, 1, "the γ = 1 exercise, and only it, diverges");
}

#[test]
fn gradients_match_finite_differences() {
    for o in objectives() {
        for p in [[0.3, -0.7], [1.2, 0.4], [-2.0, 1.5]] {
            let (_, g) = (o.eval)(p);
            for i in 0..2 {
                let h = 1e-6;
                let (mut a, mut b) = (p, p);
                a[i] += h;
                b[i] -= h;
                let fd = ((o.eval)(a).0 - (o.eval)(b).0) / (2.0 * h);
                assert!((fd - g[i]).abs() <= 1e-5 * (1.0 + g[i].abs()), "{} at {p:?}: {fd} vs {}", o.name, g[i]);
            }
        }
    }
}
