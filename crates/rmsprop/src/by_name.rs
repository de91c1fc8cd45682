//! Optimizers by name, with hyperparameters spelled as any framework spells them —
//! the chapter's `gluon.Trainer(params, "rmsprop", {"learning_rate": 0.01, "gamma1": 0.9})`.
//!
//! The name is an optimizer (`rmsprop`, `adagrad`, `sgd`, `adam`, `adamw`, `adadelta`),
//! optionally prefixed by a flavour (`pytorch.rmsprop`, `mxnet.rmsprop`); a bare name
//! is the chapter's flavour (`d2l`). A `"flavor"` entry in the map does the same. The
//! preset supplies the defaults; each given entry overrides one field. Unknown names
//! are an error that lists the accepted ones.
//!
//! ```
//! use rmsprop::{by_name, OptimizerConfig};
//! let c = by_name::config("mxnet.rmsprop", [("learning_rate", 0.01), ("gamma1", 0.9)]).unwrap();
//! let OptimizerConfig::RmsProp(r) = c else { panic!() };
//! assert_eq!((r.common.lr, r.decay, r.eps), (0.01, 0.9, 1e-8));
//! assert!(by_name::config("rmsprop", [("gamma3", 0.9)]).is_err());
//! ```

use crate::common::{ClipNorm, Common, HyperPrecision, NormScope, Rounding, StateStorage, StepForm, WeightDecayMode};
use crate::error::{Error, Result};
use crate::flavor::Flavor;
use crate::optim::{AverageForm, BiasCorrection, EpsPlacement, MomentumStyle, OptimizerConfig, SgdMomentum};
use std::fmt;

/// A hyperparameter value: a number, a switch, or a word (`"inside_sqrt"`).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A number.
    Num(f64),
    /// A switch.
    Bool(bool),
    /// A word.
    Str(String),
}

impl Value {
    /// Reads a command-line value: `true`/`false`, a number, else a word.
    ///
    /// ```
    /// use rmsprop::by_name::Value;
    /// assert_eq!(Value::parse("0.9"), Value::Num(0.9));
    /// assert_eq!(Value::parse("true"), Value::Bool(true));
    /// assert_eq!(Value::parse("outside_sqrt"), Value::Str("outside_sqrt".into()));
    /// ```
    pub fn parse(s: &str) -> Value {
        match s {
            "true" | "True" => Value::Bool(true),
            "false" | "False" => Value::Bool(false),
            _ => s.parse::<f64>().map(Value::Num).unwrap_or_else(|_| Value::Str(s.to_string())),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Num(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(v) => write!(f, "{v:?}"),
        }
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Num(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}

/// Names every optimizer accepts (besides `flavor`).
const COMMON: &[&str] = &[
    "lr",
    "learning_rate",
    "eta",
    "weight_decay",
    "wd",
    "weight_decay_mode",
    "maximize",
    "rescale_grad",
    "clip_gradient",
    "clipvalue",
    "clip_norm",
    "clipnorm",
    "global_clipnorm",
    "clip_weights",
    "precision",
    "rounding",
    "state_storage",
    "min_8bit_size",
    "bf16_stochastic_round",
];

/// One named hyperparameter of an optimizer `C`: the names it is read by (this crate's
/// spelling first, then the frameworks'), how to describe it and how to set it. Each
/// optimizer lists its own ([`Rule::FIELDS`](crate::optim::Rule), written with
/// [`field!`]), so the names come from the configuration's definition.
pub(crate) struct Field<C> {
    /// This crate's name, then the frameworks' spellings.
    pub names: &'static [&'static str],
    /// The value under the first name; `None` for a spelling that is only read (optax's
    /// `eps_in_sqrt` sets the placement).
    pub get: Option<fn(&C) -> Value>,
    /// Sets the field from a value given under one of the names.
    pub set: fn(&mut C, &str, &Value) -> Result<()>,
}

/// A [`Field`] of a configuration's own field: `field!(num decay: "decay", "alpha")`,
/// `field!(flag centered: "centered")`, `field!(choice step_form in STEP_FORMS: "step_form")`.
macro_rules! field {
    (num $f:ident: $($n:literal),+) => {
        $crate::by_name::Field {
            names: &[$($n),+],
            get: Some(|c| $crate::by_name::Value::Num(c.$f)),
            set: |c, k, v| {
                c.$f = $crate::by_name::num(k, v)?;
                Ok(())
            },
        }
    };
    (flag $f:ident: $($n:literal),+) => {
        $crate::by_name::Field {
            names: &[$($n),+],
            get: Some(|c| $crate::by_name::Value::Bool(c.$f)),
            set: |c, k, v| {
                c.$f = $crate::by_name::flag(k, v)?;
                Ok(())
            },
        }
    };
    (choice $f:ident in $options:expr; $($n:literal),+) => {
        $crate::by_name::Field {
            names: &[$($n),+],
            get: Some(|c| $crate::by_name::word_of($options, &c.$f)),
            set: |c, k, v| {
                c.$f = $crate::by_name::choice(k, v, $options)?;
                Ok(())
            },
        }
    };
}
pub(crate) use field;

/// Every optimizer name [`config`] and [`Flavor::config`] accept (`rmsprop`, `adagrad`,
/// `sgd`, `adam`, `adamw`, `adadelta`, `yogi`): the family, from its registry.
///
/// ```
/// assert!(rmsprop::by_name::optimizers().contains(&"yogi"));
/// ```
pub fn optimizers() -> Vec<&'static str> {
    crate::optim::names()
}

/// Sets one hyperparameter of `config` by any of its names (as [`config`] reads them);
/// `Ok(false)`, changing nothing, when this optimizer has no hyperparameter by that name.
///
/// ```
/// use rmsprop::by_name::{set, Value};
/// let mut c = rmsprop::Flavor::PyTorch.config("rmsprop").unwrap();
/// assert!(set(&mut c, "alpha", &Value::Num(0.9)).unwrap());
/// assert!(!set(&mut c, "beta1", &Value::Num(0.9)).unwrap());
/// assert!(set(&mut c, "alpha", &Value::Bool(true)).is_err());
/// ```
pub fn set(config: &mut OptimizerConfig, name: &str, value: &Value) -> Result<bool> {
    Ok(set_common(config.common_mut(), name, value)? || config.set_field(name, value)?)
}

/// Every name [`set`] and [`config`] read a hyperparameter of `config` by: the ones every
/// optimizer shares (`lr`, `learning_rate`, `weight_decay`, ...), then its own in every
/// framework's spelling.
///
/// ```
/// let c = rmsprop::Flavor::Keras.config("rmsprop").unwrap();
/// let names = rmsprop::by_name::names(&c);
/// assert!(names.contains(&"learning_rate") && names.contains(&"rho") && names.contains(&"epsilon"));
/// ```
pub fn names(config: &OptimizerConfig) -> Vec<&'static str> {
    [COMMON, &config.field_names()].concat()
}

