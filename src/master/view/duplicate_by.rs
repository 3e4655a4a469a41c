//! What makes two domains duplicates (`by=uuid` or `by=name`): a word of
//! the panel's `vmwatch.duplicate` lines and of the state file, shared by
//! the duplicate index (duplicates.rs) and the updates (panel/update.rs).

/// What makes two domains duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DuplicateBy {
    /// The same UUID active on several nodes.
    Uuid,
    /// The same name used by different UUIDs on several nodes.
    Name,
}

impl DuplicateBy {
    /// The word in panel lines and the state file (also the key's name).
    pub fn as_str(self) -> &'static str {
        match self {
            DuplicateBy::Uuid => "uuid",
            DuplicateBy::Name => "name",
        }
    }

    /// A word as a kind; `None` outside the vocabulary.
    pub fn parse(word: &str) -> Option<DuplicateBy> {
        [DuplicateBy::Uuid, DuplicateBy::Name]
            .into_iter()
            .find(|b| b.as_str() == word)
    }
}

impl std::fmt::Display for DuplicateBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
