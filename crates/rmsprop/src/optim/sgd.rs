//! Stochastic gradient descent with momentum, including the chapter's "leaky average".
//!
//! D2L §12.6 (eq. 12.6.4): `v <- β v + g`, `x <- x - η v`.

use super::guard::{Bounds, Inputs, Reach};
use super::{Ctx, Rule, Slot};
use crate::by_name::{Field, SGD_MOMENTA, field};
#[cfg(test)]
use crate::common::Rounding;
use crate::common::{Common, HyperPrecision, check_nonneg, common_access, common_setters};
use crate::error::{Error, Result};
use crate::flavor::Flavor;
use crate::float::{Float, Param};
use crate::kernel::{Arith, Loop, MAX_SLOTS, Planned, Prep, WeightOps, select, with_arith, with_prep};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

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
/// Rounded as written, or as a framework rounds it ([`Rounding`](crate::Rounding); each
/// preset carries its framework's).
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
}

impl Rule for Sgd {
    type Scalars<T: Float> = Scalars<T>;
    const FIELDS: &'static [Field<Self>] = &[
        field!(num momentum: "momentum"),
        field!(num dampening: "dampening"),
        field!(flag nesterov: "nesterov"),
        field!(choice momentum_style in SGD_MOMENTA; "momentum_style"),
    ];
    common_access!();

    fn preset(flavor: Flavor, _: &str) -> Option<Self> {
        match flavor {
            Flavor::D2l => Some(Sgd::leaky_average(0.02, 0.5)),
            Flavor::PyTorch => Some(Sgd::default().with_lr(0.001)),
            Flavor::Mxnet => {
                let mut s =
                    Sgd::default().with_momentum(0.0, SgdMomentum::LrInsideBuffer).with_precision(HyperPrecision::F32);
                s.common.weight_decay_clipped = false;
                Some(s)
            }
            _ => None,
        }
    }

    fn validate(&self) -> Result<()> {
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

    fn slots(&self) -> Vec<Slot> {
        vec![Slot::new("momentum_buffer", 0.0, self.momentum != 0.0)]
    }

    /// Bounds on what one step can reach (see [`guard`](super::guard)): the formula of the
    /// type's doc, carried through on magnitudes.
    fn reach<T: Float>(&self, inputs: &Inputs) -> Option<Reach> {
        let b = Bounds::new::<T>(&self.common, inputs);
        let g = b.grad()?;
        let (lr, mu) = (b.lr(), b.hp(self.momentum));
        let (buffer, step) = match (self.momentum != 0.0).then_some(self.momentum_style) {
            None => (0.0, b.sum(&[(lr, g)])?),
            Some(SgdMomentum::Torch) => {
                // `b = g` on the first step, `μ b + (1 - dampening) g` after
                let damped = b.scalar(1.0 - self.dampening).max(1.0);
                let buffer = b.sum(&[(mu, b.state(0)), (damped, g)])?;
                let d = if self.nesterov { b.sum(&[(1.0, g), (mu, buffer)])? } else { buffer };
                (buffer, b.sum(&[(lr, d)])?)
            }
            Some(SgdMomentum::LrInsideBuffer) => {
                let buffer = b.sum(&[(mu, b.state(0)), (lr, g)])?;
                (buffer, buffer)
            }
        };
        b.reach([buffer, 0.0, 0.0], step)
    }

    /// The step of one group: its scalars, formed once per step, and its loop.
    fn kernel<P: Param>(&self, ctx: &Ctx<P::Acc>) -> Planned<Scalars<P::Acc>, P> {
        let c = &self.common;
        let from = <P::Acc as Float>::from_f64;
        let k = Scalars {
            lr: from(c.hp(ctx.lr)),
            mu: from(c.hp(self.momentum)),
            one_minus_damp: from(1.0 - self.dampening),
            first: ctx.t == 1,
            nesterov: self.nesterov,
            w: c.weight_ops(c.hp(ctx.lr)),
        };
        let momentum = (self.momentum != 0.0).then_some(self.momentum_style);
        let extras = k.w.any() || (k.nesterov && momentum == Some(SgdMomentum::Torch));
        // XLA's rounding differs from the written one here only in norm clipping; MXNet's only
        // in averages of squares, which SGD has none of
        with_prep!(ctx.prep.is_identity(), extras, PREP, EXTRA => with_arith!(c.rounding, xla: PREP, mxnet: false, A => match momentum {
            None => Planned::new::<Fused<A, NONE, PREP, EXTRA>>(k, ctx.prep),
            Some(SgdMomentum::Torch) => Planned::new::<Fused<A, TORCH, PREP, EXTRA>>(k, ctx.prep),
            Some(SgdMomentum::LrInsideBuffer) => Planned::new::<Fused<A, LR_INSIDE, PREP, EXTRA>>(k, ctx.prep),
        }))
    }
}

