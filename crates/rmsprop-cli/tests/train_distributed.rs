//! `rmsprop train --distributed ddp|zero1` under `mpirun`, in a build with the `mpi`
//! feature (`cargo test -p rmsprop-cli --features mpi --test train_distributed`, run by
//! `.ci/run`, which installs OpenMPI); in the default build, a clear error saying how to
//! get it.

mod common;
use common::{refused, tmp};

/// The default build needs no system package: `--distributed` says how to build it.
#[cfg(not(feature = "mpi"))]
#[test]
fn without_mpi_distributed_training_is_refused_with_the_way_to_build_it() {
    use common::{rmsprop, stderr};
    refused(&["train", "--impl", "trainer", "--distributed", "zero1"], "--features mpi");
    let dir = tmp("distributed-without-mpi");
    let o = rmsprop(&["train", "--impl", "trainer", "--distributed", "ddp", "--out", "out"], &dir);
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
    use std::process::Command;
    let found = Command::new("mpirun").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        let how = "install OpenMPI: apt-get install libopenmpi-dev openmpi-bin libclang-dev";
        assert!(std::env::var("RMSPROP_REQUIRE_MPI").as_deref() != Ok("1"), "mpirun not found: {how}");
        eprintln!("\n*** SKIPPED: mpirun not found; {how} ***\n");
        return;
    }
    let dir = tmp("distributed");
    let alone = json(&["train", "--impl", "trainer", "--json", "--out", "alone"], &dir);
    let reference: Vec<f64> = serde_json::from_value(alone["curve"]["loss"].clone()).unwrap();
    let whole = 6 * 4; // square_avg of w (5) and b (1), float32
    for np in [2usize, 3] {
        for how in ["ddp", "zero1"] {
            let out = format!("{how}-{np}");
            let o = Command::new("mpirun")
                .args(["--allow-run-as-root", "--oversubscribe", "-np", &np.to_string(), env!("CARGO_BIN_EXE_rmsprop")])
                .args(["train", "--impl", "trainer", "--distributed", how, "--json", "--out", &out])
                .current_dir(&dir)
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&o.stdout).to_string();
            assert!(o.status.success(), "{said}{}", String::from_utf8_lossy(&o.stderr));
            // one JSON document: process 0's
            let j: serde_json::Value = serde_json::from_str(&said).expect(&said);
            assert_eq!(j["processes"], np);
            let loss: Vec<f64> = serde_json::from_value(j["curve"]["loss"].clone()).unwrap();
            assert_eq!(loss.len(), reference.len());
            for (a, b) in loss.iter().zip(&reference) {
                assert!((a - b).abs() <= 1e-5 * b.abs(), "{how} on {np}: {a} against {b}");
            }
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
