//! The shipped logrotate files (packaging/logrotate/*) run by a real
//! logrotate (`logrotate -f -s STATE CONFIG`, Debian's package, installed by
//! tests/support/setup-nagios.sh) twice while both daemons log busily: the
//! master takes a stream of signed messages, each logging a line per domain
//! (named by a sequence the test makes) and a debug line per message with the
//! sender's sequence number, mixed with messages signed with another secret
//! (rejected, counted, logged rate-limited); the node, on the machine's
//! libvirtd, logs every libvirt event of a real QEMU guest suspended and
//! resumed in a loop, and a debug line per message it sends (its own
//! sequence). The files' paths are rewritten to the test directory, as the
//! packaging test does; nothing else of them changes.
//!
//! Proves: the daemons keep running through both rotations and stop
//! cleanly; once a daemon has said it reopened its file, nothing more is
//! written to the rotated one (its content after the first rotation is
//! exactly what the second rotation compressed); no line is lost or
//! doubled: every sequence appears once, in order, across the compressed
//! generation (read with zcat), the rotated file and the new one; each
//! file keeps mode 0640.
//!
//! Uses the machine's libvirtd, so it is `#[ignore]`d for a plain `cargo
//! test`: `make test` runs it (`--include-ignored`); by hand, under `flock
//! /tmp/vmwatch-libvirt.lock`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::guest::{require_libvirtd, Guest, URI};
use crate::common::ops::require_tools;
use crate::common::*;
use vmwatch::protocol::Body;

/// At most this many load messages (bounds the run whatever happens).
const MAX_MESSAGES: u64 = 30_000;
/// Domains per load message (each logs one line at the master).
const PER_MESSAGE: u64 = 4;

/// The shipped file for `program`, its paths pointed into `dir`.
fn rewritten(program: &str, dir: &TestDir, tag: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/logrotate/");
    let text = std::fs::read_to_string(format!("{path}{program}")).expect("read the shipped file");
    let (log, pid) = (
        format!("/usr/local/mgr5/var/{program}.log"),
        format!("/var/run/{program}.pid"),
    );
    assert!(
        text.contains(&log) && text.contains(&pid),
        "packaging/logrotate/{program} no longer names {log} and {pid}: update this test"
    );
    text.replace(&log, &dir.join(&format!("{tag}.log")).display().to_string())
        .replace(&pid, &dir.join(&format!("{tag}.pid")).display().to_string())
}

