//! The pidfile, held under an exclusive lock while the daemon runs.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A pidfile held under an exclusive lock for the daemon's lifetime, so a
/// second copy refuses to start instead of fighting over the socket.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    _file: File,
}

impl PidFile {
    pub fn create(path: &Path) -> Result<PidFile, String> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(|e| format!("cannot open pidfile {}: {e} (use -p PATH)", path.display()))?;
        // SAFETY: the descriptor is open for the lifetime of `file`.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut old = String::new();
            let _ = file.read_to_string(&mut old);
            return Err(format!(
                "already running (pid {}, pidfile {} is locked)",
                old.trim(),
                path.display()
            ));
        }
        file.set_len(0)
            .and_then(|_| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(|e| format!("cannot write pidfile {}: {e}", path.display()))?;
        Ok(PidFile {
            path: path.to_path_buf(),
            _file: file,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfile_is_exclusive_and_removed_on_drop() {
        let path = crate::testing::ScratchFile::new("pidfile", "x.pid");
        let first = PidFile::create(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        let second = PidFile::create(&path);
        assert!(second.unwrap_err().contains("already running"));
        drop(first);
        assert!(!path.exists());
    }
}
