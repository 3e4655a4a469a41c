//! What the bench sections share: the secret, message builders, the
//! release binaries, a master on a free loopback port and process memory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vmwatch::protocol::{Body, DomainId, Event, Header, Message};
use vmwatch::vocab::{Detail, EventKind};

pub const SECRET: &[u8] = b"BENCH0SECRET0123456789";

pub fn event_msg(seq: u64, i: usize, ts: u64) -> Message {
    // Each event with the first detail libvirt gives it (booted, paused,
    // unpaused, shutdown): every message is one the master accepts.
    let kinds = [
        EventKind::Started,
        EventKind::Suspended,
        EventKind::Resumed,
        EventKind::Stopped,
    ];
    let kind = kinds[i % kinds.len()];
    Message {
        header: Header {
            node: "bench".into(),
            instance: 0x1234,
            seq,
            ts_ms: ts,
            host: None,
        },
        body: Body::Events(vec![Event {
            domain: DomainId {
                uuid: format!("00000000-0000-4000-8000-{:012x}", i % 500),
                name: format!("vm-{}", i % 500),
            },
            event: kind,
            detail: Detail::from_code(kind.code().unwrap_or(0) as i32, 0),
            time_ms: ts,
            reboots: None,
            rebootid: None,
        }]),
    }
}

pub fn now_ms() -> u64 {
    vmwatch::clock::now_ms()
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The binary `name`: the release build that `make bench` makes, or the
/// debug build in the smoke run (`make test` builds that one).
pub fn bin(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let quick = std::env::var_os("VMWATCH_BENCH_QUICK").is_some_and(|v| v != "0");
    let path = root
        .join(if quick { "debug" } else { "release" })
        .join(name);
    assert!(
        path.exists(),
        "bench: {} is missing; build it first (make bench builds the release binaries)",
        path.display()
    );
    path
}

/// VmRSS and VmHWM of a process, in KiB.
pub fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub struct Killed(pub Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the release master on a free loopback port, its files named
/// `TAG.*` in `dir` and a panel command that appends every batch to
/// `TAG.panel`; returns once it listens.
pub fn start_master(dir: &Path, tag: &str) -> (Killed, u16, PathBuf) {
    let port = free_port();
    let conf = dir.join(format!("{tag}.conf"));
    let panel_out = dir.join(format!("{tag}.panel"));
    let script = dir.join(format!("{tag}.sh"));
    let log = dir.join(format!("{tag}.log"));
    write_script(
        &script,
        &format!("#!/bin/sh\ncat >> {}\n", panel_out.display()),
    );
    std::fs::write(
        &conf,
        format!(
            "listen=tcp://127.0.0.1:{port}\nsecret={}\nlog={}\nsyslog=no\npanel_command={}\nstate_file={}\n",
            String::from_utf8_lossy(SECRET),
            log.display(),
            script.display(),
            dir.join(format!("{tag}.state")).display()
        ),
    )
    .unwrap();
    let master = Killed(
        Command::new(bin("vmwatch-master"))
            .args(["-f", "-c"])
            .arg(&conf)
            .arg("-p")
            .arg(dir.join(format!("{tag}.pid")))
            .stderr(Stdio::null())
            .spawn()
            .expect("master starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("listening on")
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    (master, port, panel_out)
}

/// Writes an executable shell script (a panel double) at `path`.
pub fn write_script(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    Command::new("chmod").arg("+x").arg(path).status().unwrap();
}
