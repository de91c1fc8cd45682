//! `rmsprop trace2d` tells the truth: the hyperparameters each run used, divergence as
//! divergence, every overlaid optimizer drawn, and no figure overwritten by the next run.

mod common;
use common::{json, refused, rmsprop, stderr, stdout, tmp};

#[test]
fn the_default_is_the_chapters_demo_and_says_what_it_used() {
    let dir = tmp("trace2d-demo");
    let o = rmsprop(&["trace2d"], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "rmsprop: epoch 20, x1 -0.010599, x2 0.000000\n  with lr=0.4 gamma=0.9 eps=1e-6 eps_placement=inside_sqrt\n"
    );
    let o = rmsprop(&["trace2d", "--lr", "0.4", "--optimizer", "rmsprop", "--optimizer", "adagrad"], &dir);
    let s = stdout(&o);
    assert!(s.contains("rmsprop: epoch 20, x1 -0.010599, x2 0.000000\n"), "{s}");
    assert!(s.contains("adagrad: epoch 20, x1 -2.382563, x2 -0.158591\n"), "{s}");
    let j = json(&["trace2d", "--gamma", "0", "--json"], &dir);
    assert_eq!(j["runs"][0]["printed"], "epoch 20, x1 -0.200026, x2 0.164056");
}

/// The JSON holds the state and the effective rate of every step: at step 1 the chapter's
/// RMSProp has `s = (1-γ) g²` and rate `η/√((1-γ) g1² + ε)` for x1, with `g1 = 0.2·(-5)`.
#[test]
fn the_json_holds_the_state_and_effective_rate_of_every_step() {
    let dir = tmp("trace2d-state");
    let j = json(&["trace2d", "--json"], &dir);
    let steps = j["runs"][0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 20);
    let (eta, gamma, eps, g1) = (0.4f64, 0.9f64, 1e-6f64, 0.2 * -5.0f64);
    assert_eq!(steps[0]["state"]["square_avg"][0].as_f64().unwrap(), (1.0 - gamma) * g1 * g1);
    assert_eq!(steps[0]["effective_lr"][0].as_f64().unwrap(), eta / ((1.0 - gamma) * g1 * g1 + eps).sqrt());
    let j = json(&["trace2d", "--optimizer", "pytorch.adam", "--json"], &dir);
    let first = &j["runs"][0]["steps"][0]["state"];
    assert!(first["exp_avg"].is_array() && first["exp_avg_sq"].is_array(), "{first}");
}

