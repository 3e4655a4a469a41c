//! What /proc says of a process the tests watch: resident memory, open
//! descriptors, CPU time. Figures for the reports and the documented
//! bounds, never timings.

use std::path::Path;

use super::read_text;

/// A `kB` field of /proc/PID/status (`VmRSS:`, `VmHWM:`); fails the test if
/// the process or the field is gone.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let text = read_text(Path::new(&format!("/proc/{pid}/status")));
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// How many descriptors a process has open.
pub fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Utime + stime of a process, in clock ticks (/proc/PID/stat).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = read_text(Path::new(&format!("/proc/{pid}/stat")));
    let after = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 of proc(5), counted from the state (field 3).
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Clock ticks a second, the unit of [`cpu_ticks`].
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as u64
}
