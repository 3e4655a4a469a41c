//! Clock steps on both sides, a long master outage, and a full list cut
//! short, on the machine's real libvirtd with real QEMU guests (issue 16).
//!
//! The daemon under test runs with Debian's libfaketime preloaded
//! (`faketime` package, installed by tests/support/setup-host.sh), reading
//! its offset from a timestamp file the test rewrites while it runs
//! (`FAKETIME_NO_CACHE=1`), with the monotonic clock left alone
//! (`FAKETIME_DONT_FAKE_MONOTONIC=1`): only its wall clock moves, as an NTP step or
//! `date -s` does. `vmwatch-master --status` and check_vmwatch run with the
//! same clock, as they would on the stepped host.
//!
//! What the old code did, and these tests refuse: a master stepped back 2 h
//! refused every message as stale and never reported the node down (a silent
//! blackout); a step forward beyond `node_timeout` reported every node down
//! and up; a node whose own clock was off was silently dropped; and a node
//! whose master was away used 42 % of a core (libvirtd 77 %) listing every
//! domain every 250 ms once its queue was full; and a list cut short by
//! libvirtd dying made the master tell the panel the unlisted VMs were
//! undefined. For that last one a proxy on the node's libvirt socket cuts
//! the connection half way through a list: a stand-in for libvirtd dying,
//! because the system libvirtd is shared and must not be killed here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::guest::{libvirtd_pid, require_libvirtd, Guest, URI};
use crate::common::procfs::{cpu_ticks, rss_kib, ticks_per_second};
use crate::common::*;

/// Deadline for a guest operation's event, or a clock report, to show.
const DEADLINE: Duration = Duration::from_secs(60);

/// libfaketime's multi-threaded library, from Debian's `faketime` package.
fn faketime_lib() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!("libfaketime is missing: run `bash tests/support/setup-host.sh` (it installs Debian's faketime; make test does)")
    })
}

/// A wall clock the test steps for one daemon.
struct FakeClock {
    file: PathBuf,
    lib: PathBuf,
}

impl FakeClock {
    fn new(dir: &TestDir, tag: &str) -> FakeClock {
        let c = FakeClock {
            file: dir.join(&format!("{tag}.faketime")),
            lib: faketime_lib(),
        };
        c.set(0);
        c
    }

    /// The environment that makes a process read this clock.
    fn env(&self) -> Vec<(String, String)> {
        [
            ("LD_PRELOAD", self.lib.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".to_string()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .to_vec()
    }

    /// Steps the wall clock to `offset_s` from the truth (atomically: the
    /// daemon reads the file at every clock read).
    fn set(&self, offset_s: i64) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset_s:+}\n")).expect("write the faketime file");
        std::fs::rename(&tmp, &self.file).expect("move the faketime file in place");
    }
}

fn start_master_with(
    dir: &TestDir,
    panel: &Panel,
    extra: &str,
    port: u16,
    clock: Option<&FakeClock>,
) -> Daemon {
    dir.write_config(
        "master.conf",
        &master_config_text(dir, port, SECRET, panel, extra),
    );
    let env = clock.map(FakeClock::env).unwrap_or_default();
    let mut m = spawn_master_env(dir, "master", &env);
    m.wait_log("listening on", DAEMON_DEADLINE);
    m
}

fn start_node_with(dir: &TestDir, text: &str, clock: Option<&FakeClock>) -> Daemon {
    let env = clock.map(FakeClock::env).unwrap_or_default();
    start_node_env(dir, "node", text, &env)
}

