//! RMSProp with every knob the frameworks have.
//!
//! The chapter's update (D2L §12.8, eq. 12.8.1):
//! `s <- γ s + (1-γ) g²`, `x <- x - η / sqrt(s + ε) ⊙ g`.

use super::guard::{Bounds, Inputs, Reach};
use super::{Ctx, Rule, Slot};
use crate::by_name::{AVERAGE_FORMS, Field, MOMENTUM_STYLES, PLACEMENTS, STEP_FORMS, field, flag};
use crate::common::{
    Common, Rounding, StepForm, WeightDecayMode, check_nonneg, check_unit, common_access, common_setters,
};
use crate::error::{Error, Result};
use crate::flavor::Flavor;
use crate::float::{Float, Param};
use crate::kernel::{
    Arith, Divisor, Ema, EpsAt, Form, Loop, MAX_SLOTS, Planned, Prep, Probe, RateFirst, WeightOps, least_nonnegative,
    rsqrt, select, with_arith, with_bool, with_form, with_prep,
};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

/// Where ε goes in the denominator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpsPlacement {
    /// `g / sqrt(s + ε)`: D2L, Keras, TF1, optax (`eps_in_sqrt=True`), MXNet.
    InsideSqrt,
    /// `g / (sqrt(s) + ε)`: PyTorch, Burn, optax (`eps_in_sqrt=False`).
    OutsideSqrt,
}

/// Whether the momentum buffer accumulates the learning rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MomentumStyle {
    /// `b = μ b + g/den; x -= η b` (PyTorch, Burn). A learning-rate change acts at once.
    LrOutsideBuffer,
    /// `b = μ b + η g/den; x -= b` (Keras, TF1, optax `trace`, MXNet `delta`). A
    /// learning-rate change fades in through the buffer.
    LrInsideBuffer,
}

/// How the moving averages are moved: the same formula, rounded in two orders.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AverageForm {
    /// `s = γ s + (1-γ) g²` (PyTorch, Keras, optax, MXNet, the chapter).
    #[default]
    Weighted,
    /// `s += (1-γ) (g² - s)`, `m += (1-γ) (g - m)`: TensorFlow's kernels
    /// (`training_ops.cc`, `ApplyRMSProp`) and timm's `RMSpropTF`
    /// (`square_avg.add_(g² - square_avg, alpha=1-γ)`, one fused multiply-add under
    /// [`Rounding::Torch`](crate::Rounding::Torch)).
    Increment,
}

