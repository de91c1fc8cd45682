//! Bad input exits 1 with one line that says what is wrong, or `{"error": ...}` under `--json`.

mod common;
use common::{refused, rmsprop, stderr, stdout, tmp};

#[test]
fn bad_input_gets_one_clear_line() {
    refused(&["trace2d", "--optimizer", "rmsprops"], "unknown optimizer \"rmsprops\"");
    refused(&["trace2d", "--set", "gamma3=0.9"], "unknown hyperparameter \"gamma3\" for rmsprop");
    refused(&["trace2d", "--gamma", "2"], "invalid value '2' for '--gamma <GAMMA>': expected a number from 0 to 1");
    refused(&["trace2d", "--gamma", "1.5"], "--gamma");
    refused(&["trace2d", "--lr", "-1"], "invalid value '-1' for '--lr <LR>'");
    refused(&["trace2d", "--objective", "moon"], "unknown objective \"moon\"");
    refused(&["trace2d", "--optimizer", "adam", "--gamma", "0.9"], "--gamma sets RMSProp's decay");
    refused(
        &["trace2d", "--optimizer", "rmsprop,adam"],
        "error: --optimizer \"rmsprop,adam\": one optimizer per flag, repeat it (--optimizer rmsprop --optimizer adam)",
    );
    // numbers as written, not forty digits
    refused(
        &["trace2d", "--set", "decay=1e39"],
        "error: --set decay=1e39: invalid hyperparameter rmsprop.decay = 1e39: expected a number in [0, 1]",
    );
    refused(&["trace2d", "--set", "lr=-2.5e-12"], "invalid hyperparameter rmsprop.lr = -2.5e-12: expected");
    // named as the user wrote it (PyTorch's alpha is RMSProp's decay)
    refused(
        &["trace2d", "--optimizer", "pytorch.rmsprop", "--set", "alpha=2"],
        "error: --set alpha=2: invalid hyperparameter rmsprop.alpha = 2: expected a number in [0, 1]",
    );
    // one value from two flags: refused, whatever the spelling
    refused(
        &["trace2d", "--lr", "0.1", "--set", "learning_rate=0.2"],
        "error: --lr 0.1 and --set learning_rate=0.2 both set rmsprop's learning rate: give one of them",
    );
    refused(
        &["trace2d", "--optimizer", "pytorch.rmsprop", "--gamma", "0.9", "--set", "alpha=0.8"],
        "error: --gamma 0.9 and --set alpha=0.8 both set pytorch.rmsprop's decay γ: give one of them",
    );
    // the command's own defaults (the demo's lr 0.4, the Trainer's γ 0.9) are not typed
    // flags: a --set replaces them
    let dir = tmp("set-replaces-defaults");
    let o = rmsprop(&["trace2d", "--set", "lr=0.2", "--out", "t"], &dir);
    assert!(o.status.success() && stdout(&o).contains("with lr=0.2 "), "{}{}", stdout(&o), stderr(&o));
    let o = rmsprop(&["train", "--impl", "trainer", "--set", "gamma1=0.8", "--epochs", "1", "--out", "t"], &dir);
    assert!(o.status.success() && stdout(&o).contains("gamma1=0.8"), "{}{}", stdout(&o), stderr(&o));
    refused(&["trace2d", "--bogus"], "unexpected argument '--bogus'");
    refused(&["trace2d", "--steps", "many"], "--steps");
    refused(&["train", "--impl", "trainer", "--lr", "-1"], "--lr");
    refused(&["train", "--impl", "scratch", "--set", "eps=1"], "--impl scratch is the book's RMSProp");
    refused(&["train", "--data", "/nonexistent/airfoil_self_noise.dat"], "/nonexistent/airfoil_self_noise.dat: ");
    refused(&["train", "--rows", "0"], "--rows 0: expected 1 to 1503");
    refused(&["sweep", "--seeds", "0"], "--seeds");
    refused(&["bench", "--sizes", "ten"], "\"ten\" is not a number");
    refused(&[], "a subcommand is required");
    let dir = tmp("malformed");
    for (name, text, expected) in [
        ("cols.dat", "1\t2\t3\t4\t5\t6\r\n1\t2\t3\t4\t5\r\n", "cols.dat:2: 5 columns, expected 6"),
        ("nan.dat", "1\t2\t3\t4\t5\t6\r\n1\t2\tx\t4\t5\t6\r\n", "nan.dat:2: column 3 is \"x\""),
        ("empty.dat", "", "empty.dat: the file is empty"),
        ("const.dat", "1\t2\t3\t4\t5\t6\n2\t2\t4\t5\t6\t7\n", "const.dat: column 2 has the same value 2"),
    ] {
        let f = dir.join(name);
        std::fs::write(&f, text).unwrap();
        refused(&["train", "--data", f.to_str().unwrap()], expected);
    }
}

