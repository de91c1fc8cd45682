//! The golden-vector replayer: reads the JSON files of `testdata/golden/` (format in
//! that folder's README), builds each case's optimizer from its framework-neutral
//! hyperparameters (`hyperparams.normalized`) on top of the framework's [`Flavor`],
//! replays the recorded gradients in the case's dtype and checks every step against
//! the recorded parameters and the final state against the recorded state, within the
//! case's tolerances.
//!
//! A case with a field, optimizer, dtype, state name or objective this module does not
//! understand is a failure, never a silent skip.
//!
//! ```no_run
//! let report = rmsprop_golden::replay_file("testdata/golden/torch.json".as_ref()).unwrap();
//! println!("{}", report.summary());
//! assert_eq!(report.failed(), 0);
//! ```

#![warn(missing_docs)]

mod strict;

use rmsprop::by_name::{self, Value as Hyper};
use rmsprop::{
    EpsPlacement, Error, Flavor, Float, NonFinitePolicy, Optimizer, OptimizerConfig, Param, Result, TensorSpec,
};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The outcome of one case or trace.
#[derive(Clone, Debug)]
pub struct CaseReport {
    /// The case's `name`.
    pub name: String,
    /// Whether every check held.
    pub passed: bool,
    /// The largest error seen, as a fraction of its allowed bound (≤ 1 passes).
    pub worst: f64,
    /// Where the worst error is, or why the case could not be replayed.
    pub detail: String,
}

/// The outcome of one file.
#[derive(Clone, Debug)]
pub struct FileReport {
    /// The file replayed.
    pub path: PathBuf,
    /// One report per case or trace, in file order.
    pub cases: Vec<CaseReport>,
}

impl FileReport {
    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed).count()
    }
    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }
    /// Cases reproduced bit for bit: every parameter and state value equal.
    pub fn exact(&self) -> usize {
        self.cases.iter().filter(|c| c.passed && c.worst == 0.0).count()
    }
    /// `FILE: N passed (K bit-exact), M failed`.
    pub fn summary(&self) -> String {
        let (path, exact) = (self.path.display(), self.exact());
        format!("{path}: {} passed ({exact} bit-exact), {} failed", self.passed(), self.failed())
    }
}

/// Replays every case of a golden file (per-step files: `torch.json`, `optax.json`,
/// `keras.json`, `mxnet.json`; trace files: `d2l_chapter.json`).
///
/// Errors only when the file cannot be read or is not a golden file at all; a case
/// that cannot be replayed is a failed [`CaseReport`].
pub fn replay_file(path: &Path) -> Result<FileReport> {
    replay_file_with(path, &|_, _| {})
}

/// A change applied to each case's configuration before it is replayed, given the case's
/// dtype (`"float32"`, `"float64"`): to check that an opt-in formulation (e.g.
/// [`RmsProp::fast_rsqrt`](rmsprop::RmsProp::fast_rsqrt)) stays inside the tolerances.
pub type Adjust<'a> = &'a dyn Fn(&mut OptimizerConfig, &str);

/// [`replay_file`] with every case's configuration passed through `adjust` first.
pub fn replay_file_with(path: &Path, adjust: Adjust) -> Result<FileReport> {
    let text = rmsprop::file::read_regular(path).map_err(|error| Error::Io { path: path.to_path_buf(), error })?;
    replay_bytes(&text, path, adjust)
}

