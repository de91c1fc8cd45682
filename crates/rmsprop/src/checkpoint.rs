//! Optimizer state on disk: safetensors arrays named as in PyTorch's `state_dict`
//! (`<param>.square_avg`, `<param>.grad_avg`, `<param>.momentum_buffer`, ..., and `step`),
//! with the format version, dtype and hyperparameters in its metadata (hyperparameters
//! as JSON, `f64` printed shortest-round-trip, never `f32` printed).
//!
//! Files are written atomically (temporary file in the same folder, then rename).
//! Loading checks the version, every name, shape and dtype, and changes nothing unless
//! all of them fit: save, load and continue is bit-identical to never stopping.
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
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

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
        arrays.push(("step".into(), StDtype::I64, vec![], (self.step_count() as i64).to_le_bytes().to_vec()));
        let groups: Vec<&OptimizerConfig> = self.groups().iter().collect();
        let tensors: Vec<(&str, &[usize], usize)> =
            self.tracked().iter().map(|t| (t.spec.name.as_str(), &t.spec.shape[..], t.group)).collect();
        let meta = HashMap::from([
            ("format".to_string(), FORMAT_NAME.to_string()),
            ("format_version".to_string(), FORMAT_VERSION.to_string()),
            ("dtype".to_string(), P::Acc::DTYPE.name().to_string()),
            ("param_dtype".to_string(), P::NAME.to_string()),
            ("step".to_string(), self.step_count().to_string()),
            ("skipped_steps".to_string(), self.skipped_steps().to_string()),
            ("hyperparameters".to_string(), serde_json::to_string(&groups).expect("configs serialise")),
            ("tensors".to_string(), serde_json::to_string(&tensors).expect("specs serialise")),
        ]);
        let views = arrays
            .iter()
            .map(|(name, dt, shape, bytes)| Ok((name.clone(), TensorView::new(*dt, shape.clone(), bytes)?)))
            .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
            .map_err(|e| corrupt(path, format!("cannot serialise: {e}")))?;
        let bytes =
            safetensors::serialize(views, Some(meta)).map_err(|e| corrupt(path, format!("cannot serialise: {e}")))?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let file_name = path.file_name().ok_or_else(|| corrupt(path, "not a file path".into()))?;
        let tmp = dir.join(format!(".{}.tmp-{}", file_name.to_string_lossy(), std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
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
        let bytes = read(path)?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(path, format!("not a safetensors file: {e}")))?;
        let meta = read_metadata(&bytes, path)?;
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
        let skipped = get("skipped_steps").and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
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
                bufs.push(v.data().chunks_exact(size_of::<P::Acc>()).map(P::Acc::read_le).collect());
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
}