#[test]
fn json_errors_are_json_on_stdout() {
    let dir = tmp("json-error");
    for (args, expected) in [
        (&["trace2d", "--gamma", "2", "--json"][..], "--gamma"),
        (&["trace2d", "--optimizer", "nope", "--json"][..], "unknown optimizer \"nope\""),
        (&["train", "--json", "--data", "/nonexistent/x.dat"][..], "/nonexistent/x.dat"),
        (&["replay", "/nonexistent/golden.json", "--json"][..], "/nonexistent/golden.json"),
    ] {
        let o = rmsprop(args, &dir);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let msg = j["error"].as_str().unwrap_or_else(|| panic!("{args:?}: {j}"));
        assert!(msg.contains(expected), "{args:?}: {msg}");
        assert!(stderr(&o).is_empty(), "{args:?}: {}", stderr(&o));
    }
}

/// A case that cannot be replayed says why, not "worst infx tolerance at ..."; a whole-training
/// file says what it is and how to replay it.
#[test]
fn replay_failures_say_what_happened() {
    let dir = tmp("replay-failures");
    let f = dir.join("bad.json");
    std::fs::write(&f, r#"{"format_version":1,"cases":[{"name":"x"}]}"#).unwrap();
    let o = rmsprop(&["replay", f.to_str().unwrap()], &dir);
    assert_eq!(o.status.code(), Some(1));
    let expected = format!(
        "{}: 0 passed (0 bit-exact), 1 failed\n  FAIL x: not replayed: unreadable case: missing field `variant`\n",
        f.display()
    );
    assert_eq!(stdout(&o), expected);
    let mlp = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/golden/mlp/torch.json");
    let o = rmsprop(&["replay", mlp], &dir);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("a whole-training file") && err.contains("cargo run -p rmsprop-candle --example replay_mlp"),
        "{err}"
    );
}

#[test]
fn help_and_version_succeed() {
    let dir = tmp("help");
    for sub in ["chapter", "trace2d", "train", "sweep", "bench", "replay"] {
        let o = rmsprop(&[sub, "--help"], &dir);
        assert!(o.status.success());
        assert!(stdout(&o).contains("Example"), "{sub} --help has no examples");
    }
    let o = rmsprop(&["--version"], &dir);
    assert!(o.status.success() && stdout(&o).starts_with("rmsprop "));
    // `help` and `help --help` both print the command's help
    let help = stdout(&rmsprop(&["--help"], &dir));
    assert!(help.contains("Usage: rmsprop"), "{help}");
    for args in [&["help"][..], &["help", "--help"], &["help", "-h"]] {
        let o = rmsprop(args, &dir);
        assert!(o.status.success() && stdout(&o).contains("Usage: rmsprop"), "{args:?}: {}", stderr(&o));
    }
}

/// "Scope it" advice only where the run has several optimizers to scope a `--set` among.
#[test]
fn scope_advice_only_with_several_optimizers() {
    let dir = tmp("scope-advice");
    let one = stderr(&rmsprop(&["trace2d", "--optimizer", "pytorch.rmsprop", "--set", "alpah=0.9"], &dir));
    assert!(
        one.starts_with(
            "error: --set alpah=0.9: unknown hyperparameter \"alpah\" for rmsprop (did you mean \"alpha\"?)"
        ),
        "{one}"
    );
    assert!(!one.contains("scope it"), "{one}");
    let two =
        stderr(&rmsprop(&["trace2d", "--optimizer", "rmsprop", "--optimizer", "adam", "--set", "momentum=0.9"], &dir));
    assert!(two.contains("goes to every --optimizer and adam refuses it (scope it"), "{two}");
}
