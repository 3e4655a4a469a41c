//! A raw ZMTP 3 peer over `std::net::TcpStream`, written from the spec
//! (ZeroMQ RFC 23 ZMTP 3.0, RFC 24 PLAIN), not from libzmq: what an outsider
//! without the secret can say to the master, byte by byte.
//!
//! Greeting: signature `FF 00*8 7F`, version 3.0, the mechanism name in 20
//! bytes, as-server 0, 31 bytes of filler. A frame: flags (bit 0 MORE, bit 1
//! LONG, bit 2 COMMAND), size in 1 or 8 bytes, body. NULL: READY with
//! `Socket-Type`. PLAIN: HELLO with a username and a password, the server
//! answers WELCOME or ERROR; then INITIATE, the server READY.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A connection to the master, at whatever stage of the handshake.
pub struct RawPeer {
    pub stream: TcpStream,
}

/// How a conversation ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The peer closed the connection (EOF, reset or broken pipe).
    Closed,
    /// A command came back, by name (`WELCOME`, `ERROR`, `READY`).
    Command(String),
}

impl RawPeer {
    /// Opens a TCP connection; nothing is said yet.
    pub fn connect(port: u16) -> std::io::Result<RawPeer> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(RawPeer { stream })
    }

    /// Opens a TCP connection from the loopback address `src` (any of
    /// 127.0.0.0/8), so that many peer addresses can be simulated.
    pub fn connect_from(src: std::net::Ipv4Addr, port: u16) -> std::io::Result<RawPeer> {
        use std::os::fd::FromRawFd;
        let addr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: a new descriptor is created, bound and connected with
        // sockaddr_in values that live across the calls; on failure it is
        // closed, on success owned by the TcpStream.
        let stream = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let local = addr(src, 0);
            let remote = addr(std::net::Ipv4Addr::LOCALHOST, port);
            if libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) != 0
                || libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) != 0
            {
                let e = std::io::Error::last_os_error();
                libc::close(fd);
                return Err(e);
            }
            TcpStream::from_raw_fd(fd)
        };
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(RawPeer { stream })
    }

    /// The 64-byte greeting for `mechanism` (`NULL`, `PLAIN`), as a client.
    pub fn greeting(mechanism: &str) -> [u8; 64] {
        let mut g = [0u8; 64];
        g[0] = 0xff;
        g[9] = 0x7f;
        g[10] = 3; // version 3.0
        g[11] = 0;
        g[12..12 + mechanism.len()].copy_from_slice(mechanism.as_bytes());
        g
    }

    /// Sends our greeting and reads the master's (64 bytes).
    pub fn greet(&mut self, mechanism: &str) -> std::io::Result<[u8; 64]> {
        self.stream.write_all(&RawPeer::greeting(mechanism))?;
        let mut theirs = [0u8; 64];
        self.stream.read_exact(&mut theirs)?;
        Ok(theirs)
    }

    /// A frame: `flags` plus a short or long size.
    pub fn frame(flags: u8, body: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(body.len() + 9);
        if body.len() > 255 {
            f.push(flags | 0x02);
            f.extend_from_slice(&(body.len() as u64).to_be_bytes());
        } else {
            f.push(flags);
            f.push(body.len() as u8);
        }
        f.extend_from_slice(body);
        f
    }

    /// A command frame `name` with `data` after it.
    pub fn command(name: &str, data: &[u8]) -> Vec<u8> {
        let mut body = vec![name.len() as u8];
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(data);
        RawPeer::frame(0x04, &body)
    }

    /// A metadata property: name (1-byte size) and value (4-byte size).
    pub fn property(name: &str, value: &str) -> Vec<u8> {
        let mut p = vec![name.len() as u8];
        p.extend_from_slice(name.as_bytes());
        p.extend_from_slice(&(value.len() as u32).to_be_bytes());
        p.extend_from_slice(value.as_bytes());
        p
    }

    /// NULL: READY as a PUSH socket.
    pub fn null_ready(&mut self) -> std::io::Result<()> {
        let ready = RawPeer::command("READY", &RawPeer::property("Socket-Type", "PUSH"));
        self.stream.write_all(&ready)
    }

    /// PLAIN: HELLO with `username` and `password`.
    pub fn plain_hello(&mut self, username: &str, password: &str) -> std::io::Result<()> {
        let mut data = vec![username.len() as u8];
        data.extend_from_slice(username.as_bytes());
        data.push(password.len() as u8);
        data.extend_from_slice(password.as_bytes());
        self.stream.write_all(&RawPeer::command("HELLO", &data))
    }

    /// PLAIN: INITIATE as a PUSH socket (after WELCOME).
    pub fn plain_initiate(&mut self) -> std::io::Result<()> {
        let cmd = RawPeer::command("INITIATE", &RawPeer::property("Socket-Type", "PUSH"));
        self.stream.write_all(&cmd)
    }

    /// Reads the next command from the master, or learns that it closed.
    pub fn next_command(&mut self) -> Outcome {
        let mut head = [0u8; 2];
        if self.stream.read_exact(&mut head).is_err() {
            return Outcome::Closed;
        }
        let size = if head[0] & 0x02 != 0 {
            let mut rest = [0u8; 7];
            if self.stream.read_exact(&mut rest).is_err() {
                return Outcome::Closed;
            }
            let mut b = [0u8; 8];
            b[0] = head[1];
            b[1..].copy_from_slice(&rest);
            u64::from_be_bytes(b) as usize
        } else {
            head[1] as usize
        };
        let mut body = vec![0u8; size.min(1 << 20)];
        if self.stream.read_exact(&mut body).is_err() || body.is_empty() {
            return Outcome::Closed;
        }
        let n = body[0] as usize;
        Outcome::Command(String::from_utf8_lossy(&body[1..(1 + n).min(body.len())]).into_owned())
    }

    /// Streams frames of `frame_size` bytes, each flagged MORE (a message
    /// that never ends), until the master closes the connection or `limit`
    /// bytes went out. Returns the bytes written.
    pub fn endless_message(&mut self, frame_size: usize, limit: usize) -> usize {
        let frame = RawPeer::frame(0x01, &vec![b'x'; frame_size]);
        let mut sent = 0;
        while sent < limit {
            if self.stream.write_all(&frame).is_err() {
                break;
            }
            sent += frame.len();
        }
        sent
    }

    /// Whether the master has closed this connection: a read sees EOF or an
    /// error (waits at most the read timeout).
    pub fn closed_by_master(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
                Err(_) => return true,
            }
        }
    }
}
