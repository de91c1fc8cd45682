//! Replays every golden case recorded from PyTorch, optax, Keras and MXNet, and the
//! chapter's own 2-D traces (the repository's `testdata/golden/`, see its README).

use std::path::PathBuf;

/// The repository's copy of the golden vectors.
fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/golden")
}

fn replay(file: &str, at_least: usize) {
    let report = rmsprop_golden::replay_file(&golden_dir().join(file)).expect("golden file readable");
    // Written past the test harness's capture, so every run shows the counts.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "golden replay: {}", report.summary());
    let failures: Vec<String> = report
        .cases
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{}: {:.3}x tolerance at {}", c.name, c.worst, c.detail))
        .collect();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), report.cases.len(), failures.join("\n"));
    assert!(
        report.cases.len() >= at_least,
        "{file}: replayed {} cases, expected at least {at_least}",
        report.cases.len()
    );
}

#[test]
fn torch() {
    replay("torch.json", 60);
}

/// timm's `RMSpropTF` (`timm.json`, the `timm` flavour): TensorFlow's order of the averages
/// (`s.add_(g² - s, alpha=1-γ)`, one fused multiply-add) on PyTorch's kernels, ε inside the
/// root, `s₀ = 1`, both momentum styles under a step-decay schedule (where they differ),
/// both weight decays — every case within its tolerance, and most bit for bit. The others
/// differ where PyTorch's `sqrt_` is not correctly rounded: on a contiguous CPU tensor ATen
/// calls MKL's vector square root (`vdSqrt`/`vsSqrt`, accurate to 1 ulp), which on the
/// recording machine's PyTorch 2.15 build rounds 1.3 % of `float64` and 15 % of `float32`
/// square roots of [0, 10) the other way (`sqrt(3.2083800216997047)` is
/// `1.791195137805958` there, `1.7911951378059578` correctly rounded). We keep the correctly
/// rounded root; the first step at which a case departs is the first such root.
#[test]
fn timm() {
    replay("timm.json", 24);
    let (off, report) = inexact("timm.json", &[]);
    assert!(report.exact() >= 9, "only {} of 24 timm cases bit-exact:\n{}", report.exact(), off.join("\n"));
}

/// A learning-rate schedule that is not one rate per step, or whose first rate is not the
/// configured one, is refused with what is wrong with it.
#[test]
fn a_schedule_that_does_not_fit_its_case_fails() {
    let text = std::fs::read_to_string(golden_dir().join("timm.json")).unwrap();
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    let case = file["cases"].as_array().unwrap().iter().find(|c| c.get("lr_schedule").is_some()).unwrap();
    assert!(rmsprop_golden::replay_case(case).passed, "the untouched case passes");
    let mut short = case.clone();
    short["lr_schedule"].as_array_mut().unwrap().pop();
    let r = rmsprop_golden::replay_case(&short);
    let steps = case["steps"].as_u64().unwrap();
    assert!(!r.passed && r.detail.contains(&format!("has {} rates for {steps} steps", steps - 1)), "{}", r.detail);
    let mut elsewhere = case.clone();
    elsewhere["lr_schedule"][0] = serde_json::json!(0.5);
    let r = rmsprop_golden::replay_case(&elsewhere);
    assert!(!r.passed && r.detail.contains("lr_schedule starts at 0.5, not at normalized.lr"), "{}", r.detail);
}

/// optax's Yogi (`yogi.json`), one tensor and several: every case within its tolerance,
/// the float32 ones bit for bit. (The float64 ones differ by an ulp after a few steps: they
/// were recorded eagerly, where `decay ** count` comes out correctly rounded, not by XLA's
/// repeated squaring under `jit`, which the optax preset's rounding reproduces.)
#[test]
fn yogi() {
    replay("yogi.json", 12);
    assert_bit_exact("yogi.json", &["float32"]);
}

