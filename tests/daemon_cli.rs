//! The daemons as an init script and an operator see them: command line,
//! configuration files as the panel writes them, exit statuses, detaching and
//! pidfiles, signals, the log file and syslog.
//!
//! These are the promises of the man pages and `--help` (exit 0 ok, 1
//! configuration error, 2 usage error, 3 runtime failure; SIGTERM/SIGINT stop
//! cleanly with `exiting` as the last log line; SIGHUP reopens the log), and
//! SysV init depends on every one of them. No libvirtd is needed: the node
//! runs against libvirt's in-process test driver (`test:///default`) and no
//! master has to listen for it.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Runs a binary to completion (at most 20 s) with output captured in files;
/// returns (status, stdout, stderr).
fn run(dir: &TestDir, tag: &str, bin: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    let (out_path, err_path) = (
        dir.join(&format!("{tag}.out")),
        dir.join(&format!("{tag}.err")),
    );
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let status = wait_for(
        &format!("{} {} to exit", bin.display(), args.join(" ")),
        DAEMON_DEADLINE,
        || child.try_wait().expect("wait"),
        || format!("stderr: {}", read_text(&err_path)),
    );
    (status, read_text(&out_path), read_text(&err_path))
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn master_text(dir: &TestDir, port: u16, extra: &str) -> String {
    let panel = Panel::new(dir);
    master_config_text(dir, port, SECRET, &panel, extra)
}

fn node_text(dir: &TestDir, extra: &str) -> String {
    // Nobody listens on this port: a node does not need its master to run.
    node_config_text(
        dir,
        "node",
        free_port(),
        SECRET,
        "4",
        "test:///default",
        extra,
    )
}

/// A daemon that detached: not our child, so it is found through its
/// pidfile and killed on drop if a test left it running.
struct Detached {
    pid: Option<u32>,
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.filter(|&p| alive(p)) {
            signal(pid, libc::SIGKILL);
        }
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn check_config_prints_the_effective_config_with_the_secret_masked() {
    let dir = TestDir::new("checkconfig");
    let port = free_port();
    let mconf = dir.write_config("master.conf", &master_text(&dir, port, ""));
    let (st, out, err) = run(&dir, "m", &master_bin(), &["-t", "-c", &p(&mconf)]);
    assert_eq!(st.code(), Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("listen=tcp://127.0.0.1:{port}\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("secret=******** ({} characters)\n", SECRET.len())),
        "{out}"
    );
    assert!(out.contains("syslog=no\n"), "{out}");
    assert!(out.trim_end().ends_with("configuration OK"), "{out}");
    assert!(
        !out.contains(SECRET) && !err.contains(SECRET),
        "secret shown:\n{out}{err}"
    );
    // -t neither binds nor writes a log.
    assert!(port_is_free(port));
    assert!(!dir.join("master.log").exists());

    let nconf = dir.write_config("node.conf", &node_text(&dir, "node_id=worker-12\n"));
    let (st, out, err) = run(
        &dir,
        "n",
        &node_bin(),
        &["--check-config", "-c", &p(&nconf)],
    );
    assert_eq!(st.code(), Some(0), "{out}{err}");
    assert!(
        out.contains("node_id=worker-12\n"),
        "the later value wins:\n{out}"
    );
    assert!(err.contains("`node_id` repeats line 3"), "{err}");
    assert!(out.contains("uri=test:///default\n"), "{out}");
    assert!(
        out.contains(&format!("secret=******** ({} characters)\n", SECRET.len())),
        "{out}"
    );
    assert!(out.trim_end().ends_with("configuration OK"), "{out}");
    assert!(
        !out.contains(SECRET) && !err.contains(SECRET),
        "secret shown:\n{out}{err}"
    );

    // A secret readable by others is worth a warning, not a refusal.
    let open = dir.join("open.conf");
    std::fs::write(&open, master_text(&dir, port, "")).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (st, _, err) = run(&dir, "o", &master_bin(), &["-t", "-c", &p(&open)]);
    assert_eq!(st.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("vmwatch-master: warning: {}: holds the shared secret but is readable by group or others (mode 0644)", p(&open))),
        "{err}"
    );
}

#[test]
fn every_configuration_error_is_reported_with_path_and_line() {
    let dir = TestDir::new("badconfig");
    let conf = dir.write_config(
        "master.conf",
        "listen=http://127.0.0.1:1515\n\
         secret=HAS SPACE\n\
         panel_timeout=0\n\
         node_timeout=soon\n\
         log_level=loud\n\
         this line has no equals sign\n\
         check_activity=perhaps\n",
    );
    let (st, out, err) = run(&dir, "m", &master_bin(), &["-t", "-c", &p(&conf)]);
    assert_eq!(st.code(), Some(1), "{out}{err}");
    let path = p(&conf);
    for (line, what) in [
        (1, "`listen`: `http://127.0.0.1:1515` is not tcp://IP:PORT"),
        (2, "`secret`: must not contain spaces"),
        (
            3,
            "`panel_timeout` must be a whole number between 1 and 3600, not `0`",
        ),
        (
            4,
            "`node_timeout` must be a whole number between 2 and 86400, not `soon`",
        ),
        (
            5,
            "`log_level`: `loud` is not one of error, warn, info, debug",
        ),
        (6, "expected NAME=VALUE"),
        (7, "`check_activity` must be yes or no, not `perhaps`"),
    ] {
        let want = format!("vmwatch-master: error: {path}:{line}: {what}");
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    }
    assert_eq!(err.matches(": error: ").count(), 7, "{err}");
    assert!(err.contains("configuration invalid, not starting"), "{err}");
    assert!(!out.contains("configuration OK"), "{out}");

    // Same when starting for real, and for the node; a missing required key
    // names the file without a line.
    let nconf = dir.write_config(
        "node.conf",
        "connect=tcp://127.0.0.1:99999\nnode_id=a/b\nstats_interval=0\n",
    );
    let pid = dir.join("n.pid");
    let (st, _, err) = run(
        &dir,
        "n",
        &node_bin(),
        &["-f", "-c", &p(&nconf), "-p", &p(&pid)],
    );
    assert_eq!(st.code(), Some(1), "{err}");
    let path = p(&nconf);
    for want in [
        format!("vmwatch-node: error: {path}: missing required `secret=...`"),
        format!("vmwatch-node: error: {path}:1: `connect`: port `99999` is not between 1 and 65535"),
        format!("vmwatch-node: error: {path}:2: `node_id`: `a/b` may hold only A-Z a-z 0-9 . _ -"),
        format!("vmwatch-node: error: {path}:3: `stats_interval` must be a whole number between 1 and 86400, not `0`"),
    ] {
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    }
    assert!(!pid.exists(), "no pidfile for a daemon that never started");

    let (st, _, err) = run(
        &dir,
        "x",
        &master_bin(),
        &["-t", "-c", &p(&dir.join("absent.conf"))],
    );
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("absent.conf: cannot open: No such file or directory"),
        "{err}"
    );
}

#[test]
fn unknown_keys_are_warnings_and_the_daemon_still_runs() {
    let dir = TestDir::new("unknownkey");
    let port = free_port();
    let conf = dir.write_config(
        "master.conf",
        &master_text(&dir, port, "vmwatch_future_option=42\n"),
    );
    let (st, out, err) = run(&dir, "t", &master_bin(), &["-t", "-c", &p(&conf)]);
    assert_eq!(st.code(), Some(0), "{out}{err}");
    let line = master_text(&dir, port, "").lines().count() + 1;
    let want = format!(
        "vmwatch-master: warning: {}:{line}: unknown key `vmwatch_future_option` ignored",
        p(&conf)
    );
    assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    assert!(out.contains("configuration OK"), "{out}");

    let mut m = spawn_master(&dir, "master");
    m.wait_log("listening on", DAEMON_DEADLINE);
    assert!(
        m.log_text()
            .contains("unknown key `vmwatch_future_option` ignored"),
        "{}",
        m.report()
    );
    assert!(m.stop().success(), "{}", m.report());
}

#[test]
fn panel_written_file_styles_load() {
    let dir = TestDir::new("styles");
    let port = free_port();
    // What an editor or another panel version may leave: a UTF-8 BOM, CRLF
    // line ends, comments, blank lines, spaces around `=` and values.
    let text = format!(
        "\u{feff}# vmwatch-master.conf, written by VMmanager\r\n\
         \r\n\
         disabled = no\r\n\
         \t listen =  tcp://127.0.0.1:{port}  \r\n\
         # the shared secret\r\n\
         secret= {SECRET}\r\n\
         log ={log}\r\n\
         syslog=no\r\n\
         state_file={state}\r\n",
        log = p(&dir.join("master.log")),
        state = p(&dir.join("master.state")),
    );
    let conf = dir.write_config("master.conf", &text);
    let (st, out, err) = run(&dir, "t", &master_bin(), &["-t", "-c", &p(&conf)]);
    assert_eq!(st.code(), Some(0), "{out}{err}");
    assert!(out.contains("disabled=no\n"), "{out}");
    assert!(
        out.contains(&format!("listen=tcp://127.0.0.1:{port}\n")),
        "{out}"
    );
    // The mask shows the length: a stray `\r` or space would make it longer.
    assert!(
        out.contains(&format!("secret=******** ({} characters)\n", SECRET.len())),
        "{out}"
    );
    assert!(
        out.contains(&format!("log={}\n", p(&dir.join("master.log")))),
        "{out}"
    );
    assert!(!err.contains("warning"), "no warnings expected:\n{err}");

    // And the daemon really listens there with that secret: a client signing
    // with it is heard.
    let mut m = spawn_master(&dir, "master");
    m.wait_log(
        &format!("listening on tcp://127.0.0.1:{port}"),
        DAEMON_DEADLINE,
    );
    let mut c = Client::connect(port, SECRET, "styles");
    c.send(vmwatch::protocol::Body::Heartbeat);
    m.wait_log("node styles is up", DAEMON_DEADLINE);
    assert!(m.stop().success(), "{}", m.report());
}

#[test]
fn an_empty_secret_is_refused() {
    let dir = TestDir::new("emptysecret");
    let conf = dir.write_config(
        "master.conf",
        &format!("listen=tcp://127.0.0.1:{}\nsecret=\n", free_port()),
    );
    let (st, _, err) = run(&dir, "m", &master_bin(), &["-t", "-c", &p(&conf)]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "vmwatch-master: error: {}:2: `secret` has an empty value",
            p(&conf)
        )),
        "{err}"
    );
    let nconf = dir.write_config(
        "node.conf",
        "connect=tcp://127.0.0.1:1515\nnode_id=1\nsecret =  \n",
    );
    let (st, _, err) = run(&dir, "n", &node_bin(), &["-t", "-c", &p(&nconf)]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "vmwatch-node: error: {}:3: `secret` has an empty value",
            p(&nconf)
        )),
        "{err}"
    );
}

