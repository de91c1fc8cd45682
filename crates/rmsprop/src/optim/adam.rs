//! Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019): RMSProp's scaling
//! plus momentum, with bias correction (D2L §12.10).

use super::{Ctx, Slot};
use crate::common::{Common, WeightDecayMode, check_nonneg, clip, common_setters, invalid};
use crate::error::Result;
use crate::float::{Float, Param};
use serde::{Deserialize, Serialize};

/// How Adam corrects the bias of its zero-initialised moments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BiasCorrection {
    /// optax: `m̂ = m/(1-β1^t)`, `v̂ = v/(1-β2^t)`, `u = m̂/(sqrt(v̂ + ε_root) + ε)`.
    Moments,
    /// PyTorch: `x -= (η/(1-β1^t)) m / (sqrt(v)/sqrt(1-β2^t) + ε)`.
    Denominator,
    /// MXNet 1.x: `x -= η sqrt(1-β2^t)/(1-β1^t) · m/(sqrt(v) + ε)`; ε is not corrected.
    LrOnly,
}

/// Adam / AdamW. `Default` is PyTorch's Adam: η 1e-3, β (0.9, 0.999), ε 1e-8.
/// AdamW is Adam with [`WeightDecayMode::Decoupled`] (see [`Adam::adamw`]).
///
/// ```text
/// g = preprocess(g)                       (coupled decay: Adam's weight_decay)
/// decoupled: x -= η wd x                  (AdamW)
/// m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²;  amsgrad: v_max = max(v_max, v), use it
/// then one of the three BiasCorrection rules; optax nesterov replaces m̂ by
/// β1 m/(1-β1^(t+1)) + (1-β1) g/(1-β1^t)
/// ```
///
/// # Examples
/// ```
/// use rmsprop::{Adam, Optimizer};
/// let mut opt = Optimizer::<f64>::new(Adam::default(), &[("x", &[1][..])]).unwrap();
/// let mut x = vec![vec![1.0]];
/// opt.step(&mut x, &[vec![3.0]]).unwrap();
/// // the first Adam step moves by about η, whatever the gradient's scale
/// assert!((x[0][0] - (1.0 - 1e-3)).abs() < 1e-10);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    /// Learning rate, weight decay, gradient preprocessing, precision.
    pub common: Common,
    /// β1, EMA factor of the gradient.
    pub beta1: f64,
    /// β2, EMA factor of the squared gradient.
    pub beta2: f64,
    /// ε, outside the root.
    pub eps: f64,
    /// ε inside the root (optax `eps_root`).
    pub eps_root: f64,
    /// Divide by the running maximum of `v` (PyTorch `amsgrad`).
    pub amsgrad: bool,
    /// NAdam-style first moment (optax `nesterov`).
    pub nesterov: bool,
    /// How the bias correction is applied.
    pub bias_correction: BiasCorrection,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            common: Common::new(1e-3),
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            eps_root: 0.0,
            amsgrad: false,
            nesterov: false,
            bias_correction: BiasCorrection::Denominator,
        }
    }
}

common_setters!(Adam);

