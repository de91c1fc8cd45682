//! Distributed training launched with `mpirun` (2 processes, and 3 oversubscribed on two
//! cores for uneven ranges): the sharded and data-parallel modes give the same bits on
//! every process, and the training of one process with the same global batch within
//! float32 rounding; a NaN on one process makes every process refuse (or skip) the step;
//! each process of the sharded mode holds its share of the optimizer state; a process
//! that dies or hangs ends the job (by mpirun, or by the others after their timeout) and
//! the last checkpoint resumes on fewer processes.
//!
//! Needs OpenMPI (Debian: `apt-get install libopenmpi-dev openmpi-bin libclang-dev`);
//! `.ci/run` sets `RMSPROP_REQUIRE_MPI=1`, which turns a missing `mpirun` into a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_distributed-regression");

/// `mpirun`, or `None` (said loudly) where it is not installed and not required.
fn mpirun() -> Option<&'static str> {
    let found = Command::new("mpirun").arg("--version").output().is_ok_and(|o| o.status.success());
    if found {
        return Some("mpirun");
    }
    let how = "install OpenMPI: apt-get install libopenmpi-dev openmpi-bin libclang-dev";
    if std::env::var("RMSPROP_REQUIRE_MPI").is_ok_and(|v| v == "1") {
        panic!("mpirun not found and RMSPROP_REQUIRE_MPI=1: {how}");
    }
    eprintln!("\n*** SKIPPED: mpirun not found; {how} ***\n");
    None
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rmsprop-mpi-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the example on `np` processes (`None`: alone, without MPI) with `args`; its
/// processes write their parameters to `out.<rank>`.
fn run(np: Option<usize>, args: &[&str], out: &Path) -> Output {
    let out = out.to_str().unwrap();
    let mut cmd = match np {
        Some(n) => {
            let mut c = Command::new("mpirun");
            c.args(["--allow-run-as-root", "--oversubscribe", "-np", &n.to_string(), BIN]);
            c
        }
        None => Command::new(BIN),
    };
    cmd.args(args).args(["--out", out]).output().expect("the example runs")
}

