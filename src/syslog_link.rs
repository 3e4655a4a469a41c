//! The daemons' link to the local syslog daemon, kept up across its restarts.
//!
//! A datagram socket connected to `/dev/log` stays bound to the socket the
//! syslog daemon had when the link was made: when rsyslogd or syslog-ng
//! restarts (a package upgrade, an operator's `service rsyslog restart`) it
//! makes a new socket at the same path, and every later send on the old link
//! fails. So a failed send reconnects by path at once and sends again; if
//! the daemon is not back yet, each later line tries to connect again (a
//! failed connect on a Unix socket costs two system calls; the lines that
//! can trigger a flood are rate-limited before they get here), so the first
//! line after the daemon is back reaches it. Lines in between go to the log
//! file only. The same holds when syslog was not reachable at start. What
//! happens to the link is returned to the logger as a notice for the log
//! file (syslog may be the thing that is gone), once per outage.
//!
//! A syslog daemon that stops reading (hung on a full disk, stopped by an
//! operator) fills its socket's queue within a few lines (Linux queues 10
//! datagrams per socket by default), and a blocking send would then stop
//! whichever thread logs next, the master's receiver included. So the
//! datagram socket is non-blocking: a line the queue cannot take is left to
//! the log file, counted, and said once when it happens and once when
//! syslog takes lines again. (A stream socket, which Linux syslog daemons
//! do not use for /dev/log, stays blocking: a line must not be cut short.)

use syslog::{Facility, Formatter3164, LogFormat, LoggerBackend, Severity};

type Syslog = syslog::Logger<LoggerBackend, Formatter3164>;

/// A reconnecting connection to the syslog socket at one path.
pub struct SyslogLink {
    path: String,
    formatter: Formatter3164,
    conn: Option<Syslog>,
    /// Lines not sent because the syslog daemon's queue was full.
    skipped: u64,
}

impl SyslogLink {
    /// A link for `program` (the ident; facility daemon, with the pid) to
    /// the socket at `path`, not connected yet: see [`connect`](Self::connect).
    pub fn new(program: &str, path: &str) -> SyslogLink {
        SyslogLink {
            path: path.to_string(),
            formatter: Formatter3164 {
                facility: Facility::LOG_DAEMON,
                hostname: None,
                process: program.to_string(),
                pid: std::process::id(),
            },
            conn: None,
            skipped: 0,
        }
    }

