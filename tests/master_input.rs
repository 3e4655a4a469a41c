//! A real vmwatch-master against hostile and broken input, and against a
//! misbehaving panel command.
//!
//! The master listens on a network a hostile host may reach: every message
//! that is not a fresh, correctly signed vmwatch/1 message must be rejected
//! before any of it is used, counted by reason, and logged with a line
//! naming the reason (rate-limited, so a flood cannot fill the disk), and
//! the master must go on serving. Each test here sends bad input through
//! [`Client`] (the library's own signing code over a ZeroMQ PUSH socket), then
//! a valid message, which must still reach the panel; bad messages carry
//! events for a "victim" domain that must never show up. The rejection
//! counters the master logs when it stops are checked exactly.
//!
//! The panel side: a panel command that fails or hangs must not lose an
//! update (it is retried), a hung one must be killed with its whole process
//! group after `panel_timeout`, and while the panel is down the updates of
//! one domain coalesce to its latest state.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use vmwatch::protocol::{sign, Body, Message, MAX_PAYLOAD};

use common::*;

/// A master with a recording panel; the last value of a repeated key wins.
fn master(dir: &TestDir, extra: &str) -> (Daemon, u16, Panel) {
    let panel = Panel::new(dir);
    let (m, port) = start_master(dir, &panel, extra);
    (m, port, panel)
}

/// Sends a valid `started` event for a new domain and waits until the panel
/// has it: the master still serves.
fn assert_still_serving(client: &mut Client, master: &Daemon, panel: &Panel) {
    let uuid = test_uuid();
    client.send(Body::Events(vec![event(
        &uuid, "valid-vm", "started", "booted",
    )]));
    let line = wait_for(
        "a valid message sent after the bad ones to reach the panel",
        PANEL_DEADLINE,
        || panel.domain_lines(&uuid).into_iter().next(),
        || report(&[master], Some(panel)),
    );
    assert_eq!(line.field("state"), "running");
    assert_eq!(line.field("node"), client.node);
}

/// Waits until the master log holds `n` lines containing `needle`.
fn wait_log_count(master: &Daemon, needle: &str, n: usize) {
    wait_for(
        &format!("{n} log lines with `{needle}`"),
        PANEL_DEADLINE,
        || (master.log_lines(needle).len() >= n).then_some(()),
        || master.report(),
    );
}

/// Stops the master and returns (accepted, rejected by reason) from its
/// last words: `receiver stopped: N messages accepted, rejected: {...}`.
fn stop_and_count(master: &mut Daemon) -> (u64, BTreeMap<String, u64>) {
    assert!(master.stop().success(), "{}", master.report());
    // The counters as the stopped master saved them in its state file,
    // read with its own parser (the file sits beside its log).
    let path = master.log.with_file_name("master.state");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), master.report()));
    let file = vmwatch::master::statefile::parse(&path.display().to_string(), &bytes);
    assert!(!file.damaged(), "{:?}", file.problems);
    let get = |k: &str| {
        file.counters
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no counter {k} in {}", path.display()))
    };
    let rejected = vmwatch::master::receiver::rejection::Rejection::ALL
        .iter()
        .map(|r| (r.to_string(), get(&format!("rejected.{r}"))))
        .filter(|(_, n)| *n > 0)
        .collect();
    (get("accepted"), rejected)
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// An event for the domain bad messages talk about.
fn victim_event(victim: &str) -> Body {
    Body::Events(vec![event(victim, "victim-vm", "started", "booted")])
}

fn assert_victim_unseen(victim: &str, master: &Daemon, panel: &Panel) {
    assert!(
        !panel.lines().iter().any(|l| l.raw.contains(victim)),
        "a rejected message reached the panel\n{}",
        report(&[master], Some(panel))
    );
    assert!(
        !master.log_text().contains("victim-vm"),
        "a rejected message changed the state\n{}",
        master.report()
    );
}