fn params(out: &Path, rank: usize) -> Vec<f32> {
    let bytes = std::fs::read(format!("{}.{rank}", out.display())).unwrap();
    bytes.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// What every process said (its own log: the processes' output interleaves).
fn logs(out: &Path, np: usize) -> String {
    (0..np).map(|r| std::fs::read_to_string(format!("{}.{r}.log", out.display())).unwrap()).collect()
}

#[test]
fn sharded_equals_data_parallel_bit_for_bit_and_one_process_within_rounding_or_exactly_where_summed_alike() {
    let Some(_) = mpirun() else { return };
    let d = dir("equal");
    let single = d.join("single");
    assert!(run(None, &["--mode", "single", "--steps", "6"], &single).status.success());
    let alone = params(&single, 0);
    let largest = alone.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(largest > 0.0);
    for np in [2, 3] {
        for bucket in ["26214400", "1000"] {
            let mut first: Option<Vec<u32>> = None;
            for mode in ["data-parallel", "sharded"] {
                let out = d.join(format!("{mode}-{np}-{bucket}"));
                let o = run(Some(np), &["--mode", mode, "--steps", "6", "--bucket", bucket], &out);
                assert!(o.status.success(), "{mode} on {np}: {}", text(&o));
                for rank in 0..np {
                    let x = params(&out, rank);
                    let b = bits(&x);
                    match &first {
                        None => first = Some(b),
                        Some(f) => {
                            assert!(*f == b, "{mode} on {np} processes (bucket {bucket}): process {rank} differs")
                        }
                    }
                    // against one process with the whole batch: the gradients' sums are
                    // ordered differently, so within float32 rounding, not bit for bit
                    let worst = x.iter().zip(&alone).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                    assert!(worst <= 1e-4 * largest, "{mode} on {np}: {worst} against {largest}");
                }
            }
            // where the sums are the same (two processes' halves added: a + b = b + a),
            // one process forming its gradient as they do gives the very bits
            if np == 2 {
                let same = d.join(format!("as-two-{bucket}"));
                assert!(
                    run(None, &["--mode", "single", "--steps", "6", "--as-processes", "2"], &same).status.success()
                );
                assert!(
                    first.as_ref() == Some(&bits(&params(&same, 0))),
                    "one process as two differs (bucket {bucket})"
                );
            }
        }
    }
    // one process through MPI: the reductions are copies, the bits those of the program alone
    for mode in ["data-parallel", "sharded"] {
        let out = d.join(format!("{mode}-1"));
        let o = run(Some(1), &["--mode", mode, "--steps", "6"], &out);
        assert!(o.status.success(), "{mode} on 1: {}", text(&o));
        assert!(bits(&params(&out, 0)) == bits(&alone), "{mode} on one process differs from the program alone");
    }
}

#[test]
fn a_nan_on_one_process_is_refused_or_skipped_by_every_process() {
    let Some(_) = mpirun() else { return };
    let d = dir("nan");
    for mode in ["data-parallel", "sharded"] {
        let before = d.join(format!("{mode}-2steps"));
        assert!(run(Some(3), &["--mode", mode, "--steps", "2"], &before).status.success());
        let refused = d.join(format!("{mode}-refused"));
        let o = run(Some(3), &["--mode", mode, "--steps", "5", "--nan-at", "3:1"], &refused);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        let said = logs(&refused, 3);
        // the NaN travels with the sum: to every process (data-parallel), or to the one
        // owning that element (sharded), which then refuses the step for all
        let own = |r: usize| {
            said.contains(&format!("process {r}: step 3: non-finite gradient in tensor \"w\" at element 39999"))
        };
        let told = |r: usize| {
            said.contains(&format!(
                "process {r}: step 3: step 3 refused: 1 other process(es) found a non-finite gradient"
            ))
        };
        let owners = (0..3).filter(|&r| own(r)).count();
        assert_eq!(owners, if mode == "sharded" { 1 } else { 3 }, "{said}");
        assert!((0..3).all(|r| own(r) != told(r)), "{said}");
        // nothing changed on any process: the parameters are those after step 2
        for rank in 0..3 {
            assert_eq!(bits(&params(&refused, rank)), bits(&params(&before, 0)), "{mode}: process {rank}");
        }
        let skipped = d.join(format!("{mode}-skipped"));
        let o = run(Some(3), &["--mode", mode, "--steps", "4", "--nan-at", "3:1", "--policy", "skip"], &skipped);
        assert!(o.status.success(), "{}", text(&o));
        let said = logs(&skipped, 3);
        for rank in 0..3 {
            assert!(said.contains(&format!("process {rank}: step 3 skipped")), "{said}");
            assert_eq!(bits(&params(&skipped, rank)), bits(&params(&skipped, 0)));
        }
    }
}

#[test]
fn each_process_holds_its_share_of_the_state() {
    let Some(_) = mpirun() else { return };
    let d = dir("bytes");
    let whole = 40_001 * 4; // square_avg of 40 001 float32 parameters
    for np in [2, 3] {
        for (mode, expect_whole) in [("data-parallel", true), ("sharded", false)] {
            let out = d.join(format!("{mode}-{np}"));
            let o = run(Some(np), &["--mode", mode, "--steps", "1"], &out);
            assert!(o.status.success(), "{}", text(&o));
            let said = logs(&out, np);
            let bytes: Vec<usize> = (0..np)
                .map(|r| {
                    let line =
                        said.lines().find(|l| l.starts_with(&format!("process {r}: optimizer state "))).expect(&said);
                    line.split_whitespace().nth(4).unwrap().parse().unwrap()
                })
                .collect();
            if expect_whole {
                assert!(bytes.iter().all(|&b| b == whole), "{bytes:?}");
            } else {
                // 1/N each, give or take a chunk of 16 384 elements (the cuts' granularity)
                assert_eq!(bytes.iter().sum::<usize>(), whole);
                for b in &bytes {
                    assert!(b.abs_diff(whole / np) <= rmsprop::CHUNK * 4, "{bytes:?}");
                }
            }
        }
    }
}

#[test]
fn a_checkpoint_of_two_processes_resumes_on_three_and_on_one() {
    let Some(_) = mpirun() else { return };
    let d = dir("resume");
    let never = d.join("never");
    assert!(run(Some(2), &["--mode", "sharded", "--steps", "5"], &never).status.success());
    let ckpt = d.join("ckpt");
    let o = run(Some(2), &["--mode", "sharded", "--steps", "3", "--save", ckpt.to_str().unwrap()], &d.join("first"));
    assert!(o.status.success(), "{}", text(&o));
    let resume = |np: Option<usize>, mode: &str, name: &str| {
        let out = d.join(name);
        let o = run(np, &["--mode", mode, "--steps", "5", "--resume", ckpt.to_str().unwrap()], &out);
        assert!(o.status.success(), "{name}: {}", text(&o));
        params(&out, 0)
    };
    let reference = params(&never, 0);
    let largest = reference.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    // on the same two processes: the run that never stopped, bit for bit
    assert_eq!(bits(&resume(Some(2), "sharded", "two")), bits(&reference));
    // on three (sharded, or data-parallel from the shards) and on one: the gradients are
    // added in another order, so within float32 rounding; the three agree bit for bit
    let three = resume(Some(3), "sharded", "three");
    assert_eq!(bits(&three), bits(&resume(Some(3), "data-parallel", "three-dp")));
    let one = resume(None, "single", "one");
    for (name, x) in [("three", &three), ("one", &one)] {
        let worst = x.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-4 * largest, "{name}: {worst} against {largest}");
    }
}

