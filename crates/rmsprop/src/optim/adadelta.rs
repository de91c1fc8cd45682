//! Adadelta (Zeiler 2012).
//!
//! D2L §12.9: `s <- ρ s + (1-ρ) g²`, `g' = sqrt(Δx + ε) / sqrt(s + ε) ⊙ g`,
//! `x <- x - g'`, `Δx <- ρ Δx + (1-ρ) g'²`.

use super::{Ctx, Slot};
use crate::common::{Common, check_nonneg, check_unit, clip, common_setters};
use crate::error::Result;
use crate::float::{Float, Param};
use serde::{Deserialize, Serialize};

/// Adadelta. `Default` is PyTorch's: lr 1.0, ρ 0.9, ε 1e-6 (MXNet: ε 1e-5, no lr).
///
/// ```text
/// g  = preprocess(g)
/// s  = ρ s + (1-ρ) g²
/// δ  = sqrt(a + ε) / sqrt(s + ε) g          (new s, old a; ε inside both roots)
/// a  = ρ a + (1-ρ) δ²
/// x -= lr δ                                  (decoupled decay: x -= lr wd x, MXNet)
/// ```
///
/// # Examples
/// ```
/// use rmsprop::{Adadelta, Optimizer};
/// let mut opt = Optimizer::<f64>::new(Adadelta::default(), &[("x", &[1][..])]).unwrap();
/// let mut x = vec![vec![1.0]];
/// opt.step(&mut x, &[vec![2.0]]).unwrap();
/// // δ = sqrt(ε) / sqrt(0.1·4 + ε) · 2
/// let d = (1e-6f64).sqrt() / (0.4f64 + 1e-6).sqrt() * 2.0;
/// assert!((x[0][0] - (1.0 - d)).abs() < 1e-15);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adadelta {
    /// Learning rate, weight decay, gradient preprocessing, precision.
    pub common: Common,
    /// ρ, the EMA factor of both accumulators.
    pub rho: f64,
    /// ε (inside both roots).
    pub eps: f64,
}

impl Default for Adadelta {
    fn default() -> Self {
        Adadelta { common: Common::new(1.0), rho: 0.9, eps: 1e-6 }
    }
}

common_setters!(Adadelta);

impl Adadelta {
    /// Sets ρ.
    pub fn with_rho(mut self, rho: f64) -> Self {
        self.rho = rho;
        self
    }
    /// Sets ε.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        const N: &str = "adadelta";
        self.common.validate(N)?;
        check_unit(N, "rho", self.rho)?;
        check_nonneg(N, "eps", self.eps)
    }

    pub(crate) fn slots(&self) -> Vec<Slot> {
        vec![Slot::new("square_avg", 0.0, true), Slot::new("acc_delta", 0.0, true)]
    }

    pub(crate) fn update<T: Float, P: Param<Acc = T>>(
        &self,
        ctx: &Ctx<T>,
        x: &mut [P],
        g: &[P],
        bufs: &mut [&mut [T]],
    ) {
        let c = &self.common;
        let [s, a] = bufs else { unreachable!("adadelta has two state slots") };
        let rho = T::from_f64(c.hp(self.rho));
        let one_minus_rho = T::from_f64(1.0 - c.hp(self.rho));
        let eps = T::from_f64(c.hp(self.eps));
        let lr = T::from_f64(c.hp(ctx.lr));
        let wd = c.decoupled_wd::<T>();
        let clip_w = c.clip_weights_t::<T>();
        for i in 0..x.len() {
            let x0 = x[i].load();
            let gi = ctx.prep.grad(g[i].load(), x0);
            s[i] = rho * s[i] + one_minus_rho * (gi * gi);
            let delta = (a[i] + eps).sqrt() / (s[i] + eps).sqrt() * gi;
            a[i] = rho * a[i] + one_minus_rho * (delta * delta);
            let mut u = delta;
            if let Some(wd) = wd {
                u = u + wd * x0;
            }
            let xi = x0 - lr * u;
            x[i] = P::store(clip(xi, clip_w));
        }
    }
}
