//! The panel thread: delivers queued updates by running `panel_command`.
//!
//! One invocation carries a whole batch on its standard input, one update per
//! line (docs/panel-api.md), so a node that boots with 500 guests costs one
//! process, not 500. Exit status 0 means the panel took the batch; anything
//! else, or running past `panel_timeout`, puts the batch back (newer updates
//! win) and the next try waits longer, up to a minute. The receiver never
//! waits for the panel.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::panel_queue::PanelQueue;
use super::update::Update;
use crate::log_limited;
use crate::ratelimit::RateLimit;
use crate::service::Shutdown;

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Counters of panel calls, for the state file.
#[derive(Debug, Default)]
pub struct PanelCounters {
    pub calls_ok: AtomicU64,
    pub calls_failed: AtomicU64,
    pub updates_delivered: AtomicU64,
}

/// How to call the panel.
#[derive(Debug, Clone)]
pub struct PanelCommand {
    pub argv: Vec<String>,
    pub timeout: Duration,
}

/// An anonymous temporary file: created, unlinked at once, used as a pipe
/// that never blocks the writer.
fn scratch_file() -> std::io::Result<File> {
    let dir = std::env::temp_dir();
    for attempt in 0..100u32 {
        let path = dir.join(format!(
            "vmwatch-panel.{}.{}.{attempt}",
            std::process::id(),
            crate::service::now_ms()
        ));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => {
                let _ = std::fs::remove_file(&path);
                return Ok(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temporary file name"))
}

/// How one call ended.
#[derive(Debug)]
pub struct Outcome {
    /// `Err` says why the panel did not take the whole batch.
    pub result: Result<(), String>,
    /// How many updates, from the first, the panel took: the whole batch on
    /// success, else what the command reported with `applied N` lines.
    pub applied: usize,
    /// The command ran out of time (and was killed).
    pub timed_out: bool,
}

/// The highest `applied N` the command wrote (docs/panel-api.md), capped at
/// the batch size.
fn applied_lines(output: &str, batch: usize) -> usize {
    output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("applied "))
        .filter_map(|n| n.trim().parse::<usize>().ok())
        .max()
        .unwrap_or(0)
        .min(batch)
}

/// Most output read back from one call.
const OUTPUT_MAX: u64 = 1 << 20;

impl PanelCommand {
    /// Runs the command once with `batch` on stdin, killing it at its
    /// timeout or at `deadline` (a stopping master), whichever comes first.
    pub fn call(&self, batch: &[Update], deadline: Option<Instant>) -> Outcome {
        let fail = |why: String| Outcome {
            result: Err(why),
            applied: 0,
            timed_out: false,
        };
        let name = &self.argv[0];
        let io = |e: std::io::Error| format!("cannot prepare input for {name}: {e}");
        let prepared = (|| {
            let mut input = scratch_file()?;
            for u in batch {
                input.write_all(u.panel_line().as_bytes())?;
                input.write_all(b"\n")?;
            }
            input.seek(SeekFrom::Start(0))?;
            let output = scratch_file()?;
            Ok::<_, std::io::Error>((input, output))
        })();
        let (input, mut output) = match prepared {
            Ok(io) => io,
            Err(e) => return fail(io(e)),
        };
        let (out1, out2) = match (output.try_clone(), output.try_clone()) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return fail(io(e)),
        };
        let spawned = Command::new(name)
            .args(&self.argv[1..])
            .stdin(Stdio::from(input))
            .stdout(Stdio::from(out1))
            .stderr(Stdio::from(out2))
            .env("VMWATCH_UPDATES", batch.len().to_string())
            .process_group(0)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                return fail(format!(
                    "cannot run panel command {name}: {e} (check panel_command)"
                ))
            }
        };
        let started = Instant::now();
        let mut kill_at = started + self.timeout;
        if let Some(d) = deadline {
            kill_at = kill_at.min(d);
        }
        let mut nap = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= kill_at => {
                    // SAFETY: kill has no memory-safety preconditions; the
                    // child leads its own process group (process_group(0)),
                    // so this reaches everything it started.
                    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => {
                    std::thread::sleep(nap);
                    nap = (nap * 2).min(Duration::from_millis(20));
                }
                Err(e) => return fail(format!("cannot wait for {name}: {e}")),
            }
        };
        let mut said = String::new();
        let _ = output.seek(SeekFrom::Start(0));
        let _ = output.take(OUTPUT_MAX).read_to_string(&mut said);
        let applied = applied_lines(&said, batch.len());
        let first = said
            .lines()
            .find(|l| !l.trim_start().starts_with("applied "))
            .unwrap_or("")
            .trim();
        let first: String = first.chars().take(300).collect();
        let Some(status) = status else {
            let why = if started + self.timeout <= kill_at {
                format!(
                    "{name} did not finish within panel_timeout ({} s); killed after {applied} of {} updates",
                    self.timeout.as_secs(),
                    batch.len()
                )
            } else {
                format!(
                    "{name} was still running when the master had to stop; killed after {applied} of {} updates",
                    batch.len()
                )
            };
            return Outcome {
                result: Err(why),
                applied,
                timed_out: true,
            };
        };
        if status.success() {
            if !said.trim().is_empty() {
                log::debug!("{name} said: {}", said.trim());
            }
            return Outcome {
                result: Ok(()),
                applied: batch.len(),
                timed_out: false,
            };
        }
        let how = match (status.code(), status.signal()) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(s)) => format!("was killed by signal {s}"),
            _ => "failed".to_string(),
        };
        Outcome {
            result: Err(if first.is_empty() {
                format!("{name} {how}")
            } else {
                format!("{name} {how}: {first}")
            }),
            applied,
            timed_out: false,
        }
    }
}

