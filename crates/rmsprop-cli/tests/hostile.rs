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