/// [`replay_file_with`] on the bytes of a golden file; `path` names it in the report and in
/// errors.
///
/// ```
/// let e = rmsprop_golden::replay_bytes(br#"{"format_version": 1, "format_version": 1}"#, "x.json".as_ref(), &|_, _| {});
/// assert!(e.unwrap_err().to_string().contains("\"format_version\" appears twice"));
/// ```
pub fn replay_bytes(text: &[u8], path: &Path, adjust: Adjust) -> Result<FileReport> {
    let bad = |reason: String| Error::Golden { path: path.to_path_buf(), reason };
    let root: Value = strict::from_slice(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Some(top) = root.as_object() else {
        return Err(bad("not a JSON object".into()));
    };
    if top.contains_key("problem") {
        return Err(bad(
            "a whole-training file (a network trained on a data set, see testdata/golden/mlp/README.md), not per-step \
             cases: it is replayed by `cargo run -p rmsprop-candle --example replay_mlp`"
                .into(),
        ));
    }
    if let Some(key) = top.keys().find(|k| !TOP_LEVEL.contains(&k.as_str())) {
        return Err(bad(format!("unknown top-level key {key:?} (a golden file has {})", TOP_LEVEL.join(", "))));
    }
    let version = root.get("format_version").and_then(Value::as_u64);
    if version != Some(1) {
        return Err(bad(format!("format_version {version:?}, expected 1")));
    }
    let list = |key: &str| -> Result<Option<&Vec<Value>>> {
        root.get(key).map(|v| v.as_array().ok_or_else(|| bad(format!("`{key}` is not an array")))).transpose()
    };
    let cases = match (list("traces")?, list("cases")?) {
        (Some(_), Some(_)) => return Err(bad("both `cases` and `traces`: a file holds one kind".into())),
        (Some(traces), None) => traces.iter().map(replay_trace).collect(),
        (None, Some(cases)) => {
            match root.get("num_cases").map(Value::as_u64) {
                Some(Some(n)) if n as usize == cases.len() => {}
                Some(Some(n)) => return Err(bad(format!("num_cases is {n} but the file holds {} cases", cases.len()))),
                Some(None) => return Err(bad("num_cases is not a whole number".into())),
                None => {}
            }
            cases.iter().map(|c| replay_case_with(c, adjust)).collect()
        }
        (None, None) => return Err(bad("neither `cases` nor `traces` found".into())),
    };
    Ok(FileReport { path: path.to_path_buf(), cases })
}

/// The keys a golden file's top level may have.
const TOP_LEVEL: [&str; 6] = ["format_version", "framework", "framework_version", "num_cases", "cases", "traces"];

/// The largest relative tolerance a case may give: a looser one checks nothing worth the
/// name (an optimizer that moved the wrong way by a tenth would pass).
pub const MAX_RTOL: f64 = 1e-1;

/// Replays one per-step case given as JSON.
pub fn replay_case(case: &Value) -> CaseReport {
    replay_case_with(case, &|_, _| {})
}

/// [`replay_case`] with the configuration passed through `adjust` first.
pub fn replay_case_with(case: &Value, adjust: Adjust) -> CaseReport {
    let name = case.get("name").and_then(Value::as_str).unwrap_or("<unnamed>").to_string();
    let result =
        serde_json::from_value::<Case>(case.clone()).map_err(|e| format!("unreadable case: {e}")).and_then(|c| match c
            .dtype
            .as_str()
        {
            "float64" => c.replay::<f64>(adjust),
            "float32" => c.replay::<f32>(adjust),
            other => Err(format!("unknown dtype {other:?}")),
        });
    report(name, result)
}

fn report(name: String, result: std::result::Result<Worst, String>) -> CaseReport {
    match result {
        Ok(w) if w.ratio == 0.0 => CaseReport { name, passed: true, worst: 0.0, detail: "bit-exact".into() },
        Ok(w) => CaseReport { name, passed: w.ratio <= 1.0, worst: w.ratio, detail: w.at },
        Err(why) => CaseReport { name, passed: false, worst: f64::INFINITY, detail: why },
    }
}

/// The largest error-to-bound ratio seen and where.
#[derive(Default)]
struct Worst {
    ratio: f64,
    at: String,
}

impl Worst {
    /// Records `|a - e| / bound`; NaN counts as infinitely wrong.
    fn see(&mut self, a: f64, e: f64, bound: f64, at: impl FnOnce() -> String) {
        let err = (a - e).abs();
        let ratio = if err == 0.0 {
            0.0
        } else if err.is_nan() || bound == 0.0 {
            f64::INFINITY
        } else {
            err / bound
        };
        if ratio > self.ratio || (ratio.is_infinite() && self.ratio.is_finite()) {
            self.ratio = ratio;
            self.at = format!("{}: got {a:e}, expected {e:e} (error {err:e}, allowed {bound:e})", at());
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[allow(dead_code)]
    name: String,
    #[allow(dead_code)]
    variant: String,
    optimizer: String,
    framework: String,
    #[allow(dead_code)]
    framework_version: String,
    dtype: String,
    #[allow(dead_code)]
    seed: u64,
    grad_kind: String,
    steps: usize,
    /// The parameter as several tensors, concatenated row-major in `x0`, `grads`, `x` and
    /// the state (`yogi.json`); absent: one tensor.
    #[serde(default)]
    shapes: Option<Vec<Vec<usize>>>,
    x0: Vec<f64>,
    grads: Vec<Vec<f64>>,
    x: Vec<Vec<f64>>,
    /// The learning rate written into the group before each step, as a scheduler does
    /// (`timm.json`); absent: the constant `hyperparams.normalized.lr`.
    #[serde(default)]
    lr_schedule: Option<Vec<f64>>,
    state: BTreeMap<String, Value>,
    #[serde(default)]
    objective: Option<Objective>,
    hyperparams: Hyperparams,
    tolerance: Tolerance,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Objective {
    #[serde(rename = "type")]
    kind: String,
    #[allow(dead_code)]
    formula: String,
    #[allow(dead_code)]
    a: Vec<f64>,
    #[allow(dead_code)]
    b: Vec<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Hyperparams {
    #[allow(dead_code)]
    framework: serde_json::Map<String, Value>,
    /// The Python expression that built the transformation (`yogi.json`).
    #[allow(dead_code)]
    #[serde(default)]
    framework_call: Option<String>,
    normalized: Normalized,
    effective_float64: BTreeMap<String, Option<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tolerance {
    x_rtol: f64,
    state_rtol: f64,
}

/// `hyperparams.normalized`: every field the README defines, nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Normalized {
    optimizer: String,
    lr: f64,
    decay: Option<f64>,
    eps: Option<f64>,
    eps_placement: Option<String>,
    centered: bool,
    momentum: f64,
    momentum_style: Option<String>,
    nesterov: bool,
    dampening: f64,
    weight_decay: f64,
    weight_decay_mode: String,
    initial_accumulator: f64,
    clip_gradient: Option<f64>,
    clip_weights: Option<f64>,
    clip_norm: Option<f64>,
    rescale_grad: f64,
    maximize: bool,
    bias_correction: bool,
    lr_decay: f64,
    hyperparam_precision: String,
    #[serde(default)]
    beta1: Option<f64>,
    #[serde(default)]
    beta2: Option<f64>,
    #[serde(default)]
    amsgrad: bool,
    #[serde(default)]
    rho: Option<f64>,
    #[serde(default)]
    bias_correction_mode: Option<String>,
    #[serde(default)]
    eps_root: Option<f64>,
}

type Res<T> = std::result::Result<T, String>;

fn flavor_of(framework: &str) -> Res<Flavor> {
    match framework {
        "torch" => Ok(Flavor::PyTorch),
        "optax" => Ok(Flavor::Optax),
        "keras" => Ok(Flavor::Keras),
        "mxnet" => Ok(Flavor::Mxnet),
        "timm" => Ok(Flavor::Timm),
        other => Err(format!("unknown framework {other:?}")),
    }
}

impl Normalized {
    /// Our configuration: the framework's preset, then every number and switch of `self`
    /// set through [`by_name`](rmsprop::by_name)'s names, so the mapping is by-name's. A
    /// value the optimizer has no name for must be the one it implies (`momentum` 0, no
    /// centring, ε outside the root, Adam's and Yogi's `moments` correction, …).
    fn config(&self, framework: &str) -> Res<OptimizerConfig> {
        let flavor = flavor_of(framework)?;
        let mut config = flavor.config(&self.optimizer).map_err(|e| e.to_string())?;
        let num = |v: f64| Some(Hyper::Num(v));
        let word = |w: &str| Some(Hyper::Str(w.into()));
        let off = |v: f64| v == 0.0;
        let weight_decay_mode = match self.weight_decay_mode.as_str() {
            "none" if self.weight_decay == 0.0 => None,
            "none" => return Err(format!("weight_decay_mode \"none\" with weight_decay {}", self.weight_decay)),
            mode => word(mode),
        };
        // PyTorch's SGD momentum is by-name's `torch`
        let momentum_style = match self.momentum_style.as_deref() {
            Some("torch_sgd") => word("torch"),
            Some(style) => word(style),
            None => None,
        };
        // Adam's and Yogi's correction is a rule (`bias_correction_mode`), RMSProp's a switch
        let bias_correction = match &self.bias_correction_mode {
            Some(mode) => (word(mode), mode == "moments"),
            None => (Some(Hyper::Bool(self.bias_correction)), !self.bias_correction),
        };
        // (by-name's name, the value, whether it is what an optimizer without the name does)
        let entries = [
            ("lr", num(self.lr), false),
            ("weight_decay", num(self.weight_decay), off(self.weight_decay)),
            ("weight_decay_mode", weight_decay_mode, true),
            ("maximize", Some(Hyper::Bool(self.maximize)), !self.maximize),
            ("rescale_grad", num(self.rescale_grad), self.rescale_grad == 1.0),
            ("clip_gradient", self.clip_gradient.filter(|&v| v != 0.0).and_then(num), false),
            ("clip_weights", self.clip_weights.filter(|&v| v != 0.0).and_then(num), false),
            ("clip_norm", self.clip_norm.and_then(num), false),
            ("precision", word(&self.hyperparam_precision), true),
            ("decay", self.decay.and_then(num), false),
            ("eps", self.eps.and_then(num), false),
            (
                // fixed in an optimizer without the field (Adam's outside the root,
                // Adadelta's inside): the replayed numbers check it
                "eps_placement",
                self.eps_placement.as_deref().and_then(word),
                true,
            ),
            ("centered", Some(Hyper::Bool(self.centered)), !self.centered),
            ("momentum", num(self.momentum), off(self.momentum)),
            ("momentum_style", momentum_style, off(self.momentum)),
            ("nesterov", Some(Hyper::Bool(self.nesterov)), !self.nesterov),
            ("dampening", num(self.dampening), off(self.dampening)),
            ("initial_accumulator", num(self.initial_accumulator), off(self.initial_accumulator)),
            ("lr_decay", num(self.lr_decay), off(self.lr_decay)),
            ("bias_correction", bias_correction.0, bias_correction.1),
            ("beta1", self.beta1.and_then(num), false),
            ("beta2", self.beta2.and_then(num), false),
            ("amsgrad", Some(Hyper::Bool(self.amsgrad)), !self.amsgrad),
            ("rho", self.rho.and_then(num), false),
            ("eps_root", self.eps_root.and_then(num), self.eps_root.is_none_or(off)),
        ];
        for (name, value, implied) in entries {
            let Some(value) = value else { continue };
            let set = by_name::set(&mut config, name, &value).map_err(|e| e.to_string())?;
            if !set && !implied {
                return Err(format!("{name} = {value} is not defined for {}", self.optimizer));
            }
        }
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

/// Where a framework's state entry lives in ours, and with which sign.
enum StateRef {
    Buffer(&'static str, f64),
    Counter,
    LearningRate,
}

fn state_ref(framework: &str, optimizer: &str, key: &str) -> Res<StateRef> {
    use StateRef::*;
    let r = match (framework, optimizer, key) {
        ("torch" | "timm", _, "step")
        | ("optax", _, "count")
        | ("keras", _, "iteration")
        | ("mxnet", _, "num_update") => Counter,
        ("keras", _, "learning_rate") => LearningRate,
        (
            "torch" | "timm",
            _,
            k @ ("square_avg" | "grad_avg" | "momentum_buffer" | "sum" | "exp_avg" | "exp_avg_sq" | "max_exp_avg_sq"
            | "acc_delta"),
        ) => Buffer(static_name(k), 1.0),
        ("optax", "rmsprop", "nu") | ("keras", "rmsprop", "velocity") | ("mxnet", "rmsprop", "n") => {
            Buffer("square_avg", 1.0)
        }
        ("optax", "rmsprop", "mu") | ("keras", "rmsprop", "average_gradient") | ("mxnet", "rmsprop", "g") => {
            Buffer("grad_avg", 1.0)
        }
        ("optax", "rmsprop", "trace") | ("mxnet", "rmsprop", "delta") | ("mxnet", "sgd", "mom") => {
            Buffer("momentum_buffer", -1.0)
        }
        ("keras", "rmsprop", "momentum") => Buffer("momentum_buffer", 1.0),
        ("optax", "adam" | "adamw" | "yogi", "mu") | ("mxnet", "adam", "mean") => Buffer("exp_avg", 1.0),
        ("optax", "adam" | "adamw" | "yogi", "nu") | ("mxnet", "adam", "var") => Buffer("exp_avg_sq", 1.0),
        ("optax", "adadelta", "e_g") | ("mxnet", "adadelta", "acc_g") => Buffer("square_avg", 1.0),
        ("optax", "adadelta", "e_x") | ("mxnet", "adadelta", "acc_delta") => Buffer("acc_delta", 1.0),
        ("mxnet", "adagrad", "history") => Buffer("sum", 1.0),
        _ => {
            return Err(format!("unknown state entry {key:?} for {framework} {optimizer}"));
        }
    };
    Ok(r)
}

fn static_name(k: &str) -> &'static str {
    ["square_avg", "grad_avg", "momentum_buffer", "sum", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "acc_delta"]
        .into_iter()
        .find(|n| *n == k)
        .expect("listed above")
}

impl Case {
    fn check_shape(&self) -> Res<usize> {
        let n = self.x0.len();
        // a case that cannot fail is no check: no steps, no elements, no valid tolerance
        if self.steps == 0 || n == 0 {
            return Err(format!("{} steps of {n} elements: nothing to replay", self.steps));
        }
        for (name, tol) in [("x_rtol", self.tolerance.x_rtol), ("state_rtol", self.tolerance.state_rtol)] {
            if !(tol.is_finite() && tol >= 0.0) {
                return Err(format!("tolerance {name} = {tol}: expected a finite number >= 0"));
            }
            if tol > MAX_RTOL {
                return Err(format!("tolerance {name} = {tol} is above {MAX_RTOL}: a check that loose is meaningless"));
            }
        }
        if !matches!(self.grad_kind.as_str(), "mixed" | "normal" | "objective" | "signed_logmag") {
            return Err(format!("unknown grad_kind {:?}", self.grad_kind));
        }
        match (&self.objective, self.grad_kind.as_str()) {
            (Some(o), "objective") if o.kind == "separable_quadratic" => {}
            (Some(o), _) => return Err(format!("unknown objective type {:?}", o.kind)),
            (None, "objective") => return Err("grad_kind objective without an objective".into()),
            (None, _) => {}
        }
        if self.optimizer != self.hyperparams.normalized.optimizer {
            return Err("optimizer differs from hyperparams.normalized.optimizer".into());
        }
        if self.grads.len() != self.steps || self.x.len() != self.steps {
            return Err(format!(
                "{} steps but {} gradients and {} parameter rows",
                self.steps,
                self.grads.len(),
                self.x.len()
            ));
        }
        if let Some(lrs) = &self.lr_schedule {
            if lrs.len() != self.steps {
                return Err(format!("lr_schedule has {} rates for {} steps: one per step", lrs.len(), self.steps));
            }
            let lr = self.hyperparams.normalized.lr;
            if let Some(&first) = lrs.first()
                && first != lr
            {
                return Err(format!(
                    "lr_schedule starts at {first:?}, not at normalized.lr = {lr:?}: the first step's rate is the configured one"
                ));
            }
        }
        if self.grads.iter().chain(&self.x).any(|r| r.len() != n) {
            return Err(format!("a row does not have the {n} elements of x0"));
        }
        Ok(n)
    }

    /// `hyperparams.framework` (the framework's own keyword arguments), read by
    /// [`by_name`](rmsprop::by_name) as that framework's spelling of its preset, must give
    /// the configuration `normalized` gives: a case whose two descriptions disagree says
    /// two things and checks neither.
    fn check_framework(&self, normalized: &OptimizerConfig) -> Res<()> {
        let flavor = flavor_of(&self.framework)?;
        let name = format!("{}.{}", flavor.name(), self.optimizer);
        let mut given = self.hyperparams.framework.clone();
        // PyTorch's choice of kernel path, not of semantics: the cases record the
        // single-tensor path (`foreach=False`), which is what we reproduce
        if matches!(self.framework.as_str(), "torch" | "timm") && given.get("foreach") == Some(&Value::Bool(false)) {
            given.remove("foreach");
        }
        let given = Value::Object(given);
        let mut theirs = by_name::config_json(&name, &given).map_err(|e| format!("hyperparams.framework: {e}"))?;
        // MXNet's plain RMSProp keeps `gamma2` but uses it only when centred: not a difference
        if let (OptimizerConfig::RmsProp(t), OptimizerConfig::RmsProp(n)) = (&mut theirs, normalized)
            && t.momentum_with_centered
            && !t.centered
        {
            t.momentum = n.momentum;
        }
        if &theirs != normalized {
            let differ: Vec<String> = by_name::hyperparameters(&theirs)
                .into_iter()
                .zip(by_name::hyperparameters(normalized))
                .filter(|(a, b)| a != b)
                .map(|((k, a), (_, b))| format!("{k} {a} vs {b}"))
                .collect();
            return Err(format!(
                "hyperparams.framework and hyperparams.normalized describe different optimizers ({})",
                if differ.is_empty() { "their options differ".to_string() } else { differ.join(", ") }
            ));
        }
        Ok(())
    }

    /// With `float32` hyperparameters, `effective_float64` must be the f32 roundings
    /// of `normalized` (MXNet Adam's `lr` excepted: its `lr_t` is rounded instead).
    fn check_effective(&self) -> Res<()> {
        let n = &self.hyperparams.normalized;
        let f32_precision = n.hyperparam_precision == "float32";
        let nominal: [(&str, Option<f64>); 10] = [
            ("lr", Some(n.lr)),
            ("decay", n.decay),
            ("eps", n.eps),
            ("momentum", Some(n.momentum)),
            ("weight_decay", Some(n.weight_decay)),
            ("clip_gradient", n.clip_gradient),
            ("clip_weights", n.clip_weights),
            ("rescale_grad", Some(n.rescale_grad)),
            ("beta1", n.beta1),
            ("beta2", n.beta2),
        ];
        for (key, value) in nominal {
            let Some(Some(effective)) = self.hyperparams.effective_float64.get(key) else {
                continue;
            };
            let Some(value) = value else {
                return Err(format!("effective_float64.{key} set, normalized.{key} null"));
            };
            let adam_lr = key == "lr" && n.bias_correction_mode.as_deref() == Some("lr_only");
            let expected = if f32_precision && !adam_lr { value as f32 as f64 } else { value };
            // Equal up to a few f64 ulps: what matters is f32 rounding versus nominal (~1e-8).
            if (*effective - expected).abs() > 4.0 * f64::EPSILON * expected.abs() {
                return Err(format!(
                    "effective_float64.{key} = {effective:e}, our hyperparameter model gives {expected:e}"
                ));
            }
        }
        Ok(())
    }

    fn replay<T: Float + Param<Acc = T>>(&self, adjust: Adjust) -> Res<Worst> {
        let n = self.check_shape()?;
        self.check_effective()?;
        let mut config = self.hyperparams.normalized.config(&self.framework)?;
        self.check_framework(&config)?;
        adjust(&mut config, &self.dtype);
        // one tensor `x`, or the tensors of `shapes` (`x0`, `x1`, …), concatenated in the file
        let shapes = self.shapes.clone().unwrap_or_else(|| vec![vec![n]]);
        let lens: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
        if lens.iter().sum::<usize>() != n || shapes.is_empty() {
            return Err(format!("shapes {shapes:?} do not hold the {n} elements of x0"));
        }
        let names: Vec<String> =
            (0..shapes.len()).map(|i| if shapes.len() == 1 { "x".into() } else { format!("x{i}") }).collect();
        let specs: Vec<TensorSpec> = names.iter().zip(&shapes).map(|(name, s)| TensorSpec::new(name, s)).collect();
        let mut opt = Optimizer::<T>::new(config, &specs)
            .map_err(|e| e.to_string())?
            .with_nonfinite_policy(NonFinitePolicy::Propagate);
        let split = |v: &[f64]| {
            let mut rest = v;
            lens.iter()
                .map(|&len| {
                    let (head, tail) = rest.split_at(len);
                    rest = tail;
                    head.iter().map(|&e| T::from_f64(e)).collect::<Vec<T>>()
                })
                .collect::<Vec<_>>()
        };
        let mut x = split(&self.x0);
        let scale: Vec<f64> =
            (0..n).map(|i| self.x.iter().map(|r| r[i].abs()).fold(self.x0[i].abs(), f64::max)).collect();
        let mut worst = Worst::default();
        for (t, (g, expected)) in self.grads.iter().zip(&self.x).enumerate() {
            if let Some(lrs) = &self.lr_schedule {
                // as a scheduler writes `param_groups[0]["lr"]` before the step
                opt.group_mut(0).map_err(|e| e.to_string())?.common_mut().lr = lrs[t];
            }
            opt.step(&mut x, &split(g)).map_err(|e| format!("step {}: {e}", t + 1))?;
            for (i, a) in x.iter().flatten().enumerate() {
                worst.see(a.to_f64(), expected[i], self.tolerance.x_rtol * scale[i], || format!("x[{}][{i}]", t + 1));
            }
        }
        let mut compared = Vec::new();
        for (key, value) in &self.state {
            let rtol = self.tolerance.state_rtol;
            match state_ref(&self.framework, &self.optimizer, key)? {
                StateRef::Counter => {
                    let e = value.as_f64().ok_or_else(|| format!("state.{key} is not a number"))?;
                    if e != opt.step_count() as f64 {
                        return Err(format!("state.{key} = {e}, ours {}", opt.step_count()));
                    }
                }
                StateRef::LearningRate => {
                    let e = value.as_f64().ok_or_else(|| format!("state.{key} is not a number"))?;
                    // Keras holds it as a variable of the case's dtype
                    let lr = T::from_f64(opt.current_lr(0).map_err(|e| e.to_string())?).to_f64();
                    worst.see(lr, e, rtol * e.abs(), || format!("state.{key}"));
                }
                StateRef::Buffer(ours, sign) => {
                    let e: Vec<f64> = serde_json::from_value(value.clone())
                        .map_err(|_| format!("state.{key} is not an array of numbers"))?;
                    let mut a = Vec::with_capacity(n);
                    for name in &names {
                        let kept = opt.state(name, ours).ok_or_else(|| format!("state.{key}: we keep no {ours}"))?;
                        a.extend_from_slice(&kept);
                    }
                    if a.len() != e.len() {
                        return Err(format!("state.{key} has {} elements, ours {}", e.len(), a.len()));
                    }
                    for (i, (a, e)) in a.iter().zip(&e).enumerate() {
                        worst.see(sign * a.to_f64(), *e, rtol * e.abs(), || format!("state.{key}[{i}]"));
                    }
                    compared.push(ours);
                }
            }
        }
        // the recorded state must cover every array the optimizer keeps
        let kept = opt.group(0).map_err(|e| e.to_string())?.state_names();
        if let Some(missing) = kept.iter().find(|k| !compared.contains(k)) {
            return Err(format!("the recorded state has no {missing}, which this optimizer keeps"));
        }
        Ok(worst)
    }
}

/// Replays one trace of `d2l_chapter.json`: the chapter's 2-D objective, its
/// optimizer in the D2L flavour, every point and accumulator, and the printed line.
pub fn replay_trace(trace: &Value) -> CaseReport {
    let name = trace.get("name").and_then(Value::as_str).unwrap_or("<unnamed>").to_string();
    let result = serde_json::from_value::<Trace>(trace.clone())
        .map_err(|e| format!("unreadable trace: {e}"))
        .and_then(|t| t.replay());
    report(name, result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Trace {
    #[allow(dead_code)]
    name: String,
    algorithm: String,
    objective: String,
    #[allow(dead_code)]
    update: String,
    hyperparams: TraceHyper,
    x_init: [f64; 2],
    steps: usize,
    dtype: String,
    points: Vec<[f64; 2]>,
    s: Vec<[f64; 2]>,
    f: Vec<f64>,
    printed: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceHyper {
    eta: f64,
    #[serde(default)]
    gamma: Option<f64>,
    eps: f64,
    eps_placement: String,
    s0: f64,
}

/// A 2-D objective: value and gradient at a point.
pub type Objective2d = fn([f64; 2]) -> (f64, [f64; 2]);

/// The chapter's 2-D objectives by their formula text (as `d2l_chapter.json` writes them),
/// rounded as the book's Python evaluates them (`0.1 * x1 ** 2`: the square first).
///
/// ```
/// let f = rmsprop_golden::objective_2d("f(x1,x2) = 0.1*x1^2 + 2*x2^2").unwrap();
/// assert_eq!(f([1.0, 1.0]), (2.1, [0.2, 4.0]));
/// ```
pub fn objective_2d(formula: &str) -> Option<Objective2d> {
    match formula.replace(' ', "").as_str() {
        "f(x1,x2)=0.1*x1^2+2*x2^2" => Some(|[x1, x2]| (0.1 * (x1 * x1) + 2.0 * (x2 * x2), [0.2 * x1, 4.0 * x2])),
        "f(x1,x2)=0.1*(x1+x2)^2+2*(x1-x2)^2" => Some(|[x1, x2]| {
            let (p, m) = (x1 + x2, x1 - x2);
            (0.1 * (p * p) + 2.0 * (m * m), [0.2 * p + 4.0 * m, 0.2 * p - 4.0 * m])
        }),
        _ => None,
    }
}

impl Trace {
    fn replay(&self) -> Res<Worst> {
        if self.dtype != "float64" {
            return Err(format!("unknown trace dtype {:?}", self.dtype));
        }
        let objective =
            objective_2d(&self.objective).ok_or_else(|| format!("unknown objective {:?}", self.objective))?;
        let h = &self.hyperparams;
        let placement = match h.eps_placement.as_str() {
            "inside_sqrt" => EpsPlacement::InsideSqrt,
            "outside_sqrt" => EpsPlacement::OutsideSqrt,
            other => return Err(format!("unknown eps_placement {other:?}")),
        };
        let config: OptimizerConfig = match self.algorithm.as_str() {
            "rmsprop" => Flavor::D2l
                .rmsprop()
                .with_lr(h.eta)
                .with_decay(h.gamma.ok_or("rmsprop trace without gamma")?)
                .with_eps(h.eps, placement)
                .with_initial_accumulator(h.s0)
                .into(),
            "adagrad" => rmsprop::Adagrad::default()
                .with_lr(h.eta)
                .with_eps(h.eps, placement)
                .with_initial_accumulator(h.s0)
                .into(),
            other => return Err(format!("unknown algorithm {other:?}")),
        };
        let n = self
            .steps
            .checked_add(1)
            .filter(|_| self.steps > 0)
            .ok_or_else(|| format!("{} steps: expected at least 1 (and one more point than steps)", self.steps))?;
        let slot = if self.algorithm == "rmsprop" { "square_avg" } else { "sum" };
        if self.points.len() != n || self.s.len() != n || self.f.len() != n {
            return Err(format!("expected {n} points, accumulators and values"));
        }
        let mut opt = Optimizer::<f64>::new(config, &[("x", &[2][..])])
            .map_err(|e| e.to_string())?
            .with_nonfinite_policy(NonFinitePolicy::Propagate);
        let mut x = vec![self.x_init.to_vec()];
        let rtol = 1e-12;
        let scale: Vec<f64> = (0..2).map(|i| self.points.iter().map(|p| p[i].abs()).fold(0.0, f64::max)).collect();
        let mut worst = Worst::default();
        for t in 0..n {
            if t > 0 {
                let (_, g) = objective([x[0][0], x[0][1]]);
                opt.step(&mut x, &[g.to_vec()]).map_err(|e| e.to_string())?;
            }
            let s = opt.state("x", slot).expect("slot exists");
            for i in 0..2 {
                worst.see(x[0][i], self.points[t][i], rtol * scale[i], || format!("points[{t}][{i}]"));
                worst.see(s[i], self.s[t][i], rtol * self.s[t][i].abs(), || format!("s[{t}][{i}]"));
            }
            let (f, _) = objective([x[0][0], x[0][1]]);
            worst.see(f, self.f[t], rtol * self.f[t].abs(), || format!("f[{t}]"));
        }
        let printed = format!("epoch {}, x1 {:.6}, x2 {:.6}", self.steps, x[0][0], x[0][1]);
        if printed != self.printed {
            return Err(format!("printed {printed:?}, the chapter prints {:?}", self.printed));
        }
        Ok(worst)
    }
}
