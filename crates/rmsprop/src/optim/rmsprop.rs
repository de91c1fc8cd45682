//! RMSProp with every knob the frameworks have.
//!
//! The chapter's update (D2L §12.8, eq. 12.8.1):
//! `s <- γ s + (1-γ) g²`, `x <- x - η / sqrt(s + ε) ⊙ g`.

use super::{Ctx, Slot};
use crate::common::{Common, StepForm, check_nonneg, check_unit, clip, common_setters};
use crate::error::{Error, Result};
use crate::float::{Float, Param};
use serde::{Deserialize, Serialize};

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

/// RMSProp (Tieleman & Hinton 2012) in every framework's variant.
///
/// `Default` is the chapter's (D2L §12.8): η 0.01, γ 0.9, ε 1e-6 inside the root.
/// Framework presets are in [`Flavor`](crate::Flavor).
///
/// One step, element-wise (`t` 1-based):
/// ```text
/// g  = preprocess(g)                       (see Common: maximize, rescale, clip, coupled decay)
/// s  = γ s + (1-γ) g²                      (s starts at initial_accumulator)
/// m  = γ m + (1-γ) g                       (centered only)
/// ŝ, m̂ = s/(1-γ^t), m/(1-γ^t)             (bias_correction, optax) else s, m
/// v  = centered ? ŝ - m̂² : ŝ               (clamp_variance: max(v, 0))
/// d  = inside ? sqrt(v + ε) : sqrt(v) + ε
/// u  = g / d
/// no momentum:      x -= η u
/// lr outside:       b = μ b + u;   x -= η (nesterov ? u + μ b : b)
/// lr inside:        b = μ b + η u; x -= nesterov ? η u + μ b : b
/// decoupled decay:  x -= η wd x;   clip_weights: x = clip(x, -c, c)
/// ```
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
    /// Allow `f32` steps to replace `1/sqrt(s + ε)` by a reciprocal-square-root estimate
    /// refined by one Newton step (error ~2⁻²⁷ relative, below an `f32` ulp, instead of
    /// correctly rounded). Off by default: this crate reproduces the frameworks'
    /// arithmetic. Used only where it applies (f32, AVX-512, ε inside the root, plain
    /// RMSProp without preprocessing); elsewhere the exact loop runs. Every `f32` golden
    /// case stays inside its tolerance with it on (a test).
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

    pub(crate) fn validate(&self) -> Result<()> {
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
        Ok(())
    }

    pub(crate) fn slots(&self) -> Vec<Slot> {
        vec![
            Slot::new("square_avg", self.initial_accumulator, true),
            Slot::new("grad_avg", 0.0, self.centered),
            Slot::new("momentum_buffer", 0.0, self.uses_momentum()),
        ]
    }

    /// One step on one chunk. The common variants run a loop specialised at compile time
    /// (no option branches per element, see [`fused`]); the rest the general loop.
    pub(crate) fn update<T: Float, P: Param<Acc = T>>(
        &self,
        ctx: &Ctx<T>,
        x: &mut [P],
        g: &[P],
        bufs: &mut [&mut [T]],
    ) {
        let [s, m, b] = bufs else { unreachable!("rmsprop has three state slots") };
        let c = &self.common;
        let general = self.nesterov
            || self.bias_correction
            || self.clamp_variance
            || c.decoupled_wd::<T>().is_some()
            || c.clip_weights.is_some();
        if general {
            return self.update_general(ctx, x, g, s, m, b);
        }
        let k = Scalars::new(self, ctx);
        let momentum = match self.uses_momentum().then_some(self.momentum_style) {
            None => fused::NONE,
            Some(MomentumStyle::LrOutsideBuffer) => fused::LR_OUTSIDE,
            Some(MomentumStyle::LrInsideBuffer) => fused::LR_INSIDE,
        };
        let form = match self.step_form {
            StepForm::ScaledGradient => fused::SCALED_GRADIENT,
            StepForm::ScaledRate => fused::SCALED_RATE,
            StepForm::ScaledProduct => fused::SCALED_PRODUCT,
        };
        let inside = self.eps_placement == EpsPlacement::InsideSqrt;
        if self.fast_rsqrt && inside && !self.centered && momentum == fused::NONE && ctx.prep.is_identity() {
            #[cfg(target_arch = "x86_64")]
            if let Some((x, g, s)) = rsqrt::as_f32(x, g, s)
                && std::arch::is_x86_feature_detected!("avx512f")
            {
                let k = Scalars::new(self, &Ctx { t: ctx.t, lr: ctx.lr, prep: self.common.prep::<f32>(None) });
                // SAFETY: the CPU has AVX-512F; the slices have the chunk's length.
                unsafe { rsqrt::plain_avx512(&k, x, g, s) };
                return;
            }
        }
        fused::dispatch(&k, &ctx.prep, self.centered, momentum, inside, form, x, g, s, m, b);
    }

    /// The loop with every option checked per element: the reference the fused loops
    /// reproduce bit for bit, and the path of the rarer options.
    fn update_general<T: Float, P: Param<Acc = T>>(
        &self,
        ctx: &Ctx<T>,
        x: &mut [P],
        g: &[P],
        s: &mut [T],
        m: &mut [T],
        b: &mut [T],
    ) {
        let c = &self.common;
        let Scalars { gamma, one_minus_gamma, eps, lr, mu } = Scalars::new(self, ctx);
        let decay = c.hp(self.decay);
        let bc = T::from_f64(if self.bias_correction { 1.0 - decay.powf(ctx.t as f64) } else { 1.0 });
        let inside = self.eps_placement == EpsPlacement::InsideSqrt;
        let momentum = self.uses_momentum().then_some(self.momentum_style);
        let wd = c.decoupled_wd::<T>();
        let clip_w = c.clip_weights_t::<T>();
        for i in 0..x.len() {
            let x0 = x[i].load();
            let gi = ctx.prep.grad(g[i].load(), x0);
            s[i] = gamma * s[i] + one_minus_gamma * (gi * gi);
            let mut v = if self.bias_correction { s[i] / bc } else { s[i] };
            if self.centered {
                m[i] = gamma * m[i] + one_minus_gamma * gi;
                let mh = if self.bias_correction { m[i] / bc } else { m[i] };
                v = v - mh * mh;
                if self.clamp_variance {
                    v = v.max(T::ZERO);
                }
            }
            let den = if inside { (v + eps).sqrt() } else { v.sqrt() + eps };
            let mut xi = x0;
            if let Some(wd) = wd {
                xi = xi - lr * wd * xi;
            }
            xi = match momentum {
                None => xi - self.step_form.apply(lr, gi, den),
                Some(MomentumStyle::LrOutsideBuffer) => {
                    let u = gi / den;
                    b[i] = mu * b[i] + u;
                    xi - lr * if self.nesterov { u + mu * b[i] } else { b[i] }
                }
                Some(MomentumStyle::LrInsideBuffer) => {
                    let step = self.step_form.apply(lr, gi, den);
                    b[i] = mu * b[i] + step;
                    xi - if self.nesterov { step + mu * b[i] } else { b[i] }
                }
            };
            x[i] = P::store(clip(xi, clip_w));
        }
    }
}

