//! check_vmwatch the way the Opsview/Nagios host runs it on a KVM node and
//! on the panel host: a real Nagios 4 core runs the standard `check_by_ssh`
//! (monitoring-plugins-basic), which logs in through a real OpenSSH server
//! and runs the plugin there. Nothing of the machine's own sshd is used:
//! tests/support/setup-nagios.sh installs openssh-server without starting
//! it, and this test runs its own `sshd -D -e -f CONFIG` with `ListenAddress
//! 127.0.0.1` on a free port, its own host key (pinned in a known_hosts file
//! of the test, `StrictHostKeyChecking=yes`), and one authorized key for the
//! unprivileged user `vmwatch-check` (made by the setup script; a home, a
//! shell, no password). The private key belongs to the `nagios` user, as on
//! a monitoring host. `StrictModes no`: the key files live in the test's
//! directory under /tmp, which sshd's ownership checks would refuse.
//!
//! The daemons are the real binaries (a master fed by the test's signing
//! clients, a node on libvirt's in-process test driver, so the machine's
//! libvirtd is not used). The command definition is the one docs/check_vmwatch.8
//! shows, with this test's port, key and known_hosts as resource macros.
//!
//! Proves: output, exit status (Nagios's state) and perfdata come back
//! intact through ssh for both daemons, the detail lines of `-v` too;
//! CRITICAL for a threshold crossed and for each daemon stopped; UNKNOWN
//! when the ssh user may not read the node's status file.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::nagios::{user_id, Nagios};
use crate::common::ops::require_tools;
use crate::common::*;

/// The ssh login check_by_ssh uses (tests/support/setup-nagios.sh).
const SSH_USER: &str = "vmwatch-check";

/// The check_by_ssh command as docs/check_vmwatch.8 shows it: `$USER2$` is
/// the port, `$USER3$` the nagios user's private key, `$USER4$` the
/// known_hosts file, `$USER5$` the plugin on the far side.
const COMMAND_LINE: &str = "$USER1$/check_by_ssh -H $HOSTADDRESS$ -p $USER2$ -l vmwatch-check \
     -i $USER3$ -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$USER4$ -o BatchMode=yes \
     -t 30 -C \"$USER5$ $ARG1$\"";

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The test's own sshd on 127.0.0.1:`port`; killed when dropped.
struct Sshd {
    port: u16,
    key: PathBuf,
    known_hosts: PathBuf,
    log: PathBuf,
    child: Child,
}

impl Sshd {
    fn start(dir: &TestDir) -> Sshd {
        let d = dir.join("ssh");
        std::fs::create_dir_all(&d).unwrap();
        set_mode(&d, 0o755);
        let host_key = d.join("host_key");
        let key = d.join("nagios_key");
        for (k, comment) in [
            (&host_key, "vmwatch test host"),
            (&key, "nagios@vmwatch-test"),
        ] {
            run_ok(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                    .arg(k),
            );
        }
        // ssh refuses a private key others can read: the nagios user's own.
        let (uid, gid) = (user_id("-u", "nagios"), user_id("-g", "nagios"));
        std::os::unix::fs::chown(&key, Some(uid), Some(gid)).unwrap();
        set_mode(&key, 0o600);
        let authorized = d.join("authorized_keys");
        std::fs::copy(d.join("nagios_key.pub"), &authorized).unwrap();
        set_mode(&authorized, 0o644);
        let port = free_port();
        let known_hosts = d.join("known_hosts");
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_pub}")).unwrap();
        set_mode(&known_hosts, 0o644);
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "# sshd of a vmwatch test: loopback only, one user, keys only.\n\
                 ListenAddress 127.0.0.1\nPort {port}\nHostKey {host}\nPidFile {pid}\n\
                 AuthorizedKeysFile {auth}\nAllowUsers {SSH_USER}\nStrictModes no\n\
                 PubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin no\n\
                 AllowTcpForwarding no\nX11Forwarding no\nPrintMotd no\nPrintLastLog no\n\
                 LogLevel VERBOSE\n",
                host = host_key.display(),
                pid = d.join("sshd.pid").display(),
                auth = authorized.display(),
            ),
        )
        .unwrap();
        run_ok(
            Command::new("/usr/sbin/sshd")
                .arg("-t")
                .arg("-f")
                .arg(&config),
        );
        let log = d.join("sshd.log");
        let err = std::fs::File::create(&log).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(err.try_clone().unwrap())
            .stderr(err)
            .spawn()
            .expect("start sshd (openssh-server)");
        let s = Sshd {
            port,
            key,
            known_hosts,
            log,
            child,
        };
        wait_for(
            "sshd to listen on 127.0.0.1",
            DAEMON_DEADLINE,
            || {
                read_text(&s.log)
                    .contains(&format!("Server listening on 127.0.0.1 port {port}"))
                    .then_some(())
            },
            || tail(&s.log, 20),
        );
        s
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The perfdata labels of a plugin output, in order.
fn labels(perfdata: &str) -> Vec<String> {
    perfdata
        .split_whitespace()
        .map(|item| item.split('=').next().unwrap_or("").to_string())
        .collect()
}

