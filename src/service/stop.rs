//! An orderly stop: the flag every thread watches, the first fatal failure,
//! and a join that gives up at a deadline.
//!
//! A stop has one budget, counted from the moment it was asked for
//! ([`Shutdown::deadline`]); a thread that has not ended by then (blocked in
//! libvirt, or in a hung panel call) is left behind rather than holding the
//! process past the init scripts' SIGKILL.
//!
//! No thread polls the flag on a timer: each sleeps until it has work or a
//! stop is asked for, and [`Shutdown::request_stop`] (which
//! [`Shutdown::fail`] calls) wakes every kind of sleeper: threads napping
//! on a timer ([`Shutdown::nap`]), threads waiting in `poll` on descriptors
//! (the stop bell, [`Shutdown::stop_fd`]), and threads waiting on something
//! else, a channel or a condition variable, through the wake-up they
//! registered ([`Shutdown::on_stop`]).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::bell::Bell;

/// A wake-up for a thread that waits on something of its own.
type Waker = Box<dyn FnOnce() + Send>;

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
    naps: Condvar,
    nap_lock: Mutex<()>,
    /// Rung at the stop and never cleared: readable from then on.
    bell: Bell,
    /// Run once at the stop (see [`Shutdown::on_stop`]).
    wakers: Mutex<Vec<Waker>>,
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
        self.bell.ring();
        {
            // Taken so that a napper between its check and its wait is not
            // missed.
            let _held = self.nap_lock.lock().unwrap_or_else(|p| p.into_inner());
            self.naps.notify_all();
        }
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|p| p.into_inner()));
        for wake in wakers {
            wake();
        }
    }

    /// A descriptor that becomes readable when a stop is asked for and
    /// stays readable: a thread that sleeps in `poll` (or `zmq::poll`, or
    /// libvirt's event loop) waits on it beside its own. Once stopping,
    /// leave it out of the wait, or the wait ends at once every time.
    pub fn stop_fd(&self) -> RawFd {
        self.bell.fd()
    }

    /// Runs `wake` when a stop is asked for (at once if it was already):
    /// how a thread that sleeps on a channel or a condition variable of its
    /// own is woken. `wake` must only wake (send a message, notify, ring),
    /// never block; it runs on the thread that asks for the stop.
    pub fn on_stop(&self, wake: impl FnOnce() + Send + 'static) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        if self.stopping() {
            drop(wakers);
            wake();
        } else {
            wakers.push(Box::new(wake));
        }
    }

    /// Sleeps for `time` or until a stop is asked for, whichever comes
    /// first; true if stopping.
    pub fn nap(&self, time: Duration) -> bool {
        let held = self.nap_lock.lock().unwrap_or_else(|p| p.into_inner());
        let _held = self
            .naps
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

    #[test]
    fn a_stop_rings_the_stop_fd_and_runs_every_waker_once() {
        let s = Shutdown::new();
        let poll_stop = |timeout_ms| {
            let mut items = [zmq::PollItem::from_fd(s.stop_fd(), zmq::POLLIN)];
            zmq::poll(&mut items, timeout_ms).unwrap()
        };
        assert_eq!(poll_stop(0), 0, "not stopping: silent");
        let (tx, rx) = std::sync::mpsc::channel();
        let before = tx.clone();
        s.on_stop(move || before.send("before").unwrap());
        let waiter = {
            let s = s.clone();
            // Waits in poll with no timeout of its own but the test's.
            std::thread::spawn(move || {
                let mut items = [zmq::PollItem::from_fd(s.stop_fd(), zmq::POLLIN)];
                zmq::poll(&mut items, 60_000).unwrap()
            })
        };
        s.fail("a thread failed".into());
        assert_eq!(waiter.join().unwrap(), 1, "the stop ended the wait");
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok("before"));
        s.request_stop();
        assert!(rx.try_recv().is_err(), "a waker runs once");
        s.on_stop(move || tx.send("after").unwrap());
        assert_eq!(rx.try_recv(), Ok("after"), "registered late: run at once");
        assert_eq!(poll_stop(0), 1, "still readable: nobody clears it");
    }
}
