//! When a run has diverged: one rule for the 2-D traces, the trainings and the sweep.
//!
//! A run diverges at the first step after which
//! - a parameter, a state value or the loss is not finite (NaN or ±∞), or
//! - a parameter's magnitude exceeds [`FACTOR`] × the start's scale (the largest |x₀|, at
//!   least 1), or
//! - the loss exceeds [`FACTOR`] × its initial scale (|loss₀|, at least 1).
//!
//! The run stops there: later steps would only grow (the γ = 1 exercise reaches 10⁶⁴ in 20
//! steps), and a run reported as diverged is never printed as a number.
//!
//! ```
//! use rmsprop_lab::divergence::Watch;
//! let w = Watch::new(&[-5.0, -2.0], 10.5);
//! assert!(w.params(1, "x", [-4.0, 3198.0]).is_none());
//! let d = w.params(2, "x", [-4.0, -5.1e6]).unwrap();
//! assert_eq!(d.to_string(), "diverged at step 2: x[1] = -5.100e6, beyond ±5e6 (1e6 × the start's scale)");
//! ```

use std::fmt;

/// How far past its start a run may go before it counts as diverged.
pub const FACTOR: f64 = 1e6;

/// Where and why a run diverged.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Divergence {
    /// The step after which it was seen (1-based).
    pub step: u64,
    /// What left: `x[1]`, `loss`, `state square_avg of w[3]`.
    pub what: String,
    /// Its value (`null` in JSON when not finite, read back as NaN; see `reason`).
    #[serde(deserialize_with = "finite_or_nan")]
    pub value: f64,
    /// The bound it left (`null` in JSON for a value that is not finite).
    pub bound: Option<f64>,
    /// The same in words, e.g. `x[1] = -5.100e6, beyond ±5e6 (1e6 × the start's scale)`.
    pub reason: String,
}

/// A number of JSON, `null` (how a non-finite one is written) read as NaN.
fn finite_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "diverged at step {}: {}", self.step, self.reason)
    }
}

/// A number for people: fixed notation while it is short, else scientific (never 40 digits).
///
/// ```
/// use rmsprop_lab::divergence::number;
/// assert_eq!((number(-0.0105992), number(-5.1e6), number(f64::NAN)), ("-0.010599".into(), "-5.100e6".into(), "NaN".into()));
/// ```
pub fn number(v: f64) -> String {
    if v.is_finite() && v.abs() < 1e6 { format!("{v:.6}") } else { format!("{v:.3e}") }
}

/// A quantity that is often whole (an epoch, a horizon, a weight): [`number`] without the
/// zeros it ends in, so `2`, `10` and `0.5`, not `2.000000`.
///
/// ```
/// use rmsprop_lab::divergence::short_number;
/// assert_eq!((short_number(2.0), short_number(10.000000000000002), short_number(0.5)), ("2".into(), "10".into(), "0.5".into()));
/// assert_eq!((short_number(0.0431), short_number(-0.0)), ("0.0431".into(), "0".into()));
/// ```
pub fn short_number(v: f64) -> String {
    let s = number(v);
    if s.contains('e') || !s.contains('.') {
        return s;
    }
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// `|v| <= bound`, false for NaN.
fn within(v: f64, bound: f64) -> bool {
    v.abs() <= bound
}

/// The bounds of one run, fixed at its start.
#[derive(Clone, Copy, Debug)]
pub struct Watch {
    param_bound: f64,
    loss_bound: f64,
}

impl Watch {
    /// The bounds for a run starting at parameters `start` with loss `initial_loss`.
    pub fn new(start: &[f64], initial_loss: f64) -> Watch {
        let scale = start.iter().map(|v| v.abs()).filter(|v| v.is_finite()).fold(1.0, f64::max);
        let loss_scale = if initial_loss.is_finite() { initial_loss.abs().max(1.0) } else { 1.0 };
        Watch { param_bound: FACTOR * scale, loss_bound: FACTOR * loss_scale }
    }

    /// The first of `values` (tensor `name`) that is not finite or beyond the parameter bound.
    pub fn params(&self, step: u64, name: &str, values: impl IntoIterator<Item = f64>) -> Option<Divergence> {
        let (i, v) = values.into_iter().enumerate().find(|(_, v)| !within(*v, self.param_bound))?;
        Some(self.escaped(step, format!("{name}[{i}]"), v, self.param_bound, "the start's scale"))
    }

    /// The first non-finite value of state array `slot` of tensor `tensor` (`square_avg` of `w`).
    pub fn state(
        &self,
        step: u64,
        slot: &str,
        tensor: &str,
        values: impl IntoIterator<Item = f64>,
    ) -> Option<Divergence> {
        let (i, v) = values.into_iter().enumerate().find(|(_, v)| !v.is_finite())?;
        let what = format!("state {slot} of {tensor}[{i}]");
        Some(Divergence { step, reason: format!("{what} = {}", number(v)), what, value: v, bound: None })
    }

    /// The loss, if it is not finite or beyond the loss bound.
    pub fn loss(&self, step: u64, value: f64) -> Option<Divergence> {
        (!within(value, self.loss_bound))
            .then(|| self.escaped(step, "loss".into(), value, self.loss_bound, "the initial loss's scale"))
    }

    fn escaped(&self, step: u64, what: String, value: f64, bound: f64, of: &str) -> Divergence {
        let reason = if value.is_finite() {
            format!("{what} = {}, beyond ±{bound:e} ({FACTOR:e} × {of})", number(value))
        } else {
            format!("{what} = {}", number(value))
        };
        Divergence { step, what, value, bound: value.is_finite().then_some(bound), reason }
    }
}
