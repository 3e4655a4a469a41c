//! What /proc says about a process: CPU time and context switches per
//! thread (`/proc/PID/task/TID/stat` and `status`), and memory
//! (`/proc/PID/smaps_rollup`).
use std::collections::BTreeMap;

/// Clock ticks per second, the unit of utime and stime.
pub fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// One thread's counters.
#[derive(Debug, Clone, Default)]
pub struct ThreadStat {
    pub name: String,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub voluntary: u64,
    pub nonvoluntary: u64,
}

/// A process's threads, by thread id.
pub type Threads = BTreeMap<u32, ThreadStat>;

/// Every thread of `pid` now; empty if the process is gone.
pub fn threads(pid: u32) -> Threads {
    let mut out = Threads::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let base = entry.path();
        let stat = std::fs::read_to_string(base.join("stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis: state is the 3rd
        // field of the line, utime the 14th and stime the 15th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let status = std::fs::read_to_string(base.join("status")).unwrap_or_default();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.insert(
            tid,
            ThreadStat {
                name: std::fs::read_to_string(base.join("comm"))
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
                cpu_ticks: num(11) + num(12),
                voluntary: field("voluntary_ctxt_switches:"),
                nonvoluntary: field("nonvoluntary_ctxt_switches:"),
            },
        );
    }
    out
}

/// What a process did between two readings: per thread name (threads that
/// share a name are summed), CPU ticks and context switches.
pub fn delta(before: &Threads, after: &Threads) -> BTreeMap<String, ThreadStat> {
    let mut out: BTreeMap<String, ThreadStat> = BTreeMap::new();
    for (tid, a) in after {
        let b = before.get(tid).cloned().unwrap_or_default();
        let d = out.entry(a.name.clone()).or_insert_with(|| ThreadStat {
            name: a.name.clone(),
            ..Default::default()
        });
        d.cpu_ticks += a.cpu_ticks.saturating_sub(b.cpu_ticks);
        d.voluntary += a.voluntary.saturating_sub(b.voluntary);
        d.nonvoluntary += a.nonvoluntary.saturating_sub(b.nonvoluntary);
    }
    out
}

/// The sum over every thread.
pub fn total(per_thread: &BTreeMap<String, ThreadStat>) -> ThreadStat {
    per_thread.values().fold(ThreadStat::default(), |mut t, s| {
        t.cpu_ticks += s.cpu_ticks;
        t.voluntary += s.voluntary;
        t.nonvoluntary += s.nonvoluntary;
        t
    })
}

/// utime + stime of the whole process (its threads, living and ended), in
/// clock ticks.
pub fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    num(11) + num(12)
}

/// A process's memory from `/proc/PID/smaps_rollup`, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss: u64,
    pub pss: u64,
    /// Private_Dirty: memory only this process holds and wrote.
    pub private_dirty: u64,
    pub anonymous: u64,
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {} KiB, PSS {} KiB, private dirty {} KiB (anonymous {} KiB)",
            self.rss, self.pss, self.private_dirty, self.anonymous
        )
    }
}

pub fn memory(pid: u32) -> Memory {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Memory {
        rss: field("Rss:"),
        pss: field("Pss:"),
        private_dirty: field("Private_Dirty:"),
        anonymous: field("Anonymous:"),
    }
}

/// CPU time this thread has used, in seconds (CLOCK_THREAD_CPUTIME_ID:
/// nanosecond resolution, unlike the 10 ms clock ticks of /proc).
pub fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// CPU time of this process's waited-for children so far, in seconds.
pub fn children_cpu_secs() -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is valid and writable for the duration of the call.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}
