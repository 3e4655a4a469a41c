//! A second real libvirtd on this machine, for live migrations between two
//! daemons, and the guests and panel timing the migration tests need.
//!
//! How (docs of the machine: two libvirtds need their own host UUID, and
//! older libvirt compares host names too): a mount + UTS namespace
//! (`unshare --mount --uts --propagation private`) in which /run/libvirt,
//! /var/lib/libvirt, /etc/libvirt, /var/log/libvirt and /var/cache/libvirt
//! are bind-mounted from directories of the test's own, with a libvirtd.conf
//! holding a random `host_uuid`, a qemu.conf of the machine's plus its own
//! migration ports (`cgroup_controllers = [ ]` makes libvirt 9 fail every
//! incoming migration: it is left as it is), then `virtlogd -d` and `libvirtd -d` with pidfiles in that run
//! directory. The network namespace is shared, so both QEMUs reach each
//! other on 127.0.0.1; from outside the daemon is
//! `qemu:///system?socket=DIR/run/libvirt-sock`. The namespace lives as long
//! as a process in it: [`SecondLibvirtd`]'s `Drop` destroys every domain of
//! the daemon, stops both daemons and kills any QEMU left, so nothing stays
//! mounted or running, whether the test passed or not.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::guest::{create_disk, domain_xml, random_uuid, virsh_checked, virsh_within, URI};
use super::{alive, free_port, read_text, signal, wait_for, Panel, TestDir};

/// Deadline for one virsh command (a migration takes longer than the
/// commands of tests/common/guest.rs).
const VIRSH_DEADLINE: Duration = Duration::from_secs(90);

/// `virsh -c URI ARGS` with this file's deadline: its output, or why it
/// could not run.
pub fn virsh_at(uri: &str, args: &[&str]) -> Result<Output, String> {
    virsh_within(uri, args, VIRSH_DEADLINE)
}

/// As [`virsh_at`], failing the test unless virsh succeeds; its stdout.
pub fn virsh_ok(uri: &str, args: &[&str]) -> String {
    virsh_checked(uri, args, VIRSH_DEADLINE)
}

/// The second daemon.
pub struct SecondLibvirtd {
    pub dir: PathBuf,
    pub uri: String,
    pub host_uuid: String,
    /// libvirtd's and virtlogd's pids, read once they run (the directory
    /// may be gone by the time the test drops this).
    daemons: Vec<u32>,
    stopped: bool,
}

/// The directories bind-mounted over the machine's, by their name in `dir`.
const MOUNTS: [(&str, &str); 5] = [
    ("run", "/run/libvirt"),
    ("lib", "/var/lib/libvirt"),
    ("etc", "/etc/libvirt"),
    ("log", "/var/log/libvirt"),
    ("cache", "/var/cache/libvirt"),
];