#[test]
fn gamma_one_is_reported_as_diverged_with_its_step() {
    let dir = tmp("trace2d-gamma1");
    let j = json(&["trace2d", "--gamma", "1", "--json"], &dir);
    let run = &j["runs"][0];
    assert_eq!(run["diverged"], true, "{run}");
    // γ = 1: s stays 0, the first step is 400·g and throws x2 from -2 to 3198 (loss 2e7 from 10.5)
    assert_eq!(run["diverged_at"], 1, "{run}");
    assert_eq!(run["hyperparameters"]["decay"], 1.0);
    let points = run["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "the run stops where it diverged: {run}");
    assert_eq!(points[1][1], 3198.0);
    let o = rmsprop(&["trace2d", "--gamma", "1"], &dir);
    let s = stdout(&o);
    assert!(s.starts_with("rmsprop: diverged at step 1: loss = 2.047e7"), "{s}");
    assert!(s.split(|c: char| !c.is_ascii_digit()).all(|digits| digits.len() < 12), "long numbers: {s}");
}

#[test]
fn presets_keep_their_own_defaults_and_json_says_which() {
    let dir = tmp("trace2d-pytorch");
    let j = json(&["trace2d", "--optimizer", "pytorch.rmsprop", "--json"], &dir);
    let h = &j["runs"][0]["hyperparameters"];
    assert_eq!((h["decay"].as_f64(), h["lr"].as_f64(), h["eps"].as_f64()), (Some(0.99), Some(0.01), Some(1e-8)));
    assert_eq!(h["eps_placement"], "outside_sqrt");
    let j = json(&["trace2d", "--optimizer", "pytorch.rmsprop", "--gamma", "0.5", "--lr", "0.1", "--json"], &dir);
    let h = &j["runs"][0]["hyperparameters"];
    assert_eq!((h["decay"].as_f64(), h["lr"].as_f64()), (Some(0.5), Some(0.1)));
}

#[test]
fn a_scoped_set_reaches_one_optimizer_and_all_three_are_drawn() {
    let dir = tmp("trace2d-three");
    let args = ["trace2d", "--optimizer", "rmsprop", "--optimizer", "sgd", "--optimizer", "adam"];
    let j = json(&[&args[..], &["--set", "sgd.momentum=0.9", "--json"]].concat(), &dir);
    let runs = j["runs"].as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r["optimizer"].as_str().unwrap()).collect();
    assert_eq!(names, ["rmsprop", "sgd", "adam"]);
    assert_eq!(runs[1]["hyperparameters"]["momentum"], 0.9);
    assert_eq!(runs[0]["hyperparameters"]["momentum"], 0.0);
    assert!(runs[2]["hyperparameters"].get("momentum").is_none());
    let svg = std::fs::read_to_string(j["files"][0].as_str().map(|f| dir.join(f)).unwrap()).unwrap();
    for legend in ["rmsprop (lr=0.01 gamma=0.9", "sgd (lr=0.02 momentum=0.9", "adam (lr=0.01 beta1=0.9"] {
        assert!(svg.contains(legend), "the figure has no {legend:?}");
    }
    // every trajectory is drawn: one polyline or path per run in its own colour
    for colour in ["#1F77B4", "#FF7F0E", "#2CA02C"] {
        assert!(svg.to_uppercase().contains(colour), "no line in {colour}");
    }
    refused(
        &[&args[..], &["--set", "momentum=0.9"]].concat(),
        "--set momentum=0.9 goes to every --optimizer and adam refuses it",
    );
    refused(&[&args[..], &["--set", "nadam.eps=1"]].concat(), "no --optimizer \"nadam\" in this run");
}

#[test]
fn runs_do_not_overwrite_each_other() {
    let dir = tmp("trace2d-files");
    let a = json(&["trace2d", "--gamma", "0", "--json"], &dir);
    let b = json(&["trace2d", "--gamma", "1", "--json"], &dir);
    assert_ne!(a["files"], b["files"]);
    for f in a["files"].as_array().unwrap().iter().chain(b["files"].as_array().unwrap()) {
        let f = f.as_str().unwrap();
        assert!(f.starts_with("rmsprop-out/trace2d/"), "{f}");
        assert!(dir.join(f).is_file(), "{f} is gone");
    }
    let out = dir.join("elsewhere");
    let c = json(&["trace2d", "--out", out.to_str().unwrap(), "--json"], &dir);
    assert!(c["files"][0].as_str().unwrap().starts_with(out.to_str().unwrap()));
}

#[test]
fn the_start_point_takes_the_comma_form() {
    let dir = tmp("trace2d-start");
    let j = json(&["trace2d", "--start", "3,1", "--steps", "0", "--json"], &dir);
    assert_eq!(j["runs"][0]["points"][0], serde_json::json!([3.0, 1.0]));
    let j = json(&["trace2d", "--start=-3,1", "--steps", "0", "--json"], &dir);
    assert_eq!(j["start"], serde_json::json!([-3.0, 1.0]));
    let j = json(&["trace2d", "--start", "-3,-1", "--steps", "0", "--json"], &dir);
    assert_eq!(j["start"], serde_json::json!([-3.0, -1.0]));
    refused(&["trace2d", "--start", "3"], "expected two finite numbers X,Y");
}

/// `rmsprop trace2d --json | head -c 100` ends quietly: no broken-pipe panic.
#[test]
fn a_reader_that_stops_early_ends_it_quietly() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let dir = tmp("trace2d-pipe");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rmsprop"))
        .args([
            "trace2d",
            "--steps",
            "10000",
            "--optimizer",
            "sgd",
            "--optimizer",
            "adam",
            "--optimizer",
            "adagrad",
            "--json",
        ])
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 100];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    // the pipe is closed here, with most of the output (over a megabyte) unwritten
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
    assert!(out.status.success(), "{:?}: {err}", out.status);
}
