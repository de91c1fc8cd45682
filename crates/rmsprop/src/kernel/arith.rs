//! The arithmetic of the update formulas, as each framework rounds it: one zero-sized
//! type per [`Rounding`](crate::Rounding), so a loop body reads like its formula (`A::ema_sq(e, s, g)` for
//! `γ s + (1-γ) g²`) and is compiled once per rounding.
//!
//! Equal in exact arithmetic; in rounding the difference shows where a state cancels (a
//! centred mean or a momentum buffer summing gradients of both signs). The order of
//! `η g / d` is a type too ([`Form`]); the place of ε is a loop-invariant choice of
//! scalars ([`EpsAt`]).

use super::select;
use crate::float::Float;

/// The arithmetic an update is written in: each method is the formula in its doc, rounded
/// as the type's [`Rounding`](crate::Rounding) rounds it. The defaults are the formula as written, left to
/// right, each operation rounded.
pub(crate) trait Arith: Copy + Send + Sync + 'static {
    /// `β m + (1-β) g`, a moving average.
    #[inline(always)]
    fn ema<T: Float>(e: Ema<T>, m: T, g: T) -> T {
        e.beta * m + e.one_minus * g
    }
    /// `β s + (1-β) g²`, a moving average of squares.
    #[inline(always)]
    fn ema_sq<T: Float>(e: Ema<T>, s: T, g: T) -> T {
        e.beta * s + e.one_minus * (g * g)
    }
    /// `s + g²`, a sum of squares.
    #[inline(always)]
    fn add_sq<T: Float>(s: T, g: T) -> T {
        s + g * g
    }
    /// `m + (g - m)(1-β)`, a moving average moved by its increment (TensorFlow's order).
    #[inline(always)]
    fn ema_increment<T: Float>(e: Ema<T>, m: T, g: T) -> T {
        m + (g - m) * e.one_minus
    }
    /// `s + (g² - s)(1-β)` (TensorFlow's `ms += (grad.square() - ms) * (1 - rho)`).
    #[inline(always)]
    fn ema_sq_increment<T: Float>(e: Ema<T>, s: T, g: T) -> T {
        s + (g * g - s) * e.one_minus
    }
    /// `v - m²`, a variance.
    #[inline(always)]
    fn sub_sq<T: Float>(v: T, m: T) -> T {
        v - m * m
    }
    /// `x - η d`, a step.
    #[inline(always)]
    fn sub_scaled<T: Float>(x: T, lr: T, d: T) -> T {
        x - lr * d
    }
    /// `x - c a / d`, a step along `a / d`.
    #[inline(always)]
    fn sub_ratio<T: Float>(x: T, c: T, a: T, d: T) -> T {
        x - c * (a / d)
    }
    /// `μ b + c g`, a momentum buffer.
    #[inline(always)]
    fn scale_add<T: Float>(mu: T, b: T, c: T, g: T) -> T {
        mu * b + c * g
    }
    /// `g + c x`, coupled weight decay or Nesterov's look-ahead.
    #[inline(always)]
    fn add_scaled<T: Float>(g: T, c: T, x: T) -> T {
        g + c * x
    }
    /// `v + c a b`, a product added (Yogi's signed square).
    #[inline(always)]
    fn add_product<T: Float>(v: T, c: T, a: T, b: T) -> T {
        v + c * a * b
    }
    /// `v / c`, a bias correction.
    #[inline(always)]
    fn div_by<T: Float>(v: T, c: Divisor<T>) -> T {
        v / c.divisor
    }
    /// `g c / ‖g‖` for a norm above the bound `c`; `scale` is `c / ‖g‖`, `reciprocal`
    /// `1 / ‖g‖`. As written, the factor first (as `torch.nn.utils.clip_grad_norm_` forms
    /// its coefficient), so a large bound cannot overflow `g c`.
    #[inline(always)]
    fn norm_clip<T: Float>(g: T, _c: T, scale: T, _reciprocal: T) -> T {
        g * scale
    }
    /// `x - x wd η`, decoupled weight decay (Keras's `variable - variable * wd * lr`);
    /// `factor` is `1 - η wd` formed in `f64`.
    #[inline(always)]
    fn decay<T: Float>(x: T, wd: T, lr: T, _factor: T) -> T {
        x - x * wd * lr
    }
}

/// Each product and sum rounded as the update is written (the chapter's NumPy-style code,
/// TF1, Burn; [`Rounding::AsWritten`](crate::Rounding::AsWritten)).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AsWritten;
impl Arith for AsWritten {}

