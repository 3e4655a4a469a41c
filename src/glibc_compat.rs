//! `getauxval(3)` for glibc older than 2.16, so that one node binary runs on CentOS 6.
//!
//! The portable node is linked against glibc 2.12 symbol versions (CentOS 6), but Rust's
//! standard library calls `getauxval`, which glibc only grew in 2.16: without this shim the
//! `x86_64-unknown-linux-gnu.2.12` link fails with `undefined symbol: getauxval`. The
//! definition here satisfies that reference inside the executable; it is not exported, so
//! the shared libraries we load (libvirt) keep using glibc's own where glibc has one.
//!
//! The kernel hands every process its auxiliary vector, and `/proc/self/auxv` shows it as
//! native-endian `(type, value)` pairs of `unsigned long`, ending with `AT_NULL`. That file
//! exists on every kernel CentOS 6 ships (2.6.32). Only compiled with the `glibc212` feature.
//!
//! std calls this during its own start-up (signal-stack sizing, before `main`), so the code
//! neither allocates nor panics: a fixed buffer on the stack and raw `open`/`read`.

use libc::{c_int, c_ulong};

/// The auxiliary vector is a few dozen entries (about 0.4 KB on x86_64 today); 4 KB leaves
/// room for kernels that add many more.
const AUXV_BUF: usize = 4096;
const WORD: usize = std::mem::size_of::<c_ulong>();

/// glibc-compatible `getauxval`: the value of entry `type_`, or 0 with `errno = ENOENT` when
/// the vector has no such entry (or cannot be read, which the caller cannot tell apart and
/// treats the same way: std then falls back to compile-time defaults).
#[no_mangle]
pub extern "C" fn getauxval(type_: c_ulong) -> c_ulong {
    let mut buf = [0u8; AUXV_BUF];
    let len = read_auxv(&mut buf);
    match find(&buf[..len], type_) {
        Some(value) => value,
        None => {
            set_errno(libc::ENOENT);
            0
        }
    }
}

/// Reads /proc/self/auxv into `buf`; returns how many bytes were read (0 on any error).
fn read_auxv(buf: &mut [u8]) -> usize {
    const PATH: &[u8] = b"/proc/self/auxv\0";
    // SAFETY: PATH is a NUL-terminated static byte string that outlives the call; open(2)
    // only reads it. O_CLOEXEC keeps the descriptor out of children forked meanwhile.
    let fd = unsafe { libc::open(PATH.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return 0;
    }
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a live, writable slice of exactly `rest.len()` bytes that we own
        // for the duration of the call; `fd` is the descriptor opened above.
        let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            filled = 0;
            break;
        }
        if n == 0 {
            break;
        }
        filled += n as usize;
    }
    // SAFETY: `fd` was opened above and is closed exactly once, here.
    unsafe { libc::close(fd) };
    filled
}

/// Looks `wanted` up in raw auxv bytes. Stops at AT_NULL; a truncated last pair is ignored.
fn find(auxv: &[u8], wanted: c_ulong) -> Option<c_ulong> {
    for pair in auxv.chunks_exact(2 * WORD) {
        let key = word(&pair[..WORD]);
        if key == libc::AT_NULL {
            return None;
        }
        if key == wanted {
            return Some(word(&pair[WORD..]));
        }
    }
    None
}

fn word(bytes: &[u8]) -> c_ulong {
    let mut raw = [0u8; WORD];
    raw.copy_from_slice(bytes);
    c_ulong::from_ne_bytes(raw)
}

fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    unsafe { *libc::__errno_location() }
}

fn set_errno(value: c_int) {
    // SAFETY: as in errno(): a valid, thread-local pointer that we may write through.
    unsafe { *libc::__errno_location() = value };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_matches_sysconf() {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        assert_eq!(getauxval(libc::AT_PAGESZ), page as c_ulong);
    }

    #[test]
    fn missing_entry_is_zero_with_enoent() {
        set_errno(0);
        // No kernel defines type 0x7fff_ffff.
        assert_eq!(getauxval(0x7fff_ffff), 0);
        assert_eq!(errno(), libc::ENOENT);
    }

    #[test]
    fn parser_stops_at_at_null_and_ignores_a_torn_pair() {
        let mut raw = Vec::new();
        for v in [6, 4096, 0, 0, 6, 1] {
            raw.extend_from_slice(&(v as c_ulong).to_ne_bytes());
        }
        assert_eq!(find(&raw, 6), Some(4096));
        // The entry after AT_NULL must not be seen.
        assert_eq!(find(&raw[2 * WORD..], 6), None);
        assert_eq!(find(&raw[..2 * WORD + 3], 6), Some(4096));
        assert_eq!(find(&raw[..WORD + 1], 6), None);
    }
}