/// RMSProp (Tieleman & Hinton 2012) in every framework's variant.
///
/// `Default` is the chapter's (D2L §12.8): η 0.01, γ 0.9, ε 1e-6 inside the root.
/// Framework presets are in [`Flavor`](crate::Flavor).
///
/// One step, element-wise (`t` 1-based):
/// ```text
/// g  = preprocess(g)                       (see Common: maximize, rescale, clip, coupled decay)
/// s  = γ s + (1-γ) g²                      (s starts at initial_accumulator)
/// m  = γ m + (1-γ) g                       (centered only; both as average_form rounds)
/// ŝ, m̂ = s/(1-γ^t), m/(1-γ^t)             (bias_correction, optax) else s, m
/// v  = centered ? ŝ - m̂² : ŝ               (clamp_variance: max(v, 0))
/// d  = inside ? sqrt(v + ε) : sqrt(v) + ε
/// u  = g / d
/// no momentum:      x -= η u
/// lr outside:       b = μ b + u;   x -= η (nesterov ? u + μ b : b)
/// lr inside:        b = μ b + η u; x -= nesterov ? η u + μ b : b
/// decoupled decay:  x -= η wd x;   clip_weights: x = clip(x, -c, c)
/// ```
/// Each line is rounded as written, or as a framework rounds it ([`Rounding`](crate::Rounding);
/// each preset carries its framework's).
///
/// # Examples
/// The chapter's 2-D run, `f(x) = 0.1 x1² + 2 x2²` from (-5, -2) with η 0.4:
/// ```
/// use rmsprop::{Optimizer, RmsProp};
/// let mut opt = Optimizer::<f64>::new(RmsProp::default().with_lr(0.4), &[("x", &[2][..])]).unwrap();
/// let mut x = vec![vec![-5.0, -2.0]];
/// for _ in 0..20 {
///     let g = vec![vec![0.2 * x[0][0], 4.0 * x[0][1]]];
///     opt.step(&mut x, &g).unwrap();
/// }
/// assert_eq!(format!("epoch 20, x1 {:.6}, x2 {:.6}", x[0][0], x[0][1]),
///            "epoch 20, x1 -0.010599, x2 0.000000");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RmsProp {
    /// Learning rate, weight decay, gradient preprocessing, precision.
    pub common: Common,
    /// γ, the EMA factor of the squared gradient (PyTorch `alpha`, Keras `rho`,
    /// MXNet `gamma1`, optax `decay`). 0 and 1 are legal.
    pub decay: f64,
    /// ε.
    pub eps: f64,
    /// ε inside or outside the square root.
    pub eps_placement: EpsPlacement,
    /// Initial value of `s` (optax `initial_scale`; TF1 starts at 1).
    pub initial_accumulator: f64,
    /// Divide by the estimated variance `s - m²` instead of `s` (Graves 2013).
    pub centered: bool,
    /// Clamp the centred variance at 0 so rounding cannot make `sqrt` return NaN.
    /// Off in every framework; opt in for robustness.
    pub clamp_variance: bool,
    /// Momentum μ (MXNet `gamma2`); 0 = none.
    pub momentum: f64,
    /// Where the learning rate enters the momentum buffer.
    pub momentum_style: MomentumStyle,
    /// MXNet 1.x: momentum (`gamma2`) goes with centring — the plain `rmsprop_update`
    /// has no momentum, `rmspropalex_update` always keeps its `delta` buffer, even at
    /// `gamma2 = 0`. When set, the buffer exists exactly when `centered`.
    pub momentum_with_centered: bool,
    /// Nesterov momentum (optax `nesterov`).
    pub nesterov: bool,
    /// Divide `s` (and `m`) by `1 - γ^t` (optax `bias_correction`).
    pub bias_correction: bool,
    /// The rounding order of `η g / d`.
    pub step_form: StepForm,
    /// The rounding order of the averages (TensorFlow's and timm's increment, or the
    /// weighted sum).
    #[serde(default)]
    pub average_form: AverageForm,
    /// Allow `f32` steps to replace `1/sqrt(s + ε)` by a reciprocal-square-root estimate
    /// refined by one Newton step, instead of correctly rounded: about 2⁻²⁷ relative with
    /// AVX-512 (below an `f32` ulp), about 2⁻²² with AVX2 (a few ulps of the update, not of
    /// `x`); `s` stays exact. Off by default: this crate reproduces the frameworks'
    /// arithmetic. Used only where it applies (f32, AVX-512 or AVX2 with FMA, ε inside the
    /// root, plain RMSProp without preprocessing); elsewhere the exact loop runs. Every
    /// `f32` golden case stays inside its tolerance with it on (a test).
    pub fast_rsqrt: bool,
}

impl Default for RmsProp {
    fn default() -> Self {
        RmsProp {
            common: Common::new(0.01),
            decay: 0.9,
            eps: 1e-6,
            eps_placement: EpsPlacement::InsideSqrt,
            initial_accumulator: 0.0,
            centered: false,
            clamp_variance: false,
            momentum: 0.0,
            momentum_style: MomentumStyle::LrOutsideBuffer,
            momentum_with_centered: false,
            nesterov: false,
            bias_correction: false,
            step_form: StepForm::ScaledRate,
            average_form: AverageForm::Weighted,
            fast_rsqrt: false,
        }
    }
}

common_setters!(RmsProp);

