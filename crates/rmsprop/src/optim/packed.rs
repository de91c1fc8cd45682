//! State kept in fewer bytes than its arithmetic type ([`StateStorage`]): the arenas that
//! hold it, and the decode and encode around a chunk's loop.
//!
//! A step stages a packed tensor's chunk: its state is decoded to `f32` into the thread's
//! scratch (in cache), the optimizer's loop runs on it exactly as on `f32` state, and the
//! result is encoded back; parameters and gradients are read and written in place. Only
//! the packed bytes travel to and from memory.

use super::state::Tracked;
use crate::StateStorage;
use crate::buffer::Buffer;
use crate::float::Float;
use crate::kernel::MAX_SLOTS;
use crate::kernel::widest_closure;
use crate::quant::{BLOCK, DynamicCode, bf16_adding, dequantize_block, quantize_block};

/// Elements staged at a time: a multiple of the block, small enough that a stage's
/// decoded state stays in the first-level cache between the decode, the loop and the
/// encode.
pub(crate) const STAGE: usize = 1024;

/// A group's state bounds (see [`guard`](super::guard)) for the values its storage keeps
/// of state within `bounds`: bfloat16 rounds up by at most 2^-8 (8-bit codes decode to at
/// most the block's largest magnitude), and a centred average of squares may be raised
/// to its mean's square.
pub(crate) fn widen(
    storage: StateStorage,
    covers: Option<(usize, usize)>,
    bounds: [f64; MAX_SLOTS],
) -> [f64; MAX_SLOTS] {
    if storage == StateStorage::F32 {
        return bounds;
    }
    let mut b = bounds.map(|v| v * (1.0 + 1.0 / 128.0));
    if let Some((s, m)) = covers {
        b[s] = b[s].max(b[m] * b[m] * (1.0 + 1.0 / 1024.0));
    }
    b
}

/// One state slot's packed arenas, for every tensor kept in bfloat16 or 8 bits: the
/// bfloat16 values, the 8-bit codes (back to back) and the scales, one per block of each
/// tensor's codes (see [`Tracked::scale_at`]).
#[derive(Clone, Debug)]
pub(crate) struct Packed {
    pub(crate) half: Buffer<u16>,
    pub(crate) codes: Buffer<u8>,
    pub(crate) scales: Buffer<f32>,
}

impl Packed {
    pub(crate) fn empty() -> Self {
        Packed { half: Buffer::filled(0, 0), codes: Buffer::filled(0, 0), scales: Buffer::filled(0, 0.0) }
    }

    /// Raw pointers to the three arenas (see [`Buffer::as_mut_ptr`]), for a step's threads.
    pub(crate) fn ptrs(&mut self) -> PackedPtrs {
        PackedPtrs { half: self.half.as_mut_ptr(), codes: self.codes.as_mut_ptr(), scales: self.scales.as_mut_ptr() }
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.half.len() * 2 + self.codes.len() + self.scales.len() * 4
    }

    /// The `n` values of a tensor's slot kept in `storage` from element `at` (for 8 bits,
    /// the first of them starting a block, whose scale is at `block`), decoded.
    pub(crate) fn read(&self, storage: StateStorage, squares: bool, at: usize, block: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; n];
        match storage {
            StateStorage::F32 => unreachable!("f32 state is in the arena"),
            StateStorage::Bf16 => decode_bf16(&self.half[at..at + n], &mut out),
            StateStorage::Int8 => {
                let scales = &self.scales[block..block + n.div_ceil(BLOCK)];
                decode_int8(DynamicCode::for_state(squares), &self.codes[at..at + n], scales, &mut out)
            }
        }
        out
    }

    /// Encodes `values` into a tensor's slot kept in `storage` from element `at` (for 8
    /// bits, the first of them starting a block, whose scale is at `block`).
    pub(crate) fn write(&mut self, storage: StateStorage, squares: bool, at: usize, block: usize, values: &[f32]) {
        let n = values.len();
        match storage {
            StateStorage::F32 => unreachable!("f32 state is in the arena"),
            StateStorage::Bf16 => encode_bf16(values, &mut self.half[at..at + n], squares),
            StateStorage::Int8 => {
                let scales = &mut self.scales[block..block + n.div_ceil(BLOCK)];
                encode_int8(DynamicCode::for_state(squares), values, &mut self.codes[at..at + n], scales, squares)
            }
        }
    }
}

/// Where a step writes a slot's packed state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackedPtrs {
    half: *mut u16,
    codes: *mut u8,
    scales: *mut f32,
}

impl Default for PackedPtrs {
    fn default() -> Self {
        PackedPtrs { half: std::ptr::null_mut(), codes: std::ptr::null_mut(), scales: std::ptr::null_mut() }
    }
}

