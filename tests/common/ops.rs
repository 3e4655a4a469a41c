//! The operators' own tools, run for real by the tests of issue 19: a
//! syslog daemon ([`Rsyslog`]) with the test's own configuration, socket
//! and output file, never the machine's /dev/log or its running services.
//!
//! The packages come from tests/support/setup-nagios.sh, which installs them
//! without starting the machine's own daemons (`make setup` runs it); the
//! tests only check that they are there ([`require_tools`]).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::{alive, read_text, signal, tail, wait_for, TestDir, DAEMON_DEADLINE};

/// Fails at once, saying what is missing and how to get it, unless
/// tests/support/setup-nagios.sh has set this host up: Nagios, check_by_ssh,
/// openssh-server, rsyslog, logrotate, carbon-cache and python3-whisper, and
/// the user `vmwatch-check`. The tests install nothing themselves: `make
/// setup` (tests/support/setup-host.sh, which runs that script) does.
pub fn require_tools() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/setup-nagios.sh");
    let st = Command::new("bash")
        .arg(script)
        .arg("--check")
        .status()
        .expect("run setup-nagios.sh --check");
    assert!(
        st.success(),
        "this host is not set up for this test (above: what is missing); run `make setup` as root"
    );
}

/// A real rsyslogd (`rsyslogd -n -f CONFIG -i PIDFILE`) listening on its own
/// socket under the test directory (imuxsock, no system socket, no rate
/// limit), writing every message to `out` as
/// `FACILITY SEVERITY PROGRAM PID MSG`, parsed by rsyslog itself.
pub struct Rsyslog {
    pub socket: PathBuf,
    pub out: PathBuf,
    config: PathBuf,
    pidfile: PathBuf,
    stderr: PathBuf,
    child: Option<Child>,
}

/// One line rsyslog wrote: what it parsed out of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub facility: String,
    pub severity: String,
    pub program: String,
    pub pid: String,
    pub msg: String,
}

impl Rsyslog {
    /// Writes the configuration into `dir/rsyslog` and starts the daemon.
    pub fn start(dir: &TestDir) -> Rsyslog {
        let d = dir.join("rsyslog");
        std::fs::create_dir_all(&d).expect("create the rsyslog directory");
        let socket = d.join("log.sock");
        let out = d.join("messages");
        let config = d.join("rsyslog.conf");
        let text = format!(
            "# rsyslog for a vmwatch test: its own socket and output only.\n\
             global(workDirectory=\"{d}\")\n\
             module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
             input(type=\"imuxsock\" Socket=\"{sock}\" RateLimit.Interval=\"0\")\n\
             template(name=\"vmwatch\" type=\"string\" \
             string=\"%syslogfacility-text% %syslogseverity-text% %programname% %procid% %msg%\\n\")\n\
             *.* action(type=\"omfile\" file=\"{out}\" template=\"vmwatch\")\n",
            d = d.display(),
            sock = socket.display(),
            out = out.display()
        );
        std::fs::write(&config, text).expect("write rsyslog.conf");
        let check = Command::new("rsyslogd")
            .arg("-N1")
            .arg("-f")
            .arg(&config)
            .output()
            .expect("run rsyslogd -N1 (package rsyslog)");
        assert!(
            check.status.success(),
            "rsyslogd -N1 refused the test configuration:\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let mut r = Rsyslog {
            socket,
            out,
            config,
            pidfile: d.join("rsyslogd.pid"),
            stderr: d.join("rsyslogd.stderr"),
            child: None,
        };
        r.run();
        r
    }

    /// Starts rsyslogd on the configuration and waits for its socket.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "rsyslogd is already running");
        let err = std::fs::File::create(&self.stderr).expect("create rsyslogd.stderr");
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&self.config)
            .arg("-i")
            .arg(&self.pidfile)
            .stdin(Stdio::null())
            .stdout(err.try_clone().expect("dup"))
            .stderr(err)
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
        let sock = self.socket.clone();
        wait_for(
            "rsyslogd to create its socket",
            DAEMON_DEADLINE,
            || sock.exists().then_some(()),
            || self.report(),
        );
    }

    /// SIGTERM, and waits until it has exited (its socket is gone then).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(child.id(), libc::SIGTERM);
        wait_for(
            "rsyslogd to exit",
            DAEMON_DEADLINE,
            || child.try_wait().ok().flatten(),
            || self.report(),
        );
        assert!(!self.socket.exists(), "rsyslogd left its socket behind");
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id).filter(|&p| alive(p))
    }

    /// Every line rsyslog wrote so far, as it parsed them.
    pub fn lines(&self) -> Vec<Parsed> {
        read_text(&self.out)
            .lines()
            .filter_map(|l| {
                let mut w = l.splitn(5, ' ');
                Some(Parsed {
                    facility: w.next()?.to_string(),
                    severity: w.next()?.to_string(),
                    program: w.next()?.to_string(),
                    pid: w.next()?.to_string(),
                    // rsyslog keeps the space that follows `PROGRAM[PID]:`.
                    msg: w.next()?.trim_start().to_string(),
                })
            })
            .collect()
    }

    /// Waits for a line of `program` whose message contains `needle`.
    pub fn wait_line(&self, program: &str, needle: &str, context: &dyn Fn() -> String) -> Parsed {
        wait_for(
            &format!("rsyslog to write a line of {program} with `{needle}`"),
            DAEMON_DEADLINE,
            || {
                self.lines()
                    .into_iter()
                    .find(|p| p.program == program && p.msg.contains(needle))
            },
            || format!("{}{}", self.report(), context()),
        )
    }

    pub fn report(&self) -> String {
        format!(
            "--- rsyslog output {} (tail):\n{}\n--- rsyslogd stderr:\n{}\n",
            self.out.display(),
            tail(&self.out, 30),
            tail(&self.stderr, 10)
        )
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
