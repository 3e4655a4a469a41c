//! Detaching from the terminal for SysV init, with a readiness pipe.
//!
//! The original process waits on a pipe until the daemon says it is up (or
//! why it is not), and then ends with that status, so `service X start`
//! reports a daemon that failed during start-up. It does not exit here: it
//! gets [`Detached::Parent`] and returns the status from `main`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::cli::ExitStatus;

/// The write end of the start-up pipe; the detached parent exits with what
/// is written here.
pub struct Readiness {
    pipe: Option<File>,
}

impl Readiness {
    /// Foreground mode: nobody is waiting.
    pub fn none() -> Readiness {
        Readiness { pipe: None }
    }

    /// Tells the waiting parent that start-up succeeded.
    pub fn ready(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(&[ExitStatus::Ok.code()]);
        }
    }

    /// Tells the waiting parent that start-up failed, and why.
    pub fn failed(&mut self, status: ExitStatus, why: &str) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(&[status.code()]);
            let _ = p.write_all(why.as_bytes());
        }
    }
}

/// Which side of [`detach`] this process is on.
pub enum Detached {
    /// The original process, once the daemon has reported (its message, if
    /// any, already printed): it should exit with this status.
    Parent(ExitStatus),
    /// The daemon: tell the parent through this how start-up went.
    Daemon(Readiness),
}

/// Detaches from the terminal (fork, setsid, fork). The daemon gets
/// [`Detached::Daemon`]; the original process waits for the daemon's report
/// through [`Readiness`], prints its error message if it failed, and gets
/// [`Detached::Parent`] with the status to exit with.
pub fn detach(program: &str) -> std::io::Result<Detached> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by us.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (detach runs before any is
    // started), so the child is a complete copy of this process.
    match unsafe { libc::fork() } {
        -1 => return Err(std::io::Error::last_os_error()),
        0 => {}
        _ => {
            drop(wr);
            return Ok(Detached::Parent(wait_for_report(program, File::from(rd))));
        }
    }
    drop(rd);
    // SAFETY: setsid has no memory-safety preconditions.
    if unsafe { libc::setsid() } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: still single-threaded; see above.
    match unsafe { libc::fork() } {
        -1 => return Err(std::io::Error::last_os_error()),
        0 => {}
        // The intermediate process only made the daemon lose its session
        // leadership; it has nothing to return to.
        // SAFETY: _exit skips atexit handlers and buffered-stream flushes,
        // which belong to the daemon.
        _ => unsafe { libc::_exit(0) },
    }
    std::env::set_current_dir("/")?;
    // SAFETY: umask only changes this process's file mode mask.
    unsafe { libc::umask(0o022) };
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..=2 {
        // SAFETY: `null` is an open descriptor; dup2 atomically replaces the
        // standard descriptors, which nothing else holds a Rust handle to.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
    Ok(Detached::Daemon(Readiness {
        pipe: Some(File::from(wr)),
    }))
}

/// The parent's side: reads the daemon's report (a status byte, then the
/// reason) until the pipe closes, prints the reason, returns the status.
fn wait_for_report(program: &str, mut pipe: File) -> ExitStatus {
    let mut buf = Vec::new();
    let _ = pipe.read_to_end(&mut buf);
    let status = match buf.first() {
        // Only the daemon writes here, and only statuses it knows.
        Some(&c) => ExitStatus::from_code(c).unwrap_or(ExitStatus::Runtime),
        None => {
            eprintln!("{program}: the daemon exited during start-up; see its log");
            ExitStatus::Runtime
        }
    };
    if buf.len() > 1 {
        eprintln!("{program}: {}", String::from_utf8_lossy(&buf[1..]));
    }
    status
}
