//! Outsiders get nothing (issue 17): a raw ZMTP 3 peer without the secret
//! (tests/common/zmtp.rs, written from the spec) against the real
//! vmwatch-master on loopback.
//!
//! - A message without end (frames flagged MORE for ever), with ZeroMQ's
//!   NULL mechanism as before the handshake existed, with PLAIN and a wrong
//!   credential, and with a replayed or stale one: the master closes the
//!   connection within the handshake and its memory does not grow.
//! - 10,000 connections at every stage of the handshake while a node's
//!   messages keep reaching the panel: the master closes them all by itself
//!   (the 5 s handshake limit) and its descriptors and memory come back.
//! - A node SIGKILLed, and a node behind a network cut (a namespace, a veth
//!   pair and an nftables DROP rule the test makes): the master closes its
//!   connection (at once, and within the documented 40 s of heartbeats).
//!
//! Figures (memory, descriptors) are printed for docs/benchmarks.md; the
//! checks are the documented bounds, not timings.

mod common;

use std::time::Duration;

use common::zmtp::{Outcome, RawPeer};
use common::*;
use vmwatch::handshake::Credential;
use vmwatch::protocol::{Body, MacKey};

/// The memory bound docs/protocol.md promises over the master's idle figure.
const MEMORY_BOUND_KIB: u64 = 64 * 1024;

fn status_kib(pid: u32, field: &str) -> u64 {
    let text = read_text(std::path::Path::new(&format!("/proc/{pid}/status")));
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Raises this process's open-file limit to its hard limit; the master it
/// starts inherits it. Returns the limit.
fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read only the struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
    r.rlim_cur
}

/// Sends one event of a fresh domain from `c` and waits for the panel.
fn event_reaches_panel(c: &mut Client, master: &Daemon, panel: &Panel, name: &str) {
    let uuid = test_uuid();
    c.send(Body::Events(vec![event(&uuid, name, "started", "booted")]));
    wait_for(
        &format!("the event of {name} at the panel"),
        Duration::from_secs(60),
        || {
            panel
                .lines()
                .iter()
                .any(|l| l.is_domain(&uuid))
                .then_some(())
        },
        || report(&[master], Some(panel)),
    );
}

/// The master's established TCP connections on `port` (its side), from
/// /proc/PID/net/tcp, optionally only those from `remote` (IPv4, dotted).
fn established(pid: u32, port: u16, remote: Option<&str>) -> usize {
    let text = read_text(std::path::Path::new(&format!("/proc/{pid}/net/tcp")));
    let remote_hex = remote.map(|r| {
        let ip: std::net::Ipv4Addr = r.parse().unwrap();
        format!("{:08X}", u32::from_le_bytes(ip.octets()))
    });
    text.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3
                && f[3] == "01"
                && f[1].ends_with(&format!(":{port:04X}"))
                && remote_hex
                    .as_ref()
                    .is_none_or(|h| f[2].starts_with(h.as_str()))
        })
        .count()
}

