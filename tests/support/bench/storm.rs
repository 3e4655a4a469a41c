//! Section: a resync storm against the real master (issue 10): every
//! simulated node reconnects and sends its snapshot at once; then the same
//! storm after a restart from the state file; the master's memory, its
//! state file, and a spell of live traffic over the whole cluster.

use std::time::Instant;

use vmwatch::atomic_file::write_atomic;
use vmwatch::master::panel::PanelCounters;
use vmwatch::master::receiver::replay::ReplayGuard;
use vmwatch::master::receiver::ReceiverCounters;
use vmwatch::master::statefile::{self, render, View};
use vmwatch::master::view::table::StateTable;

use crate::cluster::{
    children_ms, field, lg_args, mib, named, since, threads, wait_for, Loadgen, LogClock, LogTail,
    Master,
};
use crate::common::{median, memory, now_ms};
use crate::Run;

/// The storm's simulated nodes: their ids, instances and domains are the
/// same in every run of the load generator with these options.
fn fleet(mode: &str, ep: &str, nodes: u64, domains: u64, seq: u64) -> Vec<String> {
    lg_args(
        mode,
        ep,
        &[
            ("nodes", nodes.to_string()),
            ("domains", domains.to_string()),
            ("prefix", "st".to_string()),
            ("seed", "7".to_string()),
            ("seq", seq.to_string()),
        ],
    )
}

