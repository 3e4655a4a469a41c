//! Fuzz target `panel_line`: see `vmwatch_fuzz::panel_line` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmwatch_fuzz::panel_line(data));
