//! What each vmwatch fuzz target does with one input, and the invariants it
//! checks.
//!
//! The `fuzz_targets/*.rs` binaries are one line each: they hand libFuzzer's
//! bytes to the function of the same name here. `tests/fuzz_regressions.rs`
//! in the main crate includes this very file (`#[path]`), so a saved crash
//! input goes through exactly the code that found it. This file therefore
//! uses nothing but `vmwatch` and `std`.
//!
//! A panic of the code under test is always a finding. An invariant that
//! does not hold is one too, but while a known violation waits for its fix,
//! exploration can go on past it: `VMWATCH_FUZZ_SKIP=name,name` turns off
//! the named invariants (the names are the `inv(...)` calls below). The
//! regression test never sets it.

use std::sync::OnceLock;

use vmwatch::config::DaemonConfig;
use vmwatch::master::panel::update::Update;
use vmwatch::master::panel::PanelCounters;
use vmwatch::master::receiver::replay::ReplayGuard;
use vmwatch::master::receiver::ReceiverCounters;
use vmwatch::master::statefile;
use vmwatch::master::view::table::StateTable;
use vmwatch::protocol::{self, WireError};

/// Every target, by name (the file names under `fuzz/fuzz_targets`,
/// `fuzz/corpus` and `fuzz/regressions`).
pub const TARGETS: &[&str] = &[
    "decode_signed",
    "decode_raw",
    "config",
    "statefile",
    "panel_line",
];

/// Runs `target` on `data`; panics on a finding.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "decode_signed" => decode_signed(data),
        "decode_raw" => decode_raw(data),
        "config" => config(data),
        "statefile" => statefile(data),
        "panel_line" => panel_line(data),
        other => panic!("no fuzz target `{other}`"),
    }
}

/// The secret the fuzz targets sign with (the test vector's, so the
/// documented payload is a valid raw seed too).
pub const SECRET: &[u8] = b"K7Q2M9X4T1B8R5W3";

/// A fixed "now" for the state file targets: 2026-11-23.
pub const NOW_MS: u64 = 1_795_456_306_045;

/// Whether the invariant `name` is checked (not listed in
/// `VMWATCH_FUZZ_SKIP`).
fn inv(name: &str) -> bool {
    static SKIP: OnceLock<Vec<String>> = OnceLock::new();
    let skip = SKIP.get_or_init(|| {
        std::env::var("VMWATCH_FUZZ_SKIP")
            .unwrap_or_default()
            .split(',')
            .map(str::to_string)
            .collect()
    });
    !skip.iter().any(|s| s == name)
}

/// The keys of each line, in order (the header's version and type words
/// left out): two payloads with the same layout must be spelled alike.
fn key_layout(payload: &str) -> Vec<Vec<&str>> {
    payload
        .lines()
        .enumerate()
        .map(|(i, line)| {
            line.split(' ')
                .skip(if i == 0 { 2 } else { 0 })
                .map(|f| f.split_once('=').map_or(f, |(k, _)| k))
                .collect()
        })
        .collect()
}

/// Checks what a decoded message promises: it encodes to something that
/// decodes to itself, and a payload using exactly the keys the encoder
/// writes, in its order, is the encoder's own spelling (docs/protocol.md:
/// an unreserved byte is never escaped, numbers have no sign or leading
/// zero). Unknown keys and other orders are legal, so only the layout
/// decides when bytes must match.
fn check_decoded(payload: &[u8], msg: &protocol::Message) {
    let again = protocol::encode_payload(msg);
    let frames = protocol::encode(SECRET, msg);
    let back = protocol::decode(SECRET, frames.as_ref());
    assert_eq!(back.as_ref(), Ok(msg), "re-encoded message decodes alike");
    if inv("canonical") {
        let text = std::str::from_utf8(payload).expect("decoded payloads are UTF-8");
        if key_layout(text) == key_layout(&again) {
            assert_eq!(
                text, again,
                "a decoded payload re-encodes to the same bytes (canonical spelling)"
            );
        }
    }
}

/// `protocol::decode` on a payload signed with [`SECRET`]: gets past the
/// MAC to the parser.
pub fn decode_signed(data: &[u8]) {
    let frames = vec![data.to_vec(), protocol::sign(SECRET, data).into_bytes()];
    if let Ok(msg) = protocol::decode(SECRET, &frames) {
        check_decoded(data, &msg);
    }
}

/// `protocol::decode` on raw frames: `data` split at each 0xFF byte (never
/// in UTF-8 text) into frames, as a peer without the secret sends them.
/// Without a matching MAC only `frames`, `oversized` and `bad_mac` may be
/// counted (docs/protocol.md: the master rejects "without looking further").
pub fn decode_raw(data: &[u8]) {
    let frames: Vec<Vec<u8>> = data.split(|&b| b == 0xFF).map(<[u8]>::to_vec).collect();
    let result = protocol::decode(SECRET, &frames);
    let signed = frames.len() == 2 && frames[1] == protocol::sign(SECRET, &frames[0]).as_bytes();
    match &result {
        Ok(msg) => {
            assert!(signed, "accepted without a matching MAC");
            check_decoded(&frames[0], msg);
        }
        Err(e) if !signed && inv("mac_first") => assert!(
            matches!(
                e,
                WireError::Frames(_) | WireError::TooLarge(_) | WireError::BadMac
            ),
            "an unauthenticated message moved the `{}` counter: {e}",
            vmwatch::master::receiver::rejection::Rejection::from(e)
        ),
        Err(_) => {}
    }
}

