//! Optimizer state in fewer bytes: block-wise 8-bit codes and bfloat16.
//!
//! **8 bits** (Dettmers et al. 2022, *8-bit Optimizers via Block-wise Quantization*): a
//! state array is cut into blocks of [`BLOCK`] values; each block keeps one `f32` scale, its
//! largest magnitude, and each value one byte, the index of the nearest entry of a
//! 256-entry *dynamic tree* code ([`DynamicCode`]) for the value over the scale:
//!
//! ```text
//! absmax = max |x_i| over the block        codes_i = nearest(x_i / absmax)
//! x_i ≈ code[codes_i] · absmax
//! ```
//!
//! The code spends its entries on every decade from 1e-7 to 1 (more of them in the higher
//! decades), so a block keeps small values next to large ones: a moving average of squared
//! gradients spans several decades within a block. Non-negative state (averages of
//! squares, accumulators) takes the unsigned code, state of either sign (momentum, averages
//! of gradients) the signed one. One byte and 4/256 of a scale: 1.016 bytes per value, a
//! quarter of `f32`.
//!
//! **bfloat16**: the top 16 bits of the `f32`, rounded to nearest, ties to even
//! ([`to_bf16`]).
//!
//! ```
//! use rmsprop::quant::{self, DynamicCode};
//! let x = [0.5f32, -0.25, 1e-4, 0.0];
//! let mut codes = [0u8; 4];
//! let absmax = quant::quantize(DynamicCode::signed(), &x, &mut codes)?;
//! assert_eq!(absmax, 0.5);
//! let mut back = [0f32; 4];
//! quant::dequantize(DynamicCode::signed(), &codes, absmax, &mut back)?;
//! assert_eq!(back[0], 0.5); // ±absmax is a code (1.0) on the positive side
//! assert_eq!(back[3], 0.0);
//! assert!((back[1] + 0.25).abs() < 0.25 * 0.02); // 64 entries a decade up there
//! assert!((back[2] / 1e-4 - 1.0).abs() < 0.25); // 8 a decade at 1e-4 of the scale
//! // a buffer of another length is an error, not a panic
//! assert!(quant::quantize(DynamicCode::signed(), &x, &mut [0u8; 3]).is_err());
//! # Ok::<(), rmsprop::Error>(())
//! ```

use crate::error::{Error, Result};
use std::sync::OnceLock;

/// Values per block: one scale each (bitsandbytes' block since 0.44).
pub const BLOCK: usize = 256;

/// The version of the code tables ([`DynamicCode`]) that checkpoints record: 1 is the
/// paper's dynamic tree, each entry its exact value rounded once to `f32`.
pub const CODE_VERSION: u32 = 1;

/// Mantissa bits of `|v|` that pick a bucket of the encoding's lookup table: buckets of
/// 1/128 of a binade, narrower than the gap between any two neighbouring codes' midpoints
/// above 2^-24, so that a bucket holds at most [`PER_BUCKET`] of them.
const BUCKET_BITS: u32 = 7;
/// `|v|` below 2^-24 shares the first bucket: no code but 0 is that small.
const SMALLEST_EXPONENT: u32 = 127 - 24;
/// Buckets per sign: the binades from 2^-24 to 2^0, and 1.0 itself.
const BUCKETS: usize = ((127 - SMALLEST_EXPONENT as usize) << BUCKET_BITS) + 1;
/// At most this many decision thresholds fall inside one bucket (checked when a table
/// is built).
const PER_BUCKET: usize = 2;

