//! Yogi (Zaheer et al. 2018): Adam with an additive, sign-controlled second moment
//! (D2L §12.10.3; `optax.yogi`; `torch_optimizer.Yogi`).

use super::adam::BiasCorrection;
use super::guard::{Bounds, Inputs, Reach};
use super::{Ctx, Rule, Slot};
use crate::by_name::{BIAS_CORRECTIONS, Field, field};
use crate::common::{Common, check_nonneg, common_access, common_setters};
use crate::error::{Error, Result};
use crate::flavor::Flavor;
use crate::float::{Float, Param};
use crate::kernel::{Arith, Divisor, Ema, Loop, MAX_SLOTS, Planned, Prep, WeightOps, with_arith, with_bool, with_prep};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

/// Yogi. `Default` is D2L's (§12.10.3): η 0.01, β (0.9, 0.999), ε 1e-3, both moments
/// starting at 0; `Flavor::Optax.config("yogi")` is `optax.yogi`'s, whose moments start at
/// `initial_accumulator_value` = 1e-6; `Flavor::PyTorch.config("yogi")` is PyTorch's
/// usual Yogi, `torch_optimizer.Yogi` (torch has none): moments from 1e-6, coupled
/// `weight_decay`, the bias corrections applied as torch's Adam applies them.
///
/// One step, element-wise (`t` 1-based; optax `scale_by_yogi`):
/// ```text
/// g = preprocess(g)
/// m = β1 m + (1-β1) g                      (m and v start at initial_accumulator)
/// v = v - ((1-β2) sign(v - g²)) g²         (Adam: v = β2 v + (1-β2) g²; sign(0) = 0)
/// then, as `bias_correction` says (decoupled decay, weight clipping as in Common):
///   moments (optax, D2L):  x -= η (m/(1-β1^t)) / (sqrt(v/(1-β2^t) + ε_root) + ε)
///   denominator (PyTorch): x -= (η/(1-β1^t)) m / (sqrt(v)/sqrt(1-β2^t) + ε)
/// ```
/// `v` moves by `(1-β2) g²` towards `g²` whatever the gap, so a burst of large gradients
/// does not wipe out its memory of small ones as fast as Adam's average does; it stays
/// positive. Rounded as written, or as a framework rounds it ([`Rounding`](crate::Rounding)).
///
/// # Examples
/// ```
/// use rmsprop::{Optimizer, Yogi};
/// let mut opt = Optimizer::<f64>::new(Yogi::default(), &[("x", &[1][..])]).unwrap();
/// let mut x = vec![vec![1.0]];
/// opt.step(&mut x, &[vec![3.0]]).unwrap();
/// // the first step: m̂ = g, v̂ = g², so x moves by η g / (|g| + ε)
/// assert!((x[0][0] - (1.0 - 0.01 * 3.0 / (3.0 + 1e-3))).abs() < 1e-15);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Yogi {
    /// Learning rate, weight decay, gradient preprocessing, precision.
    pub common: Common,
    /// β1, the EMA factor of the gradient (optax `b1`).
    pub beta1: f64,
    /// β2, the rate of the additive second moment (optax `b2`).
    pub beta2: f64,
    /// ε, outside the root.
    pub eps: f64,
    /// ε inside the root (optax `eps_root`).
    pub eps_root: f64,
    /// Where both moments start (optax `initial_accumulator_value`).
    pub initial_accumulator: f64,
    /// How the bias correction is applied: [`BiasCorrection::Moments`] or
    /// [`BiasCorrection::Denominator`] (no framework's Yogi corrects only the learning rate).
    pub bias_correction: BiasCorrection,
}

impl Default for Yogi {
    fn default() -> Self {
        Yogi {
            common: Common::new(0.01),
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-3,
            eps_root: 0.0,
            initial_accumulator: 0.0,
            bias_correction: BiasCorrection::Moments,
        }
    }
}

common_setters!(Yogi);

impl Yogi {
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
    /// Sets where both moments start.
    pub fn with_initial_accumulator(mut self, v: f64) -> Self {
        self.initial_accumulator = v;
        self
    }
    /// Sets the bias-correction rule.
    pub fn with_bias_correction(mut self, b: BiasCorrection) -> Self {
        self.bias_correction = b;
        self
    }
}

