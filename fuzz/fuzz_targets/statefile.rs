//! Fuzz target `statefile`: see `vmwatch_fuzz::statefile` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmwatch_fuzz::statefile(data));