#[test]
fn forged_macs_and_a_wrong_secret_are_rejected() {
    let dir = TestDir::new("badmac");
    let (mut m, port, panel) = master(&dir, "");
    let mut c = Client::connect(port, SECRET, "11");
    let victim = test_uuid();

    // One flipped hex digit.
    let mut f = c.frames(victim_event(&victim));
    f[1][10] = if f[1][10] == b'0' { b'1' } else { b'0' };
    c.send_frames(&f);
    // The right MAC in uppercase: not the protocol's spelling.
    let mut f = c.frames(victim_event(&victim));
    f[1].make_ascii_uppercase();
    c.send_frames(&f);
    // A MAC of the wrong length.
    let mut f = c.frames(victim_event(&victim));
    f[1].truncate(63);
    c.send_frames(&f);
    // A payload altered after signing.
    let mut f = c.frames(Body::Heartbeat);
    let text = String::from_utf8(f[0].clone()).unwrap();
    f[0] = text.replace("heartbeat", "heartbeaT").into_bytes();
    c.send_frames(&f);
    wait_log_count(&m, "rejected message from 127.0.0.1: MAC does not match", 4);

    // A node with another secret: refused within the ZeroMQ handshake
    // (its credential's MAC), so its message never reaches the receiver.
    let mut wrong = Client::connect(port, "SOME-OTHER-SECRET-0123456", "11");
    wrong.send(victim_event(&victim));
    wait_log_count(
        &m,
        "refused the ZeroMQ handshake of 127.0.0.1: the handshake credential's MAC does not match",
        1,
    );

    assert_still_serving(&mut c, &m, &panel);
    assert_victim_unseen(&victim, &m, &panel);
    let (accepted, rejected) = stop_and_count(&mut m);
    assert_eq!(accepted, 1);
    assert_eq!(rejected, counts(&[("bad_mac", 4)]));
    let state = read_text(&dir.join("master.state"));
    assert!(
        state
            .lines()
            .any(|l| l.starts_with("counter rejected.handshake ")
                && l != "counter rejected.handshake 0"),
        "the refused handshake is counted\n{state}"
    );
}

#[test]
fn replays_and_stale_messages_are_rejected() {
    let dir = TestDir::new("replay");
    let (mut m, port, panel) = master(&dir, "");
    let mut c = Client::connect(port, SECRET, "12");
    let victim = test_uuid();

    // Accepted once...
    let first = c.send(Body::Events(vec![event(
        &victim,
        "victim-vm",
        "started",
        "booted",
    )]));
    wait_for(
        "the original message to reach the panel",
        PANEL_DEADLINE,
        || panel.domain_lines(&victim).into_iter().next(),
        || report(&[&m], Some(&panel)),
    );
    let second = c.send(Body::Events(vec![event(
        &victim,
        "victim-vm",
        "suspended",
        "paused",
    )]));
    wait_for(
        "the second message to reach the panel",
        PANEL_DEADLINE,
        || (panel.domain_lines(&victim).len() == 2).then_some(()),
        || report(&[&m], Some(&panel)),
    );
    // ...then replayed: the exact frames, and the first one again after a
    // newer one was accepted.
    c.send_frames(&second);
    c.send_frames(&first);
    wait_log_count(
        &m,
        "replayed message: sequence 2 already seen (last accepted 2)",
        1,
    );
    wait_log_count(
        &m,
        "replayed message: sequence 1 already seen (last accepted 2)",
        1,
    );

    // The first message of a new instance, correctly signed but an hour
    // old, or an hour ahead (default max_clock_skew is 300 s): it cannot be
    // told from a replay of a forgotten instance.
    for (skew, word) in [(-3_600_000i64, "behind"), (3_600_000, "ahead of")] {
        let mut fresh = Client::connect(port, SECRET, "12");
        let mut header = fresh.header();
        header.ts_ms = (header.ts_ms as i64 + skew) as u64;
        let msg = Message {
            header,
            body: Body::Events(vec![event(&victim, "victim-vm", "stopped", "destroyed")]),
        };
        fresh.send_frames(&vmwatch::protocol::encode(SECRET.as_bytes(), &msg));
        wait_log_count(
            &m,
            &format!("node 12: stale message: its timestamp is 3600.0 s {word} the master's clock"),
            1,
        );
    }
    // A known instance whose clock jumped an hour ahead is still heard (its
    // sequence numbers refuse replays), and its clock is named (issue 16).
    let mut header = c.header();
    header.ts_ms += 3_600_000;
    let msg = Message {
        header,
        body: Body::Heartbeat,
    };
    c.send_frames(&vmwatch::protocol::encode(SECRET.as_bytes(), &msg));
    wait_log_count(&m, "node 12's clock is 1 h 0 min ahead", 1);

    assert_still_serving(&mut c, &m, &panel);
    // The victim's line count did not move: neither replay nor stale
    // message was applied.
    let lines = panel.domain_lines(&victim);
    assert_eq!(
        lines.iter().map(|l| l.field("state")).collect::<Vec<_>>(),
        vec!["running", "paused"],
        "{}",
        panel.report()
    );
    let (accepted, rejected) = stop_and_count(&mut m);
    assert_eq!(accepted, 4);
    assert_eq!(rejected, counts(&[("replay", 2), ("stale", 2)]));
}

