//! Real QEMU guests on the machine's libvirtd (`qemu:///system`), for the
//! end-to-end tests.
//!
//! A guest is as small as a real machine gets: 16 MiB of RAM, one sparse
//! 16 MiB raw disk on virtio, a serial port logged to a file, and instead of
//! SeaBIOS the tiny firmware of tests/support/guest-firmware.S, which boots
//! in milliseconds, sleeps in `hlt`, and powers the machine off when the
//! ACPI power button is pressed. That makes `virsh shutdown` and `virsh
//! reboot` produce the real guest-initiated events an OS would, which an
//! OS-less guest never does. The firmware writes `R` on the serial port
//! each time it is ready (after every boot) and `S` when it powers off, so
//! tests know when the power button works.
//!
//! Names are `vmwatch-test-<pid>-<name>`: other engineers' guests share this
//! libvirtd, and tests only ever look at their own. Dropping a [`Guest`]
//! destroys and undefines it, whatever state the test left it in.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{alive, read_text, wait_for, TestDir};

/// Where the tests find libvirtd.
pub const URI: &str = "qemu:///system";
/// Deadline for one virsh command.
const VIRSH_DEADLINE: Duration = Duration::from_secs(60);
#[path = "../support/firmware.rs"]
mod firmware;
pub use firmware::{firmware_rom, FIRMWARE_HEX};

/// `kvm` when /dev/kvm exists, else `qemu` (TCG); `VMWATCH_TEST_VIRT_TYPE`
/// overrides.
pub fn virt_type() -> String {
    match std::env::var("VMWATCH_TEST_VIRT_TYPE") {
        Ok(t) if !t.is_empty() => t,
        _ if Path::new("/dev/kvm").exists() => "kvm".into(),
        _ => "qemu".into(),
    }
}

/// Runs `virsh -c qemu:///system ARGS` with a deadline; returns its output
/// whether or not it succeeded, or why it could not run. Never panics (it is
/// used from `Drop`).
pub fn virsh_try(args: &[&str]) -> Result<Output, String> {
    virsh_within(URI, args, VIRSH_DEADLINE)
}

