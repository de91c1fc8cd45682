//! `rmsprop train --model mlp`: the MLP through candle, in a build with the `candle` feature
//! (`cargo test -p rmsprop-cli --features candle --test train_mlp`, run by `.ci/run`); in
//! the default build, a clear error saying how to get it.

mod common;
use common::{refused, tmp};

/// The default build stays light: `--model mlp` says how to build it, and writes nothing.
#[cfg(not(feature = "candle"))]
#[test]
fn without_candle_the_mlp_is_refused_with_the_way_to_build_it() {
    use common::{rmsprop, stderr};
    refused(&["train", "--model", "mlp"], "--features candle");
    let dir = tmp("mlp-without-candle");
    let o = rmsprop(&["train", "--model", "mlp", "--out", "out"], &dir);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!dir.join("out").exists(), "a refused run created its output folder");
}

#[test]
fn the_mlp_has_no_scratch_update() {
    refused(&["train", "--model", "mlp", "--impl", "scratch"], "--impl trainer");
}

/// With candle: the chapter's trainer on the MLP ends below the chapter's linear model
/// trained the same way (same seed, same batches), and the run's files are written.
#[cfg(feature = "candle")]
#[test]
fn the_mlp_trains_with_any_optimizer_by_name() {
    use common::json;
    let dir = tmp("mlp");
    let mlp = json(&["train", "--model", "mlp", "--json"], &dir);
    let linear = json(&["train", "--impl", "trainer", "--json"], &dir);
    assert_eq!((mlp["model"].as_str(), linear["model"].as_str()), (Some("mlp"), Some("linear")));
    assert_eq!(mlp["optimizer"], linear["optimizer"]);
    let (m, l) = (mlp["final_loss"].as_f64().unwrap(), linear["final_loss"].as_f64().unwrap());
    assert!(m < l, "the MLP ends at {m}, the linear model at {l}");
    for f in mlp["files"].as_array().unwrap() {
        let f = std::path::Path::new(f.as_str().unwrap());
        assert!(dir.join(f).is_file() || f.is_file(), "{f:?} not written");
        assert!(f.file_name().unwrap().to_str().unwrap().starts_with("mlp_"), "{f:?} would overwrite the linear run's");
    }
    let adam = json(&["train", "--model", "mlp", "--optimizer", "pytorch.adam", "--lr", "0.001", "--json"], &dir);
    assert!(adam["final_loss"].as_f64().unwrap() < adam["curve"]["loss"][0].as_f64().unwrap());
    let diverged = json(&["train", "--model", "mlp", "--gamma", "1", "--json"], &dir);
    assert_eq!(diverged["diverged"], true);
}
