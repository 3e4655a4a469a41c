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

impl PanelCommand {
    /// Runs the command once with `batch` on stdin. `Err` says why the panel
    /// did not take it.
    pub fn call(&self, batch: &[Update]) -> Result<(), String> {
        let name = &self.argv[0];
        let io = |e: std::io::Error| format!("cannot prepare input for {name}: {e}");
        let mut input = scratch_file().map_err(io)?;
        for u in batch {
            input.write_all(u.panel_line().as_bytes()).map_err(io)?;
            input.write_all(b"\n").map_err(io)?;
        }
        input.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut output = scratch_file().map_err(io)?;
        let mut child = Command::new(name)
            .args(&self.argv[1..])
            .stdin(Stdio::from(input))
            .stdout(Stdio::from(output.try_clone().map_err(io)?))
            .stderr(Stdio::from(output.try_clone().map_err(io)?))
            .env("VMWATCH_UPDATES", batch.len().to_string())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run panel command {name}: {e} (check panel_command)"))?;
        let started = Instant::now();
        let mut nap = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() >= self.timeout => {
                    // SAFETY: kill has no memory-safety preconditions; the
                    // child leads its own process group (process_group(0)),
                    // so this reaches everything it started.
                    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                    let _ = child.wait();
                    return Err(format!(
                        "{name} did not finish within panel_timeout ({} s); killed",
                        self.timeout.as_secs()
                    ));
                }
                Ok(None) => {
                    std::thread::sleep(nap);
                    nap = (nap * 2).min(Duration::from_millis(20));
                }
                Err(e) => return Err(format!("cannot wait for {name}: {e}")),
            }
        };
        let mut said = String::new();
        let _ = output.seek(SeekFrom::Start(0));
        let _ = output.take(2048).read_to_string(&mut said);
        let said = said.trim();
        if status.success() {
            if !said.is_empty() {
                log::debug!("{name} said: {said}");
            }
            return Ok(());
        }
        let how = match (status.code(), status.signal()) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(s)) => format!("was killed by signal {s}"),
            _ => "failed".to_string(),
        };
        let first = said.lines().next().unwrap_or("");
        Err(if first.is_empty() {
            format!("{name} {how}")
        } else {
            format!("{name} {how}: {first}")
        })
    }
}

/// The panel thread's loop. On stop it makes one last delivery attempt for
/// what is pending, then reports anything it could not deliver.
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
        let batch = queue.take(batch_max, Duration::from_millis(200));
        if batch.is_empty() {
            continue;
        }
        let n = batch.len();
        let started = Instant::now();
        match cmd.call(&batch) {
            Ok(()) => {
                counters.calls_ok.fetch_add(1, Ordering::Relaxed);
                counters
                    .updates_delivered
                    .fetch_add(n as u64, Ordering::Relaxed);
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
                queue.requeue(batch);
                if stopping {
                    log::error!(
                        "panel call failed while stopping: {why}; {} updates kept in the state file for the next start",
                        queue.len()
                    );
                    break;
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
    }
}