/// `virsh -c URI ARGS`, killed after `deadline`: its output whether or not
/// it succeeded, or why it could not run. Never panics.
pub fn virsh_within(uri: &str, args: &[&str], deadline: Duration) -> Result<Output, String> {
    let mut child = Command::new("virsh")
        .arg("-q")
        .arg("-c")
        .arg(uri)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run virsh (is libvirt-clients installed?): {e}"))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().map_err(|e| e.to_string()),
            Ok(None) if start.elapsed() > deadline => {
                let _ = child.kill();
                let out = child.wait_with_output().map_err(|e| e.to_string())?;
                return Err(format!(
                    "virsh -c {uri} {} did not finish within {} s (is libvirtd stuck?): {}",
                    args.join(" "),
                    deadline.as_secs(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for virsh: {e}")),
        }
    }
}

/// As [`virsh_try`], failing the test if virsh could not run.
pub fn virsh_output(args: &[&str]) -> Output {
    virsh_try(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs virsh and fails the test if it fails; returns its stdout.
pub fn virsh(args: &[&str]) -> String {
    virsh_checked(URI, args, VIRSH_DEADLINE)
}

/// As [`virsh_within`], failing the test unless virsh succeeds; its stdout.
pub fn virsh_checked(uri: &str, args: &[&str], deadline: Duration) -> String {
    let out = virsh_within(uri, args, deadline).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "virsh -c {uri} {} failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails early, with the fix, if libvirtd is not there.
pub fn require_libvirtd() {
    match virsh_try(&["version"]) {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "libvirtd does not answer on {URI} ({}); run `bash tests/support/setup-host.sh` (make test does)",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("{e}; run `bash tests/support/setup-host.sh` (make test does)"),
    }
}

/// libvirtd's pid from its pidfile, if it is alive.
pub fn libvirtd_pid() -> Option<u32> {
    let text = std::fs::read_to_string("/var/run/libvirtd.pid").ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

/// Starts libvirtd again after a test stopped or killed it, with
/// tests/support/setup-host.sh (which starts only what is not running);
/// whether that worked. Never panics (it is used from `Drop`).
pub fn restart_libvirtd() -> bool {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/setup-host.sh");
    let ok = Command::new("bash")
        .arg(script)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("could not restart libvirtd: run `bash {script}`");
    }
    ok
}

/// A random version-4 UUID.
pub fn random_uuid() -> String {
    let mut b = [0u8; 16];
    let f = std::fs::File::open("/dev/urandom").expect("open /dev/urandom");
    std::io::Read::read_exact(&mut &f, &mut b).expect("read /dev/urandom");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Creates a test guest's sparse 16 MiB raw disk.
pub fn create_disk(path: &Path) {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(16 << 20))
        .expect("create the guest disk (truncate -s 16M)");
}

/// A test guest's domain XML (see the top of this file); `driver_extra`
/// adds attributes to the disk's `<driver>` (` cache='none'` for a disk two
/// daemons share during a migration).
pub fn domain_xml(
    name: &str,
    uuid: &str,
    rom: &Path,
    disk: &Path,
    console: &Path,
    driver_extra: &str,
) -> String {
    format!(
        r#"<domain type='{virt}'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>16</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <loader type='rom'>{rom}</loader>
  </os>
  <features><acpi/></features>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'{driver_extra}/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
    <serial type='file'>
      <source path='{console}' append='on'/>
      <target port='0'/>
    </serial>
  </devices>
</domain>
"#,
        virt = virt_type(),
        rom = rom.display(),
        disk = disk.display(),
        console = console.display(),
    )
}

/// One test guest. Not defined until [`Guest::define`].
pub struct Guest {
    pub name: String,
    pub uuid: String,
    xml: PathBuf,
    console: PathBuf,
}

impl Guest {
    /// Prepares disk, firmware and XML in `dir` for a guest `vmwatch-test-<pid>-<short>`.
    pub fn new(dir: &TestDir, short: &str) -> Guest {
        let name = format!("vmwatch-test-{}-{short}", std::process::id());
        let uuid = random_uuid();
        let rom = dir.join("guest-firmware.rom");
        if !rom.exists() {
            std::fs::write(&rom, firmware_rom()).expect("write the guest firmware");
        }
        let disk = dir.join(&format!("{short}.raw"));
        create_disk(&disk);
        let console = dir.join(&format!("{short}.console"));
        let xml = dir.join(&format!("{short}.xml"));
        let text = domain_xml(&name, &uuid, &rom, &disk, &console, "");
        std::fs::write(&xml, text).expect("write the guest XML");
        Guest {
            name,
            uuid,
            xml,
            console,
        }
    }

    pub fn define(&self) {
        virsh(&["define", &self.xml.display().to_string()]);
    }

    pub fn start(&self) {
        virsh(&["start", &self.name]);
    }

    pub fn suspend(&self) {
        virsh(&["suspend", &self.name]);
    }

    pub fn resume(&self) {
        virsh(&["resume", &self.name]);
    }

    /// `virsh reboot --mode acpi`: presses the power button; when the guest
    /// powers off, libvirt resets it instead (a "fake reboot").
    pub fn reboot(&self) {
        virsh(&["reboot", "--mode", "acpi", &self.name]);
    }

    /// `virsh reset`: a hardware reset, as a guest OS rebooting does.
    pub fn reset(&self) {
        virsh(&["reset", &self.name]);
    }

    /// `virsh shutdown --mode acpi`: presses the power button.
    pub fn shutdown(&self) {
        virsh(&["shutdown", "--mode", "acpi", &self.name]);
    }

    pub fn destroy(&self) {
        virsh(&["destroy", &self.name]);
    }

    pub fn undefine(&self) {
        virsh(&["undefine", &self.name]);
    }

    /// libvirt's view: `virsh domstate`.
    pub fn state(&self) -> String {
        virsh(&["domstate", &self.name]).trim().to_string()
    }

    /// What the firmware wrote on the serial port: one `R` per boot, one
    /// `S` per power-off.
    pub fn console(&self) -> String {
        read_text(&self.console)
    }

    /// Waits until the firmware has come up `boots` times in all (the power
    /// button works from then on).
    pub fn wait_ready(&self, boots: usize, timeout: Duration) {
        let what = format!("guest {} to boot ({} times)", self.name, boots);
        wait_for(
            &what,
            timeout,
            || (self.console().matches('R').count() >= boots).then_some(()),
            || {
                format!(
                    "serial console: {:?}; libvirt state: {}",
                    self.console(),
                    virsh_output(&["domstate", "--reason", &self.name])
                        .stdout
                        .iter()
                        .map(|&b| b as char)
                        .collect::<String>()
                )
            },
        );
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        // Either may fail (not running, already gone): that is fine. virsh
        // has its deadline, so a dead libvirtd cannot hang the drop.
        let _ = virsh_try(&["destroy", &self.name]);
        let _ = virsh_try(&["undefine", &self.name]);
    }
}
