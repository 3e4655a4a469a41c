//! The test guests' firmware as a ROM image (tests/support/guest-firmware.S
//! explains what it does): shared by the end-to-end tests
//! (tests/common/guest.rs) and the bench (benches/vmwatch/guests.rs).

/// The firmware's code; see guest-firmware.S.
pub const FIRMWARE_HEX: &str = include_str!("guest-firmware.hex");

/// The 64 KiB ROM image: code at 0, `jmp far f000:0000` at the reset vector.
pub fn firmware_rom() -> Vec<u8> {
    let hex = FIRMWARE_HEX.trim();
    assert!(
        hex.len().is_multiple_of(2),
        "odd number of hex digits in the firmware"
    );
    let code: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit in the firmware"))
        .collect();
    assert!(code.len() < 0xfff0, "firmware code too large");
    let mut rom = vec![0xffu8; 65536];
    rom[..code.len()].copy_from_slice(&code);
    rom[0xfff0..0xfff5].copy_from_slice(&[0xea, 0x00, 0x00, 0x00, 0xf0]);
    rom
}
