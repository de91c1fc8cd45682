//! The `rmsprop` command as a user runs it: offline, in an empty folder, on the embedded data.

mod common;
use common::{data_file, golden, json, rmsprop, stderr, stdout, tmp};

/// The chapter's band: the final loss of both trainings over seeds in MXNet 1.9.1.
const BAND: std::ops::Range<f64> = 0.2421..0.25;

/// The final loss in a printed line `loss: 0.245398, 0.000057 sec per epoch`.
fn printed_loss(line: &str) -> f64 {
    let rest = line.split("loss: ").nth(1).unwrap_or_else(|| panic!("no loss in {line:?}"));
    rest.split(',').next().unwrap().parse().unwrap()
}

#[test]
fn chapter_with_no_flag_runs_on_the_embedded_data() {
    let dir = tmp("chapter-embedded");
    let o = rmsprop(&["chapter"], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.starts_with("data: the embedded airfoil data (UCI, 1503 rows), 1503 rows used\n"), "{s}");
    assert!(
        s.contains("  book: epoch 20, x1 -0.010599, x2 0.000000\n  ours: rmsprop: epoch 20, x1 -0.010599, x2 0.000000")
            || s.contains("  book: epoch 20, x1 -0.010599, x2 0.000000\n  ours: epoch 20, x1 -0.010599, x2 0.000000"),
        "{s}"
    );
    assert!(s.contains("  ours: Adagrad: epoch 20, x1 -2.382563, x2 -0.158591"), "{s}");
    assert!(s.contains("  ours: γ = 1: diverged at step 1"), "{s}");
    let losses: Vec<f64> = s.lines().filter(|l| l.starts_with("  ours: loss: ")).map(printed_loss).collect();
    assert_eq!(losses.len(), 2, "{s}");
    for l in losses {
        assert!(BAND.contains(&l), "final loss {l} outside the chapter's band");
    }
    // D2L §12.6's momentum_2d (η 0.6, β 0.5) prints this end point; we run it as pytorch.sgd
    assert!(s.contains("  ours: momentum: epoch 20, x1 0.007188, x2 0.002553"), "{s}");
    // whole quantities print whole: a horizon of 10, epoch 2
    assert!(s.contains("  ours: γ = 0.9: horizon 10, weight of the last gradient 0.1\n"), "{s}");
    assert!(s.contains("  ours: from scratch, epoch 2: median "), "{s}");
    let out = dir.join("rmsprop-chapter");
    // the figures' titles write η and γ as the text does (the embedded font has them)
    let svg = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    assert!(svg("effective_lr.svg").contains("effective learning rate η/√(s + ε), η = 0.4"));
    assert!(svg("leaky_average_weights.svg").contains("weight (1 − γ) γᵏ of the squared gradient"));
    assert!(svg("sweep_curves.svg").contains("η = 0.01, by γ (seed 0)") && svg("sweep_curves.svg").contains("γ = 0.9"));
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("the embedded airfoil data"));
    assert!(html.contains("Hyperparameters used: RMSProp: lr=0.4 gamma=0.9 eps=1e-6"), "no hyperparameters");
    for external in ["http://", "https://", "src=", "href=", "url("] {
        assert!(!html.contains(external), "the report refers outside itself: {external}");
    }
    // one self-contained file, the explorer's runs included, under a megabyte
    assert!(html.contains("id=\"explorer-data\"") && html.contains("id=\"explorer-lr\""), "no explorer");
    assert!(html.len() < 1_000_000, "the report is {} bytes", html.len());
    for f in [
        "rmsprop_2d",
        "rmsprop_vs_adagrad",
        "effective_lr",
        "leaky_average_weights",
        "rmsprop_momentum_adam",
        "train_scratch",
        "train_trainer",
        "train_effective_lr",
        "sweep_heatmap",
        "rmsprop_rotated",
    ] {
        assert!(out.join(format!("{f}.svg")).is_file() && out.join(format!("{f}.png")).is_file(), "{f}");
    }
    let numbers: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("numbers.json")).unwrap()).unwrap();
    assert_eq!(numbers["rows"], 1503);
}