impl Adam {
    /// PyTorch's AdamW: Adam with decoupled weight decay 0.01.
    ///
    /// ```
    /// assert!(rmsprop::Adam::adamw().is_adamw());
    /// ```
    pub fn adamw() -> Self {
        Adam::default().with_weight_decay(0.01, WeightDecayMode::Decoupled)
    }
    /// True with decoupled weight decay.
    pub fn is_adamw(&self) -> bool {
        self.common.weight_decay_mode == WeightDecayMode::Decoupled
    }
    /// Sets β1 and β2.
    pub fn with_betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }
    /// Sets ε.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    /// AMSGrad.
    pub fn with_amsgrad(mut self, on: bool) -> Self {
        self.amsgrad = on;
        self
    }
    /// optax's Nesterov first moment.
    pub fn with_nesterov(mut self, on: bool) -> Self {
        self.nesterov = on;
        self
    }
    /// Sets the bias-correction rule.
    pub fn with_bias_correction(mut self, b: BiasCorrection) -> Self {
        self.bias_correction = b;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        const N: &str = "adam";
        self.common.validate(N)?;
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(invalid(N, name, b, "a number in [0, 1)"));
            }
        }
        check_nonneg(N, "eps", self.eps)?;
        check_nonneg(N, "eps_root", self.eps_root)
    }

    pub(crate) fn slots(&self) -> Vec<Slot> {
        vec![
            Slot::new("exp_avg", 0.0, true),
            Slot::new("exp_avg_sq", 0.0, true),
            Slot::new("max_exp_avg_sq", 0.0, self.amsgrad),
        ]
    }

    pub(crate) fn update<T: Float, P: Param<Acc = T>>(
        &self,
        ctx: &Ctx<T>,
        x: &mut [P],
        g: &[P],
        bufs: &mut [&mut [T]],
    ) {
        let c = &self.common;
        let [m, v, vmax] = bufs else { unreachable!("adam has three state slots") };
        let (b1, b2) = (c.hp(self.beta1), c.hp(self.beta2));
        let t = ctx.t as f64;
        let bc1 = 1.0 - b1.powf(t);
        let bc2 = 1.0 - b2.powf(t);
        let (beta1, one_minus_b1) = (T::from_f64(b1), T::from_f64(1.0 - b1));
        let (beta2, one_minus_b2) = (T::from_f64(b2), T::from_f64(1.0 - b2));
        let eps = T::from_f64(c.hp(self.eps));
        let eps_root = T::from_f64(self.eps_root);
        let lr = T::from_f64(c.hp(ctx.lr));
        // Per-step scalars of each rule, formed in f64 and rounded once.
        let step_size = T::from_f64(ctx.lr / bc1);
        let bc2_sqrt = T::from_f64(bc2.sqrt());
        let (bc1_t, bc2_t) = (T::from_f64(bc1), T::from_f64(bc2));
        let bc1_next = T::from_f64(1.0 - b1.powf(t + 1.0));
        // MXNet forms lr_t from the nominal values, then rounds it to f32 once.
        let lr_t = T::from_f64(c.hp(ctx.lr * (1.0 - self.beta2.powf(t)).sqrt() / (1.0 - self.beta1.powf(t))));
        let wd = c.decoupled_wd::<T>();
        let clip_w = c.clip_weights_t::<T>();
        for i in 0..x.len() {
            let x0 = x[i].load();
            let gi = ctx.prep.grad(g[i].load(), x0);
            let mut xi = x0;
            m[i] = beta1 * m[i] + one_minus_b1 * gi;
            v[i] = beta2 * v[i] + one_minus_b2 * (gi * gi);
            let vv = if self.amsgrad {
                vmax[i] = vmax[i].max(v[i]);
                vmax[i]
            } else {
                v[i]
            };
            xi = match self.bias_correction {
                BiasCorrection::Denominator => {
                    if let Some(wd) = wd {
                        xi = xi - lr * wd * xi;
                    }
                    let den = vv.sqrt() / bc2_sqrt + eps;
                    xi - step_size * (m[i] / den)
                }
                BiasCorrection::Moments => {
                    let mh = if self.nesterov {
                        beta1 * (m[i] / bc1_next) + one_minus_b1 * (gi / bc1_t)
                    } else {
                        m[i] / bc1_t
                    };
                    let mut u = mh / ((vv / bc2_t + eps_root).sqrt() + eps);
                    if let Some(wd) = wd {
                        u = u + wd * xi;
                    }
                    xi - lr * u
                }
                BiasCorrection::LrOnly => {
                    if let Some(wd) = wd {
                        xi = xi - lr * wd * xi;
                    }
                    xi - lr_t * m[i] / (vv.sqrt() + eps)
                }
            };
            x[i] = P::store(clip(xi, clip_w));
        }
    }
}
