//! Graphite export against a real carbon-cache (Debian's graphite-carbon),
//! read back from its whisper files with python3-whisper (issue 9, item 5).
//!
//! carbon-cache runs as this test's child on a free loopback port with its
//! own configuration and storage under the test directory (one-second
//! resolution, so timestamps can be checked exactly). The master is fed by
//! hand-signed messages from `Client`; no libvirt is involved. The story:
//! stats and state counts land with the right values and timestamps under
//! escaped names; carbon is stopped, the master keeps serving the panel, its
//! buffer overflows and drops the oldest lines; carbon comes back and the
//! most recent lines arrive; a silent node is exported as down.
//!
//! graphite-carbon and python3-whisper come from `make setup`
//! (tests/support/setup-nagios.sh); every wait is bounded and polls.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use vmwatch::protocol::{encode, Body, DomainId, Message, StatSample};

/// How long carbon may take to start, or to write what it received.
const CARBON_DEADLINE: Duration = Duration::from_secs(60);
const PREFIX: &str = "vmw.test";

/// A carbon-cache of our own.
struct Carbon {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    starts: u32,
}

impl Carbon {
    fn new(dir: &TestDir) -> Carbon {
        let root = dir.join("carbon");
        for d in ["conf", "storage/whisper", "storage/lists", "log", "run"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let port = free_port();
        let (pickle, query) = (free_port(), free_port());
        let r = root.display();
        std::fs::write(
            root.join("conf/carbon.conf"),
            format!(
                "[cache]\nSTORAGE_DIR = {r}/storage/\nLOCAL_DATA_DIR = {r}/storage/whisper/\n\
                 WHITELISTS_DIR = {r}/storage/lists/\nCONF_DIR = {r}/conf/\nLOG_DIR = {r}/log/\n\
                 PID_DIR = {r}/run/\nDATABASE = whisper\nENABLE_TAGS = False\n\
                 MAX_CACHE_SIZE = inf\nMAX_UPDATES_PER_SECOND = inf\nMAX_CREATES_PER_MINUTE = inf\n\
                 LINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {port}\n\
                 ENABLE_UDP_LISTENER = False\nPICKLE_RECEIVER_INTERFACE = 127.0.0.1\n\
                 PICKLE_RECEIVER_PORT = {pickle}\nCACHE_QUERY_INTERFACE = 127.0.0.1\n\
                 CACHE_QUERY_PORT = {query}\nLOG_LISTENER_CONNECTIONS = True\n"
            ),
        )
        .unwrap();
        // One point per second for a day: every timestamp is kept as sent.
        std::fs::write(
            root.join("conf/storage-schemas.conf"),
            "[all]\npattern = .*\nretentions = 1s:1d\n",
        )
        .unwrap();
        Carbon {
            dir: root,
            port,
            child: None,
            starts: 0,
        }
    }

    fn start(&mut self) {
        // A pidfile left by the previous run would make carbon refuse to start.
        let _ = std::fs::remove_file(self.dir.join("run/carbon-cache-a.pid"));
        self.starts += 1;
        let out =
            std::fs::File::create(self.dir.join(format!("log/console.{}", self.starts))).unwrap();
        let child = Command::new("/usr/bin/carbon-cache")
            .arg(format!(
                "--config={}",
                self.dir.join("conf/carbon.conf").display()
            ))
            .args(["--nodaemon", "start"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("run /usr/bin/carbon-cache");
        self.child = Some(child);
        let port = self.port;
        wait_for(
            "carbon-cache listening",
            CARBON_DEADLINE,
            || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
            || self.report(),
        );
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc::SIGTERM);
            let deadline = Instant::now() + CARBON_DEADLINE;
            while c.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "carbon-cache ignores SIGTERM");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn report(&self) -> String {
        format!(
            "--- carbon console (last start):\n{}",
            tail(&self.dir.join(format!("log/console.{}", self.starts)), 20)
        )
    }

    /// The whisper file of a metric path.
    fn wsp(&self, metric: &str) -> PathBuf {
        self.dir
            .join("storage/whisper")
            .join(format!("{}.wsp", metric.replace('.', "/")))
    }
}

impl Drop for Carbon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every stored (timestamp, value) of a whisper file, read with python3-whisper.
fn points(file: &Path) -> Vec<(u64, f64)> {
    if !file.exists() {
        return Vec::new();
    }
    let script = "import sys, whisper\n\
                  (start, end, step), values = whisper.fetch(sys.argv[1], 0)\n\
                  for i, v in enumerate(values):\n    \
                      if v is not None: print(start + i * step, v)\n";
    // Debian's python3: python3-whisper is installed for it, not for another one on PATH.
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(file)
        .output()
        .expect("run /usr/bin/python3");
    assert!(
        out.status.success(),
        "whisper.fetch {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (t, v) = l.split_once(' ').unwrap();
            (t.parse().unwrap(), v.parse().unwrap())
        })
        .collect()
}

fn sample(uuid: &str, name: &str, whole: bool, tx: u64, wr: u64) -> StatSample {
    StatSample {
        domain: DomainId {
            uuid: uuid.to_string(),
            name: name.to_string(),
        },
        whole,
        tx_pkts: tx,
        wr_reqs: wr,
    }
}

/// Sends a stats message signed at `ts` seconds (the node's clock).
fn send_stats(node: &mut Client, ts: u64, samples: Vec<StatSample>) {
    let mut header = node.header();
    header.ts_ms = ts * 1000 + 250;
    let body = Body::Stats {
        interval_ms: 60_000,
        samples,
    };
    node.send_frames(&encode(&node.secret, &Message { header, body }));
}

#[test]
#[ignore = "needs graphite-carbon and python3-whisper (tests/support/setup-nagios.sh): make test"]
fn stats_and_state_counts_reach_a_real_carbon_and_survive_its_outage() {
    crate::common::ops::require_tools();
    let dir = TestDir::new("graphite");
    let panel = Panel::new(&dir);
    let mut carbon = Carbon::new(&dir);
    carbon.start();
    let extra = format!(
        "graphite=tcp://127.0.0.1:{}\ngraphite_prefix={PREFIX}\ngraphite_interval=2\n\
         graphite_buffer=300\nnode_timeout=4\n",
        carbon.port
    );
    let (mut master, port) = start_master(&dir, &panel, &extra);
    // What a failure shows: the master's log, the panel's input, carbon's console.
    macro_rules! ctx {
        () => {
            || format!("{}{}", report(&[&master], Some(&panel)), carbon.report())
        };
    }
    let mut node = Client::connect(port, SECRET, "n1");
    // Keeps n1 up while the test waits: a heartbeat at most every 0.5 s.
    let mut last_beat = Instant::now();
    let mut beat = |node: &mut Client| {
        if last_beat.elapsed() >= Duration::from_millis(500) {
            node.send(Body::Heartbeat);
            last_beat = Instant::now();
        }
    };

    // A VM name with a space, a slash, a glob character and UTF-8.
    let odd = "web 1/ü*";
    let odd_path = "web~201~2F~C3~BC~2A";
    let [web, db, off, early, filler, late] = std::array::from_fn(|_| test_uuid());
    node.send(Body::Snapshot {
        id: 1,
        part: 1,
        parts: 1,
        domains: vec![
            domain_state(&web, odd, "running", "booted"),
            domain_state(&db, "db", "running", "booted"),
            domain_state(&off, "off", "shutoff", "destroyed"),
        ],
    });
    let t0 = now_ms() / 1000;
    let (t1, t2) = (t0 - 60, t0 - 50);
    send_stats(
        &mut node,
        t1,
        vec![
            sample(&web, odd, true, 11, 22),
            sample(&db, "db", true, 33, 44),
            sample(&off, "off", false, 5, 5),
        ],
    );
    send_stats(&mut node, t2, vec![sample(&web, odd, true, 12, 23)]);

    let dom = |name: &str, what: &str| format!("{PREFIX}.nodes.n1.domains.{name}.{what}");
    let tx = carbon.wsp(&dom(odd_path, "tx_pkts"));
    let got = wait_for(
        "both samples of the oddly named VM in whisper",
        CARBON_DEADLINE,
        || {
            beat(&mut node);
            let p = points(&tx);
            (p.len() >= 2).then_some(p)
        },
        ctx!(),
    );
    assert_eq!(got, vec![(t1, 11.0), (t2, 12.0)], "{}", tx.display());
    println!("whisper {}:", tx.display());
    for (t, v) in &got {
        println!("  {t} {v}");
    }
    let wr = carbon.wsp(&dom(odd_path, "wr_reqs"));
    let db_wr = carbon.wsp(&dom("db", "wr_reqs"));
    wait_for(
        "the other sampled series",
        CARBON_DEADLINE,
        || {
            beat(&mut node);
            (points(&wr) == vec![(t1, 22.0), (t2, 23.0)] && points(&db_wr) == vec![(t1, 44.0)])
                .then_some(())
        },
        || format!("{:?} {:?}\n{}", points(&wr), points(&db_wr), ctx!()()),
    );
    // A sample over a partial interval is not exported.
    assert!(!carbon.wsp(&dom("off", "tx_pkts")).exists());

    // State counts and node up, sampled on the master's clock.
    let root = carbon.dir.join("storage/whisper");
    let gauge = |m: &str| {
        root.join(
            format!("{PREFIX}.{m}.wsp")
                .replace('.', "/")
                .replace("/wsp", ".wsp"),
        )
    };
    let last = |m: &str| points(&gauge(m)).last().copied();
    let (running, shutoff, up) = wait_for(
        "node and state-count series",
        CARBON_DEADLINE,
        || {
            beat(&mut node);
            let r = last("nodes.n1.states.running")?;
            let s = last("nodes.n1.states.shutoff")?;
            let u = last("nodes.n1.up")?;
            let c = last("cluster.states.running")?;
            let p = last("nodes.n1.states.paused")?;
            let nu = last("cluster.nodes_up")?;
            (r.1 == 2.0 && s.1 == 1.0 && u.1 == 1.0 && c.1 == 2.0 && p.1 == 0.0 && nu.1 == 1.0)
                .then_some((r, s, u))
        },
        ctx!(),
    );
    let now = now_ms() / 1000;
    for (t, _) in [running, shutoff, up] {
        assert!(
            t >= t0 - 2 && t <= now,
            "summary timestamp {t} not within [{t0}, {now}]"
        );
    }

    // Carbon goes away. The master notices, keeps serving, and buffers.
    carbon.stop();
    master.wait_log("lost connection to graphite", DAEMON_DEADLINE);
    // Whisper refuses points from the future: every timestamp here is past.
    let base = now_ms() / 1000 - 280;
    send_stats(&mut node, base, vec![sample(&early, "early", true, 1, 1)]);
    // 200 messages, 400 lines: more than the 300-line buffer holds.
    for i in 1..=200u64 {
        send_stats(
            &mut node,
            base + i,
            vec![sample(&filler, "filler", true, i, i)],
        );
    }
    send_stats(
        &mut node,
        base + 201,
        vec![sample(&late, "late", true, 7, 8)],
    );
    // The panel still hears of changes at once.
    node.send(Body::Events(vec![event(&db, "db", "suspended", "paused")]));
    wait_for(
        "the panel told of db's pause while carbon is down",
        PANEL_DEADLINE,
        || {
            beat(&mut node);
            panel
                .domain_lines(&db)
                .iter()
                .any(|l| l.field("state") == "paused")
                .then_some(())
        },
        ctx!(),
    );
    master.wait_log("graphite buffer full (300 lines)", DAEMON_DEADLINE);
    let full = master.log_lines("graphite buffer full");
    println!("master log: {}", full[0]);

    // Carbon is back: the buffered, most recent lines arrive.
    carbon.start();
    let late_tx = carbon.wsp(&dom("late", "tx_pkts"));
    let filler_tx = carbon.wsp(&dom("filler", "tx_pkts"));
    let kept = wait_for(
        "the buffered lines after carbon's restart",
        CARBON_DEADLINE,
        || {
            beat(&mut node);
            let f = points(&filler_tx);
            (points(&late_tx) == vec![(base + 201, 7.0)] && f.last() == Some(&(base + 200, 200.0)))
                .then_some(f)
        },
        || format!("filler: {:?}\n{}", points(&filler_tx), ctx!()()),
    );
    // Oldest first: the start of the outage is gone, the rest is whole.
    assert!(
        !carbon.wsp(&dom("early", "tx_pkts")).exists(),
        "the oldest line survived"
    );
    let first = kept[0].1 as u64;
    assert!(first > 1, "nothing of the filler was dropped: {kept:?}");
    let expect: Vec<(u64, f64)> = (first..=200).map(|i| (base + i, i as f64)).collect();
    assert_eq!(
        kept, expect,
        "the kept filler is not the newest, unbroken run"
    );
    println!(
        "after the outage: filler values {first}..200 kept, 1..{} dropped",
        first - 1
    );
    let dropped = gauge("master.graphite.dropped_lines");
    wait_for(
        "the dropped-lines counter exported",
        CARBON_DEADLINE,
        || {
            beat(&mut node);
            points(&dropped).iter().any(|p| p.1 > 0.0).then_some(())
        },
        ctx!(),
    );

    // n1 falls silent: it is exported as down.
    let down_since = now_ms() / 1000;
    wait_for(
        "n1 exported as down",
        CARBON_DEADLINE,
        || {
            let p = points(&gauge("nodes.n1.up"));
            let c = points(&gauge("cluster.nodes_down"));
            (p.iter().any(|&(t, v)| t >= down_since && v == 0.0)
                && c.iter().any(|&(t, v)| t >= down_since && v == 1.0))
            .then_some(())
        },
        ctx!(),
    );
    let status = master.stop();
    assert!(
        status.success(),
        "master exit: {status:?}\n{}",
        master.report()
    );
    master.wait_log("graphite export stopped", DAEMON_DEADLINE);
}

#[test]
fn a_carbon_that_never_reads_slows_neither_the_receiver_nor_the_panel() {
    let dir = TestDir::new("graphite-stuck");
    let panel = Panel::new(&dir);
    // Accepts connections and never reads: once the socket buffers are full,
    // every write of the graphite thread blocks until its timeout.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_port = hole.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hole.incoming().take(64) {
            held.push(s);
        }
    });
    let extra = format!(
        "graphite=tcp://127.0.0.1:{hole_port}\ngraphite_interval=1\ngraphite_buffer=1000000\n\
         state_interval=1\n"
    );
    let (mut master, port) = start_master(&dir, &panel, &extra);
    macro_rules! ctx {
        () => {
            || report(&[&master], Some(&panel))
        };
    }
    let mut node = Client::connect(port, SECRET, "n1");
    // 3000 messages of 100 samples: 600 000 lines, far more than the
    // socket buffers take.
    let samples: Vec<StatSample> = (0..100)
        .map(|i| sample(&test_uuid(), &format!("vm{i}"), true, i, 1))
        .collect();
    const N: u64 = 3000;
    for _ in 0..N {
        node.send(Body::Stats {
            interval_ms: 60_000,
            samples: samples.clone(),
        });
    }
    let u = test_uuid();
    node.send(Body::Events(vec![event(&u, "late", "started", "booted")]));
    wait_for(
        "the panel told of the event sent after the flood",
        PANEL_DEADLINE,
        || (!panel.domain_lines(&u).is_empty()).then_some(()),
        ctx!(),
    );
    let state = dir.join("master.state");
    let want = format!("counter accepted {}", N + 1);
    wait_for(
        "every message accepted",
        PANEL_DEADLINE,
        || read_text(&state).lines().any(|l| l == want).then_some(()),
        || format!("want `{want}`\n{}", ctx!()()),
    );
    // The graphite thread really was stuck meanwhile.
    wait_for(
        "the graphite thread giving up a blocked write",
        DAEMON_DEADLINE,
        || (!master.log_lines("lost connection to graphite").is_empty()).then_some(()),
        ctx!(),
    );
    let t = Instant::now();
    let status = master.stop();
    let took = t.elapsed();
    assert!(
        status.success(),
        "master exit: {status:?}\n{}",
        master.report()
    );
    assert!(
        took < Duration::from_secs(8),
        "stopping took {took:?}\n{}",
        master.report()
    );
    let end = master.log_lines("graphite export stopped");
    assert_eq!(end.len(), 1, "{}", master.report());
    println!("{}\nstopped in {took:?}", end[0]);
    let dropped: u64 = end[0]
        .split(" dropped by the receiver")
        .next()
        .and_then(|s| s.rsplit(", ").next())
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no receiver drop count in `{}`", end[0]));
    assert!(dropped > 0, "the receiver never had to drop: {}", end[0]);
}
