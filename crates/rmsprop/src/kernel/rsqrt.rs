//! The plain D2L step in `f32` with a reciprocal-square-root estimate refined by one
//! Newton step, `y = y (3/2 - a/2 y²)` (Numerical Recipes §9.4): AVX-512 (`rsqrt14`, 2⁻¹⁴
//! before the step, ~2⁻²⁷ after) or AVX2 (`rsqrtps`, 1.5·2⁻¹² before, ~2⁻²² after).
//! Opt-in ([`RmsProp::fast_rsqrt`](crate::RmsProp::fast_rsqrt)); only the exact loops
//! reproduce a framework.

use crate::float::Param;

/// The step's scalars, in `f32`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct F32Scalars {
    pub gamma: f32,
    pub one_minus_gamma: f32,
    pub eps: f32,
    pub lr: f32,
}

/// True when [`step`] runs for parameters `P`: `P` is `f32` and the CPU has AVX-512F or
/// AVX2 with FMA.
pub(crate) fn available<P: Param>() -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<P>() == std::any::TypeId::of::<f32>() {
        return std::arch::is_x86_feature_detected!("avx512f") || super::has_avx2_fma();
    }
    false
}

/// `s = γ s + (1-γ) g²`, `x -= η g / sqrt(s + ε)` with the estimate, on `f32` slices of
/// one length. Returns false, changing nothing, where it is not [`available`].
#[inline(always)]
pub(crate) fn step<P: Param>(k: &F32Scalars, x: &mut [P], g: &[P], s: &mut [P::Acc]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let Some((x, g, s)) = as_f32(x, g, s) {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            unsafe { plain_avx512(k, x, g, s) };
            return true;
        }
        if super::has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { plain_avx2(k, x, g, s) };
            return true;
        }
    }
    let _ = (k, x, g, s);
    false
}

/// The slices as `f32`, when `P` (and so its arithmetic type) is `f32`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::type_complexity)]
fn as_f32<'a, P: Param>(
    x: &'a mut [P],
    g: &'a [P],
    s: &'a mut [P::Acc],
) -> Option<(&'a mut [f32], &'a [f32], &'a mut [f32])> {
    use std::any::TypeId;
    if TypeId::of::<P>() != TypeId::of::<f32>() || TypeId::of::<P::Acc>() != TypeId::of::<f32>() {
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

/// One vector loop over `LANES` lanes, then the exact scalar step for the tail.
/// `s = γ s + (1-γ) g²` stays exact (no fused multiply-add); the update
/// `x -= η g y (3/2 - a/2 y²)` with `a = s + ε`, `y ≈ 1/sqrt(a)` is formed as
/// `x - (g y)·(3η/2 - (η/2)(a y) y)` with two fused multiply-adds: eight multiplies per
/// lane group instead of ten, which is what bounds the loop in cache.
#[cfg(target_arch = "x86_64")]
macro_rules! rsqrt_loop {
    ($name:ident, $feature:literal, $lanes:literal, $v:ty, $set1:ident, $load:ident, $store:ident,
     $add:ident, $mul:ident, $fmadd:ident, $fnmadd:ident, $rsqrt:ident) => {
        #[target_feature(enable = $feature)]
        unsafe fn $name(k: &F32Scalars, x: &mut [f32], g: &[f32], s: &mut [f32]) {
            use std::arch::x86_64::*;
            let n = x.len().min(g.len()).min(s.len());
            let F32Scalars { gamma, one_minus_gamma: omg, eps, lr } = *k;
            let (vgamma, vomg, veps): ($v, $v, $v) = ($set1(gamma), $set1(omg), $set1(eps));
            let (minus_half_lr, three_halves_lr): ($v, $v) = ($set1(-0.5 * lr), $set1(1.5 * lr));
            let mut i = 0;
            while i + $lanes <= n {
                // SAFETY: i + LANES <= n for all three slices.
                unsafe {
                    let gi = $load(g.as_ptr().add(i));
                    let si = $add($mul(vgamma, $load(s.as_ptr().add(i))), $mul(vomg, $mul(gi, gi)));
                    $store(s.as_mut_ptr().add(i), si);
                    let a = $add(si, veps);
                    let y = $rsqrt(a);
                    let c = $fmadd($mul($mul(a, y), y), minus_half_lr, three_halves_lr);
                    let xi = $fnmadd($mul(gi, y), c, $load(x.as_ptr().add(i)));
                    $store(x.as_mut_ptr().add(i), xi);
                }
                i += $lanes;
            }
            for j in i..n {
                s[j] = gamma * s[j] + omg * (g[j] * g[j]);
                x[j] -= lr / (s[j] + eps).sqrt() * g[j];
            }
        }
    };
}
#[cfg(target_arch = "x86_64")]
rsqrt_loop!(
    plain_avx512,
    "avx512f",
    16,
    __m512,
    _mm512_set1_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_add_ps,
    _mm512_mul_ps,
    _mm512_fmadd_ps,
    _mm512_fnmadd_ps,
    _mm512_rsqrt14_ps
);
#[cfg(target_arch = "x86_64")]
rsqrt_loop!(
    plain_avx2,
    "avx2,fma",
    8,
    __m256,
    _mm256_set1_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_add_ps,
    _mm256_mul_ps,
    _mm256_fmadd_ps,
    _mm256_fnmadd_ps,
    _mm256_rsqrt_ps
);
