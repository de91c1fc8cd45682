//! The exercises' grid: γ = 1 diverges and is reported as such.

use rmsprop_lab::data;
use rmsprop_lab::sweep::{SweepSpec, sweep, to_csv, to_markdown};
use rmsprop_lab::train::Protocol;
use std::sync::atomic::{AtomicUsize, Ordering};

#[test]
fn gamma_one_is_marked_diverged() {
    let d = data::embedded().truncated(300);
    let spec = SweepSpec {
        optimizer: "mxnet.rmsprop".into(),
        lrs: vec![0.01, 0.1],
        gammas: vec![0.0, 0.9, 1.0],
        seeds: vec![0, 1],
        protocol: Protocol::default(),
    };
    let ticks = AtomicUsize::new(0);
    let cells = sweep(&d, &spec, &|| {
        ticks.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(ticks.load(Ordering::Relaxed), 12);
    assert_eq!(cells.len(), 6);
    for c in &cells {
        assert_eq!(c.diverged(), c.gamma == Some(1.0), "lr {} gamma {:?}", c.lr, c.gamma);
        assert_eq!(c.curves.len(), 2);
    }
    let csv = to_csv(&cells);
    assert_eq!(csv.lines().filter(|l| l.contains(",diverged,2,")).count(), 2, "{csv}");
    assert!(to_markdown(&cells).contains("| diverged (2 of 2 seeds, from step "), "{}", to_markdown(&cells));
    for c in cells.iter().filter(|c| !c.diverged()) {
        let s = c.spread().unwrap();
        let finals: Vec<f64> = c.curves.iter().map(|x| x.final_loss()).collect();
        assert_eq!((s.min, s.max), (finals[0].min(finals[1]), finals[0].max(finals[1])));
        assert!(
            (s.mean - (finals[0] + finals[1]) / 2.0).abs() < 1e-15
                && (s.std - (finals[0] - finals[1]).abs() / 2.0).abs() < 1e-12
        );
    }
}

#[test]
fn invalid_grid_values_are_refused_before_running() {
    let spec = SweepSpec {
        optimizer: "mxnet.rmsprop".into(),
        lrs: vec![0.01],
        gammas: vec![1.5],
        seeds: vec![0],
        protocol: Protocol::default(),
    };
    let e = sweep(&data::embedded().truncated(50), &spec, &|| {}).unwrap_err().to_string();
    assert!(e.contains("rmsprop.decay = 1.5"), "{e}");
}