/// The cases of `file` (all, or those whose name contains one of `only`) that are not
/// reproduced bit for bit, with where and by how much; and the file's report.
fn inexact(file: &str, only: &[&str]) -> (Vec<String>, rmsprop_golden::FileReport) {
    let report = rmsprop_golden::replay_file(&golden_dir().join(file)).expect("golden file readable");
    let picked = |name: &str| only.is_empty() || only.iter().any(|p| name.contains(p));
    let cases = report.cases.iter().filter(|c| picked(&c.name) && c.worst != 0.0);
    (cases.map(|c| format!("{}: {:.3}x tolerance at {}", c.name, c.worst, c.detail)).collect(), report)
}

/// Every case of `file` named by one of `only` (or every case) is bit-exact.
fn assert_bit_exact(file: &str, only: &[&str]) {
    let (off, _) = inexact(file, only);
    assert!(off.is_empty(), "not bit-exact:\n{}", off.join("\n"));
}

/// With PyTorch's own rounding ([`rmsprop::Rounding::Torch`], the preset's: its kernels'
/// fused multiply-adds, `lerp_`, `addcdiv_`'s `(-η g)/d`) its SGD, Adam and AdamW cases are
/// reproduced bit for bit, parameters and state, and so are most of the others. The rest
/// differ by ulps where the recording machine's arithmetic was not correctly rounded (in
/// `adagrad_plain/float64`, its `sqrt(2.0)` was one ulp low).
#[test]
fn torch_is_reproduced_bit_for_bit() {
    assert_bit_exact("torch.json", &["torch/sgd/", "torch/adam/", "torch/adamw/"]);
    let (off, report) = inexact("torch.json", &[]);
    let (exact, n) = (report.exact(), report.cases.len());
    assert!(exact * 4 >= n * 3, "only {exact} of {n} torch cases bit-exact:\n{}", off.join("\n"));
}

/// Keras's RMSprop is reproduced bit for bit: its `learning_rate` variable (in the case's
/// dtype), its decoupled decay (`x - x * wd * lr`) and, under XLA's rounding (the preset's),
/// `clipnorm` (the norm summed in turn in the dtype, the division by it a multiplication
/// by its reciprocal).
#[test]
fn keras_is_reproduced_bit_for_bit() {
    assert_bit_exact("keras.json", &[]);
}

/// optax's Adam and AdamW in `float32` are reproduced bit for bit with XLA's arithmetic
/// ([`rmsprop::Rounding::Xla`], the preset's): `decay ** count` by repeated squaring, a
/// bias correction applied as a multiplication by its reciprocal. (Elsewhere XLA's `rsqrt`
/// and square root on the recording machine leave ulps.)
#[test]
fn optax_adam_is_reproduced_bit_for_bit() {
    let (off, _) = inexact("optax.json", &["optax/adam/", "optax/adamw/"]);
    let off: Vec<String> = off.into_iter().filter(|c| c.contains("/float32/")).collect();
    assert!(off.is_empty(), "not bit-exact:\n{}", off.join("\n"));
}

/// MXNet 1.9's operators are reproduced bit for bit with their own rounding
/// ([`rmsprop::Rounding::Mxnet`], the preset's: `(1 - β) * g * g` left to right in the
/// centred RMSProp, Adam and AdaDelta kernels, `lr * g / sqrt(…)` in the centred step).
#[test]
fn mxnet_is_reproduced_bit_for_bit() {
    assert_bit_exact("mxnet.json", &[]);
}

#[test]
fn optax() {
    replay("optax.json", 40);
}

#[test]
fn keras() {
    replay("keras.json", 24);
}

#[test]
fn mxnet() {
    replay("mxnet.json", 46);
}

#[test]
fn d2l_chapter_traces() {
    replay("d2l_chapter.json", 7);
}

