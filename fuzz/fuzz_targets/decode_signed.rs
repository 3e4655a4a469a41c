//! Fuzz target `decode_signed`: see `vmwatch_fuzz::decode_signed` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmwatch_fuzz::decode_signed(data));
