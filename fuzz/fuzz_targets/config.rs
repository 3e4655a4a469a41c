//! Fuzz target `config`: see `vmwatch_fuzz::config` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmwatch_fuzz::config(data));
