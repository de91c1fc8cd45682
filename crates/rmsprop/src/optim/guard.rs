//! Whether a step can produce a non-finite number, known before it runs.
//!
//! Under [`NonFinitePolicy::Error`](super::NonFinitePolicy) and `Skip` a step whose result
//! would be NaN or infinite changes nothing, like a step with a non-finite gradient. The
//! fused loops write in place, so this is settled before them, without a second pass over
//! memory on the common path:
//!
//! 1. **Bounds.** The gradient scan the policy already makes also takes the largest
//!    `|g|` (and `|x|` in a group with weight decay); the optimizer keeps an upper bound of
//!    each state slot's magnitude. Each optimizer's `reach` carries them through its update
//!    formula in `f64` interval arithmetic (magnitudes only, every rounding of `T` covered
//!    by a slack factor): when every intermediate stays below `T`'s range by 2^16 and the
//!    parameter moves by less than half the spacing of its type's largest values, no
//!    result can overflow or be NaN, and the step runs as usual; the state bounds move on.
//! 2. **Probe.** Where no formula bounds a denominator from below (a centred variance
//!    that rounding can make negative), a read-only pass forms every element's
//!    denominator as the step's loop will and gives the smallest
//!    ([`Probe`](crate::kernel::Probe)); the bounds use it as the floor.
//! 3. **Trial.** Otherwise (a denominator that can be 0, a probe that found a negative
//!    variance, magnitudes near the type's range) each chunk is first run by the
//!    same kernel on a copy of its parameters and state, and its results are checked; only
//!    when all are finite does the step run. The trial also measures the state, so the
//!    bounds are exact again after it.
//!
//! Parameters are the caller's: a parameter that is already non-finite is outside this
//! promise (its result is what it was).

use crate::common::{Common, WeightDecayMode};
use crate::float::{Dtype, Float};
use crate::kernel::MAX_SLOTS;

/// The largest magnitudes going into one group's step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Inputs {
    /// Largest `|g|` of the group's gradients, as given (before any preprocessing).
    pub grad: f64,
    /// Largest `|x|` of its parameters; `∞` where they were not scanned (no weight decay).
    pub param: f64,
    /// An upper bound of each state slot's `|value|`.
    pub state: [f64; MAX_SLOTS],
    /// The step number, 1-based.
    pub t: u64,
    /// The step's learning rate (after the schedule).
    pub lr: f64,
    /// The smallest denominator of this step, formed by the kernel's probe
    /// ([`Probe`](crate::kernel::Probe)) where no formula gives one; `None` before.
    pub floor: Option<f64>,
}

/// What a step can reach: bounds on each state slot after it, and on how far it moves a
/// parameter by its gradient (decay towards zero and clipping excluded: they cannot make a
/// finite parameter larger).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Reach {
    pub state: [f64; MAX_SLOTS],
    pub step: f64,
}

/// Interval arithmetic on magnitudes for one group in the arithmetic type `T`: every
/// method returns `None` when a value could leave the range the step can safely form.
pub(crate) struct Bounds<'a> {
    common: &'a Common,
    inputs: &'a Inputs,
    /// Below `T`'s largest value by a factor of 2^16: what the rounding of a few dozen
    /// operations (each within a factor `1 + u`) cannot push past it.
    limit: f64,
    /// Unit roundoff of `T`.
    unit: f64,
    /// The smallest normal value of `T`.
    smallest_normal: f64,
    to_t: fn(f64) -> f64,
}

impl<'a> Bounds<'a> {
    pub(crate) fn new<T: Float>(common: &'a Common, inputs: &'a Inputs) -> Self {
        let (max, unit, smallest_normal) = match T::DTYPE {
            Dtype::F32 => (f32::MAX as f64, f32::EPSILON as f64 / 2.0, f32::MIN_POSITIVE as f64),
            Dtype::F64 => (f64::MAX, f64::EPSILON / 2.0, f64::MIN_POSITIVE),
        };
        let to_t = |v: f64| T::from_f64(v).to_f64();
        Bounds { common, inputs, limit: max / 65536.0, unit, smallest_normal, to_t }
    }

    /// `v` when it is a number below the limit.
    pub(crate) fn ok(&self, v: f64) -> Option<f64> {
        (v <= self.limit).then_some(v)
    }

    /// The smallest normal value of `T`: below it, a product has no relative error bound.
    pub(crate) fn smallest_normal(&self) -> f64 {
        self.smallest_normal
    }

    /// A hyperparameter's magnitude as the step uses it: as the group holds it, in `T`.
    pub(crate) fn hp(&self, v: f64) -> f64 {
        (self.to_t)(self.common.hp(v)).abs()
    }

    /// A scalar formed in `f64` and rounded once to `T` (`1 - β^t`, `1 - γ`), by magnitude.
    pub(crate) fn scalar(&self, v: f64) -> f64 {
        (self.to_t)(v).abs()
    }

    /// The step's learning rate in `T`.
    pub(crate) fn lr(&self) -> f64 {
        self.hp(self.inputs.lr)
    }