/// Runs a tool to completion with `env`: (exit code, stdout).
fn run(bin: &Path, args: &[&str], env: &[(String, String)]) -> (i32, String) {
    let out = Command::new(bin)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// check_vmwatch in master mode on this test's master.
fn check_master(dir: &TestDir, master: &Daemon, env: &[(String, String)]) -> (i32, String) {
    let state = dir.join("master.state").display().to_string();
    let pid = master.pidfile.display().to_string();
    run(
        &plugin_bin(),
        &["-M", "master", "-f", &state, "-p", &pid],
        env,
    )
}

/// check_vmwatch in node mode on this test's node.
fn check_node(dir: &TestDir, node: &Daemon, env: &[(String, String)]) -> (i32, String) {
    let status = dir.join("node.status").display().to_string();
    let pid = node.pidfile.display().to_string();
    run(
        &plugin_bin(),
        &["-M", "node", "-f", &status, "-p", &pid],
        env,
    )
}

/// `vmwatch-master --status` on this test's master.
fn master_status(master: &Daemon, env: &[(String, String)]) -> String {
    let (conf, pid) = (
        master.config.display().to_string(),
        master.pidfile.display().to_string(),
    );
    run(&master_bin(), &["--status", "-c", &conf, "-p", &pid], env).1
}

/// The `clock` lines of the master's state file.
fn clock_lines(dir: &TestDir) -> Vec<String> {
    read_text(&dir.join("master.state"))
        .lines()
        .filter(|l| l.starts_with("clock "))
        .map(str::to_string)
        .collect()
}

/// How many times the panel was told node `id` went down.
fn downs(panel: &Panel, id: &str) -> usize {
    panel
        .lines()
        .iter()
        .filter(|l| l.function == "vmwatch.node" && l.field("node") == id)
        .filter(|l| l.field("status") == "down")
        .count()
}

/// Waits until every report of a clock found off names `who` (`master`,
/// or `node ID`) and says `words`: the log line, the state file, `--status`
/// and check_vmwatch (CRITICAL).
fn wait_reported(
    dir: &TestDir,
    master: &Daemon,
    env: &[(String, String)],
    who: &str,
    words: &str,
    ctx: &dyn Fn() -> String,
) {
    let line_start = format!("clock {who} ");
    let whose = if who == "master" {
        "the master's clock".to_string()
    } else {
        format!("{who}'s clock")
    };
    let said = format!("{whose} is {words}");
    // The state file's line, the log, --status and check_vmwatch (CRITICAL)
    // all say it.
    let (status, check) = wait_for(
        &format!("`{said}` in the log, the state file, --status and check_vmwatch"),
        DEADLINE,
        || {
            let line = clock_lines(dir).iter().any(|l| l.starts_with(&line_start));
            let logged = master.log_text().contains(&said);
            let status = master_status(master, env);
            let check = check_master(dir, master, env);
            (line && logged && status.contains(&said) && check.1.contains(&said))
                .then_some((status, check))
        },
        ctx,
    );
    assert!(status.contains("CRITICAL"), "{status}");
    assert_eq!(check.0, 2, "check_vmwatch CRITICAL: {}", check.1);
}

/// Waits until the state file has no `clock` line and check_vmwatch names
/// no clock.
fn wait_cleared(
    dir: &TestDir,
    master: &Daemon,
    env: &[(String, String)],
    ctx: &dyn Fn() -> String,
) {
    wait_for(
        "the clock report to clear",
        DEADLINE,
        || {
            let (_, out) = check_master(dir, master, env);
            (clock_lines(dir).is_empty() && !out.contains("clock is")).then_some(())
        },
        ctx,
    );
}

/// Waits until the panel's last line for the guest says `state`.
fn wait_state(panel: &Panel, uuid: &str, state: &str, ctx: &dyn Fn() -> String) {
    wait_for(
        &format!("`state={state}` for {uuid} at the panel"),
        DEADLINE,
        || {
            let lines = panel.domain_lines(uuid);
            (lines.last().map(|l| l.field("state")) == Some(state)).then_some(())
        },
        ctx,
    );
}

const NODE: &str = "clock-1";

/// The node's configuration in these tests: tag `node`, id [`NODE`], its
/// status file `node.status` in `dir`, and `extra` lines.
fn clock_node_text(dir: &TestDir, port: u16, uri: &str, extra: &str) -> String {
    node_config_text(
        dir,
        "node",
        port,
        SECRET,
        NODE,
        uri,
        &format!("{extra}status_file={}\n", dir.join("node.status").display()),
    )
}

/// `virsh suspend` or `resume` of `g`, then waits until the panel has the
/// state that follows (`paused`, `running`).
fn operate(g: &Guest, op: &str, panel: &Panel, ctx: &dyn Fn() -> String) {
    if op == "suspend" {
        g.suspend();
        wait_state(panel, &g.uuid, "paused", ctx);
    } else {
        g.resume();
        wait_state(panel, &g.uuid, "running", ctx);
    }
}

/// The master stepped back 2 h, forward 1 h and forward 120 s while a real
/// node sends a heartbeat every second (`node_timeout=6`): every step is
/// reported within a minute naming the master, events keep reaching the
/// panel, the node is never reported down, and the report clears when the
/// clock is set right.
#[test]
#[ignore = "needs libvirtd: make test"]
fn master_clock_steps_are_reported_and_silence_nothing() {
    require_libvirtd();
    let dir = TestDir::new("clock-master");
    let panel = Panel::new(&dir);
    let clock = FakeClock::new(&dir, "master");
    let port = free_port();
    let master = start_master_with(
        &dir,
        &panel,
        "node_timeout=6\nstate_interval=1\n",
        port,
        Some(&clock),
    );
    let g = Guest::new(&dir, "clock-m");
    g.define();
    g.start();
    let node = start_node_with(
        &dir,
        &clock_node_text(&dir, port, URI, "heartbeat_interval=1\nsync_interval=5\n"),
        None,
    );
    let ctx = || report(&[&master, &node], Some(&panel));
    wait_state(&panel, &g.uuid, "running", &ctx);
    let env = clock.env();

    for (offset, said, event) in [
        (-7200, "2 h 0 min behind", "suspend"),
        (3600, "1 h 0 min ahead", "resume"),
        (120, "2 min 0 s ahead", "suspend"),
    ] {
        clock.set(offset);
        // The node's offset moved with the master's step: the master's.
        wait_reported(&dir, &master, &env, "master", said, &ctx);
        // Events still flow while the master's clock is wrong.
        operate(&g, event, &panel, &ctx);
        // Set right: cleared, and the panel exact again.
        clock.set(0);
        wait_cleared(&dir, &master, &env, &ctx);
        assert_eq!(downs(&panel, NODE), 0, "never reported down\n{}", ctx());
    }
    g.resume();
    wait_state(&panel, &g.uuid, "running", &ctx);
    assert_eq!(downs(&panel, NODE), 0, "never reported down\n{}", ctx());
    let st = master_state(&dir);
    assert!(
        st.nodes.iter().any(|n| n.node == NODE && n.up),
        "{:?}",
        st.nodes
    );
}

/// The node's clock stepped back 1 h, forward 1 h and forward 120 s: the
/// master keeps accepting it (its instance is known) and names the node;
/// the node reports its own steps in its status file and check_vmwatch's
/// node mode; and a node restarted with its clock 1 h off is refused as
/// stale yet named, never silently dropped.
#[test]
#[ignore = "needs libvirtd: make test"]
fn node_clock_steps_are_reported_at_both_ends() {
    require_libvirtd();
    let dir = TestDir::new("clock-node");
    let panel = Panel::new(&dir);
    let clock = FakeClock::new(&dir, "node");
    let port = free_port();
    let master = start_master_with(
        &dir,
        &panel,
        "node_timeout=6\nstate_interval=1\n",
        port,
        None,
    );
    let g = Guest::new(&dir, "clock-n");
    g.define();
    g.start();
    let node_text = clock_node_text(
        &dir,
        port,
        URI,
        "heartbeat_interval=1\nsync_interval=5\nstatus_interval=1\n",
    );
    let mut node = start_node_with(&dir, &node_text, Some(&clock));
    let env = clock.env();
    let who = format!("node {NODE}");
    {
        let ctx = || report(&[&master, &node], Some(&panel));
        wait_state(&panel, &g.uuid, "running", &ctx);
        let node_check = || check_node(&dir, &node, &env);
        let node_says = |words: &str| {
            wait_for(
                &format!("check_vmwatch node mode to say `{words}`"),
                DEADLINE,
                || {
                    let (code, out) = node_check();
                    (code == 2 && out.contains(words)).then_some(())
                },
                || format!("{}\n{}", node_check().1, ctx()),
            );
        };
        // (offset from the truth, what the master says, what the node says
        // of its steps in all, next guest operation)
        for (offset, master_says, node_total, event) in [
            (
                -3600,
                Some("1 h 0 min behind"),
                "1 h 0 min behind",
                "suspend",
            ),
            (3600, Some("1 h 0 min ahead"), "1 h 0 min ahead", "resume"),
            (120, None, "2 min 0 s ahead", "suspend"),
        ] {
            clock.set(offset);
            match master_says {
                Some(words) => wait_reported(&dir, &master, &[], &who, words, &ctx),
                // Within max_clock_skew: the master does not blame it.
                None => wait_cleared(&dir, &master, &[], &ctx),
            }
            node_says(&format!(
                "this node's clock stepped: it is now {node_total} what it was"
            ));
            operate(&g, event, &panel, &ctx);
        }
        // Set right: the node's own report clears too.
        clock.set(0);
        wait_for(
            "check_vmwatch node mode to stop naming the clock",
            DEADLINE,
            || (!node_check().1.contains("clock stepped")).then_some(()),
            || format!("{}\n{}", node_check().1, ctx()),
        );
        wait_cleared(&dir, &master, &[], &ctx);
        assert_eq!(downs(&panel, NODE), 0, "never reported down\n{}", ctx());
    }

    // Restarted with its clock 1 h ahead: a new instance that far off
    // cannot be told from a replay. Refused, counted, and named.
    node.stop();
    clock.set(3600);
    let node = start_node_with(&dir, &node_text, Some(&clock));
    let ctx = || report(&[&master, &node], Some(&panel));
    wait_reported(&dir, &master, &[], &who, "1 h 0 min ahead", &ctx);
    let st = master_state(&dir);
    let stale = st
        .counters
        .iter()
        .find(|(k, _)| k == "rejected.stale")
        .map(|c| c.1);
    assert!(stale.is_some_and(|n| n > 0), "{:?}", st.counters);
    // Set right: the node is heard again and the panel exact.
    clock.set(0);
    wait_cleared(&dir, &master, &[], &ctx);
    g.resume();
    wait_state(&panel, &g.uuid, "running", &ctx);
}

/// Waits until the node's status file was rewritten `n` more times (one a
/// second with `status_interval=1`): time as the node lives it.
fn wait_status_writes(dir: &TestDir, n: usize, ctx: &dyn Fn() -> String) {
    let written = || {
        read_text(&dir.join("node.status"))
            .lines()
            .find_map(|l| l.strip_prefix("written ").map(str::to_string))
    };
    let mut last = written();
    let mut seen = 0;
    wait_for(
        &format!("{n} rewrites of the node's status file"),
        DEADLINE,
        || {
            let now = written();
            if now != last {
                seen += 1;
                last = now;
            }
            (seen >= n).then_some(())
        },
        ctx,
    );
}

/// Full lists the node queued, by its log (debug).
fn lists_queued(node: &Daemon) -> usize {
    node.log_lines("domains queued").len() + node.log_lines("sent a full snapshot").len()
}

/// An hour-long master outage, compressed: `sync_interval=2` over a 12 s
/// quiet wait (6 periodic lists wanted, as an hour of the default 600 s
/// asks), then 80 events into a 16-item queue, then 12 s more of quiet.
/// The node queues one list for the whole outage, uses next to no CPU and
/// makes libvirtd do nothing while quiet, its memory stays flat, and the
/// master gets one list on reconnection (plus the one that repairs the
/// events lost to the overflow), not a backlog.
#[test]
#[ignore = "needs libvirtd: make test"]
fn a_master_outage_costs_the_node_nothing() {
    require_libvirtd();
    let dir = TestDir::new("clock-outage");
    let panel = Panel::new(&dir);
    let port = free_port();
    let mut master = start_master_with(&dir, &panel, "", port, None);
    let g = Guest::new(&dir, "clock-o");
    g.define();
    g.start();
    let node = start_node_with(
        &dir,
        &clock_node_text(
            &dir,
            port,
            URI,
            "queue_size=16\nsync_interval=2\nstatus_interval=1\nlog_level=debug\n",
        ),
        None,
    );
    wait_state(&panel, &g.uuid, "running", &|| {
        report(&[&master, &node], Some(&panel))
    });
    master.stop();
    let ctx = || report(&[&master, &node], Some(&panel));
    wait_for(
        "the node to see the master gone",
        DEADLINE,
        || {
            read_text(&dir.join("node.status"))
                .contains("\nmaster down ")
                .then_some(())
        },
        ctx,
    );
    let before_outage = lists_queued(&node);
    // The long quiet outage: 6 periodic lists wanted.
    wait_status_writes(&dir, 12, &ctx);
    let quiet_lists = lists_queued(&node) - before_outage;
    assert!(
        quiet_lists <= 1,
        "one list waits for the master, not {quiet_lists}\n{}",
        ctx()
    );
    // 80 events into a queue of 16.
    for _ in 0..40 {
        g.suspend();
        g.resume();
    }
    wait_for(
        "the node's queue to overflow",
        DEADLINE,
        || (!node.log_lines("queue to the master is full").is_empty()).then_some(()),
        ctx,
    );
    // The quiet after the storm: what does the node cost?
    let (npid, lpid) = (
        node.pid(),
        libvirtd_pid().expect("libvirtd's pid in /var/run/libvirtd.pid"),
    );
    let (n0, l0, rss0, lists0) = (
        cpu_ticks(npid),
        cpu_ticks(lpid),
        rss_kib(npid),
        lists_queued(&node),
    );
    wait_status_writes(&dir, 12, &ctx);
    let (n1, l1, rss1, lists1) = (
        cpu_ticks(npid),
        cpu_ticks(lpid),
        rss_kib(npid),
        lists_queued(&node),
    );
    let hz = ticks_per_second() as f64;
    let node_cpu = (n1 - n0) as f64 / hz;
    let libvirtd_cpu = (l1 - l0) as f64 / hz;
    eprintln!(
        "quiet outage: node {node_cpu:.2} s CPU, libvirtd {libvirtd_cpu:.2} s CPU, node RSS {rss0} -> {rss1} KiB, lists queued {}",
        lists1 - lists0
    );
    // The old code: 0.42 s a second for the node, 0.77 for libvirtd.
    assert!(
        node_cpu < 1.0,
        "node used {node_cpu} s of CPU while quiet\n{}",
        ctx()
    );
    assert!(
        libvirtd_cpu < 2.0,
        "libvirtd used {libvirtd_cpu} s of CPU while quiet\n{}",
        ctx()
    );
    assert_eq!(
        lists1,
        lists0,
        "nothing listed while the queue is full\n{}",
        ctx()
    );
    assert!(rss1 < rss0 + 4096, "node memory flat: {rss0} -> {rss1} KiB");
    let during = lists1 - before_outage;
    assert!(
        during <= 1,
        "{during} lists queued during the outage\n{}",
        ctx()
    );

    // The master comes back: the queue drains (one list in it), the
    // overflow is repaired by a new list, and the panel is exact.
    let master = start_master_with(&dir, &panel, "", port, None);
    let ctx = || report(&[&master, &node], Some(&panel));
    g.suspend();
    wait_state(&panel, &g.uuid, "paused", &ctx);
    g.resume();
    wait_state(&panel, &g.uuid, "running", &ctx);
}

/// A stand-in for libvirtd dying half way through a full list: a proxy on
/// a socket of the test's own between the node and the real libvirtd
/// (`qemu:///system?socket=...`) that cuts the connection as the node asks
/// for the state of the `cut_at`-th domain of its second list. The shared
/// system libvirtd itself is never killed. It logs the calls it forwarded.
struct CutProxy {
    path: PathBuf,
    calls: std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
}

/// libvirt's remote protocol procedures (remote_protocol.x).
const PROC_LIST_ALL_DOMAINS: u32 = 273;
const PROC_DOMAIN_GET_STATE: u32 = 212;

impl CutProxy {
    fn start(dir: &TestDir, cut_at: usize) -> CutProxy {
        use std::io::{Read, Write};
        use std::os::unix::net::{UnixListener, UnixStream};
        let path = dir.join("libvirt-proxy.sock");
        let listener = UnixListener::bind(&path).expect("bind the proxy socket");
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = calls.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let Ok(mut server) = UnixStream::connect("/var/run/libvirt/libvirt-sock") else {
                    return;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Both);
                });
                let log = log.clone();
                std::thread::spawn(move || {
                    let (mut lists, mut states) = (0, 0);
                    loop {
                        let mut len = [0u8; 4];
                        if client.read_exact(&mut len).is_err() {
                            break;
                        }
                        let n = u32::from_be_bytes(len) as usize;
                        let mut rest = vec![0u8; n.saturating_sub(4)];
                        if client.read_exact(&mut rest).is_err() {
                            break;
                        }
                        // Header after the length: program, version, procedure.
                        let proc_ = rest
                            .get(8..12)
                            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                        log.lock().unwrap().push(proc_);
                        if proc_ == PROC_LIST_ALL_DOMAINS {
                            lists += 1;
                        }
                        if proc_ == PROC_DOMAIN_GET_STATE && lists >= 2 {
                            states += 1;
                            if states == cut_at {
                                // libvirtd "dies": both ends closed.
                                let _ = client.shutdown(std::net::Shutdown::Both);
                                let _ = server.shutdown(std::net::Shutdown::Both);
                                break;
                            }
                        }
                        if server.write_all(&len).is_err() || server.write_all(&rest).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        CutProxy { path, calls }
    }

    fn uri(&self) -> String {
        format!("{URI}?socket={}", self.path.display())
    }

    fn cut(&self) -> bool {
        let calls = self.calls.lock().unwrap();
        let lists = calls
            .iter()
            .filter(|&&p| p == PROC_LIST_ALL_DOMAINS)
            .count();
        lists >= 2
    }
}

/// Issue 16, item 6: the node skipped a domain whose state it could not
/// read and still sent the list, so libvirtd dying half way through a list
/// told the panel that the unlisted VMs were undefined. Six defined guests;
/// the connection is cut as the node reads the third state of its second
/// list (a stand-in for a libvirtd SIGKILLed at that moment: see
/// [`CutProxy`]). No `undefined` may reach the panel.
#[test]
#[ignore = "needs libvirtd: make test"]
fn a_list_cut_short_by_libvirtd_dying_is_not_sent() {
    require_libvirtd();
    let dir = TestDir::new("clock-cut");
    let panel = Panel::new(&dir);
    let port = free_port();
    let master = start_master_with(&dir, &panel, "", port, None);
    let guests: Vec<Guest> = (0..6)
        .map(|i| Guest::new(&dir, &format!("clock-cut{i}")))
        .collect();
    for g in &guests {
        g.define();
    }
    let proxy = CutProxy::start(&dir, 3);
    let node = start_node_with(
        &dir,
        &clock_node_text(
            &dir,
            port,
            &proxy.uri(),
            "sync_interval=1\nstats=no\nlog_level=debug\n",
        ),
        None,
    );
    let ctx = || report(&[&master, &node], Some(&panel));
    for g in &guests {
        wait_state(&panel, &g.uuid, "shutoff", &ctx);
    }
    wait_for(
        "the proxy to cut a second list",
        DEADLINE,
        || proxy.cut().then_some(()),
        ctx,
    );
    // The node loses libvirt and stops, draining its queue to the master.
    wait_for(
        "the node to stop after losing libvirt",
        DEADLINE,
        || {
            node.log_text()
                .contains("lost the libvirt connection")
                .then_some(())
        },
        ctx,
    );
    let mut node = node;
    node.wait_exit(DAEMON_DEADLINE);
    let ctx = || report(&[&master, &node], Some(&panel));
    // Everything the node sent has reached the master and the panel.
    let sent = read_text(&dir.join("node.status"))
        .lines()
        .find_map(|l| l.strip_prefix("counter sent ")?.parse::<u64>().ok())
        .expect("the node's last status names what it sent");
    wait_for(
        &format!(
            "the master to have accepted the node's {sent} messages and the panel every update"
        ),
        DEADLINE,
        || {
            let st = master_state(&dir);
            let counter = |name: &str| st.counters.iter().find(|c| c.0 == name).map(|c| c.1);
            (counter("accepted") >= Some(sent) && counter("panel.pending") == Some(0)).then_some(())
        },
        ctx,
    );
    let invented: Vec<String> = panel
        .lines()
        .into_iter()
        .filter(|l| l.function == "vmwatch.domain" && l.field("state") == "undefined")
        .map(|l| l.raw)
        .collect();
    assert!(
        invented.is_empty(),
        "undefined invented: {invented:?}\n{}",
        ctx()
    );
    assert!(
        node.log_text().contains("full list of"),
        "the node says the list was not sent\n{}",
        ctx()
    );
}
