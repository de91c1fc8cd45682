#![no_main]
#![allow(dead_code)]
include!("../harness_candle.rs");
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| candle_aliasing(bytes));
