#![no_main]
#![allow(dead_code)]
include!("../harness.rs");
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| golden_file(bytes));
