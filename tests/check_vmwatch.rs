//! check_vmwatch against real daemons: run directly, and under a real
//! Nagios 4 core (Debian's nagios4-core) with its own configuration in the
//! test directory, the results read back from Nagios's status.dat.
//!
//! The master is the real binary, fed by the test's signing `Client`s
//! (fake nodes) and by a real node on libvirt's in-process test driver
//! (`test:///default`; the system libvirtd is never used). Nagios runs its
//! checks as the unprivileged `nagios` user, so every OK here also proves
//! the files are readable without root. Checks are forced through Nagios's
//! external command file and every wait polls a condition with a deadline.
//!
//! States covered: running, stale state file, node down, duplicate, idle,
//! thresholds crossed, stopped (master, and node with and without master),
//! plus a damaged state file and usage errors directly.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::common::nagios::Nagios;
use crate::common::*;
use vmwatch::protocol::{Body, DomainId, StatSample};

/// Runs the plugin: (exit status, output).
fn plugin(args: &[&str]) -> (i32, String) {
    let out = Command::new(plugin_bin())
        .args(args)
        .output()
        .expect("run check_vmwatch");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A master (node_timeout 10 s, activity checks on, state written every
/// second) and a real node on the test driver with its status file.
struct Cluster {
    dir: TestDir,
    _panel: Panel,
    master: Daemon,
    node: Daemon,
    port: u16,
}

impl Cluster {
    fn start(name: &str) -> Cluster {
        let dir = TestDir::new(name);
        // The nagios user must be able to reach the files.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let panel = Panel::new(&dir);
        let (master, port) = start_master(
            &dir,
            &panel,
            "check_activity=yes\nstate_interval=1\nnode_timeout=10\n",
        );
        let status = dir.join("node.status");
        let node = start_node_at(
            &dir,
            port,
            "3",
            "test:///default",
            &format!(
                "heartbeat_interval=2\nstatus_interval=1\nstatus_file={}\n",
                status.display()
            ),
        );
        let c = Cluster {
            dir,
            _panel: panel,
            master,
            node,
            port,
        };
        // Both files are there and the master knows node 3 and its domain.
        wait_for(
            "the master's state file lists node 3 up and the node's status file says connected",
            DAEMON_DEADLINE,
            || {
                let s = read_text(&c.state());
                let n = read_text(&c.status());
                (s.contains("\nnode 3 up ") && n.contains("\nmaster up ")).then_some(())
            },
            || c.report(),
        );
        c
    }

    fn state(&self) -> PathBuf {
        self.dir.join("master.state")
    }

    fn status(&self) -> PathBuf {
        self.dir.join("node.status")
    }

    fn master_args(&self) -> Vec<String> {
        vec![
            "-M".into(),
            "master".into(),
            "-f".into(),
            self.state().display().to_string(),
            "-p".into(),
            self.master.pidfile.display().to_string(),
            // Nagios's own directory: writable by the nagios user.
            "-m".into(),
            self.dir.join("nagios").display().to_string(),
        ]
    }

    fn node_args(&self) -> Vec<String> {
        vec![
            "-M".into(),
            "node".into(),
            "-f".into(),
            self.status().display().to_string(),
            "-p".into(),
            self.node.pidfile.display().to_string(),
        ]
    }

    /// The uuid of the test driver's domain, as the master recorded it.
    fn test_domain_uuid(&self) -> String {
        let text = read_text(&self.state());
        text.lines()
            .find_map(|l| l.strip_prefix("domain 3 "))
            .and_then(|rest| rest.split(' ').next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no domain of node 3 in the state file:\n{text}"))
    }

    /// Waits until the state file's line of `kind` says what `pred` wants.
    fn wait_state(&self, what: &str, pred: impl Fn(&str) -> bool) {
        wait_for(
            what,
            DAEMON_DEADLINE,
            || pred(&read_text(&self.state())).then_some(()),
            || self.report(),
        );
    }

    fn report(&self) -> String {
        format!(
            "{}--- state file:\n{}\n--- node status:\n{}\n",
            report(&[&self.master, &self.node], None),
            read_text(&self.state()),
            read_text(&self.status())
        )
    }
}

fn stats(samples: Vec<StatSample>) -> Body {
    Body::Stats {
        interval_ms: 600_000,
        samples,
    }
}

fn sample(uuid: &str, name: &str, tx: u64, wr: u64) -> StatSample {
    StatSample {
        domain: DomainId {
            uuid: uuid.to_string(),
            name: name.to_string(),
        },
        whole: true,
        tx_pkts: tx,
        wr_reqs: wr,
    }
}

/// The perfdata of a status line is `name=value[uom];warn;crit;min;max` items.
fn assert_perfdata(line: &str) {
    let (_, perf) = line
        .split_once(" | ")
        .unwrap_or_else(|| panic!("no perfdata in `{line}`"));
    for item in perf.trim().split(' ') {
        let (name, rest) = item.split_once('=').expect("name=value");
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        let fields: Vec<&str> = rest.split(';').collect();
        assert_eq!(fields.len(), 5, "warn;crit;min;max in `{item}`");
        let value = fields[0].trim_end_matches('s');
        assert!(value.parse::<f64>().is_ok(), "value of `{item}`");
        assert_eq!(fields[3], "0", "min of `{item}`");
    }
}

#[test]
fn the_plugin_run_directly() {
    let c = Cluster::start("plugin-direct");
    let args = c.master_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (rc, out) = plugin(&args);
    println!("direct, master running: {out}");
    assert_eq!(rc, 0, "{out}\n{}", c.report());
    assert!(
        out.starts_with("VMWATCH MASTER OK - 1 nodes up, 0 down, 1 domains"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "one line without -v: {out}");
    assert_perfdata(out.lines().next().unwrap());
    let nargs = c.node_args();
    let nargs: Vec<&str> = nargs.iter().map(String::as_str).collect();
    let (rc, out) = plugin(&nargs);
    println!("direct, node running: {out}");
    assert_eq!(rc, 0, "{out}\n{}", c.report());
    assert!(
        out.starts_with(
            "VMWATCH NODE OK - node 3: libvirt connected, master connected, 1 domains, queue 0"
        ),
        "{out}"
    );
    assert_perfdata(&out);

    // -v adds detail lines after the status line.
    let mut v = args.clone();
    v.push("-v");
    let (_, out) = plugin(&v);
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("master on tcp://127.0.0.1:")),
        "{out}"
    );

    // --status of both daemons shows the same verdict.
    for (bin, conf, pid, head) in [
        (
            master_bin(),
            &c.master.config,
            &c.master.pidfile,
            "check: VMWATCH MASTER OK - 1 nodes up",
        ),
        (
            node_bin(),
            &c.node.config,
            &c.node.pidfile,
            "check: VMWATCH NODE OK - node 3: libvirt connected",
        ),
    ] {
        let out = Command::new(&bin)
            .arg("--status")
            .arg("-c")
            .arg(conf)
            .arg("-p")
            .arg(pid)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(
            text.lines().next().unwrap().contains(" is running (pid "),
            "{text}"
        );
        assert!(text.contains(head), "{text}");
    }

    // A state file cut short (no `end`) is not trusted.
    let damaged = c.dir.join("damaged.state");
    let text = read_text(&c.state());
    std::fs::write(&damaged, text.replace("end\n", "")).unwrap();
    let mut d = args.clone();
    d[3] = damaged.to_str().unwrap();
    let (rc, out) = plugin(&d);
    println!("direct, damaged state file: {out}");
    assert_eq!(rc, 2, "{out}");
    assert!(
        out.contains("damaged.state is damaged (no `end` line)"),
        "{out}"
    );

    // Usage errors and options.
    let (rc, out) = plugin(&["-M", "master", "-w", "bogus=1"]);
    assert_eq!(rc, 3, "{out}");
    assert!(
        out.starts_with("VMWATCH UNKNOWN - -w bogus=1: no metric `bogus`"),
        "{out}"
    );
    assert_eq!(plugin(&["-V"]).0, 0);
    assert!(plugin(&["-h"]).1.contains("--critical"));

    // Stopped: the pidfile goes with the daemon.
    let mut node = c.node;
    node.stop();
    let (rc, out) = plugin(&nargs);
    println!("direct, node stopped: {out}");
    assert_eq!(rc, 2, "{out}");
    assert!(
        out.starts_with("VMWATCH NODE CRITICAL - vmwatch-node is not running (no pidfile "),
        "{out}"
    );
    let mut master = c.master;
    master.stop();
    let (rc, out) = plugin(&args);
    println!("direct, master stopped: {out}");
    assert_eq!(rc, 2, "{out}");
    assert!(
        out.starts_with("VMWATCH MASTER CRITICAL - vmwatch-master is not running (no pidfile "),
        "{out}"
    );
}

/// One expectation: the state Nagios recorded and words of the output.
fn expect(n: &Nagios, service: &str, state: u8, words: &[&str], ctx: &dyn Fn() -> String) {
    let r = n.check(service);
    let (got, out) = (r.state, r.output);
    println!("nagios {service}: state {got}: {out}");
    assert_eq!(got, state, "{service}: `{out}`\n{}{}", n.report(), ctx());
    for w in words {
        assert!(out.contains(w), "{service}: `{out}` lacks `{w}`\n{}", ctx());
    }
}

#[test]
#[ignore = "needs root and Nagios 4 (tests/support/setup-nagios.sh): make test"]
fn under_a_real_nagios_core() {
    crate::common::ops::require_tools();
    let c = Cluster::start("nagios");
    let ma = c.master_args().join(" ");
    let na = c.node_args().join(" ");
    let services = [
        ("master", ma.clone()),
        (
            "master-limits",
            format!("{ma} -w domains=10: -c rejected_rate=0"),
        ),
        (
            "master-fresh",
            format!("{ma} -w state_age=3 -c state_age=6"),
        ),
        ("node", na.clone()),
        ("node-limits", format!("{na} -c domains=2:")),
    ]
    .map(|(name, args)| (name, format!("check_vmwatch!{args}")));
    let n = Nagios::start(
        c.dir.path(),
        &[],
        &[(
            "check_vmwatch",
            format!("{} $ARG1$", plugin_bin().display()),
        )],
        &services,
    );
    let ctx = || c.report();
    let (ok, warning, critical) = (0, 1, 2);

    // Running.
    expect(
        &n,
        "master",
        ok,
        &["VMWATCH MASTER OK - 1 nodes up, 0 down, 1 domains, 0 duplicates, 0 idle"],
        &ctx,
    );
    expect(
        &n,
        "node",
        ok,
        &["VMWATCH NODE OK - node 3: libvirt connected, master connected, 1 domains"],
        &ctx,
    );

    // Duplicate: a second node claims the test driver's running domain.
    let uuid = c.test_domain_uuid();
    let mut n2 = Client::connect(c.port, SECRET, "n2");
    n2.send(Body::Snapshot {
        id: 1,
        part: 1,
        parts: 1,
        domains: vec![domain_state(&uuid, "test", "running", "booted")],
    });
    c.wait_state("a duplicate", |s| s.contains("\nduplicate uuid "));
    expect(
        &n,
        "master",
        critical,
        &["duplicates 1 (critical 0)", "2 nodes up"],
        &ctx,
    );
    n2.send(Body::Snapshot {
        id: 2,
        part: 1,
        parts: 1,
        domains: vec![],
    });
    c.wait_state("the duplicate cleared", |s| !s.contains("\nduplicate "));

    // Idle: a running VM that sent nothing over a whole interval.
    let idle = test_uuid();
    n2.send(Body::Events(vec![event(
        &idle, "quiet", "started", "booted",
    )]));
    n2.send(stats(vec![sample(&idle, "quiet", 0, 0)]));
    c.wait_state("an idle warning", |s| s.contains("\nidle n2 "));
    expect(
        &n,
        "master",
        warning,
        &["idle 1 (warning 0)", "1 idle"],
        &ctx,
    );
    n2.send(stats(vec![sample(&idle, "quiet", 50, 9)]));
    c.wait_state("the idle warning cleared", |s| !s.contains("\nidle "));
    expect(&n, "master", ok, &["VMWATCH MASTER OK - 2 nodes up"], &ctx);

    // Thresholds crossed: the limits services ask for 10+ domains on the
    // master, 2+ on the node, and no rejected message at all.
    n2.send(Body::Heartbeat);
    expect(
        &n,
        "master-limits",
        warning,
        &["domains 2 (warning 10:)"],
        &ctx,
    );
    expect(
        &n,
        "node-limits",
        critical,
        &["domains 1 (critical 2:)"],
        &ctx,
    );
    n2.send(Body::Heartbeat);
    // A peer with another secret is refused within the ZeroMQ handshake
    // (docs/protocol.md, "Handshake"): counted as rejected.handshake, which
    // the rejected rate includes like every rejected.* counter.
    let mut intruder = Client::connect(c.port, "NOT-THE-SECRET-0123456789", "n9");
    for _ in 0..3 {
        intruder.send(Body::Heartbeat);
    }
    c.wait_state("refused handshakes counted", |s| {
        s.lines()
            .any(|l| l.starts_with("counter rejected.handshake ") && !l.ends_with(" 0"))
    });
    expect(
        &n,
        "master-limits",
        critical,
        &["rejected_rate ", "(critical 0)"],
        &ctx,
    );

    // Stale state file: the master hangs (SIGSTOP) and its file ages past
    // the 6 s the master-fresh service allows.
    signal(c.master.pid(), libc::SIGSTOP);
    let written = std::fs::metadata(c.state()).unwrap().modified().unwrap();
    wait_for(
        "the state file to be 7 s old",
        Duration::from_secs(15),
        || (written.elapsed().unwrap_or_default() > Duration::from_secs(7)).then_some(()),
        String::new,
    );
    expect(
        &n,
        "master-fresh",
        critical,
        &["(critical 6)", "state_age "],
        &ctx,
    );
    signal(c.master.pid(), libc::SIGCONT);
    c.wait_state("fresh again", |_| {
        std::fs::metadata(c.state())
            .and_then(|m| m.modified())
            .map(|m| m > written)
            .unwrap_or(false)
    });

    // Node down: n2 falls silent for node_timeout.
    c.wait_state("n2 down", |s| s.contains("\nnode n2 down "));
    expect(
        &n,
        "master",
        critical,
        &["nodes_down 1 (critical 0)", "1 nodes up, 1 down"],
        &ctx,
    );

    // Stopped: first the master (the node loses it), then the node.
    let mut master = c.master;
    master.stop();
    expect(
        &n,
        "master",
        critical,
        &["vmwatch-master is not running (no pidfile "],
        &ctx_none,
    );
    let node_status = c.dir.join("node.status");
    wait_for(
        "the node to notice the master is gone",
        DAEMON_DEADLINE,
        || {
            read_text(&node_status)
                .contains("\nmaster down ")
                .then_some(())
        },
        String::new,
    );
    expect(
        &n,
        "node",
        critical,
        &["not connected to the master at tcp://127.0.0.1:"],
        &ctx_none,
    );
    let mut node = c.node;
    node.stop();
    expect(
        &n,
        "node",
        critical,
        &["vmwatch-node is not running (no pidfile "],
        &ctx_none,
    );
}

fn ctx_none() -> String {
    String::new()
}
