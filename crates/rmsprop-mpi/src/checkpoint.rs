//! Checkpoints of a distributed run, movable between 1, 2 and N processes.
//!
//! A checkpoint is a folder: `manifest.json` (the tensors, their shapes, the cut into
//! processes, the files) and the state in the core's format (`rmsprop::checkpoint`): one
//! file per process for sharded state (`shard-<rank>-of-<n>.safetensors`, each written
//! atomically by its process), or one file of the whole state (`optimizer.safetensors`)
//! for data-parallel state, which every process holds alike. The manifest is written
//! last, by process 0, once every file is: a folder without one is not a checkpoint.
//!
//! [`state_for`] re-cuts the state of any checkpoint (a folder, or a single-process
//! checkpoint file) into the pieces of another cut, and [`consolidate`] joins a folder into
//! one single-process checkpoint file, which `Optimizer::load` reads.

use rmsprop::quant::BLOCK;
use rmsprop::{Error, OptimizerConfig, Partition, Result, TensorSpec};
use safetensors::tensor::SafeTensors;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The manifest's `format` entry.
pub const MANIFEST_FORMAT: &str = "rmsprop-distributed-checkpoint";

/// What `manifest.json` says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// Format version, `1`.
    pub version: u32,
    /// The tensors, in registration order.
    pub tensors: Vec<TensorSpec>,
    /// The state files, one per process (sharded) or one (whole).
    pub files: Vec<String>,
    /// Process `r`'s piece of each tensor (`first..end`), per file.
    pub pieces: Vec<Vec<Range<usize>>>,
    /// Steps taken.
    pub step: u64,
}

impl Manifest {
    /// The manifest of `tensors` cut by `partition` (sharded), or of one whole file.
    pub fn new(tensors: &[TensorSpec], partition: Option<&Partition>, step: u64) -> Self {
        let (files, pieces) = match partition {
            Some(p) => (
                (0..p.ranks()).map(|r| format!("shard-{r}-of-{}.safetensors", p.ranks())).collect(),
                (0..p.ranks()).map(|r| p.pieces(r)).collect(),
            ),
            None => (vec!["optimizer.safetensors".into()], vec![tensors.iter().map(|t| 0..t.len()).collect()]),
        };
        Manifest { format: MANIFEST_FORMAT.into(), version: 1, tensors: tensors.to_vec(), files, pieces, step }
    }

    /// Reads `dir/manifest.json`, checking that it describes whole tensors, piece by piece.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("manifest.json");
        let text = rmsprop::file::read_regular(&path).map_err(|error| Error::Io { path: path.clone(), error })?;
        let m: Manifest = serde_json::from_slice(&text).map_err(|e| corrupt(&path, format!("not a manifest: {e}")))?;
        if m.format != MANIFEST_FORMAT || m.version != 1 {
            return Err(corrupt(
                &path,
                format!("format {:?} version {}, expected {MANIFEST_FORMAT:?} 1", m.format, m.version),
            ));
        }
        if m.files.is_empty() || m.files.len() != m.pieces.len() {
            return Err(corrupt(&path, format!("{} files for {} processes' pieces", m.files.len(), m.pieces.len())));
        }
        for (t, spec) in m.tensors.iter().enumerate() {
            let mut at = 0;
            for (r, pieces) in m.pieces.iter().enumerate() {
                let p = pieces
                    .get(t)
                    .ok_or_else(|| corrupt(&path, format!("process {r} lists no piece of {}", spec.name)))?;
                if !p.is_empty() && p.start != at {
                    return Err(corrupt(
                        &path,
                        format!("the pieces of {} do not follow each other at process {r}", spec.name),
                    ));
                }
                at = at.max(p.end);
            }
            if Some(at) != spec.checked_len() {
                return Err(corrupt(
                    &path,
                    format!("the pieces of {} cover {at} of its {} elements", spec.name, spec.len()),
                ));
            }
        }
        if m.files.iter().any(|f| f.contains('/') || f.contains('\\') || f == ".." || f.is_empty()) {
            return Err(corrupt(&path, "a file name leaves the folder".into()));
        }
        Ok(m)
    }

    /// Writes `dir/manifest.json` atomically (a temporary file, then a rename).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join("manifest.json");
        let tmp = dir.join(format!(".manifest.json.{}.tmp", std::process::id()));
        let text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        let io = |error| Error::Io { path: path.clone(), error };
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }
}

fn corrupt(path: &Path, reason: String) -> Error {
    Error::Checkpoint { path: path.to_path_buf(), reason }
}