/// Runs `mpirun` with `args` (the example's path among them) and waits for it to end:
/// a minute at most, then it is killed and the test fails.
fn ends_within_a_minute(args: &[&str]) -> Output {
    let mut child = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the job still runs a minute after a process failed: {args:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// Eight sharded steps on three processes, checkpoints into `ck` every two, and `failure`.
fn on_three_saving_every_two(ck: &str, failure: &[&str]) -> Output {
    let run = ["-np", "3", BIN, "--mode", "sharded", "--steps", "8", "--save", ck, "--save-every", "2"];
    ends_within_a_minute(&[&run[..], failure].concat())
}

/// Resumes the checkpoint folder `ck` (its `latest`: step 4's) on two processes, and
/// compares the end with a run of three that never stopped.
fn resumes_on_two(d: &Path, ck: &str) {
    assert_eq!(std::fs::read_to_string(Path::new(ck).join("latest")).unwrap().trim(), "step-4");
    let resumed = d.join("resumed");
    let o = run(Some(2), &["--mode", "sharded", "--steps", "8", "--resume", ck], &resumed);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("step 5 loss"), "{}", text(&o));
    let never = d.join("never");
    assert!(run(Some(3), &["--mode", "sharded", "--steps", "8"], &never).status.success());
    let (x, reference) = (params(&resumed, 0), params(&never, 0));
    let largest = reference.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let worst = x.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-4 * largest, "{worst} against {largest}");
}

#[test]
fn a_process_that_dies_ends_the_run_and_the_last_checkpoint_resumes_on_fewer() {
    let Some(_) = mpirun() else { return };
    let d = dir("dies");
    let ck = d.join("ckpt");
    let ck = ck.to_str().unwrap();
    let o = on_three_saving_every_two(ck, &["--die-at", "5:1"]);
    // mpirun ends the job, naming the process
    let said = text(&o);
    assert!(!o.status.success(), "{said}");
    assert!(said.contains("rank 1") && said.contains("signal 6"), "{said}");
    resumes_on_two(&d, ck);
}

/// What the survivors say when their collective gets no answer within the timeout.
fn no_answer(rank: usize) -> String {
    format!("error: process {rank}: no answer from the other processes for ")
}

#[test]
fn a_process_that_hangs_is_reported_by_the_others_after_the_timeout() {
    let Some(_) = mpirun() else { return };
    let d = dir("hangs");
    let ck = d.join("ckpt");
    let ck = ck.to_str().unwrap();
    let o = on_three_saving_every_two(ck, &["--hang-at", "5:1", "--timeout", "5"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(rmsprop_mpi::EXIT_CODE), "{said}");
    // each survivor that reports names the collective and the step (the first to report
    // ends the job with MPI_Abort, which may kill the other before it prints); the hung
    // process says nothing
    let reports: Vec<&str> = said.lines().filter(|l| [0, 2].iter().any(|&r| l.starts_with(&no_answer(r)))).collect();
    assert!(!reports.is_empty(), "{said}");
    for line in reports {
        assert!(
            line.contains("in the all-reduce of the step's agreement at step 5: one of them died or hangs"),
            "{line}"
        );
    }
    assert!(!said.contains(&no_answer(1)), "{said}");
    resumes_on_two(&d, ck);
}

#[test]
fn a_process_that_dies_is_reported_by_the_others_when_mpirun_lets_them_run() {
    let Some(_) = mpirun() else { return };
    // mpirun told not to end the job when a process fails: the survivors' deadline does
    let o = ends_within_a_minute(&[
        "--mca",
        "orte_abort_on_non_zero_status",
        "0",
        "-np",
        "3",
        BIN,
        "--mode",
        "data-parallel",
        "--steps",
        "8",
        "--die-at",
        "3:2",
        "--timeout",
        "5",
    ]);
    let said = text(&o);
    assert!(!o.status.success(), "{said}");
    // the first survivor to report ends the job with MPI_Abort, which may kill the other
    // before it prints (Open MPI: "you may or may not see output from other processes"):
    // at least one reports, and every report names the step
    let reports: Vec<&str> = said.lines().filter(|l| [0, 1].iter().any(|&r| l.starts_with(&no_answer(r)))).collect();
    assert!(!reports.is_empty(), "{said}");
    for line in reports {
        assert!(line.contains("at step 3: one of them died or hangs; ending the job"), "{line}");
    }
}

/// Both binaries answer `--help` (without MPI) with their options and examples, and refuse
/// a bad value with one line and exit code 2 (clap's).
#[test]
fn the_binaries_explain_themselves() {
    let bench = env!("CARGO_BIN_EXE_mpi-bench");
    for (bin, options) in [
        (BIN, &["--mode", "--steps", "--save-every", "--resume", "--as-processes", "--timeout"][..]),
        (bench, &["--mode", "--sizes", "--steps"][..]),
    ] {
        let o = Command::new(bin).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && help.contains("Examples:\n  "), "{bin} --help: {help}");
        for option in options {
            assert!(help.contains(option), "{bin} --help does not name {option}: {help}");
        }
    }
    for (bin, args, says) in [
        (BIN, &["--as-processes", "5"][..], "expected a divisor of 12, not \"5\""),
        (BIN, &["--die-at", "3"][..], "expected STEP:RANK (two whole numbers), not \"3\""),
        (BIN, &["--mode", "ring"][..], "invalid value 'ring' for '--mode <MODE>'"),
        (bench, &["--sizes", "1e7,x"][..], "expected a whole number from 1 to 1e10 such as 1e7, not \"x\""),
    ] {
        let o = Command::new(bin).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("error: ") && err.contains(says), "{args:?}: {err}");
    }
}
