//! `rmsprop train --distributed ddp|zero1` and `rmsprop sweep --distributed` under
//! `mpirun`, in a build with the `mpi` feature (`cargo test -p rmsprop-cli --features mpi
//! --test distributed`, run by `.ci/run`, which installs OpenMPI); in the default build, a
//! clear error saying how to get it.

mod common;
use common::{refused, tmp};

/// The default build needs no system package: `--distributed` says how to build it.
#[cfg(not(feature = "mpi"))]
#[test]
fn without_mpi_distributed_training_is_refused_with_the_way_to_build_it() {
    use common::{rmsprop, stderr};
    refused(&["train", "--impl", "trainer", "--distributed", "zero1"], "--features mpi");
    refused(&["sweep", "--distributed"], "--features mpi");
    let dir = tmp("distributed-without-mpi");
    let o = rmsprop(&["train", "--impl", "trainer", "--distributed", "ddp", "--out", "out"], &dir);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = rmsprop(&["sweep", "--distributed", "--out", "out"], &dir);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!dir.join("out").exists(), "a refused run created its output folder");
}

#[test]
fn distributed_training_is_the_linear_model_through_the_trainer() {
    refused(&["train", "--distributed", "zero1"], "--impl trainer");
    refused(&["train", "--model", "mlp", "--distributed", "ddp"], "--impl trainer");
}

/// Two and three processes, data-parallel and sharded: the chapter's curve of one process
/// within float32 rounding (each minibatch's gradient is added in another order), process
/// 0 alone printing and writing files, the state per process measured.
#[cfg(feature = "mpi")]
#[test]
fn the_chapter_trains_on_two_and_three_processes() {
    use common::json;
    if !mpirun_found() {
        return;
    }
    let dir = tmp("distributed");
    let alone = json(&["train", "--impl", "trainer", "--json", "--out", "alone"], &dir);
    let reference: Vec<f64> = serde_json::from_value(alone["curve"]["loss"].clone()).unwrap();
    let whole = 6 * 4; // square_avg of w (5) and b (1), float32
    for np in [2usize, 3] {
        for how in ["ddp", "zero1"] {
            let out = format!("{how}-{np}");
            let j =
                mpirun_json(np, &["train", "--impl", "trainer", "--distributed", how, "--json", "--out", &out], &dir);
            assert_eq!(j["processes"], np);
            same_curve(&j, &reference, &format!("{how} on {np}"));
            let bytes: Vec<usize> = serde_json::from_value(j["state_bytes_per_process"].clone()).unwrap();
            assert_eq!(j["state_bytes_one_process"], whole);
            if how == "ddp" {
                assert_eq!(bytes, vec![whole; np]);
            } else {
                // the model's 6 numbers cut at tensor boundaries: 1/N give or take a tensor
                assert_eq!(bytes.iter().sum::<usize>(), whole);
                assert!(bytes.iter().all(|&b| b <= whole / np + 20), "{bytes:?}");
            }
            for f in j["files"].as_array().unwrap() {
                assert!(dir.join(f.as_str().unwrap()).is_file(), "{f} not written");
            }
        }
    }
}

/// Sharded 8-bit state on two processes (every tensor packed: the chapter's are tiny): the
/// curve of one process with the same state within float32 rounding, the state bytes per
/// process as kept — each process's piece in codes and a scale, together one process's.
#[cfg(feature = "mpi")]
#[test]
fn sharded_8bit_state_trains_as_one_process_does() {
    use common::json;
    if !mpirun_found() {
        return;
    }
    let dir = tmp("distributed-int8");
    let args = ["train", "--impl", "trainer", "--state-storage", "int8", "--set", "min_8bit_size=0", "--json"];
    let alone = json(&[&args[..], &["--out", "alone"]].concat(), &dir);
    let reference: Vec<f64> = serde_json::from_value(alone["curve"]["loss"].clone()).unwrap();
    let j = mpirun_json(2, &[&args[..], &["--distributed", "zero1", "--out", "zero1"]].concat(), &dir);
    same_curve(&j, &reference, "zero1 on 2, 8-bit state");
    // w's 5 codes and a scale, b's 1 code and a scale: 14 bytes in one process
    assert_eq!(j["state_bytes_one_process"], 5 + 4 + 1 + 4);
    let bytes: Vec<usize> = serde_json::from_value(j["state_bytes_per_process"].clone()).unwrap();
    assert_eq!(bytes.iter().sum::<usize>(), 14, "{bytes:?}");
}