// SAFETY: taken from the optimizer's arenas at the start of a step, dereferenced only
// during it, each thread on the disjoint elements (and, for codes, whole blocks) of its
// own chunks.
unsafe impl Send for PackedPtrs {}
unsafe impl Sync for PackedPtrs {}

/// The slice of `v` as `f32`: the state of a packed tensor is `f32` state (an `f64`
/// optimizer keeps full state, see [`check_storage`]).
fn as_f32<A: Float>(v: &mut [A]) -> &mut [f32] {
    assert_eq!(A::DTYPE, crate::Dtype::F32, "packed state is float32 state");
    // SAFETY: `A` is `f32` (its dtype tag, which only `f32` carries; `Float` is sealed by
    // `Param`'s planner), so the slice is one of `f32`.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<f32>(), v.len()) }
}

/// Stages elements `start..start + n` of tensor `tr`'s state for its loop: where it is
/// packed, decoded into `bufs` (and a centred group's average of squares raised to its
/// mean's square where rounding left it below); where it is not and `copy`, copied into
/// `bufs` from `state` (a trial's copy); otherwise left where it is. Returns the pointers
/// the loop runs on (null for unused slots).
///
/// # Safety
/// `state` are the tensor's `f32` state pointers (null where unused or packed) and
/// `packed` the step's packed arenas, valid for the tensor's elements; nothing else
/// accesses those elements during the call; `start + n <= tr.numel` and `n` fits `bufs`.
pub(crate) unsafe fn stage<A: Float>(
    tr: &Tracked,
    state: [*mut A; MAX_SLOTS],
    packed: &[PackedPtrs; MAX_SLOTS],
    start: usize,
    n: usize,
    bufs: &mut [Vec<A>; MAX_SLOTS],
    copy: bool,
) -> [*mut A; MAX_SLOTS] {
    let mut out = [std::ptr::null_mut(); MAX_SLOTS];
    for k in 0..MAX_SLOTS {
        let Some(offset) = tr.offset[k] else { continue };
        let at = offset + start;
        let buf = &mut bufs[k][..n];
        match tr.storage {
            StateStorage::F32 if copy => {
                // SAFETY: the caller's: `state[k]` holds the tensor's slot.
                buf.copy_from_slice(unsafe { std::slice::from_raw_parts(state[k].add(start), n) })
            }
            // SAFETY: as above.
            StateStorage::F32 => out[k] = unsafe { state[k].add(start) },
            StateStorage::Bf16 => {
                // SAFETY: the caller's: the arena holds the tensor's elements from `offset`.
                let (src, out) = (unsafe { std::slice::from_raw_parts(packed[k].half.add(at), n) }, as_f32(buf));
                widest_closure(
                    #[inline(always)]
                    || decode_bf16(src, out),
                )
            }
            StateStorage::Int8 => {
                // SAFETY: as above; `start` is a multiple of the block (chunks and stages
                // are), and the tensor's scales start at `scale_at`.
                let (codes, scales) = unsafe {
                    let blocks = scales_of(tr, k, start, n);
                    let scales = std::slice::from_raw_parts(packed[k].scales.add(blocks.start), blocks.len());
                    (std::slice::from_raw_parts(packed[k].codes.add(at), n), scales)
                };
                let (code, out) = (DynamicCode::for_state(tr.squares[k]), as_f32(buf));
                widest_closure(
                    #[inline(always)]
                    || decode_int8(code, codes, scales, out),
                )
            }
        }
        if out[k].is_null() {
            out[k] = buf.as_mut_ptr();
        }
    }
    if let (Some((s, m)), true) = (tr.covers, tr.storage != StateStorage::F32) {
        let [s, m] = [s, m].map(|k| out[k]);
        // SAFETY: two distinct slots' staged buffers of `n` values each.
        let (s, m) = unsafe { (std::slice::from_raw_parts_mut(s, n), std::slice::from_raw_parts(m, n)) };
        let (s, m) = (as_f32(s), as_f32_ref(m));
        widest_closure(
            #[inline(always)]
            || raise_to_square(s, m),
        );
    }
    out
}

