//! Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019): RMSProp's scaling
//! plus momentum, with bias correction (D2L §12.10).

use super::guard::{Bounds, Inputs, Reach};
use super::{Ctx, Rule, Slot};
use crate::by_name::{BIAS_CORRECTIONS, Field, field};
#[cfg(test)]
use crate::common::Rounding;
use crate::common::{Common, HyperPrecision, WeightDecayMode, check_nonneg, common_access, common_setters, invalid};
use crate::error::{Error, Result};
use crate::flavor::Flavor;
use crate::float::{Float, Param};
use crate::kernel::{
    Arith, Divisor, Ema, Loop, MAX_SLOTS, Planned, Prep, WeightOps, select, with_arith, with_bool, with_prep,
};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

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
/// Rounded as written, or as a framework rounds it ([`Rounding`](crate::Rounding); each
/// preset carries its framework's).
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
}

impl Rule for Adam {
    type Scalars<T: Float> = Scalars<T>;
    const FIELDS: &'static [Field<Self>] = &[
        field!(num beta1: "beta1", "b1"),
        field!(num beta2: "beta2", "b2"),
        field!(num eps: "eps", "epsilon"),
        field!(num eps_root: "eps_root"),
        field!(flag amsgrad: "amsgrad"),
        field!(flag nesterov: "nesterov"),
        field!(choice bias_correction in BIAS_CORRECTIONS; "bias_correction"),
    ];
    const ALSO: &'static [&'static str] = &["adamw"];
    common_access!();

    fn preset(flavor: Flavor, name: &str) -> Option<Self> {
        let moments = Adam::default().with_bias_correction(BiasCorrection::Moments);
        match (flavor, name) {
            (Flavor::D2l, "adam") => Some(moments.with_lr(0.01).with_eps(1e-6)),
            (Flavor::PyTorch, "adam") => Some(Adam::default()),
            (Flavor::Optax, "adam") => Some(moments),
            (Flavor::Mxnet, "adam") => {
                Some(Adam::default().with_bias_correction(BiasCorrection::LrOnly).with_precision(HyperPrecision::F32))
            }
            (Flavor::PyTorch, "adamw") => Some(Adam::adamw()),
            (Flavor::Optax, "adamw") => Some(moments.with_weight_decay(1e-4, WeightDecayMode::Decoupled)),
            _ => None,
        }
    }

    fn variant_name(&self) -> Option<&'static str> {
        self.is_adamw().then_some("adamw")
    }

    fn validate(&self) -> Result<()> {
        self.common.validate("adam")?;
        validate_moments("adam", [self.beta1, self.beta2], self.eps, self.eps_root)?;
        // only optax's rule has ε inside the root; PyTorch's and MXNet's kernels never add it
        if self.eps_root != 0.0 && self.bias_correction != BiasCorrection::Moments {
            return Err(Error::InvalidCombination {
                optimizer: "adam",
                reason: format!(
                    "eps_root = {} is optax's (bias_correction = moments); PyTorch's and MXNet's Adam have no \
                     eps_root: leave it 0",
                    self.eps_root
                ),
            });
        }
        Ok(())
    }

    fn slots(&self) -> Vec<Slot> {
        vec![
            Slot::new("exp_avg", 0.0, true),
            Slot::squares("exp_avg_sq", 0.0, true),
            Slot::squares("max_exp_avg_sq", 0.0, self.amsgrad),
        ]
    }

    /// Bounds on what one step can reach (see [`guard`](super::guard)): the formula of the
    /// type's doc, carried through on magnitudes.
    fn reach<T: Float>(&self, inputs: &Inputs) -> Option<Reach> {
        let c = &self.common;
        let b = Bounds::new::<T>(c, inputs);
        let g = b.grad()?;
        let (b1, b2) = (c.hp(self.beta1), c.hp(self.beta2));
        let m = b.sum(&[(b.scalar(b1), b.state(0)), (b.scalar(1.0 - b1), g)])?;
        let v = b.sum(&[(b.scalar(b2), b.state(1)), (b.scalar(1.0 - b2), b.ok(g * g)?)])?;
        let v_max = if self.amsgrad { v.max(b.state(2)) } else { 0.0 };
        // every rule divides m (or, with Nesterov, m and g) by 1 - β1^t or 1 - β1^(t+1),
        // v by 1 - β2^t, and adds ε (and ε_root inside the root) to the root
        let pow = |base: f64, t: u64| c.rounding.power(base, t);
        let c1 = (1.0 - pow(b1, inputs.t)).min(1.0 - pow(b1, inputs.t + 1)) * 0.999;
        let c2 = (1.0 - pow(b2, inputs.t)) * 0.999;
        let m_hat = b.div(b.sum(&[(1.0, m), (1.0, g)])?, c1)?;
        let v_hat = b.div(v.max(v_max), c2)?;
        b.sum(&[(1.0, v_hat), (1.0, b.scalar(self.eps_root)), (1.0, b.hp(self.eps))])?;
        // the root's floor as each rule forms it: only optax's adds ε_root inside the root
        let eps_root = if self.bias_correction == BiasCorrection::Moments { self.eps_root } else { 0.0 };
        let floor = (b.hp(self.eps) + b.scalar(eps_root).sqrt()) * 0.999;
        let lr = b.lr();
        b.div(lr, c1)?;
        b.div(m_hat * lr.max(1.0), floor)?;
        let step = b.sum(&[(lr, b.div(m_hat, floor)?)])?;
        b.reach([m, v, v_max], step)
    }

    /// The step of one group: its scalars, formed once per step, and its loop.
    fn kernel<P: Param>(&self, ctx: &Ctx<P::Acc>) -> Planned<Scalars<P::Acc>, P> {
        let c = &self.common;
        let (b1, b2) = (c.hp(self.beta1), c.hp(self.beta2));
        let t = ctx.t as f64;
        let pow = |b: f64, t: u64| c.rounding.power(b, t);
        let (bc1, bc2) = (1.0 - pow(b1, ctx.t), 1.0 - pow(b2, ctx.t));
        let nesterov = self.nesterov && self.bias_correction == BiasCorrection::Moments;
        let from = <P::Acc as Float>::from_f64;
        // per-step scalars of each rule, formed in f64 and rounded once; a `powf` costs
        // more than a small step's arithmetic, so those of other rules are not formed
        let k = Scalars {
            m: Ema::new(b1),
            v: Ema::new(b2),
            eps: from(c.hp(self.eps)),
            eps_root: from(self.eps_root),
            lr: from(c.hp(ctx.lr)),
            step_size: from(ctx.lr / bc1),
            bc2_sqrt: from(bc2.sqrt()),
            bc1: Divisor::new(bc1),
            bc2: Divisor::new(bc2),
            bc1_next: Divisor::new(if nesterov { 1.0 - pow(b1, ctx.t + 1) } else { 1.0 }),
            // MXNet forms lr_t from the nominal values, then rounds it to f32 once
            lr_t: from(match self.bias_correction {
                BiasCorrection::LrOnly => c.hp(ctx.lr * (1.0 - self.beta2.powf(t)).sqrt() / (1.0 - self.beta1.powf(t))),
                _ => 0.0,
            }),
            nesterov,
            w: c.weight_ops(c.hp(ctx.lr)),
        };
        let extras = k.nesterov || k.w.any();
        with_arith!(c.rounding, A => with_prep!(ctx.prep.is_identity(), extras, PREP, EXTRA => with_bool!(self.amsgrad, AMS => {
            match self.bias_correction {
                BiasCorrection::Moments => Planned::new::<Fused<A, MOMENTS, AMS, PREP, EXTRA>>(k, ctx.prep),
                BiasCorrection::Denominator => Planned::new::<Fused<A, DENOMINATOR, AMS, PREP, EXTRA>>(k, ctx.prep),
                BiasCorrection::LrOnly => Planned::new::<Fused<A, LR_ONLY, AMS, PREP, EXTRA>>(k, ctx.prep),
            }
        })))
    }
}