#[test]
fn a_disabled_master_exits_0_without_binding() {
    let dir = TestDir::new("disabled");
    let port = free_port();
    let conf = dir.write_config("master.conf", &master_text(&dir, port, "disabled=yes\n"));
    // Hold nothing: if the master bound the port, it would show in the log
    // and the port would be taken while it ran; it must not even start.
    let mut m = spawn_master(&dir, "master");
    let st = m.wait_exit(DAEMON_DEADLINE);
    assert_eq!(st.code(), Some(0), "{}", m.report());
    let log = m.log_text();
    assert!(
        log.contains(&format!(
            "disabled=yes in {}: monitoring is not enabled by the panel yet; not starting",
            p(&conf)
        )),
        "{}",
        m.report()
    );
    assert!(m.stderr_text().contains("not starting"), "{}", m.report());
    assert!(!log.contains("listening on"), "{}", m.report());
    assert!(!m.pidfile.exists(), "no pidfile for a disabled master");
    assert!(port_is_free(port));

    // Detached, as `service vmwatch-master start` runs it: also status 0.
    let pid = dir.join("d.pid");
    let (st, _, err) = run(&dir, "d", &master_bin(), &["-c", &p(&conf), "-p", &p(&pid)]);
    assert_eq!(st.code(), Some(0), "{err}");
    assert!(!pid.exists());
    assert!(port_is_free(port));
}