/// A case the replayer does not understand fails; it is never skipped.
#[test]
fn unknown_fields_and_variants_fail() {
    let text = std::fs::read_to_string(golden_dir().join("torch.json")).unwrap();
    let root: serde_json::Value = serde_json::from_str(&text).unwrap();
    let case = &root["cases"][0];
    assert!(rmsprop_golden::replay_case(case).passed);

    let mut extra = case.clone();
    extra["hyperparams"]["normalized"]["lookahead"] = serde_json::json!(5);
    let r = rmsprop_golden::replay_case(&extra);
    assert!(!r.passed && r.detail.contains("lookahead"), "{}", r.detail);

    let mut style = case.clone();
    style["hyperparams"]["normalized"]["momentum_style"] = serde_json::json!("sideways");
    let r = rmsprop_golden::replay_case(&style);
    assert!(!r.passed && r.detail.contains("sideways"), "{}", r.detail);

    let mut state = case.clone();
    state["state"]["mystery_buffer"] = serde_json::json!([0.0]);
    let r = rmsprop_golden::replay_case(&state);
    assert!(!r.passed && r.detail.contains("mystery_buffer"), "{}", r.detail);

    let mut wrong = case.clone();
    wrong["x"][49][3] = serde_json::json!(wrong["x"][49][3].as_f64().unwrap() + 1.0);
    let r = rmsprop_golden::replay_case(&wrong);
    assert!(!r.passed && r.detail.contains("x[50][3]"), "{}", r.detail);
}

/// The opt-in reciprocal-square-root estimate keeps every f32 case inside its tolerance
/// (f64 cases are untouched: the estimate is f32-only).
#[test]
fn fast_rsqrt_keeps_every_f32_case_in_tolerance() {
    let on = |c: &mut rmsprop::OptimizerConfig, _dtype: &str| {
        if let rmsprop::OptimizerConfig::RmsProp(r) = c {
            r.fast_rsqrt = true;
        }
    };
    for file in ["torch.json", "optax.json", "keras.json", "mxnet.json"] {
        let report = rmsprop_golden::replay_file_with(&golden_dir().join(file), &on).unwrap();
        let bad: Vec<_> =
            report.cases.iter().filter(|c| !c.passed).map(|c| format!("{}: {}", c.name, c.detail)).collect();
        assert!(bad.is_empty(), "{file}:\n{}", bad.join("\n"));
    }
}