#[test]
fn an_outsider_streaming_a_message_without_end_is_dropped_within_the_handshake() {
    let dir = TestDir::new("endless");
    let panel = Panel::new(&dir);
    let (m, port) = start_master(&dir, &panel, "");
    let mut node = Client::connect(port, SECRET, "21");
    event_reaches_panel(&mut node, &m, &panel, "before");
    let idle = rss_kib(m.pid());
    // What a peer may write before the master closes: the kernel's socket
    // buffers. The old master took 8 GB of this; 256 MiB is plenty to tell.
    let limit = 256 << 20;

    // NULL, as every peer could before: refused at the greeting.
    let mut p = RawPeer::connect(port).unwrap();
    let _ = p.greet("NULL");
    let _ = p.null_ready();
    let sent_null = p.endless_message(200_000, limit);
    assert!(
        sent_null < limit,
        "the master read {sent_null} bytes of a message without end from a NULL peer\n{}",
        m.report()
    );

    // PLAIN with a credential made with another secret.
    let mut p = RawPeer::connect(port).unwrap();
    p.greet("PLAIN").unwrap();
    let wrong = Credential::fresh(&MacKey::new(b"NOT-THE-SECRET-0123456789"), "21");
    p.plain_hello(&wrong.username, &wrong.password).unwrap();
    // libzmq 4.3.4 answers with an ERROR command whose name it misspells
    // ("\x05ERROR" in its source is the byte 0x5e then "RROR"): what counts
    // is that it is no WELCOME and that the master closes the connection.
    let answer = p.next_command();
    assert_ne!(answer, Outcome::Command("WELCOME".into()));
    assert!(
        p.closed_by_master(),
        "a wrong credential kept its connection"
    );
    let _ = p.plain_initiate();
    let sent_wrong = p.endless_message(200_000, limit);
    assert!(sent_wrong < limit, "{}", m.report());

    // A credential seen on the wire: good once, never again; and a stale one.
    let key = MacKey::new(SECRET.as_bytes());
    let seen = Credential::fresh(&key, "21");
    let mut first = RawPeer::connect(port).unwrap();
    first.greet("PLAIN").unwrap();
    first.plain_hello(&seen.username, &seen.password).unwrap();
    assert_eq!(first.next_command(), Outcome::Command("WELCOME".into()));
    let mut replay = RawPeer::connect(port).unwrap();
    replay.greet("PLAIN").unwrap();
    replay.plain_hello(&seen.username, &seen.password).unwrap();
    let answer = replay.next_command();
    assert_ne!(
        answer,
        Outcome::Command("WELCOME".into()),
        "a replay got in"
    );
    assert!(replay.closed_by_master(), "a replay kept its connection");
    assert!(replay.endless_message(200_000, limit) < limit);
    let stale = Credential::new(&key, "21", now_ms() - 400_000, 77);
    let mut old = RawPeer::connect(port).unwrap();
    old.greet("PLAIN").unwrap();
    old.plain_hello(&stale.username, &stale.password).unwrap();
    assert_ne!(old.next_command(), Outcome::Command("WELCOME".into()));
    assert!(
        old.closed_by_master(),
        "a stale credential kept its connection"
    );

    let after = rss_kib(m.pid());
    eprintln!(
        "endless: master VmRSS idle {idle} KiB, after the attempts {after} KiB; bytes written before the close: NULL {sent_null}, wrong credential {sent_wrong}"
    );
    assert!(after < idle + MEMORY_BOUND_KIB, "{}", m.report());
    for why in [
        "MAC does not match",
        "used before",
        "behind this host's clock",
    ] {
        assert!(
            m.log_text()
                .lines()
                .any(|l| l.contains("refused the ZeroMQ handshake of 127.0.0.1") && l.contains(why)),
            "no refusal logged for `{why}`\n{}",
            m.report()
        );
    }
    event_reaches_panel(&mut node, &m, &panel, "after");
}

