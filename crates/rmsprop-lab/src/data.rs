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
    /// The file could not be read (the message is the system's, said once).
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The file is not UTF-8 text.
    #[error(
        "{path}:{line}: byte {byte:#04x} at column {column} is not text, expected {COLUMNS} tab-separated numbers per line"
    )]
    NotText {
        /// The file.
        path: PathBuf,
        /// 1-based line of the first byte that is not UTF-8.
        line: u64,
        /// 1-based byte column in that line.
        column: usize,
        /// The byte.
        byte: u8,
    },
    /// The file has no rows.
    #[error("{path}: the file is empty, expected {COLUMNS} tab-separated numbers per line")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A line with the wrong number of columns.
    #[error("{path}:{line}: {got} columns, expected {COLUMNS} tab-separated numbers{hint}")]
    Columns {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Columns found.
        got: usize,
        /// What probably happened (`; the last column is empty: a trailing tab?`), or empty.
        hint: &'static str,
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
    #[error("{path}: column {column} has the same value {} on every line; it cannot be standardised", crate::hyper::number(*.value))]
    Constant {
        /// The file.
        path: PathBuf,
        /// 1-based column.
        column: usize,
        /// Its value.
        value: f64,
    },
    /// A column whose values are too large for its mean and spread to be finite in `f64`.
    #[error("{path}: column {column} holds values up to {largest:e}, too large to standardise in float64")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// 1-based column.
        column: usize,
        /// Its largest magnitude.
        largest: f64,
    },
    /// A column whose values differ by less than `f64` can tell apart once standardised
    /// (their spread rounds to 0 against their mean).
    #[error(
        "{path}: column {column} varies by {spread:e} around {mean:e}, too little to standardise in float64 (the \
         standardised values would not be finite)"
    )]
    NoSpread {
        /// The file.
        path: PathBuf,
        /// 1-based column.
        column: usize,
        /// Its mean.
        mean: f64,
        /// Its standard deviation.
        spread: f64,
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

/// Parses the raw numbers of an airfoil file, in file order (tab-separated, LF, CRLF or
/// CR-only line ends, a leading byte-order mark skipped, blank lines ignored).
pub fn parse(text: &str, path: &Path) -> Result<Vec<[f64; COLUMNS]>, DataError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Vec::new();
    // `lines` strips both `\n` and `\r\n`; a file of old Mac line ends has only `\r`
    let lines: Box<dyn Iterator<Item = &str>> =
        if text.contains('\r') && !text.contains('\n') { Box::new(text.split('\r')) } else { Box::new(text.lines()) };
    for (index, line) in lines.enumerate() {
        let line_no = index as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != COLUMNS {
            let trailing = fields.len() == COLUMNS + 1 && fields[COLUMNS].trim().is_empty();
            let hint = if trailing { "; the last column is empty: a trailing tab?" } else { "" };
            return Err(DataError::Columns { path: path.into(), line: line_no, got: fields.len(), hint });
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
/// then rounds to `f32` (D2L `get_data_ch7`). A column of one value, or of values so large
/// that its mean or spread overflows even when scaled, is an error (never a column of
/// zeros or NaN).
pub fn standardise(rows: &[[f64; COLUMNS]], path: &Path, source: Source) -> Result<Dataset, DataError> {
    // each column's moments in units of its `scale` (1 but for very large or small values)
    let mut scale = [1.0; COLUMNS];
    let mut mean = [0.0; COLUMNS];
    let mut std = [0.0; COLUMNS];
    for j in 0..COLUMNS {
        let column = || rows.iter().map(|r| r[j]);
        let first = rows.first().map_or(0.0, |r| r[j]);
        if column().all(|v| v == first) {
            return Err(DataError::Constant { path: path.into(), column: j + 1, value: first });
        }
        (scale[j], mean[j], std[j]) = moments(column);
        // scaled by its largest magnitude, a column's moments are finite and its spread is
        // positive unless its values overflow f64 together
        if !(mean[j].is_finite() && std[j].is_finite() && std[j] > 0.0) {
            let largest = column().map(f64::abs).fold(0.0, f64::max);
            return Err(DataError::TooLarge { path: path.into(), column: j + 1, largest });
        }
    }
    let z = |r: &[f64; COLUMNS], j: usize| ((r[j] / scale[j] - mean[j]) / std[j]) as f32;
    // x - mean overflows only for spreads near f64's limit; (x - mean) / std, where the
    // spread is tiny against the mean (values 1e300 apart by 1e-20 of themselves), beyond f32
    if let Some(j) = (0..COLUMNS).find(|&j| rows.iter().any(|r| !z(r, j).is_finite())) {
        let largest = rows.iter().map(|r| r[j].abs()).fold(0.0, f64::max);
        let (mean, spread) = (mean[j] * scale[j], std[j] * scale[j]);
        if spread < largest * 1e-30 {
            return Err(DataError::NoSpread { path: path.into(), column: j + 1, mean, spread });
        }
        return Err(DataError::TooLarge { path: path.into(), column: j + 1, largest });
    }
    Ok(Dataset {
        features: rows.iter().flat_map(|r| (0..FEATURES).map(move |j| z(r, j))).collect(),
        labels: rows.iter().map(|r| z(r, FEATURES)).collect(),
        rows: rows.len(),
        source,
    })
}

/// Below this largest magnitude a column's squared deviations (at most its square) lose
/// bits to f64's subnormal range, or vanish: such a column is scaled first.
const SMALL: f64 = 1e-100;

/// `(scale, mean, std)`: the mean and population standard deviation of a column in units
/// of `scale` — 1, as the chapter computes them, or, where that overflows (values beyond
/// about 1e154) or the squares underflow (values below [`SMALL`]), the column's largest
/// magnitude (the standardised values are then formed in those units too, so that a
/// subnormal mean or spread loses no bits).
fn moments<I: Iterator<Item = f64>>(column: impl Fn() -> I) -> (f64, f64, f64) {
    let plain = |scale: f64| {
        let n = column().count() as f64;
        let mean = column().map(|v| v / scale).sum::<f64>() / n;
        let var = column().map(|v| (v / scale - mean).powi(2)).sum::<f64>() / n;
        (scale, mean, var.sqrt())
    };
    let largest = column().map(f64::abs).fold(0.0, f64::max);
    if largest < SMALL && largest > 0.0 {
        return plain(largest);
    }
    let (_, mean, std) = plain(1.0);
    if mean.is_finite() && std.is_finite() {
        return (1.0, mean, std);
    }
    plain(largest)
}

/// Reads and standardises an airfoil file.
pub fn load(path: &Path) -> Result<Dataset, DataError> {
    // a FIFO or a device is refused at once, not waited on
    let bytes = rmsprop::file::read_regular(path).map_err(|error| DataError::Io { path: path.into(), error })?;
    from_bytes(&bytes, path)
}

/// Parses and standardises the bytes of an airfoil file (`path` names it in messages).
///
/// ```
/// let e = rmsprop_lab::data::from_bytes(b"1\t2\n", "x.dat".as_ref()).unwrap_err();
/// assert_eq!(e.to_string(), "x.dat:1: 2 columns, expected 6 tab-separated numbers");
/// ```
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Dataset, DataError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (good, bad) = bytes.split_at(e.valid_up_to());
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let line = good.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        DataError::NotText { path: path.into(), line, column: good.len() - line_start + 1, byte: bad[0] }
    })?;
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