/// The step's scalars in `T`, formed in `f64` and rounded once.
#[derive(Clone, Copy)]
struct Scalars<T> {
    gamma: T,
    one_minus_gamma: T,
    eps: T,
    lr: T,
    mu: T,
}

impl<T: Float> Scalars<T> {
    fn new(r: &RmsProp, ctx: &Ctx<T>) -> Self {
        let c = &r.common;
        let decay = c.hp(r.decay);
        Scalars {
            gamma: T::from_f64(decay),
            one_minus_gamma: T::from_f64(1.0 - decay),
            eps: T::from_f64(c.hp(r.eps)),
            lr: T::from_f64(c.hp(ctx.lr)),
            mu: T::from_f64(c.hp(r.momentum)),
        }
    }
}

/// The plain D2L step in `f32` with a reciprocal-square-root estimate and one Newton
/// step (`y = y (3/2 - a/2 y²)`, Numerical Recipes §9.4), 16 lanes of AVX-512 at a time.
#[cfg(target_arch = "x86_64")]
mod rsqrt {
    use super::Scalars;
    use crate::float::{Float, Param};
    use std::any::TypeId;

    /// The slices as `f32`, when `T` and `P` are `f32`.
    #[allow(clippy::type_complexity)]
    pub fn as_f32<'a, T: Float, P: Param<Acc = T>>(
        x: &'a mut [P],
        g: &'a [P],
        s: &'a mut [T],
    ) -> Option<(&'a mut [f32], &'a [f32], &'a mut [f32])> {
        if TypeId::of::<P>() != TypeId::of::<f32>() || TypeId::of::<T>() != TypeId::of::<f32>() {
            return None;
        }
        // SAFETY: both types are `f32`, checked above; lengths and lifetimes are kept.
        unsafe {
            Some((
                std::slice::from_raw_parts_mut(x.as_mut_ptr() as *mut f32, x.len()),
                std::slice::from_raw_parts(g.as_ptr() as *const f32, g.len()),
                std::slice::from_raw_parts_mut(s.as_mut_ptr() as *mut f32, s.len()),
            ))
        }
    }

    /// `s = γ s + (1-γ) g²` (exact) and `x -= η g / sqrt(s + ε)` with the estimate.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn plain_avx512(k: &Scalars<f32>, x: &mut [f32], g: &[f32], s: &mut [f32]) {
        use std::arch::x86_64::*;
        let n = x.len().min(g.len()).min(s.len());
        let (gamma, omg, eps, lr) = (k.gamma, k.one_minus_gamma, k.eps, k.lr);
        let (vgamma, vomg, veps, vlr) =
            (_mm512_set1_ps(gamma), _mm512_set1_ps(omg), _mm512_set1_ps(eps), _mm512_set1_ps(lr));
        let (half, three_halves) = (_mm512_set1_ps(0.5), _mm512_set1_ps(1.5));
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n for all three slices.
            unsafe {
                let gi = _mm512_loadu_ps(g.as_ptr().add(i));
                let si = _mm512_add_ps(
                    _mm512_mul_ps(vgamma, _mm512_loadu_ps(s.as_ptr().add(i))),
                    _mm512_mul_ps(vomg, _mm512_mul_ps(gi, gi)),
                );
                _mm512_storeu_ps(s.as_mut_ptr().add(i), si);
                let a = _mm512_add_ps(si, veps);
                let y = _mm512_rsqrt14_ps(a);
                let y = _mm512_mul_ps(
                    y,
                    _mm512_sub_ps(three_halves, _mm512_mul_ps(_mm512_mul_ps(half, a), _mm512_mul_ps(y, y))),
                );
                let xi = _mm512_sub_ps(_mm512_loadu_ps(x.as_ptr().add(i)), _mm512_mul_ps(_mm512_mul_ps(vlr, y), gi));
                _mm512_storeu_ps(x.as_mut_ptr().add(i), xi);
            }
            i += 16;
        }
        for j in i..n {
            s[j] = gamma * s[j] + omg * (g[j] * g[j]);
            x[j] -= lr / (s[j] + eps).sqrt() * g[j];
        }
    }
}