/// A 256-entry dynamic-tree quantisation code over `[-1, 1]` (signed) or `[0, 1]`
/// (unsigned), sorted, with an exact nearest-entry encoder.
///
/// The entries (Dettmers et al. 2022, §2; bitsandbytes' `create_dynamic_map` with 7
/// exponent bits): for each decade `i = 0..7`, the midpoints of `n_i` equal intervals of
/// `[0.1, 1]`, times `10^(i-6)` — `n_i = 2^i` signed (and their negatives), `2^(i+1)`
/// unsigned — then 0 and 1. Each is the exact value rounded once to `f32` (bitsandbytes
/// forms them in `f32` through `torch.linspace`, whose result depends on the machine's
/// vector width: its tables differ from these by at most 2 ulps in some entries). One
/// departure: the signed code's lowest entry is -1 (the paper's is -0.99297, the
/// midpoint of its last interval), so that a block's extreme decodes to exactly `±absmax`
/// on both sides and quantising decoded values gives the same codes again (bitsandbytes'
/// CPU encoder sets that entry to -1 too).
///
/// ```
/// use rmsprop::quant::DynamicCode;
/// let u = DynamicCode::unsigned();
/// assert_eq!((u.values()[0], u.values()[255]), (0.0, 1.0));
/// assert_eq!(u.decode(u.encode(0.3)), u.values()[u.encode(0.3) as usize]);
/// assert!((u.decode(u.encode(0.3)) - 0.3).abs() <= 0.9 / 128.0 / 2.0);
/// ```
#[derive(Clone, Debug)]
pub struct DynamicCode {
    signed: bool,
    values: [f32; 256],
    /// `above[k]`: the largest `f32` that is nearer to entry `k` than to `k + 1` (a tie
    /// goes to `k`); `+∞` from 255 on, so a value's entry is the number of `above[k] < v`.
    above: [f32; 256 + PER_BUCKET],
    /// Per bucket of `v ≥ 0`, then of `v < 0`: how many thresholds lie below the bucket's
    /// smallest value (32 bits each: a vector loop gathers them).
    below: Box<[u32; 2 * BUCKETS]>,
    /// The thresholds a branch-free binary search compares with, level by level: at the
    /// level of step `s = 2^(7 - l)`, entry `j` is `above[2 s j + s - 1]` (level `l` holds
    /// `2^l` of them, from offset `2^l - 1`).
    levels: [f32; 255],
}

