//! The NASA airfoil self-noise data set as the chapter prepares it (`d2l.get_data_ch7`):
//! 1503 rows of 6 tab-separated numbers, every column standardised with its mean and
//! population standard deviation over all rows in `f64`, then stored as `f32`;
//! features are the first five columns, the label the last.
//!
//! The published file is embedded in the crate ([`EMBEDDED`], provenance in `data/README.md`),
//! so the chapter runs on the real data with no download and no path:
//!
//! ```
//! let d = rmsprop_lab::data::embedded();
//! assert_eq!((d.rows, d.source.to_string().as_str()), (1503, "the embedded airfoil data (UCI, 1503 rows)"));
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

/// Columns in the file: five features and the label.
pub const COLUMNS: usize = 6;
/// Features per row.
pub const FEATURES: usize = 5;
/// The file name of the data set (UCI).
pub const FILE_NAME: &str = "airfoil_self_noise.dat";
/// Where the data set is published (UCI Machine Learning Repository, data set 291, CC BY 4.0).
pub const URL: &str = "https://archive.ics.uci.edu/dataset/291/airfoil+self+noise";
/// SHA-1 of the published file, which [`EMBEDDED`] is byte for byte (a test checks it).
pub const SHA1: &str = "76e5be1548fd8222e5074cf0faae75edff8cf93f";
/// The published file, embedded (`crates/rmsprop-lab/data/airfoil_self_noise.dat`).
pub const EMBEDDED: &[u8] = include_bytes!("../data/airfoil_self_noise.dat");

/// What went wrong reading the data, with the file and line.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not UTF-8 text.
    #[error("{path}: not a text file ({source}), expected {COLUMNS} tab-separated numbers per line")]
    NotText {
        /// The file.
        path: PathBuf,
        /// Where the bytes stop being UTF-8.
        source: std::str::Utf8Error,
    },
    /// The file has no rows.
    #[error("{path}: the file is empty, expected {COLUMNS} tab-separated numbers per line")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A line with the wrong number of columns.
    #[error("{path}:{line}: {got} columns, expected {COLUMNS} tab-separated numbers")]
    Columns {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Columns found.
        got: usize,
    },
    /// A field that is not a finite number.
    #[error("{path}:{line}: column {column} is {text:?}, expected a finite number")]
    NotANumber {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// 1-based column.
        column: usize,
        /// The field as written.
        text: String,
    },
    /// A column with a single value cannot be standardised.
    #[error("{path}: column {column} has the same value {value} on every line; it cannot be standardised")]
    Constant {
        /// The file.
        path: PathBuf,
        /// 1-based column.
        column: usize,
        /// Its value.
        value: f64,
    },
}

/// Where a data set came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// The copy embedded in the program ([`EMBEDDED`]).
    Embedded,
    /// Read from this file (`--data PATH`).
    File(PathBuf),
}

impl fmt::Display for Source {
    /// `the embedded airfoil data (UCI, 1503 rows)` or `airfoil data from PATH`; the row
    /// count of the embedded file is the published one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Embedded => write!(f, "the embedded airfoil data (UCI, 1503 rows)"),
            Source::File(p) => write!(f, "airfoil data from {}", p.display()),
        }
    }
}

/// A standardised regression data set: `rows` rows of [`FEATURES`] features and a label.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Row-major `rows × FEATURES`.
    pub features: Vec<f32>,
    /// One label per row.
    pub labels: Vec<f32>,
    /// Number of rows.
    pub rows: usize,
    /// Where it came from.
    pub source: Source,
}

impl Dataset {
    /// The features of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * FEATURES..(i + 1) * FEATURES]
    }

    /// The first `n` rows (the later edition's `--rows 1500`).
    pub fn truncated(mut self, n: usize) -> Dataset {
        let n = n.min(self.rows);
        self.features.truncate(n * FEATURES);
        self.labels.truncate(n);
        self.rows = n;
        self
    }
}

/// Parses the raw numbers of an airfoil file, in file order (tab-separated, LF or CRLF
/// line ends, blank lines ignored).
pub fn parse(text: &str, path: &Path) -> Result<Vec<[f64; COLUMNS]>, DataError> {
    let mut rows = Vec::new();
    // `lines` strips both `\n` and `\r\n`
    for (index, line) in text.lines().enumerate() {
        let line_no = index as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != COLUMNS {
            return Err(DataError::Columns { path: path.into(), line: line_no, got: fields.len() });
        }
        let mut row = [0.0; COLUMNS];
        for (column, (field, value)) in fields.iter().zip(&mut row).enumerate() {
            *value = field.trim().parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                DataError::NotANumber { path: path.into(), line: line_no, column: column + 1, text: field.to_string() }
            })?;
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(DataError::Empty { path: path.into() });
    }
    Ok(rows)
}

/// Standardises every column (label too) with its mean and population std, in `f64`,
/// then rounds to `f32` (D2L `get_data_ch7`).
pub fn standardise(rows: &[[f64; COLUMNS]], path: &Path, source: Source) -> Result<Dataset, DataError> {
    let n = rows.len() as f64;
    let mut mean = [0.0; COLUMNS];
    let mut std = [0.0; COLUMNS];
    for j in 0..COLUMNS {
        mean[j] = rows.iter().map(|r| r[j]).sum::<f64>() / n;
        std[j] = (rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n).sqrt();
        if std[j] == 0.0 {
            return Err(DataError::Constant { path: path.into(), column: j + 1, value: rows[0][j] });
        }
    }
    let z = |r: &[f64; COLUMNS], j: usize| ((r[j] - mean[j]) / std[j]) as f32;
    Ok(Dataset {
        features: rows.iter().flat_map(|r| (0..FEATURES).map(move |j| z(r, j))).collect(),
        labels: rows.iter().map(|r| z(r, FEATURES)).collect(),
        rows: rows.len(),
        source,
    })
}

/// Reads and standardises an airfoil file.
pub fn load(path: &Path) -> Result<Dataset, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.into(), source })?;
    let text = std::str::from_utf8(&bytes).map_err(|source| DataError::NotText { path: path.into(), source })?;
    standardise(&parse(text, path)?, path, Source::File(path.into()))
}

/// The embedded copy of the published file, standardised.
pub fn embedded() -> Dataset {
    let path = Path::new("<embedded airfoil_self_noise.dat>");
    let text = std::str::from_utf8(EMBEDDED).expect("the embedded file is ASCII (a test checks its SHA-1)");
    standardise(&parse(text, path).expect("the embedded file parses"), path, Source::Embedded)
        .expect("the embedded file's columns vary")
}

/// `--data PATH` if given (read with every check of [`load`]), else the embedded copy.
pub fn resolve(explicit: Option<&Path>) -> Result<Dataset, DataError> {
    explicit.map_or_else(|| Ok(embedded()), load)
}
