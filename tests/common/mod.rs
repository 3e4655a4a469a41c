//! Shared harness of vmwatch's integration and end-to-end tests.
//!
//! Every test runs the real binaries, as an operator or an init script would:
//! in its own temporary directory ([`TestDir`]), with generated configuration
//! files (mode 0600), loopback ports found free at run time, a pidfile in that
//! directory, and a recording panel command ([`Panel`]) in place of the
//! control panel. Daemons run in the foreground (`-f`) and are killed when
//! their [`Daemon`] handle drops, so a failing test never leaks a process; the
//! temporary directory is removed when a test passes and kept (its path
//! printed) when it fails.
//!
//! Waiting is always by polling a condition with a bounded deadline
//! ([`wait_for`]), never a fixed sleep; a timeout fails the test with the
//! tails of the logs and what the panel received. [`Client`] is a signing
//! ZeroMQ client built on the library's own protocol code, for feeding a
//! master hand-made (and hostile) messages; [`guest`] drives real QEMU guests
//! through the machine's libvirtd; [`master`] holds what the tests that
//! drive a master by hand share. One test binary compiles this once
//! (tests/integration.rs), and the compiler warns of any helper no test uses.

pub mod guest;
pub mod master;
pub mod nagios;
pub mod ops;
pub mod procfs;
pub mod second_libvirtd;
pub mod zmtp;

pub use master::*;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vmwatch::protocol::{encode, Body, DomainId, DomainState, Event, Header, Message};
use vmwatch::vocab::{Detail, EventKind, Reason, State};

/// The shared secret most tests use (26 characters, so no "short secret"
/// warning).
pub const SECRET: &str = "TESTSECRET0123456789ABCDEF";

/// Deadline for a daemon to start or stop.
pub const DAEMON_DEADLINE: Duration = Duration::from_secs(20);
/// Deadline for a message or a libvirt event to reach the panel.
pub const PANEL_DEADLINE: Duration = Duration::from_secs(30);

/// The master binary under test: `VMWATCH_MASTER_BIN` if set (release and
/// packaged builds), else the one cargo built for this test run.
pub fn master_bin() -> PathBuf {
    match std::env::var_os("VMWATCH_MASTER_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_vmwatch-master")),
    }
}

/// The node binary under test: `VMWATCH_NODE_BIN` if set.
pub fn node_bin() -> PathBuf {
    match std::env::var_os("VMWATCH_NODE_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_vmwatch-node")),
    }
}

