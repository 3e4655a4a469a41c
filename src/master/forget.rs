//! `vmwatch-master --forget-node ID`: an operator retires a node id now.
//!
//! The command appends `node ID` to a request file beside the state file
//! (`STATE_FILE.forget`). The running master looks for that file on every
//! housekeeping tick (each second: one `stat`), forgets each node it names
//! (state.rs: its domains are reported `undefined`, reason `node
//! forgotten`, then `vmwatch.node status=forgotten`), removes the request
//! and writes what it did to `STATE_FILE.forgotten`, which the command
//! prints. A master that is not running finds the request at its next
//! start. No signal is needed: a request waits at most a second.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use super::state::StateTable;
use super::update::Update;
use crate::cli::exit;
use crate::protocol::check_node_id;

/// The request file for a state file.
pub fn request_path(state_file: &str) -> String {
    format!("{state_file}.forget")
}

/// The answer file for a state file.
pub fn result_path(state_file: &str) -> String {
    format!("{state_file}.forgotten")
}

/// The master's side, on each tick: forgets the nodes asked for; returns
/// the updates for the panel (nothing when there is no request).
pub fn serve(state_file: &str, table: &mut StateTable, now_ms: u64) -> Vec<Update> {
    let path = request_path(state_file);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    let _ = std::fs::remove_file(&path);
    let mut out = Vec::new();
    let mut answer = String::new();
    for (i, line) in text.lines().enumerate() {
        let Some(node) = line.strip_prefix("node ").map(str::trim) else {
            log::warn!("{path}:{}: not `node ID`: ignored", i + 1);
            continue;
        };
        if let Err(e) = check_node_id(node) {
            log::warn!("{path}:{}: node id {e}: ignored", i + 1);
            continue;
        }
        let domains: Vec<String> = table.nodes.get(node).map_or_else(Vec::new, |n| {
            n.domains
                .iter()
                .map(|(u, d)| format!("{} ({u})", crate::logging::escape_control(&d.name)))
                .collect()
        });
        if !table.nodes.contains_key(node) {
            answer.push_str(&format!(
                "node {node}: unknown to the master, nothing to forget\n"
            ));
            continue;
        }
        out.extend(table.forget_now(node, now_ms));
        answer.push_str(&format!(
            "node {node}: forgotten; the panel is told its {} domains are undefined (reason `node forgotten`){}{}\n",
            domains.len(),
            if domains.is_empty() { "" } else { ": " },
            domains.join(", ")
        ));
    }
    let result = result_path(state_file);
    if let Err(e) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&result)
        .and_then(|mut f| f.write_all(answer.as_bytes()))
    {
        log::warn!("cannot write {result}: {e}");
    }
    out
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
        .and_then(|mut f| f.write_all(format!("node {node}\n").as_bytes()));
    if let Err(e) = written {
        eprintln!("vmwatch-master: cannot write {request}: {e} (run as the master's user)");
        return exit::RUNTIME;
    }
    if let Err(why) = crate::check::facts::daemon_running("vmwatch-master", pidfile) {
        println!("{why}: the request is kept in {request} and applied when the master starts");
        return exit::OK;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !Path::new(&request).exists() {
            if let Ok(text) = std::fs::read_to_string(&result) {
                if text
                    .lines()
                    .any(|l| l.starts_with(&format!("node {node}:")))
                {
                    print!("{text}");
                    return exit::OK;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "vmwatch-master: the running master did not answer within 10 s; the request stays in {request}"
    );
    exit::RUNTIME
}
