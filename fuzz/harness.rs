// The fuzz targets' bodies, one function per parser. Included by the targets in
// `fuzz_targets/` and by `crates/rmsprop-lab/tests/fuzz_corpus.rs`, which replays the committed
// corpus in the project's ordinary `cargo test`: every input ever found stays checked.
//
// Each takes any bytes and must return without a panic, an abort or a hang; where an input is
// accepted, what it produced must hold the promises the docs make.

#[allow(unused_imports)]
use rmsprop::{MomentumStyle, Optimizer, RmsProp, by_name};
use rmsprop_golden as golden;
#[allow(unused_imports)]
use std::path::Path;

/// The airfoil parser: a dataset of finite standardised values, or an error.
pub fn data(bytes: &[u8]) {
    if let Ok(d) = rmsprop_lab::data::from_bytes(bytes, Path::new("fuzz.dat")) {
        assert_eq!(d.features.len(), d.rows * rmsprop_lab::data::FEATURES);
        assert_eq!(d.labels.len(), d.rows);
        assert!(d.features.iter().chain(&d.labels).all(|v| v.is_finite()), "a standardised value is not finite");
    }
}

/// The checkpoint loader: a refused load changes nothing; an accepted one can step.
pub fn checkpoint(bytes: &[u8]) {
    let config = RmsProp::default().with_centered(true).with_momentum(0.9, MomentumStyle::LrOutsideBuffer);
    let mut opt = Optimizer::<f32>::new(config, &[("w", &[5, 1][..]), ("b", &[1][..])]).expect("valid");
    let state = |o: &Optimizer<f32>| {
        let names = ["square_avg", "grad_avg", "momentum_buffer"];
        let arrays: Vec<Vec<u32>> = ["w", "b"]
            .iter()
            .flat_map(|t| names.iter().map(move |n| (t, n)))
            .map(|(t, n)| o.state(t, n).expect("kept").iter().map(|v| v.to_bits()).collect())
            .collect();
        (arrays, o.step_count(), o.skipped_steps())
    };
    let before = state(&opt);
    match opt.load_bytes(bytes, Path::new("fuzz.safetensors")) {
        Ok(()) => {
            let square_avg = opt.state("w", "square_avg").expect("kept");
            assert!(square_avg.iter().all(|v| v.is_finite() && *v >= 0.0), "a loaded square average is invalid");
            let _ = opt.step(&mut [vec![0.1f32; 5], vec![0.0]], &[vec![0.5f32; 5], vec![-0.5]]);
        }
        Err(_) => assert!(state(&opt) == before, "a refused load changed the optimizer"),
    }
}

/// The golden reader: any JSON is replayed as a case and as a trace, or refused.
pub fn golden(bytes: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
        let case = golden::replay_case(&value);
        let trace = golden::replay_trace(&value);
        assert!(case.worst.is_nan() || case.worst >= 0.0 || !case.passed);
        assert!(trace.worst.is_nan() || trace.worst >= 0.0 || !trace.passed);
    }
}

/// The by-name configuration: the first byte picks a name, the rest is the JSON of the
/// hyperparameters. An accepted configuration builds an optimizer that can step.
pub fn by_name(bytes: &[u8]) {
    const NAMES: [&str; 14] = [
        "rmsprop",
        "pytorch.rmsprop",
        "mxnet.rmsprop",
        "optax.rmsprop",
        "keras.rmsprop",
        "tf1.rmsprop",
        "burn.rmsprop",
        "adam",
        "pytorch.adamw",
        "adagrad",
        "sgd",
        "adadelta",
        "optax.adam",
        "mxnet.sgd",
    ];
    let Some((&pick, rest)) = bytes.split_first() else { return };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(rest) else { return };
    let Ok(config) = by_name::config_json(NAMES[usize::from(pick) % NAMES.len()], &json) else { return };
    // what was accepted reads back to the same configuration
    let again = by_name::config(NAMES[usize::from(pick) % NAMES.len()], by_name::hyperparameters(&config));
    assert!(again.is_ok_and(|c| c == config), "an accepted configuration does not read back");
    if let Ok(mut opt) = Optimizer::<f32>::new(config.clone(), &[("w", &[3][..])]) {
        let _ = opt.step(&mut [vec![1.0f32, -2.0, 0.0]], &[vec![0.5f32, 0.0, -1e3]]);
    }
    if let Ok(mut opt) = Optimizer::<f64>::new(config, &[("w", &[3][..])]) {
        let _ = opt.step(&mut [vec![1.0f64, -2.0, 0.0]], &[vec![0.5f64, 0.0, -1e3]]);
    }
}