impl Adam {
    /// The loop with every option checked per element: the reference of the fused loop.
    #[cfg(test)]
    #[allow(clippy::too_many_arguments)]
    fn update_general<T: Float, P: Param<Acc = T>>(
        &self,
        ctx: &Ctx<T>,
        x: &mut [P],
        g: &[P],
        m: &mut [T],
        v: &mut [T],
        vmax: &mut [T],
    ) {
        use crate::kernel::clip;
        let c = &self.common;
        let (b1, b2) = (c.hp(self.beta1), c.hp(self.beta2));
        let t = ctx.t as f64;
        let bc1 = 1.0 - c.rounding.power(b1, ctx.t);
        let bc2 = 1.0 - c.rounding.power(b2, ctx.t);
        let (beta1, one_minus_b1) = (T::from_f64(b1), T::from_f64(1.0 - b1));
        let (beta2, one_minus_b2) = (T::from_f64(b2), T::from_f64(1.0 - b2));
        let eps = T::from_f64(c.hp(self.eps));
        let eps_root = T::from_f64(self.eps_root);
        let lr = T::from_f64(c.hp(ctx.lr));
        // Per-step scalars of each rule, formed in f64 and rounded once.
        let step_size = T::from_f64(ctx.lr / bc1);
        let bc2_sqrt = T::from_f64(bc2.sqrt());
        let (bc1_t, bc2_t) = (T::from_f64(bc1), T::from_f64(bc2));
        let bc1_next = T::from_f64(1.0 - c.rounding.power(b1, ctx.t + 1));
        // XLA (optax) multiplies by a correction's reciprocal
        let unbias = |v: T, bc: T| if c.rounding == Rounding::Xla { v * (T::ONE / bc) } else { v / bc };
        // MXNet forms lr_t from the nominal values, then rounds it to f32 once.
        let lr_t = T::from_f64(c.hp(ctx.lr * (1.0 - self.beta2.powf(t)).sqrt() / (1.0 - self.beta1.powf(t))));
        let wd = c.decoupled_wd::<T>();
        let clip_w = c.clip_weights_t::<T>();
        let torch = c.rounding == Rounding::Torch;
        for i in 0..x.len() {
            let x0 = x[i].load();
            let gi = ctx.prep.grad_as(c.rounding, g[i].load(), x0);
            let mut xi = x0;
            if torch {
                // `m.lerp_(g, 1-β1)`; `v.mul_(β2).addcmul_(g, g, value=1-β2)`
                let w = one_minus_b1;
                let d = gi - m[i];
                m[i] = if w.to_f64() < 0.5 { w.mul_add(d, m[i]) } else { (w - T::ONE).mul_add(d, gi) };
                v[i] = (one_minus_b2 * gi).mul_add(gi, beta2 * v[i]);
            } else if c.rounding == Rounding::Mxnet {
                m[i] = beta1 * m[i] + one_minus_b1 * gi;
                v[i] = beta2 * v[i] + one_minus_b2 * gi * gi;
            } else {
                m[i] = beta1 * m[i] + one_minus_b1 * gi;
                v[i] = beta2 * v[i] + one_minus_b2 * (gi * gi);
            }
            let vv = if self.amsgrad {
                vmax[i] = vmax[i].max(v[i]);
                vmax[i]
            } else {
                v[i]
            };
            xi = match self.bias_correction {
                BiasCorrection::Denominator => {
                    xi = c.decoupled_decay(c.hp(ctx.lr), xi);
                    let den = vv.sqrt() / bc2_sqrt + eps;
                    // PyTorch: `x.addcdiv_(m, den, value=-step_size)`
                    if torch { xi - step_size * m[i] / den } else { xi - step_size * (m[i] / den) }
                }
                BiasCorrection::Moments => {
                    let mh = if self.nesterov {
                        beta1 * unbias(m[i], bc1_next) + one_minus_b1 * unbias(gi, bc1_t)
                    } else {
                        unbias(m[i], bc1_t)
                    };
                    let mut u = mh / ((unbias(vv, bc2_t) + eps_root).sqrt() + eps);
                    if let Some(wd) = wd {
                        u = u + wd * xi;
                    }
                    xi - lr * u
                }
                BiasCorrection::LrOnly => {
                    xi = c.decoupled_decay(c.hp(ctx.lr), xi);
                    xi - lr_t * m[i] / (vv.sqrt() + eps)
                }
            };
            x[i] = P::store(clip(xi, clip_w));
        }
    }
}

