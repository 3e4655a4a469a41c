//! Rate limiting for log lines that remote input can trigger.
//!
//! A misconfigured node (wrong secret) or a hostile sender can produce
//! thousands of rejections a second; logging each would fill the disk and
//! drown syslog. Each kind of message gets a small budget per window; what is
//! suppressed is counted and reported with the next line that gets through.

use std::time::{Duration, Instant};

/// A per-kind budget of `burst` lines per `window`.
#[derive(Debug)]
pub struct RateLimit {
    window: Duration,
    burst: u32,
    start: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(burst: u32, window: Duration) -> RateLimit {
        RateLimit {
            window,
            burst,
            start: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may be logged now. `Some(n)`: yes, and `n` similar
    /// lines were suppressed since the last one that got through.
    pub fn check(&mut self, now: Instant) -> Option<u64> {
        match self.start {
            Some(s) if now.duration_since(s) < self.window => {}
            _ => {
                self.start = Some(now);
                self.used = 0;
            }
        }
        if self.used < self.burst {
            self.used += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// Logs `$($arg)*` at `$level` if `$limit` allows, noting suppressed lines.
#[macro_export]
macro_rules! log_limited {
    ($limit:expr, $level:expr, $($arg:tt)*) => {
        if let Some(skipped) = $limit.check(::std::time::Instant::now()) {
            if skipped > 0 {
                ::log::log!($level, "{} ({} similar messages suppressed)", format_args!($($arg)*), skipped);
            } else {
                ::log::log!($level, $($arg)*);
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_counts_what_it_suppresses() {
        let mut r = RateLimit::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(r.check(t0), Some(0));
        assert_eq!(r.check(t0), Some(0));
        assert_eq!(r.check(t0), None);
        assert_eq!(r.check(t0 + Duration::from_secs(1)), None);
        // A new window lets lines through again and reports the two dropped.
        assert_eq!(r.check(t0 + Duration::from_secs(11)), Some(2));
        assert_eq!(r.check(t0 + Duration::from_secs(11)), Some(0));
    }
}
