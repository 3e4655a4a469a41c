//! The node's own clock: a step of its wall clock is logged and reported in
//! the status file (`clock` line, docs/node-status.md), which check_vmwatch
//! raises as CRITICAL.
//!
//! The node's intervals (heartbeat, sync, stats, status) all run on the
//! monotonic clock, so a step changes nothing in what it does; but every
//! timestamp it sends moves with it, and a node cannot ask the master what
//! the time is (the link is one-way). So it reports what it can know: that
//! its clock stepped, by how much in total, and since when. The report is
//! cleared when later steps undo the first (the clock was set right) or an
//! hour after the last step (an NTP step that put a wrong clock right); the
//! master's own check of the node's offset (`clock node` in its state file)
//! keeps saying so for as long as the clock really is off.

use crate::clock::{offset_text, StepDetector, STEP_MS};

/// How long a step that was not undone stays reported, on the monotonic
/// clock.
pub const HOLD_MS: u64 = 3_600_000;

/// Watches the node's wall clock for steps.
#[derive(Debug, Default)]
pub struct ClockStep {
    steps: StepDetector,
    /// Steps since the clock was last seen right, in ms (+: forward).
    stepped_ms: i64,
    /// When the report started (wall ms) and the last step (monotonic ms).
    since_ms: u64,
    last_step_mono: u64,
}

impl ClockStep {
    pub fn new() -> ClockStep {
        ClockStep::default()
    }

    /// Looks at both clocks; returns the step reported now, `(total ms,
    /// since ms)`, or `None` if the clock is as it was.
    pub fn look(&mut self, wall_ms: u64, mono_ms: u64) -> Option<(i64, u64)> {
        if let Some(step) = self.steps.look(wall_ms, mono_ms) {
            if self.stepped_ms == 0 {
                self.since_ms = wall_ms;
            }
            self.stepped_ms += step;
            self.last_step_mono = mono_ms;
            log::error!(
                "this node's clock stepped: it is now {} what it was a moment ago \
                 ({} in all); the messages it signs carry that time (check NTP on this node)",
                offset_text(step),
                offset_text(self.stepped_ms)
            );
            if self.stepped_ms.abs() <= STEP_MS {
                log::info!("this node's clock is back where it was before it stepped");
                self.stepped_ms = 0;
            }
        }
        if self.stepped_ms != 0 && mono_ms.saturating_sub(self.last_step_mono) > HOLD_MS {
            log::info!(
                "this node's clock stepped {} an hour ago and was not set back: no longer reported",
                offset_text(self.stepped_ms)
            );
            self.stepped_ms = 0;
        }
        (self.stepped_ms != 0).then_some((self.stepped_ms, self.since_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 1_800_000_000_000;

    #[test]
    fn a_step_is_reported_until_undone_or_an_hour_passes() {
        let mut c = ClockStep::new();
        assert_eq!(c.look(W, 0), None);
        assert_eq!(c.look(W + 1000, 1000), None);
        // Back 1 h, then set right.
        assert_eq!(
            c.look(W + 2000 - 3_600_000, 2000),
            Some((-3_600_000, W + 2000 - 3_600_000))
        );
        assert_eq!(
            c.look(W + 3000 - 3_600_000, 3000),
            Some((-3_600_000, W + 2000 - 3_600_000))
        );
        assert_eq!(c.look(W + 4000, 4000), None);
        // Forward 120 s, never undone: reported for an hour.
        assert!(c.look(W + 125_000, 5000).is_some());
        assert!(c.look(W + 125_000 + HOLD_MS, 5000 + HOLD_MS).is_some());
        assert_eq!(c.look(W + 126_000 + HOLD_MS, 6000 + HOLD_MS), None);
    }
}