const MOMENTS: u8 = BiasCorrection::Moments as u8;
const DENOMINATOR: u8 = BiasCorrection::Denominator as u8;
const LR_ONLY: u8 = BiasCorrection::LrOnly as u8;

/// The step's scalars in `T`.
#[derive(Clone, Copy)]
pub(crate) struct Scalars<T> {
    /// `β1`, `1 - β1`: the first moment.
    m: Ema<T>,
    /// `β2`, `1 - β2`: the second moment.
    v: Ema<T>,
    eps: T,
    eps_root: T,
    lr: T,
    /// `η / (1-β1^t)` (PyTorch).
    step_size: T,
    /// `sqrt(1-β2^t)` (PyTorch).
    bc2_sqrt: T,
    /// `1-β1^t`, `1-β2^t`, `1-β1^(t+1)` (optax).
    bc1: Divisor<T>,
    bc2: Divisor<T>,
    bc1_next: Divisor<T>,
    /// `η sqrt(1-β2^t)/(1-β1^t)` (MXNet).
    lr_t: T,
    nesterov: bool,
    w: WeightOps<T>,
}

/// The update of one variant (see the type's doc): the arithmetic `A`, the bias-correction
/// rule, AMSGrad (a third array), the preprocessing and the rarer options (Nesterov,
/// decoupled decay, weight clipping; loop-invariant selects) are type parameters.
struct Fused<A, const MODE: u8, const AMSGRAD: bool, const PREP: bool, const EXTRA: bool>(PhantomData<A>);