/// As PyTorch 2.x's CPU kernels round ([`Rounding::Torch`](crate::Rounding::Torch)): `addcmul_`, `lerp_` and
/// `add_(…, alpha)` each end in one fused multiply-add, `addcdiv_` forms `(c a) / d`,
/// `mul_(1 - η wd)` forms its factor in `f64`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Torch;
impl Arith for Torch {
    /// `m.lerp_(g, 1-β)` (`aten/src/ATen/native/cpu/LerpKernel.cpp`): `fma(w, g - m, m)`
    /// for `w < ½`, else `fma(w - 1, g - m, g)`.
    #[inline(always)]
    fn ema<T: Float>(e: Ema<T>, m: T, g: T) -> T {
        e.lerp.mul_add(g - m, select(e.lerp_from_m, m, g))
    }
    /// `s.mul_(β).addcmul_(g, g, value=1-β)`: `fma((1-β) g, g, β s)`.
    #[inline(always)]
    fn ema_sq<T: Float>(e: Ema<T>, s: T, g: T) -> T {
        (e.one_minus * g).mul_add(g, e.beta * s)
    }
    /// `m.add_(g - m, alpha=1-β)` (timm): `fma(1-β, g - m, m)`.
    #[inline(always)]
    fn ema_increment<T: Float>(e: Ema<T>, m: T, g: T) -> T {
        e.one_minus.mul_add(g - m, m)
    }
    /// `s.add_(g² - s, alpha=1-β)` (timm): `fma(1-β, g² - s, s)`.
    #[inline(always)]
    fn ema_sq_increment<T: Float>(e: Ema<T>, s: T, g: T) -> T {
        e.one_minus.mul_add(g * g - s, s)
    }
    /// `s.addcmul_(g, g, value=1)`: `fma(g, g, s)`.
    #[inline(always)]
    fn add_sq<T: Float>(s: T, g: T) -> T {
        g.mul_add(g, s)
    }
    /// `v.addcmul(m, m, value=-1)`: `fma(-m, m, v)`.
    #[inline(always)]
    fn sub_sq<T: Float>(v: T, m: T) -> T {
        (-m).mul_add(m, v)
    }
    /// `x.add_(d, alpha=-η)`: `fma(d, -η, x)`.
    #[inline(always)]
    fn sub_scaled<T: Float>(x: T, lr: T, d: T) -> T {
        d.mul_add(-lr, x)
    }
    /// `x.addcdiv_(a, d, value=-c)`: `x - (c a) / d`.
    #[inline(always)]
    fn sub_ratio<T: Float>(x: T, c: T, a: T, d: T) -> T {
        x - c * a / d
    }
    /// `b.mul_(μ).add_(g, alpha=c)`: `fma(g, c, μ b)`.
    #[inline(always)]
    fn scale_add<T: Float>(mu: T, b: T, c: T, g: T) -> T {
        g.mul_add(c, mu * b)
    }
    /// `g.add(x, alpha=c)`: `fma(x, c, g)`.
    #[inline(always)]
    fn add_scaled<T: Float>(g: T, c: T, x: T) -> T {
        x.mul_add(c, g)
    }
    /// `v.addcmul_(a, b, value=c)`: `fma(c a, b, v)`.
    #[inline(always)]
    fn add_product<T: Float>(v: T, c: T, a: T, b: T) -> T {
        (c * a).mul_add(b, v)
    }
    /// `x.mul_(1 - η wd)`, the factor formed in `f64`.
    #[inline(always)]
    fn decay<T: Float>(x: T, _wd: T, _lr: T, factor: T) -> T {
        x * factor
    }
}

/// As JAX computes on XLA (optax, Keras 3 on JAX; [`Rounding::Xla`](crate::Rounding::Xla)): as written, but a
/// division by a broadcast scalar is a multiplication by its reciprocal.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Xla;
impl Arith for Xla {
    /// `v * (1 / c)`.
    #[inline(always)]
    fn div_by<T: Float>(v: T, c: Divisor<T>) -> T {
        v * c.reciprocal
    }
    /// Keras's `g * c / maximum(norm, c)`: `(g c) (1 / ‖g‖)`.
    #[inline(always)]
    fn norm_clip<T: Float>(g: T, c: T, _scale: T, reciprocal: T) -> T {
        g * c * reciprocal
    }
}

/// As MXNet 1.x's C++ kernels write it (`optimizer_op-inl.h`; [`Rounding::Mxnet`](crate::Rounding::Mxnet)): an
/// average of squares is `(1 - β) * g * g`, left to right. (Its plain `rmsprop_update` is
/// written `(1 - γ1) * (g * g)`: [`AsWritten`].)
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mxnet;
impl Arith for Mxnet {
    /// `β s + ((1-β) g) g`.
    #[inline(always)]
    fn ema_sq<T: Float>(e: Ema<T>, s: T, g: T) -> T {
        e.beta * s + e.one_minus * g * g
    }
}

