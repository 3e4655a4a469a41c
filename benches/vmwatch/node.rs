//! Background section `node`: the real node beside `virsh event --loop` on
//! the same libvirtd and the same running guests: idle cost over a long
//! window, memory, then event latency.
//!
//! The idle window (`VMWATCH_BENCH_IDLE_SECS`, 600 s; 3 s in the smoke run)
//! is the long pole, so it runs while the other sections do: [`start`]
//! starts the guests and the pipeline ([`Rig`]) and takes the first
//! reading; the finish, after every other section, waits for the window's
//! end, takes the second, then makes events. Nothing may change a guest
//! during the window: the other sections use loopback masters or only read
//! stats (the `stats` section reads the counters of these same guests, which
//! is no lifecycle event); the latency events come after the window closes.
//! The window's lifecycle events are counted from virsh's view, to show it
//! was idle.
use std::time::{Duration, Instant};

use crate::latency::{self, summary};
use crate::procstat::{self, ThreadStat};
use crate::rig::Rig;
use crate::{Finish, Run};

/// The node's shipped intervals, which the rig's node keeps (seconds).
const STATS_INTERVAL: u64 = 600;
const SYNC_INTERVAL: u64 = 600;
const HEARTBEAT_INTERVAL: u64 = 30;
const STATUS_INTERVAL: u64 = 5;

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.1}×", a / b)
    } else {
        "∞ (virsh: none measurable)".into()
    }
}