impl DynamicCode {
    /// The signed code (-1.0, 126 negative entries, 0, 127 positive ones and 1.0), for
    /// state of either sign.
    pub fn signed() -> &'static DynamicCode {
        static CODE: OnceLock<DynamicCode> = OnceLock::new();
        CODE.get_or_init(|| DynamicCode::build(true))
    }

    /// The unsigned code (0, 254 positive entries and 1.0), for state that is never
    /// negative.
    pub fn unsigned() -> &'static DynamicCode {
        static CODE: OnceLock<DynamicCode> = OnceLock::new();
        CODE.get_or_init(|| DynamicCode::build(false))
    }

    /// The code of a state: [`unsigned`](Self::unsigned) for squares (never negative),
    /// [`signed`](Self::signed) otherwise.
    pub(crate) fn for_state(squares: bool) -> &'static DynamicCode {
        if squares { DynamicCode::unsigned() } else { DynamicCode::signed() }
    }

    /// Whether the code has negative entries.
    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// The 256 entries, ascending.
    pub fn values(&self) -> &[f32; 256] {
        &self.values
    }

    /// The entry `c`.
    #[inline(always)]
    pub fn decode(&self, c: u8) -> f32 {
        self.values[c as usize]
    }

    /// The index of the entry nearest to `v` (the lower one on a tie); `v` is a value
    /// over its block's scale, in `[-1, 1]`. Outside, the nearest end; NaN gives some
    /// index.
    #[inline(always)]
    pub fn encode(&self, v: f32) -> u8 {
        // every index in range by construction (a bucket below 2 · BUCKETS, a count below
        // 256), so that a loop of encodes has no bounds check and vectorises into gathers
        let base = (self.below[bucket(v).min(2 * BUCKETS - 1)] & 0xFF) as usize;
        let mut idx = base;
        for j in 0..PER_BUCKET {
            idx += (self.above[base + j] < v) as usize;
        }
        idx as u8
    }

    /// The codes of `x` over the scale `absmax` (`encode(x_i / absmax)`) into `out` (as long
    /// as `x`); where `positive_floor`, a positive `x_i` takes at least entry 1 (see
    /// [`StateStorage`](crate::StateStorage)). On AVX-512 a branch-free binary search over
    /// the thresholds held in registers, 16 values at a time; elsewhere [`encode`](Self::encode)
    /// in turn. Both count the thresholds below each value, so they give the same codes.
    pub(crate) fn encode_scaled(&self, x: &[f32], absmax: f32, out: &mut [u8], positive_floor: bool) {
        let n = x.len().min(out.len());
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F; both slices hold at least `n` values.
            done = unsafe { self.encode_avx512(&x[..n], absmax, &mut out[..n], positive_floor) };
        }
        for (c, &v) in out[done..n].iter_mut().zip(&x[done..n]) {
            let e = self.encode(v / absmax);
            *c = e + (positive_floor & (e == 0) & (v > 0.0)) as u8;
        }
    }

    /// [`encode_scaled`](Self::encode_scaled) of the whole multiples of 16 of `x`; returns how
    /// many were encoded. Unsafe to call on a CPU without AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn encode_avx512(&self, x: &[f32], absmax: f32, out: &mut [u8], positive_floor: bool) -> usize {
        use std::arch::x86_64::*;
        let t = &self.levels;
        // a level's table in registers: `load(o)` is the 16 thresholds from offset `o`
        // SAFETY: the slice holds the 16 values read.
        let load = |o: usize| unsafe { _mm512_loadu_ps(t[o..o + 16].as_ptr()) };
        // levels 0-4 (1 to 16 thresholds) in one register each (lanes past a level's own
        // thresholds hold the next levels', never indexed), 5 in two, 6 in four, 7 in eight
        let small: [__m512; 5] = [load(0), load(1), load(3), load(7), load(15)];
        let (l5, l6, l7) = ([load(31), load(47)], [load(63), load(79), load(95), load(111)], {
            let mut r = [_mm512_setzero_ps(); 8];
            for (k, r) in r.iter_mut().enumerate() {
                *r = load(127 + 16 * k);
            }
            r
        });
        let scale = _mm512_set1_ps(absmax);
        let (zero, one) = (_mm512_setzero_si512(), _mm512_set1_epi32(1));
        let whole = x.len() / 16 * 16;
        for (x, out) in x[..whole].chunks_exact(16).zip(out[..whole].chunks_exact_mut(16)) {
            // SAFETY: the chunk holds the 16 values read.
            let v = unsafe { _mm512_loadu_ps(x.as_ptr()) };
            let u = _mm512_div_ps(v, scale);
            let mut idx = zero;
            for (l, table) in small.iter().enumerate() {
                let j = _mm512_srlv_epi32(idx, _mm512_set1_epi32(8 - l as i32));
                let th = _mm512_permutexvar_ps(j, *table);
                let below = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(th, u);
                idx = _mm512_mask_add_epi32(idx, below, idx, _mm512_set1_epi32(128 >> l));
            }
            // level 5: 32 thresholds, j = idx >> 3
            let j = _mm512_srli_epi32::<3>(idx);
            let th = _mm512_permutex2var_ps(l5[0], j, l5[1]);
            idx = _mm512_mask_add_epi32(idx, _mm512_cmp_ps_mask::<_CMP_LT_OQ>(th, u), idx, _mm512_set1_epi32(4));
            // level 6: 64, j = idx >> 2, bit 5 of j picks the pair
            let j = _mm512_srli_epi32::<2>(idx);
            let hi = _mm512_test_epi32_mask(j, _mm512_set1_epi32(32));
            let th = _mm512_mask_blend_ps(
                hi,
                _mm512_permutex2var_ps(l6[0], j, l6[1]),
                _mm512_permutex2var_ps(l6[2], j, l6[3]),
            );
            idx = _mm512_mask_add_epi32(idx, _mm512_cmp_ps_mask::<_CMP_LT_OQ>(th, u), idx, _mm512_set1_epi32(2));
            // level 7: 128, j = idx >> 1, bits 5 and 6 of j pick among four pairs
            let j = _mm512_srli_epi32::<1>(idx);
            let (b5, b6) =
                (_mm512_test_epi32_mask(j, _mm512_set1_epi32(32)), _mm512_test_epi32_mask(j, _mm512_set1_epi32(64)));
            let pair = |k: usize| _mm512_permutex2var_ps(l7[2 * k], j, l7[2 * k + 1]);
            let low = _mm512_mask_blend_ps(b5, pair(0), pair(1));
            let high = _mm512_mask_blend_ps(b5, pair(2), pair(3));
            let th = _mm512_mask_blend_ps(b6, low, high);
            idx = _mm512_mask_add_epi32(idx, _mm512_cmp_ps_mask::<_CMP_LT_OQ>(th, u), idx, one);
            if positive_floor {
                let lift =
                    _mm512_cmpeq_epi32_mask(idx, zero) & _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, _mm512_setzero_ps());
                idx = _mm512_mask_mov_epi32(idx, lift, one);
            }
            // SAFETY: `out` holds these 16 bytes.
            unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(idx)) };
        }
        whole
    }

    fn build(signed: bool) -> DynamicCode {
        let mut exact: Vec<f64> = Vec::with_capacity(256);
        for i in 0..7i32 {
            let n = if signed { 1u32 << i } else { 2u32 << i };
            let scale = 10f64.powi(i - 6);
            for j in 0..n {
                // the midpoint of [0.1 + 0.9 j/n, 0.1 + 0.9 (j+1)/n]
                let m = (0.1 + 0.9 * (2 * j + 1) as f64 / (2 * n) as f64) * scale;
                exact.push(m);
                if signed {
                    exact.push(-m);
                }
            }
        }
        exact.extend([0.0, 1.0]);
        assert_eq!(exact.len(), 256, "the dynamic tree has 256 entries");
        exact.sort_by(f64::total_cmp);
        if signed {
            exact[0] = -1.0; // see the type's doc
        }
        let values: [f32; 256] = std::array::from_fn(|k| exact[k] as f32);
        let mut above = [f32::INFINITY; 256 + PER_BUCKET];
        for k in 0..255 {
            let (lo, hi) = (values[k] as f64, values[k + 1] as f64);
            // exact in f64: two f32 within a factor of 2^30 of each other
            let mid = (lo + hi) / 2.0;
            let t = mid as f32;
            // the largest f32 ≤ mid: a value equal to the midpoint goes to the lower entry
            above[k] = if (t as f64) > mid { next_down(t) } else { t };
        }
        let count_below = |v: f32| above[..255].iter().filter(|&&t| t < v).count();
        let mut below = Box::new([0u32; 2 * BUCKETS]);
        for k in 0..BUCKETS {
            let (lo, hi) = bucket_range(k);
            // v ≥ 0: the bucket holds [lo, hi); v < 0: (-hi, -lo]
            for (side, smallest, largest) in [(0, lo, next_down(hi)), (1, -next_down(hi), -lo)] {
                let base = count_below(smallest);
                let inside = count_below(largest) + usize::from(above[..255].contains(&largest)) - base;
                assert!(inside <= PER_BUCKET, "bucket {k}: {inside} thresholds");
                below[side * BUCKETS + k] = base as u32;
            }
        }
        let mut levels = [0f32; 255];
        for l in 0..8 {
            let step = 128usize >> l;
            for j in 0..1usize << l {
                levels[(1 << l) - 1 + j] = above[2 * step * j + step - 1];
            }
        }
        DynamicCode { signed, values, above, below, levels }
    }
}