#[test]
fn wrong_frame_counts_sizes_and_versions_are_rejected() {
    let dir = TestDir::new("frames");
    let (mut m, port, panel) = master(&dir, "");
    let mut c = Client::connect(port, SECRET, "13");
    let victim = test_uuid();

    let good = c.frames(victim_event(&victim));
    c.send_frames(&good[..1]);
    wait_log_count(
        &m,
        "rejected message from 127.0.0.1: expected 2 frames, got 1",
        1,
    );
    let mut three = c.frames(victim_event(&victim));
    three.push(b"extra".to_vec());
    c.send_frames(&three);
    wait_log_count(
        &m,
        "rejected message from 127.0.0.1: expected 2 frames, got 3",
        1,
    );
    let mut many = c.frames(victim_event(&victim));
    many.extend((0..5).map(|i| vec![b'x'; i]));
    c.send_frames(&many);
    // Rejected as malformed; the count it gives is checked (and currently
    // wrong) in `more_than_three_frames_are_reported_with_their_real_count`.
    wait_log_count(
        &m,
        "rejected message from 127.0.0.1: expected 2 frames, got ",
        3,
    );

    // One byte over the limit, correctly signed.
    let header = c.header();
    let mut payload = format!(
        "vmwatch/1 heartbeat node={} inst={:016x} seq={} ts={}\n",
        header.node, header.instance, header.seq, header.ts_ms
    )
    .into_bytes();
    payload.resize(MAX_PAYLOAD + 1, b'x');
    let mac = sign(SECRET.as_bytes(), &payload).into_bytes();
    c.send_frames(&[payload, mac]);
    wait_log_count(
        &m,
        &format!(
            "rejected message from 127.0.0.1: payload of {} bytes exceeds the {MAX_PAYLOAD}-byte limit",
            MAX_PAYLOAD + 1
        ),
        1,
    );

    // A future protocol version, correctly signed.
    let header = c.header();
    let v2 = format!(
        "vmwatch/2 heartbeat node={} inst={:016x} seq={} ts={}\n",
        header.node, header.instance, header.seq, header.ts_ms
    )
    .into_bytes();
    let mac = sign(SECRET.as_bytes(), &v2).into_bytes();
    c.send_frames(&[v2, mac]);
    wait_log_count(
        &m,
        "rejected message from 127.0.0.1: unsupported protocol `vmwatch/2`",
        1,
    );

    // Beyond ZeroMQ's own cap (4 × the limit) the connection is dropped
    // before the master sees anything; another peer is still served.
    let big = Client::connect(port, SECRET, "13");
    big.send_frames(&[vec![b'v'; 5 * MAX_PAYLOAD], vec![b'0'; 64]]);
    let mut other = Client::connect(port, SECRET, "14");
    assert_still_serving(&mut other, &m, &panel);
    assert_still_serving(&mut c, &m, &panel);

    assert_victim_unseen(&victim, &m, &panel);
    let (accepted, rejected) = stop_and_count(&mut m);
    assert_eq!(accepted, 2);
    assert_eq!(
        rejected,
        counts(&[("frames", 3), ("oversized", 1), ("version", 1)])
    );
}

