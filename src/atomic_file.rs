//! Files that readers never see half-written: the master's state file and
//! the node's status file are written to a temporary file in the same
//! directory, flushed to disk, then renamed over the old one.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `text` to `path` atomically, mode 0644 whatever the umask (so
/// check_vmwatch can read it as another user). A crash or a reader never
/// sees half a file; on failure the temporary file is removed.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
