//! The chapter's output folder is replaced whole or not at all.

use rmsprop_lab::chapter::{ChapterOptions, run};
use std::path::{Path, PathBuf};

fn base(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rmsprop-chapter-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn siblings(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn a_run_replaces_an_earlier_folder_only_when_complete() {
    let root = base("replace");
    let out = root.join("ch");
    let opts = ChapterOptions { out: out.clone(), sweep_seeds: vec![0], ..ChapterOptions::default() };
    let first = run(&opts, &|_| {}).unwrap();
    assert!(first.files.iter().all(|f| f.starts_with(&out) && f.is_file()), "{:?}", first.files);
    assert_eq!(first.report, out.join("index.html"));
    std::fs::write(out.join("stale.svg"), "from an older version").unwrap();
    let numbers = std::fs::read(out.join("numbers.json")).unwrap();

    // a run that fails (here: on its data, after the 2-D parts were written) leaves the old folder
    let failing = ChapterOptions { rows: Some(99_999), ..opts.clone() };
    let e = run(&failing, &|_| {}).unwrap_err().to_string();
    assert!(e.contains("--rows 99999"), "{e}");
    assert!(out.join("stale.svg").is_file(), "the earlier folder was touched");
    assert_eq!(std::fs::read(out.join("numbers.json")).unwrap(), numbers);
    assert_eq!(siblings(&root), ["ch"], "a partial folder was left behind");

    // a complete run takes its place whole: nothing stale survives
    run(&opts, &|_| {}).unwrap();
    assert!(!out.join("stale.svg").exists());
    assert!(out.join("index.html").is_file());
    assert_eq!(siblings(&root), ["ch"]);
}

#[test]
fn a_folder_that_is_not_a_chapter_is_never_replaced() {
    let root = base("foreign");
    std::fs::write(root.join("thesis.tex"), "precious").unwrap();
    let opts = ChapterOptions { out: root.clone(), sweep_seeds: vec![0], ..ChapterOptions::default() };
    let e = run(&opts, &|_| {}).unwrap_err().to_string();
    assert!(
        e.ends_with("exists and is not a chapter folder (no numbers.json): choose a new or empty folder with --out"),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(root.join("thesis.tex")).unwrap(), "precious");
    // an empty folder is fine
    let empty = base("empty");
    run(&ChapterOptions { out: empty.clone(), ..opts }, &|_| {}).unwrap();
    assert!(empty.join("numbers.json").is_file());
}