impl Rule for Yogi {
    type Scalars<T: Float> = Scalars<T>;
    const FIELDS: &'static [Field<Self>] = &[
        field!(num beta1: "beta1", "b1"),
        field!(num beta2: "beta2", "b2"),
        field!(num eps: "eps", "epsilon"),
        field!(num eps_root: "eps_root"),
        field!(num initial_accumulator: "initial_accumulator", "initial_accumulator_value"),
        field!(choice bias_correction in BIAS_CORRECTIONS; "bias_correction"),
    ];
    common_access!();

    fn preset(flavor: Flavor, _: &str) -> Option<Self> {
        match flavor {
            Flavor::D2l => Some(Yogi::default()),
            Flavor::Optax => Some(Yogi::default().with_initial_accumulator(1e-6)),
            Flavor::PyTorch => {
                Some(Yogi::default().with_initial_accumulator(1e-6).with_bias_correction(BiasCorrection::Denominator))
            }
            _ => None,
        }
    }

    fn validate(&self) -> Result<()> {
        self.common.validate("yogi")?;
        check_nonneg("yogi", "initial_accumulator", self.initial_accumulator)?;
        super::adam::validate_moments("yogi", [self.beta1, self.beta2], self.eps, self.eps_root)?;
        let refuse = |reason: String| Err(Error::InvalidCombination { optimizer: "yogi", reason });
        match self.bias_correction {
            BiasCorrection::LrOnly => {
                refuse("bias_correction = lr_only is MXNet's Adam; a Yogi corrects its moments (optax, D2L) or its \
                        denominator (PyTorch)"
                    .into())
            }
            BiasCorrection::Denominator if self.eps_root != 0.0 => refuse(format!(
                "eps_root = {} is optax's (bias_correction = moments); PyTorch's Yogi has no eps_root: leave it 0",
                self.eps_root
            )),
            _ => Ok(()),
        }
    }

    fn slots(&self) -> Vec<Slot> {
        vec![
            Slot::new("exp_avg", self.initial_accumulator, true),
            Slot::squares("exp_avg_sq", self.initial_accumulator, true),
        ]
    }

    /// The formula of the type's doc carried through on magnitudes: `|v|` grows by at most
    /// `(1-β2) g²`.
    fn reach<T: Float>(&self, inputs: &Inputs) -> Option<Reach> {
        let c = &self.common;
        let b = Bounds::new::<T>(c, inputs);
        let g = b.grad()?;
        let (b1, b2) = (c.hp(self.beta1), c.hp(self.beta2));
        let m = b.sum(&[(b.scalar(b1), b.state(0)), (b.scalar(1.0 - b1), g)])?;
        let v = b.sum(&[(1.0, b.state(1)), (b.scalar(1.0 - b2), b.ok(g * g)?)])?;
        let pow = |base: f64| c.rounding.power(base, inputs.t);
        let (c1, c2) = ((1.0 - pow(b1)) * 0.999, (1.0 - pow(b2)) * 0.999);
        let (m_hat, v_hat) = (b.div(m, c1)?, b.div(v, c2)?);
        b.sum(&[(1.0, v_hat), (1.0, b.scalar(self.eps_root)), (1.0, b.hp(self.eps))])?;
        let floor = (b.hp(self.eps) + b.scalar(self.eps_root).sqrt()) * 0.999;
        let lr = b.lr();
        // PyTorch's rule forms η/(1-β1^t) and the ratio before the product
        b.div(lr, c1)?;
        b.div(m_hat * lr.max(1.0), floor)?;
        let step = b.sum(&[(lr, b.div(m_hat, floor)?)])?;
        b.reach([m, v, 0.0], step)
    }

    fn kernel<P: Param>(&self, ctx: &Ctx<P::Acc>) -> Planned<Scalars<P::Acc>, P> {
        let c = &self.common;
        let (b1, b2) = (c.hp(self.beta1), c.hp(self.beta2));
        let from = <P::Acc as Float>::from_f64;
        let (bc1, bc2) = (1.0 - c.rounding.power(b1, ctx.t), 1.0 - c.rounding.power(b2, ctx.t));
        let k = Scalars {
            m: Ema::new(b1),
            one_minus_b2: from(1.0 - b2),
            eps: from(c.hp(self.eps)),
            eps_root: from(c.hp(self.eps_root)),
            lr: from(c.hp(ctx.lr)),
            // 1 - β^t formed in f64 (by repeated squaring under XLA), then rounded
            bc1: Divisor::new(bc1),
            bc2: Divisor::new(bc2),
            // PyTorch's: η/(1-β1^t) and sqrt(1-β2^t) formed in f64, rounded once
            step_size: from(ctx.lr / bc1),
            bc2_sqrt: from(bc2.sqrt()),
            w: c.weight_ops(c.hp(ctx.lr)),
        };
        let denominator = self.bias_correction == BiasCorrection::Denominator;
        // MXNet's rounding differs from the written one only in averages of squares: none
        with_prep!(ctx.prep.is_identity(), k.w.any(), PREP, EXTRA => with_bool!(denominator, DEN => {
            with_arith!(c.rounding, xla: true, mxnet: false, A => Planned::new::<Fused<A, DEN, PREP, EXTRA>>(k, ctx.prep))
        }))
    }
}

