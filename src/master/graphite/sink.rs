//! The `graphite` thread: renders what the receiver hands over, buffers it
//! and writes it to carbon's plaintext port over plain synchronous TCP.
//!
//! Its one job is the connection to carbon. While carbon cannot be reached
//! lines wait in a buffer of `graphite_buffer` lines; when that is full the
//! oldest line goes first (counted, logged rate-limited), so memory stays
//! bounded however long carbon is away, and what is delivered after it comes
//! back is the most recent history. Reconnects back off from 1 s to 10 s.
//! A line may reach carbon twice when a write fails half way; carbon stores
//! one value per timestamp, so a repeat changes nothing. A line cut by a
//! failed write has no newline, and carbon drops unterminated input when the
//! connection closes. Writing is bounded in time (3 s per chunk, 1 s per
//! flush before the channel is looked at again), so a carbon that takes data
//! slowly or not at all holds neither this thread nor the master's stop.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::channel::{GraphiteCounters, Item, CHANNEL_ITEMS};
use super::render::render;
use crate::log_limited;
use crate::ratelimit::RateLimit;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long writing one chunk may take before the connection is given up
/// (a carbon that takes data slowly would otherwise hold the thread).
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// The same for the last delivery attempt when the master stops.
const FINAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one flush keeps writing chunks before it looks at the channel
/// again (new items, or the receiver gone).
const FLUSH_BUDGET: Duration = Duration::from_secs(1);
/// Longest wait between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Lines per write.
const CHUNK: usize = 500;

/// Lines waiting for carbon, at most `cap`; the oldest go first.
#[derive(Debug)]
pub struct Buffer {
    lines: VecDeque<String>,
    cap: usize,
}

