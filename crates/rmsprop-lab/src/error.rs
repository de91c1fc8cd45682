//! The lab's error type.

use std::path::PathBuf;

/// Anything the chapter's runs can fail with.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Reading or finding the data.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// Drawing a figure.
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
    /// An optimizer configuration.
    #[error(transparent)]
    Optimizer(#[from] rmsprop::Error),
    /// `--rows` outside the data.
    #[error("--rows {asked}: expected 1 to {available} (the rows of the data)")]
    Rows {
        /// Rows asked for.
        asked: usize,
        /// Rows in the data.
        available: usize,
    },
    /// An output folder that holds something other than an earlier chapter run.
    #[error("{path} exists and is not a chapter folder (no numbers.json): choose a new or empty folder with --out")]
    NotChapterFolder {
        /// The folder.
        path: PathBuf,
    },
    /// An output folder that holds the current folder: the chapter replaces its folder
    /// whole, which would pull the ground from under the shell that runs it.
    #[error(
        "{path} is the folder you are in (or holds it): the chapter replaces its output folder whole; give a new \
         folder with --out, e.g. --out chapter"
    )]
    HoldsCurrentFolder {
        /// The folder.
        path: PathBuf,
    },
    /// Writing an output file.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (said once: it is not a `source` for error chains).
        error: std::io::Error,
    },
}

/// Writes `contents` to `path`, naming the file on failure.
pub fn write(path: &std::path::Path, contents: impl AsRef<[u8]>) -> Result<(), LabError> {
    std::fs::write(path, contents).map_err(|error| LabError::Io { path: path.to_path_buf(), error })
}
