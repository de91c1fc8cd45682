//! A run's resolved hyperparameters, in words: what text output, figure legends and the
//! report show. The complete list (every named field) is [`rmsprop::by_name::hyperparameters`];
//! the summary leaves out what is off (no weight decay, no momentum, ...) and the rounding
//! details a preset carries.
//!
//! Each hyperparameter is named as the optimizer's framework names it
//! ([`Flavor::spelling`]): PyTorch's `alpha`, Keras's `rho`, MXNet's `gamma1`.
//!
//! ```
//! use rmsprop::{Flavor, by_name::{Value, config}};
//! use rmsprop_lab::hyper::summary;
//! let c = config("pytorch.rmsprop", [("lr", 0.4)]).unwrap();
//! assert_eq!(summary(&c, Flavor::PyTorch), "lr=0.4 alpha=0.99 eps=1e-8 eps_placement=outside_sqrt");
//! // MXNet's gamma2 acts only in the centred update
//! let mxnet = |k: &str, v: Value| summary(&config("mxnet.rmsprop", [(k, v)]).unwrap(), Flavor::Mxnet);
//! assert!(!mxnet("lr", 0.01.into()).contains("gamma2"));
//! assert!(mxnet("centered", true.into()).contains("centered=true gamma2=0.9"));
//! ```

use rmsprop::by_name::{self, Value};
use rmsprop::{Flavor, OptimizerConfig};

/// The flavour an optimizer's name starts with (`pytorch.rmsprop`), D2L's for a bare name
/// (`rmsprop`), as [`by_name::config`] reads it.
///
/// ```
/// use rmsprop::Flavor;
/// use rmsprop_lab::hyper::flavor_of;
/// assert_eq!((flavor_of("keras.rmsprop"), flavor_of("adam")), (Flavor::Keras, Flavor::D2l));
/// ```
pub fn flavor_of(name: &str) -> Flavor {
    name.split_once('.').and_then(|(f, _)| f.parse().ok()).unwrap_or(Flavor::D2l)
}

/// A number as people write hyperparameters: `0.4`, `0.99`, `1e-8`.
pub fn number(v: f64) -> String {
    if v != 0.0 && v.is_finite() && (v.abs() < 1e-3 || v.abs() >= 1e5) { format!("{v:e}") } else { format!("{v}") }
}

fn value(v: &Value) -> String {
    match v {
        Value::Num(x) => number(*x),
        Value::Bool(b) => b.to_string(),
        Value::Str(w) => w.clone(),
    }
}

/// `name=value` for every hyperparameter that is on, in [`by_name::hyperparameters`]
/// order, under `flavor`'s names.
pub fn summary(config: &OptimizerConfig, flavor: Flavor) -> String {
    summary_against(config, None, flavor)
}

/// [`summary`], and every number that is 0 where `preset` (the flavour's default of the
/// same optimizer) holds another value: `eps=0` is a choice worth seeing, `momentum=0` of a
/// preset without momentum is not.
///
/// ```
/// use rmsprop::{Flavor, by_name::config};
/// use rmsprop_lab::hyper::summary_against;
/// let preset = config("pytorch.rmsprop", [("lr", 0.01)]).unwrap();
/// let c = config("pytorch.rmsprop", [("eps", 0.0)]).unwrap();
/// assert_eq!(summary_against(&c, Some(&preset), Flavor::PyTorch), "lr=0.01 alpha=0.99 eps=0 eps_placement=outside_sqrt");
/// ```
pub fn summary_against(config: &OptimizerConfig, preset: Option<&OptimizerConfig>, flavor: Flavor) -> String {
    written(config, preset, flavor, &[])
}

/// [`summary`] of a sweep's base configuration: the swept hyperparameters (by this
/// crate's names, `lr` and `decay`) show the grid's values instead of the preset's.
///
/// ```
/// use rmsprop::{Flavor, by_name::config};
/// use rmsprop_lab::hyper::summary_of_grid;
/// let c = config("mxnet.rmsprop", [("lr", 0.001)]).unwrap();
/// let grid = [("lr", &[0.01, 0.1][..]), ("decay", &[0.9, 1.0][..])];
/// assert_eq!(
///     summary_of_grid(&c, Flavor::Mxnet, &grid),
///     "learning_rate=0.01,0.1 gamma1=0.9,1 epsilon=1e-8 eps_placement=inside_sqrt"
/// );
/// ```
pub fn summary_of_grid(config: &OptimizerConfig, flavor: Flavor, grid: &[(&str, &[f64])]) -> String {
    written(config, None, flavor, grid)
}

/// The shown hyperparameters as `name=value` under `flavor`'s names, a swept one (by this
/// crate's name in `grid`) with the grid's values.
fn written(
    config: &OptimizerConfig,
    preset: Option<&OptimizerConfig>,
    flavor: Flavor,
    grid: &[(&str, &[f64])],
) -> String {
    let family = config.name();
    let text = |k: &str, v: &Value| match grid.iter().find(|(g, _)| *g == k) {
        Some((_, values)) => values.iter().map(|&x| number(x)).collect::<Vec<_>>().join(","),
        None => value(v),
    };
    let items = shown(config, preset);
    items.iter().map(|(k, v)| format!("{}={}", flavor.spelling(family, k), text(k, v))).collect::<Vec<_>>().join(" ")
}

/// The hyperparameters a summary shows, under this crate's names: every one that is on,
/// and every 0 where `preset` has another value.
fn shown(config: &OptimizerConfig, preset: Option<&OptimizerConfig>) -> Vec<(&'static str, Value)> {
    let h = by_name::hyperparameters(config);
    let defaults = preset.map(by_name::hyperparameters).unwrap_or_default();
    let get = |k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let chosen_zero =
        |k: &str| defaults.iter().any(|(n, v)| *n == k && matches!(v, Value::Num(d) if *d != 0.0 && !d.is_nan()));
    // MXNet's plain RMSProp keeps gamma2 but has no momentum buffer unless centred
    let inert = matches!(config, OptimizerConfig::RmsProp(r) if r.momentum_with_centered && !r.centered);
    let momentum_on = matches!(get("momentum"), Some(Value::Num(m)) if m != 0.0) && !inert;
    let decay_on = matches!(get("weight_decay"), Some(Value::Num(w)) if w != 0.0);
    let shown = |k: &str, v: &Value| match (k, v) {
        // how the preset rounds and orders its arithmetic: in the JSON, not in a legend
        ("rounding" | "step_form" | "average_form" | "precision", _) => false,
        ("momentum" | "momentum_style", _) if !momentum_on && !chosen_zero(k) => false,
        ("weight_decay_mode", _) => decay_on,
        ("rescale_grad", Value::Num(x)) => *x != 1.0,
        (_, Value::Num(x)) => *x != 0.0 || matches!(k, "lr" | "decay" | "beta1" | "beta2" | "rho") || chosen_zero(k),
        (_, Value::Bool(b)) => *b,
        (_, Value::Str(_)) => !matches!(k, "bias_correction"),
    };
    h.into_iter().filter(|(k, v)| shown(k, v)).collect()
}

/// `name (lr=0.4 gamma=0.9 ...)`: a legend entry, under `flavor`'s names.
pub fn label(name: &str, config: &OptimizerConfig, flavor: Flavor) -> String {
    format!("{name} ({})", summary(config, flavor))
}