/// The monitoring plugin cargo built for this test run.
pub fn plugin_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_check_vmwatch"))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory for one test, under the system temp dir. Removed on
/// drop when the test passed; kept, and its path printed, when it failed (or
/// when `VMWATCH_TEST_KEEP` is set, to look at what a passing test saw).
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let n = DIRS.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("vmwatch-test-{}-{n}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes a configuration file with mode 0600, as the panel does (the
    /// daemons warn about a secret readable by others).
    pub fn write_config(&self, name: &str, text: &str) -> PathBuf {
        let path = self.join(name);
        write_private(&path, text.as_bytes());
        path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("VMWATCH_TEST_KEEP").is_some() {
            eprintln!("test files kept in {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Writes `bytes` to a new file of mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) {
    let _ = fs::remove_file(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    f.write_all(bytes)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

/// Whether something could bind `127.0.0.1:port` right now.
pub fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Polls `probe` until it returns `Some`, for at most `timeout`. On timeout
/// the test fails with `what` and whatever `context` says (log tails, panel
/// records).
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    let mut nap = Duration::from_millis(5);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if start.elapsed() >= timeout {
            panic!(
                "timed out after {:.1} s waiting for {what}\n{}",
                timeout.as_secs_f64(),
                context()
            );
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(100));
    }
}

/// The last `n` lines of a text file, or a note that it is missing.
pub fn tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(n);
            lines[from..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// Reads a file that may not exist yet as text.
pub fn read_text(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Sends `sig` to `pid`; false if there is no such process.
pub fn signal(pid: u32, sig: i32) -> bool {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as i32, sig) == 0 }
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
}

/// A daemon started by a test. Killed (SIGKILL) on drop if still running.
pub struct Daemon {
    pub program: &'static str,
    child: Child,
    status: Option<ExitStatus>,
    pub config: PathBuf,
    pub log: PathBuf,
    pub pidfile: PathBuf,
    /// Standard output and error of the process (the foreground log copy).
    pub stderr: PathBuf,
    /// Length of the log file when this process started: [`wait_log`]
    /// looks only at what it wrote, not at an earlier run's lines.
    log_from: usize,
}

impl Daemon {
    /// Starts `bin -f -c CONFIG -p PIDFILE` plus `extra` arguments; `log` is
    /// where its configuration sends the log file. Output goes to
    /// `<tag>.stderr` in `dir`.
    pub fn spawn(
        program: &'static str,
        bin: &Path,
        dir: &TestDir,
        tag: &str,
        config: &Path,
        log: &Path,
        extra: &[&str],
    ) -> Daemon {
        Daemon::spawn_env(program, bin, dir, tag, config, log, extra, &[])
    }

    /// As [`spawn`](Self::spawn), with `env` added to its environment (e.g.
    /// libfaketime's, to step its wall clock).
    #[allow(clippy::too_many_arguments)]
    pub fn spawn_env(
        program: &'static str,
        bin: &Path,
        dir: &TestDir,
        tag: &str,
        config: &Path,
        log: &Path,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Daemon {
        let pidfile = dir.join(&format!("{tag}.pid"));
        let log_from = read_text(log).len();
        let stderr = dir.join(&format!("{tag}.stderr"));
        let out = File::create(&stderr).expect("create stderr file");
        let child = Command::new(bin)
            .arg("-f")
            .arg("-c")
            .arg(config)
            .arg("-p")
            .arg(&pidfile)
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup stderr file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        Daemon {
            program,
            child,
            status: None,
            config: config.to_path_buf(),
            log: log.to_path_buf(),
            pidfile,
            stderr,
            log_from,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, sig: i32) {
        assert!(
            self.status.is_none(),
            "{} already exited ({:?})\n{}",
            self.program,
            self.status,
            self.report()
        );
        signal(self.pid(), sig);
    }

    /// The exit status if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("wait for a daemon");
        }
        self.status
    }

    /// Waits for the daemon to exit on its own, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let what = format!("{} (pid {}) to exit", self.program, self.pid());
        let report = self.report_fn();
        wait_for(&what, timeout, || self.try_status(), report)
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(DAEMON_DEADLINE)
    }

    /// The whole log file.
    pub fn log_text(&self) -> String {
        read_text(&self.log)
    }

    /// What the process wrote on stdout and stderr.
    pub fn stderr_text(&self) -> String {
        read_text(&self.stderr)
    }

    /// Waits until this process has written `needle` to its log (an earlier
    /// run's lines in the same file do not count); fails early if it exits.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) {
        let what = format!("`{needle}` in the {} log", self.program);
        let (log, from) = (self.log.clone(), self.log_from);
        let report = self.report_fn();
        let mut exited = None;
        wait_for(
            &what,
            timeout,
            || {
                // Only this process's lines (a rotated, shorter file is all new).
                let text = read_text(&log);
                if text.get(from..).unwrap_or(&text).contains(needle) {
                    return Some(());
                }
                if exited.is_some() {
                    panic!(
                        "{} exited ({exited:?}) before logging `{needle}`\n{}",
                        self.program,
                        report()
                    );
                }
                exited = self.try_status();
                None
            },
            &report,
        );
    }

    /// Log lines that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// Tails of the log and of stderr, for failure messages.
    pub fn report(&self) -> String {
        report_files(self.program, &self.log, &self.stderr)
    }

    fn report_fn(&self) -> impl Fn() -> String {
        let (p, l, s) = (self.program, self.log.clone(), self.stderr.clone());
        move || report_files(p, &l, &s)
    }
}

fn report_files(program: &str, log: &Path, stderr: &Path) -> String {
    format!(
        "--- {program} log {} (tail):\n{}\n--- {program} stdout/stderr (tail):\n{}\n",
        log.display(),
        tail(log, 40),
        tail(stderr, 15)
    )
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Tails of several daemons' logs plus what the panel received.
pub fn report(daemons: &[&Daemon], panel: Option<&Panel>) -> String {
    let mut s = String::new();
    for d in daemons {
        s.push_str(&d.report());
    }
    if let Some(p) = panel {
        s.push_str(&p.report());
    }
    s
}

/// One line the panel command received: `FUNCTION key=value ...`, values
/// percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelLine {
    pub function: String,
    pub fields: Vec<(String, String)>,
    pub raw: String,
}

impl PanelLine {
    /// Parses a line strictly: the panel contract says every field is
    /// `key=value` with a non-empty percent-encoded value.
    pub fn parse(raw: &str) -> PanelLine {
        let mut words = raw.split(' ');
        let function = words.next().unwrap_or("").to_string();
        assert!(
            function.starts_with("vmwatch."),
            "panel line does not start with a vmwatch function: {raw:?}"
        );
        let fields = words
            .map(|w| {
                let (k, v) = w
                    .split_once('=')
                    .unwrap_or_else(|| panic!("field {w:?} is not key=value in {raw:?}"));
                let v = vmwatch::kvline::unescape(v)
                    .unwrap_or_else(|e| panic!("bad encoding of {w:?} in {raw:?}: {e}"));
                (k.to_string(), v)
            })
            .collect();
        PanelLine {
            function,
            fields,
            raw: raw.to_string(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A field that must be there.
    pub fn field(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("no `{key}` in panel line {:?}", self.raw))
    }

    /// A `vmwatch.domain` line for `uuid`.
    pub fn is_domain(&self, uuid: &str) -> bool {
        self.function == "vmwatch.domain" && self.get("uuid") == Some(uuid)
    }

    /// A `vmwatch.reboot` line for `uuid`.
    pub fn is_reboot(&self, uuid: &str) -> bool {
        self.function == "vmwatch.reboot" && self.get("uuid") == Some(uuid)
    }
}

/// Complete lines (ending in a newline) of a file being appended to.
fn complete_lines(path: &Path) -> Vec<PanelLine> {
    let text = read_text(path);
    let end = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
    text[..end].lines().map(PanelLine::parse).collect()
}

/// A stand-in for the control panel: a shell script used as
/// `panel_command`. It appends every batch it accepts to `received`, and
/// notes each call (`ok|fail N VMWATCH_UPDATES`) in `calls`. While the file
/// `fail` exists it refuses batches (exit 1, batch appended to `refused`);
/// while `hang` exists it waits for a child `sleep 120` without reading its
/// input (both pids go to `hung.pids`), so the master must kill the whole
/// process group after `panel_timeout`. While `slow` exists (holding a
/// delay such as `0.1`) it takes one line per delay, reporting `applied N`
/// after each as docs/panel-api.md allows; while `sleepfail` exists
/// (holding seconds) it waits that long and then refuses the batch; while
/// `flaky` exists it refuses every other call. While `refuse` exists
/// (holding a text, e.g. a UUID) it refuses each line containing that text
/// alone, as docs/panel-api.md allows (`refused K ...`, the line appended
/// to `refused.lines`), takes the others, says `applied K` after every
/// line and exits 0, as the shipped wrapper does for a VM the panel does
/// not know.
pub struct Panel {
    dir: PathBuf,
    pub command: PathBuf,
}

impl Panel {
    pub fn new(dir: &TestDir) -> Panel {
        let pdir = dir.join("panel");
        fs::create_dir_all(&pdir).expect("create panel dir");
        let command = pdir.join("panel.sh");
        let script = format!(
            r#"#!/bin/sh
# vmwatch test panel: records what the master hands over.
d='{dir}'
if [ -e "$d/hang" ]; then
    echo "hang - ${{VMWATCH_UPDATES:-unset}}" >> "$d/calls"
    sleep 120 &
    echo "$$" >> "$d/hung.pids"
    echo "$!" >> "$d/hung.pids"
    wait
    exit 1
fi
batch="$d/batch.$$"
cat > "$batch"
n=$(wc -l < "$batch")
if [ -e "$d/sleepfail" ]; then
    echo "$$" >> "$d/sleeping"
    sleep "$(cat "$d/sleepfail")"
    echo "sleepfail $n ${{VMWATCH_UPDATES:-unset}}" >> "$d/calls"
    rm -f "$batch"
    exit 1
fi
if [ -e "$d/flaky" ]; then
    if [ -e "$d/flaky.odd" ]; then
        rm -f "$d/flaky.odd"
    else
        : > "$d/flaky.odd"
        cat "$batch" >> "$d/refused"
        rm -f "$batch"
        echo "flaky $n ${{VMWATCH_UPDATES:-unset}}" >> "$d/calls"
        exit 1
    fi
fi
if [ -e "$d/slow" ]; then
    delay=$(cat "$d/slow")
    i=0
    while IFS= read -r line; do
        sleep "$delay"
        printf '%s\n' "$line" >> "$d/received"
        i=$((i + 1))
        echo "applied $i"
    done < "$batch"
    rm -f "$batch"
    echo "slow $n ${{VMWATCH_UPDATES:-unset}}" >> "$d/calls"
    exit 0
fi
if [ -e "$d/refuse" ]; then
    pat=$(cat "$d/refuse")
    i=0
    while IFS= read -r line; do
        i=$((i + 1))
        case "$line" in
        *"$pat"*)
            printf '%s\n' "$line" >> "$d/refused.lines"
            echo "refused $i test panel: no VM with $pat here" ;;
        *) printf '%s\n' "$line" >> "$d/received" ;;
        esac
        echo "applied $i"
    done < "$batch"
    rm -f "$batch"
    echo "refuse $n ${{VMWATCH_UPDATES:-unset}}" >> "$d/calls"
    exit 0
fi
if [ -e "$d/fail" ]; then
    cat "$batch" >> "$d/refused"
    rm -f "$batch"
    echo "fail $n ${{VMWATCH_UPDATES:-unset}}" >> "$d/calls"
    echo "test panel refuses this batch: $d/fail exists" >&2
    exit 1
fi
cat "$batch" >> "$d/received"
rm -f "$batch"
echo "ok $n ${{VMWATCH_UPDATES:-unset}}" >> "$d/calls"
exit 0
"#,
            dir = pdir.display()
        );
        let _ = fs::remove_file(&command);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&command)
            .expect("create panel script");
        f.write_all(script.as_bytes()).expect("write panel script");
        Panel { dir: pdir, command }
    }

    fn marker(&self, name: &str, on: bool) {
        let p = self.dir.join(name);
        if on {
            fs::write(&p, b"").expect("create panel marker");
        } else {
            let _ = fs::remove_file(&p);
        }
    }

    /// Makes the panel refuse (exit 1) every batch until `fail(false)`.
    pub fn fail(&self, on: bool) {
        self.marker("fail", on);
    }

    /// Makes the panel take one line per `delay` (e.g. "0.1" s), or normal
    /// again with `None`.
    pub fn slow(&self, delay: Option<&str>) {
        match delay {
            Some(d) => fs::write(self.dir.join("slow"), d).expect("slow marker"),
            None => self.marker("slow", false),
        }
    }

    /// Makes every call wait `secs` and then fail, or normal with `None`.
    pub fn sleep_fail(&self, secs: Option<&str>) {
        match secs {
            Some(d) => fs::write(self.dir.join("sleepfail"), d).expect("sleepfail marker"),
            None => self.marker("sleepfail", false),
        }
    }

    /// Makes the panel refuse, line by line, every line containing `text`
    /// (a UUID), taking the others; normal again with `None`.
    pub fn refuse_lines_with(&self, text: Option<&str>) {
        match text {
            Some(t) => fs::write(self.dir.join("refuse"), t).expect("refuse marker"),
            None => self.marker("refuse", false),
        }
    }

    /// The lines the panel refused one by one (`refuse_lines_with`), each
    /// time it refused them.
    pub fn refused_lines(&self) -> Vec<PanelLine> {
        complete_lines(&self.dir.join("refused.lines"))
    }

    /// Makes the panel refuse every other call, until `flaky(false)`.
    pub fn flaky(&self, on: bool) {
        self.marker("flaky", on);
    }

    /// Makes the panel hang until killed, until `hang(false)`.
    pub fn hang(&self, on: bool) {
        self.marker("hang", on);
    }

    /// The file the accepted lines are appended to.
    pub fn received_path(&self) -> PathBuf {
        self.dir.join("received")
    }

    /// Every line the panel accepted, in order.
    pub fn lines(&self) -> Vec<PanelLine> {
        complete_lines(&self.dir.join("received"))
    }

    /// Lines of the batches the panel refused.
    pub fn refused(&self) -> Vec<PanelLine> {
        complete_lines(&self.dir.join("refused"))
    }

    /// One entry per call: (outcome, lines read, VMWATCH_UPDATES).
    pub fn calls(&self) -> Vec<(String, String, String)> {
        read_text(&self.dir.join("calls"))
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((
                    w.next()?.to_string(),
                    w.next()?.to_string(),
                    w.next()?.to_string(),
                ))
            })
            .collect()
    }

    /// Pids of the panel processes that hung: each script and its `sleep`.
    pub fn hung_pids(&self) -> Vec<u32> {
        read_text(&self.dir.join("hung.pids"))
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// `vmwatch.domain` lines for one domain, in order.
    pub fn domain_lines(&self, uuid: &str) -> Vec<PanelLine> {
        self.lines()
            .into_iter()
            .filter(|l| l.is_domain(uuid))
            .collect()
    }

    /// What the panel got, for failure messages.
    pub fn report(&self) -> String {
        format!(
            "--- panel received ({}):\n{}\n--- panel calls:\n{}\n",
            self.dir.join("received").display(),
            tail(&self.dir.join("received"), 40),
            tail(&self.dir.join("calls"), 15)
        )
    }
}

