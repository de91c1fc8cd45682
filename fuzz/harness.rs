// The fuzz targets' bodies, one function per parser. Included by the targets in
// `fuzz_targets/` and by `crates/rmsprop-lab/tests/fuzz_corpus.rs`, which replays the committed
// corpus in the project's ordinary `cargo test`: every input ever found stays checked.
//
// Each takes any bytes and must return without a panic, an abort or a hang; where an input is
// accepted, what it produced must hold the promises the docs make.

#[allow(unused_imports)]
use rmsprop::{Float, MomentumStyle, Optimizer, RmsProp, by_name};
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

/// The golden reader on a whole file: duplicate keys, both `cases` and `traces`, unknown
/// top-level keys are refused; what is accepted reads the same through serde_json's own
/// (last-key-wins) reader, so no part of an accepted file is ignored.
pub fn golden_file(bytes: &[u8]) {
    let path = Path::new("fuzz.json");
    let Ok(strict) = golden::replay_bytes(bytes, path, &|_, _| {}) else { return };
    let lenient: serde_json::Value = serde_json::from_slice(bytes).expect("accepted JSON is JSON");
    let again = golden::replay_bytes(lenient.to_string().as_bytes(), path, &|_, _| {}).expect("reads again");
    let outcome = |r: &golden::FileReport| r.cases.iter().map(|c| (c.name.clone(), c.passed)).collect::<Vec<_>>();
    assert_eq!(outcome(&strict), outcome(&again), "a part of the accepted file was read two ways");
}

/// The by-name configuration: the first byte picks a name, the rest is the JSON of the
/// hyperparameters. An accepted configuration reads back the same and steps under the
/// default policy as it promises: an applied step leaves every parameter and state value
/// finite, a refused one changes nothing, and where the unchecked step stays finite the
/// checked one is applied with the same bits.
pub fn by_name(bytes: &[u8]) {
    const NAMES: [&str; 20] = [
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
        "pytorch.adam",
        "mxnet.adam",
        "optax.adamw",
        "yogi",
        "pytorch.adagrad",
        "mxnet.adadelta",
    ];
    let Some((&pick, rest)) = bytes.split_first() else { return };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(rest) else { return };
    let name = NAMES[usize::from(pick) % NAMES.len()];
    let Ok(config) = by_name::config_json(name, &json) else { return };
    // what was accepted reads back to the same configuration
    let again = by_name::config(name, by_name::hyperparameters(&config));
    assert!(again.is_ok_and(|c| c == config), "an accepted configuration does not read back");
    let x0 = [1.0, -2.0, 0.0, 3e-3];
    let grads: [[f64; 4]; 3] = [[0.5, 0.0, -1e3, 0.0], [0.0; 4], [2e-30, 1.0, 0.0, -7.0]];
    steps_as_promised::<f32>(&config, x0.map(|v| v as f32), &grads.map(|g| g.map(|v| v as f32)));
    steps_as_promised::<f64>(&config, x0, &grads);
}

/// Steps `config` from `x0` through `grads` checked (`Error`) and unchecked (`Propagate`)
/// side by side: see [`by_name`].
fn steps_as_promised<P: rmsprop::Param + rmsprop::Float>(config: &rmsprop::OptimizerConfig, x0: [P; 4], grads: &[[P; 4]]) {
    use rmsprop::{NonFinitePolicy, StepOutcome};
    let shapes = [("w", &[4][..])];
    let Ok(checked) = Optimizer::<P>::new(config.clone(), &shapes) else { return };
    let mut checked = checked.with_nonfinite_policy(NonFinitePolicy::Error);
    let mut free = Optimizer::<P>::new(config.clone(), &shapes).expect("built once").with_nonfinite_policy(NonFinitePolicy::Propagate);
    let snapshot = |o: &Optimizer<P>, x: &[P]| -> Vec<u64> {
        let mut v: Vec<u64> = x.iter().map(|x| x.to_f64().to_bits()).collect();
        for slot in o.group(0).expect("one group").state_names() {
            v.extend(o.state("w", slot).expect("kept").iter().map(|s| s.to_f64().to_bits()));
        }
        v
    };
    let finite = |bits: &[u64]| bits.iter().all(|b| f64::from_bits(*b).is_finite());
    let (mut xc, mut xf) = ([x0.to_vec()], [x0.to_vec()]);
    for g in grads {
        let before = snapshot(&checked, &xc[0]);
        let unchecked = free.step(&mut xf, &[g.to_vec()]);
        let after_free = snapshot(&free, &xf[0]);
        match checked.step(&mut xc, &[g.to_vec()]) {
            Ok(StepOutcome::Applied) => {
                let after = snapshot(&checked, &xc[0]);
                assert!(finite(&after), "an applied step wrote a non-finite value");
                assert_eq!(after, after_free, "a checked step differs from the unchecked one");
            }
            Ok(StepOutcome::Skipped) => panic!("skipped under the Error policy"),
            Err(_) => {
                assert_eq!(snapshot(&checked, &xc[0]), before, "a refused step changed something");
                assert!(unchecked.is_err() || !finite(&after_free), "a step refused whose result was finite");
                return;
            }
        }
    }
}