/// One state file of a checkpoint: its bytes and its pieces.
struct Source {
    path: PathBuf,
    bytes: Vec<u8>,
    pieces: Vec<Range<usize>>,
    /// The step the folder's manifest says every file is at (none for a single file).
    manifest_step: Option<u64>,
}

/// The sources of `from`: a checkpoint folder (with its manifest), or one single-process
/// checkpoint file of `tensors`.
fn sources(from: &Path, tensors: &[TensorSpec]) -> Result<Vec<Source>> {
    let read = |path: PathBuf| rmsprop::file::read_regular(&path).map_err(|error| Error::Io { path, error });
    if from.is_dir() {
        let m = Manifest::read(from)?;
        if m.tensors != tensors {
            return Err(corrupt(from, format!("written for tensors {:?}, this model has {:?}", m.tensors, tensors)));
        }
        m.files
            .iter()
            .zip(m.pieces)
            .map(|(f, pieces)| {
                Ok(Source { path: from.join(f), bytes: read(from.join(f))?, pieces, manifest_step: Some(m.step) })
            })
            .collect()
    } else {
        Ok(vec![Source {
            path: from.to_path_buf(),
            bytes: read(from.to_path_buf())?,
            pieces: tensors.iter().map(|t| 0..t.len()).collect(),
            manifest_step: None,
        }])
    }
}

/// The state of the checkpoint `from` re-cut into `pieces` of `tensors` (`None`: whole
/// tensors of their own shapes), as the bytes of a checkpoint in the core's format: for a
/// process of a sharded run (`Optimizer::load_bytes` of its shard), or one whole file.
/// The step counts, hyperparameters and dtypes come from the files, which must agree.
pub fn state_for(from: &Path, tensors: &[TensorSpec], pieces: Option<&[Range<usize>]>) -> Result<Vec<u8>> {
    if let Some(p) = pieces {
        let fits = p.len() == tensors.len() && p.iter().zip(tensors).all(|(p, t)| p.start <= p.end && p.end <= t.len());
        if !fits {
            return Err(Error::InvalidCombination {
                optimizer: "checkpoint",
                reason: format!("pieces {p:?} are not pieces of tensors {tensors:?}"),
            });
        }
    }
    let sources = sources(from, tensors)?;
    let mut metas = Vec::new();
    let mut views = Vec::new();
    for s in &sources {
        // each file's format, version and checksum, as the core's loader checks them
        let (st, meta) = rmsprop::checkpoint::verify(&s.bytes, &s.path)?;
        if let Some(step) = s.manifest_step.filter(|&step| meta.get("step") != Some(&step.to_string())) {
            return Err(corrupt(
                &s.path,
                format!(
                    "step {} in the file, {step} in the folder's manifest.json: the files are not of one checkpoint",
                    meta.get("step").map_or("missing", String::as_str)
                ),
            ));
        }
        metas.push(meta);
        views.push(st);
    }
    let first = &metas[0];
    for key in ["format", "format_version", "dtype", "param_dtype", "step", "skipped_steps", "hyperparameters"] {
        if let Some((s, _)) = sources.iter().zip(&metas).find(|(_, m)| m.get(key) != first.get(key)) {
            return Err(corrupt(&s.path, format!("metadata {key} differs from {}'s", sources[0].path.display())));
        }
    }
    // every state array of the first file, by its tensor (`<tensor>.<state>`), plus `step`
    let mut names: Vec<(usize, String)> = Vec::new();
    for name in views[0].names() {
        if name == "step" {
            continue;
        }
        let t = tensors
            .iter()
            .position(|t| name.strip_prefix(t.name.as_str()).is_some_and(|rest| rest.starts_with('.')))
            .ok_or_else(|| corrupt(&sources[0].path, format!("tensor {name:?} is of no tensor of the model")))?;
        names.push((t, name.to_string()));
    }
    names.sort();
    let mut arrays: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (t, name) in &names {
        let want = pieces.map_or(0..tensors[*t].len(), |p| p[*t].clone());
        // an 8-bit state's scales hold one value per block of the piece's codes (pieces
        // start on chunks, so on blocks)
        let scales = name.ends_with(rmsprop::checkpoint::ABSMAX);
        let blocks = |r: Range<usize>| match scales {
            true if r.is_empty() => r.start / BLOCK..r.start / BLOCK,
            true => r.start / BLOCK..r.end.div_ceil(BLOCK),
            false => r,
        };
        let want = blocks(want);
        let mut dtype = None;
        let mut bytes = Vec::new();
        let mut covered = want.start;
        for (s, st) in sources.iter().zip(&views) {
            let have = blocks(s.pieces[*t].clone());
            let (lo, hi) = (want.start.max(have.start), want.end.min(have.end));
            if lo >= hi {
                continue;
            }
            let v = st.tensor(name).map_err(|_| corrupt(&s.path, format!("missing tensor {name:?}")))?;
            let width = v.dtype().bitsize() / 8;
            if v.data().len() != have.len() * width || *dtype.get_or_insert(v.dtype()) != v.dtype() {
                return Err(corrupt(&s.path, format!("tensor {name:?} does not hold its piece {have:?}")));
            }
            if lo != covered {
                return Err(corrupt(&s.path, format!("tensor {name:?}: a gap before element {lo}")));
            }
            bytes.extend_from_slice(&v.data()[(lo - have.start) * width..(hi - have.start) * width]);
            covered = hi;
        }
        if covered != want.end {
            return Err(corrupt(from, format!("tensor {name:?}: elements {covered}..{} are in no file", want.end)));
        }
        let shape = if pieces.is_some() || scales { vec![want.len()] } else { tensors[*t].shape.clone() };
        // an empty piece keeps the array's dtype (8-bit codes stay U8, with their scales)
        let dtype = dtype.or_else(|| views[0].tensor(name).ok().map(|v| v.dtype())).unwrap_or(safetensors::Dtype::F32);
        arrays.push((name.clone(), dtype, shape, bytes));
    }
    let step = views[0].tensor("step").map_err(|_| corrupt(&sources[0].path, "missing tensor \"step\"".into()))?;
    arrays.push(("step".into(), step.dtype(), step.shape().to_vec(), step.data().to_vec()));
    let mut meta: HashMap<String, String> = first.clone();
    // the core's `tensors` entry: (name, shape, group) — one group
    let listed: Vec<(&str, Vec<usize>, usize)> = tensors
        .iter()
        .enumerate()
        .map(|(t, s)| (s.name.as_str(), pieces.map_or(s.shape.clone(), |p| vec![p[t].len()]), 0))
        .collect();
    meta.insert("tensors".into(), serde_json::to_string(&listed).expect("serialises"));
    meta.remove("pieces");
    if let Some(p) = pieces {
        let triples: Vec<[usize; 3]> = p.iter().zip(tensors).map(|(p, t)| [p.start, p.len(), t.len()]).collect();
        meta.insert("pieces".into(), serde_json::to_string(&triples).expect("serialises"));
    }
    // the re-cut file is a new one, with a checksum of its own
    rmsprop::checkpoint::seal(&arrays, meta, from)
}

