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
    assert!(
        e.to_string()
            .ends_with("binary.dat:1: byte 0xff at column 3 is not text, expected 6 tab-separated numbers per line"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The airfoil rows with column `j` of row `i` replaced by `v` (each call a fresh copy).
fn with_value(cells: &[(usize, usize, f64)]) -> Vec<[f64; data::COLUMNS]> {
    let text = std::str::from_utf8(data::EMBEDDED).unwrap();
    let mut rows = data::parse(text, Path::new("airfoil")).unwrap();
    for &(i, j, v) in cells {
        rows[i][j] = v;
    }
    rows
}

/// Large values are standardised, not turned into a column of zeros or NaN; a column that
/// cannot be is an error naming it.
#[test]
fn huge_values_are_standardised_or_refused_never_silently_zero() {
    let p = Path::new("big.dat");
    let file = || Source::File(p.into());
    // one value of 1e155: the squares overflow; the column is scaled, and that row stands out
    let d = data::standardise(&with_value(&[(7, 2, 1e155)]), p, file()).unwrap();
    let col: Vec<f32> = (0..d.rows).map(|i| d.row(i)[2]).collect();
    assert!(col.iter().all(|v| v.is_finite()));
    assert!(
        (col[7] - (d.rows as f32 - 1.0).sqrt()).abs() < 1e-3,
        "the outlier is sqrt(n - 1) deviations out: {}",
        col[7]
    );
    assert!(col.iter().enumerate().all(|(i, v)| i == 7 || v.abs() < 0.1), "the rest sit together, not at 0 exactly");
    // two values of 1e308: the sum overflows, the scaled column does not
    let d = data::standardise(&with_value(&[(0, 0, 1e308), (1, 0, 1e308)]), p, file()).unwrap();
    assert!(d.features.iter().chain(&d.labels).all(|v| v.is_finite()));
    // a column of ±1e200
    let rows: Vec<_> = (0..10)
        .map(|i| {
            [
                1.0 + i as f64,
                2.0 * i as f64,
                if i % 2 == 0 { 1e200 } else { -1e200 },
                3.0 - i as f64,
                i as f64 * i as f64,
                i as f64,
            ]
        })
        .collect();
    let d = data::standardise(&rows, p, file()).unwrap();
    assert!((0..10).all(|i| (d.row(i)[2].abs() - 1.0).abs() < 1e-6), "{:?}", d.features);
    // a constant column of 1e308 (its mean is infinite) is still constant
    let rows = vec![[1e308, 1.0, 2.0, 3.0, 4.0, 5.0], [1e308, 2.0, 3.0, 4.0, 5.0, 6.0]];
    let e = data::standardise(&rows, p, file()).unwrap_err();
    assert_eq!(e.to_string(), "big.dat: column 1 has the same value 1e308 on every line; it cannot be standardised");
    // a spread at f64's limit
    let rows: Vec<_> = (0..100)
        .map(|i| {
            [
                if i == 0 { 1.7e308 } else { -1.7e308 },
                i as f64,
                1.0 + i as f64,
                2.0 * i as f64,
                3.0 * i as f64,
                4.0 + i as f64,
            ]
        })
        .collect();
    // standardised in units of its largest magnitude: one +1 among 99 -1, the mean -0.98
    // and the spread sqrt(1 - 0.98²) (before: x - mean overflowed, and the column was refused)
    let d = data::standardise(&rows, p, file()).unwrap();
    let spread = (1.0f64 - 0.98 * 0.98).sqrt();
    assert!((f64::from(d.row(0)[0]) - 1.98 / spread).abs() < 1e-5, "{:?}", d.row(0));
    assert!((f64::from(d.row(1)[0]) + 0.02 / spread).abs() < 1e-5, "{:?}", d.row(1));
}

/// A column of tiny values is standardised as one of ordinary values: (k - 5.5) / sqrt(8.25)
/// for k·u, k = 1..10, whatever the unit u (before: around 1e-161 the squared deviations
/// underflowed, 0.6 % off without a word; at 3e-162 or 1e-320 the column was refused as
/// "too large").
#[test]
fn tiny_columns_are_standardised_as_ordinary_ones() {
    let p = Path::new("tiny.dat");
    let file = || data::Source::File(p.into());
    let expected: Vec<f64> = (1..=10).map(|k| (k as f64 - 5.5) / 8.25f64.sqrt()).collect();
    for unit in [1.0, 1e-161, 3e-162, 1e-300, 1e-320, 5e-324 * 3.0] {
        let rows: Vec<[f64; 6]> = (1..=10)
            .map(|k| [k as f64 * unit, k as f64, (k * k) as f64, 1.0 + k as f64, 2.0 * k as f64, 3.0 - k as f64])
            .collect();
        let d = data::standardise(&rows, p, file()).unwrap_or_else(|e| panic!("unit {unit:e}: {e}"));
        for (i, e) in expected.iter().enumerate() {
            let got = f64::from(d.row(i)[0]);
            assert!((got - e).abs() < 1e-6, "unit {unit:e}, row {i}: {got} for {e}");
        }
    }
    // a spread too small against its mean for f32 is named as such, not as "too large"
    let rows: Vec<[f64; 6]> =
        (0..10).map(|k| [1e300 + if k == 0 { 1e270 } else { 0.0 }, k as f64, 1.0, 2.0, 3.0, k as f64 + 1.0]).collect();
    let rows: Vec<[f64; 6]> = rows
        .into_iter()
        .enumerate()
        .map(|(k, mut r)| {
            r[2] = (k * k) as f64;
            r[3] = k as f64 * 2.0;
            r[4] = k as f64 * 3.0;
            r
        })
        .collect();
    if let Err(e) = data::standardise(&rows, p, file()) {
        assert!(!e.to_string().contains("too large"), "{e}");
    }
}

#[test]
fn odd_files_read_as_a_person_would_expect_or_say_where_they_are_wrong() {
    let dir = std::env::temp_dir().join(format!("rmsprop-odd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let f = dir.join(name);
        std::fs::write(&f, bytes).unwrap();
        f
    };
    let rows = "1\t2\t3\t4\t5\t6\n2\t3\t4\t5\t6\t7\n4\t1\t0\t2\t2\t9\n";
    // a byte-order mark is not part of the first number
    let bom = [b"\xef\xbb\xbf".as_slice(), rows.as_bytes()].concat();
    assert_eq!(data::load(&write("bom.dat", &bom)).unwrap().rows, 3);
    // old Mac line ends
    assert_eq!(data::load(&write("cr.dat", rows.replace('\n', "\r").as_bytes())).unwrap().rows, 3);
    // a trailing tab: said, not "7 columns" alone
    let e = data::load(&write("tab.dat", b"1\t2\t3\t4\t5\t6\t\n")).unwrap_err().to_string();
    assert!(
        e.ends_with(
            "tab.dat:1: 7 columns, expected 6 tab-separated numbers; the last column is empty: a trailing tab?"
        ),
        "{e}"
    );
    // a binary file: the line and column of the first byte that is not text
    let e = data::load(&write("bin.dat", b"1\t2\t3\t4\t5\t6\n7\t\xff\t9\n")).unwrap_err().to_string();
    assert!(
        e.ends_with("bin.dat:2: byte 0xff at column 3 is not text, expected 6 tab-separated numbers per line"),
        "{e}"
    );
    // a folder: what it is, once (a FIFO or a device likewise, never waited on)
    let e = data::load(&dir).unwrap_err().to_string();
    assert_eq!(e, format!("{}: is a folder, not a regular file", dir.display()));
    let e = data::load("/dev/zero".as_ref()).unwrap_err().to_string();
    assert_eq!(e, "/dev/zero: is a character device, not a regular file");
    std::fs::remove_dir_all(&dir).unwrap();
}