impl RmsProp {
    /// Sets γ.
    pub fn with_decay(mut self, decay: f64) -> Self {
        self.decay = decay;
        self
    }
    /// Sets ε and its placement.
    pub fn with_eps(mut self, eps: f64, placement: EpsPlacement) -> Self {
        self.eps = eps;
        self.eps_placement = placement;
        self
    }
    /// Sets the initial accumulator value.
    pub fn with_initial_accumulator(mut self, v: f64) -> Self {
        self.initial_accumulator = v;
        self
    }
    /// Centred RMSProp.
    pub fn with_centered(mut self, on: bool) -> Self {
        self.centered = on;
        self
    }
    /// Clamp the centred variance at 0.
    pub fn with_clamp_variance(mut self, on: bool) -> Self {
        self.clamp_variance = on;
        self
    }
    /// Sets momentum μ and where the learning rate goes.
    pub fn with_momentum(mut self, mu: f64, style: MomentumStyle) -> Self {
        self.momentum = mu;
        self.momentum_style = style;
        self
    }
    /// Nesterov momentum.
    pub fn with_nesterov(mut self, on: bool) -> Self {
        self.nesterov = on;
        self
    }
    /// Sets the rounding order of `η g / d`.
    pub fn with_step_form(mut self, form: StepForm) -> Self {
        self.step_form = form;
        self
    }
    /// Sets the rounding order of the averages.
    pub fn with_average_form(mut self, form: AverageForm) -> Self {
        self.average_form = form;
        self
    }
    /// Allow the approximate reciprocal square root (see [`RmsProp::fast_rsqrt`]).
    pub fn with_fast_rsqrt(mut self, on: bool) -> Self {
        self.fast_rsqrt = on;
        self
    }
    /// Bias correction of the averages (optax).
    pub fn with_bias_correction(mut self, on: bool) -> Self {
        self.bias_correction = on;
        self
    }

    fn uses_momentum(&self) -> bool {
        if self.momentum_with_centered { self.centered } else { self.momentum > 0.0 }
    }
}

