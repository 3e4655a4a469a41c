//! The life of a daemon process: detach, pidfile, signals, orderly stop.
//!
//! Both daemons run the same way. Signals are blocked before any thread
//! starts and taken synchronously by the main thread (sigtimedwait), so no
//! handler ever runs in a libvirt or ZeroMQ thread. When detaching (SysV
//! init), the parent waits on a pipe until the daemon says it is up, so
//! `service X start` reports a daemon that failed during start-up.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cli::{exit, Args};
use crate::config::{ConfigError, LogSettings, Problem};

/// Shared by every thread of a daemon: whether to stop, and why it failed.
#[derive(Default)]
pub struct Shutdown {
    stop: AtomicBool,
    failure: Mutex<Option<String>>,
    /// When the stop was first asked for: every stop has a deadline from it.
    since: Mutex<Option<Instant>>,
}

impl Shutdown {
    pub fn new() -> Arc<Shutdown> {
        Arc::new(Shutdown::default())
    }

    /// Asks every thread to finish its work and stop.
    pub fn request_stop(&self) {
        self.since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(Instant::now);
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The moment `after` has passed since the stop was asked for (`None`
    /// while running): what a stopping thread must finish by.
    pub fn deadline(&self, after: Duration) -> Option<Instant> {
        let since = *self.since.lock().unwrap_or_else(|p| p.into_inner());
        since.map(|t| t + after)
    }

    /// Records a fatal failure (the first one wins) and asks for a stop.
    pub fn fail(&self, why: String) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(why);
        }
        drop(f);
        self.request_stop();
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Blocks SIGTERM, SIGINT and SIGHUP in this thread and every thread it
/// starts later. Call before starting any thread.
pub fn block_signals() {
    let set = signal_set();
    // SAFETY: `set` is an initialised sigset_t; passing a null old-set pointer
    // is allowed.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set; sigaddset only writes
    // into it. The signal numbers are valid constants.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Waits up to `timeout` for one of the blocked signals.
fn wait_signal(timeout: Duration) -> Option<i32> {
    let set = signal_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` and `ts` are valid for the call; a null siginfo pointer
    // is allowed.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// The main thread's loop once the workers run: SIGHUP reopens the log,
/// SIGTERM/SIGINT ask for a stop; returns when a stop was asked for (by a
/// signal or by a worker's failure).
pub fn supervise(shutdown: &Shutdown) {
    while !shutdown.stopping() {
        match wait_signal(Duration::from_millis(200)) {
            Some(libc::SIGHUP) => crate::logging::reopen(),
            Some(sig) => {
                log::info!(
                    "received {}, stopping",
                    if sig == libc::SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    }
                );
                shutdown.request_stop();
            }
            None => {}
        }
    }
}

/// The write end of the start-up pipe; the detached parent exits with what
/// is written here.
pub struct Readiness {
    pipe: Option<File>,
}

impl Readiness {
    /// Foreground mode: nobody is waiting.
    pub fn none() -> Readiness {
        Readiness { pipe: None }
    }

    /// Tells the waiting parent that start-up succeeded.
    pub fn ready(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(&[exit::OK]);
        }
    }

    /// Tells the waiting parent that start-up failed, and why.
    pub fn failed(&mut self, code: u8, why: &str) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(&[code]);
            let _ = p.write_all(why.as_bytes());
        }
    }
}

/// Detaches from the terminal (fork, setsid, fork). Returns in the daemon;
/// the original process exits with the status the daemon reports through
/// [`Readiness`], printing its error message if it failed.
pub fn detach(program: &str) -> std::io::Result<Readiness> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by us.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (detach runs before any is
    // started), so the child is a complete copy of this process.
    match unsafe { libc::fork() } {
        -1 => return Err(std::io::Error::last_os_error()),
        0 => {}
        _ => {
            drop(wr);
            let mut buf = Vec::new();
            let _ = File::from(rd).read_to_end(&mut buf);
            let code = match buf.first() {
                Some(&c) => c,
                None => {
                    eprintln!("{program}: the daemon exited during start-up; see its log");
                    exit::RUNTIME
                }
            };
            if buf.len() > 1 {
                eprintln!("{program}: {}", String::from_utf8_lossy(&buf[1..]));
            }
            std::process::exit(code as i32);
        }
    }
    drop(rd);
    // SAFETY: setsid has no memory-safety preconditions.
    if unsafe { libc::setsid() } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: still single-threaded; see above.
    match unsafe { libc::fork() } {
        -1 => return Err(std::io::Error::last_os_error()),
        0 => {}
        // SAFETY: _exit skips atexit handlers and buffered-stream flushes,
        // which belong to the daemon.
        _ => unsafe { libc::_exit(0) },
    }
    std::env::set_current_dir("/")?;
    // SAFETY: umask only changes this process's file mode mask.
    unsafe { libc::umask(0o022) };
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..=2 {
        // SAFETY: `null` is an open descriptor; dup2 atomically replaces the
        // standard descriptors, which nothing else holds a Rust handle to.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
    Ok(Readiness {
        pipe: Some(File::from(wr)),
    })
}

/// A pidfile held under an exclusive lock for the daemon's lifetime, so a
/// second copy refuses to start instead of fighting over the socket.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    _file: File,
}

impl PidFile {
    pub fn create(path: &Path) -> Result<PidFile, String> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(|e| format!("cannot open pidfile {}: {e} (use -p PATH)", path.display()))?;
        // SAFETY: the descriptor is open for the lifetime of `file`.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut old = String::new();
            let _ = file.read_to_string(&mut old);
            return Err(format!(
                "already running (pid {}, pidfile {} is locked)",
                old.trim(),
                path.display()
            ));
        }
        file.set_len(0)
            .and_then(|_| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(|e| format!("cannot write pidfile {}: {e}", path.display()))?;
        Ok(PidFile {
            path: path.to_path_buf(),
            _file: file,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How long a daemon may take to stop, from the signal to its exit: well
/// inside the init scripts' 10 s before SIGKILL (`STOP_DELAY`) and systemd's
/// `TimeoutStopSec=30`. Threads that have not finished by then are left
/// behind (the process exits without them); what they held was saved first.
pub const STOP_BUDGET: Duration = Duration::from_secs(7);

/// Waits until `handle`'s thread ends or `deadline` passes; `Some` with its
/// result if it ended. A thread blocked in a library call (libvirt, a hung
/// panel) cannot hold a stop past its deadline.
pub fn join_until<T>(handle: std::thread::JoinHandle<T>, deadline: Instant) -> Option<T> {
    let mut nap = Duration::from_millis(1);
    while !handle.is_finished() {
        let now = Instant::now();
        if now >= deadline {
            log::warn!(
                "thread {} did not stop in time; exiting without it",
                handle.thread().name().unwrap_or("?")
            );
            return None;
        }
        std::thread::sleep(nap.min(deadline - now));
        nap = (nap * 2).min(Duration::from_millis(20));
    }
    handle.join().ok()
}

/// Starts a named thread; names show in the log and in `top -H`.
pub fn spawn<F, T>(name: &str, f: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // Test hook (tests/daemon_cli.rs): the panic hook is proven on a real
    // daemon by asking one named thread to panic as it starts.
    let panic_here = std::env::var_os("VMWATCH_TEST_PANIC").is_some_and(|v| v == name);
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            if panic_here {
                panic!("VMWATCH_TEST_PANIC asked this thread to panic");
            }
            f()
        })
        .unwrap_or_else(|e| panic!("cannot start thread {name}: {e}"))
}

/// What a daemon provides to [`main`]: its configuration and its work.
pub trait Daemon: Sized {
    /// Program name: syslog ident, default file names.
    const PROGRAM: &'static str;
    fn load(path: &Path) -> Result<(Self, Vec<Problem>), ConfigError>;
    /// The effective configuration as `NAME=VALUE` pairs, secret masked.
    fn describe(&self) -> Vec<(String, String)>;
    fn log_settings(&self) -> &LogSettings;
    /// `Some(why)`: configured not to run (the master's `disabled=yes`).
    fn disabled(&self) -> Option<String> {
        None
    }
    /// Starts the threads, calls `readiness.ready()` once up, and returns
    /// after a stop; `Err` names a fatal failure.
    fn run(&self, shutdown: Arc<Shutdown>, readiness: &mut Readiness) -> Result<(), String>;
}

/// Everything between the command line and the exit status: load and check
/// the configuration, detach, log, lock the pidfile, run, and say why it
/// ended. Returns the exit status (see [`exit`]).
pub fn main<D: Daemon>(args: &Args) -> u8 {
    block_signals();
    crate::logging::install_panic_hook();
    let (cfg, warnings) = match D::load(&args.config) {
        Ok(loaded) => loaded,
        Err(e) => {
            for p in e.errors.iter() {
                eprintln!("{}: error: {p}", D::PROGRAM);
            }
            for p in e.warnings.iter() {
                eprintln!("{}: warning: {p}", D::PROGRAM);
            }
            eprintln!("{}: configuration invalid, not starting", D::PROGRAM);
            return exit::CONFIG;
        }
    };
    if args.check_config {
        for p in &warnings {
            eprintln!("{}: warning: {p}", D::PROGRAM);
        }
        println!(
            "# {} effective configuration from {}",
            D::PROGRAM,
            args.config.display()
        );
        for (k, v) in cfg.describe() {
            println!("{k}={v}");
        }
        println!("configuration OK");
        return exit::OK;
    }
    let mut settings = cfg.log_settings().clone();
    if args.verbose {
        settings.level = log::LevelFilter::Debug;
    }
    let mut readiness = if args.foreground {
        Readiness::none()
    } else {
        match detach(D::PROGRAM) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}: cannot detach: {e}", D::PROGRAM);
                return exit::RUNTIME;
            }
        }
    };
    let syslog_warning = match crate::logging::init(D::PROGRAM, &settings, args.foreground) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{}: {e}", D::PROGRAM);
            readiness.failed(exit::RUNTIME, &e.to_string());
            return exit::RUNTIME;
        }
    };
    if let Some(w) = syslog_warning {
        log::warn!("{w}");
    }
    for p in &warnings {
        log::warn!("{p}");
    }
    if let Some(why) = cfg.disabled() {
        log::info!("{why}; not starting");
        if args.foreground {
            eprintln!("{}: {why}; not starting", D::PROGRAM);
        }
        readiness.ready();
        return exit::OK;
    }
    let _pidfile = match PidFile::create(&args.pidfile) {
        Ok(p) => p,
        Err(e) => {
            log::error!("{e}");
            readiness.failed(exit::RUNTIME, &e);
            return exit::RUNTIME;
        }
    };
    log::info!(
        "{} {} starting (pid {}, config {})",
        D::PROGRAM,
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        args.config.display()
    );
    let shutdown = Shutdown::new();
    let code = match cfg.run(shutdown, &mut readiness) {
        Ok(()) => {
            log::info!("exiting");
            exit::OK
        }
        Err(why) => {
            log::error!("{why}");
            readiness.failed(exit::RUNTIME, &why);
            log::error!("exiting with status {}", exit::RUNTIME);
            exit::RUNTIME
        }
    };
    log::logger().flush();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfile_is_exclusive_and_removed_on_drop() {
        let dir = std::env::temp_dir().join(format!("vmwatch-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.pid");
        let first = PidFile::create(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        let second = PidFile::create(&path);
        assert!(second.unwrap_err().contains("already running"));
        drop(first);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failure_stops_and_keeps_the_first_reason() {
        let s = Shutdown::new();
        assert!(!s.stopping());
        s.fail("first".into());
        s.fail("second".into());
        assert!(s.stopping());
        assert_eq!(s.failure().as_deref(), Some("first"));
    }
}