fn logrotate(config: &Path, state: &Path) {
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(state)
        .arg(config)
        .output()
        .expect("run logrotate");
    assert!(
        out.status.success(),
        "logrotate -f failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn zcat(path: &Path) -> String {
    let out = Command::new("zcat").arg(path).output().expect("run zcat");
    assert!(
        out.status.success(),
        "zcat {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the log is text")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The number that follows `before` in each line that has it, in order.
fn sequence(text: &str, before: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| {
            let rest = &l[l.find(before)? + before.len()..];
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            rest[..end].parse().ok()
        })
        .collect()
}

/// Fails unless `seq` only grows (a sender's sequence may skip a number:
/// the node spends one on a send ZeroMQ refused while it had no master).
fn assert_increasing(what: &str, seq: &[u64]) {
    for (i, w) in seq.windows(2).enumerate() {
        assert!(
            w[0] < w[1],
            "{what}: {} then {} at item {i} of {}",
            w[0],
            w[1],
            seq.len()
        );
    }
}

/// Fails unless `seq` is exactly `first..=last` for some `last`, in order.
fn assert_contiguous(what: &str, seq: &[u64], first: u64) {
    for (i, n) in seq.iter().enumerate() {
        assert_eq!(
            *n,
            first + i as u64,
            "{what}: the sequence breaks at item {i} ({} items): {:?}",
            seq.len(),
            &seq[i.saturating_sub(3)..(i + 3).min(seq.len())]
        );
    }
}

/// The log of `tag` in `dir`: generations as (path, whole text).
struct Generations {
    gz: PathBuf,
    one: PathBuf,
    now: PathBuf,
}

impl Generations {
    fn of(dir: &TestDir, tag: &str) -> Generations {
        Generations {
            gz: dir.join(&format!("{tag}.log.2.gz")),
            one: dir.join(&format!("{tag}.log.1")),
            now: dir.join(&format!("{tag}.log")),
        }
    }

    /// Oldest first.
    fn all_text(&self) -> String {
        zcat(&self.gz) + &read_text(&self.one) + &read_text(&self.now)
    }
}

#[test]
#[ignore = "needs libvirtd and logrotate (tests/support/setup-nagios.sh): make test"]
fn the_shipped_files_rotate_both_busy_daemons_losing_nothing() {
    require_tools();
    require_libvirtd();
    let dir = TestDir::new("logrotate");
    let guest = Guest::new(&dir, "ops-rotate");
    guest.define();
    guest.start();

    let panel = Panel::new(&dir);
    let (mut master, port) = start_master(&dir, &panel, "log_level=debug\n");
    let mut node = start_node_at(
        &dir,
        port,
        "rot",
        URI,
        "log_level=debug\nheartbeat_interval=1\n",
    );
    let config = dir.join("logrotate.conf");
    std::fs::write(
        &config,
        rewritten("vmwatch-master", &dir, "master") + &rewritten("vmwatch-node", &dir, "node"),
    )
    .unwrap();
    let state = dir.join("logrotate.state");
    let (m, n) = (
        Generations::of(&dir, "master"),
        Generations::of(&dir, "node"),
    );
    assert_eq!(mode(&m.now), 0o640);
    assert_eq!(mode(&n.now), 0o640);

    // The load: one thread signs messages for the master, another suspends
    // and resumes the guest; both run until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let cycles = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let mut c = Client::connect(port, SECRET, "load");
            // Through the handshake (which needs the secret), then every
            // message signed with a wrong key: rejected as a bad MAC.
            let mut bad = Client::connect(port, SECRET, "bad");
            bad.secret = b"NOT-THE-SECRET-0123456789".to_vec();
            let mut next = 1u64;
            while !stop.load(Ordering::SeqCst) && c.seq < MAX_MESSAGES {
                let events = (0..PER_MESSAGE)
                    .map(|i| {
                        event(
                            &test_uuid(),
                            &format!("seq-{:07}", next + i),
                            "started",
                            "booted",
                        )
                    })
                    .collect();
                c.send(Body::Events(events));
                next += PER_MESSAGE;
                sent.store(c.seq, Ordering::SeqCst);
                if c.seq.is_multiple_of(10) {
                    bad.send(Body::Heartbeat);
                }
            }
            (c.seq, bad.seq)
        })
    };
    let flipper = {
        let (stop, cycles, name) = (stop.clone(), cycles.clone(), guest.name.clone());
        std::thread::spawn(move || {
            let conn = virt::connect::Connect::open(Some(URI)).expect("connect to libvirtd");
            let dom = conn.lookup_domain_by_name(&name).expect("the guest");
            while !stop.load(Ordering::SeqCst) {
                dom.suspend().expect("suspend the guest");
                dom.resume().expect("resume the guest");
                cycles.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let (mlog, nlog) = (master.log.clone(), node.log.clone());
    let ctx = move || {
        format!(
            "--- master log (tail):\n{}\n--- node log (tail):\n{}\n",
            tail(&mlog, 30),
            tail(&nlog, 30)
        )
    };
    let ctx = &ctx;
    let busy = |what: &str, msgs: u64, flips: u64| {
        let (m0, c0) = (sent.load(Ordering::SeqCst), cycles.load(Ordering::SeqCst));
        wait_for(
            what,
            PANEL_DEADLINE,
            || {
                // A load thread that reached MAX_MESSAGES has done its part.
                (sent.load(Ordering::SeqCst) >= (m0 + msgs).min(MAX_MESSAGES)
                    && cycles.load(Ordering::SeqCst) >= c0 + flips)
                    .then_some(())
            },
            ctx,
        );
    };
    let reopened = |path: &Path| {
        wait_for(
            &format!("`reopened` in the new {}", path.display()),
            DAEMON_DEADLINE,
            || read_text(path).contains(" reopened").then_some(()),
            ctx,
        );
    };

    busy("load before the first rotation", 300, 10);
    logrotate(&config, &state);
    for g in [&m, &n] {
        assert!(g.one.exists(), "{} rotated", g.one.display());
        reopened(&g.now);
    }
    let rotated = (read_text(&m.one), read_text(&n.one));
    assert!(alive(master.pid()) && alive(node.pid()), "{}", ctx());
    busy("load between the rotations", 300, 10);
    assert_eq!(
        read_text(&m.one),
        rotated.0,
        "written to master.log.1 after it reopened"
    );
    assert_eq!(
        read_text(&n.one),
        rotated.1,
        "written to node.log.1 after it reopened"
    );

    logrotate(&config, &state);
    for g in [&m, &n] {
        assert!(g.gz.exists(), "{} compressed", g.gz.display());
        reopened(&g.now);
    }
    busy("load after the second rotation", 300, 10);
    stop.store(true, Ordering::SeqCst);
    let (messages, bad) = load.join().expect("the load thread");
    flipper.join().expect("the suspend/resume thread");
    let flips = cycles.load(Ordering::SeqCst);
    // The master has taken the last message.
    master.wait_log(
        &format!("accepted event from node load seq {messages}\n"),
        PANEL_DEADLINE,
    );
    // The node has seen the last resume.
    let resumed = format!("libvirt: {} resumed", guest.name);
    wait_for(
        &format!("{flips} `{resumed}` lines in the node's logs"),
        PANEL_DEADLINE,
        || {
            (Generations::of(&dir, "node")
                .all_text()
                .matches(&resumed)
                .count() as u64
                >= flips)
                .then_some(())
        },
        ctx,
    );
    // The node first: what it sends while stopping reaches the master.
    assert!(node.stop().success(), "{}", node.report());
    let node_sent = sequence(&n.all_text(), "message (seq ");
    let last = *node_sent.last().expect("the node sent messages");
    master.wait_log(&format!(" from node rot seq {last}\n"), PANEL_DEADLINE);
    assert!(master.stop().success(), "{}", master.report());

    // What the second rotation compressed is what the first left.
    assert_eq!(zcat(&m.gz), rotated.0);
    assert_eq!(zcat(&n.gz), rotated.1);
    for g in [&m, &n] {
        for p in [&g.gz, &g.one, &g.now] {
            assert_eq!(mode(p), 0o640, "mode of {}", p.display());
        }
    }

    // Nothing lost, nothing doubled, in order, across the generations.
    let all = m.all_text();
    let accepted = sequence(&all, "accepted event from node load seq ");
    assert_contiguous("the master's accepted messages", &accepted, 1);
    assert_eq!(accepted.len() as u64, messages);
    let domains = sequence(&all, ": domain seq-");
    assert_contiguous("the master's domain lines", &domains, 1);
    assert_eq!(domains.len() as u64, messages * PER_MESSAGE);
    assert!(bad > 0 && all.contains("rejected message from "));
    for (name, g) in [("master", &m), ("node", &n)] {
        assert!(
            g.one.exists() && read_text(&g.now).contains("exiting"),
            "{name}: the last line is in the new file"
        );
    }

    // Every message the node logged as sent, the master logged as
    // accepted: no line of either lost in the rotations.
    let from_node = sequence(&all, "from node rot seq ");
    let all = n.all_text();
    let sent_seq = sequence(&all, "message (seq ");
    assert_eq!(sent_seq, node_sent);
    assert_increasing("the node's sent messages", &sent_seq);
    assert_eq!(
        from_node, sent_seq,
        "the master's accepted messages of node rot against the node's sent ones"
    );
    let suspended = format!("libvirt: {} suspended", guest.name);
    assert_eq!(all.matches(&suspended).count() as u64, flips);
    assert_eq!(all.matches(&resumed).count() as u64, flips);
    println!(
        "rotated twice under load: master {} messages ({} domains, {bad} rejected), node {} messages, {flips} suspend/resume cycles",
        messages,
        domains.len(),
        sent_seq.len()
    );
}
