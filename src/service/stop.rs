//! An orderly stop: the flag every thread watches, the first fatal failure,
//! and a join that gives up at a deadline.
//!
//! A stop has one budget, counted from the moment it was asked for
//! ([`Shutdown::deadline`]); a thread that has not ended by then (blocked in
//! libvirt, or in a hung panel call) is left behind rather than holding the
//! process past the init scripts' SIGKILL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Shared by every thread of a daemon: whether to stop, and why it failed.
#[derive(Default)]
pub struct Shutdown {
    stop: AtomicBool,
    failure: Mutex<Option<String>>,
    /// When the stop was first asked for: every stop has a deadline from it.
    since: Mutex<Option<Instant>>,
    /// Wakes the threads napping in [`Shutdown::nap`] when a stop is asked
    /// for, so a timer thread sleeps until its next tick instead of polling
    /// the flag (an idle node should not wake for nothing).
    bell: Condvar,
    bell_lock: Mutex<()>,
}

impl Shutdown {
    pub fn new() -> Arc<Shutdown> {
        Arc::new(Shutdown::default())
    }

    /// Asks every thread to finish its work and stop.
    pub fn request_stop(&self) {
        self.since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(Instant::now);
        self.stop.store(true, Ordering::SeqCst);
        // Taken so that a napper between its check and its wait is not missed.
        let _held = self.bell_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.bell.notify_all();
    }

    /// Sleeps for `time` or until a stop is asked for, whichever comes
    /// first; true if stopping.
    pub fn nap(&self, time: Duration) -> bool {
        let held = self.bell_lock.lock().unwrap_or_else(|p| p.into_inner());
        let _held = self
            .bell
            .wait_timeout_while(held, time, |_| !self.stopping())
            .unwrap_or_else(|p| p.into_inner());
        self.stopping()
    }

    /// The moment `after` has passed since the stop was asked for (`None`
    /// while running): what a stopping thread must finish by.
    pub fn deadline(&self, after: Duration) -> Option<Instant> {
        let since = *self.since.lock().unwrap_or_else(|p| p.into_inner());
        since.map(|t| t + after)
    }

    /// Records a fatal failure (the first one wins) and asks for a stop.
    pub fn fail(&self, why: String) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(why);
        }
        drop(f);
        self.request_stop();
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// How long a daemon may take to stop, from the signal to its exit: well
/// inside the init scripts' 10 s before SIGKILL (`STOP_DELAY`) and systemd's
/// `TimeoutStopSec=30`. Threads that have not finished by then are left
/// behind (the process exits without them); what they held was saved first.
pub const STOP_BUDGET: Duration = Duration::from_secs(7);

/// Waits until `handle`'s thread ends or `deadline` passes; `Some` with its
/// result if it ended. A thread blocked in a library call (libvirt, a hung
/// panel) cannot hold a stop past its deadline.
pub fn join_until<T>(handle: std::thread::JoinHandle<T>, deadline: Instant) -> Option<T> {
    let mut nap = Duration::from_millis(1);
    while !handle.is_finished() {
        let now = Instant::now();
        if now >= deadline {
            log::warn!(
                "thread {} did not stop in time; exiting without it",
                handle.thread().name().unwrap_or("?")
            );
            return None;
        }
        std::thread::sleep(nap.min(deadline - now));
        nap = (nap * 2).min(Duration::from_millis(20));
    }
    handle.join().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_stops_and_keeps_the_first_reason() {
        let s = Shutdown::new();
        assert!(!s.stopping());
        s.fail("first".into());
        s.fail("second".into());
        assert!(s.stopping());
        assert_eq!(s.failure().as_deref(), Some("first"));
    }

    #[test]
    fn a_nap_ends_at_its_time_or_at_a_stop() {
        let s = Shutdown::new();
        assert!(!s.nap(Duration::from_millis(1)), "no stop was asked for");
        // An hour's nap ends when the stop is asked for; the test gives up
        // waiting for that long before the hour would.
        let (tx, rx) = std::sync::mpsc::channel();
        let napper = {
            let s = s.clone();
            std::thread::spawn(move || tx.send(s.nap(Duration::from_secs(3600))))
        };
        s.request_stop();
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(true));
        napper.join().unwrap().unwrap();
        assert!(s.nap(Duration::from_secs(3600)), "stopping: no nap at all");
    }
}
