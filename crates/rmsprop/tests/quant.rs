//! The 8-bit codes and bfloat16 rounding of `rmsprop::quant` against what bitsandbytes
//! 0.50.2 and PyTorch 2.15 computed on the CPU (`testdata/bnb/quant.json`, written by
//! `testdata/bnb/record.py`), and against the paper's definition of the dynamic tree.

use rmsprop::quant::{self, BLOCK, DynamicCode};
use serde_json::Value;

fn recorded() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/bnb/quant.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("testdata/bnb/quant.json")).expect("JSON")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("an array").iter().map(|x| x.as_f64().expect("a number") as f32).collect()
}

/// The distance between two `f32` in units in the last place.
fn ulps(a: f32, b: f32) -> u32 {
    let key = |v: f32| if v.is_sign_negative() { -(v.abs().to_bits() as i64) } else { v.to_bits() as i64 };
    (key(a) - key(b)).unsigned_abs() as u32
}

/// Each entry is the paper's (Dettmers et al. 2022: per decade `10^(i-6)`, `i = 0..7`,
/// the midpoints of `2^i` (signed, ±) or `2^(i+1)` equal intervals of `[0.1, 1]`; then 0
/// and 1) rounded to `f32`, and within 2 ulps of the table bitsandbytes built on the
/// recording machine; the signed code's lowest entry is -1 (documented).
#[test]
fn the_code_tables_are_the_papers_dynamic_tree() {
    let data = recorded();
    for (name, code) in [("signed", DynamicCode::signed()), ("unsigned", DynamicCode::unsigned())] {
        let signed = code.is_signed();
        let mut paper = vec![0.0f64, 1.0];
        for i in 0..7 {
            let n = if signed { 1 << i } else { 2 << i };
            for j in 0..n {
                let lo = 0.1 + 0.9 * j as f64 / n as f64;
                let hi = 0.1 + 0.9 * (j + 1) as f64 / n as f64;
                let m = (lo + hi) / 2.0 * 10f64.powi(i - 6);
                paper.push(m);
                if signed {
                    paper.push(-m);
                }
            }
        }
        paper.sort_by(f64::total_cmp);
        if signed {
            assert!((paper[0] + 0.99296875).abs() < 1e-12, "the paper's lowest signed entry");
            paper[0] = -1.0;
        }
        let theirs = floats(&data["tables"][name]);
        assert_eq!(theirs.len(), 256);
        for (k, (&ours, (&exact, &bnb))) in code.values().iter().zip(paper.iter().zip(&theirs)).enumerate() {
            assert!(ulps(ours, exact as f32) <= 1, "{name} entry {k}: {ours:e} vs the paper's {exact:e}");
            let bnb = if signed && k == 0 { -1.0 } else { bnb };
            assert!(ulps(ours, bnb) <= 2, "{name} entry {k}: {ours:e} vs bitsandbytes' {bnb:e}");
        }
        assert!(code.values().windows(2).all(|w| w[0] < w[1]), "{name}: ascending, no entry twice");
    }
}

