//! Adadelta (Zeiler 2012).
//!
//! D2L §12.9: `s <- ρ s + (1-ρ) g²`, `g' = sqrt(Δx + ε) / sqrt(s + ε) ⊙ g`,
//! `x <- x - g'`, `Δx <- ρ Δx + (1-ρ) g'²`.

use super::guard::{Bounds, Inputs, Reach};
use super::{Ctx, Rule, Slot};
use crate::by_name::{Field, field};
#[cfg(test)]
use crate::common::Rounding;
use crate::common::{Common, WeightDecayMode, check_nonneg, check_unit, common_access, common_setters};
use crate::error::Result;
use crate::flavor::Flavor;
use crate::float::{Float, Param};
use crate::kernel::{Arith, Ema, Loop, MAX_SLOTS, Planned, Prep, WeightOps, select, with_arith, with_prep};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

/// Adadelta. `Default` is PyTorch's: lr 1.0, ρ 0.9, ε 1e-6 (MXNet: ε 1e-5, no lr).
///
/// ```text
/// g  = preprocess(g)
/// s  = ρ s + (1-ρ) g²
/// δ  = sqrt(a + ε) / sqrt(s + ε) g          (new s, old a; ε inside both roots)
/// a  = ρ a + (1-ρ) δ²
/// x -= lr δ                                  (decoupled decay: x -= lr wd x, MXNet)
/// ```
/// Rounded as written, or as a framework rounds it ([`Rounding`](crate::Rounding); each
/// preset carries its framework's).
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
}

impl Rule for Adadelta {
    type Scalars<T: Float> = Scalars<T>;
    const FIELDS: &'static [Field<Self>] = &[field!(num rho: "rho"), field!(num eps: "eps", "epsilon")];
    common_access!();

    fn preset(flavor: Flavor, _: &str) -> Option<Self> {
        match flavor {
            Flavor::D2l => Some(Adadelta::default().with_eps(1e-5)),
            Flavor::PyTorch | Flavor::Optax => Some(Adadelta::default()),
            Flavor::Mxnet => {
                Some(Adadelta::default().with_eps(1e-5).with_weight_decay(0.0, WeightDecayMode::Decoupled))
            }
            _ => None,
        }
    }

    fn validate(&self) -> Result<()> {
        const N: &str = "adadelta";
        self.common.validate(N)?;
        check_unit(N, "rho", self.rho)?;
        // eps = 0 (PyTorch accepts it) gives 0 / 0 at the first zero gradient: the
        // non-finite policy's to refuse
        check_nonneg(N, "eps", self.eps)
    }

    fn slots(&self) -> Vec<Slot> {
        vec![Slot::squares("square_avg", 0.0, true), Slot::squares("acc_delta", 0.0, true)]
    }

    /// Bounds on what one step can reach (see [`guard`](super::guard)): the formula of the
    /// type's doc, carried through on magnitudes.
    fn reach<T: Float>(&self, inputs: &Inputs) -> Option<Reach> {
        let b = Bounds::new::<T>(&self.common, inputs);
        let g = b.grad()?;
        let rho = self.common.hp(self.rho);
        let (rho, one_minus_rho) = (b.scalar(rho), b.scalar(1.0 - rho));
        let s = b.sum(&[(rho, b.state(0)), (one_minus_rho, b.ok(g * g)?)])?;
        b.sum(&[(1.0, s), (1.0, b.hp(self.eps))])?;
        // Δ = sqrt(a + ε) / sqrt(s + ε) g, where s >= (1-ρ) g², so that |g| / sqrt(s + ε)
        // is at most 1 / sqrt(1-ρ) (or, where (1-ρ) g² is below the normal range and
        // rounds without a relative bound, that g over sqrt(ε))
        let floor = b.denominator_floor(self.eps, true);
        let tiny = b.div((4.0 * b.smallest_normal()).sqrt(), one_minus_rho.sqrt() * floor).unwrap_or(f64::INFINITY);
        let ratio = (1.0 / (one_minus_rho * 0.999).sqrt()).max(tiny).min(b.div(g, floor)?);
        let root = b.sum(&[(1.0, b.state(1)), (1.0, b.hp(self.eps))])?.sqrt() * 1.001;
        let delta = b.ok(root * ratio * 1.001)?;
        let a = b.sum(&[(rho, b.state(1)), (one_minus_rho, b.ok(delta * delta)?)])?;
        let step = b.sum(&[(b.lr(), delta)])?;
        b.reach([s, a, 0.0], step)
    }

    /// The step of one group: its scalars, formed once per step, and its loop.
    fn kernel<P: Param>(&self, ctx: &Ctx<P::Acc>) -> Planned<Scalars<P::Acc>, P> {
        let c = &self.common;
        let from = <P::Acc as Float>::from_f64;
        let k = Scalars {
            avg: Ema::new(c.hp(self.rho)),
            eps: from(c.hp(self.eps)),
            lr: from(c.hp(ctx.lr)),
            w: c.weight_ops(c.hp(ctx.lr)),
        };
        // XLA's rounding differs from the written one here only in norm clipping
        with_prep!(ctx.prep.is_identity(), k.w.any(), PREP, EXTRA => {
            with_arith!(c.rounding, xla: PREP, mxnet: true, A => Planned::new::<Fused<A, PREP, EXTRA>>(k, ctx.prep))
        })
    }
}

