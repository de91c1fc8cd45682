//! Replays golden-vector files: `cargo run --release -p rmsprop-golden --example replay -- FILE.json...`
//!
//! Prints `FILE: N passed (K bit-exact), M failed` per file and one line per failing case
//! with its worst error (`-v`: every case); exits non-zero on any failure.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.iter().any(|a| a == "-v" || a == "--verbose");
    let files: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if files.is_empty() {
        eprintln!("usage: replay [-v] FILE.json...");
        return ExitCode::from(2);
    }
    let mut ok = true;
    for f in &files {
        match rmsprop_golden::replay_file(f.as_ref()) {
            Ok(report) => {
                println!("{}", report.summary());
                for c in report.cases.iter().filter(|c| verbose || !c.passed) {
                    match (c.passed, c.worst == 0.0) {
                        (true, true) => println!("  ok   {}: bit-exact", c.name),
                        (true, false) => println!("  ok   {}: worst {:.3}x tolerance at {}", c.name, c.worst, c.detail),
                        _ => println!("  FAIL {}: worst {:.3}x tolerance at {}", c.name, c.worst, c.detail),
                    }
                }
                ok &= report.failed() == 0 && !report.cases.is_empty();
            }
            Err(e) => {
                println!("{f}: error: {e}");
                ok = false;
            }
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
