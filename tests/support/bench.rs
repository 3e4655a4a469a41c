//! `make bench`: speed and memory of vmwatch, measured side by side.
//!
//! This machine is shared and noisy, so each figure is taken next to the one
//! it is compared with, in the same run, alternating rounds, and reported as
//! a ratio as well as a rate. Sections:
//! 1. master pipeline in-process: accepted messages vs forged ones (what a
//!    flood of bad messages costs compared with real work);
//! 2. panel calls: a burst of 500 updates with batching vs one call per
//!    update;
//! 3. the real master binary over loopback: end-to-end messages per second
//!    and its memory;
//! 4. the real node binary: resident memory after start;
//! 5. stats sampling on the real libvirtd: bulk API vs per-domain calls, for
//!    N running guests (N from VMWATCH_BENCH_GUESTS, default 20; 0 skips).
//!
//! Every loop is bounded in count and time; only loopback is used.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vmwatch::master::panel::PanelCommand;
use vmwatch::master::replay::ReplayGuard;
use vmwatch::master::state::StateTable;
use vmwatch::master::update::PanelState;
use vmwatch::master::update::Update;
use vmwatch::protocol::{decode, encode, Body, DomainId, Event, Header, Message};
use vmwatch::vocab::{Detail, EventKind, State};

const SECRET: &[u8] = b"BENCH0SECRET0123456789";

fn event_msg(seq: u64, i: usize, ts: u64) -> Message {
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
        }]),
    }
}

fn now_ms() -> u64 {
    vmwatch::service::now_ms()
}

/// Section 1: decode + verify + replay check + apply, per message.
fn pipeline(out: &mut String) {
    const N: usize = 20_000;
    let ts = now_ms();
    let good: Vec<[Vec<u8>; 2]> = (0..N)
        .map(|i| encode(SECRET, &event_msg(i as u64 + 1, i, ts)))
        .collect();
    let forged: Vec<[Vec<u8>; 2]> = (0..N)
        .map(|i| encode(b"WRONG-SECRET", &event_msg(i as u64 + 1, i, ts)))
        .collect();
    let mut good_ns = Vec::new();
    let mut bad_ns = Vec::new();
    for _round in 0..3 {
        let mut guard = ReplayGuard::new(300);
        let mut table = StateTable::new(true, 90);
        let t = Instant::now();
        let mut updates = 0;
        for f in &good {
            let m = decode(SECRET, f.as_ref()).expect("valid");
            guard.check(&m.header, ts).expect("fresh");
            updates += table.apply(&m, ts).len();
        }
        good_ns.push(t.elapsed().as_nanos() as f64 / N as f64);
        assert!(updates > 0);
        let t = Instant::now();
        let mut rejected = 0;
        for f in &forged {
            if decode(SECRET, f.as_ref()).is_err() {
                rejected += 1;
            }
        }
        bad_ns.push(t.elapsed().as_nanos() as f64 / N as f64);
        assert_eq!(rejected, N);
    }
    let g = median(&mut good_ns);
    let b = median(&mut bad_ns);
    out.push_str(&format!(
        "| master pipeline, accepted event message | {:.1} µs/msg ({:.0} msg/s) |\n\
         | master pipeline, forged message (bad MAC) | {:.1} µs/msg ({:.0} msg/s); {:.2}× the cost of an accepted one |\n",
        g / 1000.0,
        1e9 / g,
        b / 1000.0,
        1e9 / b,
        b / g
    ));
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Section 2: 500 updates through the real panel-call code.
fn panel_batching(out: &mut String, dir: &Path) {
    let script = dir.join("panel.sh");
    std::fs::write(&script, "#!/bin/sh\ncat >/dev/null\n").unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let cmd = PanelCommand {
        argv: vec![script.display().to_string()],
        timeout: Duration::from_secs(30),
    };
    let updates: Vec<Update> = (0..500)
        .map(|i| Update::Domain {
            node: "1".into(),
            uuid: format!("00000000-0000-4000-8000-{i:012x}"),
            name: format!("vm-{i}"),
            state: PanelState::Is(State::Running),
            reason: "booted".into(),
            old: None,
            since_ms: 1,
        })
        .collect();
    let mut batched = Vec::new();
    let mut single = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        for chunk in updates.chunks(500) {
            cmd.call(chunk, None).result.unwrap();
        }
        batched.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for u in &updates {
            cmd.call(std::slice::from_ref(u), None).result.unwrap();
        }
        single.push(t.elapsed().as_secs_f64());
    }
    let b = median(&mut batched);
    let s = median(&mut single);
    out.push_str(&format!(
        "| 500-update burst to the panel, batched (panel_batch=500) | 1 invocation, {:.1} ms |\n\
         | 500-update burst to the panel, one call per update | 500 invocations, {:.0} ms; batching is {:.0}× faster |\n",
        b * 1000.0,
        s * 1000.0,
        s / b
    ));
}