/// The bucket of `v`: `|v|`'s exponent and top mantissa bits, offset by sign.
#[inline(always)]
fn bucket(v: f32) -> usize {
    let bits = v.to_bits();
    let magnitude = bits & 0x7FFF_FFFF;
    let offset = (magnitude >> (23 - BUCKET_BITS)).saturating_sub(SMALLEST_EXPONENT << BUCKET_BITS) as usize;
    let side = (bits >> 31) as usize * BUCKETS;
    side + offset.min(BUCKETS - 1)
}

/// The `|v|` range `[lo, hi)` of bucket `k` (the first from 0, the last up to `+∞`).
fn bucket_range(k: usize) -> (f32, f32) {
    let at = |k: usize| f32::from_bits(((SMALLEST_EXPONENT << BUCKET_BITS) + k as u32) << (23 - BUCKET_BITS));
    let lo = if k == 0 { 0.0 } else { at(k) };
    let hi = if k + 1 == BUCKETS { f32::INFINITY } else { at(k + 1) };
    (lo, hi)
}

/// The largest `f32` below `v` (for finite `v > 0` or `v ≤ 0`, and `+∞`).
fn next_down(v: f32) -> f32 {
    if v == 0.0 {
        -f32::from_bits(1)
    } else if v > 0.0 {
        f32::from_bits(v.to_bits() - 1)
    } else {
        f32::from_bits(v.to_bits() + 1)
    }
}

/// Quantises one block (the optimizer's are [`BLOCK`] long) into `codes` with `code`;
/// returns its scale, the largest `|x|` (NaN if any value is NaN). A block of zeros keeps
/// scale 0 and the code of 0. `codes` must be as long as `x`.
pub fn quantize(code: &DynamicCode, x: &[f32], codes: &mut [u8]) -> Result<f32> {
    same_length("codes", codes.len(), x.len())?;
    Ok(quantize_block(code, x, codes, false))
}

/// [`quantize`] of a block and `codes` as long as it; where `positive_floor`, a positive
/// value takes at least entry 1 (a square that must not decode to 0, see
/// [`StateStorage`](crate::StateStorage)).
#[inline(always)]
pub(crate) fn quantize_block(code: &DynamicCode, x: &[f32], codes: &mut [u8], positive_floor: bool) -> f32 {
    // the largest magnitude on the bits, which vectorises: a NaN's are larger than ∞'s
    let top = x.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7FFF_FFFF));
    let absmax = if top > 0x7F80_0000 { f32::NAN } else { f32::from_bits(top) };
    if absmax == 0.0 {
        codes.fill(code.encode(0.0));
    } else {
        code.encode_scaled(x, absmax, codes, positive_floor);
    }
    absmax
}