impl Rule for RmsProp {
    type Scalars<T: Float> = Scalars<T>;
    const FIELDS: &'static [Field<Self>] = &[
        field!(num decay: "decay", "alpha", "rho", "gamma", "gamma1"),
        field!(num eps: "eps", "epsilon"),
        field!(choice eps_placement in PLACEMENTS; "eps_placement"),
        // optax's switch for the placement: read, never written
        Field {
            names: &["eps_in_sqrt"],
            get: None,
            set: |r, k, v| {
                r.eps_placement = if flag(k, v)? { EpsPlacement::InsideSqrt } else { EpsPlacement::OutsideSqrt };
                Ok(())
            },
        },
        field!(num initial_accumulator: "initial_accumulator", "initial_scale", "initial_accumulator_value"),
        field!(flag centered: "centered"),
        field!(flag clamp_variance: "clamp_variance"),
        field!(num momentum: "momentum", "gamma2"),
        field!(choice momentum_style in MOMENTUM_STYLES; "momentum_style"),
        field!(flag nesterov: "nesterov"),
        field!(flag bias_correction: "bias_correction"),
        field!(choice step_form in STEP_FORMS; "step_form"),
        field!(choice average_form in AVERAGE_FORMS; "average_form"),
        // timm's `RMSpropTF` switches: read, never written
        Field {
            names: &["lr_in_momentum"],
            get: None,
            set: |r, k, v| {
                r.momentum_style =
                    if flag(k, v)? { MomentumStyle::LrInsideBuffer } else { MomentumStyle::LrOutsideBuffer };
                Ok(())
            },
        },
        Field {
            names: &["decoupled_decay"],
            get: None,
            set: |r, k, v| {
                r.common.weight_decay_mode =
                    if flag(k, v)? { WeightDecayMode::Decoupled } else { WeightDecayMode::Coupled };
                Ok(())
            },
        },
    ];
    common_access!();

    fn preset(flavor: Flavor, _: &str) -> Option<Self> {
        Some(flavor.rmsprop_as_written())
    }

    fn validate(&self) -> Result<()> {
        const N: &str = "rmsprop";
        self.common.validate(N)?;
        check_unit(N, "decay", self.decay)?;
        check_nonneg(N, "eps", self.eps)?;
        check_nonneg(N, "momentum", self.momentum)?;
        check_nonneg(N, "initial_accumulator", self.initial_accumulator)?;
        if self.nesterov && !self.uses_momentum() {
            return Err(Error::InvalidCombination {
                optimizer: N,
                reason: "nesterov = true needs momentum > 0".into(),
            });
        }
        // eps = 0 over a zero accumulator, or decay = 1 with bias correction (1 - decay^t = 0),
        // are the frameworks' to accept: the 0 / 0 they lead to is the non-finite policy's
        Ok(())
    }

    fn slots(&self) -> Vec<Slot> {
        vec![
            Slot::squares("square_avg", self.initial_accumulator, true).covering(1),
            Slot::new("grad_avg", 0.0, self.centered),
            Slot::new("momentum_buffer", 0.0, self.uses_momentum()),
        ]
    }

    /// Bounds on what one step can reach (see [`guard`](super::guard)): the formula of the
    /// type's doc, carried through on magnitudes.
    fn reach<T: Float>(&self, inputs: &Inputs) -> Option<Reach> {
        let b = Bounds::new::<T>(&self.common, inputs);
        let g = b.grad()?;
        let decay = self.common.hp(self.decay);
        let (gamma, one_minus_gamma) = (b.scalar(decay), b.scalar(1.0 - decay));
        // the increment `s + (1-γ)(g² - s)` is bounded by its terms' magnitudes
        let increment = self.average_form == AverageForm::Increment;
        let average = |state: f64, target: f64| match increment {
            true => b.sum(&[(1.0, state), (one_minus_gamma, b.sum(&[(1.0, target), (1.0, state)])?)]),
            false => b.sum(&[(gamma, state), (one_minus_gamma, target)]),
        };
        let s = average(b.state(0), b.ok(g * g)?)?;
        let m = if self.centered { average(b.state(1), g)? } else { 0.0 };
        let correction =
            if self.bias_correction { b.scalar(1.0 - self.common.rounding.power(decay, inputs.t)) } else { 1.0 };
        let (s_hat, m_hat) = (b.div(s, correction * 0.999)?, b.div(m, correction * 0.999)?);
        b.sum(&[(1.0, s_hat), (m_hat, m_hat), (1.0, b.hp(self.eps))])?;
        // `ŝ - m̂²` can round below zero unless clamped: no floor for its root then
        let nonneg = !self.centered || self.clamp_variance;
        // (or the smallest denominator of this very step, measured by its probe)
        let floor = if nonneg {
            b.denominator_floor(self.eps, self.eps_placement == EpsPlacement::InsideSqrt)
        } else {
            inputs.floor.unwrap_or(0.0)
        };
        // the reciprocal-square-root estimate is within 2^-12 of the root
        let floor = if self.fast_rsqrt { floor * (1.0 - 1.0 / 1024.0) } else { floor };
        let lr = b.lr();
        // each step form's products: `η g`, `η / d`, `1 / d`, `g / d`
        b.ok(lr * g)?;
        b.div(lr.max(1.0), floor)?;
        let u = b.div(g, floor)?;
        let mu = b.hp(self.momentum);
        let (buffer, step) = match self.uses_momentum().then_some(self.momentum_style) {
            None => (0.0, b.sum(&[(lr, u)])?),
            Some(MomentumStyle::LrOutsideBuffer) => {
                let buffer = b.sum(&[(mu, b.state(2)), (1.0, u)])?;
                let d = if self.nesterov { b.sum(&[(1.0, u), (mu, buffer)])? } else { buffer };
                (buffer, b.sum(&[(lr, d)])?)
            }
            Some(MomentumStyle::LrInsideBuffer) => {
                let buffer = b.sum(&[(mu, b.state(2)), (lr, u)])?;
                (buffer, if self.nesterov { b.sum(&[(lr, u), (mu, buffer)])? } else { buffer })
            }
        };
        b.reach([s, m, buffer], step)
    }

    /// The step's loop for this configuration, chosen once per group and step (variant and
    /// instruction set), with its scalars.
    fn kernel<P: Param>(&self, ctx: &Ctx<P::Acc>) -> Planned<Scalars<P::Acc>, P> {
        let c = &self.common;
        // MXNet's centred `rmspropalex_update` forms `(1 - γ1) * g * g` left to right and
        // the step `(η g) / d`; its plain `rmsprop_update` is written as written
        let alex = c.rounding == Rounding::Mxnet && self.centered;
        let rounding = if c.rounding == Rounding::Mxnet && !alex { Rounding::AsWritten } else { c.rounding };
        let form = if alex { StepForm::ScaledProduct } else { self.step_form };
        let k = Scalars::new(self, ctx);
        let momentum = self.uses_momentum().then_some(self.momentum_style);
        let (identity, extras) = (ctx.prep.is_identity(), k.extras.any());
        let inside = self.eps_placement == EpsPlacement::InsideSqrt;
        let plain = !self.centered && momentum.is_none() && identity && !extras;
        if self.fast_rsqrt && inside && plain && rounding != Rounding::Torch && rsqrt::available::<P>() {
            return Planned::new::<FastRsqrt>(k, ctx.prep);
        }
        // XLA's rounding differs from the written one only where this loop divides by a
        // broadcast scalar (norm clipping, bias correction), MXNet's only centred; with the
        // learning rate outside the buffer there is no `η g / d` to order
        with_prep!(identity, extras, PREP, EXTRA => with_bool!(self.centered, C => {
            with_arith!(rounding, xla: PREP || EXTRA, mxnet: C, A => {
                let planned = match momentum {
                    None => with_form!(form, O => Planned::new::<Fused<A, O, C, NONE, PREP, EXTRA>>(k, ctx.prep)),
                    Some(MomentumStyle::LrOutsideBuffer) => {
                        Planned::new::<Fused<A, RateFirst, C, LR_OUTSIDE, PREP, EXTRA>>(k, ctx.prep)
                    }
                    Some(MomentumStyle::LrInsideBuffer) => {
                        with_form!(form, O => Planned::new::<Fused<A, O, C, LR_INSIDE, PREP, EXTRA>>(k, ctx.prep))
                    }
                };
                // the guard's pass before a step whose denominator no formula bounds
                if C && !self.clamp_variance { planned.with_probe::<CentredFloor<A, PREP, EXTRA>>() } else { planned }
            })
        }))
    }

    /// True when [`kernel`](Self::kernel) does not read the step number (only bias
    /// correction does, in [`Scalars::new`]), so one kernel serves every step with the same
    /// learning rate and preprocessing.
    fn steady(&self) -> bool {
        !self.bias_correction
    }
}