/// Master configuration text for a test: loopback `port`, everything in `dir`,
/// syslog off; `extra` lines are appended (a later key overrides).
pub fn master_config_text(
    dir: &TestDir,
    port: u16,
    secret: &str,
    panel: &Panel,
    extra: &str,
) -> String {
    format!(
        "listen=tcp://127.0.0.1:{port}\nsecret={secret}\nlog={log}\nsyslog=no\n\
         panel_command={panel}\npanel_timeout=10\nstate_file={state}\n{extra}",
        log = dir.join("master.log").display(),
        panel = panel.command.display(),
        state = dir.join("master.state").display(),
    )
}

/// The master's state file in `dir`, parsed by the master's own reader.
pub fn master_state(dir: &TestDir) -> vmwatch::master::statefile::StateFile {
    let path = dir.join("master.state");
    let bytes = std::fs::read(&path).unwrap_or_default();
    vmwatch::master::statefile::parse(&path.display().to_string(), &bytes)
}

/// The state of `uuid` in the master's state file, if it lists it.
pub fn saved_state(dir: &TestDir, uuid: &str) -> Option<String> {
    master_state(dir)
        .domains
        .into_iter()
        .find(|d| d.uuid == uuid)
        .map(|d| d.record.state.to_string())
}

/// Starts a master on a free loopback port and waits until it listens.
pub fn start_master(dir: &TestDir, panel: &Panel, extra: &str) -> (Daemon, u16) {
    let port = free_port();
    dir.write_config(
        "master.conf",
        &master_config_text(dir, port, SECRET, panel, extra),
    );
    (start_master_conf(dir, "master"), port)
}

