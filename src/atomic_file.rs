//! The files a daemon keeps for its readers, the master's state file and
//! the node's status file: the head both start with, and how they reach the
//! disk, written to a temporary file in the same directory, flushed, then
//! renamed over the old one, so that no reader ever sees half a file; then
//! the directory is flushed too, so that the rename survives a power loss.
//!
//! A report rewritten every few seconds (the node's status file, between
//! its start and its last write) skips the two flushes ([`Rewritten::report`]):
//! each costs a wait for the disk, which made the status file the idle
//! node's busiest thread, and a power loss takes the writer with it, which
//! writes the file again as soon as it starts. It also takes the place of
//! the old file by exchanging the two (`renameat2(RENAME_EXCHANGE)`), then
//! removes the old one: a plain rename over an existing file makes ext4
//! (`auto_da_alloc`) write the new file's data out at once and wait for
//! it, one wait every few seconds that nobody asked for; an exchange does
//! not, and readers see the old file or the new one all the same.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::ratelimit::RateLimit;

/// Writes `text` to `path` atomically, mode 0644 whatever the umask (so
/// check_vmwatch can read it as another user). A crash or a reader never
/// sees half a file; on failure the temporary file is removed.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    write(path, text, true)
}

/// [`write_atomic`], flushing to the disk only if `durable`.
fn write(path: &Path, text: &str, durable: bool) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.write_all(text.as_bytes())?;
        if durable {
            f.sync_all()?;
        }
        if durable {
            std::fs::rename(&tmp, path)?;
            sync_dir(path)?;
        } else if exchange(&tmp, path).is_ok() {
            // `tmp` now names the old file.
            std::fs::remove_file(&tmp)?;
        } else {
            // No file to exchange with yet, or a kernel or filesystem
            // without the exchange (Linux before 3.15): a plain rename.
            std::fs::rename(&tmp, path)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Swaps the files `a` and `b` in one step (both must exist).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes());
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both are NUL-terminated strings that outlive the call; the
    // system call only reads them. By number: glibc before 2.28 (CentOS 6
    // and 7) has no wrapper.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Flushes the directory holding `path`: a rename is a change of the
/// directory, and without this a power loss may undo it.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// The lines both files start with, which check_vmwatch reads the same way
/// in both: a comment (`title`: the file and its format's document) with
/// the writer's pid, then the format `version`, when the file was `written`
/// and when the daemon `started` (ms since the Unix epoch).
pub fn head(out: &mut String, title: &str, version: u32, written: u64, started: u64) {
    let pid = std::process::id();
    let _ = write!(
        out,
        "# {title}; pid {pid}\nversion {version}\nwritten {written}\nstarted {started}\n"
    );
}

/// A file written again and again while a daemon runs. A failure is
/// logged at most once per 10 minutes, naming the file and what to check.
pub struct Rewritten {
    what: &'static str,
    path: String,
    check: &'static str,
    limit: RateLimit,
    /// Flushed to the disk at every write (see the file's doc).
    durable: bool,
}

impl Rewritten {
    /// The `what` (`state file`) at `path`; `check` says what to look at
    /// when it cannot be written.
    pub fn new(what: &'static str, path: &str, check: &'static str) -> Rewritten {
        Rewritten {
            what,
            path: path.to_string(),
            check,
            limit: RateLimit::new(1, Duration::from_secs(600)),
            durable: true,
        }
    }

    /// The same for a report rewritten every few seconds, not flushed to
    /// the disk (atomic for readers all the same).
    pub fn report(what: &'static str, path: &str, check: &'static str) -> Rewritten {
        Rewritten {
            durable: false,
            ..Rewritten::new(what, path, check)
        }
    }

    /// Replaces the file with `text`.
    pub fn write(&mut self, text: &str) {
        if let Err(e) = write(Path::new(&self.path), text, self.durable) {
            crate::log_limited!(
                self.limit,
                log::Level::Error,
                "cannot write {} {}: {e} ({})",
                self.what,
                self.path,
                self.check
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_world_readable_whatever_the_umask() {
        let p = crate::testing::ScratchFile::new("atomic-file", "state");
        write_atomic(&p, "a\n").unwrap();
        write_atomic(&p, "b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "b\n");
        assert_eq!(
            std::fs::read_dir(p.dir()).unwrap().count(),
            1,
            "no temporary left"
        );
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn a_report_is_replaced_whole_too() {
        let p = crate::testing::ScratchFile::new("atomic-file-report", "report");
        let mut r = Rewritten::report("report", p.to_str().unwrap(), "check");
        r.write("a\n");
        r.write("b\n");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "b\n");
        assert_eq!(std::fs::read_dir(p.dir()).unwrap().count(), 1);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
}