/// The values of one block into `out` (as long as `codes`): `code[codes_i] · absmax`.
pub fn dequantize(code: &DynamicCode, codes: &[u8], absmax: f32, out: &mut [f32]) -> Result<()> {
    same_length("values", out.len(), codes.len())?;
    dequantize_block(code, codes, absmax, out);
    Ok(())
}

/// [`dequantize`] of a block into `out` as long as it.
#[inline(always)]
pub(crate) fn dequantize_block(code: &DynamicCode, codes: &[u8], absmax: f32, out: &mut [f32]) {
    let table = code.values();
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = table[c as usize] * absmax;
    }
}

/// `Ok` when an output of `got` elements fits a block of `expected`.
fn same_length(what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got == expected {
        return Ok(());
    }
    Err(Error::LengthMismatch { what, tensor: "block".into(), expected, got, shape: vec![expected] })
}

/// `v` rounded to bfloat16 (nearest, ties to even; NaN stays NaN), as its bits.
///
/// ```
/// assert_eq!(rmsprop::quant::to_bf16(1.0), 0x3F80);
/// assert_eq!(rmsprop::quant::from_bf16(rmsprop::quant::to_bf16(0.1)), 0.10009765625);
/// ```
#[inline(always)]
pub fn to_bf16(v: f32) -> u16 {
    half::bf16::from_f32(v).to_bits()
}

/// The `f32` a bfloat16's bits stand for (exact).
#[inline(always)]
pub fn from_bf16(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// The 16 random bits with which element `index` (of the whole tensor) of state slot `slot`
/// of the `tensor`-th registered tensor is rounded to bfloat16 at step `step` under
/// stochastic rounding ([`Common::bf16_stochastic_round`](crate::Common)): a counter-based
/// hash (Wellons' `lowbias32`, applied in turn to the step, the tensor, the slot and the
/// index), so every thread and process, and every run, draws the same bits for the same
/// element.
///
/// ```
/// use rmsprop::quant::stochastic_bits;
/// assert_eq!(stochastic_bits(3, 0, 0, 17), stochastic_bits(3, 0, 0, 17));
/// assert_ne!(stochastic_bits(3, 0, 0, 17), stochastic_bits(4, 0, 0, 17));
/// ```
pub fn stochastic_bits(step: u64, tensor: usize, slot: usize, index: u64) -> u16 {
    let key = stochastic_key(step, tensor, slot, (index >> 32) as u32);
    (lowbias32(key ^ index as u32) >> 16) as u16
}

/// The per-stage part of [`stochastic_bits`]: the key of a run of indices that share their
/// top 32 bits.
#[inline]
pub(crate) fn stochastic_key(step: u64, tensor: usize, slot: usize, index_high: u32) -> u32 {
    let mut k = lowbias32(step as u32 ^ 0x9E37_79B9);
    k = lowbias32(k ^ (step >> 32) as u32);
    k = lowbias32(k ^ tensor as u32);
    k = lowbias32(k ^ slot as u32);
    lowbias32(k ^ index_high)
}

/// Chris Wellons' `lowbias32` integer hash (a bijection of `u32`).
#[inline(always)]
pub(crate) fn lowbias32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7FEB_352D);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846C_A68B);
    x ^ (x >> 16)
}

/// `v` rounded to bfloat16 stochastically with the 16 random bits `random`: its magnitude
/// is rounded up with probability equal to its distance from the bfloat16 below, over the
/// gap (`(|v| + random) >> 16` on the bits), so the expected result is `v`; a finite value
/// keeps at most bfloat16's largest, NaN and ∞ as [`to_bf16`] rounds them.
///
/// ```
/// use rmsprop::quant::{from_bf16, to_bf16_stochastic};
/// let v = 1.0f32 + 2f32.powi(-9); // a quarter of the way from 1 to the next bfloat16
/// assert_eq!(from_bf16(to_bf16_stochastic(v, 0)), 1.0);
/// assert_eq!(from_bf16(to_bf16_stochastic(v, 0xFFFF)), 1.0 + 2f32.powi(-7));
/// assert_eq!(from_bf16(to_bf16_stochastic(v, 0xC000)), 1.0 + 2f32.powi(-7)); // 1/4 of the draws
/// assert_eq!(from_bf16(to_bf16_stochastic(v, 0xBFFF)), 1.0);
/// ```
#[inline(always)]
pub fn to_bf16_stochastic(v: f32, random: u16) -> u16 {
    bf16_adding(v, random as u32)
}