#[test]
fn a_second_master_on_the_same_pidfile_exits_3() {
    let dir = TestDir::new("twice");
    let panel = Panel::new(&dir);
    let (mut first, _) = start_master(&dir, &panel, "");
    let first_pid = read_pid(&first.pidfile).expect("pidfile of the first master");
    assert_eq!(first_pid, first.pid());

    let conf = dir.write_config(
        "second.conf",
        &master_config_text(&dir, free_port(), SECRET, &panel, "")
            .replace("master.log", "second.log"),
    );
    let (st, _, err) = run(
        &dir,
        "second",
        &master_bin(),
        &["-f", "-c", &p(&conf), "-p", &p(&first.pidfile)],
    );
    assert_eq!(st.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "already running (pid {first_pid}, pidfile {} is locked)",
            p(&first.pidfile)
        )),
        "{err}"
    );
    // The first one is untouched and still owns its pidfile.
    assert!(first.try_status().is_none(), "{}", first.report());
    assert_eq!(read_pid(&first.pidfile), Some(first_pid));
    assert!(first.stop().success(), "{}", first.report());
    assert!(!first.pidfile.exists(), "pidfile removed on a clean stop");
}

#[test]
fn detached_daemons_report_ready_write_their_pidfile_and_remove_it_on_sigterm() {
    let dir = TestDir::new("detach");
    let port = free_port();
    let cases = [
        (
            "vmwatch-master",
            master_bin(),
            dir.write_config("master.conf", &master_text(&dir, port, "")),
        ),
        (
            "vmwatch-node",
            node_bin(),
            dir.write_config("node.conf", &node_text(&dir, "")),
        ),
    ];
    for (program, bin, conf) in cases {
        let pidfile = dir.join(&format!("{program}.pid"));
        let (st, out, err) = run(&dir, program, &bin, &["-c", &p(&conf), "-p", &p(&pidfile)]);
        // The parent exits 0 only once the daemon is up, so the pidfile is
        // already there.
        assert_eq!(st.code(), Some(0), "{program}: {out}{err}");
        let pid =
            read_pid(&pidfile).unwrap_or_else(|| panic!("{program}: no pid in {}", p(&pidfile)));
        let mut guard = Detached { pid: Some(pid) };
        assert!(
            alive(pid),
            "{program}: pid {pid} from the pidfile is not running"
        );
        let log = dir.join(if program == "vmwatch-master" {
            "master.log"
        } else {
            "node.log"
        });
        let text = read_text(&log);
        assert!(
            text.contains(&format!("{program} "))
                && text.contains(&format!("starting (pid {pid},")),
            "{text}"
        );
        assert!(
            err.is_empty(),
            "{program}: a detached daemon prints nothing on success: {err}"
        );

        signal(pid, libc::SIGTERM);
        wait_for(
            &format!("{program} (pid {pid}) to exit on SIGTERM"),
            DAEMON_DEADLINE,
            || (!alive(pid)).then_some(()),
            || tail(&log, 20),
        );
        guard.pid = None;
        assert!(!pidfile.exists(), "{program}: pidfile left behind");
        let text = read_text(&log);
        assert!(text.contains("received SIGTERM, stopping"), "{text}");
        assert!(
            text.trim_end().ends_with("exiting"),
            "{program}: last line:\n{}",
            tail(&log, 5)
        );
    }
}