/// The book column holds only what the book prints, runs or asks; our notes are in ours.
#[test]
fn chapter_json_keeps_the_books_words_apart_from_ours() {
    let dir = tmp("chapter-json");
    let j = json(&["chapter", "--json", "--data", data_file().to_str().unwrap(), "--out", "ch"], &dir);
    assert!(j["data"].as_str().unwrap().starts_with("airfoil data from "), "{}", j["data"]);
    let sections = j["sections"].as_array().unwrap();
    for s in sections {
        for line in s["book"].as_array().unwrap() {
            let line = line.as_str().unwrap();
            for ours in ["MXNet 1.9.1", "least-squares", "diverge", "expected", "band"] {
                assert!(!line.contains(ours), "the book column says {ours:?}: {line}");
            }
        }
        assert!(!s["hyperparameters"].as_array().unwrap().is_empty(), "{}", s["title"]);
    }
    let asks: Vec<&str> =
        sections.iter().flat_map(|s| s["book"].as_array().unwrap()).filter_map(|l| l.as_str()).collect();
    assert!(asks.contains(&"What happens experimentally if we set γ = 1? Why?"), "{asks:?}");
}

#[test]
fn train_both_ways_lands_in_the_band_and_says_what_it_used() {
    let dir = tmp("train");
    for how in ["scratch", "trainer"] {
        let j = json(&["train", "--impl", how, "--seed", "2", "--json"], &dir);
        let l = j["final_loss"].as_f64().unwrap();
        assert!(BAND.contains(&l), "{how}: {l}");
        assert_eq!(j["hyperparameters"]["lr"], 0.01, "{how}");
        assert_eq!(j["hyperparameters"]["decay"], 0.9, "{how}");
        assert_eq!(j["diverged"], false);
    }
    let j = json(&["train", "--impl", "trainer", "--json"], &dir);
    assert_eq!(
        (j["optimizer"].as_str(), j["hyperparameters"]["precision"].as_str()),
        (Some("mxnet.rmsprop"), Some("float32"))
    );
    let o = rmsprop(&["train"], &dir);
    assert!(stdout(&o).starts_with("scratch: loss: 0.24"), "{}", stdout(&o));
    assert!(stdout(&o).contains("sec per epoch\n  with lr=0.01 gamma=0.9 eps=1e-6"), "{}", stdout(&o));
    // a preset named explicitly keeps its own defaults
    let j = json(&["train", "--impl", "trainer", "--optimizer", "pytorch.rmsprop", "--json"], &dir);
    assert_eq!((j["hyperparameters"]["lr"].as_f64(), j["hyperparameters"]["decay"].as_f64()), (Some(0.01), Some(0.99)));
    assert!(
        dir.join("rmsprop-out/train/scratch.svg").is_file()
            && dir.join("rmsprop-out/train/scratch_seed=2.csv").is_file()
    );
}

#[test]
fn train_says_diverged_instead_of_nan() {
    let dir = tmp("train-diverged");
    for how in ["scratch", "trainer"] {
        let o = rmsprop(&["train", "--impl", how, "--gamma", "1"], &dir);
        assert!(o.status.success(), "{}", stderr(&o));
        let s = stdout(&o);
        assert!(s.contains(": diverged at step ") && !s.contains("NaN") && !s.contains("loss: "), "{how}: {s}");
        let j = json(&["train", "--impl", how, "--gamma", "1", "--json"], &dir);
        assert_eq!(j["diverged"], true);
        assert!(j["diverged_at"].as_u64().unwrap() >= 1);
        assert!(j["final_loss"].is_null(), "{}", j["final_loss"]);
    }
}

