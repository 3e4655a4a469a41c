//! The master's view of the cluster: the state table the receiver thread
//! keeps (table.rs and the files that change it: apply, domain, snapshot,
//! reboot_counts, liveness, forget_node, restore), the indexes that follow
//! it (duplicates, activity, migration, identity, reboots) and an
//! operator's `--forget-node` request (forget.rs).

pub mod activity;
pub mod apply;
pub mod domain;
pub mod duplicate_by;
pub mod duplicates;
pub mod forget;
pub mod forget_node;
pub mod identity;
pub mod liveness;
pub mod migration;
pub mod reboot_counts;
pub mod reboots;
pub mod records;
pub mod restore;
pub mod snapshot;
pub mod table;
#[cfg(test)]
mod tests;
