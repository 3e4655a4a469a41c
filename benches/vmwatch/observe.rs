//! Lines from a pipe, each stamped with the instant it arrived.
//!
//! A reader thread blocks in `read` on the pipe (a child's stdout or
//! stderr, or a FIFO) and stamps each complete line with `Instant::now()`
//! as soon as the read returns it: the resolution is the kernel's wake-up of
//! that thread (microseconds on an idle machine), with no polling and no
//! sleeping. The bench then takes the lines from a channel at its leisure;
//! the stamps are already fixed.
use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Instant;

/// The stamped lines of one source.
pub struct Lines {
    /// Just before the reader started: no line can be older.
    pub started: Instant,
    rx: Receiver<(Instant, String)>,
    /// Lines taken from the channel that no wait has asked for yet.
    pending: Vec<(Instant, String)>,
}

impl Lines {
    /// Starts a reader thread over `source`.
    pub fn spawn(what: &'static str, source: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = channel();
        let started = Instant::now();
        std::thread::Builder::new()
            .name(format!("bench-{what}"))
            .spawn(move || {
                let mut r = BufReader::new(source);
                let mut line = String::new();
                loop {
                    line.clear();
                    match r.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let at = Instant::now();
                            if tx.send((at, line.trim_end().to_string())).is_err() {
                                break;
                            }
                        }
                    }
                }
            })
            .expect("a reader thread starts");
        Lines {
            started,
            rx,
            pending: Vec::new(),
        }
    }

    /// Takes every line that has arrived so far.
    fn take_arrived(&mut self) {
        while let Ok(l) = self.rx.try_recv() {
            self.pending.push(l);
        }
    }

    /// The first line, arrived at or after `since`, that `matches`, waiting
    /// for it until `deadline`; lines before it are dropped. `None` if none
    /// came in time.
    pub fn wait(
        &mut self,
        since: Instant,
        deadline: Instant,
        matches: impl Fn(&str) -> bool,
    ) -> Option<(Instant, String)> {
        loop {
            self.take_arrived();
            if let Some(i) = self
                .pending
                .iter()
                .position(|(at, l)| *at >= since && matches(l))
            {
                let found = self.pending.remove(i);
                self.pending.drain(..i);
                return Some(found);
            }
            self.pending.clear();
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => self.pending.push(l),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    self.take_arrived();
                    return self
                        .pending
                        .iter()
                        .position(|(at, l)| *at >= since && matches(l))
                        .map(|i| self.pending.remove(i));
                }
            }
        }
    }

    /// The lines that arrived since the last call (or wait), dropping them.
    pub fn drain(&mut self) -> Vec<String> {
        self.take_arrived();
        self.pending.drain(..).map(|(_, l)| l).collect()
    }
}
