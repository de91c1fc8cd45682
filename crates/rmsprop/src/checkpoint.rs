//! Optimizer state on disk: safetensors arrays named as in PyTorch's `state_dict`
//! (`<param>.square_avg`, `<param>.grad_avg`, `<param>.momentum_buffer`, ..., and `step`),
//! with the format version, dtype and hyperparameters in its metadata (hyperparameters
//! as JSON, `f64` printed shortest-round-trip, never `f32` printed).
//!
//! State kept in fewer bytes ([`StateStorage`](crate::StateStorage)) is saved as kept:
//! bfloat16 as `BF16` arrays, 8-bit codes as `U8` arrays with their scales beside them
//! (`<param>.<state>.absmax`, one `F32` per block), the block size and the code table's
//! version in the metadata (`state_block`, `state_code_version`). A file loads into any
//! storage: the values are decoded (codes with the file's block size) and encoded in the
//! optimizer's, bit for bit into the same storage; codes of another table version are
//! refused.
//!
//! The state of a shard ([`Optimizer::sharded`]) is that of its pieces, and its metadata
//! says which (`pieces`: `[first, length, whole]` per tensor); it loads only into the
//! optimizer of the same pieces (the crate `rmsprop-mpi` re-cuts a sharded checkpoint for
//! another number of processes, or joins it into one).
//!
//! Files are written atomically (a temporary file of a name no other save uses, in the same
//! folder, then renamed; a symbolic link is followed, even one whose file does not exist
//! yet, and stays a link) and byte for byte the same for the same state (metadata in sorted
//! order). A save replaces only a regular file: a folder, a device, a FIFO or a socket at
//! the path (or at the end of its links) is refused. Every file carries a CRC-32 of its
//! arrays and metadata (`checksum`, see [`checksum`]); loading verifies it, then checks the
//! version, the optimizer, the tensors, every name, shape and dtype, the counters, and every
//! state value (finite; squares not negative), and changes nothing unless all of them fit:
//! save, load and continue is bit-identical to never stopping, and a flipped bit anywhere
//! in the file is an error, never other state.
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
use crate::optim::state::Kept;
use crate::optim::{Optimizer, OptimizerConfig};
use crate::quant::{BLOCK, CODE_VERSION, DynamicCode};
use safetensors::tensor::{Dtype as StDtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The checkpoint format version this build writes (version 2: with a `checksum`).
pub const FORMAT_VERSION: &str = "2";

/// The earlier version this build still reads: the same layout without a checksum.
pub const FORMAT_VERSION_UNCHECKED: &str = "1";

/// The metadata entry holding a checkpoint's [`checksum`].
pub const CHECKSUM_KEY: &str = "checksum";

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
    crate::file::read_regular(path).map_err(|error| Error::Io { path: path.to_path_buf(), error })
}