/// The step's scalars in `T`, formed in `f64` and rounded once.
#[derive(Clone, Copy)]
pub(crate) struct Scalars<T> {
    /// `γ`, `1 - γ` of both averages.
    avg: Ema<T>,
    eps: EpsAt<T>,
    lr: T,
    mu: T,
    extras: Extras<T>,
}

impl<T: Float> Scalars<T> {
    fn new(r: &RmsProp, ctx: &Ctx<T>) -> Self {
        let c = &r.common;
        let decay = c.hp(r.decay);
        let lr = T::from_f64(c.hp(ctx.lr));
        Scalars {
            avg: Ema::new(decay),
            eps: EpsAt::new(T::from_f64(c.hp(r.eps)), r.eps_placement == EpsPlacement::InsideSqrt),
            lr,
            mu: T::from_f64(c.hp(r.momentum)),
            extras: Extras {
                bias_correction: Divisor::new(if r.bias_correction {
                    1.0 - c.rounding.power(decay, ctx.t)
                } else {
                    1.0
                }),
                increment: r.average_form == AverageForm::Increment,
                clamp_variance: r.clamp_variance && r.centered,
                nesterov: r.nesterov,
                weights: c.weight_ops(c.hp(ctx.lr)),
            },
        }
    }
}

/// The rarer options, applied in the fused loop as loop-invariant selects (each exactly
/// the general formula when on, the value untouched when off).
#[derive(Clone, Copy)]
struct Extras<T> {
    /// Division by `1 - γ^t` with bias correction, else by 1 (exact).
    bias_correction: Divisor<T>,
    /// The averages moved by their increment ([`AverageForm::Increment`]), else weighted.
    increment: bool,
    /// `v = max(v, 0)` (centred only).
    clamp_variance: bool,
    /// Nesterov momentum.
    nesterov: bool,
    /// Decoupled decay and weight clipping.
    weights: WeightOps<T>,
}

