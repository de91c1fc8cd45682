//! What a step does to the gradient before the update and to the parameters around it,
//! resolved to the arithmetic type once per step.

use super::{Arith, select};
use crate::float::Float;

/// The gradient preprocessing of one step, resolved to `T`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prep<T> {
    pub rescale: Option<T>,
    pub maximize: bool,
    /// The bound `c`, the factor `c / norm`, and the norm's reciprocal (rounded in `T`).
    pub norm_clip: Option<(T, T, T)>,
    pub wd: Option<T>,
    /// Coupled decay is added before the value clip (MXNet RMSProp, Adam), not after (SGD).
    pub wd_clipped: bool,
    pub clip: Option<T>,
}

impl<T: Float> Prep<T> {
    /// True when [`grad`](Self::grad) returns its input unchanged.
    pub(crate) fn is_identity(&self) -> bool {
        self.rescale.is_none() && !self.maximize && self.norm_clip.is_none() && self.wd.is_none() && self.clip.is_none()
    }

    /// `g` as the update sees it: rescaled, negated (maximize), norm-clipped,
    /// plus coupled decay, value-clipped — MXNet's `clip(rescale*g + wd*x)` order,
    /// Keras's clip-first order (Keras has no coupled decay), PyTorch's `g + wd*x`.
    #[inline(always)]
    pub(crate) fn grad<A: Arith>(&self, g: T, x: T) -> T {
        let mut g = g;
        if let Some(r) = self.rescale {
            g = r * g;
        }
        if self.maximize {
            g = -g;
        }
        if let Some((c, scale, reciprocal)) = self.norm_clip {
            g = A::norm_clip(g, c, scale, reciprocal);
        }
        if let (Some(wd), true) = (self.wd, self.wd_clipped) {
            g = A::add_scaled(g, wd, x);
        }
        g = clip(g, self.clip);
        if let (Some(wd), false) = (self.wd, self.wd_clipped) {
            g = A::add_scaled(g, wd, x);
        }
        g
    }

    /// [`grad`](Self::grad) with the rounding chosen at run time (the reference loops of
    /// the tests).
    #[cfg(test)]
    pub(crate) fn grad_as(&self, rounding: crate::Rounding, g: T, x: T) -> T {
        super::with_arith!(rounding, A => self.grad::<A>(g, x))
    }
}

/// What happens to the parameters themselves in one step, resolved to `T`: decoupled
/// decay and weight clipping, applied in a fused loop as loop-invariant selects (each
/// exactly its formula when on, the value untouched when off).
#[derive(Clone, Copy, Debug)]
pub(crate) struct WeightOps<T> {
    /// Decoupled decay is on.
    pub decoupled: bool,
    /// Its factor `wd` (0 when off).
    pub wd: T,
    /// `η` in `T`.
    pub lr: T,
    /// `1 - η wd`, formed in `f64` and rounded once.
    pub factor: T,
    /// Weight clipping is on.
    pub clips: bool,
    /// Its bound.
    pub bound: T,
}

impl<T: Float> WeightOps<T> {
    /// True when either is on.
    pub(crate) fn any(&self) -> bool {
        self.decoupled || self.clips
    }

    /// `x` after decoupled decay ([`Arith::decay`]) when it is on, else `x`.
    #[inline(always)]
    pub(crate) fn decay<A: Arith>(&self, x: T) -> T {
        select(self.decoupled, A::decay(x, self.wd, self.lr, self.factor), x)
    }

    /// `x` clipped to `[-bound, bound]` with weight clipping (MXNet `clip_weights`), else `x`.
    #[inline(always)]
    pub(crate) fn clip(&self, x: T) -> T {
        select(self.clips, clip(x, Some(self.bound)), x)
    }
}

/// `v` clipped to `[-c, c]` when a bound is set (MXNet `clip_gradient`/`clip_weights`).
#[inline(always)]
pub(crate) fn clip<T: Float>(v: T, bound: Option<T>) -> T {
    match bound {
        // by comparisons, as MXNet's `mshadow_op::clip`: a NaN stays NaN (as under PyTorch's
        // `clamp`), where `max`/`min` would turn it into a bound
        Some(c) => {
            if v > c {
                c
            } else if v < -c {
                -c
            } else {
                v
            }
        }
        None => v,
    }
}
