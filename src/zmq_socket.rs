//! ZeroMQ sockets as both daemons open them: every failure names the
//! endpoint the socket serves, and IPv6 is on for a bracketed address.

/// `cannot WHAT the ZeroMQ socket PLACE: E`, where `place` says which
/// endpoint it serves (`on ENDPOINT` bound, `for ENDPOINT` connecting).
pub fn error(what: &str, place: &str, e: zmq::Error) -> String {
    format!("cannot {what} the ZeroMQ socket {place}: {e}")
}

/// A new socket of `kind` that will serve `endpoint`, with the options
/// `setup` sets.
pub fn open(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    endpoint: &str,
    place: &str,
    setup: impl FnOnce(&zmq::Socket) -> zmq::Result<()>,
) -> Result<zmq::Socket, String> {
    let socket = ctx.socket(kind).map_err(|e| error("create", place, e))?;
    socket
        .set_ipv6(endpoint.contains('['))
        .and_then(|()| setup(&socket))
        .map_err(|e| error("configure", place, e))?;
    Ok(socket)
}

/// ZMTP heartbeats: a PING after this long without traffic (ms)...
pub const HEARTBEAT_IVL_MS: i32 = 10_000;
/// ...and the connection is closed when nothing at all came back for this
/// long after it (ms): a crashed peer, a cut network, a silent connection.
pub const HEARTBEAT_TIMEOUT_MS: i32 = 30_000;

/// Heartbeats and TCP keepalive on a socket, on the master and the node
/// alike: a dead connection is closed within
/// `HEARTBEAT_IVL_MS + HEARTBEAT_TIMEOUT_MS` (docs/protocol.md, "Transport").
pub fn keep_alive(s: &zmq::Socket) -> zmq::Result<()> {
    s.set_heartbeat_ivl(HEARTBEAT_IVL_MS)?;
    s.set_heartbeat_timeout(HEARTBEAT_TIMEOUT_MS)?;
    s.set_heartbeat_ttl(HEARTBEAT_TIMEOUT_MS)?;
    s.set_tcp_keepalive(1)
}
