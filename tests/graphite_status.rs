//! The graphite export's counters in the master's state file (`counter
//! graphite.*`, docs/state-file.md) and in `vmwatch-master --status`, from
//! the real master.
//!
//! The carbon here is the test's own line receiver on loopback, a stand-in
//! on purpose: the test must count exactly the lines that arrived and close
//! the receiver when it wants to. A real carbon-cache is
//! tests/graphite_carbon.rs's.
//!
//! Proves: while connected, `connected 1` and `sent_lines` never more than
//! what arrived; with the receiver gone, `connected 0`, the buffer full at
//! `graphite_buffer` and the oldest lines counted as dropped; `--status`
//! says the same in its own section; a master without graphite writes no
//! such line.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::*;

/// A line receiver on 127.0.0.1 that counts what arrives, until stopped.
struct Receiver {
    port: u16,
    lines: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (lines, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let thread = {
            let (lines, stop) = (lines.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut readers = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((s, _)) = listener.accept() {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(std::time::Duration::from_millis(50)))
                            .unwrap();
                        readers.push((BufReader::new(s), Vec::new()));
                    }
                    // A line read in parts (a read timed out) is kept in
                    // its reader's buffer until its newline comes.
                    for (r, line) in readers.iter_mut() {
                        while let Ok(n) = r.read_until(b'\n', line) {
                            if n == 0 || line.last() != Some(&b'\n') {
                                break;
                            }
                            lines.fetch_add(1, Ordering::SeqCst);
                            line.clear();
                        }
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                // Dropping the listener and the connections: the master
                // sees carbon close and refuse.
            })
        };
        Receiver {
            port,
            lines,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// The value of `counter NAME` in the state file, if there.
fn counter(dir: &TestDir, name: &str) -> Option<u64> {
    let text = read_text(&dir.join("master.state"));
    let prefix = format!("counter {name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

fn status(master: &Daemon) -> String {
    let out = Command::new(master_bin())
        .arg("--status")
        .arg("-c")
        .arg(&master.config)
        .arg("-p")
        .arg(&master.pidfile)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn graphite_counters_in_the_state_file_and_status() {
    let dir = TestDir::new("graphite-status");
    let panel = Panel::new(&dir);
    let mut carbon = Receiver::start();
    let (master, port) = start_master(
        &dir,
        &panel,
        &format!(
            "graphite=tcp://127.0.0.1:{}\ngraphite_interval=1\ngraphite_buffer=100\nstate_interval=1\n",
            carbon.port
        ),
    );
    let ctx = || report(&[&master], None);
    // Five nodes: each adds its lines to every summary, so the buffer
    // fills in a few seconds once carbon is gone.
    for i in 0..5 {
        Client::connect(port, SECRET, &format!("n{i}")).send(vmwatch::protocol::Body::Heartbeat);
    }

    // Connected: lines flow, and the file never claims more than arrived.
    wait_for(
        "graphite.connected 1 and lines sent in the state file",
        DAEMON_DEADLINE,
        || {
            (counter(&dir, "graphite.connected") == Some(1)
                && counter(&dir, "graphite.sent_lines").is_some_and(|n| n > 0))
            .then_some(())
        },
        ctx,
    );
    let sent = counter(&dir, "graphite.sent_lines").unwrap();
    assert!(
        carbon.lines.load(Ordering::SeqCst) >= sent,
        "the state file says {sent} lines sent, {} arrived",
        carbon.lines.load(Ordering::SeqCst)
    );
    for name in ["dropped_lines", "dropped_items", "buffered_lines"] {
        assert_eq!(
            counter(&dir, &format!("graphite.{name}")),
            Some(0),
            "{name}"
        );
    }
    let shown = status(&master);
    let section = shown
        .split("Graphite export since start:")
        .nth(1)
        .unwrap_or_else(|| panic!("no graphite section in --status:\n{shown}"));
    assert!(
        section
            .lines()
            .any(|l| l.split_whitespace().eq(["connected", "yes"])),
        "{shown}"
    );
    assert!(
        section
            .lines()
            .any(|l| l.trim_start().starts_with("sent_lines ")),
        "{shown}"
    );

    // Carbon gone: the buffer fills to graphite_buffer, the oldest lines
    // are dropped and counted.
    carbon.stop();
    wait_for(
        "graphite.connected 0, 100 lines buffered and some dropped",
        PANEL_DEADLINE,
        || {
            (counter(&dir, "graphite.connected") == Some(0)
                && counter(&dir, "graphite.buffered_lines") == Some(100)
                && counter(&dir, "graphite.dropped_lines").is_some_and(|n| n > 0))
            .then_some(())
        },
        || format!("{}\n{}", read_text(&dir.join("master.state")), ctx()),
    );
    let shown = status(&master);
    let section = shown.split("Graphite export since start:").nth(1).unwrap();
    assert!(
        section
            .lines()
            .any(|l| l.split_whitespace().eq(["connected", "no"])),
        "{shown}"
    );
    assert!(
        section
            .lines()
            .any(|l| l.split_whitespace().eq(["buffered_lines", "100"])),
        "{shown}"
    );
    // Not mixed into the message counters.
    let messages = shown.split("Graphite export").next().unwrap();
    assert!(!messages.contains("graphite."), "{shown}");

    // Without graphite: no such line, no section.
    let plain_dir = TestDir::new("graphite-off");
    let plain_panel = Panel::new(&plain_dir);
    let (plain, _) = start_master(&plain_dir, &plain_panel, "state_interval=1\n");
    wait_for(
        "the state file of a master without graphite",
        DAEMON_DEADLINE,
        || counter(&plain_dir, "accepted"),
        || report(&[&plain], None),
    );
    assert!(!read_text(&plain_dir.join("master.state")).contains("graphite"));
    assert!(!status(&plain).contains("Graphite"));
}
