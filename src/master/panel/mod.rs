//! The panel thread: delivers queued updates by running `panel_command`.
//!
//! One invocation carries a whole batch on its standard input, one update per
//! line (docs/panel-api.md), so a node that boots with 500 guests costs one
//! process, not 500. Exit status 0 means the panel took the batch; anything
//! else, or running past `panel_timeout`, puts the batch back (newer updates
//! win) and the next try waits longer, up to a minute. The receiver never
//! waits for the panel.
//!
//! A line the command reports as refused (`refused K TEXT`) is set aside
//! (refused.rs) and the rest flows on; a call in which every line was
//! refused is taken as a panel that is down, not as that many refusals.
//!
//! The folder is the panel thread: this file the calls, beside it what it
//! delivers ([`update`]), the queue it takes them from ([`queue`]) and the
//! updates set aside ([`refused`]).

pub mod queue;
pub mod refused;
pub mod update;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::log_limited;
use crate::ratelimit::RateLimit;
use crate::service::Shutdown;
use queue::PanelQueue;
use update::Update;

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Counters of panel calls, for the state file.
#[derive(Debug, Default)]
pub struct PanelCounters {
    pub calls_ok: AtomicU64,
    pub calls_failed: AtomicU64,
    pub updates_delivered: AtomicU64,
    /// Updates the panel refused (each refusal counts).
    pub refused: AtomicU64,
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
            crate::clock::now_ms()
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
    /// The lines the command said it refused (`refused K TEXT`): 0-based
    /// position and what it said, among the first `applied`.
    pub refused: Vec<(usize, String)>,
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

/// The lines the command said it refused (docs/panel-api.md): `refused K
/// TEXT`, K from 1 to `batch`, as (0-based position, TEXT).
fn refused_lines(output: &str, batch: usize) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for l in output.lines() {
        let Some(rest) = l.trim().strip_prefix("refused ") else {
            continue;
        };
        let (k, why) = rest.split_once(' ').unwrap_or((rest, ""));
        match k.parse::<usize>() {
            Ok(n) if crate::vocab::is_decimal(k) && (1..=batch).contains(&n) => {
                let k = n;
                let why: String = why.trim().chars().take(300).collect();
                let why = if why.is_empty() {
                    "refused".to_string()
                } else {
                    why
                };
                match out.iter_mut().find(|(i, _)| *i == k - 1) {
                    Some(e) => e.1 = why,
                    None => out.push((k - 1, why)),
                }
            }
            _ => {}
        }
    }
    out
}

/// Whether a line of the command's output is one of the progress lines.
fn is_progress(line: &str) -> bool {
    let l = line.trim_start();
    l.starts_with("applied ") || l.starts_with("refused ")
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
            refused: Vec::new(),
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
        let mut refused = refused_lines(&said, batch.len());
        let first = said.lines().find(|l| !is_progress(l)).unwrap_or("").trim();
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
            refused.retain(|(i, _)| *i < applied);
            return Outcome {
                result: Err(why),
                applied,
                timed_out: true,
                refused,
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
                refused,
            };
        }
        let how = match (status.code(), status.signal()) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(s)) => format!("was killed by signal {s}"),
            _ => "failed".to_string(),
        };
        refused.retain(|(i, _)| *i < applied);
        Outcome {
            result: Err(if first.is_empty() {
                format!("{name} {how}")
            } else {
                format!("{name} {how}: {first}")
            }),
            applied,
            timed_out: false,
            refused,
        }
    }
}

/// Whether a call's outcome means the panel is down rather than that it
/// refused some lines: it refused every line of a batch of two or more,
/// and not only refused lines being tried again. (One line refused alone
/// is set aside: the others are not held back by a panel that refuses one
/// VM, and a panel that is down refuses the next batch whole.)
fn panel_is_down(o: &Outcome, batch: &[Update], queue: &PanelQueue) -> bool {
    batch.len() >= 2
        && o.refused.len() == batch.len()
        && batch.iter().any(|u| !queue.is_retry(&u.subject()))
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
    let mut refusals = RateLimit::new(5, Duration::from_secs(60));
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
            let now = Instant::now();
            if now < t && !stopping {
                // Until the retry, or a stop (which makes the last call).
                shutdown.nap(t - now);
                continue;
            }
        }
        if !stopping {
            queue.release_due(Instant::now());
            // Sleeps until there is work: an update, a refused one due, a
            // stop.
            queue.wait(&|| shutdown.stopping());
            queue.release_due(Instant::now());
        }
        let batch = queue.take(size.now, Duration::ZERO);
        if batch.is_empty() {
            continue;
        }
        let n = batch.len();
        let started = Instant::now();
        let mut outcome = cmd.call(&batch, shutdown.deadline(LAST_CALL));
        if panel_is_down(&outcome, &batch, &queue) {
            // Every line refused, fresh ones among them: the panel is down
            // (or refuses everything), which is no reason to set them all
            // aside. A failed call: the batch waits with the usual backoff.
            let why = &outcome.refused[0].1;
            outcome = Outcome {
                result: Err(format!(
                    "{} refused every one of the {n} updates ({}), so the panel looks down",
                    cmd.argv[0],
                    crate::logging::escape_control(why)
                )),
                applied: 0,
                timed_out: false,
                refused: Vec::new(),
            };
        }
        let set_aside = queue.settle_refused(outcome.applied, &outcome.refused, Instant::now());
        counters.updates_delivered.fetch_add(
            (outcome.applied - outcome.refused.len()) as u64,
            Ordering::Relaxed,
        );
        counters
            .refused
            .fetch_add(outcome.refused.len() as u64, Ordering::Relaxed);
        for a in &set_aside {
            log_limited!(
                refusals,
                log::Level::Warn,
                "the panel refused an update (refusal {}): {}: {}; set aside, next try in {} s, the others go on",
                a.tries,
                a.update.log_line(),
                crate::logging::escape_control(&a.why),
                a.wait.as_secs()
            );
        }
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
    fn refused_lines_name_the_line_and_what_the_panel_said() {
        let said = "refused 2 mgrctl: no such vm\napplied 2\nrefused 0 x\nrefused 9 x\nrefused x y\nrefused 3\nrefused +3 z\n";
        assert_eq!(
            refused_lines(said, 5),
            vec![
                (1, "mgrctl: no such vm".to_string()),
                (2, "refused".to_string())
            ]
        );
        assert!(is_progress("refused 1 x") && is_progress("applied 3") && !is_progress("error"));
    }

    #[test]
    fn batches_shrink_on_timeouts_and_grow_on_success() {
        let mut b = BatchSize { now: 500, max: 500 };
        let timeout = |applied| Outcome {
            result: Err("slow".into()),
            applied,
            timed_out: true,
            refused: Vec::new(),
        };
        b.after(&timeout(0), 500);
        assert_eq!(b.now, 250);
        b.after(&timeout(40), 250);
        assert_eq!(b.now, 40);
        let ok = Outcome {
            result: Ok(()),
            applied: 40,
            timed_out: false,
            refused: Vec::new(),
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
