//! Reading and replacing files without surprises: only regular files are read (a FIFO
//! with no writer would block a reader forever, a device never ends), and a save replaces
//! only a regular file, following symbolic links to their end (even a link whose file does
//! not exist yet) so that the links stay.
//!
//! ```
//! let dir = std::env::temp_dir().join(format!("rmsprop-file-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let e = rmsprop::file::read_regular(&dir).unwrap_err();
//! assert!(e.to_string().contains("is a folder, not a regular file"), "{e}");
//! assert!(rmsprop::file::write_target(&dir).unwrap_err().contains("is a folder"));
//! assert_eq!(rmsprop::file::write_target(&dir.join("new")).unwrap(), dir.join("new"));
//! ```

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};

/// How many symbolic links [`write_target`] follows before it gives up (Linux's limit).
const MAX_LINKS: usize = 40;

/// What a file that is not a regular file is, in words.
fn kind(m: &Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = m.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if m.is_dir() { "a folder" } else { "not a regular file" }
}

fn not_regular(path: &Path, m: &Metadata) -> String {
    format!("{} is {}, not a regular file", path.display(), kind(m))
}

/// Opens `path` for reading without blocking on a FIFO, and refuses anything that is not a
/// regular file (after following links) with an [`InvalidInput`](std::io::ErrorKind) error
/// that says what it is.
///
/// ```
/// let e = rmsprop::file::open_regular("/dev/null".as_ref()).unwrap_err();
/// assert_eq!(e.to_string(), "is a character device, not a regular file");
/// ```
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    let mut options = File::options();
    options.read(true);
    // opening a FIFO for reading waits for a writer unless non-blocking (a regular file's
    // reads never block, so the flag changes nothing else)
    #[cfg(target_os = "linux")]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path)?;
    let m = file.metadata()?;
    if !m.is_file() {
        let why = format!("is {}, not a regular file", kind(&m));
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, why));
    }
    Ok(file)
}

/// The whole contents of the regular file at `path` ([`open_regular`]).
///
/// ```
/// let e = rmsprop::file::read_regular("/no/such/file".as_ref()).unwrap_err();
/// assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
/// ```
pub fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Where writing a file to `path` by rename should go: the end of its symbolic links
/// (relative links read from the link's folder), which may not exist yet, or `path`
/// itself. An error in words when something other than a regular file is there, or the
/// links loop.
pub fn write_target(path: &Path) -> std::result::Result<PathBuf, String> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(p),
            Err(e) => return Err(format!("cannot look at {}: {e}", p.display())),
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(&p).map_err(|e| format!("cannot read the link {}: {e}", p.display()))?;
                p = match p.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                };
            }
            Ok(m) if m.is_file() => return Ok(p),
            Ok(m) => return Err(format!("{}: only a regular file is replaced", not_regular(&p, &m))),
        }
    }
    Err(format!("{}: more than {MAX_LINKS} symbolic links in a row", path.display()))
}