/// Starts the guests and the pipeline and opens the idle window.
pub fn start(run: &Run) -> Finish {
    let Some(guests) = run.guests() else {
        return Box::new(|_, out: &mut String| {
            out.push_str(
                "| node: idle cost, memory, event latency | skipped (no libvirtd or VMWATCH_BENCH_GUESTS=0) |\n",
            )
        });
    };
    let mut rig = Rig::start(&run.dir, guests);
    // The node's start-up work (first stats sample, snapshot) is done once
    // the snapshot reached the panel; a few seconds more let its threads
    // settle into their idle rhythm before the window opens.
    std::thread::sleep(Duration::from_secs(run.count(3, 1)));
    let idle = Duration::from_secs(
        std::env::var("VMWATCH_BENCH_IDLE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(run.count(600, 3)),
    );
    let (node_pid, virsh_pid) = (rig.node.0.id(), rig.virsh.0.id());
    rig.events.drain();
    eprintln!(
        "bench: node idle window open for {} s while the other sections run",
        idle.as_secs()
    );
    let t0 = Instant::now();
    let before = (
        procstat::threads(node_pid),
        procstat::threads(virsh_pid),
        procstat::process_ticks(node_pid),
        procstat::process_ticks(virsh_pid),
    );
    Box::new(move |run: &Run, out: &mut String| {
        let guests = run.guests().expect("started above");
        let left = (t0 + idle).saturating_duration_since(Instant::now());
        eprintln!(
            "bench: waiting {} s for the node idle window to close",
            left.as_secs()
        );
        std::thread::sleep(left);
        let t1 = Instant::now();
        let after = (
            procstat::threads(node_pid),
            procstat::threads(virsh_pid),
            procstat::process_ticks(node_pid),
            procstat::process_ticks(virsh_pid),
        );
        let window = t1.duration_since(t0).as_secs_f64();
        let changes = rig.events.drain();
        let mem_idle = (procstat::memory(node_pid), procstat::memory(virsh_pid));
        let node = procstat::delta(&before.0, &after.0);
        let virsh = procstat::delta(&before.1, &after.1);
        let tck = procstat::ticks_per_sec();
        let cpu = |ticks: u64| ticks as f64 / tck;
        let (node_cpu, virsh_cpu) = (
            cpu(after.2.saturating_sub(before.2)),
            cpu(after.3.saturating_sub(before.3)),
        );
        let wakes = |t: &ThreadStat| (t.voluntary + t.nonvoluntary) as f64 / window;
        let (nt, vt) = (procstat::total(&node), procstat::total(&virsh));
        // Stats samples and sync snapshots of the node inside the window.
        let since_start = |t: Instant| t.duration_since(rig.node_started).as_secs();
        let ticks_in = |every: u64| since_start(t1) / every - since_start(t0) / every;
        out.push_str(&format!(
            "| node idle cost: {window:.0} s with {} guests running{} and nothing changing (lifecycle events seen by virsh meanwhile: {}); node as shipped (stats_interval {STATS_INTERVAL} s: samples in the window {}; sync_interval {SYNC_INTERVAL} s: snapshots {}; heartbeat {HEARTBEAT_INTERVAL} s; status file every {STATUS_INTERVAL} s) | CPU {:.2} s = {:.3}% of a core; {:.1} wake-ups/s ({:.1} voluntary, {:.1} preempted) |\n",
            guests.len(),
            if guests.foreign > 0 {
                format!(" (and {} other domains)", guests.foreign)
            } else {
                String::new()
            },
            changes.len(),
            ticks_in(STATS_INTERVAL),
            ticks_in(SYNC_INTERVAL),
            node_cpu,
            node_cpu / window * 100.0,
            wakes(&nt),
            nt.voluntary as f64 / window,
            nt.nonvoluntary as f64 / window,
        ));
        out.push_str(&format!(
            "| `virsh event --loop --all`, same window, same libvirtd | CPU {:.2} s = {:.3}% of a core; {:.1} wake-ups/s ({:.1} voluntary, {:.1} preempted); node/virsh: CPU {}, wake-ups {} |\n",
            virsh_cpu,
            virsh_cpu / window * 100.0,
            wakes(&vt),
            vt.voluntary as f64 / window,
            vt.nonvoluntary as f64 / window,
            ratio(node_cpu, virsh_cpu),
            ratio(wakes(&nt), wakes(&vt)),
        ));
        let mut by_thread: Vec<(&String, &ThreadStat)> = node.iter().collect();
        by_thread.sort_by(|a, b| wakes(b.1).partial_cmp(&wakes(a.1)).unwrap());
        let threads: Vec<String> = by_thread
            .iter()
            .map(|(name, t)| {
                format!(
                    "{name} {:.1}/s, {:.0} ms CPU",
                    wakes(t),
                    cpu(t.cpu_ticks) * 1000.0
                )
            })
            .collect();
        out.push_str(&format!(
            "| node idle wake-ups and CPU by thread (`vmwatch-node` is the main thread) | {} |\n",
            threads.join("; ")
        ));
        let events = run.count(200, 6) as usize;
        let t = Instant::now();
        let lat = latency::measure(&mut rig, guests, events, run.quick);
        eprintln!(
            "bench: {} events made in {:.1} s",
            lat.events + 2,
            t.elapsed().as_secs_f64()
        );
        let mem_busy = (procstat::memory(node_pid), procstat::memory(virsh_pid));
        let memory_rows = |when: &str, (n, v): (procstat::Memory, procstat::Memory)| {
            format!(
                "| node memory {when} (smaps_rollup) | {n} |\n\
                 | `virsh event --loop --all` memory {when} | {v}; node/virsh: RSS {}, PSS {}, private dirty {} |\n",
                ratio(n.rss as f64, v.rss as f64),
                ratio(n.pss as f64, v.pss as f64),
                ratio(n.private_dirty as f64, v.private_dirty as f64),
            )
        };
        out.push_str(&memory_rows("at the end of the idle window", mem_idle));
        out.push_str(&memory_rows(
            &format!("after {} more events", lat.events + 2),
            mem_busy,
        ));
        let p50 = |v: &[f64]| latency::percentile(v, 50.0);
        let p99 = |v: &[f64]| latency::percentile(v, 99.0);
        let short = |v: &[f64]| {
            if v.len() < lat.events {
                format!(" (only {} of {} arrived)", v.len(), lat.events)
            } else {
                String::new()
            }
        };
        out.push_str(&format!(
            "| event latency: {} events (suspend/resume of {} guests, each 50 ms after the previous one arrived everywhere); the libvirt call itself returned after | {} |\n\
             | … to `virsh event --loop` printing it | {}{} |\n\
             | … to the master holding it (its log line, node → ZeroMQ → master) | {}{}; vs virsh: p50 {}, p99 {} |\n\
             | … to the panel command reading the update | {}{}; vs virsh: p50 {}, p99 {} |\n",
            lat.events,
            guests.len().min(lat.events.div_ceil(2)),
            summary(&lat.call),
            summary(&lat.virsh),
            short(&lat.virsh),
            summary(&lat.master),
            short(&lat.master),
            ratio(p50(&lat.master), p50(&lat.virsh)),
            ratio(p99(&lat.master), p99(&lat.virsh)),
            summary(&lat.panel),
            short(&lat.panel),
            ratio(p50(&lat.panel), p50(&lat.virsh)),
            ratio(p99(&lat.panel), p99(&lat.virsh)),
        ));
        drop(rig);
    })
}