#[test]
fn sweep_shows_the_spread_and_marks_gamma_one_as_diverged() {
    let dir = tmp("sweep");
    let j = json(&["sweep", "--lrs", "0.01", "--gammas", "0.9,1", "--seeds", "2", "--json", "--rows", "400"], &dir);
    let cells = j["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    assert_eq!(cells[0]["diverged"], false);
    let spread = &cells[0]["spread"];
    let (min, max, mean) =
        (spread["min"].as_f64().unwrap(), spread["max"].as_f64().unwrap(), spread["mean"].as_f64().unwrap());
    let finals: Vec<f64> = cells[0]["final_losses"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(finals.len(), 2);
    assert!(min < max && min <= mean && mean <= max, "{spread}");
    assert_eq!((min, max), (finals[0].min(finals[1]), finals[0].max(finals[1])));
    assert_eq!(cells[1]["gamma"], 1.0);
    assert_eq!((cells[1]["diverged"].as_bool(), cells[1]["diverged_seeds"].as_u64()), (Some(true), Some(2)));
    assert!(cells[1]["mean_final_loss"].is_null());
    let o = rmsprop(&["sweep", "--lrs", "0.01", "--gammas", "0.9,1", "--seeds", "2", "--rows", "400"], &dir);
    let s = stdout(&o);
    assert!(s.contains(&format!("{mean:.6} ({min:.6}–{max:.6})")), "{s}");
    let (step, seed) = (cells[1]["first_diverged_step"].as_u64().unwrap(), cells[1]["first_diverged_seed"].as_u64());
    assert!(s.contains(&format!("diverged (2 of 2 seeds, first at step {step}, seed {})", seed.unwrap())), "{s}");
    assert!(!s.contains("NaN"), "{s}");
    // the grid's values, in MXNet's names, not the preset's unused learning rate
    assert!(s.ends_with("\nwith learning_rate=0.01 gamma1=0.9,1 epsilon=1e-8 eps_placement=inside_sqrt\n"), "{s}");
    let csv =
        std::fs::read_to_string(dir.join("rmsprop-out/sweep/mxnet.rmsprop_lrs=0.01_gammas=0.9+1_seeds=2_rows=400.csv"))
            .unwrap();
    assert!(csv.contains(",diverged,2,"), "{csv}");
}

#[test]
fn replay_reports_golden_files_in_text_and_json() {
    let dir = tmp("replay");
    let golden = golden("d2l_chapter.json");
    let o = rmsprop(&["replay", golden.to_str().unwrap()], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(": 7 passed ("), "{}", stdout(&o));
    assert!(stdout(&o).ends_with(" bit-exact), 0 failed\n"), "{}", stdout(&o));
    let j = json(&["replay", golden.to_str().unwrap(), "--json"], &dir);
    assert_eq!((j["passed"].as_bool(), j["files"][0]["passed"].as_u64()), (Some(true), Some(7)));
    assert_eq!(j["files"][0]["cases"].as_array().unwrap().len(), 7);
}

/// `rmsprop bench --json` emits the documented fields (values are not checked: speed
/// is measured in benchmarks, never asserted in tests).
#[test]
fn bench_text_keeps_its_columns_aligned() {
    let dir = tmp("bench-text");
    let variants = "plain,plain_checked,centered_checked";
    let args = ["bench", "--sizes", "5e3", "--threads", "1", "--model-sizes", "", "--rounds", "1", "--quick"];
    let o = rmsprop(&[&args[..], &["--variants", variants, "--state-storage", "f32,int8"]].concat(), &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    let lines: Vec<&str> = s.lines().collect();
    // the header, the probe twice, three variants in two storages each
    assert_eq!(lines.len(), 1 + 2 + 3 * 2, "{s}");
    // every column ends where the header's does: "state" starts one past the longest name
    let (state, layout) = (lines[0].find("state").unwrap(), lines[0].find("layout").unwrap());
    assert_eq!((state, layout), ("centered_checked ".len(), "centered_checked state ".len()), "{s}");
    for l in &lines {
        assert_eq!(l.chars().count(), lines[0].chars().count(), "{s}");
        assert!(l[layout..].starts_with("single ") || l[layout..].starts_with("layout "), "{s}");
    }
    // an 8-bit row gives its ratio to the f32 row of its variant; the others a dash
    let int8: Vec<&&str> = lines.iter().filter(|l| l[state..].starts_with("int8 ")).collect();
    assert_eq!(int8.len(), 3, "{s}");
    assert!(int8.iter().all(|l| l.trim_end().rsplit(' ').next().unwrap().parse::<f64>().is_ok()), "{s}");
    assert!(lines[1..].iter().filter(|l| !l[state..].starts_with("int8 ")).all(|l| l.ends_with(" -")), "{s}");
}

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
        // each variant's row says how its state is kept (`f32` by default), the probe's none
        let expected = if r["variant"] == "probe" { serde_json::Value::Null } else { "f32".into() };
        assert_eq!(r["state_storage"], expected, "{r}");
    }
}

/// `sweep --help` shows the grid's defaults in the form `--lrs` and `--gammas` take them
/// (comma-separated), and a sweep given no grid runs the chapter's.
#[test]
fn sweep_defaults_read_as_the_flags_take_them_and_are_the_chapters_grid() {
    let dir = tmp("sweep-defaults");
    let help = stdout(&rmsprop(&["sweep", "--help"], &dir));
    assert!(help.contains("[default: 0.001,0.003,0.01,0.03,0.1]"), "{help}");
    assert!(help.contains("[default: 0,0.5,0.9,0.99,1]"), "{help}");
    let j = json(&["sweep", "--seeds", "1", "--rows", "50", "--json"], &dir);
    let cells = j["cells"].as_array().unwrap();
    let mut lrs: Vec<f64> = cells.iter().map(|c| c["lr"].as_f64().unwrap()).collect();
    let mut gammas: Vec<f64> = cells.iter().map(|c| c["gamma"].as_f64().unwrap()).collect();
    for v in [&mut lrs, &mut gammas] {
        v.sort_by(f64::total_cmp);
        v.dedup();
    }
    assert_eq!(lrs, rmsprop_lab::chapter::GRID_LRS);
    assert_eq!(gammas, rmsprop_lab::chapter::GRID_GAMMAS);
}

/// The exercise's example in `trace2d --help` says the step at which γ = 1 diverges as
/// the run prints it.
#[test]
fn the_help_says_where_gamma_one_diverges_as_the_run_does() {
    let dir = tmp("help-gamma-one");
    let help = stdout(&rmsprop(&["trace2d", "--help"], &dir));
    let out = stdout(&rmsprop(&["trace2d", "--gamma", "1"], &dir));
    let said = help.lines().find(|l| l.contains("rmsprop trace2d --gamma 1 ")).expect("the example");
    let step = |text: &str| {
        text.split("diverged at step ")
            .nth(1)
            .map(|r| r.split(|c: char| !c.is_ascii_digit()).next().unwrap().to_string())
    };
    assert_eq!(step(said), step(&out), "help: {said}\nrun: {out}");
    assert_eq!(step(&out).as_deref(), Some("1"));
}

/// What each example's comment promises, by the example as written: text its output holds
/// (`file:` a file it writes).
const PROMISES: &[(&str, &[&str])] = &[
    ("rmsprop chapter", &["file:rmsprop-chapter/index.html"]),
    ("rmsprop trace2d", &["rmsprop: epoch 20, x1 -0.010599, x2 0.000000", "with lr=0.4 gamma=0.9"]),
    ("rmsprop trace2d --gamma 1", &["diverged at step 1"]),
    ("rmsprop trace2d --gamma 1 --json", &["\"diverged\": true", "\"diverged_at\": 1"]),
    ("rmsprop trace2d --lr 0.4 --optimizer rmsprop --optimizer adagrad", &["x1 -2.382563, x2 -0.158591"]),
    ("rmsprop train --impl trainer --seed 3", &["mxnet.rmsprop: loss: 0.2454"]),
    ("rmsprop sweep --lrs 0.01,0.1 --gammas 0.9,1 --seeds 3", &["| 0.01 | 0.9 | 3 | 0.2", "diverged (3 of 3 seeds"]),
    ("rmsprop bench --sizes 1e4,1e6 --model-sizes 1e5 --threads 1 --quick", &["probe", "centered", "ratio"]),
    ("rmsprop replay testdata/golden/torch.json", &["60 passed (47 bit-exact), 0 failed"]),
];

/// Every example in a subcommand's `--help` and in the README's command block runs as
/// written, from a folder that holds what the examples name (the data file as
/// `my/airfoil_self_noise.dat`, `testdata/`), and does what its comment says; one that
/// needs a feature this build lacks (candle, MPI) says how to build it.
#[test]
fn every_example_in_the_help_and_the_readme_does_what_it_says() {
    let dir = tmp("examples");
    std::fs::create_dir_all(dir.join("my")).unwrap();
    std::fs::copy(data_file(), dir.join("my/airfoil_self_noise.dat")).unwrap();
    let testdata = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata");
    let _ = std::os::unix::fs::symlink(testdata, dir.join("testdata"));
    // (command, comment) of every example
    let mut examples: Vec<(String, String)> = Vec::new();
    let split = |line: &str| -> (String, String) {
        let at = [line.find(" #"), line.find("   (")].into_iter().flatten().min();
        let (command, comment) = at.map_or((line, ""), |i| line.split_at(i));
        (command.split_whitespace().collect::<Vec<_>>().join(" "), comment.trim().to_string())
    };
    for sub in ["chapter", "trace2d", "train", "sweep", "bench", "replay"] {
        let help = stdout(&rmsprop(&[sub, "--help"], &dir));
        let block = help.split("Example").nth(1).unwrap_or_else(|| panic!("{sub} --help has no examples"));
        examples.extend(block.lines().map(str::trim).filter(|l| l.contains("rmsprop ")).map(split));
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let block = readme.split("## The command, by example\n\n```sh\n").nth(1).unwrap().split("```").next().unwrap();
    examples.extend(block.lines().filter(|l| l.starts_with("rmsprop ")).map(split));
    assert!(examples.len() >= 24, "{examples:?}");
    for (command, comment) in &examples {
        let words: Vec<&str> = command.split_whitespace().collect();
        let args = &words[words.iter().position(|w| *w == "rmsprop").unwrap() + 1..];
        let o = rmsprop(args, &dir);
        let (out, err) = (stdout(&o), stderr(&o));
        let needs = |feature: &str| comment.contains(&format!("--features {feature}"));
        let lacking = (needs("candle") && !cfg!(feature = "candle")) || (needs("mpi") && !cfg!(feature = "mpi"));
        if lacking {
            assert!(!o.status.success() && err.contains("build") && err.contains("--features"), "{command}: {err}");
            continue;
        }
        if needs("mpi") {
            continue; // run under mpirun by the MPI suite
        }
        assert!(o.status.success(), "{command}: {err}");
        let promised = PROMISES.iter().find(|(c, _)| c == command).map(|(_, p)| *p);
        let plain = comment.is_empty() || comment.starts_with('(');
        assert!(promised.is_some() || plain, "{command}: the comment {comment:?} is not checked here");
        for p in promised.unwrap_or_default() {
            match p.strip_prefix("file:") {
                Some(f) => assert!(dir.join(f).is_file(), "{command}: no {f}"),
                None => assert!(out.contains(p), "{command}: {p:?} missing from {out}"),
            }
        }
    }
    assert!(dir.join("airfoil-1500/index.html").is_file());
}