impl Yogi {
    /// The update written out per element, every option checked: the reference of the
    /// fused loop.
    #[cfg(test)]
    fn update_general<T: Float, P: Param<Acc = T>>(
        &self,
        ctx: &Ctx<T>,
        x: &mut [P],
        g: &[P],
        m: &mut [T],
        v: &mut [T],
    ) {
        use crate::Rounding;
        let c = &self.common;
        let (b1, b2) = (c.hp(self.beta1), c.hp(self.beta2));
        let (beta1, one_minus_b1, one_minus_b2) = (T::from_f64(b1), T::from_f64(1.0 - b1), T::from_f64(1.0 - b2));
        let bc1 = T::from_f64(1.0 - c.rounding.power(b1, ctx.t));
        let bc2 = T::from_f64(1.0 - c.rounding.power(b2, ctx.t));
        let unbias = |v: T, bc: T| if c.rounding == Rounding::Xla { v * (T::ONE / bc) } else { v / bc };
        let torch = c.rounding == Rounding::Torch;
        let step_size = T::from_f64(ctx.lr / (1.0 - c.rounding.power(b1, ctx.t)));
        let bc2_sqrt = T::from_f64((1.0 - c.rounding.power(b2, ctx.t)).sqrt());
        let (eps, eps_root, lr) =
            (T::from_f64(c.hp(self.eps)), T::from_f64(c.hp(self.eps_root)), T::from_f64(c.hp(ctx.lr)));
        let clip_w = c.clip_weights_t::<T>();
        for i in 0..x.len() {
            let x0 = x[i].load();
            let gi = ctx.prep.grad_as(c.rounding, g[i].load(), x0);
            // torch_optimizer: `m.mul_(β1).add_(g, alpha=1-β1)`, one fused multiply-add
            m[i] = if torch { gi.mul_add(one_minus_b1, beta1 * m[i]) } else { beta1 * m[i] + one_minus_b1 * gi };
            let g2 = gi * gi;
            let d = v[i] - g2;
            let sign = if d > T::ZERO {
                T::ONE
            } else if d < T::ZERO {
                -T::ONE
            } else {
                d
            };
            // torch_optimizer: `v.addcmul_(sign, g2, value=-(1-β2))`, one fused multiply-add
            v[i] = if torch { (-one_minus_b2 * sign).mul_add(g2, v[i]) } else { v[i] - one_minus_b2 * sign * g2 };
            let xi = c.decoupled_decay(c.hp(ctx.lr), x0);
            let xi = if self.bias_correction == BiasCorrection::Denominator {
                let den = v[i].sqrt() / bc2_sqrt + eps;
                if torch { xi - step_size * m[i] / den } else { xi - step_size * (m[i] / den) }
            } else {
                let u = unbias(m[i], bc1) / ((unbias(v[i], bc2) + eps_root).sqrt() + eps);
                if torch { u.mul_add(-lr, xi) } else { xi - lr * u }
            };
            x[i] = P::store(crate::kernel::clip(xi, clip_w));
        }
    }
}

/// The step's scalars in `T`.
#[derive(Clone, Copy)]
pub(crate) struct Scalars<T> {
    /// `β1`, `1 - β1`: the first moment.
    m: Ema<T>,
    one_minus_b2: T,
    eps: T,
    eps_root: T,
    lr: T,
    /// `1 - β1^t`, `1 - β2^t` (optax, D2L).
    bc1: Divisor<T>,
    bc2: Divisor<T>,
    /// `η / (1-β1^t)`, `sqrt(1-β2^t)` (PyTorch).
    step_size: T,
    bc2_sqrt: T,
    w: WeightOps<T>,
}