/// Builds a configuration from an optimizer name and `(name, value)` pairs.
///
/// ```
/// use rmsprop::by_name::{config, Value};
/// let c = config("pytorch.rmsprop", [("alpha", Value::from(0.9)), ("centered", Value::from(true))]).unwrap();
/// assert_eq!(c.state_names(), ["square_avg", "grad_avg"]);
/// ```
pub fn config<K: AsRef<str>, V: Into<Value>>(
    name: &str,
    hyper: impl IntoIterator<Item = (K, V)>,
) -> Result<OptimizerConfig> {
    let hyper: Vec<(String, Value)> = hyper.into_iter().map(|(k, v)| (k.as_ref().to_string(), v.into())).collect();
    let (mut flavor, optimizer) = match name.split_once('.') {
        Some((f, o)) => (f.parse::<Flavor>()?, o.to_ascii_lowercase()),
        None => (Flavor::D2l, name.to_ascii_lowercase()),
    };
    for (k, v) in &hyper {
        if k == "flavor" {
            flavor = word(k, v)?.parse()?;
        }
    }
    // the name as given, flavour and all, in the message of an unknown one
    let mut config = flavor.config(&optimizer).map_err(|e| match e {
        Error::UnknownName { kind: "optimizer", known, .. } => {
            Error::UnknownName { kind: "optimizer", name: name.to_string(), known }
        }
        e => e,
    })?;
    for (k, v) in hyper.iter().filter(|(k, _)| k != "flavor") {
        if !(set_common(config.common_mut(), k, v)? || config.set_field(k, v)?) {
            let known = [names(&config), vec!["flavor"]].concat().join(", ");
            return Err(Error::UnknownHyperparameter { optimizer: optimizer.clone(), name: k.clone(), known });
        }
    }
    config.validate().map_err(|e| as_given(e, &config, &hyper))?;
    Ok(config)
}