#[test]
fn authenticated_but_malformed_payloads_are_rejected() {
    let dir = TestDir::new("malformed");
    let (mut m, port, panel) = master(&dir, "");
    let mut c = Client::connect(port, SECRET, "15");
    let victim = test_uuid();
    let cases: Vec<(String, &str)> = {
        let h = |c: &mut Client, kind: &str| {
            let h = c.header();
            format!(
                "vmwatch/1 {kind} node={} inst={:016x} seq={} ts={}",
                h.node, h.instance, h.seq, h.ts_ms
            )
        };
        vec![
            (
                format!(
                    "{}\nuuid=not-a-uuid name=victim-vm event=started detail=booted time=1\n",
                    h(&mut c, "event")
                ),
                "malformed message: `not-a-uuid` is not a UUID",
            ),
            (
                format!(
                    "{}\nuuid={victim} name=victim-vm event=started time=1\n",
                    h(&mut c, "event")
                ),
                "malformed message: missing `detail`",
            ),
            (
                format!("{}\n", h(&mut c, "teleport")),
                "malformed message: unknown message type `teleport`",
            ),
            (
                format!(
                    "{}\nuuid={victim} name=victim%2 event=started detail=booted time=1\n",
                    h(&mut c, "event")
                ),
                "malformed message: ",
            ),
            (
                // No final newline.
                h(&mut c, "heartbeat"),
                "malformed message: payload does not end with a newline",
            ),
        ]
    };
    for (i, (payload, why)) in cases.iter().enumerate() {
        let mac = sign(SECRET.as_bytes(), payload.as_bytes()).into_bytes();
        c.send_frames(&[payload.clone().into_bytes(), mac]);
        wait_log_count(&m, &format!("rejected message from 127.0.0.1: {why}"), 1);
        wait_log_count(
            &m,
            "rejected message from 127.0.0.1: malformed message",
            i + 1,
        );
    }
    assert_still_serving(&mut c, &m, &panel);
    assert_victim_unseen(&victim, &m, &panel);
    let (accepted, rejected) = stop_and_count(&mut m);
    assert_eq!(accepted, 1);
    assert_eq!(rejected, counts(&[("malformed", 5)]));
}

/// xorshift64*: reproducible "random" bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn random_garbage_is_rejected() {
    let dir = TestDir::new("garbage");
    let (mut m, port, panel) = master(&dir, "");
    let mut c = Client::connect(port, SECRET, "16");
    let mut rng = Rng(0x005e_ed0f_7e57_u64);
    let mut sent = 0u64;
    for i in 0..4 {
        let frames: Vec<Vec<u8>> = (0..(1 + i % 3))
            .map(|_| {
                let n = 1 + (rng.next() % 300) as usize;
                rng.bytes(n)
            })
            .collect();
        c.send_frames(&frames);
        sent += 1;
    }
    // Garbage that starts like a message, with a MAC-shaped frame.
    let mut payload = b"vmwatch/1 event ".to_vec();
    payload.extend(rng.bytes(100));
    let fake_mac: Vec<u8> = (0..64)
        .map(|_| b"0123456789abcdef"[(rng.next() % 16) as usize])
        .collect();
    c.send_frames(&[payload, fake_mac]);
    sent += 1;
    wait_log_count(&m, "rejected message from 127.0.0.1: ", sent as usize);
    assert_still_serving(&mut c, &m, &panel);
    let (accepted, rejected) = stop_and_count(&mut m);
    assert_eq!(accepted, 1);
    assert_eq!(rejected.values().sum::<u64>(), sent, "{rejected:?}");
    // Without the secret only the frame count, the size and the MAC can be
    // judged: 1-, 3- and 1-frame garbage is `frames`; the 2-frame garbage
    // and the fake MAC are `bad_mac`, however message-like the payload.
    assert_eq!(
        rejected,
        counts(&[("bad_mac", 2), ("frames", 3)]),
        "{rejected:?}"
    );
}

#[test]
fn a_flood_of_bad_messages_is_counted_logged_a_few_times_and_survived() {
    let dir = TestDir::new("flood");
    let (mut m, port, panel) = master(&dir, "");
    let mut c = Client::connect(port, SECRET, "17");
    let victim = test_uuid();
    const FLOOD: usize = 2000;
    let mut f = c.frames(victim_event(&victim));
    f[1] = vec![b'0'; 64];
    let start = Instant::now();
    for _ in 0..FLOOD {
        c.send_frames(&f);
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "sending the flood took over a minute"
        );
    }
    // Sent on the same connection after the flood: once it is at the panel,
    // every bad message has been handled.
    assert_still_serving(&mut c, &m, &panel);
    let lines = m.log_lines("MAC does not match");
    assert!(
        (1..=5).contains(&lines.len()),
        "{} rejection lines for {FLOOD} bad messages (5 per minute allowed)\n{}",
        lines.len(),
        m.report()
    );
    assert_victim_unseen(&victim, &m, &panel);
    let (accepted, rejected) = stop_and_count(&mut m);
    assert_eq!(accepted, 1);
    assert_eq!(rejected, counts(&[("bad_mac", FLOOD as u64)]));
    let size = std::fs::metadata(&m.log).unwrap().len();
    assert!(size < 20_000, "log grew to {size} bytes during the flood");
}

