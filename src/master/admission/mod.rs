//! The handshake threads: who may reach the receiver at all.
//!
//! Two threads guard the PULL socket before any message is read: `zap`
//! answers ZeroMQ's authentication requests, and `gate` bounds the
//! connections still in their handshake.

pub mod gate;
pub mod zap;