/// `sign(d)` with `sign(0) = 0` (and NaN kept), as `jnp.sign` and NumPy's `np.sign`: a
/// select, so the loop vectorises.
#[inline(always)]
fn sign<T: Float>(d: T) -> T {
    let negative = if d < T::ZERO { -T::ONE } else { d };
    if d > T::ZERO { T::ONE } else { negative }
}

/// The update (see the type's doc): the arithmetic `A`, the bias-correction rule
/// (`DEN`: PyTorch's denominator), the preprocessing and the rarer options (decoupled decay,
/// weight clipping; loop-invariant selects) are type parameters.
struct Fused<A, const DEN: bool, const PREP: bool, const EXTRA: bool>(PhantomData<A>);

impl<P: Param, A: Arith, const DEN: bool, const PREP: bool, const EXTRA: bool> Loop<P> for Fused<A, DEN, PREP, EXTRA> {
    type Scalars = Scalars<P::Acc>;

    #[inline(always)]
    fn run(k: &Scalars<P::Acc>, prep: &Prep<P::Acc>, x: &mut [P], g: &[P], [m, v, _]: [&mut [P::Acc]; MAX_SLOTS]) {
        let n = x.len();
        let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
        // locals: nothing the loop stores to can alias them
        let (Scalars { m: avg, one_minus_b2, eps, eps_root, lr, bc1, bc2, step_size, bc2_sqrt, w }, prep) =
            (*k, *prep);
        for i in 0..n {
            let x0 = x[i].load();
            let gi = if PREP { prep.grad::<A>(g[i].load(), x0) } else { g[i].load() };
            // `β1 m + (1-β1) g` (torch_optimizer: `m.mul_(β1).add_(g, alpha=1-β1)`)
            m[i] = A::scale_add(avg.beta, m[i], avg.one_minus, gi);
            // optax: `v - (1 - b2) * jnp.sign(v - g**2) * (g**2)`
            let g2 = gi * gi;
            v[i] = A::add_product(v[i], -one_minus_b2, sign(v[i] - g2), g2);
            let xd = if EXTRA { w.decay::<A>(x0) } else { x0 };
            let xi = if DEN {
                A::sub_ratio(xd, step_size, m[i], v[i].sqrt() / bc2_sqrt + eps)
            } else {
                let u = A::div_by(m[i], bc1) / ((A::div_by(v[i], bc2) + eps_root).sqrt() + eps);
                A::sub_scaled(xd, lr, u)
            };
            x[i] = P::store(if EXTRA { w.clip(xi) } else { xi });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::bit_tests::{bits, commons, inputs};

    /// The fused loop gives exactly the general loop's bits for every variant, in f32 and
    /// f64, with moments started at 0 and at optax's 1e-6.
    #[test]
    fn fused_equals_general_bit_for_bit() {
        fn check<T: Float + Param<Acc = T>>() {
            let n = 300;
            let (g, x0) = inputs::<T>(n);
            for (init, beta1, bias_correction) in [
                (0.0, 0.9, BiasCorrection::Moments),
                (1e-6, 0.3, BiasCorrection::Moments),
                (1e-6, 0.9, BiasCorrection::Denominator),
                (0.0, 0.3, BiasCorrection::Denominator),
            ] {
                for common in commons(&Yogi::default().common) {
                    let o = Yogi { common, beta1, initial_accumulator: init, bias_correction, ..Yogi::default() };
                    let start = vec![T::from_f64(init); n];
                    let mut a = [x0.clone(), start.clone(), start.clone()];
                    let mut b = a.clone();
                    for t in 1..=3 {
                        let ctx = Ctx { t, lr: 0.1, prep: o.common.prep::<T>(None) };
                        let [x, m, v] = &mut a;
                        o.kernel::<T>(&ctx).run(x, &g, &mut [&mut m[..], &mut v[..]]);
                        let [x, m, v] = &mut b;
                        o.update_general(&ctx, x, &g, m, v);
                    }
                    assert_eq!(bits(&a.concat()), bits(&b.concat()), "{o:?}");
                }
            }
        }
        check::<f32>();
        check::<f64>();
    }

    /// `sign` is NumPy's: 0 at 0, NaN kept.
    #[test]
    fn sign_of_zero_is_zero() {
        assert_eq!([sign(2.5f64), sign(-0.1), sign(0.0)], [1.0, -1.0, 0.0]);
        assert!(sign(f64::NAN).is_nan());
    }
}
