//! Where every step's element loop runs: the arrays it runs over, the instruction set it
//! is compiled for, and the arithmetic it rounds with. All of the core's `unsafe` for the
//! step is here.
//!
//! An optimizer writes its update once, as a [`Loop`]: plain Rust over slices, generic
//! over an [`Arith`] (how its framework rounds), a [`Form`] (the order of `η g / d`), and
//! over const switches only where they
//! change the arrays a step reads and writes (centring, momentum, AMSGrad) or what it
//! computes per element (gradient preprocessing, the rarer options); everything else is a
//! loop-invariant select. [`Planned::new`] picks, once per group and step, the loop of
//! that variant compiled for the widest vector unit the CPU has (AVX-512, AVX2 with FMA,
//! else the baseline; detected at run time, cached by `std`). Only the vector width
//! changes between them: Rust never contracts `a * b + c` into a fused multiply-add by
//! itself, and where a loop asks for one ([`Float::mul_add`](crate::Float::mul_add), under [`Torch`]) every path
//! computes it exactly (the instruction, or the software `fma` of the baseline), so every
//! path gives the same bits.

mod arith;
mod prep;
pub(crate) mod rsqrt;

pub(crate) use arith::{
    Arith, AsWritten, Divisor, Ema, EpsAt, Form, GradientFirst, Mxnet, ProductFirst, RateFirst, ReciprocalFirst, Torch,
    Xla,
};
#[cfg(test)]
pub(crate) use prep::clip;
pub(crate) use prep::{Prep, WeightOps};

use crate::float::Param;

/// The largest number of state slots of any optimizer.
pub(crate) const MAX_SLOTS: usize = 3;

/// One pass of an optimizer's update over a chunk: `x` the parameters, `g` the gradient,
/// `state` the optimizer's state slots in its order (an unused slot is empty).
///
/// Implementations are `#[inline(always)]`, so that [`Planned::new`] compiles them into
/// each instruction-set wrapper, and copy the scalars they read into locals, so that LLVM
/// can hoist them past the stores the loop makes (borrowed, they kept Adam's loop scalar).
pub(crate) trait Loop<P: Param>: 'static {
    /// The per-step scalars the loop reads, formed once per group and step.
    type Scalars: Copy;
    /// The update of the optimizer's doc on every element.
    fn run(k: &Self::Scalars, prep: &Prep<P::Acc>, x: &mut [P], g: &[P], state: [&mut [P::Acc]; MAX_SLOTS]);
}

/// A read-only pass over a chunk before its step, for the guard (`optim::guard`):
/// forms what the step will divide by, element by element, exactly as the step's loop
/// will (the same arithmetic, in the same order), stores nothing, and gives the smallest
/// such denominator — 0 where one is NaN — so the bounds can use it where no formula gives
/// a floor (a centred variance that rounding can bring below 0).
pub(crate) trait Probe<P: Param>: 'static {
    /// The scalars of the loop it runs before (the same type).
    type Scalars: Copy;
    /// The smallest denominator of the step on these elements (`+∞` for none).
    fn run(k: &Self::Scalars, prep: &Prep<P::Acc>, x: &[P], g: &[P], state: [&[P::Acc]; MAX_SLOTS]) -> f64;
}

/// The smallest of `v`, values `>= 0` (no NaN), in `f64` (`+∞` for none). For `f32` and
/// `f64` on the bits, whose order is the values' for non-negative floats: an integer
/// minimum vectorises, where a float minimum does not.
#[inline(always)]
pub(crate) fn least_nonnegative<T: crate::Float>(v: &[T]) -> f64 {
    use std::any::TypeId;
    macro_rules! by_bits {
        ($float:ty, $bits:ty) => {{
            // SAFETY: `T` is `$float`, which has the size and alignment of `$bits`, and
            // every bit pattern is a valid `$bits`.
            let bits = unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<$bits>(), v.len()) };
            let least = bits.iter().fold(<$float>::INFINITY.to_bits(), |a, &b| a.min(b));
            return <$float>::from_bits(least) as f64;
        }};
    }
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        by_bits!(f32, u32)
    }
    if TypeId::of::<T>() == TypeId::of::<f64>() {
        by_bits!(f64, u64)
    }
    v.iter().fold(f64::INFINITY, |a, b| a.min(b.to_f64()))
}