/// `v` to bfloat16 by adding `add` (below 2^16 + 1) to the 16 bits its magnitude loses and
/// truncating: `0x7FFF` plus the kept last bit rounds to nearest with ties to even, 16
/// random bits stochastically. A finite value keeps at most bfloat16's largest (not ∞);
/// ∞ stays ∞, NaN stays NaN (quiet). Branch-free, so that a loop of it vectorises.
#[inline(always)]
pub(crate) fn bf16_adding(v: f32, add: u32) -> u16 {
    let bits = v.to_bits();
    let magnitude = bits & 0x7FFF_FFFF;
    let rounded = ((magnitude + add) >> 16).min(0x7F7F);
    // ∞ and NaN keep their top half (a NaN its quiet bit too)
    let special = (magnitude >> 16) | (0x0040 * (magnitude > 0x7F80_0000) as u32);
    let h = if magnitude < 0x7F80_0000 { rounded } else { special };
    (h | (bits >> 31) << 15) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entry nearest to `v` by exact distances, the lower on a tie: the definition
    /// the encoder's lookup table must reproduce.
    fn nearest(code: &DynamicCode, v: f32) -> u8 {
        let v = v as f64;
        let mut best = 0;
        for k in 1..256 {
            if (code.values[k] as f64 - v).abs() < (code.values[best] as f64 - v).abs() {
                best = k;
            }
        }
        best as u8
    }

    /// Every threshold and its neighbours, every bucket edge, and a sweep of values in
    /// `[-1, 1]` encode to the nearest entry.
    #[test]
    fn every_path_encodes_alike() {
        // every threshold, one ulp either side, values beyond ±1, zeros and a ragged tail
        for code in [DynamicCode::signed(), DynamicCode::unsigned()] {
            let mut x: Vec<f32> = Vec::new();
            for &t in &code.above[..255] {
                x.extend([t, next_down(t), f32::from_bits(t.to_bits() + 1), -t]);
            }
            x.extend([0.0, -0.0, 1.0, -1.0, 1.5, -7.0, f32::MIN_POSITIVE, 1e-30, f32::INFINITY, f32::NEG_INFINITY]);
            for absmax in [1.0f32, 0.37, 3e-5] {
                let scaled: Vec<f32> = x.iter().map(|v| v * absmax).collect();
                for floor in [false, true] {
                    let mut out = vec![0u8; x.len()];
                    code.encode_scaled(&scaled, absmax, &mut out, floor);
                    for (i, (&v, &c)) in scaled.iter().zip(&out).enumerate() {
                        let e = code.encode(v / absmax);
                        let e = if floor && e == 0 && v > 0.0 { 1 } else { e };
                        assert_eq!(c, e, "value {i}: {v:e} over {absmax}, floor {floor}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_encoder_finds_the_nearest_entry() {
        for code in [DynamicCode::signed(), DynamicCode::unsigned()] {
            let mut probes: Vec<f32> = vec![0.0, -0.0, 1.0, -1.0, f32::MIN_POSITIVE, 1e-30, -1e-30];
            for &t in &code.above[..255] {
                probes.extend([t, next_down(t), f32::from_bits(t.to_bits().wrapping_add(1)), -t]);
            }
            for k in 0..BUCKETS {
                let (lo, hi) = bucket_range(k);
                probes.extend([lo, -lo, next_down(hi.min(1.0)), -next_down(hi.min(1.0))]);
            }
            let mut s = 0x9E37_79B9u32;
            for _ in 0..200_000 {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let u = f32::from_bits(0x3F80_0000 | (s >> 9)) - 1.0; // [0, 1)
                let e = (s & 31) as i32;
                probes.push(u * 2f32.powi(-e) * if s & 32 != 0 { -1.0 } else { 1.0 });
            }
            for v in probes.into_iter().filter(|v| (-1.0..=1.0).contains(v)) {
                if !code.signed && v < 0.0 {
                    assert_eq!(code.encode(v), 0, "{v}");
                    continue;
                }
                assert_eq!(code.encode(v), nearest(code, v), "{v:e} ({:#x})", v.to_bits());
            }
        }
    }
}
