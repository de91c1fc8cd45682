//! The chapter's training runs on the real airfoil data (the embedded copy).

use rmsprop_lab::data;
use rmsprop_lab::train::{Protocol, Update, train};

fn trainer() -> Update {
    Update::Trainer(rmsprop::by_name::config("mxnet.rmsprop", [("learning_rate", 0.01), ("gamma1", 0.9)]).unwrap())
}

#[test]
fn loads_and_standardises_the_real_file() {
    let d = data::embedded();
    assert_eq!(d.rows, 1503);
    for j in 0..data::FEATURES {
        let col: Vec<f64> = (0..d.rows).map(|i| d.row(i)[j] as f64).collect();
        let mean = col.iter().sum::<f64>() / d.rows as f64;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d.rows as f64;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "column {j}: mean {mean}, var {var}");
    }
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