/// A moving average's factors in `T`: `β`, `1 - β` (formed in `f64`, rounded once) and
/// PyTorch's `lerp_` coefficient, resolved once so that a loop applies it as a select.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ema<T> {
    pub beta: T,
    pub one_minus: T,
    /// `w = 1 - β` for `w < ½`, else `w - 1` (rounded in `T`, as ATen forms it).
    lerp: T,
    /// `w < ½`: the lerp starts from `m`, else from `g`.
    lerp_from_m: bool,
}

impl<T: Float> Ema<T> {
    /// The average with factor `beta` (as held, see [`Common::hp`](crate::Common::hp)).
    pub(crate) fn new(beta: f64) -> Self {
        let one_minus = T::from_f64(1.0 - beta);
        let lerp_from_m = one_minus.to_f64() < 0.5;
        let lerp = if lerp_from_m { one_minus } else { one_minus - T::ONE };
        Ema { beta: T::from_f64(beta), one_minus, lerp, lerp_from_m }
    }
}

/// A divisor `c` (a bias correction `1 - β^t`, formed in `f64`) and its reciprocal, both
/// rounded in `T`: [`Arith::div_by`] uses the one its rounding divides with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Divisor<T> {
    divisor: T,
    reciprocal: T,
}

impl<T: Float> Divisor<T> {
    /// Dividing by `c`.
    pub(crate) fn new(c: f64) -> Self {
        let divisor = T::from_f64(c);
        Divisor { divisor, reciprocal: T::ONE / divisor }
    }

    /// True when dividing changes nothing (a divisor of 1).
    pub(crate) fn is_identity(&self) -> bool {
        self.divisor == T::ONE
    }
}

/// The order in which `η g / d` is rounded: one zero-sized type per
/// [`StepForm`](crate::StepForm) (a type, not a select: forming all four orders with
/// selects cost the centred and Nesterov loops 10 to 25 % in cache).
pub(crate) trait Form: Copy + Send + Sync + 'static {
    /// `η g / d` in this order.
    fn scaled<T: Float>(lr: T, g: T, d: T) -> T;
}

/// `η (g / d)` ([`StepForm::ScaledGradient`](crate::StepForm::ScaledGradient): MXNet).
#[derive(Clone, Copy, Debug)]
pub(crate) struct GradientFirst;
impl Form for GradientFirst {
    #[inline(always)]
    fn scaled<T: Float>(lr: T, g: T, d: T) -> T {
        lr * (g / d)
    }
}

/// `(η / d) g` ([`StepForm::ScaledRate`](crate::StepForm::ScaledRate): the chapter).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RateFirst;
impl Form for RateFirst {
    #[inline(always)]
    fn scaled<T: Float>(lr: T, g: T, d: T) -> T {
        lr / d * g
    }
}

/// `(η g) / d` ([`StepForm::ScaledProduct`](crate::StepForm::ScaledProduct): PyTorch, Keras).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProductFirst;
impl Form for ProductFirst {
    #[inline(always)]
    fn scaled<T: Float>(lr: T, g: T, d: T) -> T {
        lr * g / d
    }
}

/// `η (g (1 / d))` ([`StepForm::ScaledReciprocal`](crate::StepForm::ScaledReciprocal): optax).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReciprocalFirst;
impl Form for ReciprocalFirst {
    #[inline(always)]
    fn scaled<T: Float>(lr: T, g: T, d: T) -> T {
        lr * (g * (T::ONE / d))
    }
}

/// The root of a denominator with ε inside or outside it: `sqrt(v + inside) + outside`,
/// one of the two ε and the other 0 (adding `+0` changes no value the root can see), so
/// the placement is a loop-invariant choice of scalars.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EpsAt<T> {
    inside: T,
    outside: T,
}

impl<T: Float> EpsAt<T> {
    /// `eps` inside the root (`sqrt(v + ε)`) or outside (`sqrt(v) + ε`).
    pub(crate) fn new(eps: T, inside: bool) -> Self {
        if inside { EpsAt { inside: eps, outside: T::ZERO } } else { EpsAt { inside: T::ZERO, outside: eps } }
    }

    /// ε inside the root (0 when outside).
    pub(crate) fn inside(self) -> T {
        self.inside
    }

    /// The denominator of `v`.
    #[inline(always)]
    pub(crate) fn root(self, v: T) -> T {
        (v + self.inside).sqrt() + self.outside
    }
}