/// Each perfdata item is `label=value[uom];warn;crit;0;[max]`.
fn assert_perfdata(perfdata: &str) {
    assert!(!perfdata.is_empty(), "no perfdata came back");
    for item in perfdata.split_whitespace() {
        let (_, rest) = item.split_once('=').expect("label=value");
        let fields: Vec<&str> = rest.split(';').collect();
        assert_eq!(fields.len(), 5, "warn;crit;min;max in `{item}`");
        assert!(fields[0].trim_end_matches('s').parse::<f64>().is_ok());
        assert_eq!(fields[3], "0", "min of `{item}`");
    }
}

/// Runs the plugin here, as root: (exit status, status line, perfdata).
fn direct(args: &str) -> (i32, String, String) {
    let out = Command::new(plugin_bin())
        .args(args.split(' '))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let first = text.lines().next().unwrap_or("").to_string();
    let (line, perf) = first.split_once(" | ").unwrap_or((&first, ""));
    (
        out.status.code().unwrap_or(-1),
        line.to_string(),
        perf.to_string(),
    )
}

#[test]
#[ignore = "needs root, Nagios 4 and OpenSSH (tests/support/setup-nagios.sh): make test"]
fn check_by_ssh_through_a_real_sshd_under_a_real_nagios_core() {
    require_tools();
    let dir = TestDir::new("check-by-ssh");
    set_mode(dir.path(), 0o755);
    let sshd = Sshd::start(&dir);

    let panel = Panel::new(&dir);
    let (mut master, port) = start_master(
        &dir,
        &panel,
        "state_interval=1\nnode_timeout=10\ncheck_activity=yes\n",
    );
    // The node's status file in a directory of its own, so the test can
    // take the ssh user's access away.
    let node_dir = dir.join("node-state");
    std::fs::create_dir_all(&node_dir).unwrap();
    set_mode(&node_dir, 0o755);
    let status = node_dir.join("node.status");
    let mut node = start_node_at(
        &dir,
        port,
        "3",
        "test:///default",
        &format!(
            "heartbeat_interval=2\nstatus_interval=1\nstatus_file={}\n",
            status.display()
        ),
    );
    let state = dir.join("master.state");
    wait_for(
        "the master lists node 3 up and the node says it is connected",
        DAEMON_DEADLINE,
        || {
            (read_text(&state).contains("\nnode 3 up ")
                && read_text(&status).contains("\nmaster up "))
            .then_some(())
        },
        || report(&[&master, &node], None),
    );
    // Where the master mode keeps its rejection count: the ssh user's.
    let memory = dir.join("check-memory");
    std::fs::create_dir_all(&memory).unwrap();
    std::os::unix::fs::chown(
        &memory,
        Some(user_id("-u", SSH_USER)),
        Some(user_id("-g", SSH_USER)),
    )
    .unwrap();

    let margs = format!(
        "-M master -f {} -p {} -m {}",
        state.display(),
        master.pidfile.display(),
        memory.display()
    );
    let nargs = format!(
        "-M node -f {} -p {}",
        status.display(),
        node.pidfile.display()
    );
    // The plugin where the far side's user can run it wherever the build
    // lives, as the RPM puts it in a directory of its own.
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    set_mode(&plugins, 0o755);
    let plugin = plugins.join("check_vmwatch");
    std::fs::copy(plugin_bin(), &plugin).unwrap();
    set_mode(&plugin, 0o755);
    let plugin = plugin.display().to_string();
    let nagios = Nagios::start(
        dir.path(),
        &[
            ("$USER2$", sshd.port.to_string()),
            ("$USER3$", sshd.key.display().to_string()),
            ("$USER4$", sshd.known_hosts.display().to_string()),
            ("$USER5$", plugin),
        ],
        &[("check_vmwatch_ssh", COMMAND_LINE.to_string())],
        &[
            ("master", format!("check_vmwatch_ssh!{margs}")),
            ("master-verbose", format!("check_vmwatch_ssh!{margs} -v")),
            (
                "master-limits",
                format!("check_vmwatch_ssh!{margs} -c domains=5:"),
            ),
            ("node", format!("check_vmwatch_ssh!{nargs}")),
        ],
    );
    let (mlog, nlog) = (master.log.clone(), node.log.clone());
    let ctx = || {
        format!(
            "{}--- sshd log:\n{}\n--- master log:\n{}\n--- node log:\n{}\n",
            nagios.report(),
            tail(&sshd.log, 20),
            tail(&mlog, 20),
            tail(&nlog, 20)
        )
    };

    // OK, through ssh: the same state, status line and perfdata labels as
    // the plugin run here.
    for (service, args, head) in [
        (
            "master",
            &margs,
            "VMWATCH MASTER OK - 1 nodes up, 0 down, 1 domains",
        ),
        (
            "node",
            &nargs,
            "VMWATCH NODE OK - node 3: libvirt connected, master connected, 1 domains",
        ),
    ] {
        let r = nagios.check(service);
        println!(
            "nagios {service} via check_by_ssh: state {}: {} | {}",
            r.state, r.output, r.perfdata
        );
        assert_eq!(r.state, 0, "{service}: {r:?}\n{}", ctx());
        assert!(r.output.starts_with(head), "{service}: {r:?}");
        assert_perfdata(&r.perfdata);
        let (rc, line, perf) = direct(args);
        assert_eq!(rc, 0, "{line}");
        assert!(line.starts_with(head), "{line}");
        assert_eq!(labels(&r.perfdata), labels(&perf), "{service}");
    }
    // Counted as logins of the ssh user, by key.
    assert!(
        read_text(&sshd.log).contains(&format!("Accepted publickey for {SSH_USER} from 127.0.0.1")),
        "{}",
        ctx()
    );

    // -v: the detail lines come back too (Nagios's long output).
    let r = nagios.check("master-verbose");
    assert_eq!(r.state, 0, "{r:?}\n{}", ctx());
    assert!(
        r.long_output
            .starts_with(&format!("master on tcp://127.0.0.1:{port}")),
        "{r:?}"
    );

    // A threshold crossed: CRITICAL, its perfdata still whole.
    let r = nagios.check("master-limits");
    println!(
        "nagios master-limits via check_by_ssh: state {}: {} | {}",
        r.state, r.output, r.perfdata
    );
    assert_eq!(r.state, 2, "{r:?}\n{}", ctx());
    assert!(r.output.contains("domains 1 (critical 5:)"), "{r:?}");
    assert_perfdata(&r.perfdata);
    assert!(r.perfdata.contains("domains=1;;5:;0;"), "{r:?}");

    // The ssh user may not read the node's status file: UNKNOWN.
    set_mode(&node_dir, 0o700);
    let r = nagios.check("node");
    println!(
        "nagios node via check_by_ssh, status file unreadable: state {}: {}",
        r.state, r.output
    );
    assert_eq!(r.state, 3, "{r:?}\n{}", ctx());
    assert!(
        r.output.starts_with("VMWATCH NODE UNKNOWN - cannot read "),
        "{r:?}"
    );
    assert!(r.output.contains("permission denied"), "{r:?}");
    set_mode(&node_dir, 0o755);
    let r = nagios.check("node");
    assert_eq!(r.state, 0, "readable again: {r:?}\n{}", ctx());

    // Each daemon stopped: CRITICAL.
    assert!(node.stop().success());
    let r = nagios.check("node");
    println!(
        "nagios node via check_by_ssh, node stopped: state {}: {}",
        r.state, r.output
    );
    assert_eq!(r.state, 2, "{r:?}\n{}", ctx());
    assert!(
        r.output
            .starts_with("VMWATCH NODE CRITICAL - vmwatch-node is not running (no pidfile "),
        "{r:?}"
    );
    assert!(master.stop().success());
    let r = nagios.check("master");
    println!(
        "nagios master via check_by_ssh, master stopped: state {}: {}",
        r.state, r.output
    );
    assert_eq!(r.state, 2, "{r:?}\n{}", ctx());
    assert!(
        r.output
            .starts_with("VMWATCH MASTER CRITICAL - vmwatch-master is not running (no pidfile "),
        "{r:?}"
    );

    // What Nagios recorded, for the record.
    let log = read_text(&nagios.dir.join("nagios.log"));
    let alerts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("SERVICE ALERT: "))
        .collect();
    assert!(
        alerts
            .iter()
            .any(|l| l.contains(";node;UNKNOWN;HARD;1;VMWATCH NODE UNKNOWN - ")),
        "{log}"
    );
    for l in alerts {
        println!("nagios.log: {l}");
    }
    println!("status.dat:\n{}", nagios.status_block("master"));
    let _ = std::io::stdout().flush();
}
