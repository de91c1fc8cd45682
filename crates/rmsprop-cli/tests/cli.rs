//! The `rmsprop` command as a user runs it: offline, in an empty home, on the embedded data.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's copy of the airfoil file (the one the program embeds).
fn data_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rmsprop-lab/data/airfoil_self_noise.dat")
}

/// The repository's golden vectors.
fn golden(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/golden").join(file)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rmsprop-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `rmsprop args` in `home` (as the working directory and `$HOME`).
fn rmsprop(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rmsprop")).args(args).current_dir(home).env("HOME", home).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn chapter_with_no_flag_runs_on_the_embedded_data() {
    let dir = tmp("chapter-embedded");
    let out = dir.join("out");
    let o = rmsprop(&["chapter", "--out", out.to_str().unwrap()], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("data: the embedded airfoil data (UCI, 1503 rows), 1503 rows used\n"),
        "{}",
        stdout(&o)
    );
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("the embedded airfoil data"));
    for external in ["http://", "https://", "src=", "href=", "url("] {
        assert!(!html.contains(external), "the report refers outside itself: {external}");
    }
    for f in ["rmsprop_2d", "rmsprop_vs_adagrad", "train_scratch", "train_trainer", "sweep_heatmap", "rmsprop_rotated"]
    {
        assert!(out.join(format!("{f}.svg")).is_file() && out.join(format!("{f}.png")).is_file(), "{f}");
    }
}

#[test]
fn chapter_on_the_real_data_prints_the_books_results_next_to_ours() {
    let dir = tmp("chapter");
    let out = dir.join("out");
    let o = rmsprop(&["chapter", "--data", data_file().to_str().unwrap(), "--out", out.to_str().unwrap()], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(
        s.contains("  book: epoch 20, x1 -0.010599, x2 0.000000\n  ours: epoch 20, x1 -0.010599, x2 0.000000"),
        "{s}"
    );
    assert!(s.contains("  ours: Adagrad: epoch 20, x1 -2.382563, x2 -0.158591"), "{s}");
    let numbers: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("numbers.json")).unwrap()).unwrap();
    assert!(numbers["data"].as_str().unwrap().contains("1503 rows"));
}

#[test]
fn trace2d_overlays_optimizers() {
    let dir = tmp("trace2d");
    let o =
        rmsprop(&["trace2d", "--optimizer", "rmsprop", "--optimizer", "adagrad", "--out", dir.to_str().unwrap()], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "rmsprop: epoch 20, x1 -0.010599, x2 0.000000\nadagrad: epoch 20, x1 -2.382563, x2 -0.158591\n"
    );
    assert!(dir.join("trace2d.svg").is_file() && dir.join("trace2d.png").is_file());
    let o = rmsprop(&["trace2d", "--gamma", "0", "--json", "--out", dir.to_str().unwrap()], &dir);
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["runs"][0]["printed"], "epoch 20, x1 -0.200026, x2 0.164056");
}

#[test]
fn train_both_ways_lands_in_the_band() {
    let dir = tmp("train");
    for how in ["scratch", "trainer"] {
        let o = rmsprop(
            &[
                "train",
                "--impl",
                how,
                "--data",
                data_file().to_str().unwrap(),
                "--seed",
                "2",
                "--json",
                "--out",
                dir.to_str().unwrap(),
            ],
            &dir,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let l = j["final_loss"].as_f64().unwrap();
        assert!((0.2421..0.25).contains(&l), "{how}: {l}");
    }
    let o = rmsprop(&["train", "--data", data_file().to_str().unwrap(), "--out", dir.to_str().unwrap()], &dir);
    assert!(stdout(&o).starts_with("loss: 0.24") && stdout(&o).trim_end().ends_with("sec per epoch"), "{}", stdout(&o));
}

#[test]
fn sweep_marks_gamma_one_as_diverged() {
    let dir = tmp("sweep");
    let o = rmsprop(
        &[
            "sweep",
            "--lrs",
            "0.01",
            "--gammas",
            "0.9,1",
            "--seeds",
            "2",
            "--json",
            "--data",
            data_file().to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let cells = j["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    assert_eq!(cells[0]["diverged"], false);
    assert_eq!(cells[1]["gamma"], 1.0);
    assert_eq!(cells[1]["diverged"], true);
    assert!(std::fs::read_to_string(dir.join("sweep.csv")).unwrap().contains(",diverged"));
}

/// Bad input: exit code 1 and one line that says what is wrong.
fn refused(args: &[&str], expected: &str) {
    let dir = tmp("refused");
    let o = rmsprop(args, &dir);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{args:?}: not one line: {e}");
    assert!(e.starts_with("error: ") && e.contains(expected), "{args:?}: {e}");
}

#[test]
fn bad_input_gets_one_clear_line() {
    refused(&["trace2d", "--optimizer", "rmsprops"], "unknown optimizer \"rmsprops\"");
    refused(&["trace2d", "--set", "gamma3=0.9"], "unknown hyperparameter \"gamma3\" for rmsprop");
    refused(&["trace2d", "--gamma", "1.5"], "rmsprop.decay = 1.5");
    refused(&["trace2d", "--objective", "moon"], "unknown objective \"moon\"");
    refused(&["train", "--impl", "trainer", "--lr", "-1"], "rmsprop.lr = -1");
    refused(&["train", "--data", "/nonexistent/airfoil_self_noise.dat"], "/nonexistent/airfoil_self_noise.dat: ");
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
fn every_subcommand_has_help_with_examples() {
    let dir = tmp("help");
    for sub in ["chapter", "trace2d", "train", "sweep", "replay"] {
        let o = rmsprop(&[sub, "--help"], &dir);
        assert!(o.status.success());
        assert!(stdout(&o).contains("Example"), "{sub} --help has no examples");
    }
}

#[test]
fn replay_reports_golden_files() {
    let dir = tmp("replay");
    let golden = golden("d2l_chapter.json");
    let o = rmsprop(&["replay", golden.to_str().unwrap()], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(": 7 passed ("), "{}", stdout(&o));
    assert!(stdout(&o).ends_with(" bit-exact), 0 failed\n"), "{}", stdout(&o));
}

/// `rmsprop bench --json` emits the documented fields (values are not checked: speed
/// is measured in benchmarks, never asserted in tests).
#[test]
fn bench_json_has_the_documented_fields() {
    let dir = tmp("bench");
    let o = rmsprop(
        &["bench", "--sizes", "1e3", "--threads", "1", "--model-sizes", "2e3", "--rounds", "2", "--quick", "--json"],
        &dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rows = j["results"].as_array().unwrap();
    let variants: Vec<&str> = rows.iter().map(|r| r["variant"].as_str().unwrap()).collect();
    for v in ["probe", "plain", "plain_rsqrt", "plain_checked", "centered", "momentum"] {
        assert!(variants.contains(&v), "{v} missing from {variants:?}");
    }
    assert!(rows.iter().any(|r| r["layout"] == "model"));
    for r in rows {
        for key in [
            "variant",
            "layout",
            "n",
            "threads",
            "seconds_per_step",
            "elements_per_s",
            "gb_per_s",
            "probe_gb_per_s",
            "ratio_to_probe",
        ] {
            assert!(!r[key].is_null(), "{key} missing in {r}");
        }
        assert_eq!(r["rounds"], 2, "{r}");
    }
    refused(&["bench", "--sizes", "ten"], "\"ten\" is not a number");
}