#[test]
fn a_master_that_cannot_bind_exits_3_and_says_why_even_detached() {
    let dir = TestDir::new("nobind");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().unwrap().port();
    let conf = dir.write_config("master.conf", &master_text(&dir, port, ""));
    let pidfile = dir.join("m.pid");
    let (st, _, err) = run(
        &dir,
        "m",
        &master_bin(),
        &["-c", &p(&conf), "-p", &p(&pidfile)],
    );
    assert_eq!(st.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "vmwatch-master: cannot listen on tcp://127.0.0.1:{port}: Address already in use"
        )),
        "the parent shows the daemon's error:\n{err}"
    );
    assert!(!pidfile.exists(), "pidfile removed after the failed start");
    let log = read_text(&dir.join("master.log"));
    assert!(log.contains("exiting with status 3"), "{log}");

    // In the foreground too.
    let (st, _, err) = run(
        &dir,
        "f",
        &master_bin(),
        &["-f", "-c", &p(&conf), "-p", &p(&pidfile)],
    );
    assert_eq!(st.code(), Some(3), "{err}");
    assert!(err.contains("cannot listen on"), "{err}");
    drop(taken);
}

#[test]
fn sighup_reopens_the_log_file_after_rotation() {
    let dir = TestDir::new("sighup");
    let panel = Panel::new(&dir);
    let (mut m, port) = start_master(&dir, &panel, "");
    let log = dir.join("master.log");
    let rotated = dir.join("master.log.1");
    std::fs::rename(&log, &rotated).expect("rotate the log");
    m.signal(libc::SIGHUP);
    m.wait_log(&format!("log file {} reopened", p(&log)), DAEMON_DEADLINE);
    // Later lines go to the new file too, not to the rotated one.
    let mut c = Client::connect(port, SECRET, "hup");
    c.send(vmwatch::protocol::Body::Heartbeat);
    m.wait_log("node hup is up", DAEMON_DEADLINE);
    let old = read_text(&rotated);
    assert!(old.contains("listening on"), "{old}");
    assert!(
        !old.contains("reopened") && !old.contains("node hup"),
        "{old}"
    );
    assert!(!m.log_text().contains("starting"), "{}", m.log_text());
    assert!(m.stop().success(), "{}", m.report());
    assert!(
        m.log_text().trim_end().ends_with("exiting"),
        "{}",
        m.report()
    );

    // The node too.
    let mut n = start_node(&dir, "node", &node_text(&dir, ""));
    std::fs::rename(dir.join("node.log"), dir.join("node.log.1")).unwrap();
    n.signal(libc::SIGHUP);
    n.wait_log(
        &format!("log file {} reopened", p(&dir.join("node.log"))),
        DAEMON_DEADLINE,
    );
    assert!(n.stop().success(), "{}", n.report());
    assert!(read_text(&dir.join("node.log.1")).contains(" watching "));
}

