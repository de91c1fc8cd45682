//! Every subcommand over a table of hostile argument values: each exits 1 with one line
//! `error: ...` on stderr, never a panic, an abort, a signal or a hang.

mod common;
use common::tmp;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `rmsprop args` in `dir` with a time bound; returns (exit code, stderr).
fn run_bounded(args: &[&str], dir: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rmsprop"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(status.signal(), None, "{args:?} was killed by a signal");
            }
            return (status.code(), String::from_utf8_lossy(&out.stderr).into_owned());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{args:?} still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `base` with `flag value` added: every one must be refused in one line.
fn all_refused(sub: &str, base: &[&str], table: &[(&str, &[&str])], dir: &Path) -> usize {
    let mut n = 0;
    for (flag, values) in table {
        for value in *values {
            let mut args = vec![sub];
            args.extend_from_slice(base);
            args.extend([*flag, *value]);
            let (code, err) = run_bounded(&args, dir);
            assert_eq!(code, Some(1), "{args:?}: exit {code:?}, stderr {err}");
            assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
            assert!(err.starts_with("error: "), "{args:?}: {err}");
            n += 1;
        }
    }
    n
}

#[test]
fn hostile_values_are_refused_in_one_line_by_every_subcommand() {
    let dir = tmp("hostile");
    let file = dir.join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let other = dir.join("someone-elses");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("keep.txt"), "precious").unwrap();
    let binary = dir.join("binary.dat");
    std::fs::write(&binary, [0u8, 159, 146, 150, 255, 10]).unwrap();
    let not_golden = dir.join("not-golden.json");
    std::fs::write(&not_golden, "{}").unwrap();
    let (file, other, binary, not_golden) =
        (file.to_str().unwrap(), other.to_str().unwrap(), binary.to_str().unwrap(), not_golden.to_str().unwrap());
    let dir_s = dir.to_str().unwrap();
    let unwritable = "/proc/rmsprop-cannot-be-here";
    let numbers: &[&str] = &["", "abc", "nan", "inf", "-inf", "1e400", "-1"];
    let mut n = 0;

    n += all_refused(
        "trace2d",
        &[],
        &[
            ("--lr", numbers),
            ("--gamma", &["", "abc", "nan", "inf", "-0.1", "2", "1e400"]),
            (
                "--steps",
                &["", "-1", "1e3", "10001", "18446744073709551615", "18446744073709551616", "99999999999999999999"],
            ),
            ("--start", &["", "1", "a,b", "nan,1", "inf,0", "1,2,3", ",", "1e400,0"]),
            ("--objective", &["", "moon"]),
            ("--optimizer", &["", ".", "pytorch.", "x.y.z", "rmsprop.", "adam.rmsprop"]),
            (
                "--set",
                &["", "=", "lr", "lr=", "lr=abc", "eps=-1", ".lr=1", "lr=nan", "lr=1e400", "nope.lr=1", "decay=2"],
            ),
            ("--out", &[file, unwritable]),
        ],
        &dir,
    );
    n += all_refused(
        "train",
        &["--rows", "50"],
        &[
            ("--lr", numbers),
            ("--gamma", &["nan", "2", "-1"]),
            ("--epochs", &["0", "-1", "99999999999", "abc"]),
            ("--batch-size", &["0", "-1", "18446744073709551616"]),
            ("--rows", &["0", "1504", "99999", "-1"]),
            ("--data", &["/nonexistent/airfoil.dat", dir_s, "/dev/null", binary]),
            ("--impl", &["", "foo"]),
            ("--seed", &["-1", "abc", "18446744073709551616"]),
            ("--out", &[file, unwritable]),
            ("--optimizer", &["nope"]),
        ],
        &dir,
    );
    n += all_refused(
        "sweep",
        &["--lrs", "0.01", "--gammas", "0.9", "--rows", "50"],
        &[
            ("--seeds", &["0", "1001", "1000000000000", "18446744073709551615", "-1"]),
            ("--lrs", &["", "a", "-1", "nan", "0.1,,0.2"]),
            ("--gammas", &["2", "nan", "-0.5"]),
            ("--optimizer", &["nope", ""]),
            ("--out", &[file, unwritable]),
            ("--data", &["/nonexistent/airfoil.dat", dir_s]),
        ],
        &dir,
    );
    n += all_refused(
        "chapter",
        &[],
        &[
            ("--out", &[file, other, unwritable]),
            ("--rows", &["0", "1504", "-1"]),
            ("--data", &["/nonexistent/airfoil.dat", dir_s, binary]),
            ("--seed", &["abc", "-1"]),
        ],
        &dir,
    );
    n += all_refused(
        "bench",
        &["--sizes", "1e3", "--model-sizes=", "--rounds", "1", "--quick"],
        &[
            ("--threads", &["0", "100000000", "99999", "abc", "", "-1"]),
            ("--sizes", &["1e10", "0", "-1", "nan", "1e20", "abc", "1.5"]),
            ("--model-sizes", &["1e11", "0"]),
            ("--rounds", &["0", "1001", "-1"]),
            ("--variants", &["nope", ""]),
        ],
        &dir,
    );
    for f in ["/nonexistent/golden.json", dir_s, "/dev/null", binary, not_golden, file] {
        let (code, err) = run_bounded(&["replay", f], &dir);
        assert_eq!(code, Some(1), "replay {f}: {err}");
        assert!(err.starts_with("error: ") && err.lines().count() == 1 && !err.contains("panicked"), "{f}: {err}");
        n += 1;
    }
    assert!(n > 120, "only {n} cases");
    // the folder that was not ours is untouched
    assert_eq!(std::fs::read_to_string(Path::new(other).join("keep.txt")).unwrap(), "precious");
}