impl<T: Float> Extras<T> {
    /// True when any option is on (bias correction with `1 - γ^t = 1` counts as off).
    fn any(&self) -> bool {
        !self.bias_correction.is_identity() || self.increment || self.clamp_variance || self.nesterov || self.weights.any()
    }
}

const NONE: u8 = 0;
const LR_OUTSIDE: u8 = 1;
const LR_INSIDE: u8 = 2;

/// The update of one variant (see the type's doc): the arithmetic `A`, the step form `O`,
/// centring and the momentum style (they decide which arrays a step touches), the
/// preprocessing and the rarer options (`EXTRA`, loop-invariant selects) are type
/// parameters; ε's place is a choice of scalars.
struct Fused<A, O, const CENTERED: bool, const MOMENTUM: u8, const PREP: bool, const EXTRA: bool>(PhantomData<(A, O)>);

impl<P: Param, A: Arith, O: Form, const CENTERED: bool, const MOMENTUM: u8, const PREP: bool, const EXTRA: bool> Loop<P>
    for Fused<A, O, CENTERED, MOMENTUM, PREP, EXTRA>
{
    type Scalars = Scalars<P::Acc>;

    #[inline(always)]
    fn run(k: &Scalars<P::Acc>, prep: &Prep<P::Acc>, x: &mut [P], g: &[P], [s, m, b]: [&mut [P::Acc]; MAX_SLOTS]) {
        let n = x.len();
        let (g, s) = (&g[..n], &mut s[..n]);
        let m = if CENTERED { &mut m[..n] } else { &mut m[..0] };
        let b = if MOMENTUM != NONE { &mut b[..n] } else { &mut b[..0] };
        // locals: nothing the loop stores to can alias them
        let (k, prep) = (*k, *prep);
        let Scalars { lr, mu, extras: e, .. } = k;
        for i in 0..n {
            let x0 = x[i].load();
            let gi = if PREP { prep.grad::<A>(g[i].load(), x0) } else { g[i].load() };
            let mi = if CENTERED { m[i] } else { <P::Acc as Float>::ZERO };
            let (si, mi, den) = averaged::<_, A, CENTERED, EXTRA>(&k, s[i], mi, gi);
            s[i] = si;
            if CENTERED {
                m[i] = mi;
            }
            let xd = if EXTRA { e.weights.decay::<A>(x0) } else { x0 };
            let xi = match MOMENTUM {
                NONE => xd - O::scaled(lr, gi, den),
                LR_OUTSIDE => {
                    let u = gi / den;
                    b[i] = mu * b[i] + u;
                    let d = if EXTRA { select(e.nesterov, u + mu * b[i], b[i]) } else { b[i] };
                    A::sub_scaled(xd, lr, d)
                }
                _ => {
                    let step = O::scaled(lr, gi, den);
                    b[i] = mu * b[i] + step;
                    xd - if EXTRA { select(e.nesterov, step + mu * b[i], b[i]) } else { b[i] }
                }
            };
            x[i] = P::store(if EXTRA { e.weights.clip(xi) } else { xi });
        }
    }
}