/// Joins the checkpoint folder `dir` into one single-process checkpoint file `out`, which
/// `Optimizer::load` of the whole model reads: loaded into that optimizer (every check of
/// the core's loader) and saved by it (atomically, the same bytes for the same state).
pub fn consolidate(dir: &Path, out: &Path) -> Result<()> {
    let m = Manifest::read(dir)?;
    let bytes = state_for(dir, &m.tensors, None)?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(dir, e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let get = |k: &str| meta.get(k).map(String::as_str).ok_or_else(|| corrupt(dir, format!("missing metadata {k:?}")));
    let configs: Vec<OptimizerConfig> = serde_json::from_str(get("hyperparameters")?)
        .map_err(|e| corrupt(dir, format!("metadata hyperparameters: {e}")))?;
    let [config] = &configs[..] else {
        return Err(corrupt(dir, format!("{} parameter groups; a distributed run has one", configs.len())));
    };
    let whole = |c: &OptimizerConfig| (c.clone(), m.tensors.as_slice(), bytes.as_slice(), dir, out);
    match get("param_dtype")? {
        "float32" => resave::<f32>(whole(config)),
        "float64" => resave::<f64>(whole(config)),
        "bfloat16" => resave::<half::bf16>(whole(config)),
        "float16" => resave::<half::f16>(whole(config)),
        other => Err(corrupt(dir, format!("parameter dtype {other:?}"))),
    }
}

fn resave<P: rmsprop::Param>(
    (config, tensors, bytes, dir, out): (OptimizerConfig, &[TensorSpec], &[u8], &Path, &Path),
) -> Result<()> {
    let mut opt = rmsprop::Optimizer::<P>::new(config, tensors)?;
    opt.load_bytes(bytes, dir)?;
    opt.save(out)
}
