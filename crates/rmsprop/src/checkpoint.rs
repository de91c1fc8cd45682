//! Optimizer state on disk: safetensors arrays named as in PyTorch's `state_dict`
//! (`<param>.square_avg`, `<param>.grad_avg`, `<param>.momentum_buffer`, ..., and `step`),
//! with the format version, dtype and hyperparameters in its metadata (hyperparameters
//! as JSON, `f64` printed shortest-round-trip, never `f32` printed).
//!
//! The state of a shard ([`Optimizer::sharded`]) is that of its pieces, and its metadata
//! says which (`pieces`: `[first, length, whole]` per tensor); it loads only into the
//! optimizer of the same pieces (the crate `rmsprop-mpi` re-cuts a sharded checkpoint for
//! another number of processes, or joins it into one).
//!
//! Files are written atomically (a temporary file of a name no other save uses, in the same
//! folder, then renamed; a symbolic link is followed, not replaced) and byte for byte the
//! same for the same state (metadata in sorted order). Loading checks the version, the
//! optimizer, the tensors, every name, shape and dtype, the counters, and every state value
//! (finite; squares not negative), and changes nothing unless all of them fit: save, load
//! and continue is bit-identical to never stopping.
//!
//! ```
//! use rmsprop::{Optimizer, RmsProp};
//! let dir = std::env::temp_dir().join(format!("rmsprop-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("opt.safetensors");
//! let mut opt = Optimizer::<f32>::new(RmsProp::default(), &[("w", &[2][..])]).unwrap();
//! let mut w = vec![vec![1.0f32, 2.0]];
//! opt.step(&mut w, &[vec![0.1f32, -0.2]]).unwrap();
//! opt.save(&path).unwrap();
//! let mut resumed = Optimizer::<f32>::new(RmsProp::default(), &[("w", &[2][..])]).unwrap();
//! resumed.load(&path).unwrap();
//! assert_eq!(resumed.state("w", "square_avg"), opt.state("w", "square_avg"));
//! assert_eq!(resumed.step_count(), 1);
//! ```

use crate::error::{Error, Result};
use crate::float::{Dtype, Float, Param};
use crate::optim::{Optimizer, OptimizerConfig};
use safetensors::tensor::{Dtype as StDtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The checkpoint format version this build writes and reads.
pub const FORMAT_VERSION: &str = "1";

/// The `format` metadata entry that marks our files.
pub const FORMAT_NAME: &str = "rmsprop-optimizer-state";

fn st_dtype(d: Dtype) -> StDtype {
    match d {
        Dtype::F32 => StDtype::F32,
        Dtype::F64 => StDtype::F64,
    }
}

/// The metadata of a checkpoint (format, version, dtype, step, hyperparameters as JSON),
/// without reading its arrays.
///
/// ```no_run
/// let meta = rmsprop::checkpoint::metadata("opt.safetensors".as_ref()).unwrap();
/// println!("{}", meta["hyperparameters"]);
/// ```
pub fn metadata(path: &Path) -> Result<HashMap<String, String>> {
    read_metadata(&read(path)?, path)
}

fn read_metadata(bytes: &[u8], path: &Path) -> Result<HashMap<String, String>> {
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| corrupt(path, format!("not a safetensors file: {e}")))?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| Error::Io { path: path.to_path_buf(), error })
}

fn corrupt(path: &Path, reason: String) -> Error {
    Error::Checkpoint { path: path.to_path_buf(), reason }
}

/// The safetensors file `bytes` with its header's `__metadata__` in sorted key order
/// (safetensors writes it from a `HashMap`, in a different order each time).
fn sorted_header(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    let bad = |e: String| corrupt(path, format!("cannot serialise: {e}"));
    let n = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize);
    let (header, data) = match n {
        Some(n) if bytes.len() >= 8 + n => (&bytes[8..8 + n], &bytes[8 + n..]),
        _ => return Err(bad("a header shorter than its length".into())),
    };
    let mut top: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| bad(e.to_string()))?;
    if let Some(meta) = top.get_mut("__metadata__") {
        let sorted: BTreeMap<String, String> = serde_json::from_value(meta.take()).map_err(|e| bad(e.to_string()))?;
        *meta = serde_json::to_value(sorted).map_err(|e| bad(e.to_string()))?;
    }
    let mut header = serde_json::to_vec(&top).map_err(|e| bad(e.to_string()))?;
    header.resize(header.len().next_multiple_of(8), b' ');
    Ok([&(header.len() as u64).to_le_bytes()[..], &header, data].concat())
}

