//! Section: stats sampling of the bench's running guests on the real
//! libvirtd: the node's sampling code (`vmwatch::node::sample`, bulk API
//! and per-domain calls) against spawning `virsh domstats --interface
//! --block`, alternating rounds, medians. Besides wall time, the CPU each
//! costs: the sampling thread's own (CLOCK_THREAD_CPUTIME_ID), virsh's (its
//! rusage once reaped), and libvirtd's (`/proc`, 10 ms ticks, so averaged
//! over the rounds).
//!
//! It reads counters only, which is no lifecycle event: it may run while the
//! `node` section's idle window is open, on the same guests.
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::common::median;
use crate::guests::uri;
use crate::procstat;
use crate::Run;

/// The pid of the libvirtd serving this user: the first process named
/// libvirtd that runs as this process's user (root's is the system one).
fn libvirtd_pid() -> Option<u32> {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() }.to_string();
    let ours = |pid: u32| {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        comm.trim() == "libvirtd"
            && status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next())
                == Some(uid.as_str())
    };
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|&p| ours(p))
}

/// One way of sampling, measured over the rounds.
#[derive(Default)]
struct Way {
    wall_ms: Vec<f64>,
    /// CPU of the sampling side (thread or virsh process), seconds, summed.
    cpu: f64,
    /// libvirtd's CPU, clock ticks, summed.
    libvirtd_ticks: u64,
    /// Domains the last round saw: the bench's own, and all.
    ours: usize,
    seen: usize,
}

impl Way {
    fn cell(&mut self, rounds: usize, tck: f64) -> String {
        format!(
            "{:.1} ms (median); CPU per sample: {:.1} ms here, {:.0} ms in libvirtd",
            median(&mut self.wall_ms),
            self.cpu_ms(rounds),
            self.libvirtd_ms(rounds, tck)
        )
    }
    /// How many domains it saw, for the table.
    fn saw(&self) -> String {
        if self.seen == self.ours {
            format!("{} seen", self.seen)
        } else {
            format!(
                "{} seen: {} of them not the bench's",
                self.seen,
                self.seen - self.ours
            )
        }
    }
    fn cpu_ms(&self, rounds: usize) -> f64 {
        self.cpu * 1000.0 / rounds as f64
    }
    fn libvirtd_ms(&self, rounds: usize, tck: f64) -> f64 {
        self.libvirtd_ticks as f64 / tck * 1000.0 / rounds as f64
    }
}

/// Section 5: bulk vs per-domain vs virsh on the real libvirtd.
pub fn stats_sampling(run: &Run, out: &mut String) {
    let Some(guests) = run.guests() else {
        out.push_str("| stats sampling | skipped (no libvirtd or VMWATCH_BENCH_GUESTS=0) |\n");
        return;
    };
    let n = guests.len();
    vmwatch::node::libvirt::silence_default_errors();
    let conn = virt::connect::Connect::open(Some(&uri())).expect("libvirtd answers");
    let bulk = vmwatch::node::sample::choose(&conn, false);
    let legacy = vmwatch::node::sample::Api::Legacy;
    let daemon = libvirtd_pid();
    let daemon_ticks = || daemon.map(procstat::process_ticks).unwrap_or(0);
    let ours = |name: &str| name.starts_with(&guests.prefix());
    let rounds = run.count(7, 2) as usize;
    let (mut b, mut l, mut v) = (Way::default(), Way::default(), Way::default());
    for _ in 0..rounds {
        for (api, path) in [(bulk, &mut b), (legacy, &mut l)] {
            let (t, c, d) = (Instant::now(), procstat::thread_cpu_secs(), daemon_ticks());
            let readings = vmwatch::node::sample::read(&conn, api)
                .unwrap_or_else(|e| panic!("bench: {api:?} stats failed: {e}"));
            path.seen = readings.len();
            path.ours = readings.iter().filter(|r| ours(&r.domain.name)).count();
            path.wall_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            path.cpu += procstat::thread_cpu_secs() - c;
            path.libvirtd_ticks += daemon_ticks().saturating_sub(d);
        }
        let (t, c, d) = (
            Instant::now(),
            procstat::children_cpu_secs(),
            daemon_ticks(),
        );
        let shown = Command::new("virsh")
            .args(["-q", "-c", &uri(), "domstats", "--interface", "--block"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .expect("virsh runs (libvirt-clients)");
        v.wall_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        v.cpu += procstat::children_cpu_secs() - c;
        v.libvirtd_ticks += daemon_ticks().saturating_sub(d);
        let text = String::from_utf8_lossy(&shown.stdout);
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("Domain: '")?.strip_suffix('\''))
            .collect();
        v.seen = names.len();
        v.ours = names.iter().filter(|n| ours(n)).count();
    }
    if run.quick {
        for (what, p) in [("bulk", &b), ("per-domain", &l), ("virsh domstats", &v)] {
            assert_eq!(
                p.ours, n,
                "bench: {what} stats saw {} of {n} guests",
                p.ours
            );
        }
    }
    let tck = procstat::ticks_per_sec();
    let (bm, lm, vm) = (
        median(&mut b.wall_ms.clone()),
        median(&mut l.wall_ms.clone()),
        median(&mut v.wall_ms.clone()),
    );
    let (b_cpu, b_daemon) = (b.cpu_ms(rounds), b.libvirtd_ms(rounds, tck));
    let v_cpu = v.cpu_ms(rounds) + v.libvirtd_ms(rounds, tck);
    let (bc, lc, vc) = (
        b.cell(rounds, tck),
        l.cell(rounds, tck),
        v.cell(rounds, tck),
    );
    out.push_str(&format!(
        "| stats sample of {n} running TCG guests (started in {:.1} s{}), {rounds} alternating rounds: node, {bulk:?} ({}) | {} |\n\
         | … node, per-domain calls (CentOS 6 path; {}) | {}; bulk/per-domain time {:.2} |\n\
         | … `virsh domstats --interface --block`, spawned ({}) | {}; node bulk/virsh time {:.2}, CPU (with libvirtd's) {:.2} |\n\
         | node CPU per stats tick with {n} guests (bulk; default stats_interval 600 s) | {b_cpu:.1} ms in the node + {b_daemon:.0} ms in libvirtd = {:.4}% of a core at one tick per 600 s |\n",
        guests.start_secs,
        if n < guests.wanted {
            format!("; {} asked for, {n} fitted in half the free memory", guests.wanted)
        } else {
            String::new()
        },
        b.saw(),
        bc,
        l.saw(),
        lc,
        bm / lm,
        v.saw(),
        vc,
        bm / vm,
        (b_cpu + b_daemon) / v_cpu,
        (b_cpu + b_daemon) / 600_000.0 * 100.0,
    ));
}