/// A [`Probe`] compiled for one instruction set; unsafe as [`LoopFn`].
pub(crate) type ProbeFn<S, P> = unsafe fn(&S, &Prep<<P as Param>::Acc>, Arrays<<P as Param>::Acc, P>) -> f64;

/// A variant's loop compiled for one instruction set. Unsafe: the arrays must be valid as
/// [`Arrays::slices`] says, and the loop may use an instruction-set extension, which
/// [`Planned::new`] only chooses when the CPU has it.
pub(crate) type LoopFn<S, P> = unsafe fn(&S, &Prep<<P as Param>::Acc>, Arrays<<P as Param>::Acc, P>);

/// One group's step, planned: the loop of its variant for this CPU, the scalars it runs
/// with and the gradient preprocessing.
pub(crate) struct Planned<S, P: Param> {
    run: LoopFn<S, P>,
    /// The loop's read-only pass for the guard, where it has one.
    probe: Option<ProbeFn<S, P>>,
    k: S,
    prep: Prep<P::Acc>,
}

impl<S: Copy, P: Param> Clone for Planned<S, P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S: Copy, P: Param> Copy for Planned<S, P> {}

impl<S: Copy, P: Param> Planned<S, P> {
    /// The loop `L` for the widest vector unit of this CPU, with its scalars.
    pub(crate) fn new<L: Loop<P, Scalars = S>>(k: S, prep: Prep<P::Acc>) -> Self {
        Planned { run: widest::<P, L>(), probe: None, k, prep }
    }

    /// The same, with the read-only pass `Q` run before the step where the bounds need it.
    pub(crate) fn with_probe<Q: Probe<P, Scalars = S>>(self) -> Self {
        Planned { probe: Some(widest_probe::<P, Q>()), ..self }
    }

    /// Whether the loop has a read-only pass.
    pub(crate) fn probes(&self) -> bool {
        self.probe.is_some()
    }

    /// The smallest denominator of the step on one chunk's arrays ([`Probe`]), if the loop
    /// has a probe.
    ///
    /// # Safety
    /// As [`Arrays::slices`]; nothing is written.
    #[inline(always)]
    pub(crate) unsafe fn probe_arrays(&self, a: Arrays<P::Acc, P>) -> Option<f64> {
        // SAFETY: the caller's; the pass was picked for an instruction set this CPU has.
        self.probe.map(|probe| unsafe { probe(&self.k, &self.prep, a) })
    }

    /// The step on one chunk's arrays.
    ///
    /// # Safety
    /// As [`Arrays::slices`].
    #[inline(always)]
    pub(crate) unsafe fn run_arrays(&self, a: Arrays<P::Acc, P>) {
        // SAFETY: the caller's; the loop was picked for an instruction set this CPU has.
        unsafe { (self.run)(&self.k, &self.prep, a) }
    }

    /// The probe on slices (the optimizers' tests), as [`run`](Self::run) takes them.
    #[cfg(test)]
    pub(crate) fn probe(&self, x: &mut [P], g: &[P], state: &mut [&mut [P::Acc]]) -> Option<f64> {
        // SAFETY: as in `run`; the probe only reads.
        unsafe { self.probe_arrays(Arrays::of_slices(x, g, state)) }
    }

    /// The step on slices (the optimizers' tests): `state` are the state slots in the
    /// optimizer's order; one shorter than `x` is passed as unused.
    #[cfg(test)]
    pub(crate) fn run(&self, x: &mut [P], g: &[P], state: &mut [&mut [P::Acc]]) {
        // SAFETY: every pointer comes from a slice of at least `n` elements, borrowed for
        // this call (mutably for `x` and the state).
        unsafe { self.run_arrays(Arrays::of_slices(x, g, state)) }
    }
}

#[cfg(test)]
impl<T, P> Arrays<T, P> {
    /// The arrays of slices (the tests' steps): a state slot shorter than `x` is unused.
    fn of_slices(x: &mut [P], g: &[P], state: &mut [&mut [T]]) -> Self {
        let n = x.len();
        assert!(g.len() >= n && state.len() <= MAX_SLOTS);
        let mut bufs = [std::ptr::null_mut(); MAX_SLOTS];
        for (b, s) in bufs.iter_mut().zip(state.iter_mut()) {
            if s.len() >= n && n > 0 {
                *b = s.as_mut_ptr();
            }
        }
        Arrays { x: x.as_mut_ptr(), g: g.as_ptr(), bufs, n }
    }
}

