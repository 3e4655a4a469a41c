//! Support for the unit tests: a file of their own on disk, and the test
//! vectors docs/protocol.md gives.

use std::path::{Path, PathBuf};

/// A path of its own for one test's file: `name` in a fresh directory
/// under the system temp dir, named after the test and this process. The
/// directory goes when the test ends.
pub struct ScratchFile {
    dir: PathBuf,
    path: PathBuf,
}

impl ScratchFile {
    pub fn new(test: &str, name: &str) -> ScratchFile {
        let dir = std::env::temp_dir().join(format!("vmwatch-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        ScratchFile { dir, path }
    }

    /// The directory that holds the file.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl std::ops::Deref for ScratchFile {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for ScratchFile {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The code block after `<!-- tag -->` in docs/protocol.md, as written
/// (its last newline kept).
pub fn protocol_doc_block(tag: &str) -> String {
    let doc = include_str!("../docs/protocol.md");
    let start = doc
        .find(&format!("<!-- {tag} -->"))
        .unwrap_or_else(|| panic!("docs/protocol.md lacks the `{tag}` marker"));
    let rest = &doc[start..];
    let open = rest.find("```\n").expect("code block after marker") + 4;
    let close = rest[open..].find("```").expect("closing fence") + open;
    rest[open..close].to_string()
}