fn bin(name: &str) -> PathBuf {
    let release = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/release")
        .join(name);
    if release.exists() {
        release
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/debug")
            .join(name)
    }
}

/// VmRSS and VmHWM of a process, in KiB.
fn memory(pid: u32) -> (u64, u64) {
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

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the release master on a free loopback port, its files named
/// `TAG.*` in `dir` and a panel command that appends every batch to
/// `TAG.panel`; returns once it listens.
fn start_master(dir: &Path, tag: &str) -> (Killed, u16, PathBuf) {
    let port = free_port();
    let conf = dir.join(format!("{tag}.conf"));
    let panel_out = dir.join(format!("{tag}.panel"));
    let script = dir.join(format!("{tag}.sh"));
    let log = dir.join(format!("{tag}.log"));
    std::fs::write(
        &script,
        format!("#!/bin/sh\ncat >> {}\n", panel_out.display()),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
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

/// Section 3: the real master over loopback: N messages, then a marker
/// event; timed until the marker reaches the panel command's output.
fn master_end_to_end(out: &mut String, dir: &Path) {
    const N: u64 = 20_000;
    let (master, port, panel_out) = start_master(dir, "m");
    let ctx = zmq::Context::new();
    let push = ctx.socket(zmq::PUSH).unwrap();
    push.set_sndhwm(0).unwrap();
    push.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    let ts = now_ms();
    let mut frames: Vec<[Vec<u8>; 2]> = (0..N)
        .map(|i| encode(SECRET, &event_msg(i + 1, i as usize, ts)))
        .collect();
    let mut marker = event_msg(N + 1, 0, ts);
    if let Body::Events(evs) = &mut marker.body {
        evs[0].domain.uuid = "ffffffff-ffff-4fff-8fff-ffffffffffff".into();
        evs[0].domain.name = "marker".into();
    }
    frames.push(encode(SECRET, &marker));
    let t = Instant::now();
    for f in frames {
        push.send_multipart(f, 0).unwrap();
    }
    let sent = t.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(120);
    let arrived = loop {
        let text = std::fs::read_to_string(&panel_out).unwrap_or_default();
        if text.contains("name=marker") {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let secs = t.elapsed().as_secs_f64();
    let (rss, hwm) = memory(master.0.id());
    let lines = std::fs::read_to_string(&panel_out)
        .unwrap_or_default()
        .lines()
        .count();
    out.push_str(&format!(
        "| real master over loopback: {N} event messages (500 domains) then a marker, until the marker reached the panel | {} in {:.2} s ({:.0} msg/s; sending took {:.2} s); the panel got {lines} coalesced lines, not {N} |\n\
         | master memory after that run | VmRSS {} KiB, peak VmHWM {} KiB |\n",
        if arrived { "delivered" } else { "NOT delivered" },
        secs,
        (N + 1) as f64 / secs,
        sent,
        rss,
        hwm
    ));
    drop(master);
}

/// Section 3b: a flood of a million hostile frames (unsigned garbage, wrong
/// frame counts, forged MACs) against the real master, while a valid node
/// sends an event every 50 ms: the master's memory before, during (peak of
/// samples) and after, and how many valid events reached the panel.
fn flood(out: &mut String, dir: &Path) {
    const HOSTILE: u64 = 1_000_000;
    let (master, port, panel_out) = start_master(dir, "f");
    let pid = master.0.id();
    let (before, _) = memory(pid);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The valid node: one event every 50 ms while the flood runs.
    let valid = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let ctx = zmq::Context::new();
            let push = ctx.socket(zmq::PUSH).unwrap();
            push.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && sent < 2_000 {
                sent += 1;
                let mut m = event_msg(sent, 0, now_ms());
                m.header.node = "valid".into();
                if let Body::Events(evs) = &mut m.body {
                    evs[0].domain.uuid = format!("eeeeeeee-0000-4000-8000-{sent:012x}");
                    evs[0].domain.name = format!("valid-{sent}");
                    evs[0].event = EventKind::Started;
                    evs[0].detail = Detail::from_code(2, 0);
                }
                push.send_multipart(encode(SECRET, &m), 0).unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
            sent
        })
    };
    let ctx = zmq::Context::new();
    let push = ctx.socket(zmq::PUSH).unwrap();
    push.set_sndhwm(10_000).unwrap();
    push.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    let t = Instant::now();
    let limit = Duration::from_secs(180);
    let mut peak = before;
    let mut sent = 0u64;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while sent < HOSTILE && t.elapsed() < limit {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let garbage = x.to_le_bytes().repeat(1 + (x % 16) as usize);
        let frames: Vec<Vec<u8>> = match sent % 3 {
            0 => vec![garbage, vec![b'0'; 64]],
            1 => vec![garbage],
            _ => vec![
                b"vmwatch/1 heartbeat node=x\n".to_vec(),
                garbage,
                vec![b'f'; 64],
            ],
        };
        push.send_multipart(frames, 0).unwrap();
        sent += 1;
        if sent.is_multiple_of(50_000) {
            peak = peak.max(memory(pid).0);
        }
    }
    let flood_secs = t.elapsed().as_secs_f64();
    // Let the master drain what ZeroMQ still holds, then stop the node.
    let drained = Instant::now() + Duration::from_secs(60);
    let state = dir.join("f.state");
    let rejected = || -> u64 {
        std::fs::read_to_string(&state)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("counter rejected."))
            .filter_map(|l| l.split(' ').nth(1)?.parse::<u64>().ok())
            .sum()
    };
    while rejected() < sent && Instant::now() < drained {
        peak = peak.max(memory(pid).0);
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let valid_sent = valid.join().unwrap();
    let delivered_by = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let text = std::fs::read_to_string(&panel_out).unwrap_or_default();
        let n = text.lines().filter(|l| l.contains("name=valid-")).count() as u64;
        if n >= valid_sent || Instant::now() > delivered_by {
            break n;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (after, hwm) = memory(pid);
    out.push_str(&format!(
        "| real master flooded with {sent} hostile frames ({:.0}/s over {flood_secs:.1} s; {} counted as rejected) while a valid node sent {valid_sent} events | valid events at the panel: {got} of {valid_sent}; VmRSS before {before} KiB, peak sampled {peak} KiB, after {after} KiB (VmHWM {hwm} KiB) |\n",
        sent as f64 / flood_secs,
        rejected(),
    ));
    drop(master);
}

/// Section 4: the real node's memory.
fn node_memory(out: &mut String, dir: &Path) {
    for (uri, label) in [
        ("test:///default", "in-process test driver"),
        ("qemu:///system", "real libvirtd"),
    ] {
        if uri.starts_with("qemu") && !Path::new("/var/run/libvirt/libvirt-sock").exists() {
            continue;
        }
        let conf = dir.join("n.conf");
        std::fs::write(
            &conf,
            format!(
                "connect=tcp://127.0.0.1:{}\nsecret={}\nnode_id=bench\nuri={uri}\nlog={}\nsyslog=no\nstats_interval=1\n",
                free_port(),
                String::from_utf8_lossy(SECRET),
                dir.join("n.log").display()
            ),
        )
        .unwrap();
        let node = Killed(
            Command::new(bin("vmwatch-node"))
                .args(["-f", "-c"])
                .arg(&conf)
                .arg("-p")
                .arg(dir.join("n.pid"))
                .stderr(Stdio::null())
                .spawn()
                .expect("node starts"),
        );
        std::thread::sleep(Duration::from_secs(3));
        let (rss, hwm) = memory(node.0.id());
        out.push_str(&format!(
            "| node memory, {label}, 3 s after start (stats every 1 s) | VmRSS {rss} KiB, peak VmHWM {hwm} KiB |\n"
        ));
    }
}

fn virsh(args: &[&str]) -> bool {
    Command::new("virsh")
        .args(["-q", "-c", "qemu:///system"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

struct Guests(Vec<String>);
impl Drop for Guests {
    fn drop(&mut self) {
        for g in &self.0 {
            virsh(&["destroy", g]);
            virsh(&["undefine", g]);
        }
    }
}

/// Section 5: bulk vs per-domain stats on the real libvirtd.
fn stats_sampling(out: &mut String, dir: &Path) {
    let n: usize = std::env::var("VMWATCH_BENCH_GUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    if n == 0 || !Path::new("/var/run/libvirt/libvirt-sock").exists() {
        out.push_str("| stats sampling | skipped (no libvirtd or VMWATCH_BENCH_GUESTS=0) |\n");
        return;
    }
    // TCG, not KVM: on this machine an OS-less KVM guest spins at ~9% of a
    // core against ~1% under TCG, and 20 of them would measure the CPU
    // contention rather than libvirt.
    let kind = std::env::var("VMWATCH_BENCH_DOMTYPE").unwrap_or_else(|_| "qemu".into());
    let mut guests = Guests(Vec::new());
    for i in 0..n {
        let name = format!("vmwatch-bench-{}-{i}", std::process::id());
        let disk = dir.join(format!("{name}.raw"));
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        let xml = dir.join(format!("{name}.xml"));
        let mut f = std::fs::File::create(&xml).unwrap();
        write!(
            f,
            "<domain type='{kind}'><name>{name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type></os><devices>\
             <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'/><target dev='vda' bus='virtio'/></disk>\
             <interface type='ethernet'><model type='virtio'/></interface></devices></domain>",
            disk.display()
        )
        .unwrap();
        if virsh(&["create", xml.to_str().unwrap()]) {
            guests.0.push(name);
        }
    }
    // Let the guests finish starting: QEMU's monitor is busy meanwhile.
    std::thread::sleep(Duration::from_secs(5));
    vmwatch::node::libvirt::silence_default_errors();
    let conn = virt::connect::Connect::open(Some("qemu:///system")).expect("libvirtd answers");
    let bulk = vmwatch::node::sample::choose(&conn, false);
    let legacy = vmwatch::node::sample::Api::Legacy;
    let (mut tb, mut tl) = (Vec::new(), Vec::new());
    let mut seen = (0, 0);
    for _ in 0..7 {
        let t = Instant::now();
        seen.0 = vmwatch::node::sample::read(&conn, bulk).unwrap().len();
        tb.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        seen.1 = vmwatch::node::sample::read(&conn, legacy).unwrap().len();
        tl.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (b, l) = (median(&mut tb), median(&mut tl));
    out.push_str(&format!(
        "| stats sample of {} running guests, {bulk:?} | {b:.1} ms |\n\
         | stats sample of {} running guests, per-domain calls (CentOS 6 path) | {l:.1} ms; bulk/per-domain time ratio {:.2} |\n",
        seen.0,
        seen.1,
        b / l
    ));
}

fn main() {
    let dir = std::env::temp_dir().join(format!("vmwatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut sections: BTreeMap<u8, String> = BTreeMap::new();
    let only = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let run = |n: &str| only.as_deref().is_none_or(|o| o == n);
    let mut s = String::new();
    if run("pipeline") {
        pipeline(&mut s);
    }
    sections.insert(1, std::mem::take(&mut s));
    if run("panel") {
        panel_batching(&mut s, &dir);
    }
    sections.insert(2, std::mem::take(&mut s));
    if run("master") {
        master_end_to_end(&mut s, &dir);
    }
    if run("flood") {
        flood(&mut s, &dir);
    }
    sections.insert(3, std::mem::take(&mut s));
    if run("node") {
        node_memory(&mut s, &dir);
    }
    sections.insert(4, std::mem::take(&mut s));
    if run("stats") {
        stats_sampling(&mut s, &dir);
    }
    sections.insert(5, s);
    println!("| what | measured |\n|---|---|");
    for text in sections.values() {
        print!("{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
