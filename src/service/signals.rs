//! Signals, taken synchronously by the main thread.
//!
//! SIGTERM, SIGINT and SIGHUP are blocked before any thread starts, so every
//! thread (libvirt's and ZeroMQ's included) inherits the mask and no handler
//! ever runs in one of them; the main thread takes them from a signalfd
//! ([`supervise`]), sleeping until a signal comes or a worker's failure
//! rings the stop bell.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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

/// What the main thread does with a signal.
fn take(shutdown: &Shutdown, sig: i32) {
    match sig {
        libc::SIGHUP => crate::logging::reopen(),
        _ => {
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
    }
}

/// A signalfd for the blocked signals, non-blocking.
fn signal_fd() -> std::io::Result<OwnedFd> {
    let set = signal_set();
    // SAFETY: `set` is valid for the call; -1 asks for a new descriptor.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened by signalfd and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The next signal waiting on the signalfd, without waiting.
fn read_signal(fd: &OwnedFd) -> Option<i32> {
    // SAFETY: an all-zero signalfd_siginfo is a valid value to read into.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: reads at most `size` bytes into `info`, which is that big.
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            size,
        )
    };
    (n == size as isize).then_some(info.ssi_signo as i32)
}

/// The main thread's loop once the workers run: SIGHUP reopens the log,
/// SIGTERM/SIGINT ask for a stop; returns when a stop was asked for (by a
/// signal or by a worker's failure). It sleeps in `poll` on a signalfd and
/// the stop bell, so it wakes only for a signal or a stop.
pub fn supervise(shutdown: &Shutdown) {
    let sfd = match signal_fd() {
        Ok(fd) => fd,
        Err(e) => {
            log::warn!("cannot open a signalfd ({e}): looking for signals every 200 ms instead");
            return supervise_by_timer(shutdown);
        }
    };
    while !shutdown.stopping() {
        let mut fds = [
            libc::pollfd {
                fd: sfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: shutdown.stop_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds; no timeout: a signal or the stop ends it.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        while let Some(sig) = read_signal(&sfd) {
            take(shutdown, sig);
        }
    }
}

/// [`supervise`] without a signalfd (none left): a `sigtimedwait` loop.
fn supervise_by_timer(shutdown: &Shutdown) {
    while !shutdown.stopping() {
        if let Some(sig) = wait_signal(Duration::from_millis(200)) {
            take(shutdown, sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker's failure ends the main thread's wait, with no signal and
    /// no timer (the wait has none).
    #[test]
    fn a_failure_ends_supervise() {
        block_signals();
        let s = Shutdown::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let main = {
            let s = s.clone();
            std::thread::spawn(move || {
                supervise(&s);
                tx.send(()).unwrap();
            })
        };
        s.fail("a worker failed".into());
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(60)),
            Ok(()),
            "supervise still waits a minute after the failure"
        );
        main.join().unwrap();
    }
}
