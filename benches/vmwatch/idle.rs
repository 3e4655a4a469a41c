//! Section `idle`: how often each thread of an idle node and an idle master
//! wakes up, beside `virsh event --loop --all` on the same libvirtd and the
//! same running guests.
//!
//! A daemon with nothing to do should sleep until there is something: a
//! message, a libvirt event, a timer with real work (heartbeat, stats
//! sample, liveness tick) or a stop. This section starts its own pipeline
//! ([`Rig`]: virsh, the master, the node with its shipped intervals) on the
//! bench's guests, lets it settle, and counts every thread's context
//! switches (voluntary + involuntary, `/proc/PID/task/*/status`; thread
//! names from `comm`) over a window in which nothing changes
//! (`VMWATCH_BENCH_WAKE_SECS`, 120 s; 3 s in the smoke run). Each switch is
//! one wake-up of that thread. Lifecycle events virsh saw in the window are
//! counted, to show it was idle.
use std::time::{Duration, Instant};

use crate::procstat::{self, ThreadStat};
use crate::rig::Rig;
use crate::Run;

/// Wake-ups per second of each thread, busiest first, and of all of them.
fn per_thread(before: &procstat::Threads, after: &procstat::Threads, secs: f64) -> (f64, String) {
    let d = procstat::delta(before, after);
    let wakes = |t: &ThreadStat| (t.voluntary + t.nonvoluntary) as f64 / secs;
    let mut rows: Vec<(&String, f64)> = d.iter().map(|(n, t)| (n, wakes(t))).collect();
    rows.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(b.0)));
    let text: Vec<String> = rows.iter().map(|(n, w)| format!("`{n}` {w:.2}")).collect();
    (wakes(&procstat::total(&d)), text.join(", "))
}

/// The process id in a pidfile.
fn pid_in(path: &std::path::Path) -> u32 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("bench: no pid in {}", path.display()))
}

pub fn idle(run: &Run, out: &mut String) {
    let Some(guests) = run.guests() else {
        out.push_str(
            "| idle wake-ups per thread | skipped (no libvirtd or VMWATCH_BENCH_GUESTS=0) |\n",
        );
        return;
    };
    // Its own folder: the `node` section's rig runs at the same time.
    let dir = run.dir.join("idle");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rig = Rig::start(&dir, guests);
    // Start-up work (the first stats sample, the snapshot at the panel)
    // done, a few seconds more let every thread settle.
    std::thread::sleep(Duration::from_secs(run.count(5, 1)));
    let window = Duration::from_secs(
        std::env::var("VMWATCH_BENCH_WAKE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(run.count(120, 3)),
    );
    let master_pid = pid_in(&dir.join("rig-master.pid"));
    let pids = [
        ("vmwatch-node", rig.node.0.id()),
        ("vmwatch-master", master_pid),
        ("`virsh event --loop --all`", rig.virsh.0.id()),
    ];
    rig.events.drain();
    eprintln!("bench: idle window of {} s", window.as_secs());
    let t0 = Instant::now();
    let before: Vec<procstat::Threads> = pids.iter().map(|(_, p)| procstat::threads(*p)).collect();
    std::thread::sleep(window);
    let after: Vec<procstat::Threads> = pids.iter().map(|(_, p)| procstat::threads(*p)).collect();
    let secs = t0.elapsed().as_secs_f64();
    let changes = rig.events.drain();
    if let Some(first) = changes.first() {
        eprintln!(
            "bench: the window was not idle: virsh saw {} events, the first: {first}",
            changes.len()
        );
    }
    let figures: Vec<(f64, String)> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| per_thread(b, a, secs))
        .collect();
    out.push_str(&format!(
        "| idle wake-ups: {secs:.0} s, {} guests running, nothing changing (lifecycle events seen by virsh: {}); shipped intervals | node **{:.2}/s**, master **{:.2}/s**, virsh **{:.2}/s** |\n",
        guests.len(),
        changes.len(),
        figures[0].0,
        figures[1].0,
        figures[2].0,
    ));
    for ((name, _), (total, threads)) in pids.iter().zip(&figures) {
        out.push_str(&format!(
            "| … {name} by thread, wake-ups/s (the main thread has the program's name) | {total:.2} in all: {threads} |\n"
        ));
    }
    drop(rig);
}
