//! The airfoil data: the embedded copy is the published file, `--data` copies get the same
//! checks, and malformed files say where they are wrong.

use rmsprop_lab::data::{self, DataError, Source};
use sha1::Digest;
use std::path::{Path, PathBuf};

/// The repository's copy, which the crate embeds.
fn repository_copy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data").join(data::FILE_NAME)
}

fn sha1_hex(bytes: &[u8]) -> String {
    sha1::Sha1::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_embedded_copy_is_the_published_file() {
    assert_eq!(sha1_hex(data::EMBEDDED), data::SHA1);
    assert_eq!(data::EMBEDDED, std::fs::read(repository_copy()).unwrap().as_slice());
    assert_eq!(data::EMBEDDED.len(), 59_984);
    assert!(data::EMBEDDED.ends_with(b"\r\n"), "CRLF line ends, as published");
}

#[test]
fn loads_and_standardises_the_real_file() {
    let d = data::embedded();
    assert_eq!((d.rows, &d.source), (1503, &Source::Embedded));
    for j in 0..data::FEATURES {
        let col: Vec<f64> = (0..d.rows).map(|i| d.row(i)[j] as f64).collect();
        let mean = col.iter().sum::<f64>() / d.rows as f64;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d.rows as f64;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "column {j}: mean {mean}, var {var}");
    }
}

/// The recorded checksums of the standardised matrix (golden `mlp/` README: `data.first_row`,
/// `data.last_row`), from the recording machine's own preprocessing.
#[test]
fn standardised_rows_match_the_recorded_ones() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/golden/mlp/torch.json");
    let g: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let d = data::embedded();
    for (key, i) in [("first_row", 0), ("last_row", d.rows - 1)] {
        let want: Vec<f64> =
            g["problem"]["data"][key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let got: Vec<f64> = d.row(i).iter().chain([&d.labels[i]]).map(|&v| f64::from(v)).collect();
        for (j, (w, v)) in want.iter().zip(&got).enumerate() {
            assert!((w - v).abs() <= 1e-6 * w.abs().max(1.0), "{key} column {j}: {v} against {w}");
        }
    }
}

#[test]
fn an_explicit_copy_gets_the_same_rows_and_says_where_it_came_from() {
    let path = repository_copy();
    let d = data::resolve(Some(&path)).unwrap();
    assert_eq!(d.source, Source::File(path.clone()));
    assert_eq!(d.features, data::embedded().features);
    assert_eq!(d.labels, data::embedded().labels);
    assert_eq!(data::resolve(None).unwrap().source, Source::Embedded);
}

fn malformed(text: &str) -> String {
    data::parse(text, Path::new("bad.dat")).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn malformed_files_say_where() {
    assert_eq!(
        malformed("1\t2\t3\t4\t5\t6\r\n1\t2\t3\t4\t5\r\n"),
        "bad.dat:2: 5 columns, expected 6 tab-separated numbers"
    );
    assert_eq!(
        malformed("1\t2\t3\t4\t5\t6\r\n1\t2\tx\t4\t5\t6\r\n"),
        "bad.dat:2: column 3 is \"x\", expected a finite number"
    );
    assert_eq!(malformed(""), "bad.dat: the file is empty, expected 6 tab-separated numbers per line");
    let rows = data::parse("1\t2\t3\t4\t5\t6\n2\t2\t4\t5\t6\t7\n", Path::new("c.dat")).unwrap();
    let e = data::standardise(&rows, Path::new("c.dat"), data::Source::File("c.dat".into())).unwrap_err();
    assert_eq!(e.to_string(), "c.dat: column 2 has the same value 2 on every line; it cannot be standardised");
}

#[test]
fn a_missing_or_binary_file_is_an_error_naming_it() {
    let e = data::resolve(Some(Path::new("/nonexistent/airfoil_self_noise.dat"))).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }));
    assert!(e.to_string().starts_with("/nonexistent/airfoil_self_noise.dat: "), "{e}");
    let dir = std::env::temp_dir().join(format!("rmsprop-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("binary.dat");
    std::fs::write(&bin, [0x31, 0x09, 0xff, 0xfe, 0x0a]).unwrap();
    let e = data::load(&bin).unwrap_err();
    assert!(matches!(e, DataError::NotText { .. }), "{e}");
    assert!(e.to_string().contains("binary.dat: not a text file"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
