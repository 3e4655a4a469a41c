//! The format's version and title, which the writer puts at the top of the
//! file and the reader checks.

/// Version of the format, first line after the comment.
pub const FORMAT: u32 = 1;
/// The file's first line, after `# ` and before the pid.
pub(super) const TITLE: &str = "vmwatch-master state (format: docs/state-file.md)";