#[test]
fn ten_thousand_outsiders_do_not_lock_out_a_node() {
    let limit = raise_nofile();
    assert!(
        limit >= 20_000,
        "this test needs an open-file hard limit of 20000 (has {limit})"
    );
    let dir = TestDir::new("manyconn");
    let panel = Panel::new(&dir);
    let (m, port) = start_master(&dir, &panel, "");
    let pid = m.pid();
    let mut node = Client::connect(port, SECRET, "22");
    event_reaches_panel(&mut node, &m, &panel, "before");
    let (idle_rss, idle_fds) = (rss_kib(pid), descriptors(pid));

    // From 250 loopback addresses, 40 each (under the per-address limit,
    // so the limit in all is what bounds them), four kinds, 2,500 each:
    // silent TCP; a PLAIN greeting and nothing more; NULL greeting and
    // READY (a finished handshake before); PLAIN HELLO with a wrong
    // credential.
    let wrong = Credential::fresh(&MacKey::new(b"NOT-THE-SECRET-0123456789"), "22");
    let mut peers = Vec::with_capacity(10_000);
    let mut peak_fds = 0;
    let mut peak_rss = 0;
    for i in 0..10_000 {
        let src = std::net::Ipv4Addr::new(127, 0, 1, (i % 250) as u8 + 1);
        let mut p = RawPeer::connect_from(src, port)
            .unwrap_or_else(|e| panic!("connection {i} from {src}: {e}"));
        match i % 4 {
            0 => {}
            1 => {
                let _ = p.stream.write_all_greeting("PLAIN");
            }
            2 => {
                let _ = p.stream.write_all_greeting("NULL");
                let _ = p.null_ready();
            }
            _ => {
                let _ = p.stream.write_all_greeting("PLAIN");
                let _ = p.plain_hello(&wrong.username, &wrong.password);
            }
        }
        peers.push(p);
        if i % 500 == 499 {
            peak_fds = peak_fds.max(descriptors(pid));
            peak_rss = peak_rss.max(rss_kib(pid));
        }
    }
    // While they are open, the node's messages go through.
    event_reaches_panel(&mut node, &m, &panel, "during");
    peak_fds = peak_fds.max(descriptors(pid));
    peak_rss = peak_rss.max(rss_kib(pid));
    assert!(
        peak_rss < idle_rss + MEMORY_BOUND_KIB,
        "master VmRSS {peak_rss} KiB under attack, idle {idle_rss} KiB"
    );
    // The master closes every one of them itself (we keep our ends open).
    wait_for(
        "the master to close the 10,000 connections",
        Duration::from_secs(120),
        || (descriptors(pid) <= idle_fds + 2).then_some(()),
        || {
            format!(
                "{} descriptors open, {idle_fds} idle\n{}",
                descriptors(pid),
                m.report()
            )
        },
    );
    let closed_fds = descriptors(pid);
    drop(peers);
    event_reaches_panel(&mut node, &m, &panel, "after");
    let mut fresh = Client::connect(port, SECRET, "23");
    event_reaches_panel(&mut fresh, &m, &panel, "new-node-after");
    // With glibc's malloc (the debug build) the memory comes back: the
    // gate gives libzmq's freed buffers back. The shipped master (static
    // musl) keeps it and reuses it for the next flood (docs/protocol.md):
    // there the bound is what holds.
    let glibc = read_text(std::path::Path::new(&format!("/proc/{pid}/maps"))).contains("libc.so.6");
    let back_to = if glibc { 8 * 1024 } else { MEMORY_BOUND_KIB };
    wait_for(
        "the master's memory to come back near its idle figure",
        Duration::from_secs(60),
        || (rss_kib(pid) < idle_rss + back_to).then_some(()),
        || format!("VmRSS {} KiB, idle {idle_rss} KiB", rss_kib(pid)),
    );
    let after_rss = rss_kib(pid);
    eprintln!(
        "10,000 connections: master descriptors idle {idle_fds}, peak {peak_fds}, after {closed_fds}; VmRSS idle {idle_rss} KiB, peak {peak_rss} KiB, after {after_rss} KiB, VmHWM {} KiB",
        status_kib(pid, "VmHWM:")
    );
    let state = dir.join("master.state");
    wait_for(
        "the connections the gate closed counted in the state file",
        Duration::from_secs(30),
        || {
            let text = read_text(&state);
            (text.contains("\ncounter rejected.gate ")
                && !text.contains("\ncounter rejected.gate 0\n"))
            .then_some(())
        },
        || read_text(&state),
    );
}

/// Writes a greeting without waiting for the master's.
trait Greeting {
    fn write_all_greeting(&mut self, mechanism: &str) -> std::io::Result<()>;
}

impl Greeting for std::net::TcpStream {
    fn write_all_greeting(&mut self, mechanism: &str) -> std::io::Result<()> {
        use std::io::Write;
        self.write_all(&RawPeer::greeting(mechanism))
    }
}