/// The checksum a checkpoint carries under [`CHECKSUM_KEY`]: `crc32:` and eight hex digits
/// of the CRC-32 (IEEE) of every array (sorted by name: the name, its dtype, its shape and
/// its bytes, each length-prefixed) and every metadata entry but the checksum itself (in
/// sorted order, key and value length-prefixed). CRC-32 finds every error of up to 32
/// consecutive bits, so any single flipped bit of the data or the metadata.
///
/// ```
/// use rmsprop::checkpoint::{checksum, CHECKSUM_KEY};
/// use std::collections::HashMap;
/// let meta = HashMap::from([("format".to_string(), "x".to_string())]);
/// let sum = checksum(&[("w.square_avg", "F32", &[2][..], &[0u8; 8][..])], &meta);
/// assert!(sum.starts_with("crc32:") && sum.len() == 14);
/// // the checksum entry itself is not covered
/// let mut with = meta.clone();
/// with.insert(CHECKSUM_KEY.to_string(), sum.clone());
/// assert_eq!(checksum(&[("w.square_avg", "F32", &[2][..], &[0u8; 8][..])], &with), sum);
/// ```
pub fn checksum(arrays: &[(&str, &str, &[usize], &[u8])], metadata: &HashMap<String, String>) -> String {
    let mut h = crc32fast::Hasher::new();
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    let mut arrays = arrays.to_vec();
    arrays.sort_by_key(|a| a.0);
    for (name, dtype, shape, data) in arrays {
        field(name.as_bytes());
        field(dtype.as_bytes());
        field(&shape.iter().flat_map(|d| (*d as u64).to_le_bytes()).collect::<Vec<u8>>());
        field(data);
    }
    let sorted: BTreeMap<&String, &String> = metadata.iter().filter(|(k, _)| *k != CHECKSUM_KEY).collect();
    for (k, v) in sorted {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    format!("crc32:{:08x}", h.finalize())
}

/// The checksum of a parsed file, as [`checksum`] forms it.
fn checksum_of(st: &SafeTensors, meta: &HashMap<String, String>) -> String {
    let tensors = st.tensors();
    let dtypes: Vec<String> = tensors.iter().map(|(_, v)| format!("{:?}", v.dtype())).collect();
    let arrays: Vec<(&str, &str, &[usize], &[u8])> =
        tensors.iter().zip(&dtypes).map(|((n, v), d)| (n.as_str(), d.as_str(), v.shape(), v.data())).collect();
    checksum(&arrays, meta)
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

/// The bytes of a checkpoint file of `arrays` (name, dtype, shape, little-endian data) and
/// `metadata`, as [`Optimizer::save`] writes them: [`checksum`] added under
/// [`CHECKSUM_KEY`], metadata in sorted order. For tools that write the state themselves
/// (the `rmsprop-mpi` crate re-cuts shards); `path` names the file in errors.
pub fn seal(
    arrays: &[(String, StDtype, Vec<usize>, Vec<u8>)],
    mut metadata: HashMap<String, String>,
    path: &Path,
) -> Result<Vec<u8>> {
    let dtypes: Vec<String> = arrays.iter().map(|a| format!("{:?}", a.1)).collect();
    let covered: Vec<(&str, &str, &[usize], &[u8])> = arrays
        .iter()
        .zip(&dtypes)
        .map(|((name, _, shape, bytes), dtype)| (name.as_str(), dtype.as_str(), &shape[..], &bytes[..]))
        .collect();
    metadata.insert(CHECKSUM_KEY.to_string(), checksum(&covered, &metadata));
    let views = arrays
        .iter()
        .map(|(name, dt, shape, bytes)| Ok((name.clone(), TensorView::new(*dt, shape.clone(), bytes)?)))
        .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| corrupt(path, format!("cannot serialise: {e}")))?;
    let bytes =
        safetensors::serialize(views, Some(metadata)).map_err(|e| corrupt(path, format!("cannot serialise: {e}")))?;
    sorted_header(bytes, path)
}

/// Checks that `bytes` are a checkpoint of ours whose contents are what was written: the
/// format, a version this build reads, and (version 2) the [`checksum`]. Returns the
/// parsed file and its metadata. [`Optimizer::load`] starts with it; `path` names the
/// file in errors.
///
/// ```
/// let e = rmsprop::checkpoint::verify(b"junk", "x".as_ref()).unwrap_err();
/// assert!(e.to_string().contains("not a safetensors file"));
/// ```
pub fn verify<'a>(bytes: &'a [u8], path: &Path) -> Result<(SafeTensors<'a>, HashMap<String, String>)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(path, format!("not a safetensors file: {e}")))?;
    let meta = read_metadata(bytes, path)?;
    let get = |k: &str| meta.get(k).map(String::as_str);
    if get("format") != Some(FORMAT_NAME) {
        return Err(corrupt(path, format!("format {:?}, expected {FORMAT_NAME:?}", get("format"))));
    }
    match get("format_version") {
        Some(FORMAT_VERSION) => {
            let found = get(CHECKSUM_KEY).ok_or_else(|| corrupt(path, format!("missing metadata {CHECKSUM_KEY:?}")))?;
            let computed = checksum_of(&st, &meta);
            if found != computed {
                return Err(corrupt(
                    path,
                    format!(
                        "checksum mismatch (the file says {found}, its contents give {computed}): the file was \
                         damaged or changed after it was written"
                    ),
                ));
            }
        }
        Some(FORMAT_VERSION_UNCHECKED) => {}
        other => {
            return Err(corrupt(
                path,
                format!(
                    "format version {other:?}, this build reads versions {FORMAT_VERSION} and \
                     {FORMAT_VERSION_UNCHECKED}"
                ),
            ));
        }
    }
    Ok((st, meta))
}

