//! The state table fed as nodes feed it, through whole scenarios: each
//! touches several of the table's files at once (apply, snapshot, liveness,
//! forget_node, reboot_counts), so they live beside them rather than in one.

mod migration;
mod reboots;
mod table;