/// Starts a real node on libvirt's test driver (no libvirtd) that talks to
/// the master at `endpoint`, through `bin` (the node binary or a wrapper).
fn start_test_node(dir: &TestDir, tag: &str, endpoint: &str, bin: &std::path::Path) -> Daemon {
    let text = format!(
        "connect={endpoint}\nsecret={SECRET}\nnode_id={tag}\nuri=test:///default\nlog={log}\nsyslog=no\nstatus_file={status}\n",
        log = dir.join(&format!("{tag}.log")).display(),
        status = dir.join(&format!("{tag}.status")).display(),
    );
    let config = dir.write_config(&format!("{tag}.conf"), &text);
    let mut n = Daemon::spawn(
        "vmwatch-node",
        bin,
        dir,
        tag,
        &config,
        &dir.join(&format!("{tag}.log")),
        &[],
    );
    n.wait_log(" watching ", DAEMON_DEADLINE);
    n
}

#[test]
fn a_killed_node_s_connection_is_closed_on_the_master() {
    let dir = TestDir::new("killnode");
    let panel = Panel::new(&dir);
    let (mut m, port) = start_master(&dir, &panel, "");
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let node = start_test_node(&dir, "kill1", &endpoint, &node_bin());
    m.wait_log("node kill1 (instance", DAEMON_DEADLINE);
    assert_eq!(established(m.pid(), port, None), 1, "{}", m.report());
    signal(node.pid(), libc::SIGKILL);
    wait_for(
        "the master to close the killed node's connection",
        Duration::from_secs(60),
        || (established(m.pid(), port, None) == 0).then_some(()),
        || m.report(),
    );
}

/// A network namespace with one end of a veth pair; removed on drop.
struct Netns {
    name: String,
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2: tests/support/setup-host.sh installs it)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// `NAME` with `10.231.N.2/30` inside, `10.231.N.1/30` outside.
    fn new(n: u8) -> Netns {
        let name = format!("vmw-auth-{}", std::process::id());
        let (outer, inner) = (format!("vmwa{n}o"), format!("vmwa{n}i"));
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &outer])
            .output();
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ]);
        ip(&["link", "set", &inner, "netns", &ns.name]);
        ip(&["addr", "add", &format!("10.231.{n}.1/30"), "dev", &outer]);
        ip(&["link", "set", &outer, "up"]);
        let exec = |args: &[&str]| {
            let mut a = vec!["netns", "exec", ns.name.as_str(), "ip"];
            a.extend_from_slice(args);
            ip(&a);
        };
        exec(&["addr", "add", &format!("10.231.{n}.2/30"), "dev", &inner]);
        exec(&["link", "set", &inner, "up"]);
        exec(&["link", "set", "lo", "up"]);
        ns
    }

    /// Drops every packet in and out of the namespace (nftables).
    fn cut(&self) {
        let rules = "table inet vmwcut {\n chain in { type filter hook input priority 0; policy drop; }\n chain out { type filter hook output priority 0; policy drop; }\n}\n";
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("run nft (nftables: tests/support/setup-host.sh installs it)");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft -f failed");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[test]
fn a_node_behind_a_network_cut_is_disconnected_within_the_heartbeat_timeout() {
    // Root, iproute2 and nftables (tests/support/setup-host.sh): `make test`
    // sets VMWATCH_E2E=1 on a host it prepared.
    if std::env::var_os("VMWATCH_E2E").is_none_or(|v| v != "1") {
        eprintln!("SKIPPED the network-cut test: it makes a network namespace and an nftables rule (root); run `make test`, or set VMWATCH_E2E=1");
        return;
    }
    let n = (std::process::id() % 250) as u8 + 1;
    let ns = Netns::new(n);
    let dir = TestDir::new("netcut");
    let panel = Panel::new(&dir);
    let port = free_port();
    let (master_ip, node_ip) = (format!("10.231.{n}.1"), format!("10.231.{n}.2"));
    let (mut m, port) = {
        let config = dir.write_config(
            "master.conf",
            &master_config_text(
                &dir,
                port,
                SECRET,
                &panel,
                &format!("listen=tcp://{master_ip}:{port}\n"),
            ),
        );
        let mut m = Daemon::spawn(
            "vmwatch-master",
            &master_bin(),
            &dir,
            "master",
            &config,
            &dir.join("master.log"),
            &[],
        );
        m.wait_log("listening on", DAEMON_DEADLINE);
        (m, port)
    };
    // The node runs inside the namespace.
    let wrapper = dir.join("node-in-netns");
    write_private(
        &wrapper,
        format!(
            "#!/bin/sh\nexec ip netns exec {} {} \"$@\"\n",
            ns.name,
            node_bin().display()
        )
        .as_bytes(),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o700)).unwrap();
    let _node = start_test_node(&dir, "cut1", &format!("tcp://{master_ip}:{port}"), &wrapper);
    m.wait_log(&format!("connected from {node_ip}"), DAEMON_DEADLINE);
    assert_eq!(established(m.pid(), port, Some(&node_ip)), 1);
    ns.cut();
    let t = std::time::Instant::now();
    wait_for(
        "the master to close the connection of the node behind the cut",
        Duration::from_secs(90),
        || (established(m.pid(), port, Some(&node_ip)) == 0).then_some(()),
        || m.report(),
    );
    eprintln!(
        "network cut: the master closed the node's connection {:.1} s after the DROP rule (documented: within 40 s)",
        t.elapsed().as_secs_f64()
    );
}