/// Where a save to `path` writes: the end of its symbolic links (the links stay), or
/// `path` itself; refused when something other than a regular file is there.
fn write_target(path: &Path) -> Result<PathBuf> {
    crate::file::write_target(path).map_err(|why| corrupt(path, why))
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
pub(crate) fn bad_value<T: Float>(values: &[T], squares: bool) -> Option<(usize, f64, &'static str)> {
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

/// The suffix of an 8-bit state array's scales: `<param>.<slot>.absmax`, one `F32` per
/// block (bitsandbytes' `absmax1`).
pub const ABSMAX: &str = ".absmax";

/// The metadata entry of the 8-bit state's block size (present when a file holds any).
pub const BLOCK_KEY: &str = "state_block";

/// The metadata entry of the 8-bit state's code table version ([`CODE_VERSION`]).
pub const CODE_KEY: &str = "state_code_version";

/// The values of the 8-bit state array `name` (`codes`, the codes of `DynamicCode`'s
/// unsigned table for `squares`, else the signed one) and its scales, decoded with the
/// file's block size: another block size converts; another code table version, scales
/// that are not a finite magnitude, or scales of the wrong count are refused.
fn int8_values(
    st: &SafeTensors,
    meta: &HashMap<String, String>,
    name: &str,
    codes: &[u8],
    squares: bool,
    path: &Path,
) -> Result<Vec<f32>> {
    let version = meta.get(CODE_KEY).map(String::as_str);
    if version != Some(&CODE_VERSION.to_string()) {
        return Err(corrupt(
            path,
            format!(
                "8-bit state {name:?} uses code table version {version:?}; this build knows version {CODE_VERSION} \
                 only, and reading other codes with it would misread them"
            ),
        ));
    }
    let block = meta.get(BLOCK_KEY).and_then(|b| b.parse::<usize>().ok()).filter(|&b| b > 0).ok_or_else(|| {
        corrupt(path, format!("8-bit state {name:?} without a valid metadata {BLOCK_KEY} (the codes' block size)"))
    })?;
    let scales_name = format!("{name}{ABSMAX}");
    let s = st.tensor(&scales_name).map_err(|_| corrupt(path, format!("missing tensor {scales_name:?}")))?;
    let blocks = codes.len().div_ceil(block);
    if s.dtype() != StDtype::F32 || s.shape() != [blocks] {
        return Err(corrupt(
            path,
            format!(
                "tensor {scales_name:?} is {:?}{:?}, expected F32[{blocks}] (a scale per block of {block})",
                s.dtype(),
                s.shape()
            ),
        ));
    }
    let scales: Vec<f32> = s.data().chunks_exact(4).map(f32::read_le).collect();
    if let Some((i, v)) = scales.iter().enumerate().find(|(_, v)| !(v.is_finite() && **v >= 0.0)) {
        return Err(corrupt(path, format!("tensor {scales_name:?} element {i} is {v}: a scale is a finite magnitude")));
    }
    let code = DynamicCode::for_state(squares);
    let mut out = vec![0.0; codes.len()];
    for ((out, codes), &absmax) in out.chunks_mut(block).zip(codes.chunks(block)).zip(&scales) {
        crate::quant::dequantize(code, codes, absmax, out)?;
    }
    Ok(out)
}

/// `f32` values in the state's type `A` (exact).
fn in_state_type<A: Float>(values: Vec<f32>) -> Vec<A> {
    values.into_iter().map(|v| A::from_f64(v as f64)).collect()
}

impl<P: Param> Optimizer<P> {
    /// Writes the optimizer state to `path` (safetensors), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |error| Error::Io { path: path.to_path_buf(), error };
        let mut arrays: Vec<(String, StDtype, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut packed = false;
        for (t, tr) in self.tracked().iter().enumerate() {
            for (k, slot) in self.groups()[tr.group].slots().iter().enumerate() {
                let Some(kept) = self.kept(t, k) else { continue };
                let name = format!("{}.{}", tr.spec.name, slot.name);
                let shape = tr.spec.shape.clone();
                match kept {
                    Kept::Full(values) => {
                        let mut bytes = Vec::with_capacity(size_of_val(values));
                        values.iter().for_each(|v| v.write_le(&mut bytes));
                        arrays.push((name, st_dtype(P::Acc::DTYPE), shape, bytes));
                    }
                    Kept::Bf16(bits) => {
                        let bytes = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
                        arrays.push((name, StDtype::BF16, shape, bytes));
                    }
                    Kept::Int8 { codes, scales } => {
                        packed = true;
                        let absmax = scales.iter().flat_map(|s| s.to_le_bytes()).collect();
                        arrays.push((format!("{name}{ABSMAX}"), StDtype::F32, vec![scales.len()], absmax));
                        arrays.push((name, StDtype::U8, shape, codes.to_vec()));
                    }
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
        if packed {
            meta.insert(BLOCK_KEY.to_string(), BLOCK.to_string());
            meta.insert(CODE_KEY.to_string(), CODE_VERSION.to_string());
        }
        if let Some(pieces) = self.pieces() {
            meta.insert("pieces".to_string(), serde_json::to_string(&pieces).expect("pieces serialise"));
        }
        let bytes = seal(&arrays, meta, path)?;
        let target = write_target(path)?;
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
        let (st, meta) = verify(bytes, path)?;
        let get = |k: &str| meta.get(k).map(String::as_str);
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
                if v.shape() != tr.spec.shape.as_slice() {
                    return Err(corrupt(
                        path,
                        format!("tensor {name:?} has shape {:?}, expected {:?}", v.shape(), tr.spec.shape),
                    ));
                }
                let values = match v.dtype() {
                    d if d == st_dtype(P::Acc::DTYPE) => {
                        v.data().chunks_exact(size_of::<P::Acc>()).map(P::Acc::read_le).collect()
                    }
                    StDtype::BF16 => {
                        let bits: Vec<u16> =
                            v.data().chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
                        let mut out = vec![0.0; bits.len()];
                        crate::optim::packed::decode_bf16(&bits, &mut out);
                        in_state_type(out)
                    }
                    StDtype::U8 => {
                        expected.push(format!("{name}{ABSMAX}"));
                        in_state_type(int8_values(&st, &meta, &name, v.data(), slot.nonneg, path)?)
                    }
                    other => {
                        return Err(corrupt(
                            path,
                            format!(
                                "tensor {name:?} has dtype {other:?}, expected {:?} (or BF16, or U8 codes with \
                                 {name}{ABSMAX})",
                                st_dtype(P::Acc::DTYPE)
                            ),
                        ));
                    }
                };
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