/// Encodes the staged state of [`stage`] (elements `start..start + n` of tensor `tr`)
/// into the packed arenas; `f32` state was updated in place and is left.
///
/// # Safety
/// As [`stage`].
pub(crate) unsafe fn unstage<A: Float>(
    tr: &Tracked,
    packed: &[PackedPtrs; MAX_SLOTS],
    start: usize,
    n: usize,
    bufs: &mut [Vec<A>; MAX_SLOTS],
    stochastic: Option<(u64, usize)>,
) {
    for k in 0..MAX_SLOTS {
        let Some(offset) = tr.offset[k] else { continue };
        let at = offset + start;
        let from = as_f32(&mut bufs[k][..n]);
        match tr.storage {
            StateStorage::F32 => return,
            StateStorage::Bf16 => {
                // SAFETY: the caller's, as in `stage`.
                let (dst, squares) =
                    (unsafe { std::slice::from_raw_parts_mut(packed[k].half.add(at), n) }, tr.squares[k]);
                match stochastic {
                    None => widest_closure(
                        #[inline(always)]
                        || encode_bf16(from, dst, squares),
                    ),
                    Some((step, tensor)) => {
                        // the index in the whole tensor (a shard's piece starts at `first`)
                        let first = (tr.first + start) as u64;
                        let key = crate::quant::stochastic_key(step, tensor, k, (first >> 32) as u32);
                        widest_closure(
                            #[inline(always)]
                            || encode_bf16_stochastic(from, dst, squares, key, first as u32),
                        )
                    }
                }
            }
            StateStorage::Int8 => {
                // SAFETY: as in `stage`.
                let (codes, scales) = unsafe {
                    let blocks = scales_of(tr, k, start, n);
                    let scales = std::slice::from_raw_parts_mut(packed[k].scales.add(blocks.start), blocks.len());
                    (std::slice::from_raw_parts_mut(packed[k].codes.add(at), n), scales)
                };
                let (code, squares) = (DynamicCode::for_state(tr.squares[k]), tr.squares[k]);
                widest_closure(
                    #[inline(always)]
                    || encode_int8(code, from, codes, scales, squares),
                )
            }
        }
    }
}

/// Where the scales of elements `start..start + n` of tensor `tr`'s 8-bit slot `k` are
/// (`start` a multiple of the block: chunks and stages are).
fn scales_of(tr: &Tracked, k: usize, start: usize, n: usize) -> std::ops::Range<usize> {
    tr.scale_at[k] + start / BLOCK..tr.scale_at[k] + (start + n).div_ceil(BLOCK)
}

/// [`as_f32`] of a shared slice.
fn as_f32_ref<A: Float>(v: &[A]) -> &[f32] {
    assert_eq!(A::DTYPE, crate::Dtype::F32, "packed state is float32 state");
    // SAFETY: as in `as_f32`.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<f32>(), v.len()) }
}

/// `s = max(s, m² (1 + 2ε))`: the average of squares of a centred group at least the
/// square of its mean, by a margin that keeps `s - m·m` positive however it is rounded
/// (`fma(-m, m, s)` included). Only where rounding the state left it below.
#[inline(always)]
pub(crate) fn raise_to_square(s: &mut [f32], m: &[f32]) {
    for (s, &m) in s.iter_mut().zip(m) {
        let floor = m * m * (1.0 + 2.0 * f32::EPSILON);
        *s = if *s < floor { floor } else { *s };
    }
}

/// bfloat16 bits to `f32` (exact).
#[inline(always)]
pub(crate) fn decode_bf16(src: &[u16], out: &mut [f32]) {
    for (o, &b) in out.iter_mut().zip(src) {
        *o = f32::from_bits((b as u32) << 16);
    }
}

/// `f32` to bfloat16, nearest with ties to even (see [`bf16_adding`]: a finite value keeps
/// at most bfloat16's largest), a positive square at least the smallest positive bfloat16.
#[inline(always)]
pub(crate) fn encode_bf16(from: &[f32], dst: &mut [u16], squares: bool) {
    for (d, &v) in dst.iter_mut().zip(from) {
        *d = kept_bf16(v, 0x7FFF + ((v.to_bits() >> 16) & 1), squares);
    }
}

/// [`encode_bf16`] rounding stochastically: element `i` with the random bits of index
/// `first + i` under `key` (see [`quant::stochastic_bits`](crate::quant::stochastic_bits);
/// the indices of one call share their top 32 bits).
#[inline(always)]
pub(crate) fn encode_bf16_stochastic(from: &[f32], dst: &mut [u16], squares: bool, key: u32, first: u32) {
    for (i, (d, &v)) in dst.iter_mut().zip(from).enumerate() {
        let random = crate::quant::lowbias32(key ^ first.wrapping_add(i as u32)) >> 16;
        *d = kept_bf16(v, random, squares);
    }
}

/// `v` in bfloat16 by [`bf16_adding`] `add`; in a state of squares a positive value keeps
/// at least the smallest positive bfloat16 rather than 0.
#[inline(always)]
fn kept_bf16(v: f32, add: u32, squares: bool) -> u16 {
    let h = bf16_adding(v, add);
    if squares & (v.to_bits() as i32 > 0) { h.max(1) } else { h }
}

