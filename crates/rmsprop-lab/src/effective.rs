//! The chapter's central quantity: the effective per-coordinate learning rate, the factor
//! by which a step multiplies the direction it follows, `η/√(s + ε)` for the chapter's
//! RMSProp (D2L §12.8.1), and the leaky average's weights that set how far back `s` sees.
//!
//! Each optimizer's rate, read from its state after step `t` (the rate that step applied):
//!
//! | optimizer | rate | applied to |
//! |---|---|---|
//! | RMSProp | `η/√(v + ε)` (ε inside) or `η/(√v + ε)` (outside); `v = ŝ`, or `ŝ - m̂²` centred; hats: `/(1-γ^t)` under bias correction | `g` |
//! | Adagrad | the same on the sum `s`, `η/(1 + (t-1)·lr_decay)` for η | `g` |
//! | Adam | `η/(√v̂ + ε)` (PyTorch), `η/(√(v̂ + ε_root) + ε)` (optax), `η/(√v̂ + ε/√(1-β2^t))` (MXNet: ε not corrected); `v̂ = v/(1-β2^t)` | `m̂ = m/(1-β1^t)` |
//! | Adadelta | `η·√(Δ_{t-1} + ε)/√(s + ε)` | `g` |
//! | SGD | `η` | `g` (or the momentum buffer) |
//!
//! ```
//! use rmsprop_lab::effective;
//! use rmsprop::RmsProp;
//! // the chapter's first step on x1: g1 = 0.2·(-5), s = (1-γ) g1²
//! let config = RmsProp::default().with_lr(0.4).with_decay(0.9).into();
//! let s = 0.1 * 1.0;
//! let rate = effective::rates(&config, 1, 1, &|slot| (slot == "square_avg").then(|| vec![s]), None).unwrap();
//! assert_eq!(rate, [0.4 / (s + 1e-6f64).sqrt()]);
//! ```

use rmsprop::{BiasCorrection, EpsPlacement, OptimizerConfig};

/// A state array by slot name (`square_avg`, `sum`, ...), one value per coordinate.
pub type State<'a> = dyn Fn(&str) -> Option<Vec<f64>> + 'a;

/// The rate of each of `n` coordinates that step `t` (1-based) of `config` applied, from the
/// state after it (`after`) and, for Adadelta, before it (`before`); `None` where a slot is
/// missing (or, for Adadelta, without the state before the step).
pub fn rates(
    config: &OptimizerConfig,
    t: u64,
    n: usize,
    after: &State<'_>,
    before: Option<&State<'_>>,
) -> Option<Vec<f64>> {
    // every hyperparameter as the framework holds it (MXNet and Burn: in f32)
    let hp = |v: f64| config.common().hp(v);
    let lr = hp(config.common().lr);
    let t = t as i32;
    let denominator = |v: f64, eps: f64, placement: EpsPlacement| match placement {
        EpsPlacement::InsideSqrt => (v + hp(eps)).sqrt(),
        EpsPlacement::OutsideSqrt => v.sqrt() + hp(eps),
    };
    Some(match config {
        OptimizerConfig::RmsProp(c) => {
            let debias = if c.bias_correction { 1.0 - hp(c.decay).powi(t) } else { 1.0 };
            let s = after("square_avg")?;
            let m = if c.centered { after("grad_avg")? } else { vec![0.0; s.len()] };
            let variance = |s: f64, m: f64| {
                let v = s / debias - (m / debias).powi(2);
                if c.clamp_variance { v.max(0.0) } else { v }
            };
            s.iter().zip(&m).map(|(&s, &m)| lr / denominator(variance(s, m), c.eps, c.eps_placement)).collect()
        }
        OptimizerConfig::Adagrad(c) => {
            let lr = lr / (1.0 + f64::from(t - 1) * hp(c.lr_decay));
            after("sum")?.iter().map(|&s| lr / denominator(s, c.eps, c.eps_placement)).collect()
        }
        OptimizerConfig::Adam(c) => {
            let v = after(if c.amsgrad { "max_exp_avg_sq" } else { "exp_avg_sq" })?;
            let debias2 = 1.0 - hp(c.beta2).powi(t);
            let (eps, eps_root) = (hp(c.eps), hp(c.eps_root));
            let rate = |v: f64| match c.bias_correction {
                BiasCorrection::Denominator => lr / ((v / debias2).sqrt() + eps),
                BiasCorrection::Moments => lr / ((v / debias2 + eps_root).sqrt() + eps),
                BiasCorrection::LrOnly => {
                    // MXNet forms η√(1-β2^t)/(1-β1^t) from the nominal values, rounded once
                    let (c1, c2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
                    hp(config.common().lr * c2.sqrt() / c1) * c1 / (v.sqrt() + eps)
                }
            };
            v.iter().map(|&v| rate(v)).collect()
        }
        OptimizerConfig::Adadelta(c) => {
            let s = after("square_avg")?;
            let delta = before?("acc_delta")?;
            let eps = hp(c.eps);
            s.iter().zip(&delta).map(|(&s, &d)| lr * (d + eps).sqrt() / (s + eps).sqrt()).collect()
        }
        OptimizerConfig::Yogi(c) => {
            let debias2 = 1.0 - hp(c.beta2).powi(t);
            let (eps, eps_root) = (hp(c.eps), hp(c.eps_root));
            after("exp_avg_sq")?.iter().map(|&v| lr / ((v / debias2 + eps_root).sqrt() + eps)).collect()
        }
        OptimizerConfig::Sgd(_) => vec![lr; n],
        _ => return None,
    })
}

/// The smallest, median and largest rate over a model's parameters at one point of a run.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Spread {
    /// The epoch (fractional) of the point.
    pub epoch: f64,
    /// The smallest rate.
    pub min: f64,
    /// The median (of an even count: the mean of the middle two).
    pub median: f64,
    /// The largest rate.
    pub max: f64,
}

impl Spread {
    /// The spread of `rates` (none for no rates or a non-finite one).
    ///
    /// ```
    /// let s = rmsprop_lab::effective::Spread::of(1.5, vec![4.0, 1.0, 3.0, 2.0]).unwrap();
    /// assert_eq!((s.min, s.median, s.max), (1.0, 2.5, 4.0));
    /// ```
    pub fn of(epoch: f64, mut rates: Vec<f64>) -> Option<Spread> {
        if rates.is_empty() || rates.iter().any(|r| !r.is_finite()) {
            return None;
        }
        rates.sort_by(f64::total_cmp);
        let n = rates.len();
        let median = if n % 2 == 1 { rates[n / 2] } else { (rates[n / 2 - 1] + rates[n / 2]) / 2.0 };
        Some(Spread { epoch, min: rates[0], median, max: rates[n - 1] })
    }
}

/// The weight of the gradient `k` steps back in the leaky average `s_t = γ s_{t-1} +
/// (1-γ) g_t²`: `(1-γ) γ^k` (D2L §12.8.1; they sum to 1 - γ^t).
///
/// ```
/// assert_eq!(rmsprop_lab::effective::leaky_weight(0.9, 0), 0.09999999999999998);
/// assert_eq!(rmsprop_lab::effective::leaky_weight(0.0, 1), 0.0);
/// ```
pub fn leaky_weight(gamma: f64, k: u32) -> f64 {
    (1.0 - gamma) * gamma.powi(k as i32)
}

/// How many steps back the leaky average effectively sees, `1/(1-γ)` (infinite at γ = 1).
pub fn horizon(gamma: f64) -> f64 {
    1.0 / (1.0 - gamma)
}