/// Single-pass loops, one per variant, chosen once per chunk: every switch is a const
/// generic, so the element loop has no option branches and vectorises.
mod fused {
    use super::Scalars;
    use crate::common::Prep;
    use crate::float::{Float, Param};

    pub const NONE: u8 = 0;
    pub const LR_OUTSIDE: u8 = 1;
    pub const LR_INSIDE: u8 = 2;
    pub const SCALED_GRADIENT: u8 = 0;
    pub const SCALED_RATE: u8 = 1;
    pub const SCALED_PRODUCT: u8 = 2;

    #[allow(clippy::too_many_arguments)]
    pub fn dispatch<T: Float, P: Param<Acc = T>>(
        k: &Scalars<T>,
        prep: &Prep<T>,
        centered: bool,
        momentum: u8,
        inside: bool,
        form: u8,
        x: &mut [P],
        g: &[P],
        s: &mut [T],
        m: &mut [T],
        b: &mut [T],
    ) {
        macro_rules! form {
            ($c:expr, $m:expr, $i:expr, $p:expr) => {
                match form {
                    SCALED_GRADIENT => run::<T, P, $c, $m, $i, $p, SCALED_GRADIENT>(k, prep, x, g, s, m, b),
                    SCALED_RATE => run::<T, P, $c, $m, $i, $p, SCALED_RATE>(k, prep, x, g, s, m, b),
                    _ => run::<T, P, $c, $m, $i, $p, SCALED_PRODUCT>(k, prep, x, g, s, m, b),
                }
            };
        }
        macro_rules! prep {
            ($c:expr, $m:expr, $i:expr) => {
                if prep.is_identity() { form!($c, $m, $i, false) } else { form!($c, $m, $i, true) }
            };
        }
        macro_rules! inside {
            ($c:expr, $m:expr) => {
                if inside { prep!($c, $m, true) } else { prep!($c, $m, false) }
            };
        }
        macro_rules! momentum {
            ($c:expr) => {
                match momentum {
                    NONE => inside!($c, NONE),
                    LR_OUTSIDE => inside!($c, LR_OUTSIDE),
                    _ => inside!($c, LR_INSIDE),
                }
            };
        }
        if centered { momentum!(true) } else { momentum!(false) }
    }