/// Process 0's JSON document of `rmsprop args` on `np` processes, the run a success.
#[cfg(feature = "mpi")]
fn mpirun_json(np: usize, args: &[&str], dir: &std::path::Path) -> serde_json::Value {
    let o = mpirun(np, args, dir);
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{said}{}", String::from_utf8_lossy(&o.stderr));
    // one JSON document: process 0's
    serde_json::from_str(&said).expect(&said)
}

/// The loss curve of the run `j` is `reference` within float32 rounding (each minibatch's
/// gradient summed in another order).
#[cfg(feature = "mpi")]
fn same_curve(j: &serde_json::Value, reference: &[f64], what: &str) {
    let loss: Vec<f64> = serde_json::from_value(j["curve"]["loss"].clone()).unwrap();
    assert_eq!(loss.len(), reference.len(), "{what}");
    for (a, b) in loss.iter().zip(reference) {
        assert!((a - b).abs() <= 1e-5 * b.abs(), "{what}: {a} against {b}");
    }
}

/// Whether `mpirun` is here; where it is not and not required, said loudly.
#[cfg(feature = "mpi")]
fn mpirun_found() -> bool {
    let found = std::process::Command::new("mpirun").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        let how = "install OpenMPI: apt-get install libopenmpi-dev openmpi-bin libclang-dev";
        assert!(std::env::var("RMSPROP_REQUIRE_MPI").as_deref() != Ok("1"), "mpirun not found: {how}");
        eprintln!("\n*** SKIPPED: mpirun not found; {how} ***\n");
    }
    found
}

/// `rmsprop args` on `np` processes, in `dir`.
#[cfg(feature = "mpi")]
fn mpirun(np: usize, args: &[&str], dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-np", &np.to_string(), env!("CARGO_BIN_EXE_rmsprop")])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// The grid's 20 runs spread over 2 and 3 processes (7, 7 and 6): the tables are one
/// process's to the byte (each run is seeded alike wherever it runs), process 0 alone
/// printing and writing.
#[cfg(feature = "mpi")]
#[test]
fn a_sweep_spread_over_processes_gives_the_tables_of_one() {
    use common::json;
    if !mpirun_found() {
        return;
    }
    let dir = tmp("distributed-sweep");
    let grid = ["--lrs", "0.01,0.1", "--gammas", "0.9,1", "--seeds", "5", "--rows", "300"];
    let alone = json(&[&["sweep", "--json", "--out", "alone"][..], &grid].concat(), &dir);
    let table = |j: &serde_json::Value, ext: &str| {
        let files = j["files"].as_array().unwrap();
        let f = files.iter().map(|f| f.as_str().unwrap()).find(|f| f.ends_with(ext)).unwrap();
        std::fs::read_to_string(dir.join(f)).unwrap()
    };
    assert!(table(&alone, ".csv").contains(",diverged,"), "the grid holds the γ = 1 exercise");
    for np in [2usize, 3] {
        let out = format!("spread-{np}");
        let o = mpirun(np, &[&["sweep", "--distributed", "--json", "--out", &out][..], &grid].concat(), &dir);
        let said = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(o.status.success(), "{said}{}", String::from_utf8_lossy(&o.stderr));
        let j: serde_json::Value = serde_json::from_str(&said).expect(&said); // process 0's alone
        assert_eq!(table(&j, ".csv"), table(&alone, ".csv"), "{np} processes");
        assert_eq!(table(&j, ".md"), table(&alone, ".md"), "{np} processes");
        assert_eq!(j["cells"], alone["cells"], "{np} processes");
        for f in j["files"].as_array().unwrap() {
            assert!(dir.join(f.as_str().unwrap()).is_file(), "{f} not written");
        }
    }
    // an invalid grid is refused by every process before anything runs, and the job ends
    let o = mpirun(2, &["sweep", "--distributed", "--optimizer", "d2l.nothing", "--out", "bad"], &dir);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("error: unknown optimizer \"d2l.nothing\""), "{err}");
}
