//! What the cluster sections (storm, ingest) share: the release master with
//! a counting panel double, the load generator (`examples/loadgen`) as a
//! process of its own, the master's log read as it grows, and each
//! process's CPU time by thread from /proc.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bin, free_port, now_ms, Killed, SECRET};

/// How long any wait of these sections may last before it fails.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// The secret as the load generator's option.
pub fn secret() -> String {
    String::from_utf8_lossy(SECRET).into_owned()
}

/// Polls `f` every 2 ms until it gives `Some`, for at most [`DEADLINE`];
/// `what` names the wait in the panic.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "bench: timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The master under test: the release binary (debug in the smoke run) on
/// a free loopback port, its files in `dir` named `TAG.*`, and a panel
/// double that appends each batch to `TAG.panel` and its size to
/// `TAG.calls` (one line a call), exiting 0 as the panel contract wants.
pub struct Master {
    child: Option<Killed>,
    pub port: u16,
    pub log: PathBuf,
    pub state: PathBuf,
    pub panel: PathBuf,
    pub calls: PathBuf,
    conf: PathBuf,
    pid: PathBuf,
}

impl Master {
    /// Writes the files and starts the master; `extra` is more
    /// configuration. Returns once it listens.
    pub fn start(dir: &Path, tag: &str, extra: &str) -> Master {
        let f = |ext: &str| dir.join(format!("{tag}.{ext}"));
        let (panel, calls, script) = (f("panel"), f("calls"), f("sh"));
        crate::common::write_script(
            &script,
            &format!(
                "#!/bin/sh\ncat >> {}\necho \"$VMWATCH_UPDATES\" >> {}\n",
                panel.display(),
                calls.display()
            ),
        );
        let port = free_port();
        let conf = f("conf");
        std::fs::write(
            &conf,
            format!(
                "listen=tcp://127.0.0.1:{port}\nsecret={}\nlog={}\nsyslog=no\npanel_command={}\nstate_file={}\n{extra}",
                secret(),
                f("log").display(),
                script.display(),
                f("state").display()
            ),
        )
        .unwrap();
        Command::new("chmod")
            .arg("600")
            .arg(&conf)
            .status()
            .unwrap();
        let mut m = Master {
            child: None,
            port,
            log: f("log"),
            state: f("state"),
            panel,
            calls,
            conf,
            pid: f("pid"),
        };
        m.restart();
        m
    }

    /// Starts the master (again, on the same files); returns once it
    /// listens.
    pub fn restart(&mut self) {
        let before = LogTail::new(&self.log);
        self.child = Some(Killed(
            Command::new(bin("vmwatch-master"))
                .args(["-f", "-c"])
                .arg(&self.conf)
                .arg("-p")
                .arg(&self.pid)
                .stderr(Stdio::null())
                .spawn()
                .expect("master starts"),
        ));
        let mut tail = before;
        wait_for("the master to listen", || {
            tail.lines()
                .iter()
                .any(|l| l.contains("listening on"))
                .then_some(())
        });
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the master runs").0.id()
    }

    pub fn endpoint(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Stops the master with SIGTERM (it saves its state file and makes its
    /// last panel call) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.0.id().to_string()).status();
            let _ = c.0.wait();
        }
    }

    /// A counter of the state file (`counter NAME VALUE`), if written.
    pub fn counter(&self, name: &str) -> Option<u64> {
        let text = std::fs::read_to_string(&self.state).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("counter {name} ")))
            .and_then(|v| v.parse().ok())
    }

    /// Panel invocations and lines so far.
    pub fn panel_seen(&self) -> (u64, u64) {
        let text = std::fs::read_to_string(&self.calls).unwrap_or_default();
        let calls = text.lines().count() as u64;
        let lines = text.lines().filter_map(|l| l.parse::<u64>().ok()).sum();
        (calls, lines)
    }
}

/// The master's log, read as it grows (each call returns the new whole
/// lines).
pub struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl LogTail {
    /// From the end of what the file holds now.
    pub fn new(path: &Path) -> LogTail {
        LogTail {
            path: path.to_path_buf(),
            offset: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            partial: String::new(),
        }
    }

    pub fn lines(&mut self) -> Vec<String> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let _ = f.seek(SeekFrom::Start(self.offset));
        let mut text = String::new();
        let n = f.read_to_string(&mut text).unwrap_or(0);
        self.offset += n as u64;
        self.partial.push_str(&text);
        let Some(end) = self.partial.rfind('\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(end + 1);
        let whole = std::mem::replace(&mut self.partial, rest);
        whole.lines().map(str::to_string).collect()
    }

    /// Waits until `n` new lines contain `pattern`; returns the time (epoch
    /// ms) the last of them was logged.
    pub fn wait_count(&mut self, pattern: &str, n: u64, what: &str) -> u64 {
        let mut seen = 0;
        let mut last = 0;
        let clock = LogClock::new();
        wait_for(what, || {
            for l in self.lines() {
                if l.contains(pattern) {
                    seen += 1;
                    last = last.max(clock.epoch_ms(&l).unwrap_or(0));
                }
            }
            (seen >= n).then_some(last)
        })
    }
}

