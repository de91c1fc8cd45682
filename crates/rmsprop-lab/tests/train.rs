//! The chapter's training runs on the real airfoil data (the embedded copy).

use rmsprop_lab::data;
use rmsprop_lab::train::{Protocol, Update, train};

fn trainer() -> Update {
    Update::Trainer(rmsprop::by_name::config("mxnet.rmsprop", [("learning_rate", 0.01), ("gamma1", 0.9)]).unwrap())
}

#[test]
fn scratch_and_trainer_land_where_mxnet_does() {
    let d = data::embedded();
    for seed in [0, 1, 2, 3] {
        let p = Protocol { seed, ..Protocol::default() };
        for (name, update) in [("scratch", Update::Scratch { lr: 0.01, gamma: 0.9 }), ("trainer", trainer())] {
            let c = train(&d, &update, &p).unwrap();
            assert_eq!(c.loss.len(), 31, "{name}: 15 logs per epoch and the initial loss");
            assert_eq!(c.epochs.last(), Some(&2.0));
            let l = c.final_loss();
            assert!((0.2421..0.25).contains(&l), "{name} seed {seed}: final loss {l}");
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_curve() {
    let d = data::embedded();
    let p = Protocol { seed: 7, ..Protocol::default() };
    let a = train(&d, &trainer(), &p).unwrap();
    let b = train(&d, &trainer(), &p).unwrap();
    assert_eq!(a.loss, b.loss);
    let c = train(&d, &trainer(), &Protocol { seed: 8, ..p }).unwrap();
    assert_ne!(a.loss, c.loss);
}

/// γ = 1 leaves s at 0: every step is η g / sqrt(ε), the weights explode, and the run stops
/// where it does, saying so, with only finite losses in its curve.
#[test]
fn a_diverging_run_stops_and_says_where() {
    let d = data::embedded();
    let gamma1 = rmsprop::by_name::config("mxnet.rmsprop", [("learning_rate", 0.01), ("gamma1", 1.0)]).unwrap();
    for update in [Update::Scratch { lr: 0.01, gamma: 1.0 }, Update::Trainer(gamma1)] {
        let c = train(&d, &update, &Protocol::default()).unwrap();
        let div = c.diverged.as_ref().unwrap_or_else(|| panic!("{update:?} did not diverge: {}", c.printed()));
        assert!(div.step >= 1 && div.step < 151, "{div:?}");
        assert!(c.loss.iter().all(|l| l.is_finite()) && c.loss.len() == c.epochs.len(), "{c:?}");
        let e = c.diverged_epoch.unwrap();
        assert!((e - div.step as f64 / 151.0).abs() < 1e-12, "epoch {e} of step {}", div.step);
        assert!(c.printed().starts_with(&format!("diverged at step {} (epoch ", div.step)), "{}", c.printed());
        assert!(!c.printed().contains("NaN"));
    }
    // the same rule does not fire on the chapter's own runs
    for update in [Update::Scratch { lr: 0.01, gamma: 0.9 }, trainer()] {
        assert!(!train(&d, &update, &Protocol::default()).unwrap().diverged());
    }
}

/// On a large file the whole-set loss is logged at most `MAX_LOGS_PER_EPOCH` times an
/// epoch, so the logging stays linear in the file's size (before: every 100 examples, a
/// pass over all rows each time — 4 s on 10 MB, ~12 min on 100 MB); the book's data keeps
/// the book's 15 points an epoch (the test above).
#[test]
fn a_large_file_logs_a_bounded_number_of_points() {
    let rows = 50_000;
    let text: String = (0..rows)
        .map(|i| {
            let v = |k: usize| ((i * 7 + k * 13) % 101) as f64 / 10.0;
            format!("{}\t{}\t{}\t{}\t{}\t{}\n", v(0), v(1), v(2), v(3), v(4), v(5) + 100.0)
        })
        .collect();
    let d = data::from_bytes(text.as_bytes(), "large.dat".as_ref()).unwrap();
    let p = Protocol::default();
    assert_eq!(p.log_interval(d.rows), 500, "50,000 rows: every 500 examples");
    let c = train(&d, &trainer(), &p).unwrap();
    assert_eq!(c.loss.len(), 2 * rmsprop_lab::train::MAX_LOGS_PER_EPOCH + 1);
    assert_eq!(c.epochs.last(), Some(&2.0));
}
