//! Stochastic gradient descent with momentum, including the chapter's "leaky average".
//!
//! D2L §12.6 (eq. 12.6.4): `v <- β v + g`, `x <- x - η v`.

use super::{Ctx, Slot};
use crate::common::{Common, check_nonneg, clip, common_setters};
use crate::error::{Error, Result};
use crate::float::{Float, Param};
use serde::{Deserialize, Serialize};

/// How the SGD momentum buffer is formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SgdMomentum {
    /// PyTorch: `b = g` on the first step, then `b = μ b + (1-dampening) g`;
    /// `x -= η (nesterov ? g + μ b : b)`. With dampening 0 this is the chapter's leaky average.
    Torch,
    /// MXNet `sgd_mom_update`: `b = μ b + η g` from `b = 0`; `x -= b`.
    LrInsideBuffer,
}

/// SGD. `Default`: η 0.01, no momentum.
///
/// ```text
/// g = preprocess(g)
/// μ = 0:           x -= η g
/// Torch:           b = (t == 1) ? g : μ b + (1-τ) g;  x -= η (nesterov ? g + μ b : b)
/// LrInsideBuffer:  b = μ b + η g;  x -= b
/// ```
///
/// # Examples
/// The chapter's momentum (leaky average, β 0.5) on `0.1 x1² + 2 x2²`:
/// ```
/// use rmsprop::{Optimizer, Sgd};
/// let mut opt = Optimizer::<f64>::new(Sgd::leaky_average(0.6, 0.5), &[("x", &[2][..])]).unwrap();
/// let mut x = vec![vec![-5.0, -2.0]];
/// for _ in 0..20 {
///     let g = vec![vec![0.2 * x[0][0], 4.0 * x[0][1]]];
///     opt.step(&mut x, &g).unwrap();
/// }
/// assert!(x[0][0].abs() < 0.01 && x[0][1].abs() < 0.01);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sgd {
    /// Learning rate, weight decay, gradient preprocessing, precision.
    pub common: Common,
    /// Momentum μ (0 = plain SGD).
    pub momentum: f64,
    /// Dampening τ (PyTorch).
    pub dampening: f64,
    /// Nesterov momentum (PyTorch).
    pub nesterov: bool,
    /// How the buffer is formed.
    pub momentum_style: SgdMomentum,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            common: Common::new(0.01),
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            momentum_style: SgdMomentum::Torch,
        }
    }
}

common_setters!(Sgd);

impl Sgd {
    /// The chapter's momentum method: `v = β v + g`, `x -= η v` (D2L §12.6).
    pub fn leaky_average(lr: f64, beta: f64) -> Self {
        Sgd::default().with_lr(lr).with_momentum(beta, SgdMomentum::Torch)
    }
    /// Sets momentum μ and the buffer style.
    pub fn with_momentum(mut self, mu: f64, style: SgdMomentum) -> Self {
        self.momentum = mu;
        self.momentum_style = style;
        self
    }
    /// Sets dampening.
    pub fn with_dampening(mut self, d: f64) -> Self {
        self.dampening = d;
        self
    }
    /// Nesterov momentum.
    pub fn with_nesterov(mut self, on: bool) -> Self {
        self.nesterov = on;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        const N: &str = "sgd";
        self.common.validate(N)?;
        check_nonneg(N, "momentum", self.momentum)?;
        check_nonneg(N, "dampening", self.dampening)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::InvalidCombination {
                optimizer: N,
                reason: "nesterov = true needs momentum > 0 and dampening = 0".into(),
            });
        }
        Ok(())
    }

    pub(crate) fn slots(&self) -> Vec<Slot> {
        vec![Slot::new("momentum_buffer", 0.0, self.momentum != 0.0)]
    }

    pub(crate) fn update<T: Float, P: Param<Acc = T>>(
        &self,
        ctx: &Ctx<T>,
        x: &mut [P],
        g: &[P],
        bufs: &mut [&mut [T]],
    ) {
        let c = &self.common;
        let [b] = bufs else { unreachable!("sgd has one state slot") };
        let lr = T::from_f64(c.hp(ctx.lr));
        let mu = T::from_f64(c.hp(self.momentum));
        let one_minus_damp = T::from_f64(1.0 - self.dampening);
        let first = ctx.t == 1;
        let wd = c.decoupled_wd::<T>();
        let clip_w = c.clip_weights_t::<T>();
        for i in 0..x.len() {
            let x0 = x[i].load();
            let gi = ctx.prep.grad(g[i].load(), x0);
            let mut xi = x0;
            if let Some(wd) = wd {
                xi = xi - lr * wd * xi;
            }
            xi = if self.momentum == 0.0 {
                xi - lr * gi
            } else {
                match self.momentum_style {
                    SgdMomentum::Torch => {
                        b[i] = if first { gi } else { mu * b[i] + one_minus_damp * gi };
                        xi - lr * if self.nesterov { gi + mu * b[i] } else { b[i] }
                    }
                    SgdMomentum::LrInsideBuffer => {
                        b[i] = mu * b[i] + lr * gi;
                        xi - b[i]
                    }
                }
            };
            x[i] = P::store(clip(xi, clip_w));
        }
    }
}
