//! vmwatch: VM status monitoring for KVM clusters.
//!
//! `vmwatch-node` (one per KVM node) turns libvirt domain events and activity
//! statistics into authenticated ZeroMQ messages; `vmwatch-master` (on the
//! panel host) verifies them, keeps the true state of every VM on every node,
//! and tells the control panel what changed. The binaries in `src/bin` are
//! thin: everything lives in these modules.

// Every unsafe block says why it is sound (`// SAFETY:`); the lint keeps it so.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod atomic_file;
pub mod check;
pub mod cli;
pub mod clock;
#[cfg(test)]
mod conf_page;
pub mod config;
pub mod handshake;
pub mod kvline;
pub mod logging;
pub mod master;
pub mod protocol;
pub mod ratelimit;
pub mod role;
pub mod service;
pub mod syslog_link;
#[cfg(test)]
mod testing;
pub mod vocab;
pub mod zmq_socket;

#[cfg(feature = "slim-cxxabi")]
mod cxx_demangle;
#[cfg(feature = "glibc212")]
mod glibc_compat;
#[cfg(feature = "node")]
pub mod node;
