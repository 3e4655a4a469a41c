//! The bench's real guests on the machine's libvirtd (`qemu:///system`).
//!
//! Transient TCG guests named `vmwatch-bench-<pid>-<i>`: 16 MiB of RAM, one
//! sparse raw disk and one tap interface on virtio (so stats have block and
//! net counters to read), and the test firmware (tests/support/firmware.rs)
//! instead of SeaBIOS. The firmware is up in milliseconds and then sleeps in
//! `hlt`; an OS-less SeaBIOS guest would instead retry its boot and reset
//! every minute, and each reset is a libvirt REBOOT event, which would make
//! an idle measurement anything but idle. TCG, not KVM: on this machine an
//! OS-less KVM guest spins at ~9% of a core against ~1% under TCG.
//! `VMWATCH_BENCH_DOMTYPE=kvm` picks KVM anyway.
//!
//! Leftovers of an earlier, crashed run (any `vmwatch-bench-*` domain) are
//! destroyed before new guests start; dropping [`Guests`] destroys them.
use std::path::Path;
use std::time::Instant;

use virt::connect::Connect;
use virt::domain::Domain;

#[path = "../../tests/support/firmware.rs"]
mod firmware;

/// Where the guests live: the machine's libvirtd, or `VMWATCH_BENCH_URI`
/// (e.g. `qemu:///session` as an ordinary user, whose guests get no network
/// interface: an unprivileged libvirtd cannot make taps).
pub fn uri() -> String {
    std::env::var("VMWATCH_BENCH_URI").unwrap_or_else(|_| "qemu:///system".into())
}
/// What every bench guest's name starts with.
pub const PREFIX: &str = "vmwatch-bench-";
/// A guest's RAM; QEMU itself adds about 40 MiB of its own under TCG.
const GUEST_MIB: u64 = 16;
/// What one guest is budgeted on the host, to decide how many fit.
const HOST_MIB_PER_GUEST: u64 = 80;

/// Whether there is a libvirtd to start guests on.
pub fn libvirtd_present() -> bool {
    uri() != "qemu:///system" || Path::new("/var/run/libvirt/libvirt-sock").exists()
}

/// Running guests, destroyed on drop.
pub struct Guests {
    pub conn: Connect,
    /// Each guest's name and domain.
    pub domains: Vec<(String, Domain)>,
    /// How long starting them took, in seconds.
    pub start_secs: f64,
    /// Asked for, when fewer fitted in memory.
    pub wanted: usize,
    /// Running domains on the same libvirtd that are not the bench's.
    pub foreign: usize,
}

/// MemAvailable in MiB.
fn mem_available_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib / 1024)
        .unwrap_or(0)
}

/// Destroys (and undefines, if persistent) every `vmwatch-bench-*` domain:
/// what an earlier run left when it crashed.
pub fn remove_leftovers(conn: &Connect) -> usize {
    let mut removed = 0;
    for dom in conn.list_all_domains(0).unwrap_or_default() {
        let Ok(name) = dom.name() else { continue };
        if !name.starts_with(PREFIX) {
            continue;
        }
        if dom.is_active().unwrap_or(false) {
            let _ = dom.destroy();
        }
        if dom.is_persistent().unwrap_or(false) {
            let _ = dom.undefine();
        }
        removed += 1;
    }
    removed
}

/// Whether this process runs as root (and can give guests a tap).
fn privileged() -> bool {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() == 0 }
}

fn xml(name: &str, kind: &str, dir: &Path, rom: &Path) -> String {
    let disk = dir.join(format!("{name}.raw"));
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(16 << 20))
        .unwrap_or_else(|e| panic!("bench: cannot create {}: {e}", disk.display()));
    format!(
        "<domain type='{kind}'><name>{name}</name><memory unit='MiB'>{GUEST_MIB}</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type><loader type='rom'>{}</loader></os><devices>\
         <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'/><target dev='vda' bus='virtio'/></disk>\
         {}<controller type='usb' model='none'/><memballoon model='none'/></devices></domain>",
        rom.display(),
        disk.display(),
        if privileged() {
            "<interface type='ethernet'><model type='virtio'/></interface>"
        } else {
            ""
        }
    )
}