/// Node configuration text: `tag` names its log and its reboot file (a node
/// started again with the same tag goes on with the same reboot ids);
/// syslog off.
pub fn node_config_text(
    dir: &TestDir,
    tag: &str,
    port: u16,
    secret: &str,
    node_id: &str,
    uri: &str,
    extra: &str,
) -> String {
    format!(
        "connect=tcp://127.0.0.1:{port}\nsecret={secret}\nnode_id={node_id}\nuri={uri}\n\
         log={log}\nsyslog=no\nreboot_file={reboots}\n{extra}",
        log = dir.join(&format!("{tag}.log")).display(),
        reboots = dir.join(&format!("{tag}.reboots")).display(),
    )
}

/// Starts a node (config `<tag>.conf`, log `<tag>.log`) and waits until it
/// watches libvirt.
pub fn start_node(dir: &TestDir, tag: &str, config_text: &str) -> Daemon {
    start_node_env(dir, tag, config_text, &[])
}

/// As [`start_node`], with `env` added to its environment (e.g.
/// libfaketime's, to step its wall clock).
pub fn start_node_env(
    dir: &TestDir,
    tag: &str,
    config_text: &str,
    env: &[(String, String)],
) -> Daemon {
    let config = dir.write_config(&format!("{tag}.conf"), config_text);
    let mut n = Daemon::spawn_env(
        "vmwatch-node",
        &node_bin(),
        dir,
        tag,
        &config,
        &dir.join(&format!("{tag}.log")),
        &[],
        env,
    );
    n.wait_log(" watching ", DAEMON_DEADLINE);
    n
}

