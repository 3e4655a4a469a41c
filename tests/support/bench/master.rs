//! Sections: the real master over loopback (throughput, memory) and under
//! a flood of hostile frames.
use std::time::{Duration, Instant};

use vmwatch::protocol::{encode, Body};
use vmwatch::vocab::{Detail, EventKind};

use crate::common::{event_msg, memory, now_ms, start_master, SECRET};
use crate::Run;

/// A fresh handshake credential (docs/protocol.md, "Handshake").
fn credential(node: &str) -> vmwatch::handshake::Credential {
    vmwatch::handshake::Credential::fresh(&vmwatch::protocol::MacKey::new(SECRET), node)
}

/// Section 3: the real master over loopback: N messages, then a marker
/// event; timed until the marker reaches the panel command's output.
pub fn master_end_to_end(run: &Run, out: &mut String) {
    let dir = run.dir.as_path();
    let n = run.count(20_000, 500);
    let (master, port, panel_out) = start_master(dir, "m");
    let ctx = zmq::Context::new();
    let push = ctx.socket(zmq::PUSH).unwrap();
    credential("bench").set_on(&push).unwrap();
    push.set_sndhwm(0).unwrap();
    push.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    let ts = now_ms();
    let mut frames: Vec<[Vec<u8>; 2]> = (0..n)
        .map(|i| encode(SECRET, &event_msg(i + 1, i as usize, ts)))
        .collect();
    let mut marker = event_msg(n + 1, 0, ts);
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
        "| real master over loopback: {n} event messages (500 domains) then a marker, until the marker reached the panel | {} in {:.2} s ({:.0} msg/s; sending took {:.2} s); the panel got {lines} coalesced lines, not {n} |\n\
         | master memory after that run | VmRSS {} KiB, peak VmHWM {} KiB |\n",
        if arrived { "delivered" } else { "NOT delivered" },
        secs,
        (n + 1) as f64 / secs,
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
pub fn flood(run: &Run, out: &mut String) {
    let dir = run.dir.as_path();
    let hostile = run.count(1_000_000, 5_000);
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
            credential("valid").set_on(&push).unwrap();
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
    credential("bench").set_on(&push).unwrap();
    push.set_sndhwm(10_000).unwrap();
    push.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    let t = Instant::now();
    let limit = Duration::from_secs(180);
    let mut peak = before;
    let mut sent = 0u64;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while sent < hostile && t.elapsed() < limit {
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
