//! `vmwatch-master --forget-node ID`: an operator retires a node id now.
//!
//! The command appends `node ID MS` (MS: when it asked) to a request file
//! beside the state file (`STATE_FILE.forget`). The running master looks
//! for that file on every housekeeping tick (each second: one `stat`),
//! forgets each node it names that is down (forget_node.rs: its domains are
//! reported `undefined`, reason `node forgotten`, then `vmwatch.node
//! status=forgotten`), and writes what it did to `STATE_FILE.forgotten`,
//! which the command prints. A master that is not running finds the request
//! at its next start. No signal is needed: a request waits at most a second.
//!
//! The panel must never be told that running guests are gone: a node still
//! up keeps its domains, and its request is written back as `wait ID MS`
//! until the node is down; a request older than the node's current instance
//! (it restarted after the request, its id is in use again) is dropped with
//! an answer saying so.

use std::io::Write as _;
use std::time::{Duration, Instant};

use super::table::StateTable;
use crate::cli::exit;
use crate::master::panel::update::Update;
use crate::protocol::check_node_id;

/// The request file for a state file.
pub fn request_path(state_file: &str) -> String {
    format!("{state_file}.forget")
}

/// The answer file for a state file.
pub fn result_path(state_file: &str) -> String {
    format!("{state_file}.forgotten")
}

/// One request read from the request file.
struct Request<'a> {
    node: &'a str,
    /// When it was made (wall ms); a line without one: when first served.
    at_ms: u64,
    /// Already answered `waiting` (a `wait` line written back).
    waiting: bool,
}

fn parse(line: &str, now_ms: u64) -> Option<Request<'_>> {
    let (waiting, rest) = if let Some(r) = line.strip_prefix("node ") {
        (false, r)
    } else {
        (true, line.strip_prefix("wait ")?)
    };
    let mut w = rest.split_whitespace();
    let node = w.next()?;
    let at_ms = match w.next() {
        Some(t) => t.parse().ok()?,
        None => now_ms,
    };
    Some(Request {
        node,
        at_ms,
        waiting,
    })
}

/// The master's side, on each tick: forgets the nodes asked for that are
/// down; returns the updates for the panel (nothing when there is no
/// request). A node still up is not forgotten under its guests, which may
/// run: its request waits (written back as `wait ID MS`) until the node is
/// down, and is dropped if the node speaks as a new instance after the
/// request was made (it restarted: the id is in use again).
pub fn serve(state_file: &str, table: &mut StateTable, now_ms: u64) -> Vec<Update> {
    let path = request_path(state_file);
    // Taken aside first, so that a request appended meanwhile goes to a
    // new file and waits for the next tick.
    let serving = format!("{path}.serving");
    if std::fs::rename(&path, &serving).is_err() {
        return Vec::new();
    }
    let text = std::fs::read_to_string(&serving).unwrap_or_default();
    let _ = std::fs::remove_file(&serving);
    let mut out = Vec::new();
    let mut answer = String::new();
    let mut still = String::new();
    for (i, line) in text.lines().enumerate() {
        let Some(req) = parse(line, now_ms) else {
            log::warn!("{path}:{}: not `node ID [MS]`: ignored", i + 1);
            continue;
        };
        let node = req.node;
        if let Err(e) = check_node_id(node) {
            log::warn!("{path}:{}: node id {e}: ignored", i + 1);
            continue;
        }
        let Some(rec) = table.nodes().get(node) else {
            answer.push_str(&format!(
                "node {node}: unknown to the master, nothing to forget\n"
            ));
            continue;
        };
        if rec.instance_ms > req.at_ms {
            log::warn!("node {node} not forgotten: it restarted after the request (--forget-node)");
            answer.push_str(&format!(
                "node {node}: not forgotten: it spoke again as a new instance after the request, so its id is in use; stop its vmwatch-node and ask again\n"
            ));
            continue;
        }
        if rec.up {
            if !req.waiting {
                log::info!("node {node}: --forget-node waits until it is down");
                answer.push_str(&format!(
                    "node {node}: waiting: it is up (last message {} s ago), so its guests may still run; it is forgotten once it is down (no message for node_timeout={} s), unless it restarts first\n",
                    now_ms.saturating_sub(rec.last_seen_ms) / 1000,
                    table.node_timeout_s()
                ));
            }
            still.push_str(&format!("wait {node} {}\n", req.at_ms));
            continue;
        }
        let domains: Vec<String> = rec
            .domains
            .iter()
            .map(|(u, d)| format!("{} ({u})", crate::logging::escape_control(&d.name)))
            .collect();
        out.extend(table.forget_now(node, now_ms));
        answer.push_str(&format!(
            "node {node}: forgotten; the panel is told its {} domains are undefined (reason `node forgotten`){}{}\n",
            domains.len(),
            if domains.is_empty() { "" } else { ": " },
            domains.join(", ")
        ));
    }
    if !still.is_empty() {
        append(&path, &still);
    }
    if !answer.is_empty() {
        append(&result_path(state_file), &answer);
    }
    out
}

fn append(path: &str, text: &str) {
    if let Err(e) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
    {
        log::warn!("cannot write {path}: {e}");
    }
}

/// The command's side: asks, waits up to 10 s for the running master's
/// answer and prints it; returns the exit status.
pub fn command(state_file: &str, pidfile: &str, node: &str) -> u8 {
    if let Err(e) = check_node_id(node) {
        eprintln!("vmwatch-master: --forget-node: node id {e}");
        return exit::USAGE;
    }
    let request = request_path(state_file);
    let result = result_path(state_file);
    let _ = std::fs::remove_file(&result);
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&request)
        .and_then(|mut f| {
            let at = crate::clock::now_ms();
            f.write_all(format!("node {node} {at}\n").as_bytes())
        });
    if let Err(e) = written {
        eprintln!("vmwatch-master: cannot write {request}: {e} (run as the master's user)");
        return exit::RUNTIME;
    }
    if let Err(why) = crate::check::facts::daemon_running("vmwatch-master", pidfile) {
        println!("{why}: the request is kept in {request} and applied when the master starts");
        return exit::OK;
    }
    // The answer: final (forgotten, unknown, not forgotten), or `waiting`
    // first while the node is up, then final once it is down.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mine = format!("node {node}:");
    let mut said = String::new();
    while Instant::now() < deadline {
        said = std::fs::read_to_string(&result)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(&mine))
            .map(|l| format!("{l}\n"))
            .collect();
        if said
            .lines()
            .any(|l| !l.starts_with(&format!("{mine} waiting")))
        {
            print!("{said}");
            return exit::OK;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !said.is_empty() {
        print!("{said}");
        println!("(the request stays in {request} until node {node} is down)");
        return exit::OK;
    }
    eprintln!(
        "vmwatch-master: the running master did not answer within 10 s; the request stays in {request}"
    );
    exit::RUNTIME
}