/// libzmq offers a socket's credential again on every reconnect, and the
/// master takes each only once and none from before its start: the node
/// replaces its socket (a fresh credential) and gets back in.
#[test]
fn a_node_gets_back_in_after_a_master_restart() {
    let dir = TestDir::new("relink");
    let panel = Panel::new(&dir);
    let (mut m, port) = start_master(&dir, &panel, "");
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let _node = start_test_node(&dir, "relink1", &endpoint, &node_bin());
    m.wait_log("node relink1 (instance", DAEMON_DEADLINE);
    assert!(m.stop().success(), "{}", m.report());
    let mut m2 = Daemon::spawn(
        "vmwatch-master",
        &master_bin(),
        &dir,
        "master2",
        &dir.join("master.conf"),
        &dir.join("master.log"),
        &[],
    );
    m2.wait_log("listening on", DAEMON_DEADLINE);
    // The restarted master lets the node in again (its counters start at
    // 0) and takes its messages (the snapshot after the reconnection).
    let state = dir.join("master.state");
    wait_for(
        "the restarted master to accept the node's handshake and a message",
        Duration::from_secs(60),
        || {
            let text = read_text(&state);
            let counted = |k: &str| text.lines().any(|l| l.starts_with(k) && !l.ends_with(" 0"));
            (text.contains(&format!("pid {}", m2.pid()))
                && counted("counter handshake.accepted ")
                && counted("counter accepted "))
            .then_some(())
        },
        || format!("{}\n{}", read_text(&state), m2.report()),
    );
    assert!(m2.stop().success(), "{}", m2.report());
}

/// A node with another secret is refused within the handshake, says so in
/// its log, and is counted by the master; nothing of it is read.
#[test]
fn a_node_with_another_secret_is_refused_at_the_handshake_and_says_why() {
    let dir = TestDir::new("wrongnode");
    let panel = Panel::new(&dir);
    let (m, port) = start_master(&dir, &panel, "");
    let text = format!(
        "connect=tcp://127.0.0.1:{port}\nsecret=ANOTHER-SECRET-0123456789\nnode_id=wrong1\nuri=test:///default\nlog={log}\nsyslog=no\nstatus_file={status}\n",
        log = dir.join("wrong1.log").display(),
        status = dir.join("wrong1.status").display(),
    );
    let config = dir.write_config("wrong1.conf", &text);
    let mut node = Daemon::spawn(
        "vmwatch-node",
        &node_bin(),
        &dir,
        "wrong1",
        &config,
        &dir.join("wrong1.log"),
        &[],
    );
    node.wait_log(
        "refused this node's handshake credential",
        Duration::from_secs(60),
    );
    let state = dir.join("master.state");
    wait_for(
        "the refused handshakes counted",
        Duration::from_secs(30),
        || {
            let text = read_text(&state);
            text.lines()
                .any(|l| l.starts_with("counter rejected.handshake ") && !l.ends_with(" 0"))
                .then_some(())
        },
        || read_text(&state),
    );
    assert!(
        !m.log_text().contains("node wrong1"),
        "a node without the secret reached the receiver\n{}",
        m.report()
    );
}