/// Days from 1970-01-01 to a civil date (proleptic Gregorian).
fn days(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A log line's local time (`YYYY-MM-DD HH:MM:SS.mmm ...`) as ms, counted
/// as if local time were UTC.
fn local_ms(line: &str) -> Option<i64> {
    let b = line.get(..23)?;
    let n = |r: std::ops::Range<usize>| b.get(r)?.parse::<i64>().ok();
    let day = days(n(0..4)?, n(5..7)?, n(8..10)?);
    Some(((day * 24 + n(11..13)?) * 60 + n(14..16)?) * 60_000 + n(17..19)? * 1000 + n(20..23)?)
}

/// Turns the master's log times into epoch ms: the offset between the
/// library's log timestamp and the epoch clock, taken at one instant.
pub struct LogClock(i64);

impl LogClock {
    pub fn new() -> LogClock {
        let local = local_ms(&vmwatch::logging::timestamp()).expect("a log timestamp");
        LogClock(local - now_ms() as i64)
    }

    pub fn epoch_ms(&self, line: &str) -> Option<u64> {
        Some((local_ms(line)? - self.0) as u64)
    }
}

/// One thread's scheduler account (/proc/PID/task/TID/schedstat): time on
/// a CPU, and time runnable but waiting for one, in ms.
#[derive(Clone, Debug, Default)]
pub struct Thread {
    pub name: String,
    pub cpu_ms: f64,
    pub wait_ms: f64,
}

/// Every thread of a process, by thread id.
pub type Threads = BTreeMap<u32, Thread>;

pub fn threads(pid: u32) -> Threads {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(tid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let name = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let sched = std::fs::read_to_string(e.path().join("schedstat")).unwrap_or_default();
        let ns: Vec<f64> = sched
            .split_whitespace()
            .map(|w| w.parse().unwrap_or(0.0))
            .collect();
        out.insert(
            tid,
            Thread {
                name: name.trim().to_string(),
                cpu_ms: ns.first().copied().unwrap_or(0.0) / 1e6,
                wait_ms: ns.get(1).copied().unwrap_or(0.0) / 1e6,
            },
        );
    }
    out
}

/// CPU ms of a process's waited-for children (the panel command's runs:
/// `cutime` + `cstime` of /proc/PID/stat, in 10 ms ticks).
pub fn children_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|w| w.parse().unwrap_or(0.0))
        .collect();
    // Fields 16 and 17, the 14th and 15th after `)`.
    (f.get(13).copied().unwrap_or(0.0) + f.get(14).copied().unwrap_or(0.0)) * 10.0
}

/// What each thread used between two readings.
pub fn since(before: &Threads, after: &Threads) -> Threads {
    after
        .iter()
        .map(|(tid, t)| {
            let b = before.get(tid).cloned().unwrap_or_default();
            let d = Thread {
                name: t.name.clone(),
                cpu_ms: t.cpu_ms - b.cpu_ms,
                wait_ms: t.wait_ms - b.wait_ms,
            };
            (*tid, d)
        })
        .collect()
}

/// The threads named `name` together (all of them for `""`).
pub fn named(t: &Threads, name: &str) -> Thread {
    let mut sum = Thread {
        name: name.to_string(),
        ..Thread::default()
    };
    for th in t.values().filter(|th| name.is_empty() || th.name == name) {
        sum.cpu_ms += th.cpu_ms;
        sum.wait_ms += th.wait_ms;
    }
    sum
}

/// A load generator process: lines from its standard output, words to its
/// standard input.
pub struct Loadgen {
    pub child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Loadgen {
    pub fn spawn(args: &[String]) -> Loadgen {
        let mut child = Command::new(bin("examples/loadgen"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("loadgen starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Loadgen {
            child,
            stdin,
            stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line it says (bounded by its own bounded work: each mode
    /// says its lines or exits).
    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).unwrap();
        assert!(!l.is_empty(), "bench: the load generator ended early");
        l.trim_end().to_string()
    }

    /// Waits for a line starting with `word`.
    pub fn expect(&mut self, word: &str) -> String {
        loop {
            let l = self.line();
            if l.starts_with(word) {
                return l;
            }
        }
    }

    pub fn say(&mut self, word: &str) {
        writeln!(self.stdin, "{word}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Tells it to close its sockets and exit; waits.
    pub fn finish(mut self) {
        self.say("exit");
        let _ = self.child.wait();
    }
}

/// A `key=value` number of a load generator's line.
pub fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bench: no {key}= in {line:?}"))
}

/// KiB as MiB, one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The common options of a load generator run.
pub fn lg_args(mode: &str, endpoint: &str, rest: &[(&str, String)]) -> Vec<String> {
    let mut v = vec![mode.to_string(), endpoint.to_string()];
    v.extend(["--secret".to_string(), secret()]);
    for (k, val) in rest {
        v.push(format!("--{k}"));
        v.push(val.clone());
    }
    v
}