/// bitsandbytes' `quantize_blockwise` (block 256) of the recorded inputs: the same scale
/// in every bit, and for every value a code at least as near as bitsandbytes' (by exact
/// distance, each to its own table's entry). bitsandbytes' CPU encoder looks entries up
/// with an approximate search (`BinSearch`'s `Direct2`): it is exact for most values a
/// thousandth of the scale or more (we agree on 99 % of those) and maps smaller ones,
/// zeros included, to entries near 2e-5 of the scale, where ours keeps them at or near 0.
/// In a block of zeros bitsandbytes divides 0 by 0 and stores code 0 (-1 · 0); ours
/// stores the code of 0.
#[test]
fn blocks_quantise_as_bitsandbytes_quantises_them_or_nearer() {
    let data = recorded();
    assert_eq!(data["block"].as_u64(), Some(BLOCK as u64));
    let (mut large, mut same_large, mut nearer) = (0, 0, 0);
    for case in data["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let x = floats(&case["input"]);
        let theirs: Vec<u8> =
            case["codes"].as_array().expect("codes").iter().map(|c| c.as_u64().expect("a code") as u8).collect();
        let absmax = floats(&case["absmax"]);
        let table = case["table"].as_str().expect("table");
        let mut their_table = floats(&data["tables"][table]);
        let code = if table == "signed" { DynamicCode::signed() } else { DynamicCode::unsigned() };
        if code.is_signed() {
            their_table[0] = -1.0; // as its CPU encoder sets it
        }
        let mut ours = vec![0u8; x.len()];
        for (b, (block, out)) in x.chunks(BLOCK).zip(ours.chunks_mut(BLOCK)).enumerate() {
            let scale = quant::quantize(code, block, out).expect("same lengths");
            assert_eq!(scale.to_bits(), absmax[b].to_bits(), "{name} block {b}: scale");
            if scale == 0.0 {
                assert!(out.iter().all(|&c| code.decode(c) == 0.0), "{name} block {b}: zeros keep the code of 0");
                continue;
            }
            for (i, &v) in block.iter().enumerate() {
                let (mine, bnb) = (out[i], theirs[b * BLOCK + i]);
                let normed = (v / scale) as f64;
                let (d_mine, d_bnb) =
                    ((code.decode(mine) as f64 - normed).abs(), (their_table[bnb as usize] as f64 - normed).abs());
                // the same code is the same entry (the tables differ by an ulp or two)
                assert!(
                    mine == bnb || d_mine <= d_bnb * (1.0 + 1e-4),
                    "{name} value {i} of block {b}: {v:e} → {mine} ({d_mine:e} away) vs bitsandbytes' {bnb} ({d_bnb:e})"
                );
                nearer += usize::from(mine != bnb && d_mine < d_bnb * (1.0 - 1e-4));
                if normed.abs() >= 1e-3 {
                    large += 1;
                    same_large += usize::from(mine == bnb);
                }
            }
        }
    }
    assert!(large > 2000 && same_large * 100 >= large * 99, "the same code for {same_large} of {large}");
    assert!(nearer > 0, "the recording has values bitsandbytes' search misplaces");
}

/// `to_bf16` rounds as PyTorch's `.to(torch.bfloat16)`.
#[test]
fn bfloat16_rounds_as_torch_rounds() {
    for case in recorded()["cases"].as_array().expect("cases") {
        let x = floats(&case["input"]);
        for (v, bits) in x.iter().zip(case["bf16_bits"].as_array().expect("bits")) {
            assert_eq!(quant::to_bf16(*v), bits.as_u64().expect("bits") as u16, "{v:e}");
        }
    }
}

/// Quantising what a block decodes to gives the same codes and scale again (the extremes
/// decode to exactly ±scale), so a checkpoint converted back and forth does not drift;
/// and every decoded value is the nearest the block can hold.
#[test]
fn decoded_blocks_quantise_to_themselves() {
    let mut s = 12345u64;
    let mut next = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    for (code, scale) in [(DynamicCode::signed(), 3.5f32), (DynamicCode::unsigned(), 1e-3)] {
        for trial in 0..50 {
            let x: Vec<f32> = (0..BLOCK)
                .map(|i| {
                    let v = next() * scale * 10f32.powi(-(((i + trial) % 7) as i32));
                    if code.is_signed() { v } else { v.abs() }
                })
                .collect();
            let (mut c1, mut c2) = (vec![0u8; BLOCK], vec![0u8; BLOCK]);
            let a1 = quant::quantize(code, &x, &mut c1).expect("same lengths");
            let mut back = vec![0f32; BLOCK];
            quant::dequantize(code, &c1, a1, &mut back).expect("same lengths");
            for (i, (&v, &d)) in x.iter().zip(&back).enumerate() {
                let best =
                    code.values().iter().map(|&e| ((e * a1) as f64 - v as f64).abs()).fold(f64::INFINITY, f64::min);
                assert!(((d as f64) - v as f64).abs() <= best * (1.0 + 1e-6) + 1e-45, "value {i}: {v:e} → {d:e}");
            }
            let a2 = quant::quantize(code, &back, &mut c2).expect("same lengths");
            assert_eq!((a1.to_bits(), &c1), (a2.to_bits(), &c2), "trial {trial}");
        }
    }
}

/// Buffers of another length than the block are refused with the lengths, not a panic.
#[test]
fn buffers_of_another_length_are_errors() {
    let code = DynamicCode::unsigned();
    let e = quant::quantize(code, &[1.0, 2.0], &mut [0u8; 3]).unwrap_err().to_string();
    assert_eq!(e, "codes of tensor \"block\" has 3 elements, expected 2 (shape [2])");
    let e = quant::dequantize(code, &[1, 2], 1.0, &mut [0f32; 1]).unwrap_err().to_string();
    assert_eq!(e, "values of tensor \"block\" has 1 elements, expected 2 (shape [2])");
}