impl Guests {
    /// Starts `wanted` guests (fewer if they would not fit in half of the
    /// available memory), two at a time.
    pub fn start(dir: &Path, wanted: usize) -> Guests {
        vmwatch::node::libvirt::silence_default_errors();
        let uri = uri();
        let conn = Connect::open(Some(&uri))
            .unwrap_or_else(|e| panic!("bench: cannot connect to {uri}: {e} (run make setup)"));
        let left = remove_leftovers(&conn);
        if left > 0 {
            eprintln!("bench: removed {left} guests an earlier run left behind");
        }
        let fit = (mem_available_mib() / 2 / HOST_MIB_PER_GUEST) as usize;
        let n = wanted.min(fit);
        let rom = dir.join("guest-firmware.rom");
        std::fs::write(&rom, firmware::firmware_rom()).unwrap();
        let kind = std::env::var("VMWATCH_BENCH_DOMTYPE").unwrap_or_else(|_| "qemu".into());
        let pid = std::process::id();
        let t = Instant::now();
        // Two starters (the machine has two cores), each on its own
        // connection; a guest that fails to start is reported, not fatal.
        let names: Vec<String> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..2)
                .map(|w| {
                    let (kind, rom, uri) = (&kind, &rom, &uri);
                    s.spawn(move || {
                        let c = Connect::open(Some(uri)).expect("libvirtd answers");
                        let mut started = Vec::new();
                        for i in (w..n).step_by(2) {
                            let name = format!("{PREFIX}{pid}-{i}");
                            match c.create_domain_xml(&xml(&name, kind, dir, rom), 0) {
                                Ok(_) => started.push(name),
                                Err(e) => eprintln!("bench: guest {name} did not start: {e}"),
                            }
                        }
                        started
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("a starter thread"))
                .collect()
        });
        let start_secs = t.elapsed().as_secs_f64();
        eprintln!(
            "bench: {} of {n} guests started in {start_secs:.1} s",
            names.len()
        );
        let mut domains: Vec<(String, Domain)> = names
            .into_iter()
            .filter_map(|n| conn.lookup_domain_by_name(&n).ok().map(|d| (n, d)))
            .collect();
        domains.sort_by_key(|(n, _)| {
            n.rsplit('-')
                .next()
                .and_then(|i| i.parse::<usize>().ok())
                .unwrap_or(0)
        });
        let prefix = format!("{PREFIX}{pid}-");
        let foreign = conn
            .list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            .unwrap_or_default()
            .iter()
            .filter(|d| !d.name().unwrap_or_default().starts_with(&prefix))
            .count();
        Guests {
            conn,
            domains,
            start_secs,
            wanted,
            foreign,
        }
    }

    /// What the names of this run's guests start with.
    pub fn prefix(&self) -> String {
        format!("{PREFIX}{}-", std::process::id())
    }

    pub fn len(&self) -> usize {
        self.domains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }
}

/// Destroying a guest is mostly waiting (libvirt gives QEMU about a second
/// to exit after SIGTERM), so guests are destroyed this many at a time.
const DESTROYERS: usize = 10;

impl Drop for Guests {
    fn drop(&mut self) {
        let t = Instant::now();
        let per = self.domains.len().div_ceil(DESTROYERS).max(1);
        std::thread::scope(|s| {
            for chunk in self.domains.chunks(per) {
                s.spawn(move || {
                    for (_, d) in chunk {
                        let _ = d.destroy();
                    }
                });
            }
        });
        eprintln!(
            "bench: {} guests destroyed in {:.1} s",
            self.domains.len(),
            t.elapsed().as_secs_f64()
        );
    }
}