    /// Connects now; on failure the link retries by itself when lines come.
    pub fn connect(&mut self) -> Result<(), String> {
        match syslog::unix_custom(self.formatter.clone(), &self.path) {
            Ok(c) => {
                if let LoggerBackend::Unix(ref dgram) = c.backend {
                    dgram
                        .set_nonblocking(true)
                        .map_err(|e| format!("cannot make the socket non-blocking: {e}"))?;
                }
                self.conn = Some(c);
                Ok(())
            }
            Err(e) => {
                self.conn = None;
                Err(e.to_string())
            }
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Sends one message. Returns a notice for the log file when the link
    /// was lost, or came back.
    pub fn send(&mut self, severity: Severity, msg: &str) -> Option<String> {
        let failed = match self.conn.as_mut() {
            Some(c) => match c.formatter.format(&mut c.backend, severity, msg) {
                Ok(()) if self.skipped == 0 => return None,
                Ok(()) => {
                    let n = std::mem::take(&mut self.skipped);
                    return Some(format!(
                        "syslog at {} takes lines again; {n} lines were not sent to it (they are in the log file)",
                        self.path
                    ));
                }
                Err(syslog::Error::Write(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.skipped += 1;
                    return (self.skipped == 1).then(|| {
                        format!(
                            "syslog at {} is not keeping up (its queue is full): lines go to the log file only until it reads again",
                            self.path
                        )
                    });
                }
                Err(e) => e.to_string(),
            },
            None => {
                return match self.connect() {
                    Ok(()) => {
                        let again = self.send_again(severity, msg);
                        Some(match again {
                            Ok(()) => format!("syslog at {} is reachable again", self.path),
                            Err(e) => self.lost(&e),
                        })
                    }
                    Err(_) => None,
                };
            }
        };
        // Most likely the syslog daemon restarted and has a new socket at
        // the same path: reconnect and send this line there.
        let again = self.connect().and_then(|()| self.send_again(severity, msg));
        Some(match again {
            Ok(()) => format!(
                "syslog at {}: a send failed ({failed}); reconnected",
                self.path
            ),
            Err(e) => self.lost(&e),
        })
    }

    fn send_again(&mut self, severity: Severity, msg: &str) -> Result<(), String> {
        let c = self.conn.as_mut().ok_or("not connected")?;
        c.formatter
            .format(&mut c.backend, severity, msg)
            .map_err(|e| e.to_string())
    }

    /// Drops the connection; the next line tries again.
    fn lost(&mut self, why: &str) -> String {
        self.conn = None;
        format!(
            "syslog at {} unreachable ({why}); lines go to the log file only until it is back",
            self.path
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn recv(s: &UnixDatagram) -> String {
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = s.recv(&mut buf).expect("a datagram within 5 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// A syslog daemon that restarts makes a new socket at the same path:
    /// the link follows it, and says so once.
    #[test]
    fn a_restarted_syslog_daemon_gets_the_next_line() {
        let dir = std::env::temp_dir().join(format!("vmwatch-syslink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let p = path.to_str().unwrap();
        let mut link = SyslogLink::new("vmwatch-test", p);

        // Not there at start: nothing to send to, retried with each line.
        assert!(link.connect().is_err());
        assert_eq!(link.send(Severity::LOG_INFO, "lost"), None);

        let first = UnixDatagram::bind(&path).unwrap();
        let notice = link.send(Severity::LOG_INFO, "one").unwrap();
        assert!(notice.contains("reachable again"), "{notice}");
        let got = recv(&first);
        assert!(got.starts_with("<30>"), "daemon.info: {got}");
        assert!(
            got.contains(" vmwatch-test[") && got.ends_with("]: one"),
            "{got}"
        );
        assert_eq!(link.send(Severity::LOG_WARNING, "two"), None);
        assert!(recv(&first).ends_with("]: two"));

        // The daemon restarts: its old socket goes, a new one comes.
        drop(first);
        std::fs::remove_file(&path).unwrap();
        let second = UnixDatagram::bind(&path).unwrap();
        let notice = link.send(Severity::LOG_ERR, "three").unwrap();
        assert!(notice.contains("reconnected"), "{notice}");
        let got = recv(&second);
        assert!(
            got.starts_with("<27>") && got.ends_with("]: three"),
            "{got}"
        );

        // Gone: one notice for the outage, then silence; the first line
        // after it is back gets through.
        drop(second);
        std::fs::remove_file(&path).unwrap();
        let notice = link.send(Severity::LOG_INFO, "four").unwrap();
        assert!(notice.contains("unreachable"), "{notice}");
        assert_eq!(link.send(Severity::LOG_INFO, "five"), None);
        let third = UnixDatagram::bind(&path).unwrap();
        let notice = link.send(Severity::LOG_INFO, "six").unwrap();
        assert!(notice.contains("reachable again"), "{notice}");
        assert!(recv(&third).ends_with("]: six"));

        // Not reading: its queue fills, the link does not wait; one notice
        // then, and one with the count when it reads again.
        // (The queue's length is net.unix.max_dgram_qlen, 10 by default.)
        let mut sent = 0;
        let first = loop {
            sent += 1;
            assert!(sent < 100_000, "the queue never filled");
            if let Some(n) = link.send(Severity::LOG_INFO, &format!("q{sent}")) {
                break n;
            }
        };
        assert!(first.contains("not keeping up"), "{first}");
        for i in 0..50 {
            sent += 1;
            assert_eq!(link.send(Severity::LOG_INFO, &format!("r{i}")), None);
        }
        let mut queued = 0;
        third.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 512];
        while third.recv(&mut buf).is_ok() {
            queued += 1;
        }
        assert!(queued > 0 && queued < sent, "{queued} of {sent} queued");
        third.set_nonblocking(false).unwrap();
        let notice = link.send(Severity::LOG_INFO, "seven").unwrap();
        let want = format!("{} lines were not sent", sent - queued);
        assert!(notice.contains(&want), "{notice}, want {want}");
        assert!(recv(&third).ends_with("]: seven"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
