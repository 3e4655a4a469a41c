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