impl Sgd {
    /// The loop with every option checked per element: the reference of the fused loop.
    #[cfg(test)]
    fn update_general<T: Float, P: Param<Acc = T>>(&self, ctx: &Ctx<T>, x: &mut [P], g: &[P], b: &mut [T]) {
        use crate::kernel::clip;
        let c = &self.common;
        let lr = T::from_f64(c.hp(ctx.lr));
        let mu = T::from_f64(c.hp(self.momentum));
        let one_minus_damp = T::from_f64(1.0 - self.dampening);
        let first = ctx.t == 1;
        let torch = c.rounding == Rounding::Torch;
        let clip_w = c.clip_weights_t::<T>();
        for i in 0..x.len() {
            let x0 = x[i].load();
            let gi = ctx.prep.grad_as(c.rounding, g[i].load(), x0);
            let xi = c.decoupled_decay(c.hp(ctx.lr), x0);
            // PyTorch: `x.add_(d, alpha=-lr)`, `b.mul_(mu).add_(g, alpha=1-dampening)`,
            // `g.add(b, alpha=mu)`, each one fused multiply-add
            let step = |d: T| if torch { d.mul_add(-lr, xi) } else { xi - lr * d };
            let xi = if self.momentum == 0.0 {
                step(gi)
            } else {
                match self.momentum_style {
                    SgdMomentum::Torch if torch => {
                        b[i] = if first { gi } else { gi.mul_add(one_minus_damp, mu * b[i]) };
                        step(if self.nesterov { b[i].mul_add(mu, gi) } else { b[i] })
                    }
                    SgdMomentum::Torch => {
                        b[i] = if first { gi } else { mu * b[i] + one_minus_damp * gi };
                        step(if self.nesterov { gi + mu * b[i] } else { b[i] })
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

const NONE: u8 = 0;
const TORCH: u8 = SgdMomentum::Torch as u8 + 1;
const LR_INSIDE: u8 = SgdMomentum::LrInsideBuffer as u8 + 1;

/// The step's scalars in `T`.
#[derive(Clone, Copy)]
pub(crate) struct Scalars<T> {
    lr: T,
    mu: T,
    one_minus_damp: T,
    /// PyTorch starts the buffer at the first gradient.
    first: bool,
    nesterov: bool,
    w: WeightOps<T>,
}

/// The update of one variant (see the type's doc): the arithmetic `A`, the momentum style,
/// the preprocessing and the rarer options (Nesterov, decoupled decay, weight clipping;
/// loop-invariant selects) are type parameters.
struct Fused<A, const MOMENTUM: u8, const PREP: bool, const EXTRA: bool>(PhantomData<A>);

impl<P: Param, A: Arith, const MOMENTUM: u8, const PREP: bool, const EXTRA: bool> Loop<P>
    for Fused<A, MOMENTUM, PREP, EXTRA>
{
    type Scalars = Scalars<P::Acc>;

    #[inline(always)]
    fn run(k: &Scalars<P::Acc>, prep: &Prep<P::Acc>, x: &mut [P], g: &[P], [b, _, _]: [&mut [P::Acc]; MAX_SLOTS]) {
        let n = x.len();
        let g = &g[..n];
        let b = if MOMENTUM != NONE { &mut b[..n] } else { &mut b[..0] };
        // locals: nothing the loop stores to can alias them
        let (k, prep) = (*k, *prep);
        let Scalars { lr, mu, one_minus_damp, .. } = k;
        for i in 0..n {
            let x0 = x[i].load();
            let gi = if PREP { prep.grad::<A>(g[i].load(), x0) } else { g[i].load() };
            let xd = if EXTRA { k.w.decay::<A>(x0) } else { x0 };
            let xi = match MOMENTUM {
                NONE => A::sub_scaled(xd, lr, gi),
                TORCH => {
                    b[i] = select(k.first, gi, A::scale_add(mu, b[i], one_minus_damp, gi));
                    let d = if EXTRA { select(k.nesterov, A::add_scaled(gi, mu, b[i]), b[i]) } else { b[i] };
                    A::sub_scaled(xd, lr, d)
                }
                _ => {
                    b[i] = mu * b[i] + lr * gi;
                    xd - b[i]
                }
            };
            x[i] = P::store(if EXTRA { k.w.clip(xi) } else { xi });
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
        for (mu, style, nesterov, dampening) in [
            (0.0, SgdMomentum::Torch, false, 0.0),
            (0.9, SgdMomentum::Torch, false, 0.1),
            (0.9, SgdMomentum::Torch, true, 0.0),
            (0.9, SgdMomentum::LrInsideBuffer, false, 0.0),
        ] {
            for common in commons(&Sgd::default().common) {
                let o = Sgd { common, nesterov, dampening, ..Sgd::default().with_momentum(mu, style) };
                let (mut xa, mut xb, mut ba, mut bb) = (x0.clone(), x0.clone(), vec![0.0f32; n], vec![0.0f32; n]);
                for t in 1..=3 {
                    let ctx = Ctx { t, lr: 0.1, prep: o.common.prep::<f32>(None) };
                    o.kernel::<f32>(&ctx).run(&mut xa, &g, &mut [&mut ba[..]]);
                    o.update_general(&ctx, &mut xb, &g, &mut bb);
                }
                assert_eq!((bits(&xa), bits(&ba)), (bits(&xb), bits(&bb)), "{o:?}");
            }
        }
    }
}