    /// State slot `k`'s bound before the step.
    pub(crate) fn state(&self, k: usize) -> f64 {
        self.inputs.state[k]
    }

    /// `Σ aᵢ vᵢ` for magnitudes, with the roundings of the products and the sum.
    pub(crate) fn sum(&self, terms: &[(f64, f64)]) -> Option<f64> {
        let exact: f64 = terms.iter().map(|&(a, v)| a * v).sum();
        self.ok(exact * (1.0 + 4.0 * self.unit))
    }

    /// `a / d` for magnitudes, `d` a lower bound of the divisor: `None` when it can be 0.
    pub(crate) fn div(&self, a: f64, d: f64) -> Option<f64> {
        if d > 0.0 { self.ok(a / d * (1.0 + 2.0 * self.unit)) } else { None }
    }

    /// The smallest `sqrt(v + ε)` (inside) or `sqrt(v) + ε` (outside) over `v >= 0`,
    /// rounded down for `T`.
    pub(crate) fn denominator_floor(&self, eps: f64, inside: bool) -> f64 {
        let eps = self.hp(eps);
        let floor = if inside { eps.sqrt() } else { eps };
        floor * (1.0 - 4.0 * self.unit)
    }

    /// The gradient as the update sees it (`Prep::grad`): rescaled, norm-clipped (a
    /// factor of at most 1), value-clipped, plus coupled decay `wd x`.
    pub(crate) fn grad(&self) -> Option<f64> {
        let c = self.common;
        let g = self.hp(c.rescale_grad) * self.inputs.grad * (1.0 + 4.0 * self.unit);
        // XLA's `g * c / max(norm, c)` forms `g c` first
        if let Some(n) = c.clip_norm {
            self.ok(g * self.hp(n.max_norm))?;
        }
        let clip = |g: f64| c.clip_gradient.map_or(g, |b| g.min(self.hp(b)));
        let coupled = c.weight_decay != 0.0 && c.weight_decay_mode == WeightDecayMode::Coupled;
        let g = if coupled {
            let decayed = |g: f64| self.sum(&[(1.0, g), (self.hp(c.weight_decay), self.inputs.param)]);
            if c.weight_decay_clipped { clip(decayed(g)?) } else { decayed(clip(g))? }
        } else {
            clip(g)
        };
        self.ok(g)
    }

    /// Decoupled decay shrinks a parameter towards zero (`x (1 - η wd)`, `x - x wd η`,
    /// MXNet's `x - η (u + wd x)`) when `η wd <= 1`; its intermediates stay finite when
    /// `wd |x|` does. `None` otherwise.
    pub(crate) fn decoupled_decay(&self) -> Option<()> {
        let c = self.common;
        if c.weight_decay == 0.0 || c.weight_decay_mode == WeightDecayMode::Coupled {
            return Some(());
        }
        let wd = self.hp(c.weight_decay);
        let shrinks = self.lr() * wd <= 1.0 - 8.0 * self.unit;
        (shrinks && self.ok(wd * self.inputs.param * 2.0).is_some()).then_some(())
    }

    /// The reach of a step that moves the parameters by at most `step` and leaves the
    /// state slots within `state`.
    pub(crate) fn reach(&self, state: [f64; MAX_SLOTS], step: f64) -> Option<Reach> {
        self.decoupled_decay()?;
        let step = self.ok(step * (1.0 + 64.0 * self.unit))?;
        state.iter().try_for_each(|&s| self.ok(s).map(drop))?;
        Some(Reach { state, step })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Common;

    fn inputs(grad: f64) -> Inputs {
        Inputs { grad, param: f64::INFINITY, state: [0.0; MAX_SLOTS], t: 1, lr: 0.01, floor: None }
    }

    #[test]
    fn the_limit_is_the_arithmetic_types() {
        let (c, i) = (Common::new(0.01), inputs(1.0));
        assert!(Bounds::new::<f32>(&c, &i).ok(1e33).is_some());
        assert!(Bounds::new::<f32>(&c, &i).ok(1e34).is_none());
        assert!(Bounds::new::<f64>(&c, &i).ok(1e300).is_some());
        assert!(Bounds::new::<f64>(&c, &i).ok(f64::NAN).is_none());
    }

    #[test]
    fn coupled_decay_needs_the_parameters_magnitude() {
        let c = Common { weight_decay: 0.1, ..Common::new(0.01) };
        let mut i = inputs(1.0);
        assert_eq!(Bounds::new::<f32>(&c, &i).grad(), None, "|x| unknown");
        i.param = 10.0;
        let g = Bounds::new::<f32>(&c, &i).grad().unwrap();
        assert!((2.0..2.001).contains(&g), "{g}");
    }

    #[test]
    fn a_divisor_that_can_be_zero_has_no_bound() {
        let (c, i) = (Common::new(0.01), inputs(1.0));
        let b = Bounds::new::<f64>(&c, &i);
        assert_eq!(b.div(1.0, b.denominator_floor(0.0, true)), None);
        assert!(b.div(1.0, b.denominator_floor(1e-8, true)).unwrap() > 1e4);
    }
}
