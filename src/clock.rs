//! The two clocks a daemon reads, and how it notices that the wall clock
//! jumped.
//!
//! Wall-clock time ([`now_ms`]) is what the protocol, the state file and the
//! panel see; it can be stepped (an NTP step, `date -s`, a VM restored from a
//! snapshot). Intervals and liveness are measured on the monotonic clock
//! ([`mono_ms`]), which never jumps. Comparing how far each moved
//! ([`StepDetector`]) tells a step of the wall clock from time passing.

use std::sync::OnceLock;
use std::time::Instant;

/// A wall clock that moved this much more (or less) than the monotonic
/// clock between two looks has been stepped. NTP slews by at most 0.5 ms a
/// second, far below it; a busy process that looks late sees both clocks
/// move together, so lateness never counts.
pub const STEP_MS: i64 = 1_000;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Milliseconds on the monotonic clock, counted from the first call in this
/// process: for liveness and intervals, never for what is reported.
pub fn mono_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Detects steps of the wall clock by comparing its progress with the
/// monotonic clock's at each look.
#[derive(Debug, Default, Clone)]
pub struct StepDetector {
    last: Option<(u64, u64)>,
}

impl StepDetector {
    pub fn new() -> StepDetector {
        StepDetector::default()
    }

    /// Looks at both clocks (`wall_ms`, `mono_ms`); returns the step of the
    /// wall clock since the last look, in ms (positive: forward), if it
    /// moved more than [`STEP_MS`] apart from the monotonic clock.
    pub fn look(&mut self, wall_ms: u64, mono_ms: u64) -> Option<i64> {
        let step = self.last.map(|(w0, m0)| {
            let wall = wall_ms as i64 - w0 as i64;
            let mono = mono_ms as i64 - m0 as i64;
            wall - mono
        });
        self.last = Some((wall_ms, mono_ms));
        step.filter(|s| s.abs() > STEP_MS)
    }
}

/// `1 h 2 min 3 s` ahead/behind style text for a signed offset in ms.
/// Rounded to the second: an offset measured from a message includes its
/// transit time, a few milliseconds.
pub fn offset_text(ms: i64) -> String {
    let s = (ms.unsigned_abs() + 500) / 1000;
    let amount = match s {
        0..=119 => format!("{:.1} s", ms.unsigned_abs() as f64 / 1000.0),
        120..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    };
    format!("{amount} {}", if ms < 0 { "behind" } else { "ahead" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_told_from_time_passing() {
        const W: u64 = 1_800_000_000_000;
        let mut d = StepDetector::new();
        assert_eq!(
            d.look(W + 1_000_000, 0),
            None,
            "the first look has nothing to compare"
        );
        // A second passes on both clocks; then a late look (30 s on both).
        assert_eq!(d.look(W + 1_001_000, 1_000), None);
        assert_eq!(d.look(W + 1_031_000, 31_000), None);
        // Slewing (0.5 ms a second over 10 s) is not a step.
        assert_eq!(d.look(W + 1_041_005, 41_000), None);
        // Back 2 h in one second of real time.
        assert_eq!(d.look(W + 1_042_005 - 7_200_000, 42_000), Some(-7_200_000));
        // Forward 120 s, and set right again.
        assert_eq!(
            d.look(W + 1_043_005 - 7_200_000 + 120_000, 43_000),
            Some(120_000)
        );
        assert_eq!(d.look(W + 1_044_005, 44_000), Some(7_080_000));
        assert_eq!(d.look(W + 1_045_005, 45_000), None);
    }

    #[test]
    fn offsets_read_as_a_person_would_say_them() {
        assert_eq!(offset_text(-7_200_000), "2 h 0 min behind");
        assert_eq!(offset_text(-7_199_999), "2 h 0 min behind");
        assert_eq!(offset_text(3_599_700), "1 h 0 min ahead");
        assert_eq!(offset_text(120_000), "2 min 0 s ahead");
        assert_eq!(offset_text(1_500), "1.5 s ahead");
    }
}
