//! Running the `rmsprop` binary as a user does: in an empty folder as working directory and
//! `$HOME`, offline, on the embedded data unless a test passes `--data`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's copy of the airfoil file (the one the program embeds).
pub fn data_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rmsprop-lab/data/airfoil_self_noise.dat")
}

/// The repository's golden vectors.
pub fn golden(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/golden").join(file)
}

/// A fresh, empty folder for one test.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rmsprop-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `rmsprop args` in `home` (as the working directory and `$HOME`).
pub fn rmsprop(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rmsprop")).args(args).current_dir(home).env("HOME", home).output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a `--json` command that must succeed and returns its document.
pub fn json(args: &[&str], home: &Path) -> serde_json::Value {
    let o = rmsprop(args, home);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", stdout(&o)))
}

/// Bad input: exit code 1 and one line `error: ...` on stderr that contains `expected`.
pub fn refused(args: &[&str], expected: &str) {
    // a folder of its own: tests of one file run in parallel in one process
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = tmp(&format!("refused-{}", CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    let o = rmsprop(args, &dir);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{args:?}: not one line: {e}");
    assert!(e.starts_with("error: ") && e.contains(expected), "{args:?}: {e}");
    assert!(stdout(&o).is_empty(), "{args:?}: {}", stdout(&o));
}
