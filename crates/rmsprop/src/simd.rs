//! Running an element-wise loop compiled for the widest vector unit the CPU has.
//!
//! The optimizers' loops are written once, as plain Rust over slices, with every option a
//! const generic or a loop-invariant select, so they vectorise. [`widest`] runs such a loop
//! compiled with AVX-512 or AVX2 (with FMA) enabled when the CPU has them (detected at run
//! time, cached by `std`), else for the baseline. Only the vector width changes: Rust never
//! contracts `a * b + c` into a fused multiply-add by itself, and where a loop asks for one
//! ([`Float::mul_add`](crate::Float::mul_add), under [`Rounding::Torch`](crate::Rounding))
//! every path computes it exactly (the instruction, or the software `fma` of the
//! baseline), so every path gives the same bits.

/// Runs `f` compiled for the widest vector unit of this CPU.
///
/// Pass an `#[inline(always)]` closure: it is then inlined into a function with the
/// instruction-set extension enabled, so its loop is vectorised for that width (without
/// the attribute, a large loop body stays out of line, compiled for the baseline: Adam
/// ran at half speed). The loop should copy the scalars it reads into locals, so that
/// LLVM can hoist them past the stores it makes (borrowed, they kept Adam's loop scalar).
#[inline(always)]
pub(crate) fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { avx512(f) };
        }
        if has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// AVX2 and FMA, which the AVX2 loops are compiled with (every AVX2 CPU of Intel and AMD
/// has both).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `on ? a : b` for a loop-invariant `on`: both sides are computed, so a loop stays
/// branch-free and vectorises (a blend).
#[inline(always)]
pub(crate) fn select<T>(on: bool, a: T, b: T) -> T {
    if on { a } else { b }
}

/// Evaluates `$e` with the const `$f: u8` set to the discriminant of the
/// [`StepForm`](crate::StepForm) `$form`, so a loop can take the form as a const generic.
macro_rules! with_form {
    ($form:expr, $f:ident => $e:expr) => {
        match $form {
            $crate::StepForm::ScaledGradient => {
                const $f: u8 = $crate::StepForm::ScaledGradient as u8;
                $e
            }
            $crate::StepForm::ScaledRate => {
                const $f: u8 = $crate::StepForm::ScaledRate as u8;
                $e
            }
            $crate::StepForm::ScaledProduct => {
                const $f: u8 = $crate::StepForm::ScaledProduct as u8;
                $e
            }
            $crate::StepForm::ScaledReciprocal => {
                const $f: u8 = $crate::StepForm::ScaledReciprocal as u8;
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

/// Evaluates `$e` with the const `$r: u8` set to `$rounding` as a loop takes it
/// ([`common::round`](crate::common::round)), so a loop can take it as a const generic.
/// `torch_only:` for a loop whose only rounding other than the written one is PyTorch's
/// (MXNet's is then the written one, and gets no instance of its own).
macro_rules! with_rounding {
    (torch_only: $rounding:expr, $r:ident => $e:expr) => {
        if $rounding == $crate::Rounding::Torch {
            const $r: u8 = $crate::common::round::TORCH;
            $e
        } else {
            const $r: u8 = $crate::common::round::AS_WRITTEN;
            $e
        }
    };
    ($rounding:expr, $r:ident => $e:expr) => {
        match $rounding {
            $crate::Rounding::Torch => {
                const $r: u8 = $crate::common::round::TORCH;
                $e
            }
            $crate::Rounding::Mxnet => {
                const $r: u8 = $crate::common::round::MXNET;
                $e
            }
            $crate::Rounding::AsWritten | $crate::Rounding::Xla => {
                const $r: u8 = $crate::common::round::AS_WRITTEN;
                $e
            }
        }
    };
}
pub(crate) use with_rounding;
