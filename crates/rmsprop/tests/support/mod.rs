//! What the tests of packed state share.

use rmsprop::StateStorage;
use rmsprop::quant::{self, BLOCK, DynamicCode};

/// What `storage` keeps of `values`, by the module's definition: bfloat16 nearest-even
/// (a positive square never 0), or per block of 256 the scale and nearest code of
/// `quant::quantize` (a positive square never code 0), decoded.
pub fn kept(values: &[f32], storage: StateStorage, squares: bool) -> Vec<f32> {
    match storage {
        StateStorage::F32 => values.to_vec(),
        StateStorage::Bf16 => values
            .iter()
            .map(|&v| {
                let b = quant::to_bf16(v);
                quant::from_bf16(if squares && v > 0.0 && b == 0 { 1 } else { b })
            })
            .collect(),
        StateStorage::Int8 => {
            let code = if squares { DynamicCode::unsigned() } else { DynamicCode::signed() };
            let mut out = vec![0.0; values.len()];
            for (block, out) in values.chunks(BLOCK).zip(out.chunks_mut(BLOCK)) {
                let mut codes = vec![0u8; block.len()];
                let absmax = quant::quantize(code, block, &mut codes).unwrap();
                for (c, &v) in codes.iter_mut().zip(block) {
                    if squares && *c == 0 && v > 0.0 {
                        *c = 1;
                    }
                }
                quant::dequantize(code, &codes, absmax, out).unwrap();
            }
            out
        }
    }
}