/// A replayer is only as good as its failures: a case that cannot fail is itself a failure.
#[test]
fn cases_that_cannot_fail_are_failures() {
    let text = std::fs::read_to_string(golden_dir().join("torch.json")).unwrap();
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    let case = file["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["optimizer"] == "rmsprop" && c["state"].as_object().unwrap().len() > 1)
        .unwrap()
        .clone();
    assert!(rmsprop_golden::replay_case(&case).passed, "the untouched case passes");
    let failed = |edit: &dyn Fn(&mut serde_json::Value), says: &str| {
        let mut c = case.clone();
        edit(&mut c);
        let r = rmsprop_golden::replay_case(&c);
        assert!(!r.passed, "{says}: passed");
        assert!(r.detail.contains(says), "{}", r.detail);
    };
    // every value wrong, hidden behind a negative tolerance
    let wrong = |c: &mut serde_json::Value| {
        for row in c["x"].as_array_mut().unwrap() {
            for v in row.as_array_mut().unwrap() {
                *v = serde_json::json!(v.as_f64().unwrap() + 1.0);
            }
        }
    };
    failed(
        &|c| {
            wrong(c);
            c["tolerance"]["x_rtol"] = serde_json::json!(-1.0)
        },
        "tolerance x_rtol = -1",
    );
    failed(&|c| c["tolerance"]["state_rtol"] = serde_json::json!(-0.5), "tolerance state_rtol = -0.5");
    failed(&wrong, "x[1]");
    // nothing to replay
    failed(
        &|c| {
            c["steps"] = serde_json::json!(0);
            c["grads"] = serde_json::json!([]);
            c["x"] = serde_json::json!([]);
        },
        "0 steps",
    );
    // no recorded state: the state would never be checked
    failed(&|c| c["state"] = serde_json::json!({}), "the recorded state has no square_avg");
    failed(
        &|c| {
            c["state"].as_object_mut().unwrap().remove("square_avg");
        },
        "has no square_avg",
    );
}

#[test]
fn a_trace_with_an_absurd_step_count_fails_without_overflow() {
    let text = std::fs::read_to_string(golden_dir().join("d2l_chapter.json")).unwrap();
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    for steps in [u64::MAX, 0] {
        let mut t = file["traces"][0].clone();
        t["steps"] = serde_json::json!(steps);
        let r = rmsprop_golden::replay_trace(&t);
        assert!(!r.passed && r.detail.contains(&format!("{steps} steps")), "{}", r.detail);
    }
}

/// A golden file that says more, or other, than it checks is refused before anything is
/// replayed: a key twice (a second, lax `x_rtol` made a wrong value pass), `cases` beside
/// `traces` (one was ignored), a `traces` that is not a list, a key the format does not
/// have; a case whose framework arguments disagree with its normalised ones, or whose
/// tolerance checks nothing, fails.
#[test]
fn files_that_say_more_than_they_check_are_refused() {
    let dir = std::env::temp_dir().join(format!("rmsprop-golden-strict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(golden_dir().join("torch.json")).unwrap();
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    let case = file["cases"][0].clone();
    let one = |case: &serde_json::Value| {
        serde_json::json!({"format_version": 1, "framework": "torch", "framework_version": "2.15.0",
                           "num_cases": 1, "cases": [case]})
    };
    let refused = |name: &str, text: &str, says: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let e = rmsprop_golden::replay_file(&path).map(|r| r.summary()).unwrap_err().to_string();
        assert!(e.contains(says), "{name}: {e}");
    };
    // a wrong value behind a second, lax tolerance: parsed as one, it would pass
    let mut wrong = case.clone();
    wrong["x"][49][3] = serde_json::json!(wrong["x"][49][3].as_f64().unwrap() + 1e-3);
    let sealed = one(&wrong).to_string();
    let lax = sealed.replacen("\"x_rtol\":", "\"x_rtol\":1e300,\"x_rtol\":", 1);
    assert_ne!(lax, sealed);
    refused("duplicate.json", &lax, "the key \"x_rtol\" appears twice in one object");
    let mut both = one(&case);
    both["traces"] = serde_json::json!([]);
    refused("both.json", &both.to_string(), "both `cases` and `traces`");
    let mut not_list = one(&case);
    not_list.as_object_mut().unwrap().remove("cases");
    not_list["traces"] = serde_json::json!({"a": 1});
    refused("not-list.json", &not_list.to_string(), "`traces` is not an array");
    let mut unknown = one(&case);
    unknown["tolerance_override"] = serde_json::json!(1.0);
    refused("unknown.json", &unknown.to_string(), "unknown top-level key \"tolerance_override\"");
    let mlp = golden_dir().join("mlp/torch.json");
    let e = rmsprop_golden::replay_file(&mlp).map(|r| r.summary()).unwrap_err().to_string();
    assert!(e.contains("a whole-training file"), "{e}");

    // per case: the framework's own arguments are read and must agree
    assert!(rmsprop_golden::replay_case(&case).passed);
    let mut disagree = case.clone();
    let lr = disagree["hyperparams"]["framework"]["lr"].as_f64().unwrap();
    disagree["hyperparams"]["framework"]["lr"] = serde_json::json!(lr * 2.0);
    let r = rmsprop_golden::replay_case(&disagree);
    assert!(!r.passed && r.detail.contains("describe different optimizers (lr"), "{}", r.detail);
    let mut unknown_kwarg = case.clone();
    unknown_kwarg["hyperparams"]["framework"]["lookahead"] = serde_json::json!(5);
    let r = rmsprop_golden::replay_case(&unknown_kwarg);
    assert!(!r.passed && r.detail.contains("lookahead"), "{}", r.detail);
    let mut loose = wrong.clone();
    loose["tolerance"]["x_rtol"] = serde_json::json!(0.5);
    let r = rmsprop_golden::replay_case(&loose);
    assert!(!r.passed && r.detail.contains("x_rtol = 0.5 is above 0.1"), "{}", r.detail);
    std::fs::remove_dir_all(&dir).unwrap();
}
