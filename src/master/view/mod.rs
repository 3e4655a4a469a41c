//! The master's view of the cluster: the state table the receiver thread
//! keeps, and what it knows besides.

pub mod activity;
pub mod duplicates;
pub mod forget;
pub mod identity;
pub mod migration;
pub mod reboots;
pub mod table;
