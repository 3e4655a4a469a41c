//! Section: stats sampling on the real libvirtd, bulk API vs per-domain calls.
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{median, virsh, Guests};
use crate::Run;

/// Section 5: bulk vs per-domain stats on the real libvirtd.
pub fn stats_sampling(run: &Run, out: &mut String) {
    let dir = run.dir.as_path();
    let n: usize = std::env::var("VMWATCH_BENCH_GUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(run.count(20, 2) as usize);
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