/// Where a save to `path` writes: the file a symbolic link points to (the link stays), or
/// `path` itself.
fn write_target(path: &Path) -> PathBuf {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        _ => path.to_path_buf(),
    }
}

/// A temporary name beside `target` that no other save of this process uses.
fn temporary(target: &Path) -> Result<PathBuf> {
    static SAVES: AtomicU64 = AtomicU64::new(0);
    let dir = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = target.file_name().ok_or_else(|| corrupt(target, "not a file path".into()))?;
    let n = SAVES.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!(".{}.tmp-{}-{n}", name.to_string_lossy(), std::process::id())))
}

/// The first value of a state array that cannot be: not finite, or a negative square.
fn bad_value<T: Float>(values: &[T], squares: bool) -> Option<(usize, f64, &'static str)> {
    values.iter().map(|v| v.to_f64()).enumerate().find_map(|(i, v)| {
        if !v.is_finite() {
            Some((i, v, "state must be finite"))
        } else if squares && v < 0.0 {
            Some((i, v, "a sum of squares is never negative"))
        } else {
            None
        }
    })
}

impl<P: Param> Optimizer<P> {
    /// Writes the optimizer state to `path` (safetensors), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |error| Error::Io { path: path.to_path_buf(), error };
        let mut arrays: Vec<(String, StDtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (t, tr) in self.tracked().iter().enumerate() {
            for (k, slot) in self.groups()[tr.group].slots().iter().enumerate() {
                if let Some(buf) = self.buffer(t, k) {
                    let mut bytes = Vec::with_capacity(size_of_val(buf));
                    buf.iter().for_each(|v| v.write_le(&mut bytes));
                    arrays.push((
                        format!("{}.{}", tr.spec.name, slot.name),
                        st_dtype(P::Acc::DTYPE),
                        tr.spec.shape.clone(),
                        bytes,
                    ));
                }
            }
        }
        let counter = |what: &str, v: u64| {
            i64::try_from(v)
                .map_err(|_| corrupt(path, format!("{what} {v} does not fit the format's 64-bit signed integer")))
        };
        let step = counter("step count", self.step_count())?;
        counter("skipped step count", self.skipped_steps())?;
        arrays.push(("step".into(), StDtype::I64, vec![], step.to_le_bytes().to_vec()));
        let groups: Vec<&OptimizerConfig> = self.groups().iter().collect();
        let tensors: Vec<(&str, &[usize], usize)> =
            self.tracked().iter().map(|t| (t.spec.name.as_str(), &t.spec.shape[..], t.group)).collect();
        let mut meta = HashMap::from([
            ("format".to_string(), FORMAT_NAME.to_string()),
            ("format_version".to_string(), FORMAT_VERSION.to_string()),
            ("dtype".to_string(), P::Acc::DTYPE.name().to_string()),
            ("param_dtype".to_string(), P::NAME.to_string()),
            ("step".to_string(), self.step_count().to_string()),
            ("skipped_steps".to_string(), self.skipped_steps().to_string()),
            ("hyperparameters".to_string(), serde_json::to_string(&groups).expect("configs serialise")),
            ("tensors".to_string(), serde_json::to_string(&tensors).expect("specs serialise")),
        ]);
        if let Some(pieces) = self.pieces() {
            meta.insert("pieces".to_string(), serde_json::to_string(&pieces).expect("pieces serialise"));
        }
        let views = arrays
            .iter()
            .map(|(name, dt, shape, bytes)| Ok((name.clone(), TensorView::new(*dt, shape.clone(), bytes)?)))
            .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
            .map_err(|e| corrupt(path, format!("cannot serialise: {e}")))?;
        let bytes =
            safetensors::serialize(views, Some(meta)).map_err(|e| corrupt(path, format!("cannot serialise: {e}")))?;
        let bytes = sorted_header(bytes, path)?;
        let target = write_target(path);
        let tmp = temporary(&target)?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::options().write(true).create_new(true).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &target)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }

    /// Replaces the optimizer state with the one saved at `path`. The optimizer must have
    /// the same tensors (names, shapes), dtype and state layout (same optimizer and
    /// switches such as `centered`); otherwise nothing changes and the error says what
    /// differs. Hyperparameters are not taken from the file: the optimizer keeps its own
    /// (as after [`metadata`] inspection, a caller may compare them).
    pub fn load(&mut self, path: &Path) -> Result<()> {
        self.load_bytes(&read(path)?, path)
    }

    /// [`load`](Self::load) from the bytes of a checkpoint; `path` names it in messages.
    ///
    /// ```
    /// use rmsprop::{Optimizer, RmsProp};
    /// let mut opt = Optimizer::<f32>::new(RmsProp::default(), &[("w", &[2][..])]).unwrap();
    /// let e = opt.load_bytes(b"not a checkpoint", "mem".as_ref()).unwrap_err();
    /// assert!(e.to_string().starts_with("checkpoint mem: not a safetensors file"));
    /// ```
    pub fn load_bytes(&mut self, bytes: &[u8], path: &Path) -> Result<()> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(path, format!("not a safetensors file: {e}")))?;
        let meta = read_metadata(bytes, path)?;
        let get = |k: &str| meta.get(k).map(String::as_str);
        if get("format") != Some(FORMAT_NAME) {
            return Err(corrupt(path, format!("format {:?}, expected {FORMAT_NAME:?}", get("format"))));
        }
        if get("format_version") != Some(FORMAT_VERSION) {
            return Err(corrupt(
                path,
                format!("format version {:?}, this build reads version {FORMAT_VERSION}", get("format_version")),
            ));
        }
        if get("param_dtype") != Some(P::NAME) || get("dtype") != Some(P::Acc::DTYPE.name()) {
            return Err(corrupt(
                path,
                format!(
                    "written for {} parameters with {} state, this optimizer has {} parameters with {} state",
                    get("param_dtype").unwrap_or("unknown"),
                    get("dtype").unwrap_or("unknown"),
                    P::NAME,
                    P::Acc::DTYPE.name()
                ),
            ));
        }
        self.check_written_for(get("hyperparameters"), get("tensors"), path)?;
        let theirs: Option<Vec<[usize; 3]>> = get("pieces")
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt(path, format!("metadata pieces is not a list of [first, length, whole]: {e}")))?;
        if theirs != self.pieces() {
            let say = |p: Option<Vec<[usize; 3]>>| match p {
                None => "whole tensors".to_string(),
                Some(p) => format!("the pieces [first, length, whole] {p:?}"),
            };
            return Err(corrupt(
                path,
                format!("written for {}, this optimizer holds {}", say(theirs), say(self.pieces())),
            ));
        }
        let counter = |key: &str| {
            let text = get(key).ok_or_else(|| corrupt(path, format!("missing metadata {key:?}")))?;
            text.parse::<u64>().ok().filter(|&v| i64::try_from(v).is_ok()).ok_or_else(|| {
                corrupt(path, format!("metadata {key} = {text:?}, expected a whole number from 0 to 2^63 - 1"))
            })
        };
        let skipped = counter("skipped_steps")?;
        let step = {
            let v = st.tensor("step").map_err(|_| corrupt(path, "missing tensor \"step\"".into()))?;
            if v.dtype() != StDtype::I64 || !v.shape().is_empty() {
                return Err(corrupt(
                    path,
                    format!("tensor \"step\" is {:?}{:?}, expected a scalar I64", v.dtype(), v.shape()),
                ));
            }
            let raw = i64::from_le_bytes(v.data().try_into().expect("8 bytes checked by safetensors"));
            u64::try_from(raw).map_err(|_| corrupt(path, format!("negative step {raw}")))?
        };
        if counter("step")? != step {
            return Err(corrupt(
                path,
                format!("metadata step {:?} disagrees with tensor \"step\" = {step}", get("step")),
            ));
        }
        let mut expected = vec!["step".to_string()];
        let mut restored = Vec::new();
        for tr in self.tracked() {
            let mut bufs = Vec::new();
            for slot in self.groups()[tr.group].slots() {
                if !slot.used {
                    bufs.push(Vec::new());
                    continue;
                }
                let name = format!("{}.{}", tr.spec.name, slot.name);
                let v = st.tensor(&name).map_err(|_| corrupt(path, format!("missing tensor {name:?}")))?;
                if v.dtype() != st_dtype(P::Acc::DTYPE) {
                    return Err(corrupt(
                        path,
                        format!("tensor {name:?} has dtype {:?}, expected {:?}", v.dtype(), st_dtype(P::Acc::DTYPE)),
                    ));
                }
                if v.shape() != tr.spec.shape.as_slice() {
                    return Err(corrupt(
                        path,
                        format!("tensor {name:?} has shape {:?}, expected {:?}", v.shape(), tr.spec.shape),
                    ));
                }
                let values: Vec<P::Acc> = v.data().chunks_exact(size_of::<P::Acc>()).map(P::Acc::read_le).collect();
                if let Some((i, value, why)) = bad_value(&values, slot.nonneg) {
                    return Err(corrupt(path, format!("tensor {name:?} element {i} is {value}: {why}")));
                }
                bufs.push(values);
                expected.push(name);
            }
            restored.push(bufs);
        }
        if let Some(extra) = st.names().into_iter().find(|n| !expected.iter().any(|e| e == n)) {
            return Err(corrupt(
                path,
                format!(
                    "unexpected tensor {extra:?}: the checkpoint was written for a different optimizer or tensor set"
                ),
            ));
        }
        self.restore(step, skipped, restored);
        Ok(())
    }

    /// The optimizers and tensors a checkpoint names in its metadata are this optimizer's;
    /// otherwise the error names both (rather than the first missing array).
    fn check_written_for(&self, hyperparameters: Option<&str>, tensors: Option<&str>, path: &Path) -> Result<()> {
        let json = |key: &str, text: Option<&str>| -> Result<serde_json::Value> {
            let text = text.ok_or_else(|| corrupt(path, format!("missing metadata {key:?}")))?;
            serde_json::from_str(text).map_err(|e| corrupt(path, format!("metadata {key} is not JSON: {e}")))
        };
        let theirs: Vec<String> = json("hyperparameters", hyperparameters)?
            .as_array()
            .map(|groups| groups.iter().map(|g| g["optimizer"].as_str().unwrap_or("unknown").to_string()).collect())
            .ok_or_else(|| corrupt(path, "metadata hyperparameters is not a list of groups".into()))?;
        let ours: Vec<String> = self
            .groups()
            .iter()
            .map(|g| serde_json::to_value(g).ok().and_then(|v| v["optimizer"].as_str().map(String::from)))
            .map(|name| name.unwrap_or_default())
            .collect();
        if theirs != ours {
            return Err(corrupt(
                path,
                format!("written for {}, this optimizer is {}", theirs.join(" + "), ours.join(" + ")),
            ));
        }
        let theirs: Vec<(String, Vec<usize>)> =
            serde_json::from_value::<Vec<(String, Vec<usize>, usize)>>(json("tensors", tensors)?)
                .map_err(|e| corrupt(path, format!("metadata tensors is not a list of (name, shape, group): {e}")))?
                .into_iter()
                .map(|(name, shape, _)| (name, shape))
                .collect();
        let ours: Vec<(String, Vec<usize>)> =
            self.tracked().iter().map(|t| (t.spec.name.clone(), t.spec.shape.clone())).collect();
        if theirs != ours {
            let list =
                |v: &[(String, Vec<usize>)]| v.iter().map(|(n, s)| format!("{n}{s:?}")).collect::<Vec<_>>().join(", ");
            return Err(corrupt(
                path,
                format!("written for tensors {}, this optimizer has {}", list(&theirs), list(&ours)),
            ));
        }
        Ok(())
    }
}
