//! Both daemons through a real rsyslogd (Debian's rsyslog, installed by
//! tests/support/setup-nagios.sh without starting the machine's own): the
//! test's rsyslogd listens on its own socket under the test directory
//! (`syslog_socket=` of both daemons points there; the machine's /dev/log is
//! never used) and writes what it parsed of each message with the template
//! `%syslogfacility-text% %syslogseverity-text% %programname% %procid% %msg%`.
//!
//! Proves: facility daemon, the severities the daemons log at, the program
//! name and the pid of each daemon, a domain name with control bytes
//! escaped by the daemon (`\x0a`, not rsyslog's own `#012`); and that when
//! rsyslogd restarts under running daemons they keep logging to their files
//! and their lines reach the new rsyslogd.

use crate::common::ops::{require_tools, Parsed, Rsyslog};
use crate::common::*;
use vmwatch::protocol::Body;

fn assert_parsed(p: &Parsed, severity: &str, program: &str, pid: u32) {
    assert_eq!(p.facility, "daemon", "{p:?}");
    assert_eq!(p.severity, severity, "{p:?}");
    assert_eq!(p.program, program, "{p:?}");
    assert_eq!(p.pid, pid.to_string(), "{p:?}");
}

#[test]
#[ignore = "needs rsyslog (tests/support/setup-nagios.sh): make test"]
fn both_daemons_through_a_real_rsyslogd_and_its_restart() {
    require_tools();
    let dir = TestDir::new("rsyslog");
    let mut rs = Rsyslog::start(&dir);
    let syslog = format!(
        "syslog=yes\nsyslog_socket={}\nlog_level=debug\n",
        rs.socket.display()
    );
    let panel = Panel::new(&dir);
    let (master, port) = start_master(&dir, &panel, &syslog);
    let node = start_node_at(
        &dir,
        port,
        "7",
        "test:///default",
        &format!("{syslog}heartbeat_interval=1\n"),
    );
    let (mp, np) = (master.pid(), node.pid());
    let ctx = || report(&[&master, &node], Some(&panel));

    // Info and debug, from each daemon, with its own pid.
    let l = rs.wait_line("vmwatch-master", "listening on tcp://127.0.0.1:", &ctx);
    assert_parsed(&l, "info", "vmwatch-master", mp);
    let l = rs.wait_line(
        "vmwatch-master",
        "accepted heartbeat from node 7 seq ",
        &ctx,
    );
    assert_parsed(&l, "debug", "vmwatch-master", mp);
    let l = rs.wait_line("vmwatch-node", "node 7 watching test:///default", &ctx);
    assert_parsed(&l, "info", "vmwatch-node", np);
    let l = rs.wait_line("vmwatch-node", "sent heartbeat message (seq ", &ctx);
    assert_parsed(&l, "debug", "vmwatch-node", np);

    // Warning: a message signed with another secret. A peer without the
    // secret is refused at the handshake (its own warning); this one passed
    // the handshake and then signs with a wrong key, so the message itself
    // is rejected (bad MAC).
    let mut intruder = Client::connect(port, SECRET, "n9");
    intruder.secret = b"NOT-THE-SECRET-0123456789".to_vec();
    intruder.send(Body::Heartbeat);
    let l = rs.wait_line("vmwatch-master", "rejected message from ", &ctx);
    assert_parsed(&l, "warning", "vmwatch-master", mp);

    // A name with control bytes: the daemon escapes it before syslog sees
    // it, so rsyslog's own escaping (`#012`) has nothing left to do.
    let mut c = Client::connect(port, SECRET, "c1");
    let evil = test_uuid();
    c.send(Body::Events(vec![event(
        &evil,
        "evil\nFORGED: line\u{1b}[2J",
        "started",
        "booted",
    )]));
    let l = rs.wait_line("vmwatch-master", &format!("({evil})"), &ctx);
    assert_parsed(&l, "info", "vmwatch-master", mp);
    assert!(
        l.msg.contains("domain evil\\x0aFORGED: line\\x1b[2J ("),
        "{l:?}"
    );
    assert!(
        !rs.lines()
            .iter()
            .any(|p| p.msg.contains("FORGED: line")
                && (p.msg.contains('#') || p.msg.contains('\u{1b}'))),
        "{}",
        rs.report()
    );

    // Error: the panel refuses a batch.
    panel.fail(true);
    c.send(Body::Events(vec![event(
        &test_uuid(),
        "refused-by-panel",
        "started",
        "booted",
    )]));
    let l = rs.wait_line("vmwatch-master", "panel call failed", &ctx);
    assert_parsed(&l, "err", "vmwatch-master", mp);
    panel.fail(false);

    // rsyslogd restarts under the running daemons. While it is down they
    // log to their files and keep running.
    let mut master = master;
    let mut node = node;
    rs.stop();
    let down = test_uuid();
    c.send(Body::Events(vec![event(
        &down,
        "while-syslog-is-down",
        "started",
        "booted",
    )]));
    master.wait_log(
        &format!("domain while-syslog-is-down ({down})"),
        PANEL_DEADLINE,
    );
    node.signal(libc::SIGHUP);
    node.wait_log("reopened", DAEMON_DEADLINE);
    assert!(master.try_status().is_none() && node.try_status().is_none());

    rs.run();
    // Lines logged after the restart reach the new rsyslogd.
    let after = test_uuid();
    c.send(Body::Events(vec![event(
        &after,
        "after-syslog-restart",
        "started",
        "booted",
    )]));
    let ctx = || report(&[&master, &node], Some(&panel));
    let l = rs.wait_line("vmwatch-master", &format!("({after})"), &ctx);
    assert_parsed(&l, "info", "vmwatch-master", mp);
    let sent_before = rs
        .lines()
        .iter()
        .filter(|p| p.program == "vmwatch-node")
        .count();
    node.signal(libc::SIGHUP);
    wait_for(
        "a line of the node after rsyslogd restarted",
        DAEMON_DEADLINE,
        || {
            let n = rs.lines();
            let mine: Vec<&Parsed> = n.iter().filter(|p| p.program == "vmwatch-node").collect();
            (mine.len() > sent_before && mine.iter().any(|p| p.msg.contains("reopened")))
                .then_some(())
        },
        || format!("{}{}", rs.report(), ctx()),
    );
    // Both daemons said what happened to syslog in their own files, and
    // kept every line there.
    for d in [&master, &node] {
        let log = d.log_text();
        assert!(log.contains("syslog at "), "{}", d.report());
    }
    assert!(master
        .log_text()
        .contains(&format!("domain after-syslog-restart ({after})")));

    assert!(master.stop().success(), "{}", master.report());
    assert!(node.stop().success(), "{}", node.report());
    // A line logged while rsyslogd was down did not reach it.
    assert!(!rs.lines().iter().any(|p| p.msg.contains(&down)));
}

