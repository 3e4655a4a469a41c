//! The real node pipeline on the bench's guests, with a stamped view of
//! every stage: `virsh event --loop --all` on the same libvirtd (the
//! reference), the release vmwatch-node with its shipped defaults, the
//! release vmwatch-master over loopback ZeroMQ, and a panel command.
//!
//! What is observed, each through a pipe read by a thread that stamps a
//! line the moment it arrives ([`Lines`]):
//! - virsh: its stdout, one line per event;
//! - the master: its log, which a foreground master (`-f`) mirrors to
//!   stderr; the state change line (`node N: domain D (U): running ->
//!   paused ...`) is made by the receiver thread when the message was
//!   authenticated and applied to the state table, and written at the end
//!   of that receive burst (here one message), just after the update was
//!   queued for the panel;
//! - the panel: the panel command is `exec cat >FIFO`, so what the master
//!   gives the panel command on its stdin arrives in the FIFO the bench
//!   reads, one line per update, as the command reads it.
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bin, free_port, Killed, SECRET};
use crate::guests::{uri, Guests};
use crate::observe::Lines;

/// The node id the rig's node uses.
pub const NODE_ID: &str = "bench";

/// The running pipeline and what watches it.
pub struct Rig {
    pub virsh: Killed,
    /// Held so that the master ends with the rig.
    _master: Killed,
    pub node: Killed,
    /// `virsh event --loop --all` stdout.
    pub events: Lines,
    /// The master's log lines.
    pub master_log: Lines,
    /// The lines the panel command read.
    pub panel: Lines,
    /// When the node was started: its stats and sync timers count from here.
    pub node_started: Instant,
}

/// Waits for the master's log line containing `what`, or panics with the
/// node's and master's logs.
fn expect(lines: &mut Lines, what: &str, dir: &Path) {
    let (since, deadline) = (lines.started, Instant::now() + Duration::from_secs(30));
    if lines.wait(since, deadline, |l| l.contains(what)).is_none() {
        panic!(
            "bench: the master never logged `{what}` within 30 s; node log:\n{}\nmaster log:\n{}",
            std::fs::read_to_string(dir.join("rig-node.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("rig-master.log")).unwrap_or_default()
        );
    }
}

impl Rig {
    /// Starts virsh, the master and the node, and returns once the node's
    /// first snapshot of every guest has reached the panel command.
    pub fn start(dir: &Path, guests: &Guests) -> Rig {
        let t = Instant::now();
        let mut virsh = Command::new("virsh");
        virsh
            .args(["-q", "-c", &uri(), "event", "--loop", "--all"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut virsh = Killed(virsh.spawn().expect("virsh runs (libvirt-clients)"));
        let events = Lines::spawn("virsh", virsh.0.stdout.take().unwrap());

        // The panel command's FIFO: held open for reading and writing here,
        // so each call's `cat` opens it without waiting and its end of
        // writing is not an end of file for the reader.
        let fifo = dir.join("rig-panel.fifo");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        let panel = Lines::spawn("panel", reader);
        let panel_sh = dir.join("rig-panel.sh");
        crate::common::write_script(
            &panel_sh,
            &format!("#!/bin/sh\nexec cat >{}\n", fifo.display()),
        );

        let port = free_port();
        let master_conf = dir.join("rig-master.conf");
        std::fs::write(
            &master_conf,
            format!(
                "listen=tcp://127.0.0.1:{port}\nsecret={}\nlog={}\nsyslog=no\npanel_command={}\nstate_file={}\n",
                String::from_utf8_lossy(SECRET),
                dir.join("rig-master.log").display(),
                panel_sh.display(),
                dir.join("rig-master.state").display()
            ),
        )
        .unwrap();
        let mut master = Killed(
            Command::new(bin("vmwatch-master"))
                .args(["-f", "-c"])
                .arg(&master_conf)
                .arg("-p")
                .arg(dir.join("rig-master.pid"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("master starts"),
        );
        let mut master_log = Lines::spawn("master", master.0.stderr.take().unwrap());
        expect(&mut master_log, "listening on", dir);

        // The node as shipped: only what the panel writes (connect, secret,
        // node_id), the libvirt URI and where its files go; every interval
        // is the default.
        let node_conf = format!(
            "connect=tcp://127.0.0.1:{port}\nsecret={}\nnode_id={NODE_ID}\nuri={}\nlog={}\nsyslog=no\nstatus_file={}\nreboot_file={}\n",
            String::from_utf8_lossy(SECRET),
            uri(),
            dir.join("rig-node.log").display(),
            dir.join("rig-node.status").display(),
            dir.join("rig-node.reboots").display()
        );
        let conf_path = dir.join("rig-node.conf");
        std::fs::write(&conf_path, &node_conf).unwrap();
        let node_started = Instant::now();
        let node = Killed(
            Command::new(bin("vmwatch-node"))
                .args(["-f", "-c"])
                .arg(&conf_path)
                .arg("-p")
                .arg(dir.join("rig-node.pid"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("node starts"),
        );
        expect(&mut master_log, &format!("node {NODE_ID} (instance "), dir);
        let mut rig = Rig {
            virsh,
            _master: master,
            node,
            events,
            master_log,
            panel,
            node_started,
        };
        // The node's first snapshot: every guest reaches the panel.
        let mut missing: std::collections::BTreeSet<&str> =
            guests.domains.iter().map(|(n, _)| n.as_str()).collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !missing.is_empty() {
            let since = rig.panel.started;
            let Some((_, line)) = rig
                .panel
                .wait(since, deadline, |l| l.starts_with("vmwatch.domain "))
            else {
                panic!(
                    "bench: {} guests never reached the panel command, e.g. {:?}",
                    missing.len(),
                    missing.iter().next()
                );
            };
            missing.retain(|n| !line.contains(&format!(" name={n} ")));
        }
        eprintln!(
            "bench: virsh, master and node up, snapshot at the panel in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        rig
    }
}