/// A stderr that cannot be written (`2>/dev/full`) loses the diagnostics, not the run: the
/// result still reaches stdout and the exit codes stay 0 for a run, 1 for a refusal
/// (before: exit 101, a panic in `eprintln!`, and nothing on stdout).
#[test]
fn an_unwritable_stderr_does_not_stop_the_run() {
    let dir = tmp("stderr-full");
    let run = |args: &[&str]| {
        let full = std::fs::File::options().write(true).open("/dev/full").unwrap();
        Command::new(env!("CARGO_BIN_EXE_rmsprop")).args(args).current_dir(&dir).stderr(full).output().unwrap()
    };
    let ok = run(&["trace2d"]);
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stdout));
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(out.starts_with("rmsprop: epoch 20, x1 -0.010599, x2 0.000000"), "{out}");
    let refused = run(&["trace2d", "--lr", "nan"]);
    assert_eq!(refused.status.code(), Some(1));
    let json = run(&["trace2d", "--lr", "nan", "--json"]);
    assert_eq!(json.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&json.stdout).contains("\"error\""));
}

/// A FIFO given as a data file or a golden file is refused at once, not waited on (no
/// writer would ever come), and a device likewise.
#[cfg(unix)]
#[test]
fn a_fifo_is_refused_not_waited_on() {
    let dir = tmp("fifo");
    let fifo = dir.join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let f = fifo.to_str().unwrap();
    for args in [
        &["train", "--data", f][..],
        &["chapter", "--data", f, "--out", "ch"],
        &["sweep", "--data", f, "--lrs", "0.01", "--gammas", "0.9"],
        &["replay", f],
        &["replay", "/dev/zero"],
    ] {
        let (code, err) = run_bounded(args, &dir);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains("not a regular file"), "{args:?}: {err}");
    }
}

/// `chapter --out .` (the folder the shell is in) is refused before anything is written,
/// and a chapter run that fails leaves no partial folder behind (before: a 2.5 MB
/// `.rmsprop-chapter.partial-*` folder that later runs refused).
#[test]
fn chapter_into_the_current_folder_is_refused_and_leaves_nothing() {
    let dir = tmp("chapter-dot");
    for out in [".", "..", dir.to_str().unwrap()] {
        let (code, err) = run_bounded(&["chapter", "--out", out], &dir);
        assert_eq!(code, Some(1), "{out}: {err}");
        assert!(err.contains("is the folder you are in (or holds it)"), "{out}: {err}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{out}: something was left");
    }
    // a folder of someone else's in a parent is refused and gets no partial sibling
    let parent = dir.join("parent");
    std::fs::create_dir_all(parent.join("theirs")).unwrap();
    std::fs::write(parent.join("theirs/keep.txt"), "x").unwrap();
    let (code, _) = run_bounded(&["chapter", "--out", "parent/theirs"], &dir);
    assert_eq!(code, Some(1));
    let names: Vec<_> = std::fs::read_dir(&parent).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["theirs"], "only their folder is there");
}

/// The `with …` line says `eps=0` when it was given, though 0 is usually left out.
#[test]
fn the_with_line_shows_a_zero_the_preset_does_not_have() {
    let dir = tmp("with-zero");
    let o = common::rmsprop(&["trace2d", "--optimizer", "pytorch.rmsprop", "--set", "eps=0", "--lr", "0.1"], &dir);
    let out = common::stdout(&o);
    assert!(out.contains("\n  with lr=0.1 alpha=0.99 eps=0 eps_placement=outside_sqrt\n"), "{out}");
    let o = common::rmsprop(&["trace2d", "--optimizer", "pytorch.rmsprop"], &dir);
    assert!(!common::stdout(&o).contains("momentum"), "{}", common::stdout(&o));
}

/// Under an address-space limit (`ulimit -v`), a size the process cannot hold is refused in
/// one line before anything is allocated (before: a panic on the failed allocation, as the
/// check read only the machine's available memory).
#[cfg(target_os = "linux")]
#[test]
fn bench_respects_the_processs_memory_limit() {
    let dir = tmp("ulimit");
    let bin = env!("CARGO_BIN_EXE_rmsprop");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v 6000000 && exec {bin} bench --model-sizes 3e8 --sizes= --quick --rounds 1"))
        .current_dir(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: ") && err.lines().count() == 1 && !err.contains("panicked"), "{err}");
    assert!(err.contains("this process can have") && err.contains("address-space limit"), "{err}");
}