    /// `η g / d` in the order `F` names (see `StepForm`).
    #[inline(always)]
    fn scaled<T: Float, const F: u8>(lr: T, g: T, d: T) -> T {
        match F {
            SCALED_GRADIENT => lr * (g / d),
            SCALED_RATE => lr / d * g,
            _ => lr * g / d,
        }
    }

    /// The RMSProp update (see the type's doc) for one variant, compiled for the widest
    /// vector unit the CPU has (AVX-512, AVX2, else the baseline). Only the vector width
    /// changes: no fused multiply-add is formed, so every path gives the same bits.
    #[inline(never)]
    fn run<
        T: Float,
        P: Param<Acc = T>,
        const CENTERED: bool,
        const MOMENTUM: u8,
        const INSIDE: bool,
        const PREP: bool,
        const F: u8,
    >(
        k: &Scalars<T>,
        prep: &Prep<T>,
        x: &mut [P],
        g: &[P],
        s: &mut [T],
        m: &mut [T],
        b: &mut [T],
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F.
                return unsafe { run_avx512::<T, P, CENTERED, MOMENTUM, INSIDE, PREP, F>(k, prep, x, g, s, m, b) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2.
                return unsafe { run_avx2::<T, P, CENTERED, MOMENTUM, INSIDE, PREP, F>(k, prep, x, g, s, m, b) };
            }
        }
        body::<T, P, CENTERED, MOMENTUM, INSIDE, PREP, F>(k, prep, x, g, s, m, b)
    }

    /// `body` compiled for one instruction-set extension.
    macro_rules! widened {
        ($name:ident, $feature:literal) => {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = $feature)]
            unsafe fn $name<
                T: Float,
                PP: Param<Acc = T>,
                const C: bool,
                const M: u8,
                const I: bool,
                const P2: bool,
                const F: u8,
            >(
                k: &Scalars<T>,
                prep: &Prep<T>,
                x: &mut [PP],
                g: &[PP],
                s: &mut [T],
                m: &mut [T],
                b: &mut [T],
            ) {
                body::<T, PP, C, M, I, P2, F>(k, prep, x, g, s, m, b)
            }
        };
    }
    widened!(run_avx512, "avx512f");
    widened!(run_avx2, "avx2");

    #[inline(always)]
    fn body<
        T: Float,
        P: Param<Acc = T>,
        const CENTERED: bool,
        const MOMENTUM: u8,
        const INSIDE: bool,
        const PREP: bool,
        const F: u8,
    >(
        k: &Scalars<T>,
        prep: &Prep<T>,
        x: &mut [P],
        g: &[P],
        s: &mut [T],
        m: &mut [T],
        b: &mut [T],
    ) {
        let n = x.len();
        let (g, s) = (&g[..n], &mut s[..n]);
        let m = if CENTERED { &mut m[..n] } else { &mut m[..0] };
        let b = if MOMENTUM != NONE { &mut b[..n] } else { &mut b[..0] };
        let Scalars { gamma, one_minus_gamma, eps, lr, mu } = *k;
        for i in 0..n {
            let (x0, g0) = (x[i].load(), g[i].load());
            let gi = if PREP { prep.grad(g0, x0) } else { g0 };
            s[i] = gamma * s[i] + one_minus_gamma * (gi * gi);
            let mut v = s[i];
            if CENTERED {
                m[i] = gamma * m[i] + one_minus_gamma * gi;
                v = v - m[i] * m[i];
            }
            let den = if INSIDE { (v + eps).sqrt() } else { v.sqrt() + eps };
            x[i] = P::store(match MOMENTUM {
                NONE => x0 - scaled::<T, F>(lr, gi, den),
                LR_OUTSIDE => {
                    b[i] = mu * b[i] + gi / den;
                    x0 - lr * b[i]
                }
                _ => {
                    b[i] = mu * b[i] + scaled::<T, F>(lr, gi, den);
                    x0 - b[i]
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::Ctx;

    /// The fused loops give exactly the general loop's bits, for every variant they cover.
    #[test]
    fn fused_equals_general_bit_for_bit() {
        let n = 1000;
        let g: Vec<f32> =
            (0..n).map(|i| ((i * 7919 % 1000) as f32 / 100.0 - 5.0) * if i % 3 == 0 { 1e-3 } else { 1.0 }).collect();
        let x0: Vec<f32> = (0..n).map(|i| (i as f32 / 50.0).sin()).collect();
        for centered in [false, true] {
            for momentum in [0.0, 0.9] {
                for style in [MomentumStyle::LrOutsideBuffer, MomentumStyle::LrInsideBuffer] {
                    for place in [EpsPlacement::InsideSqrt, EpsPlacement::OutsideSqrt] {
                        for form in [StepForm::ScaledGradient, StepForm::ScaledRate, StepForm::ScaledProduct] {
                            for rescale in [1.0, 0.5] {
                                let r = RmsProp::default()
                                    .with_centered(centered)
                                    .with_momentum(momentum, style)
                                    .with_eps(1e-6, place)
                                    .with_step_form(form)
                                    .with_rescale_grad(rescale);
                                let ctx = Ctx { t: 1, lr: 0.01, prep: r.common.prep::<f32>(None) };
                                let (mut xa, mut xb) = (x0.clone(), x0.clone());
                                let mut sa = [vec![0.1f32; n], vec![0.01; n], vec![0.2; n]];
                                let mut sb = sa.clone();
                                for _ in 0..3 {
                                    let [s, m, b] = &mut sa;
                                    r.update(&ctx, &mut xa, &g, &mut [&mut s[..], &mut m[..], &mut b[..]]);
                                    let [s, m, b] = &mut sb;
                                    r.update_general(&ctx, &mut xb, &g, s, m, b);
                                }
                                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                                assert_eq!(bits(&xa), bits(&xb), "{r:?}");
                                for k in 0..3 {
                                    assert_eq!(bits(&sa[k]), bits(&sb[k]), "{r:?} slot {k}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The estimate is used where it applies, and the parameters stay within one ulp.
    #[test]
    fn fast_rsqrt_is_close_to_exact() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return; // the exact loop runs instead; nothing to compare
        }
        let n = 4096;
        let g: Vec<f32> = (0..n).map(|i| (i * 7919 % 1000) as f32 / 100.0 - 5.0).collect();
        let run = |fast: bool| {
            let r = RmsProp::default().with_fast_rsqrt(fast);
            let ctx = Ctx { t: 1, lr: 0.01, prep: r.common.prep::<f32>(None) };
            let mut x = vec![1.0f32; n];
            let mut st = [vec![0.0f32; n], vec![], vec![]];
            let [s, m, b] = &mut st;
            r.update(&ctx, &mut x, &g, &mut [&mut s[..], &mut m[..], &mut b[..]]);
            x
        };
        let (exact, fast) = (run(false), run(true));
        assert!(exact.iter().zip(&fast).any(|(a, b)| a != b), "the estimate was not used");
        for (a, b) in exact.iter().zip(&fast) {
            assert!((a - b).abs() <= f32::EPSILON * a.abs(), "{a} vs {b}: more than one ulp apart");
        }
    }
}
