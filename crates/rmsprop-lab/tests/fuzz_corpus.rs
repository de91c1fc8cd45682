//! Replays the committed fuzz corpus (`fuzz/corpus/`) through the fuzz targets' own bodies
//! (`fuzz/harness.rs`), so every input a fuzzer ever kept stays checked by `cargo test`.

#[allow(dead_code)]
mod harness {
    include!("../../../fuzz/harness.rs");
}

fn replay(target: &str, body: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| body(&bytes));
        assert!(outcome.is_ok(), "fuzz input {} fails its target", path.display());
        n += 1;
    }
    n
}

#[test]
fn the_committed_fuzz_corpus_replays() {
    for (target, body) in [
        ("data", harness::data as fn(&[u8])),
        ("checkpoint", harness::checkpoint),
        ("golden", harness::golden),
        ("by_name", harness::by_name),
        ("golden_file", harness::golden_file),
    ] {
        let n = replay(target, body);
        assert!(n >= 2, "{target}: only {n} inputs");
    }
}