#[test]
fn a_failing_panel_gets_the_update_on_a_later_try() {
    let dir = TestDir::new("panelfail");
    let (m, port, panel) = master(&dir, "");
    panel.fail(true);
    let mut c = Client::connect(port, SECRET, "21");
    let uuid = test_uuid();
    c.send(Body::Events(vec![event(
        &uuid, "retry-vm", "started", "booted",
    )]));
    let ctx = || report(&[&m], Some(&panel));
    wait_for(
        "the panel to refuse a batch",
        PANEL_DEADLINE,
        || panel.refused().into_iter().find(|l| l.is_domain(&uuid)),
        ctx,
    );
    wait_log_count(&m, "test panel refuses this batch", 1);
    assert!(
        m.log_text()
            .contains("exited with status 1: test panel refuses this batch"),
        "{}",
        ctx()
    );
    assert!(panel.lines().is_empty(), "{}", ctx());
    panel.fail(false);
    let line = wait_for(
        "the update to be delivered after the panel recovered",
        PANEL_DEADLINE,
        || panel.domain_lines(&uuid).into_iter().next(),
        ctx,
    );
    let refused = panel
        .refused()
        .into_iter()
        .find(|l| l.is_domain(&uuid))
        .unwrap();
    assert_eq!(line.raw, refused.raw, "the same fact, unchanged");
    wait_log_count(&m, "panel calls succeed again", 1);
    // VMWATCH_UPDATES always counts the lines of the batch.
    for (outcome, n, env) in panel.calls() {
        assert_eq!(n, env, "{outcome} call: {n} lines, VMWATCH_UPDATES={env}");
    }
}

#[test]
fn a_hanging_panel_is_killed_with_its_children_after_panel_timeout_and_retried() {
    let dir = TestDir::new("panelhang");
    let (m, port, panel) = master(&dir, "panel_timeout=1\n");
    panel.hang(true);
    let mut c = Client::connect(port, SECRET, "22");
    let uuid = test_uuid();
    c.send(Body::Events(vec![event(
        &uuid, "hang-vm", "started", "booted",
    )]));
    let ctx = || report(&[&m], Some(&panel));
    wait_log_count(&m, "did not finish within panel_timeout (1 s); killed", 1);
    panel.hang(false);
    let pids = panel.hung_pids();
    assert!(
        pids.len() >= 2,
        "the hung script and its sleep: {pids:?}\n{}",
        ctx()
    );
    wait_for(
        "the hung panel command and its child to be gone",
        PANEL_DEADLINE,
        || pids.iter().all(|&p| !alive(p)).then_some(()),
        ctx,
    );
    let line = wait_for(
        "the update to be delivered once the panel answers",
        PANEL_DEADLINE,
        || panel.domain_lines(&uuid).into_iter().next(),
        ctx,
    );
    assert_eq!(line.field("state"), "running");
}

#[test]
fn updates_of_one_domain_coalesce_while_the_panel_is_down() {
    let dir = TestDir::new("coalesce");
    let (m, port, panel) = master(&dir, "");
    panel.fail(true);
    let mut c = Client::connect(port, SECRET, "23");
    let uuid = test_uuid();
    let ctx = || report(&[&m], Some(&panel));
    c.send(Body::Events(vec![event(
        &uuid, "busy-vm", "started", "booted",
    )]));
    wait_for(
        "a refused batch with the domain running",
        PANEL_DEADLINE,
        || panel.refused().into_iter().find(|l| l.is_domain(&uuid)),
        ctx,
    );
    // Several changes, one message each, each registered by the master.
    for (ev, detail, change) in [
        ("suspended", "paused", "running -> paused"),
        ("resumed", "unpaused", "paused -> running"),
        ("suspended", "paused", "running -> paused"),
        ("stopped", "destroyed", "paused -> shutoff"),
    ] {
        let before = m.log_lines(change).len();
        c.send(Body::Events(vec![event(&uuid, "busy-vm", ev, detail)]));
        wait_log_count(&m, change, before + 1);
    }
    // A later update of another domain: once it is delivered, everything
    // queued before it has been.
    let sentinel = test_uuid();
    c.send(Body::Events(vec![event(
        &sentinel,
        "sentinel-vm",
        "started",
        "booted",
    )]));
    wait_log_count(&m, "domain sentinel-vm", 1);
    assert!(panel.lines().is_empty(), "{}", ctx());
    panel.fail(false);
    wait_for(
        "the sentinel to be delivered",
        PANEL_DEADLINE,
        || panel.domain_lines(&sentinel).into_iter().next(),
        ctx,
    );
    let lines = panel.domain_lines(&uuid);
    assert_eq!(lines.len(), 1, "only the latest state\n{}", ctx());
    assert_eq!(lines[0].field("state"), "shutoff");
    assert_eq!(lines[0].field("reason"), "destroyed");
    assert_eq!(lines[0].field("old"), "paused");
    let all = panel.lines();
    let pos = |u: &str| all.iter().position(|l| l.is_domain(u)).unwrap();
    assert!(pos(&uuid) < pos(&sentinel), "{}", ctx());
}