pub fn storm(run: &Run, out: &mut String) {
    let nodes = run.count(1000, 20);
    let domains = run.count(100, 10);
    let records = nodes * domains;
    let mut m = Master::start(&run.dir, "storm", "");
    let (rss_empty, _) = memory(m.pid());

    // 1. Every node connects and sends its snapshot at once.
    let mut lg = Loadgen::spawn(&fleet("storm", &m.endpoint(), nodes, domains, 1));
    let ready = lg.expect("ready");
    let mut tail = LogTail::new(&m.log);
    let (cpu0, children0) = (threads(m.pid()), children_ms(m.pid()));
    lg.say("go");
    let sent = lg.expect("sent");
    let (t0, messages) = (field(&sent, "t0_ms"), field(&sent, "messages"));
    let t_state = tail.wait_count("): new -> ", records, "every record in the master's state");
    let t_panel = wait_for("the panel to get every record", || {
        (m.panel_seen().1 >= records + nodes).then(now_ms)
    });
    let cpu = since(&cpu0, &threads(m.pid()));
    let children = children_ms(m.pid()) - children0;
    let (calls, lines) = m.panel_seen();
    lg.finish();
    let delivered = std::fs::read_to_string(&m.panel).unwrap_or_default();
    let domain_lines = delivered
        .lines()
        .filter(|l| l.starts_with("vmwatch.domain node=st-"))
        .count() as u64;
    assert_eq!(
        domain_lines, records,
        "bench: the panel got every domain once"
    );
    let (rss_held, hwm_held) = memory(m.pid());
    let receiver = named(&cpu, "receiver");
    let state_s = (t_state - t0) as f64 / 1000.0;
    out.push_str(&format!(
        "| resync storm: {nodes} nodes × {domains} domains reconnect and send their snapshot at once ({records} records in {messages} messages of {} bytes) | all in the master's state after {state_s:.2} s (target ≤ 1 s: {state_s:.2}×); the receiver thread was on a CPU {:.2} s and waited for one {:.2} s, the whole master used {:.2} s of CPU and the panel command's runs {:.2} s; the panel had all {lines} lines ({records} domains + {nodes} nodes) after {:.2} s, in {calls} invocations: {:.1} per 1 000 records (target ≤ 3) |\n",
        field(&ready, "bytes"),
        receiver.cpu_ms / 1000.0,
        receiver.wait_ms / 1000.0,
        named(&cpu, "").cpu_ms / 1000.0,
        children / 1000.0,
        (t_panel - t0) as f64 / 1000.0,
        calls as f64 * 1000.0 / records as f64,
    ));

    // 2. The state file of those records: what it takes to write, and to
    // restore at the next start.
    m.stop();
    let state_bytes = std::fs::metadata(&m.state).map(|md| md.len()).unwrap_or(0);
    let (render_ms, write_ms) = state_file_times(&m.state, &run.dir.join("storm.state-copy"));
    let mut tail = LogTail::new(&m.log);
    m.restart();
    let clock = LogClock::new();
    let log = tail.lines();
    let at = |what: &str| {
        log.iter()
            .find(|l| l.contains(what))
            .and_then(|l| clock.epoch_ms(l))
            .unwrap_or_else(|| panic!("bench: no `{what}` in the master's log"))
    };
    let restore_ms = at(&format!("{records} domains and")) - at("starting (pid");
    let (rss_restored, _) = memory(m.pid());

    // 3. The same storm after the restart: the snapshots match what the
    // panel already has.
    let (calls0, lines0) = m.panel_seen();
    let mut lg = Loadgen::spawn(&fleet("storm", &m.endpoint(), nodes, domains, 2));
    lg.expect("ready");
    let cpu0 = threads(m.pid());
    lg.say("go");
    let messages = field(&lg.expect("sent"), "messages");
    // The state file (every state_interval, 5 s) says when all were taken.
    wait_for("the master to accept the second storm", || {
        (m.counter("accepted")? >= messages).then_some(())
    });
    let cpu = since(&cpu0, &threads(m.pid()));
    lg.finish();
    let pending = m.counter("panel.pending").unwrap_or(u64::MAX);
    let (calls1, lines1) = m.panel_seen();
    out.push_str(&format!(
        "| the same storm after a master restart from its state file (every snapshot matches what the panel has) | {} panel invocations, {} lines, {pending} pending (target: nothing); {messages} messages accepted with {:.2} s of receiver CPU |\n",
        calls1 - calls0,
        lines1 - lines0,
        named(&cpu, "receiver").cpu_ms / 1000.0,
    ));

    // 4. The whole cluster at work for a few seconds: lifecycle events,
    // stats samples and heartbeats from every node (signed as sent).
    let (rate, secs) = (run.count(2000, 50), run.count(3, 1));
    let mut tail = LogTail::new(&m.log);
    let mut args = fleet("live", &m.endpoint(), nodes, domains, 3);
    for (k, v) in [
        ("rate", rate),
        ("seconds", secs),
        ("stats-every", 1),
        ("heartbeat-every", 1),
    ] {
        args.extend([format!("--{k}"), v.to_string()]);
    }
    let mut lg = Loadgen::spawn(&args);
    let done = lg.expect("done");
    tail.wait_count("domain marker-st-", nodes, "the live traffic's markers");
    let (rss_live, hwm_live) = memory(m.pid());
    lg.finish();
    m.stop();
    out.push_str(&format!(
        "| live traffic over the same cluster for {secs} s ({} events, {} stats samples, {} heartbeats, {} snapshots) | all handled (each node's last message reached the log) |\n\
         | master memory | empty {}; holding {records} domains after the storm {} ({:.2} KiB a domain), peak {}; restarted from the state file {}; after the live traffic {} (peak {}) |\n\
         | state file holding {records} domains | {:.1} MB; rendered in {render_ms:.0} ms and written (temporary file, fsync, rename) in {write_ms:.0} ms (in-process, median of 3); restored at start in {restore_ms} ms |\n",
        field(&done, "events"),
        field(&done, "stats"),
        field(&done, "heartbeats"),
        field(&done, "snapshots"),
        mib(rss_empty),
        mib(rss_held),
        (rss_held - rss_empty) as f64 / records as f64,
        mib(hwm_held),
        mib(rss_restored),
        mib(rss_live),
        mib(hwm_live),
        state_bytes as f64 / 1e6,
    ));
}

/// How long the master's saver takes for the state file at `path`: the
/// file is read back into a state table, then rendered and written (to
/// `copy`) as the daemon does it, 3 times; medians in ms.
fn state_file_times(path: &std::path::Path, copy: &std::path::Path) -> (f64, f64) {
    let bytes = std::fs::read(path).expect("bench: the master wrote its state file");
    let f = statefile::parse(&path.display().to_string(), &bytes);
    assert!(
        !f.damaged(),
        "bench: the state file is damaged: {:?}",
        f.problems
    );
    let mut table = StateTable::new(false, 90);
    let mut guard = ReplayGuard::new(300);
    let pending = statefile::restore(&f, &mut table, &mut guard, now_ms());
    let (counters, panel) = (ReceiverCounters::default(), PanelCounters::default());
    let (mut render_ms, mut write_ms) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = Instant::now();
        let text = render(&View {
            table: &table,
            guard: &guard,
            counters: &counters,
            panel: &panel,
            graphite: None,
            pending: &pending,
            aside: &[],
            clocks: &[],
            listen: "tcp://127.0.0.1:1",
            started_ms: 1,
            now_ms: now_ms(),
        });
        render_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        write_atomic(copy, &text).expect("bench: the state file copy is written");
        write_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (median(&mut render_ms), median(&mut write_ms))
}