/// How long after a stop request the last panel call may run: the state
/// was saved before it and is saved again after it, inside
/// [`STOP_BUDGET`](crate::service::STOP_BUDGET).
pub const LAST_CALL: Duration = Duration::from_secs(5);

/// The batch size: halved (or cut to what the panel managed) when a call
/// runs out of time, doubled after each success up to `panel_batch`, so a
/// panel slower than a burst still takes part of every call.
struct BatchSize {
    now: usize,
    max: usize,
}

impl BatchSize {
    fn after(&mut self, o: &Outcome, sent: usize) {
        if o.result.is_ok() {
            self.now = (self.now * 2).min(self.max);
        } else if o.timed_out {
            let fits = if o.applied > 0 { o.applied } else { sent / 2 };
            self.now = fits.clamp(1, self.max);
        }
    }
}

/// The panel thread's loop. When a stop is asked for, a call in progress
/// may run until [`LAST_CALL`] after the request; if none was running, one
/// last call is made for what is pending, bounded the same way.
pub fn run(
    queue: Arc<PanelQueue>,
    cmd: PanelCommand,
    batch_max: usize,
    counters: Arc<PanelCounters>,
    shutdown: Arc<Shutdown>,
) {
    let mut backoff = BACKOFF_START;
    let mut limit = RateLimit::new(5, Duration::from_secs(60));
    let mut retry_at: Option<Instant> = None;
    let mut size = BatchSize {
        now: batch_max,
        max: batch_max,
    };
    loop {
        let stopping = shutdown.stopping();
        if stopping && queue.is_empty() {
            break;
        }
        if let Some(t) = retry_at {
            if Instant::now() < t && !stopping {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        }
        let batch = queue.take(size.now, Duration::from_millis(200));
        if batch.is_empty() {
            continue;
        }
        let n = batch.len();
        let started = Instant::now();
        let outcome = cmd.call(&batch, shutdown.deadline(LAST_CALL));
        queue.settle(outcome.applied);
        counters
            .updates_delivered
            .fetch_add(outcome.applied as u64, Ordering::Relaxed);
        size.after(&outcome, n);
        match outcome.result {
            Ok(()) => {
                counters.calls_ok.fetch_add(1, Ordering::Relaxed);
                log::debug!(
                    "panel took {n} updates in {} ms",
                    started.elapsed().as_millis()
                );
                if retry_at.take().is_some() {
                    log::info!("panel calls succeed again");
                }
                backoff = BACKOFF_START;
            }
            Err(why) => {
                counters.calls_failed.fetch_add(1, Ordering::Relaxed);
                if shutdown.stopping() {
                    log::error!(
                        "panel call failed while stopping: {why}; {} updates kept in the state file for the next start",
                        queue.pending().len()
                    );
                    break;
                }
                if outcome.applied > 0 {
                    // The panel is slow, not down: go on at once with the
                    // smaller batch.
                    log_limited!(
                        limit,
                        log::Level::Warn,
                        "panel call incomplete: {why}; continuing with batches of {}",
                        size.now
                    );
                    backoff = BACKOFF_START;
                    continue;
                }
                log_limited!(
                    limit,
                    log::Level::Error,
                    "panel call failed ({n} updates): {why}; retrying in {} s",
                    backoff.as_secs()
                );
                retry_at = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
        if shutdown.stopping() {
            // That was the last call a stopping master makes.
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_lines_count_what_the_panel_took() {
        assert_eq!(applied_lines("", 5), 0);
        assert_eq!(applied_lines("applied 1\napplied 2\nerror x\n", 5), 2);
        assert_eq!(applied_lines("applied 9\n", 5), 5);
        assert_eq!(applied_lines("applied x\n", 5), 0);
    }

    #[test]
    fn batches_shrink_on_timeouts_and_grow_on_success() {
        let mut b = BatchSize { now: 500, max: 500 };
        let timeout = |applied| Outcome {
            result: Err("slow".into()),
            applied,
            timed_out: true,
        };
        b.after(&timeout(0), 500);
        assert_eq!(b.now, 250);
        b.after(&timeout(40), 250);
        assert_eq!(b.now, 40);
        let ok = Outcome {
            result: Ok(()),
            applied: 40,
            timed_out: false,
        };
        b.after(&ok, 40);
        assert_eq!(b.now, 80);
        for _ in 0..10 {
            b.after(&ok, 80);
        }
        assert_eq!(b.now, 500);
        b.after(&timeout(0), 1);
        assert_eq!(b.now, 1, "never below one");
    }
}