impl SecondLibvirtd {
    /// Starts it in `test_dir/lvb` and waits until it answers.
    pub fn start(test_dir: &TestDir) -> SecondLibvirtd {
        let dir = test_dir.join("lvb");
        for (name, _) in MOUNTS {
            std::fs::create_dir_all(dir.join(name)).expect("second libvirtd dirs");
        }
        std::fs::create_dir_all(dir.join("etc/qemu")).expect("etc/qemu");
        let host_uuid = random_uuid();
        // Only the machine's qemu.conf: its /etc/libvirt/qemu holds the
        // system daemon's guests, which must not appear here.
        let qemu_conf = std::fs::read_to_string("/etc/libvirt/qemu.conf").unwrap_or_default();
        let port = free_port();
        std::fs::write(
            dir.join("etc/qemu.conf"),
            format!(
                "{qemu_conf}\n# vmwatch test: second daemon\nmigration_port_min = {port}\nmigration_port_max = {}\n",
                port + 1,
            ),
        )
        .expect("qemu.conf");
        std::fs::write(
            dir.join("etc/libvirtd.conf"),
            format!("host_uuid = \"{host_uuid}\"\n"),
        )
        .expect("libvirtd.conf");
        if let Ok(t) = std::fs::read_to_string("/etc/libvirt/libvirt.conf") {
            let _ = std::fs::write(dir.join("etc/libvirt.conf"), t);
        }
        let mut script = String::from("set -e\n");
        for (name, target) in MOUNTS {
            script.push_str(&format!(
                "mount --bind '{}' {target}\n",
                dir.join(name).display()
            ));
        }
        script.push_str(
            "hostname vmwatch-mig-b\n\
             virtlogd -d -p /run/libvirt/virtlogd.pid\n\
             libvirtd -d -p /run/libvirt/libvirtd.pid\n",
        );
        std::fs::write(dir.join("start.sh"), &script).expect("start.sh");
        let mut d = SecondLibvirtd {
            uri: format!(
                "qemu:///system?socket={}",
                dir.join("run/libvirt-sock").display()
            ),
            dir,
            host_uuid,
            daemons: Vec::new(),
            stopped: false,
        };
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--uts", "--propagation", "private", "sh"])
            .arg(d.dir.join("start.sh"));
        // SAFETY: only close(2), async-signal-safe, between fork and exec.
        // The daemons must inherit no descriptor of the test: the tests run
        // under `flock /tmp/vmwatch-libvirt.lock`, and a daemon holding that
        // lock's descriptor would hold the lock for as long as it lives.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                for fd in 3..4096 {
                    libc::close(fd);
                }
                Ok(())
            });
        }
        let out = cmd.output().expect("run unshare");
        assert!(
            out.status.success(),
            "cannot start the second libvirtd ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        wait_for(
            "the second libvirtd to answer",
            Duration::from_secs(30),
            || {
                virsh_at(&d.uri, &["uri"])
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|_| ())
            },
            || read_text(&d.dir.join("log/libvirtd.log")),
        );
        d.daemons = wait_for(
            "the second daemons' pidfiles",
            Duration::from_secs(10),
            || {
                let pids: Vec<u32> = ["libvirtd.pid", "virtlogd.pid"]
                    .iter()
                    .filter_map(|f| d.pid(f))
                    .collect();
                (pids.len() == 2).then_some(pids)
            },
            String::new,
        );
        let caps = virsh_ok(&d.uri, &["capabilities"]);
        assert!(
            caps.contains(&d.host_uuid),
            "the second libvirtd does not have its own host UUID"
        );
        let _ = &mut d;
        d
    }

    /// The pid in one of its pidfiles.
    fn pid(&self, file: &str) -> Option<u32> {
        read_text(&self.dir.join("run").join(file))
            .trim()
            .parse()
            .ok()
    }

    /// The pid of the QEMU running `name` on this daemon.
    pub fn qemu_pid(&self, name: &str) -> Option<u32> {
        self.pid(&format!("qemu/{name}.pid"))
    }

    /// Destroys every domain, stops both daemons and kills any QEMU left.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Ok(out) = virsh_at(&self.uri, &["list", "--all", "--name"]) {
            for name in String::from_utf8_lossy(&out.stdout).lines() {
                let name = name.trim();
                if !name.is_empty() {
                    let _ = virsh_at(&self.uri, &["destroy", name]);
                    let _ = virsh_at(&self.uri, &["undefine", name]);
                }
            }
        }
        let qemus: Vec<u32> = std::fs::read_dir(self.dir.join("run/qemu"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".pid"))
            .filter_map(|e| read_text(&e.path()).trim().parse().ok())
            .collect();
        let daemons = self.daemons.clone();
        for pid in daemons.iter().chain(&qemus) {
            signal(*pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for pid in daemons.iter().chain(&qemus) {
            while alive(*pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if alive(*pid) {
                signal(*pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for SecondLibvirtd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where a test guest runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// tests/support/guest-firmware.S: boots, writes `R`, sleeps in `hlt`.
    Quiet,
    /// Writes `R`, then rewrites 576 KiB of its memory (0x10000-0x9ffff)
    /// for ever: a live migration with a low bandwidth and max downtime
    /// never converges, so it stays in flight until aborted. Source:
    ///   cli; xor ax,ax; mov ss,ax; mov sp,0x7000; mov dx,0x3f8;
    ///   mov al,'R'; out dx,al; xor dx,dx; cld;
    ///   outer: mov bx,0x1000; seg: mov es,bx; xor di,di; mov ax,dx;
    ///   mov cx,0x8000; rep stosw; add bx,0x1000; cmp bx,0xa000; jb seg;
    ///   inc dx; jmp outer
    /// (as --32, .code16; objcopy -O binary).
    Dirty,
}

const DIRTY_HEX: &str =
    "fa31c08ed0bc0070baf803b052ee31d2fcbb00108ec331ff89d0b90080f3ab81c3001081fb00a072eb42ebe5";

/// The 64 KiB ROM for `fw`.
fn rom(fw: Firmware) -> Vec<u8> {
    match fw {
        Firmware::Quiet => super::guest::firmware_rom(),
        Firmware::Dirty => {
            let code: Vec<u8> = (0..DIRTY_HEX.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&DIRTY_HEX[i..i + 2], 16).expect("hex"))
                .collect();
            let mut rom = vec![0xffu8; 65536];
            rom[..code.len()].copy_from_slice(&code);
            rom[0xfff0..0xfff5].copy_from_slice(&[0xea, 0x00, 0x00, 0x00, 0xf0]);
            rom
        }
    }
}

/// A test guest that may live on either daemon (or both). Dropping it
/// destroys and undefines it on both.
pub struct MigGuest {
    pub name: String,
    pub uuid: String,
    pub xml: PathBuf,
    pub console: PathBuf,
    other_uri: String,
}

impl MigGuest {
    /// Writes disk, ROM and XML for `vmwatch-test-<pid>-<short>`.
    pub fn new(dir: &TestDir, short: &str, fw: Firmware, other_uri: &str) -> MigGuest {
        MigGuest::with_uuid(dir, short, fw, other_uri, &random_uuid())
    }

    pub fn with_uuid(
        dir: &TestDir,
        short: &str,
        fw: Firmware,
        other_uri: &str,
        uuid: &str,
    ) -> MigGuest {
        let name = format!("vmwatch-test-{}-{short}", std::process::id());
        let rom_path = dir.join(&format!("{short}.rom"));
        std::fs::write(&rom_path, rom(fw)).expect("write the ROM");
        let disk = dir.join(&format!("{short}.raw"));
        create_disk(&disk);
        let console = dir.join(&format!("{short}.console"));
        let xml = dir.join(&format!("{short}.xml"));
        // A migration with a disk needs it shared: both daemons see the
        // same file here, so `cache='none'` is all libvirt asks for.
        let text = domain_xml(
            name.as_str(),
            uuid,
            &rom_path,
            &disk,
            &console,
            " cache='none'",
        );
        std::fs::write(&xml, text).expect("write the guest XML");
        MigGuest {
            name,
            uuid: uuid.to_string(),
            xml,
            console,
            other_uri: other_uri.to_string(),
        }
    }

    /// Defines and starts it on `uri`, and waits until its firmware runs.
    pub fn start_on(&self, uri: &str) {
        virsh_ok(uri, &["define", &self.xml.display().to_string()]);
        let before = read_text(&self.console).matches('R').count();
        virsh_ok(uri, &["start", &self.name]);
        wait_for(
            &format!("guest {} to run its firmware", self.name),
            Duration::from_secs(60),
            || (read_text(&self.console).matches('R').count() > before).then_some(()),
            || format!("console: {:?}", read_text(&self.console)),
        );
    }

    /// Whether `uri` lists it (any state).
    pub fn on(&self, uri: &str) -> bool {
        virsh_at(uri, &["domstate", &self.name]).is_ok_and(|o| o.status.success())
    }
}

impl Drop for MigGuest {
    fn drop(&mut self) {
        for uri in [URI, self.other_uri.as_str()] {
            let _ = virsh_at(uri, &["destroy", &self.name]);
            let _ = virsh_at(uri, &["undefine", &self.name]);
        }
    }
}

/// Notes when each panel line arrived (polled every 10 ms by a thread of
/// its own), so a test can print how long the panel took to learn a move.
pub struct PanelClock {
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PanelClock {
    pub fn start(panel: &Panel) -> PanelClock {
        let file = panel.received_path();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (lines, stop) = (lines.clone(), stop.clone());
            std::thread::Builder::new()
                .name("panel-clock".into())
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        poll(&file, &lines);
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    poll(&file, &lines);
                })
                .expect("panel clock thread")
        };
        PanelClock {
            lines,
            stop,
            thread: Some(thread),
        }
    }

    /// Every complete line so far with when it was first seen.
    pub fn lines(&self) -> Vec<(Instant, String)> {
        self.lines.lock().unwrap().clone()
    }
}

fn poll(file: &Path, lines: &Mutex<Vec<(Instant, String)>>) {
    let text = read_text(file);
    let end = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let now = Instant::now();
    let mut seen = lines.lock().unwrap();
    for l in text[..end].lines().skip(seen.len()) {
        seen.push((now, l.to_string()));
    }
}

impl Drop for PanelClock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
