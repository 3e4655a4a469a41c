//! SIGPIPE: the default for commands that only print, ignored by daemons.
//!
//! Rust starts every program with SIGPIPE ignored, so a write to a pipe
//! whose reader is gone fails with EPIPE, and `println!` turns that into a
//! panic ("failed printing to stdout"; an abort in the release build). For
//! a command that only prints (`--status`, `--check-config`, `-h`, `-V`,
//! check_vmwatch), `vmwatch-master --status | head -1` must end as `cat`
//! does: quietly, killed by SIGPIPE (status 141 in the shell). So their
//! paths restore the default disposition before printing
//! ([`default_for_printing`]). A daemon writes to sockets (syslog, the
//! panel command's pipes, ZeroMQ) and to a stderr that may be gone: a reader
//! going away is an error to handle there, never a reason to die, so
//! [`crate::service::run_daemon`] sets SIGPIPE ignored again before it
//! detaches or starts a thread ([`ignore_for_daemon`]). Signals the daemons
//! take synchronously (signals.rs) are not touched: SIGPIPE is never blocked.

/// Restores SIGPIPE's default disposition: a write to a closed pipe ends
/// the process quietly. For processes that only print.
pub fn default_for_printing() {
    // SAFETY: setting a standard disposition for a valid signal number; no
    // handler runs, so nothing async-signal-unsafe can happen.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Ignores SIGPIPE: a write to a closed pipe or socket fails with EPIPE,
/// which the writer handles. For daemons; call before starting a thread.
pub fn ignore_for_daemon() {
    // SAFETY: as above; SIG_IGN installs no handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}
