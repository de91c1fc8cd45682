//! Replays the committed corpus of the candle adapter's fuzz target (`fuzz/corpus/candle/`)
//! through its body (`fuzz/harness_candle.rs`), so every input the fuzzer kept stays checked
//! by `cargo test`.

#[allow(dead_code)]
mod harness {
    include!("../../../fuzz/harness_candle.rs");
}

#[test]
fn the_committed_candle_fuzz_corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/candle");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| harness::candle_aliasing(&bytes));
        assert!(outcome.is_ok(), "fuzz input {} fails its target", path.display());
        n += 1;
    }
    assert!(n >= 4, "only {n} inputs");
}
