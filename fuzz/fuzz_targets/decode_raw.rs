//! Fuzz target `decode_raw`: see `vmwatch_fuzz::decode_raw` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmwatch_fuzz::decode_raw(data));
