//! The exercises' grid: γ = 1 diverges and is reported as such; spread over processes,
//! the same grid.

use rmsprop_lab::data;
use rmsprop_lab::sweep::{SweepSpec, assemble, sweep, sweep_part, to_csv, to_markdown};
use rmsprop_lab::train::{Curve, Protocol, Share};
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
        hyperparameters: vec![],
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
    assert!(to_markdown(&cells).contains("| diverged (2 of 2 seeds, first at step "), "{}", to_markdown(&cells));
    // the seed the table names is one that diverged at the step it names, the earliest
    for c in cells.iter().filter(|c| c.diverged()) {
        let (step, seed) = c.first_diverged().unwrap();
        let steps: Vec<u64> = c.curves.iter().map(|x| x.diverged.as_ref().unwrap().step).collect();
        let at = c.seeds.iter().position(|&s| s == seed).unwrap();
        assert_eq!((steps[at], steps.iter().min().copied()), (step, Some(step)), "{steps:?} seeds {:?}", c.seeds);
        assert!(c.summary().ends_with(&format!("first at step {step}, seed {seed})")), "{}", c.summary());
    }
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
        hyperparameters: vec![],
    };
    let e = sweep(&data::embedded().truncated(50), &spec, &|| {}).unwrap_err().to_string();
    assert!(e.contains("rmsprop.decay = 1.5"), "{e}");
}

/// Everything of a curve but its timing (NaN equal to NaN).
fn same_run(a: &Curve, b: &Curve) -> bool {
    let value = |c: &Curve| c.diverged.as_ref().map(|d| (d.step, d.what.clone(), d.reason.clone(), d.bound));
    let bits =
        |c: &Curve| c.diverged.as_ref().map(|d| if d.value.is_nan() { f64::NAN.to_bits() } else { d.value.to_bits() });
    a.epochs == b.epochs
        && a.loss == b.loss
        && a.diverged_epoch == b.diverged_epoch
        && a.effective_lr == b.effective_lr
        && value(a) == value(b)
        && bits(a) == bits(b)
}

/// Each process runs every `size`-th run; its curves travel as JSON (as `rmsprop sweep
/// --distributed` sends them) and the cells put together are the one process's.
#[test]
fn spread_over_processes_the_grid_is_the_same() {
    let d = data::embedded().truncated(300);
    let spec = SweepSpec {
        optimizer: "pytorch.rmsprop".into(),
        lrs: vec![0.01, 0.1],
        gammas: vec![0.9, 1.0],
        seeds: vec![0, 1, 2],
        protocol: Protocol::default(),
        hyperparameters: vec![],
    };
    let alone = sweep(&d, &spec, &|| ()).unwrap();
    assert!(alone.iter().any(|c| c.diverged()) && alone.iter().any(|c| !c.diverged()));
    for size in [2, 3, 5, 13] {
        let parts: Vec<Vec<Curve>> = (0..size)
            .map(|rank| {
                let mine = sweep_part(&d, &spec, Share { rank, size }, &|| ()).unwrap();
                serde_json::from_str(&serde_json::to_string(&mine).unwrap()).unwrap()
            })
            .collect();
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 12);
        let cells = assemble(&spec, parts).unwrap();
        assert_eq!(cells.len(), alone.len());
        for (c, a) in cells.iter().zip(&alone) {
            assert_eq!((c.lr, c.gamma), (a.lr, a.gamma));
            assert!(
                c.curves.iter().zip(&a.curves).all(|(x, y)| same_run(x, y)),
                "{size} processes: lr {} gamma {:?}",
                c.lr,
                c.gamma
            );
        }
        assert_eq!(to_csv(&cells), to_csv(&alone));
    }
    // curves that are not the grid's runs: an error, not a wrong table
    let part = sweep_part(&d, &spec, Share::ALL, &|| ()).unwrap();
    let short = vec![part[..11].to_vec()];
    assert!(assemble(&spec, short).unwrap_err().to_string().contains("12 runs came back from 1 processes as [11]"));
    assert!(assemble(&spec, vec![]).is_err());
    assert!(assemble(&spec, vec![part.clone(), part]).is_err());
}
