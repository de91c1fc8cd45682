//! `cargo run --release -p rmsprop-candle --example replay_mlp -- FILE.json...`: replays
//! golden MLP training runs (the format of `testdata/golden/mlp/README.md`) through candle
//! and prints `FILE: N passed, M failed` per file, each failure with its first difference;
//! exits non-zero on any failure. The data is the repository's airfoil file (embedded).

mod replay;

fn main() -> std::process::ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: replay_mlp FILE.json...");
        return std::process::ExitCode::from(2);
    }
    let text = String::from_utf8_lossy(rmsprop_lab::data::EMBEDDED);
    let rows =
        rmsprop_lab::data::parse(&text, std::path::Path::new(rmsprop_lab::data::FILE_NAME)).expect("the embedded data");
    let mut ok = true;
    for file in &files {
        let verdicts =
            std::fs::read_to_string(file).map_err(|e| e.to_string()).and_then(|json| replay::replay_file(&json, &rows));
        match verdicts {
            Ok(verdicts) => {
                let failed: Vec<_> = verdicts.iter().filter(|v| v.failure.is_some()).collect();
                println!("{file}: {} passed, {} failed", verdicts.len() - failed.len(), failed.len());
                for v in &failed {
                    println!("  {}: {}", v.name, v.failure.as_deref().unwrap_or_default());
                }
                ok &= failed.is_empty() && !verdicts.is_empty();
            }
            Err(e) => {
                println!("{file}: 0 passed, 1 failed ({e})");
                ok = false;
            }
        }
    }
    if ok { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
}