/// The shared hyperparameters with more than one spelling, this crate's first: what
/// [`set_common`] reads, and how a refused one is named back ([`as_given`]).
const COMMON_SPELLINGS: &[&[&str]] = &[
    &["lr", "learning_rate", "eta"],
    &["weight_decay", "wd"],
    &["clip_gradient", "clipvalue"],
    &["clip_norm", "clipnorm"],
];

/// `e`, a refused hyperparameter named as the caller spelled it (`rmsprop.alpha`, not
/// `rmsprop.decay`, for PyTorch's name of RMSProp's decay).
fn as_given(e: Error, config: &OptimizerConfig, hyper: &[(String, Value)]) -> Error {
    let Error::InvalidHyperparameter { optimizer, name, value, expected } = e else { return e };
    let given = |spellings: &[&'static str]| {
        spellings.iter().copied().find(|&sp| sp != name && hyper.iter().any(|(k, _)| k == sp))
    };
    let own = config.each_field(|fields| fields.iter().find(|f| f.contains(&name)).and_then(|f| given(f)));
    let common = COMMON_SPELLINGS.iter().find(|f| f.contains(&name)).and_then(|f| given(f));
    let name = own.or(common).unwrap_or(name);
    Error::InvalidHyperparameter { optimizer, name, value, expected }
}

/// Like [`config`], from a JSON object (`{"learning_rate": 0.01, "gamma1": 0.9}`).
///
/// ```
/// let json = serde_json::json!({"learning_rate": 0.01, "gamma1": 0.9});
/// let c = rmsprop::by_name::config_json("mxnet.rmsprop", &json).unwrap();
/// assert_eq!(c.common().lr, 0.01);
/// // PyTorch's tuple of betas, and Python's None for an option that is off
/// let json = serde_json::json!({"lr": 0.001, "betas": [0.8, 0.99]});
/// let c = rmsprop::by_name::config_json("torch.adam", &json).unwrap();
/// assert!(matches!(c, rmsprop::OptimizerConfig::Adam(a) if (a.beta1, a.beta2) == (0.8, 0.99)));
/// let json = serde_json::json!({"learning_rate": 0.01, "momentum": null});
/// assert!(rmsprop::by_name::config_json("optax.rmsprop", &json).is_ok());
/// ```
pub fn config_json(name: &str, hyper: &serde_json::Value) -> Result<OptimizerConfig> {
    let map = hyper.as_object().ok_or_else(|| Error::WrongType {
        name: "hyperparameters".into(),
        expected: "a JSON object",
        got: hyper.to_string(),
    })?;
    let mut pairs = Vec::new();
    for (k, v) in map {
        let v = match v {
            serde_json::Value::Number(n) => Value::Num(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::String(s) => Value::Str(s.clone()),
            // Python's None (optax `momentum=None`): the option is off, its default
            serde_json::Value::Null => continue,
            // PyTorch's `betas=(beta1, beta2)`
            serde_json::Value::Array(items) if k == "betas" && items.len() == 2 => {
                for (name, item) in ["beta1", "beta2"].into_iter().zip(items) {
                    let x = item.as_f64().ok_or_else(|| Error::WrongType {
                        name: "betas".into(),
                        expected: "two numbers",
                        got: hyper["betas"].to_string(),
                    })?;
                    pairs.push((name.to_string(), Value::Num(x)));
                }
                continue;
            }
            other => {
                return Err(Error::WrongType {
                    name: k.clone(),
                    expected: "a number, boolean or string",
                    got: other.to_string(),
                });
            }
        };
        pairs.push((k.clone(), v));
    }
    config(name, pairs)
}

pub(crate) fn num(name: &str, v: &Value) -> Result<f64> {
    match v {
        Value::Num(x) => Ok(*x),
        other => Err(Error::WrongType { name: name.into(), expected: "a number", got: other.to_string() }),
    }
}

/// A whole number from 0 to 2^53 (a count of elements).
pub(crate) fn count(name: &str, v: &Value) -> Result<u64> {
    match v {
        Value::Num(x) if x.fract() == 0.0 && (0.0..=9007199254740992.0).contains(x) => Ok(*x as u64),
        other => Err(Error::WrongType { name: name.into(), expected: "a whole number >= 0", got: other.to_string() }),
    }
}

pub(crate) fn flag(name: &str, v: &Value) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => Err(Error::WrongType { name: name.into(), expected: "true or false", got: other.to_string() }),
    }
}

pub(crate) fn word<'a>(name: &str, v: &'a Value) -> Result<&'a str> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(Error::WrongType { name: name.into(), expected: "a word", got: other.to_string() }),
    }
}