impl<P: Param, A: Arith, const MODE: u8, const AMSGRAD: bool, const PREP: bool, const EXTRA: bool> Loop<P>
    for Fused<A, MODE, AMSGRAD, PREP, EXTRA>
{
    type Scalars = Scalars<P::Acc>;

    #[inline(always)]
    fn run(k: &Scalars<P::Acc>, prep: &Prep<P::Acc>, x: &mut [P], g: &[P], [m, v, vmax]: [&mut [P::Acc]; MAX_SLOTS]) {
        let n = x.len();
        let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
        let vmax = if AMSGRAD { &mut vmax[..n] } else { &mut vmax[..0] };
        // locals: nothing the loop stores to can alias them
        let (k, prep) = (*k, *prep);
        let Scalars { eps, lr, .. } = k;
        for i in 0..n {
            let x0 = x[i].load();
            let gi = if PREP { prep.grad::<A>(g[i].load(), x0) } else { g[i].load() };
            m[i] = A::ema(k.m, m[i], gi);
            v[i] = A::ema_sq(k.v, v[i], gi);
            let vv = if AMSGRAD {
                vmax[i] = vmax[i].max(v[i]);
                vmax[i]
            } else {
                v[i]
            };
            let xd = if EXTRA { k.w.decay::<A>(x0) } else { x0 };
            let xi = match MODE {
                DENOMINATOR => A::sub_ratio(xd, k.step_size, m[i], vv.sqrt() / k.bc2_sqrt + eps),
                MOMENTS => {
                    let plain = A::div_by(m[i], k.bc1);
                    let nesterov = k.m.beta * A::div_by(m[i], k.bc1_next) + k.m.one_minus * A::div_by(gi, k.bc1);
                    let mh = if EXTRA { select(k.nesterov, nesterov, plain) } else { plain };
                    let u = mh / ((A::div_by(vv, k.bc2) + k.eps_root).sqrt() + eps);
                    // optax adamw: the decay joins the update before the learning rate
                    let u = if EXTRA { select(k.w.decoupled, u + k.w.wd * x0, u) } else { u };
                    x0 - lr * u
                }
                _ => xd - k.lr_t * m[i] / (vv.sqrt() + eps),
            };
            x[i] = P::store(if EXTRA { k.w.clip(xi) } else { xi });
        }
    }
}

/// Checks the hyperparameters of Adam's two moments, which Yogi shares: `β1`, `β2` in
/// `[0, 1)`, `eps` and `eps_root` not negative and not both 0 (a second moment of 0 would
/// divide 0 by 0).
pub(super) fn validate_moments(optimizer: &'static str, betas: [f64; 2], eps: f64, eps_root: f64) -> Result<()> {
    for (name, b) in ["beta1", "beta2"].into_iter().zip(betas) {
        if !(0.0..1.0).contains(&b) {
            return Err(invalid(optimizer, name, b, "a number in [0, 1)"));
        }
    }
    // eps = 0 with eps_root = 0 is PyTorch's and optax's to accept: the 0 / 0 it gives
    // where the second moment is 0 is the non-finite policy's
    check_nonneg(optimizer, "eps", eps)?;
    check_nonneg(optimizer, "eps_root", eps_root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::bit_tests::{bits, commons, inputs};

    /// The fused loop gives exactly the general loop's bits for every variant.
    #[test]
    fn fused_equals_general_bit_for_bit() {
        let n = 300;
        let (g, x0) = inputs::<f64>(n);
        for bias_correction in [BiasCorrection::Moments, BiasCorrection::Denominator, BiasCorrection::LrOnly] {
            for (amsgrad, nesterov) in [(false, false), (true, false), (false, true), (true, true)] {
                // β1 0.3: PyTorch's `lerp_` weight 0.7 takes its other branch
                for (common, beta1) in
                    commons(&Adam::default().common).into_iter().zip([0.9, 0.9, 0.3].into_iter().cycle())
                {
                    let o = Adam { common, bias_correction, amsgrad, nesterov, beta1, ..Adam::default() };
                    let mut a = [x0.clone(), vec![0.0; n], vec![0.0; n], vec![0.0; n]];
                    let mut b = a.clone();
                    for t in 1..=3 {
                        let ctx = Ctx { t, lr: 0.1, prep: o.common.prep::<f64>(None) };
                        let [x, m, v, vm] = &mut a;
                        o.kernel::<f64>(&ctx).run(x, &g, &mut [&mut m[..], &mut v[..], &mut vm[..]]);
                        let [x, m, v, vm] = &mut b;
                        o.update_general(&ctx, x, &g, m, v, vm);
                    }
                    assert_eq!(bits(&a.concat()), bits(&b.concat()), "{o:?}");
                }
            }
        }
    }
}