#[test]
fn batches_respect_panel_batch_and_vmwatch_updates_counts_their_lines() {
    let dir = TestDir::new("batches");
    let (m, port, panel) = master(&dir, "panel_batch=10\n");
    panel.fail(true);
    let mut c = Client::connect(port, SECRET, "24");
    let uuids: Vec<String> = (0..25).map(|_| test_uuid()).collect();
    let domains = uuids
        .iter()
        .enumerate()
        .map(|(i, u)| domain_state(u, &format!("vm {i}"), "running", "booted"))
        .collect();
    c.send(Body::Snapshot {
        id: 1,
        part: 1,
        parts: 1,
        domains,
    });
    let ctx = || report(&[&m], Some(&panel));
    wait_log_count(&m, "domain vm 24 (", 1);
    wait_for(
        "a refused batch",
        PANEL_DEADLINE,
        || (!panel.refused().is_empty()).then_some(()),
        ctx,
    );
    panel.fail(false);
    // The panel double appends a batch's lines before it notes the call:
    // wait for both, or the last call may not be noted yet.
    let accepted = || -> usize {
        panel
            .calls()
            .iter()
            .filter(|c| c.0 == "ok")
            .filter_map(|c| c.1.parse::<usize>().ok())
            .sum()
    };
    wait_for(
        "all 26 updates (node up + 25 domains) to be delivered and their calls noted",
        PANEL_DEADLINE,
        || (panel.lines().len() >= 26 && accepted() >= 26).then_some(()),
        ctx,
    );
    let lines = panel.lines();
    assert_eq!(lines.len(), 26, "each update once\n{}", ctx());
    assert_eq!(
        accepted(),
        26,
        "each update in one accepted call\n{}",
        ctx()
    );
    for u in &uuids {
        assert_eq!(panel.domain_lines(u).len(), 1, "{u}\n{}", ctx());
    }
    // Names with a space arrive percent-encoded and decode back.
    assert!(lines
        .iter()
        .any(|l| l.raw.contains("name=vm%2024") && l.get("name") == Some("vm 24")));
    let ok: Vec<(String, String, String)> =
        panel.calls().into_iter().filter(|c| c.0 == "ok").collect();
    assert!(ok.len() >= 3, "26 updates in batches of at most 10: {ok:?}");
    for (_, n, env) in panel.calls() {
        assert_eq!(n, env, "VMWATCH_UPDATES must count the lines");
        let n: usize = n.parse().unwrap();
        assert!(
            (1..=10).contains(&n),
            "batch of {n} lines with panel_batch=10"
        );
    }
}

/// The master keeps at most 3 frames of a message but reads it to its end;
/// its rejection line should give the real number of frames, as it does
/// for 1 and 3.
#[test]
fn more_than_three_frames_are_reported_with_their_real_count() {
    let dir = TestDir::new("sevenframes");
    let (mut m, port, panel) = master(&dir, "");
    let mut c = Client::connect(port, SECRET, "18");
    let mut many = c.frames(Body::Heartbeat);
    many.extend((0..5).map(|i| vec![b'x'; i]));
    c.send_frames(&many);
    assert_still_serving(&mut c, &m, &panel);
    let lines = m.log_lines("rejected message from 127.0.0.1: expected 2 frames, got ");
    assert_eq!(lines.len(), 1, "{}", m.report());
    assert!(
        lines[0].ends_with("expected 2 frames, got 7"),
        "7 frames were sent: {}",
        lines[0]
    );
    let (_, rejected) = stop_and_count(&mut m);
    assert_eq!(rejected, counts(&[("frames", 1)]));
}