/// The first half of the update on one element: the average of squares and (centred)
/// the average after the step, and the denominator `d` the step divides by — shared by
/// the step's loop and its probe, so that both form `d` alike.
#[inline(always)]
fn averaged<T: Float, A: Arith, const CENTERED: bool, const EXTRA: bool>(
    k: &Scalars<T>,
    s: T,
    m: T,
    g: T,
) -> (T, T, T) {
    let (avg, e) = (k.avg, k.extras);
    let weighted = A::ema_sq(avg, s, g);
    let s = if EXTRA { select(e.increment, A::ema_sq_increment(avg, s, g), weighted) } else { weighted };
    // ŝ = s / (1 - γ^t)
    let mut v = if EXTRA { A::div_by(s, e.bias_correction) } else { s };
    let mut m = m;
    if CENTERED {
        let weighted = A::ema(avg, m, g);
        m = if EXTRA { select(e.increment, A::ema_increment(avg, m, g), weighted) } else { weighted };
        let mh = if EXTRA { A::div_by(m, e.bias_correction) } else { m };
        v = A::sub_sq(v, mh);
        if EXTRA {
            v = select(e.clamp_variance, v.max(T::ZERO), v);
        }
    }
    (s, m, k.eps.root(v))
}

/// The probe of a centred step without `clamp_variance` ([`Probe`]): `ŝ - m̂²` can round
/// below 0, so no formula bounds the denominator from below; this pass forms every
/// element's denominator as [`Fused`] will (see [`averaged`]) and gives the smallest, so
/// the guard clears the step without trying it on copies when it is positive.
struct CentredFloor<A, const PREP: bool, const EXTRA: bool>(PhantomData<A>);

/// Elements per block of the probe: their denominators are formed into a buffer on the
/// stack by a loop that vectorises like the step's, then reduced
/// ([`least_nonnegative`]).
const PROBE_BLOCK: usize = 256;

impl<P: Param, A: Arith, const PREP: bool, const EXTRA: bool> Probe<P> for CentredFloor<A, PREP, EXTRA> {
    type Scalars = Scalars<P::Acc>;

    #[inline(always)]
    fn run(k: &Scalars<P::Acc>, prep: &Prep<P::Acc>, x: &[P], g: &[P], [s, m, _]: [&[P::Acc]; MAX_SLOTS]) -> f64 {
        let n = x.len();
        let (g, s, m) = (&g[..n], &s[..n], &m[..n]);
        let (k, prep) = (*k, *prep);
        let zero = <P::Acc as Float>::ZERO;
        let mut dens = [zero; PROBE_BLOCK];
        let mut least = f64::INFINITY;
        for start in (0..n).step_by(PROBE_BLOCK) {
            let end = n.min(start + PROBE_BLOCK);
            let (inputs, averages) = (x[start..end].iter().zip(&g[start..end]), s[start..end].iter().zip(&m[start..end]));
            for ((d, (x, g)), (&s, &m)) in dens.iter_mut().zip(inputs).zip(averages) {
                let x0 = x.load();
                let gi = if PREP { prep.grad::<A>(g.load(), x0) } else { g.load() };
                let den = averaged::<_, A, true, EXTRA>(&k, s, m, gi).2;
                // a NaN denominator (a negative variance) counts as 0: no floor
                *d = if den >= zero { den } else { zero };
            }
            least = least.min(least_nonnegative(&dens[..end - start]));
        }
        least
    }
}

/// The plain D2L step with the reciprocal-square-root estimate ([`RmsProp::fast_rsqrt`];
/// planned only where [`rsqrt::available`]).
struct FastRsqrt;

impl<P: Param> Loop<P> for FastRsqrt {
    type Scalars = Scalars<P::Acc>;

    #[inline(always)]
    fn run(k: &Scalars<P::Acc>, _: &Prep<P::Acc>, x: &mut [P], g: &[P], [s, _, _]: [&mut [P::Acc]; MAX_SLOTS]) {
        let f = |v: P::Acc| v.to_f64() as f32; // exact: planned for f32 only
        let avg = k.avg;
        let k32 = rsqrt::F32Scalars {
            gamma: f(avg.beta),
            one_minus_gamma: f(avg.one_minus),
            eps: f(k.eps.inside()),
            lr: f(k.lr),
        };
        let stepped = rsqrt::step(&k32, x, g, s);
        debug_assert!(stepped, "planned only where available");
    }
}

#[cfg(test)]
mod tests;
