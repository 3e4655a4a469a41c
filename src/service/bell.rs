//! A bell one thread rings to wake another that sleeps in `poll` (ZeroMQ's
//! `zmq::poll`, libvirt's event loop, `poll(2)`): an eventfd.
//!
//! The daemons' threads sleep until they have work; a stop, or a request
//! from another thread, rings the bell they wait on as well as their own
//! descriptors, so nothing polls a flag on a timer. A bell stays readable
//! from its first ring until [`Bell::clear`]; the stop bell is never
//! cleared (see [`super::Shutdown::stop_fd`]).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd, non-blocking and closed on exec.
#[derive(Debug)]
pub struct Bell {
    fd: OwnedFd,
}

impl Bell {
    /// A new bell, silent. Fails only when the process is out of
    /// descriptors or memory, which no daemon survives its start with.
    pub fn new() -> Bell {
        // SAFETY: eventfd takes no pointers; the flags are valid constants.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            panic!(
                "cannot create an eventfd: {} (out of descriptors? raise the open-file limit)",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: `fd` is a descriptor eventfd just opened, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Bell { fd }
    }

    /// Wakes whoever waits on [`fd`](Self::fd) (now, or at its next wait).
    pub fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our own eventfd. A full
        // counter (EAGAIN, after 2^64 - 2 rings) is still readable: ignored.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Silences the bell: the rings so far are taken. Clear before looking
    /// for the work a ring announces, so a ring after the look is kept.
    pub fn clear(&self) {
        Bell::clear_fd(self.fd());
    }

    /// [`clear`](Self::clear) for a bell's descriptor as a C callback gets
    /// it (libvirt's event loop hands the watched descriptor over).
    pub fn clear_fd(fd: RawFd) {
        let mut count: u64 = 0;
        // SAFETY: reads at most 8 bytes into a valid u64; on a bell's
        // non-blocking eventfd EAGAIN (not rung) is ignored, and on any other
        // descriptor the read fails or takes a few bytes, harming no memory.
        unsafe { libc::read(fd, (&mut count as *mut u64).cast(), 8) };
    }

    /// The descriptor to poll for reading: readable while the bell rings.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Whether the bell rings now, without waiting or clearing it.
    pub fn rung(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }
}

impl Default for Bell {
    fn default() -> Bell {
        Bell::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_is_kept_until_cleared() {
        let b = Bell::new();
        assert!(!b.rung());
        b.ring();
        b.ring();
        assert!(b.rung());
        assert!(b.rung(), "looking does not clear it");
        b.clear();
        assert!(!b.rung());
        b.clear();
        assert!(!b.rung(), "clearing a silent bell is harmless");
    }

    #[test]
    fn a_ring_from_another_thread_ends_a_wait_in_zmq_poll() {
        let b = std::sync::Arc::new(Bell::new());
        let ringer = {
            let b = b.clone();
            std::thread::spawn(move || b.ring())
        };
        // A minute: far more than a ring takes on a busy machine.
        let mut items = [zmq::PollItem::from_fd(b.fd(), zmq::POLLIN)];
        assert_eq!(zmq::poll(&mut items, 60_000), Ok(1), "no ring in a minute");
        assert!(items[0].is_readable());
        ringer.join().unwrap();
    }
}
