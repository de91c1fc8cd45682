//! The chapter's training runs on the real airfoil data (`../shared/data/`).

use rmsprop_lab::data::{self, DataError};
use rmsprop_lab::train::{Protocol, Update, train};
use std::path::{Path, PathBuf};

fn data_file() -> PathBuf {
    let dir = std::env::var_os("RMSPROP_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let f = dir.join(data::FILE_NAME);
    assert!(
        f.is_file(),
        "{} not found: check out ../shared next to the repository or set RMSPROP_DATA_DIR",
        f.display()
    );
    f
}

fn trainer() -> Update {
    Update::Trainer(rmsprop::by_name::config("mxnet.rmsprop", [("learning_rate", 0.01), ("gamma1", 0.9)]).unwrap())
}

#[test]
fn loads_and_standardises_the_real_file() {
    let d = data::load(&data_file()).unwrap();
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
    let d = data::load(&data_file()).unwrap();
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
    let d = data::load(&data_file()).unwrap();
    let p = Protocol { seed: 7, ..Protocol::default() };
    let a = train(&d, &trainer(), &p).unwrap();
    let b = train(&d, &trainer(), &p).unwrap();
    assert_eq!(a.loss, b.loss);
    let c = train(&d, &trainer(), &Protocol { seed: 8, ..p }).unwrap();
    assert_ne!(a.loss, c.loss);
}

fn malformed(text: &str) -> String {
    data::parse(text, Path::new("bad.dat")).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn malformed_files_say_where() {
    assert_eq!(
        malformed("1\t2\t3\t4\t5\t6\r\n1\t2\t3\t4\t5\r\n"),
        "bad.dat:2: 5 columns, expected 6 tab-separated numbers"
    );
    assert_eq!(
        malformed("1\t2\t3\t4\t5\t6\r\n1\t2\tx\t4\t5\t6\r\n"),
        "bad.dat:2: column 3 is \"x\", expected a finite number"
    );
    assert_eq!(malformed(""), "bad.dat: the file is empty, expected 6 tab-separated numbers per line");
    let rows = data::parse("1\t2\t3\t4\t5\t6\n2\t2\t4\t5\t6\t7\n", Path::new("c.dat")).unwrap();
    let e = data::standardise(&rows, Path::new("c.dat"), data::Source::File("c.dat".into())).unwrap_err();
    assert_eq!(e.to_string(), "c.dat: column 2 has the same value 2 on every line; it cannot be standardised");
}

#[test]
fn a_missing_file_says_where_to_put_it() {
    let e = data::locate(Some(Path::new("/nonexistent/airfoil_self_noise.dat"))).unwrap_err();
    assert!(matches!(e, DataError::NotFound { .. }));
    let m = e.to_string();
    assert!(m.contains("/nonexistent/airfoil_self_noise.dat") && m.contains("RMSPROP_DATA_DIR"), "{m}");
}

#[test]
fn synthetic_data_is_labelled_and_seeded() {
    let a = data::synthetic(1503, 1);
    assert_eq!(a.source, data::Source::Synthetic { seed: 1 });
    assert_eq!(a.rows, 1503);
    assert_eq!(a.features, data::synthetic(1503, 1).features);
}

#[test]
fn the_shared_copy_is_the_published_file_and_a_corrupt_one_is_refused() {
    let mut bytes = std::fs::read(data_file()).unwrap();
    data::verify(&bytes, data::URL).unwrap();
    bytes[10] ^= 1;
    let e = data::verify(&bytes, data::URL).unwrap_err().to_string();
    assert!(e.contains("expected 76e5be1548fd8222e5074cf0faae75edff8cf93f; nothing was saved"), "{e}");
}

#[test]
fn an_explicit_path_is_never_downloaded() {
    let e = data::resolve(Some(Path::new("/nonexistent/airfoil_self_noise.dat")), false).unwrap_err().to_string();
    assert!(e.starts_with("the airfoil data set was not found; looked at /nonexistent/"), "{e}");
    assert!(!e.contains("fetching"), "{e}");
}