impl Adadelta {
    /// The loop with every option checked per element: the reference of the fused loop.
    #[cfg(test)]
    fn update_general<T: Float, P: Param<Acc = T>>(
        &self,
        ctx: &Ctx<T>,
        x: &mut [P],
        g: &[P],
        s: &mut [T],
        a: &mut [T],
    ) {
        use crate::kernel::clip;
        let c = &self.common;
        let rho = T::from_f64(c.hp(self.rho));
        let one_minus_rho = T::from_f64(1.0 - c.hp(self.rho));
        let eps = T::from_f64(c.hp(self.eps));
        let lr = T::from_f64(c.hp(ctx.lr));
        let wd = c.decoupled_wd::<T>();
        let clip_w = c.clip_weights_t::<T>();
        let torch = c.rounding == Rounding::Torch;
        let average = |s: T, v: T| match c.rounding {
            // PyTorch: `s.mul_(rho).addcmul_(g, g, value=1-rho)`, one fused multiply-add
            Rounding::Torch => (one_minus_rho * v).mul_add(v, rho * s),
            // MXNet: `(1 - rho) * g * g`, left to right
            Rounding::Mxnet => rho * s + one_minus_rho * v * v,
            Rounding::AsWritten | Rounding::Xla => rho * s + one_minus_rho * (v * v),
        };
        for i in 0..x.len() {
            let x0 = x[i].load();
            let gi = ctx.prep.grad_as(c.rounding, g[i].load(), x0);
            s[i] = average(s[i], gi);
            let delta = (a[i] + eps).sqrt() / (s[i] + eps).sqrt() * gi;
            a[i] = average(a[i], delta);
            let xi = match wd {
                Some(wd) => x0 - lr * (delta + wd * x0),
                // PyTorch: `x.add_(delta, alpha=-lr)`
                None if torch => delta.mul_add(-lr, x0),
                None => x0 - lr * delta,
            };
            x[i] = P::store(clip(xi, clip_w));
        }
    }
}

/// The step's scalars in `T`.
#[derive(Clone, Copy)]
pub(crate) struct Scalars<T> {
    /// `ρ`, `1 - ρ` of both averages.
    avg: Ema<T>,
    eps: T,
    lr: T,
    w: WeightOps<T>,
}

/// The update (see the type's doc): the arithmetic `A`, the preprocessing and the rarer
/// options (MXNet's decay, weight clipping; loop-invariant selects) are type parameters.
struct Fused<A, const PREP: bool, const EXTRA: bool>(PhantomData<A>);

impl<P: Param, A: Arith, const PREP: bool, const EXTRA: bool> Loop<P> for Fused<A, PREP, EXTRA> {
    type Scalars = Scalars<P::Acc>;

    #[inline(always)]
    fn run(k: &Scalars<P::Acc>, prep: &Prep<P::Acc>, x: &mut [P], g: &[P], [s, a, _]: [&mut [P::Acc]; MAX_SLOTS]) {
        let n = x.len();
        let (g, s, a) = (&g[..n], &mut s[..n], &mut a[..n]);
        // locals: nothing the loop stores to can alias them
        let (Scalars { avg, eps, lr, w }, prep) = (*k, *prep);
        for i in 0..n {
            let x0 = x[i].load();
            let gi = if PREP { prep.grad::<A>(g[i].load(), x0) } else { g[i].load() };
            s[i] = A::ema_sq(avg, s[i], gi);
            let delta = (a[i] + eps).sqrt() / (s[i] + eps).sqrt() * gi;
            a[i] = A::ema_sq(avg, a[i], delta);
            let plain = A::sub_scaled(x0, lr, delta);
            let xi = if EXTRA { select(w.decoupled, x0 - lr * (delta + w.wd * x0), plain) } else { plain };
            x[i] = P::store(if EXTRA { w.clip(xi) } else { xi });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::bit_tests::{bits, commons, inputs};

    /// The fused loop gives exactly the general loop's bits for every variant.
    #[test]
    fn fused_equals_general_bit_for_bit() {
        let n = 300;
        let (g, x0) = inputs::<f32>(n);
        for common in commons(&Adadelta::default().common) {
            let o = Adadelta { common, ..Adadelta::default() };
            let mut a = [x0.clone(), vec![0.0f32; n], vec![0.0f32; n]];
            let mut b = a.clone();
            for t in 1..=3 {
                let ctx = Ctx { t, lr: 1.0, prep: o.common.prep::<f32>(None) };
                let [x, s, d] = &mut a;
                o.kernel::<f32>(&ctx).run(x, &g, &mut [&mut s[..], &mut d[..]]);
                let [x, s, d] = &mut b;
                o.update_general(&ctx, x, &g, s, d);
            }
            assert_eq!(bits(&a.concat()), bits(&b.concat()), "{o:?}");
        }
    }
}