/// A syslog daemon that stops reading (hung, or SIGSTOPped by an operator)
/// fills its socket's queue (`net.unix.max_dgram_qlen`, 10 datagrams by
/// default) within a few lines. The master must go on serving the panel,
/// every line still in its file; syslog gets lines again once it reads.
#[test]
#[ignore = "needs rsyslog (tests/support/setup-nagios.sh): make test"]
fn a_hung_rsyslogd_does_not_stop_the_master() {
    require_tools();
    let dir = TestDir::new("rsyslog-hung");
    let rs = Rsyslog::start(&dir);
    let panel = Panel::new(&dir);
    let (mut master, port) = start_master(
        &dir,
        &panel,
        &format!("syslog=yes\nsyslog_socket={}\n", rs.socket.display()),
    );
    let ctx = || format!("{}{}", rs.report(), report(&[&master], Some(&panel)));
    rs.wait_line("vmwatch-master", "listening on", &ctx);
    let rpid = rs.pid().expect("rsyslogd runs");
    signal(rpid, libc::SIGSTOP);
    // Each domain is a log line at the master: far more than the queue.
    let mut c = Client::connect(port, SECRET, "c1");
    let uuids: Vec<String> = (0..100).map(|_| test_uuid()).collect();
    for (i, u) in uuids.iter().enumerate() {
        c.send(Body::Events(vec![event(
            u,
            &format!("while-hung-{i}"),
            "started",
            "booted",
        )]));
    }
    wait_for(
        "the panel told of all 100 domains while rsyslogd is stopped",
        PANEL_DEADLINE,
        || {
            let lines = panel.lines();
            uuids
                .iter()
                .all(|u| lines.iter().any(|l| l.is_domain(u)))
                .then_some(())
        },
        || {
            signal(rpid, libc::SIGCONT);
            ctx()
        },
    );
    let log = master.log_text();
    for (i, u) in uuids.iter().enumerate() {
        assert!(
            log.contains(&format!("domain while-hung-{i} ({u})")),
            "line {i} missing from the log file\n{}",
            ctx()
        );
    }
    assert!(log.contains("not keeping up"), "{}", ctx());

    // It reads again: new lines reach it.
    signal(rpid, libc::SIGCONT);
    let after = test_uuid();
    c.send(Body::Events(vec![event(
        &after,
        "after-resume",
        "started",
        "booted",
    )]));
    let l = rs.wait_line("vmwatch-master", &format!("({after})"), &ctx);
    assert_eq!(
        (l.facility.as_str(), l.severity.as_str()),
        ("daemon", "info")
    );
    // The notice is logged after the line that found syslog reading again
    // was sent to it: rsyslogd may have that line first.
    master.wait_log(" takes lines again; ", DAEMON_DEADLINE);
    assert!(master.stop().success(), "{}", master.report());
}