/// Block-wise 8-bit codes to `f32`: `code[c] · absmax` (one scale per [`BLOCK`]).
#[inline(always)]
pub(crate) fn decode_int8(code: &DynamicCode, codes: &[u8], scales: &[f32], out: &mut [f32]) {
    for ((out, codes), &absmax) in out.chunks_mut(BLOCK).zip(codes.chunks(BLOCK)).zip(scales) {
        dequantize_block(code, codes, absmax, out);
    }
}

/// `f32` to block-wise 8-bit codes, block by block as [`quant::quantize`](crate::quant::quantize);
/// in a state of squares a positive value takes at least the smallest positive entry.
#[inline(always)]
pub(crate) fn encode_int8(code: &DynamicCode, from: &[f32], codes: &mut [u8], scales: &mut [f32], squares: bool) {
    for ((from, codes), scale) in from.chunks(BLOCK).zip(codes.chunks_mut(BLOCK)).zip(scales) {
        *scale = quantize_block(code, from, codes, squares);
    }
}

/// Packed state holds `f32` values: an `f64` optimizer keeps its state whole (stochastic
/// rounding without bfloat16 state is refused by the configuration's own validation).
pub(crate) fn check_storage<A: Float>(config: &super::OptimizerConfig) -> crate::Result<()> {
    let storage = config.common().state_storage;
    if storage == StateStorage::F32 || A::DTYPE == crate::Dtype::F32 {
        return Ok(());
    }
    Err(crate::Error::InvalidCombination {
        optimizer: config.name(),
        reason: format!(
            "state_storage {storage} packs float32 state; a float64 optimizer keeps its state in float64 \
             (use state_storage f32, or a float32 optimizer)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even_and_never_overflows_or_loses_a_positive_square() {
        let cases: [(f32, u16); 6] = [
            (1.0, 0x3F80),
            (f32::from_bits(0x3F80_8000), 0x3F80), // a tie: to the even
            (f32::from_bits(0x3F81_8000), 0x3F82),
            (f32::MAX, 0x7F7F), // would round to ∞
            (-f32::MAX, 0xFF7F),
            (f32::INFINITY, 0x7F80),
        ];
        for (v, bits) in cases {
            let mut d = [0u16];
            encode_bf16(&[v], &mut d, false);
            assert_eq!(d[0], bits, "{v:e}");
            // where bfloat16 is finite, the `half` crate's rounding
            if bits & 0x7FFF != 0x7F7F {
                assert_eq!(d[0], half::bf16::from_f32(v).to_bits(), "{v:e}");
            }
        }
        let tiny = f32::from_bits(1); // rounds to 0
        let mut d = [7u16; 2];
        encode_bf16(&[tiny, tiny], &mut d[..1], true);
        encode_bf16(&[tiny], &mut d[1..], false);
        assert_eq!(d, [1, 0]);
        encode_bf16(&[f32::NAN], &mut d[..1], false);
        assert!(f32::from_bits((d[0] as u32) << 16).is_nan());
    }

    #[test]
    fn int8_matches_the_quantiser_and_keeps_positive_squares_positive() {
        let v: Vec<f32> = (0..300).map(|i| ((i * 37 % 101) as f32 - 50.0) * 1e-3).collect();
        let mut codes = vec![0u8; 300];
        let mut scales = [0f32; 2];
        encode_int8(DynamicCode::signed(), &v, &mut codes, &mut scales, false);
        for b in 0..2 {
            let block = &v[b * BLOCK..(v.len()).min((b + 1) * BLOCK)];
            let mut expected = vec![0u8; block.len()];
            let s = crate::quant::quantize(DynamicCode::signed(), block, &mut expected).unwrap();
            assert_eq!((scales[b], &codes[b * BLOCK..b * BLOCK + block.len()]), (s, &expected[..]));
        }
        // a square 1e-12 of its block's largest decodes to a positive value, not 0
        let sq = [1.0f32, 1e-12, 0.0];
        let (mut c, mut s, mut out) = ([0u8; 3], [0f32], [0f32; 3]);
        encode_int8(DynamicCode::unsigned(), &sq, &mut c, &mut s, true);
        decode_int8(DynamicCode::unsigned(), &c, &s, &mut out);
        assert_eq!((out[0], out[2]), (1.0, 0.0));
        assert!(out[1] > 1e-12, "{}", out[1]);
    }

    #[test]
    fn a_centred_average_is_raised_above_its_means_square() {
        let mut s = [0.25f32, 0.0, 4.0];
        raise_to_square(&mut s, &[0.5, -1e-3, 1.0]);
        assert!(s[0] > 0.25 && s[0] - 0.5f32.mul_add(-0.5, 0.0) > 0.0);
        assert!(s[1] > 1e-6 && (-1e-3f32).mul_add(1e-3, s[1]) > 0.0);
        assert_eq!(s[2], 4.0);
    }
}
