//! Section: the real node's memory after start.
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{bin, free_port, memory, Killed, SECRET};
use crate::Run;

/// Section 4: the real node's memory.
pub fn node_memory(run: &Run, out: &mut String) {
    let dir = run.dir.as_path();
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