impl Buffer {
    pub fn new(cap: usize) -> Buffer {
        Buffer {
            lines: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Adds a line; returns how many old lines made room for it (0 or 1).
    pub fn push(&mut self, line: String) -> u64 {
        let mut dropped = 0;
        while self.lines.len() >= self.cap {
            self.lines.pop_front();
            dropped += 1;
        }
        self.lines.push_back(line);
        dropped
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// The thread's state.
pub struct Sink {
    target: String,
    prefix: String,
    buffer: Buffer,
    counters: Arc<GraphiteCounters>,
    stream: Option<TcpStream>,
    next_attempt: Instant,
    backoff: Duration,
    conn_limit: RateLimit,
    drop_limit: RateLimit,
    write_timeout: Duration,
}

impl Sink {
    pub fn new(
        target: String,
        prefix: String,
        cap: usize,
        counters: Arc<GraphiteCounters>,
    ) -> Sink {
        Sink {
            target,
            prefix,
            buffer: Buffer::new(cap),
            counters,
            stream: None,
            next_attempt: Instant::now(),
            backoff: Duration::from_secs(1),
            conn_limit: RateLimit::new(3, Duration::from_secs(300)),
            drop_limit: RateLimit::new(1, Duration::from_secs(60)),
            write_timeout: WRITE_TIMEOUT,
        }
    }

    /// Runs until the receiver drops its end; then, if connected, makes one
    /// last short attempt to deliver what is buffered.
    pub fn run(mut self, rx: Receiver<Item>) {
        log::info!(
            "graphite export to {} (prefix {}, buffer {} lines)",
            self.target,
            self.prefix,
            self.buffer.cap
        );
        loop {
            // Sleeps until an item, the next connection attempt (lines
            // waiting), or the receiver gone (a stop); a flush cut short by
            // its budget goes on at once.
            let got = match (self.buffer.is_empty(), &self.stream) {
                (true, _) => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                (false, Some(_)) => rx.recv_timeout(Duration::ZERO),
                (false, None) => {
                    rx.recv_timeout(self.next_attempt.saturating_duration_since(Instant::now()))
                }
            };
            match got {
                Ok(item) => {
                    self.take(item);
                    // Whatever else is queued, before writing: fewer writes.
                    for _ in 0..CHANNEL_ITEMS {
                        match rx.try_recv() {
                            Ok(item) => self.take(item),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.flush(Instant::now());
            self.counters
                .buffered_lines
                .store(self.buffer.len() as u64, Ordering::Relaxed);
        }
        // Only over a live connection, and briefly: stopping the master must
        // not wait for carbon.
        if self.stream.is_some() {
            self.write_timeout = FINAL_WRITE_TIMEOUT;
            self.flush(Instant::now());
        }
        let c = &self.counters;
        log::info!(
            "graphite export stopped: {} lines sent, {} dropped from the full buffer, {} messages or summaries dropped by the receiver, {} unsent",
            c.sent_lines.load(Ordering::Relaxed),
            c.dropped_lines.load(Ordering::Relaxed),
            c.dropped_items.load(Ordering::Relaxed),
            self.buffer.len()
        );
    }

    /// Renders an item into the buffer; a summary brings the export's own
    /// counters along.
    fn take(&mut self, item: Item) {
        let mut lines = Vec::new();
        render(&self.prefix, &item, &mut lines);
        if let Item::Summary { ts, .. } = item {
            let c = &self.counters;
            let base = format!("{}.master.graphite", self.prefix);
            for (name, v) in [
                ("sent_lines", c.sent_lines.load(Ordering::Relaxed)),
                ("dropped_lines", c.dropped_lines.load(Ordering::Relaxed)),
                ("dropped_items", c.dropped_items.load(Ordering::Relaxed)),
                ("buffered_lines", self.buffer.len() as u64),
            ] {
                lines.push(format!("{base}.{name} {v} {ts}"));
            }
        }
        let mut dropped = 0;
        for l in lines {
            dropped += self.buffer.push(l);
        }
        if dropped > 0 {
            let total = self
                .counters
                .dropped_lines
                .fetch_add(dropped, Ordering::Relaxed)
                + dropped;
            log_limited!(
                self.drop_limit,
                log::Level::Warn,
                "graphite buffer full ({} lines) while {} cannot be reached: dropping the oldest lines, {total} dropped so far",
                self.buffer.cap,
                self.target
            );
        }
    }

    /// Writes the buffer out if carbon can be reached now.
    fn flush(&mut self, now: Instant) {
        if self.buffer.is_empty() {
            return;
        }
        if self.stream.is_none() {
            if now < self.next_attempt {
                return;
            }
            self.connect(now);
        }
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        // Carbon never writes to us: readable means it closed the connection.
        // Finding that out before writing saves what would go into the void.
        if let Some(why) = closed(stream) {
            return self.lost(now, &why);
        }
        let budget = now + FLUSH_BUDGET;
        while !self.buffer.is_empty() && Instant::now() < budget {
            let n = self.buffer.len().min(CHUNK);
            let mut chunk = String::new();
            for l in self.buffer.lines.iter().take(n) {
                chunk.push_str(l);
                chunk.push('\n');
            }
            let deadline = Instant::now() + self.write_timeout;
            if let Err(e) = write_until(stream, chunk.as_bytes(), deadline) {
                return self.lost(now, &e);
            }
            self.buffer.lines.drain(..n);
            self.counters
                .sent_lines
                .fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    fn connect(&mut self, now: Instant) {
        let result = self
            .target
            .to_socket_addrs()
            .map_err(|e| e.to_string())
            .and_then(|addrs| {
                let mut last = "no address".to_string();
                for a in addrs {
                    match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                        Ok(s) => return Ok(s),
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(last)
            });
        match result {
            Ok(s) => {
                let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
                let _ = s.set_nodelay(true);
                log::info!(
                    "connected to graphite at {} ({} lines buffered)",
                    self.target,
                    self.buffer.len()
                );
                self.stream = Some(s);
                self.counters.connected.store(true, Ordering::Relaxed);
                self.backoff = Duration::from_secs(1);
            }
            Err(e) => {
                log_limited!(
                    self.conn_limit,
                    log::Level::Warn,
                    "cannot connect to graphite at {}: {e} ({} lines buffered; retrying)",
                    self.target,
                    self.buffer.len()
                );
                self.next_attempt = now + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    fn lost(&mut self, now: Instant, why: &str) {
        self.stream = None;
        self.counters.connected.store(false, Ordering::Relaxed);
        self.next_attempt = now + self.backoff;
        log_limited!(
            self.conn_limit,
            log::Level::Warn,
            "lost connection to graphite at {}: {why} ({} lines buffered, up to {})",
            self.target,
            self.buffer.len(),
            self.buffer.cap
        );
    }
}

/// Writes all of `bytes` by `deadline`, or says why not. Unlike
/// `write_all` with a socket timeout, slow progress cannot stretch it.
fn write_until(stream: &mut TcpStream, bytes: &[u8], deadline: Instant) -> Result<(), String> {
    let mut off = 0;
    while off < bytes.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("write timed out: carbon takes no more data".into());
        }
        stream
            .set_write_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        match stream.write(&bytes[off..]) {
            Ok(0) => return Err("carbon closed the connection".into()),
            Ok(n) => off += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("write timed out: carbon takes no more data".into());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// `Some(why)` if the peer has closed the connection or it failed.
fn closed(stream: &TcpStream) -> Option<String> {
    if let Err(e) = stream.set_nonblocking(true) {
        return Some(e.to_string());
    }
    let mut byte = [0u8; 1];
    let state = match stream.peek(&mut byte) {
        Ok(0) => Some("carbon closed the connection".to_string()),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(e) => Some(e.to_string()),
    };
    if let Err(e) = stream.set_nonblocking(false) {
        return Some(e.to_string());
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_buffer_drops_the_oldest_lines() {
        let mut b = Buffer::new(3);
        let dropped: u64 = (1..=5).map(|i| b.push(format!("l{i}"))).sum();
        assert_eq!(dropped, 2);
        assert_eq!(b.lines, ["l3", "l4", "l5"]);
    }
}