#[test]
fn syslog_gets_daemon_facility_lines_with_the_program_name_and_pid() {
    let dir = TestDir::new("syslog");
    let sock_path = dir.join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind a syslog socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = free_port();
    dir.write_config(
        "master.conf",
        &master_text(
            &dir,
            port,
            &format!(
                "syslog=yes\nsyslog_socket={}\nsome_new_key=1\n",
                p(&sock_path)
            ),
        ),
    );
    let mut m = spawn_master(&dir, "master");
    let mut got: Vec<String> = Vec::new();
    let start = Instant::now();
    let mut buf = vec![0u8; 8192];
    while start.elapsed() < DAEMON_DEADLINE && !got.iter().any(|l| l.contains("listening on")) {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let pid = m.pid();
    let ident = format!(" vmwatch-master[{pid}]: ");
    let find = |needle: &str| {
        got.iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| {
                panic!(
                    "no syslog line with `{needle}`; got {got:#?}\n{}",
                    m.report()
                )
            })
            .clone()
    };
    let info = find("listening on");
    let warn = find("unknown key `some_new_key` ignored");
    for (line, severity) in [(&info, 6), (&warn, 4)] {
        let pri: u32 = line
            .strip_prefix('<')
            .and_then(|r| r.split_once('>'))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("no <PRI> in {line:?}"));
        assert_eq!(pri >> 3, 3, "facility daemon (3) in {line:?}");
        assert_eq!(pri & 7, severity, "severity in {line:?}");
        assert!(line.contains(&ident), "ident and pid in {line:?}");
    }
    assert!(info.starts_with("<30>"), "{info:?}");
    assert!(warn.starts_with("<28>"), "{warn:?}");
    assert!(m.stop().success(), "{}", m.report());
}

/// Exit status 0, the signal named in the log, and `exiting` as the last line.
fn assert_clean_stop(d: &Daemon, st: std::process::ExitStatus, signal: &str) {
    assert_eq!(st.code(), Some(0), "{}", d.report());
    let log = d.log_text();
    assert!(
        log.contains(&format!("received {signal}, stopping")),
        "{}",
        d.report()
    );
    assert!(log.trim_end().ends_with("exiting"), "{}", d.report());
    // No thread polls for the stop any more: each must be woken by it, and
    // one that was not would be left behind at the stop budget.
    assert!(!log.contains("did not stop in time"), "{}", d.report());
}