/// Both daemons' configuration loaders on `data` as the file's content.
/// They take a path, so the bytes go to a file in /dev/shm (tmpfs), mode
/// 0600 like a real one, removed after each input.
pub fn config(data: &[u8]) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("vmwatch-fuzz-config.{}", std::process::id()))
    });
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("temporary config file");
    f.write_all(data).expect("write temporary config file");
    drop(f);
    let lines = data.split(|&b| b == b'\n').count();
    let check_problems = |problems: &[vmwatch::config::Problem]| {
        for p in problems {
            assert!(
                p.line <= lines,
                "problem on line {} of {lines}: {p}",
                p.line
            );
        }
    };
    match vmwatch::master::config::MasterConfig::load(path) {
        Ok((cfg, warnings)) => {
            check_problems(&warnings);
            assert!(
                cfg.disabled || !cfg.secret.is_empty(),
                "enabled without a secret"
            );
            assert!(vmwatch::config::check_secret(&cfg.secret).is_ok());
            assert_eq!(
                vmwatch::config::normalize_endpoint(&cfg.listen).as_deref(),
                Ok(cfg.listen.as_str()),
                "a normalized endpoint is its own normal form"
            );
            assert!(!cfg.panel_command.is_empty(), "no panel command");
            let _ = cfg.describe();
        }
        Err(e) => {
            assert!(!e.errors.is_empty(), "refused without saying why");
            check_problems(&e.errors);
            check_problems(&e.warnings);
            let _ = e.to_string();
        }
    }
    #[cfg(feature = "node")]
    let node = vmwatch::node::NodeConfig::load(path);
    // Each (forked) fuzzing process has its own file: leave none behind.
    let _ = std::fs::remove_file(path);
    #[cfg(feature = "node")]
    match node {
        Ok((cfg, warnings)) => {
            check_problems(&warnings);
            assert!(!cfg.secret.is_empty());
            assert!(protocol::check_node_id(&cfg.node_id).is_ok());
            assert_eq!(
                vmwatch::config::normalize_endpoint(&cfg.connect).as_deref(),
                Ok(cfg.connect.as_str()),
                "a normalized endpoint is its own normal form"
            );
            let _ = cfg.describe();
        }
        Err(e) => {
            assert!(!e.errors.is_empty(), "refused without saying why");
            check_problems(&e.errors);
            check_problems(&e.warnings);
        }
    }
}

/// Renders what a load restored, as the master's next save would.
fn render_restored(table: &StateTable, guard: &ReplayGuard, pending: &[Update]) -> String {
    statefile::render(&statefile::View {
        table,
        guard,
        counters: &ReceiverCounters::default(),
        panel: &PanelCounters::default(),
        graphite: None,
        pending,
        aside: &[],
        clocks: &[],
        listen: "tcp://0.0.0.0:1515",
        started_ms: NOW_MS,
        now_ms: NOW_MS,
    })
}

/// `statefile::parse`, `restore` and `report` on `data` as a state file
/// (the master reads raw bytes). Then what the next save would write must
/// parse without a problem and, saved again, come out the same.
pub fn statefile(data: &[u8]) {
    let f = statefile::parse("fuzz", data);
    let _ = statefile::report(&f, NOW_MS);
    let _ = statefile::report(&f, 0);
    let mut table = StateTable::new(true, 90);
    let mut guard = ReplayGuard::new(300);
    let pending = statefile::restore(&f, &mut table, &mut guard, NOW_MS);
    let first = render_restored(&table, &guard, &pending);
    let f2 = statefile::parse("saved", first.as_bytes());
    if inv("statefile_clean") {
        assert!(f2.complete, "a written state file is complete");
        assert_eq!(
            f2.problems,
            Vec::<String>::new(),
            "a written state file loads cleanly"
        );
    }
    let mut t2 = StateTable::new(true, 90);
    let mut g2 = ReplayGuard::new(300);
    let p2 = statefile::restore(&f2, &mut t2, &mut g2, NOW_MS);
    if inv("statefile_fixpoint") {
        let second = render_restored(&t2, &g2, &p2);
        assert_eq!(first, second, "saving what was restored changes nothing");
    }
}

/// `Update::from_panel_line` on `data` as one line: whatever it accepts,
/// its `panel_line()` must parse back to the same update.
pub fn panel_line(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(u) = Update::from_panel_line(line) else {
        return;
    };
    let again = u.panel_line();
    assert!(
        !again.contains(['\n', '\r']),
        "a panel line is one line: {again:?}"
    );
    let _ = u.log_line();
    let _ = u.subject();
    if inv("panel_roundtrip") {
        assert_eq!(
            Update::from_panel_line(&again).as_ref(),
            Ok(&u),
            "panel_line() of a parsed update parses back to it: {again:?}"
        );
    }
}