/// The vector units the loops are compiled for, widest first.
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Isa {
    /// AVX-512F.
    Avx512,
    /// AVX2 with FMA ([`has_avx2_fma`]).
    Avx2,
    /// The target's baseline.
    Baseline,
}

/// The widest vector unit of this CPU (detected at run time, cached by `std`).
#[inline(always)]
fn widest_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if has_avx2_fma() {
            return Isa::Avx2;
        }
    }
    Isa::Baseline
}

/// The loop `L` compiled for the widest vector unit this CPU has.
fn widest<P: Param, L: Loop<P>>() -> LoopFn<L::Scalars, P> {
    match widest_isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::<P, L>,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::<P, L>,
        _ => baseline::<P, L>,
    }
}

/// The probe `Q` compiled for the widest vector unit this CPU has.
fn widest_probe<P: Param, Q: Probe<P>>() -> ProbeFn<Q::Scalars, P> {
    match widest_isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => probe_avx512::<P, Q>,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => probe_avx2::<P, Q>,
        _ => probe_baseline::<P, Q>,
    }
}

/// `L::run` and a probe's `Q::run` as functions of their own, with the attributes given
/// (an instruction-set extension, or none for the baseline; unsafe so that all share
/// [`LoopFn`] and [`ProbeFn`]).
macro_rules! compiled_for {
    ($(#[$attr:meta])* $name:ident, $probe:ident) => {
        $(#[$attr])*
        unsafe fn $name<P: Param, L: Loop<P>>(k: &L::Scalars, prep: &Prep<P::Acc>, a: Arrays<P::Acc, P>) {
            // SAFETY: the caller's (see `LoopFn`).
            let (x, g, state) = unsafe { a.slices() };
            L::run(k, prep, x, g, state)
        }

        $(#[$attr])*
        unsafe fn $probe<P: Param, Q: Probe<P>>(k: &Q::Scalars, prep: &Prep<P::Acc>, a: Arrays<P::Acc, P>) -> f64 {
            // SAFETY: the caller's (see `ProbeFn`); only read.
            let (x, g, state) = unsafe { a.slices() };
            Q::run(k, prep, x, g, state.map(|s| &*s))
        }
    };
}
compiled_for!(
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    avx512,
    probe_avx512
);
compiled_for!(
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    avx2,
    probe_avx2
);
compiled_for!(baseline, probe_baseline);

/// Runs `f` compiled for the widest vector unit of this CPU (the gradient scan).
///
/// Pass an `#[inline(always)]` closure: it is then inlined into a function with the
/// instruction-set extension enabled, so its loop is vectorised for that width.
#[inline(always)]
pub(crate) fn widest_closure<R>(f: impl FnOnce() -> R) -> R {
    match widest_isa() {
        // SAFETY: the CPU has AVX-512F.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { closure_avx512(f) },
        // SAFETY: the CPU has AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { closure_avx2(f) },
        _ => f(),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn closure_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn closure_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// AVX2 and FMA, which the AVX2 loops are compiled with (every AVX2 CPU of Intel and AMD
/// has both).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// `on ? a : b` for a loop-invariant `on`: both sides are computed, so a loop stays
/// branch-free and vectorises (a blend).
#[inline(always)]
pub(crate) fn select<T>(on: bool, a: T, b: T) -> T {
    if on { a } else { b }
}

/// The arrays a loop runs over: `n` elements of the parameter `x`, the gradient `g` and
/// each state slot; a null slot is unused and seen empty.
#[derive(Debug)]
pub(crate) struct Arrays<T, P> {
    pub x: *mut P,
    pub g: *const P,
    pub bufs: [*mut T; MAX_SLOTS],
    pub n: usize,
}

impl<T, P> Clone for Arrays<T, P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T, P> Copy for Arrays<T, P> {}

impl<T, P> Arrays<T, P> {
    /// The same arrays over the elements `start..end`.
    ///
    /// # Safety
    /// `start <= end <= self.n`.
    #[inline(always)]
    pub(crate) unsafe fn range(self, start: usize, end: usize) -> Self {
        // SAFETY: within the arrays, by the caller's contract.
        let at = |p: *mut T| if p.is_null() { p } else { unsafe { p.add(start) } };
        unsafe { Arrays { x: self.x.add(start), g: self.g.add(start), bufs: self.bufs.map(at), n: end - start } }
    }

    /// The arrays as slices.
    ///
    /// # Safety
    /// Each non-null pointer is valid for `n` elements for `'a` and aliases no other
    /// reference (`g` may only be read).
    #[inline(always)]
    pub(crate) unsafe fn slices<'a>(self) -> (&'a mut [P], &'a [P], [&'a mut [T]; MAX_SLOTS]) {
        let n = self.n;
        // SAFETY: by the caller's contract.
        let buf = |p: *mut T| if p.is_null() { &mut [][..] } else { unsafe { std::slice::from_raw_parts_mut(p, n) } };
        unsafe {
            (std::slice::from_raw_parts_mut(self.x, n), std::slice::from_raw_parts(self.g, n), self.bufs.map(buf))
        }
    }
}

/// Evaluates `$e` with the const `$c: bool` set to `$on`, so a runtime switch becomes a
/// loop's const generic.
macro_rules! with_bool {
    ($on:expr, $c:ident => $e:expr) => {
        if $on {
            const $c: bool = true;
            $e
        } else {
            const $c: bool = false;
            $e
        }
    };
}
pub(crate) use with_bool;

/// Evaluates `$e` with the type `$a` set to the [`Arith`] of the
/// [`Rounding`](crate::Rounding) `$rounding`.
///
/// A loop whose operations round the same under XLA (or MXNet) as written says so with
/// `xla: false` (`mxnet: false`), a const expression: that rounding then runs the
/// as-written loop and gets no instance of its own. XLA differs only where a loop divides
/// by a broadcast scalar ([`Arith::div_by`], [`Arith::norm_clip`]), MXNet only in an
/// average of squares ([`Arith::ema_sq`]); the fused-against-general tests hold every
/// optimizer to it.
macro_rules! with_arith {
    ($rounding:expr, $a:ident => $e:expr) => {
        $crate::kernel::with_arith!($rounding, xla: true, mxnet: true, $a => $e)
    };
    ($rounding:expr, xla: $xla:expr, mxnet: $mxnet:expr, $a:ident => $e:expr) => {
        match $rounding {
            $crate::Rounding::Torch => {
                type $a = $crate::kernel::Torch;
                $e
            }
            $crate::Rounding::Xla if $xla => {
                type $a = $crate::kernel::Xla;
                $e
            }
            $crate::Rounding::Mxnet if $mxnet => {
                type $a = $crate::kernel::Mxnet;
                $e
            }
            _ => {
                type $a = $crate::kernel::AsWritten;
                $e
            }
        }
    };
}
pub(crate) use with_arith;

/// Evaluates `$e` with the type `$o` set to the [`Form`] of the [`StepForm`](crate::StepForm)
/// `$form`.
macro_rules! with_form {
    ($form:expr, $o:ident => $e:expr) => {
        match $form {
            $crate::StepForm::ScaledGradient => {
                type $o = $crate::kernel::GradientFirst;
                $e
            }
            $crate::StepForm::ScaledRate => {
                type $o = $crate::kernel::RateFirst;
                $e
            }
            $crate::StepForm::ScaledProduct => {
                type $o = $crate::kernel::ProductFirst;
                $e
            }
            $crate::StepForm::ScaledReciprocal => {
                type $o = $crate::kernel::ReciprocalFirst;
                $e
            }
        }
    };
}
pub(crate) use with_form;

/// Evaluates `$e` with the consts `$p` (preprocess the gradient) and `$x` (apply the
/// rarer options as selects) set: `($p, $x)` is `(false, false)` for an identity
/// preprocessing without extras, `(true, false)` for preprocessing alone, and
/// `(true, true)` whenever an extra is on (the preprocessing path is exact when it is the
/// identity, so extras need no instance of their own without it).
macro_rules! with_prep {
    ($identity:expr, $extras:expr, $p:ident, $x:ident => $e:expr) => {
        if $extras {
            const $p: bool = true;
            const $x: bool = true;
            $e
        } else if $identity {
            const $p: bool = false;
            const $x: bool = false;
            $e
        } else {
            const $p: bool = true;
            const $x: bool = false;
            $e
        }
    };
}
pub(crate) use with_prep;
