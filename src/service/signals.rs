//! Signals, taken synchronously by the main thread.
//!
//! SIGTERM, SIGINT and SIGHUP are blocked before any thread starts, so every
//! thread (libvirt's and ZeroMQ's included) inherits the mask and no handler
//! ever runs in one of them; the main thread takes them with one
//! `sigtimedwait` loop ([`supervise`]).

use std::time::Duration;

use super::stop::Shutdown;

/// Blocks SIGTERM, SIGINT and SIGHUP in this thread and every thread it
/// starts later. Call before starting any thread.
pub fn block_signals() {
    let set = signal_set();
    // SAFETY: `set` is an initialised sigset_t; passing a null old-set pointer
    // is allowed.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set; sigaddset only writes
    // into it. The signal numbers are valid constants.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Waits up to `timeout` for one of the blocked signals.
fn wait_signal(timeout: Duration) -> Option<i32> {
    let set = signal_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` and `ts` are valid for the call; a null siginfo pointer
    // is allowed.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// The main thread's loop once the workers run: SIGHUP reopens the log,
/// SIGTERM/SIGINT ask for a stop; returns when a stop was asked for (by a
/// signal or by a worker's failure).
pub fn supervise(shutdown: &Shutdown) {
    while !shutdown.stopping() {
        match wait_signal(Duration::from_millis(200)) {
            Some(libc::SIGHUP) => crate::logging::reopen(),
            Some(sig) => {
                log::info!(
                    "received {}, stopping",
                    if sig == libc::SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    }
                );
                shutdown.request_stop();
            }
            None => {}
        }
    }
}