#[test]
fn sigint_and_sigterm_stop_cleanly_with_exiting_last() {
    let dir = TestDir::new("signals");
    let panel = Panel::new(&dir);
    let (mut m, _) = start_master(&dir, &panel, "");
    m.signal(libc::SIGINT);
    let st = m.wait_exit(DAEMON_DEADLINE);
    assert_clean_stop(&m, st, "SIGINT");
    assert!(!m.pidfile.exists());

    let mut n = start_node(&dir, "node", &node_text(&dir, ""));
    let pidfile: PathBuf = n.pidfile.clone();
    assert_eq!(read_pid(&pidfile), Some(n.pid()));
    let st = n.stop();
    assert_clean_stop(&n, st, "SIGTERM");
    assert!(!pidfile.exists());
}

#[test]
fn usage_errors_exit_2_help_and_version_exit_0() {
    let dir = TestDir::new("usage");
    for (bin, program) in [
        (master_bin(), "vmwatch-master"),
        (node_bin(), "vmwatch-node"),
    ] {
        let (st, _, err) = run(&dir, "bogus", &bin, &["--bogus"]);
        assert_eq!(st.code(), Some(2), "{err}");
        assert!(err.contains(&format!("Try `{program} --help`")), "{err}");
        let (st, _, err) = run(&dir, "extra", &bin, &["-f", "stray"]);
        assert_eq!(st.code(), Some(2), "{err}");
        assert!(err.contains("unexpected argument `stray`"), "{err}");
        let (st, out, _) = run(&dir, "version", &bin, &["-V"]);
        assert_eq!(st.code(), Some(0));
        assert_eq!(
            out.trim(),
            format!("{program} {}", env!("CARGO_PKG_VERSION"))
        );
        let (st, out, _) = run(&dir, "help", &bin, &["-h"]);
        assert_eq!(st.code(), Some(0));
        assert!(
            out.contains("--check-config")
                && out.contains(
                    "Exit status: 0 ok, 1 configuration error, 2 usage error, 3 runtime failure"
                ),
            "{out}"
        );
    }
    // Both have --status (issue 9); it reads the configuration for the
    // file's path, so a missing configuration is a configuration error.
    let (st, _, err) = run(
        &dir,
        "status",
        &node_bin(),
        &["--status", "-c", "/nonexistent.conf"],
    );
    assert_eq!(st.code(), Some(1), "{err}");
}

/// The write end of a pipe whose read end is already closed: every write to
/// it fails with EPIPE, as `head -1`'s pipe does once head has exited.
fn closed_pipe() -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: `fds` is two ints for pipe2(2) to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just opened both descriptors; nothing else owns them.
    let (read, write) = unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    drop(read);
    write
}

/// A master's state file with `n` domains: `--status` prints a line for
/// each, far more than a pipe holds.
fn big_state_file(dir: &TestDir, n: usize) -> PathBuf {
    let mut text = format!(
        "version 1\nwritten {}\nstarted 1\nnode n1 up 1 {n}\n",
        now_ms()
    );
    for i in 0..n {
        text.push_str(&format!(
            "domain n1 00000000-0000-0000-0000-{i:012x} running 1 vm{i} booted\n"
        ));
    }
    text.push_str("end\n");
    let path = dir.join("master.state");
    std::fs::write(&path, text).unwrap();
    path
}