pub(crate) fn choice<T: Copy>(name: &str, v: &Value, options: &[(&str, T)]) -> Result<T> {
    let w = word(name, v)?;
    options.iter().find(|(n, _)| *n == w).map(|(_, t)| *t).ok_or_else(|| Error::UnknownName {
        kind: "value",
        name: format!("{name}={w}"),
        known: options.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
    })
}

/// The word of `value` in `options` (every variant has one).
pub(crate) fn word_of<T: PartialEq>(options: &[(&'static str, T)], value: &T) -> Value {
    let name = options.iter().find(|(_, t)| t == value).map(|(n, _)| *n).expect("every variant is named");
    Value::Str(name.into())
}

// The words of every choice, used both to read (`--set eps_placement=outside_sqrt`) and to
// describe a configuration (`hyperparameters`).
pub(crate) const PLACEMENTS: &[(&str, EpsPlacement)] =
    &[("inside_sqrt", EpsPlacement::InsideSqrt), ("outside_sqrt", EpsPlacement::OutsideSqrt)];
pub(crate) const STEP_FORMS: &[(&str, StepForm)] = &[
    ("scaled_gradient", StepForm::ScaledGradient),
    ("scaled_rate", StepForm::ScaledRate),
    ("scaled_product", StepForm::ScaledProduct),
    ("scaled_reciprocal", StepForm::ScaledReciprocal),
];
const DECAY_MODES: &[(&str, WeightDecayMode)] =
    &[("coupled", WeightDecayMode::Coupled), ("decoupled", WeightDecayMode::Decoupled)];
const PRECISIONS: &[(&str, HyperPrecision)] = &[("native", HyperPrecision::Native), ("float32", HyperPrecision::F32)];
const STORAGES: &[(&str, StateStorage)] =
    &[("f32", StateStorage::F32), ("bf16", StateStorage::Bf16), ("int8", StateStorage::Int8)];
const ROUNDINGS: &[(&str, Rounding)] = &[
    ("as_written", Rounding::AsWritten),
    ("torch", Rounding::Torch),
    ("xla", Rounding::Xla),
    ("mxnet", Rounding::Mxnet),
];
pub(crate) const AVERAGE_FORMS: &[(&str, AverageForm)] =
    &[("weighted", AverageForm::Weighted), ("increment", AverageForm::Increment)];
pub(crate) const MOMENTUM_STYLES: &[(&str, MomentumStyle)] =
    &[("lr_outside_buffer", MomentumStyle::LrOutsideBuffer), ("lr_inside_buffer", MomentumStyle::LrInsideBuffer)];
pub(crate) const SGD_MOMENTA: &[(&str, SgdMomentum)] =
    &[("torch", SgdMomentum::Torch), ("lr_inside_buffer", SgdMomentum::LrInsideBuffer)];
pub(crate) const BIAS_CORRECTIONS: &[(&str, BiasCorrection)] = &[
    ("moments", BiasCorrection::Moments),
    ("denominator", BiasCorrection::Denominator),
    ("lr_only", BiasCorrection::LrOnly),
];

/// Sets a [`Common`] field; false if `k` is not one.
fn set_common(c: &mut Common, k: &str, v: &Value) -> Result<bool> {
    // a framework's spelling, as this crate's name
    let name = COMMON_SPELLINGS.iter().find(|names| names.contains(&k)).map_or(k, |names| names[0]);
    match name {
        "lr" => c.lr = num(k, v)?,
        "weight_decay" => c.weight_decay = num(k, v)?,
        "weight_decay_mode" => c.weight_decay_mode = choice(k, v, DECAY_MODES)?,
        "maximize" => c.maximize = flag(k, v)?,
        "rescale_grad" => c.rescale_grad = num(k, v)?,
        "clip_gradient" => c.clip_gradient = Some(num(k, v)?),
        "clip_norm" => c.clip_norm = Some(ClipNorm { max_norm: num(k, v)?, scope: NormScope::PerTensor }),
        "global_clipnorm" => c.clip_norm = Some(ClipNorm { max_norm: num(k, v)?, scope: NormScope::Global }),
        "clip_weights" => c.clip_weights = Some(num(k, v)?),
        "precision" => c.precision = choice(k, v, PRECISIONS)?,
        "rounding" => c.rounding = choice(k, v, ROUNDINGS)?,
        "state_storage" => c.state_storage = choice(k, v, STORAGES)?,
        "min_8bit_size" => c.min_8bit_size = count(k, v)?,
        "bf16_stochastic_round" => c.bf16_stochastic_round = flag(k, v)?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// Every hyperparameter of `config` that has a name, under this module's own spelling (the
/// first of each list: `decay`, not `alpha`), in a fixed order: the resolved configuration a
/// run used, to print or store. [`config`] reads the list back: with the same optimizer name
/// (the flavour supplies what has no name), it gives `config` again. Unset clips are left out.
///
/// ```
/// use rmsprop::by_name::{self, Value};
/// let c = by_name::config("pytorch.rmsprop", [("lr", 0.4)]).unwrap();
/// let h = by_name::hyperparameters(&c);
/// assert!(h.contains(&("decay", Value::Num(0.99))) && h.contains(&("eps_placement", "outside_sqrt".into())));
/// assert_eq!(by_name::config("pytorch.rmsprop", h).unwrap(), c);
/// ```
pub fn hyperparameters(config: &OptimizerConfig) -> Vec<(&'static str, Value)> {
    let c = config.common();
    let mut h: Vec<(&'static str, Value)> = vec![("lr", c.lr.into())];
    h.extend(config.fields());
    h.extend([
        ("weight_decay", c.weight_decay.into()),
        ("weight_decay_mode", word_of(DECAY_MODES, &c.weight_decay_mode)),
        ("maximize", c.maximize.into()),
        ("rescale_grad", c.rescale_grad.into()),
    ]);
    if let Some(v) = c.clip_gradient {
        h.push(("clip_gradient", v.into()));
    }
    match c.clip_norm {
        Some(ClipNorm { max_norm, scope: NormScope::PerTensor }) => h.push(("clip_norm", max_norm.into())),
        Some(ClipNorm { max_norm, scope: NormScope::Global }) => h.push(("global_clipnorm", max_norm.into())),
        None => {}
    }
    if let Some(v) = c.clip_weights {
        h.push(("clip_weights", v.into()));
    }
    h.extend([("precision", word_of(PRECISIONS, &c.precision)), ("rounding", word_of(ROUNDINGS, &c.rounding))]);
    // named only when not the default, so that a configuration's list reads as before
    if c.state_storage != StateStorage::F32 {
        h.push(("state_storage", word_of(STORAGES, &c.state_storage)));
    }
    if c.min_8bit_size != StateStorage::SMALL_TENSOR {
        h.push(("min_8bit_size", (c.min_8bit_size as f64).into()));
    }
    if c.bf16_stochastic_round {
        h.push(("bf16_stochastic_round", true.into()));
    }
    h
}

/// [`hyperparameters`] under `flavor`'s own names ([`Flavor::spelling`]): `alpha` for
/// PyTorch's decay, `gamma1` for MXNet's. [`config`] reads this list back too.
///
/// ```
/// use rmsprop::{Flavor, by_name::{self, Value}};
/// let c = by_name::config("mxnet.rmsprop", [("learning_rate", 0.01)]).unwrap();
/// let h = by_name::hyperparameters_as(&c, Flavor::Mxnet);
/// assert!(h.contains(&("learning_rate", Value::Num(0.01))) && h.contains(&("gamma1", Value::Num(0.9))));
/// assert_eq!(by_name::config("mxnet.rmsprop", h).unwrap(), c);
/// ```
pub fn hyperparameters_as(config: &OptimizerConfig, flavor: Flavor) -> Vec<(&'static str, Value)> {
    let family = config.name();
    hyperparameters(config).into_iter().map(|(k, v)| (flavor.spelling(family, k), v)).collect()
}

/// The resolved hyperparameters as a JSON object (numbers, booleans, words).
///
/// ```
/// let c = rmsprop::by_name::config("pytorch.rmsprop", [("lr", 0.4)]).unwrap();
/// let j = rmsprop::by_name::hyperparameters_json(&c);
/// assert_eq!((j["lr"].as_f64(), j["decay"].as_f64()), (Some(0.4), Some(0.99)));
/// ```
pub fn hyperparameters_json(config: &OptimizerConfig) -> serde_json::Value {
    let map = hyperparameters(config).into_iter().map(|(k, v)| {
        let v = match v {
            Value::Num(x) => serde_json::json!(x),
            Value::Bool(b) => serde_json::Value::Bool(b),
            Value::Str(w) => serde_json::Value::String(w),
        };
        (k.to_string(), v)
    });
    serde_json::Value::Object(map.collect())
}
