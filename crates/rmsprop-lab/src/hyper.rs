//! A run's resolved hyperparameters, in words: what text output, figure legends and the
//! report show. The complete list (every named field) is [`rmsprop::by_name::hyperparameters`];
//! the summary leaves out what is off (no weight decay, no momentum, ...) and the rounding
//! details a preset carries.
//!
//! ```
//! use rmsprop::by_name::config;
//! use rmsprop_lab::hyper::summary;
//! let c = config("pytorch.rmsprop", [("lr", 0.4)]).unwrap();
//! assert_eq!(summary(&c), "lr=0.4 decay=0.99 eps=1e-8 eps_placement=outside_sqrt");
//! // MXNet's gamma2 acts only in the centred update
//! assert!(!summary(&config("mxnet.rmsprop", [("lr", 0.01)]).unwrap()).contains("momentum"));
//! assert!(summary(&config("mxnet.rmsprop", [("centered", true)]).unwrap()).contains("centered=true momentum=0.9"));
//! ```

use rmsprop::OptimizerConfig;
use rmsprop::by_name::{self, Value};

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

/// `name=value` for every hyperparameter that is on, in [`by_name::hyperparameters`] order.
pub fn summary(config: &OptimizerConfig) -> String {
    summary_against(config, None)
}

/// [`summary`], and every number that is 0 where `preset` (the flavour's default of the
/// same optimizer) holds another value: `eps=0` is a choice worth seeing, `momentum=0` of a
/// preset without momentum is not.
///
/// ```
/// use rmsprop::by_name::config;
/// use rmsprop_lab::hyper::summary_against;
/// let preset = config("pytorch.rmsprop", [("lr", 0.01)]).unwrap();
/// let c = config("pytorch.rmsprop", [("eps", 0.0)]).unwrap();
/// assert_eq!(summary_against(&c, Some(&preset)), "lr=0.01 decay=0.99 eps=0 eps_placement=outside_sqrt");
/// ```
pub fn summary_against(config: &OptimizerConfig, preset: Option<&OptimizerConfig>) -> String {
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
    h.iter().filter(|(k, v)| shown(k, v)).map(|(k, v)| format!("{k}={}", value(v))).collect::<Vec<_>>().join(" ")
}

/// `name (lr=0.4 decay=0.9 ...)`: a legend entry.
pub fn label(name: &str, config: &OptimizerConfig) -> String {
    format!("{name} ({})", summary(config))
}