/// [`start_node`] with tag `node` and the usual secret: a node with id
/// `node_id` watching `uri`, sending to the master on loopback `port`.
pub fn start_node_at(dir: &TestDir, port: u16, node_id: &str, uri: &str, extra: &str) -> Daemon {
    start_node(
        dir,
        "node",
        &node_config_text(dir, "node", port, SECRET, node_id, uri, extra),
    )
}

static UUIDS: AtomicUsize = AtomicUsize::new(1);

/// A UUID unique to this test process, for hand-made domains.
pub fn test_uuid() -> String {
    let n = UUIDS.fetch_add(1, Ordering::SeqCst);
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        std::process::id(),
        n as u64
    )
}

/// A lifecycle event record as a node would send it.
pub fn event(uuid: &str, name: &str, event: &str, detail: &str) -> Event {
    Event {
        domain: DomainId {
            uuid: uuid.to_string(),
            name: name.to_string(),
        },
        event: EventKind::parse(event).unwrap_or_else(|| panic!("event `{event}`")),
        detail: Detail::parse(EventKind::parse(event).unwrap(), detail)
            .unwrap_or_else(|| panic!("detail `{detail}` of `{event}`")),
        time_ms: now_ms(),
        reboots: None,
        rebootid: None,
    }
}

/// A snapshot record.
pub fn domain_state(uuid: &str, name: &str, state: &str, reason: &str) -> DomainState {
    DomainState {
        domain: DomainId {
            uuid: uuid.to_string(),
            name: name.to_string(),
        },
        state: State::parse(state).unwrap_or_else(|| panic!("state `{state}`")),
        reason: Reason::parse(State::parse(state).unwrap(), reason)
            .unwrap_or_else(|| panic!("reason `{reason}` of `{state}`")),
        reboots: None,
        rebootid: None,
    }
}