/// Every command that only prints (`--status`, `--check-config`, `-h`,
/// `-V`, check_vmwatch `-v`) ends quietly when its output is a closed pipe:
/// killed by SIGPIPE, as coreutils are, not a panic ("failed printing to
/// stdout") or an abort.
#[test]
fn printing_commands_end_quietly_on_a_closed_pipe() {
    use std::os::unix::process::ExitStatusExt;
    let dir = TestDir::new("epipe");
    let state = big_state_file(&dir, 50);
    let mconf = dir.write_config("master.conf", &master_text(&dir, free_port(), ""));
    let status_file = dir.join("node.status");
    std::fs::write(&status_file, "version 1\nwritten 1\nend\n").unwrap();
    let nconf = dir.write_config(
        "node.conf",
        &node_text(&dir, &format!("status_file={}\n", p(&status_file))),
    );
    let check = plugin_bin();
    let memory = dir.join("nagios");
    std::fs::create_dir(&memory).unwrap();
    let (mconf, nconf, state, memory) = (p(&mconf), p(&nconf), p(&state), p(&memory));
    let cases: Vec<(PathBuf, Vec<&str>)> = vec![
        (master_bin(), vec!["-c", &mconf, "--status"]),
        (master_bin(), vec!["-c", &mconf, "--check-config"]),
        (master_bin(), vec!["-h"]),
        (master_bin(), vec!["-V"]),
        (node_bin(), vec!["-c", &nconf, "--status"]),
        (node_bin(), vec!["-c", &nconf, "--check-config"]),
        (node_bin(), vec!["-h"]),
        (
            check.clone(),
            vec!["-M", "master", "-f", &state, "-m", &memory, "-v"],
        ),
        (check.clone(), vec!["-h"]),
    ];
    for (bin, args) in cases {
        let what = format!("{} {}", bin.display(), args.join(" "));
        let err_path = dir.join("epipe.err");
        let mut child = Command::new(&bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(closed_pipe())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        let status = wait_for(
            &format!("{what} to exit"),
            DAEMON_DEADLINE,
            || child.try_wait().expect("wait"),
            || read_text(&err_path),
        );
        let err = read_text(&err_path);
        assert_eq!(
            status.signal(),
            Some(libc::SIGPIPE),
            "{what}: {status:?}, stderr: {err}"
        );
        assert!(err.is_empty(), "{what}: nothing on stderr, got: {err}");
    }
}

/// `vmwatch-master --status | head -1`: head gets the first line and the
/// master, writing far more than the pipe holds, ends by SIGPIPE without a
/// word on stderr.
#[test]
fn status_piped_into_head_ends_by_sigpipe() {
    use std::os::unix::process::ExitStatusExt;
    let dir = TestDir::new("head");
    big_state_file(&dir, 5000);
    let conf = dir.write_config("master.conf", &master_text(&dir, free_port(), ""));
    let err_path = dir.join("status.err");
    let mut master = Command::new(master_bin())
        .arg("-c")
        .arg(&conf)
        .arg("--status")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("run vmwatch-master --status");
    let head = Command::new("head")
        .arg("-1")
        .stdin(master.stdout.take().unwrap())
        .output()
        .expect("run head");
    let status = wait_for(
        "vmwatch-master --status to exit",
        DAEMON_DEADLINE,
        || master.try_wait().expect("wait"),
        || read_text(&err_path),
    );
    let first = String::from_utf8_lossy(&head.stdout);
    let (_, whole, _) = run(&dir, "whole", &master_bin(), &["-c", &p(&conf), "--status"]);
    assert!(whole.len() > 200_000, "{} bytes", whole.len());
    assert_eq!(first, format!("{}\n", whole.lines().next().unwrap()));
    let err = read_text(&err_path);
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}: {err}");
    assert!(err.is_empty(), "{err}");
}

/// The daemons keep ignoring SIGPIPE: a foreground master whose stdout and
/// stderr (where it mirrors its log) are a closed pipe keeps running, logs
/// to its file, and stops cleanly on SIGTERM.
#[test]
fn a_daemon_is_not_killed_by_sigpipe() {
    let dir = TestDir::new("daemon-epipe");
    let conf = dir.write_config("master.conf", &master_text(&dir, free_port(), ""));
    let pidfile = dir.join("master.pid");
    let mut child = Command::new(master_bin())
        .arg("-f")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&pidfile)
        .stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(closed_pipe())
        .spawn()
        .expect("run vmwatch-master");
    let log = dir.join("master.log");
    wait_for(
        "the master to listen",
        DAEMON_DEADLINE,
        || read_text(&log).contains("listening on").then_some(()),
        || format!("log: {}", read_text(&log)),
    );
    // A state file written after the log lines that hit the closed pipe.
    wait_for(
        "a state file",
        DAEMON_DEADLINE,
        || master_state(&dir).written_ms.map(|_| ()),
        || format!("log: {}", read_text(&log)),
    );
    assert!(child.try_wait().unwrap().is_none(), "{}", read_text(&log));
    signal(child.id(), libc::SIGTERM);
    let status = wait_for(
        "the master to stop",
        DAEMON_DEADLINE,
        || child.try_wait().expect("wait"),
        || read_text(&log),
    );
    assert_eq!(status.code(), Some(0), "{status:?}: {}", read_text(&log));
    assert!(
        read_text(&log).trim_end().ends_with("exiting"),
        "{}",
        read_text(&log)
    );
}