/// A hand-driven node: a ZeroMQ PUSH socket connected to a master, signing
/// with the library's protocol code (docs/protocol.md, "Writing a client").
pub struct Client {
    socket: zmq::Socket,
    _ctx: zmq::Context,
    port: u16,
    pub secret: Vec<u8>,
    pub node: String,
    /// The libvirt host UUID sent as `host=` (none by default, as old nodes).
    pub host: Option<String>,
    pub instance: u64,
    pub seq: u64,
}

static INSTANCES: AtomicUsize = AtomicUsize::new(1);

impl Client {
    pub fn connect(port: u16, secret: &str, node: &str) -> Client {
        let ctx = zmq::Context::new();
        let socket = Client::socket(&ctx, port, secret, node);
        let instance = (u64::from(std::process::id()) << 32)
            | (INSTANCES.fetch_add(1, Ordering::SeqCst) as u64)
            | (1 << 63);
        Client {
            socket,
            _ctx: ctx,
            port,
            secret: secret.as_bytes().to_vec(),
            node: node.to_string(),
            host: None,
            instance,
            seq: 0,
        }
    }

    /// A PUSH socket connecting with a fresh handshake credential.
    fn socket(ctx: &zmq::Context, port: u16, secret: &str, node: &str) -> zmq::Socket {
        let socket = ctx.socket(zmq::PUSH).expect("PUSH socket");
        socket.set_sndtimeo(10_000).expect("ZMQ_SNDTIMEO");
        socket.set_linger(2_000).expect("ZMQ_LINGER");
        vmwatch::handshake::Credential::fresh(
            &vmwatch::protocol::MacKey::new(secret.as_bytes()),
            node,
        )
        .set_on(&socket)
        .expect("ZMQ_PLAIN_USERNAME");
        socket
            .connect(&format!("tcp://127.0.0.1:{port}"))
            .expect("connect to the master");
        socket
    }

    /// What a node does after its master restarted (docs/protocol.md,
    /// "Handshake"): a new socket with a fresh credential, the same
    /// instance and sequence.
    pub fn reconnect(&mut self) {
        let secret = String::from_utf8(self.secret.clone()).expect("UTF-8 secret");
        let socket = Client::socket(&self._ctx, self.port, &secret, &self.node);
        let old = std::mem::replace(&mut self.socket, socket);
        let _ = old.set_linger(0);
    }

    /// The next header: sequence + 1, signed now.
    pub fn header(&mut self) -> Header {
        self.seq += 1;
        Header {
            node: self.node.clone(),
            instance: self.instance,
            seq: self.seq,
            ts_ms: now_ms(),
            host: self.host.clone(),
        }
    }

    /// A correctly signed message carrying `body`, not sent.
    pub fn frames(&mut self, body: Body) -> Vec<Vec<u8>> {
        let header = self.header();
        encode(&self.secret, &Message { header, body }).to_vec()
    }

    /// Signs and sends `body`; returns the frames sent (for replays).
    pub fn send(&mut self, body: Body) -> Vec<Vec<u8>> {
        let frames = self.frames(body);
        self.send_frames(&frames);
        frames
    }

    /// Sends arbitrary frames as one multipart message.
    pub fn send_frames(&self, frames: &[Vec<u8>]) {
        self.socket
            .send_multipart(frames.iter(), 0)
            .expect("send to the master (ZMQ_SNDTIMEO 10 s)");
    }
}
