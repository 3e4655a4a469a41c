//! `make bench`: speed and memory of vmwatch, measured side by side.
//!
//! This machine is shared and noisy, so each figure is taken next to the one
//! it is compared with, in the same run, alternating rounds, and reported as
//! a ratio as well as a rate. Each section is a file of its own (see
//! `SECTIONS`); `cargo bench --bench vmwatch -- NAME` runs one of them.
//!
//! Background sections (`BACKGROUND`) start before the others and finish
//! after them: the node's 10-minute idle window is measured while the other
//! sections run, which keeps `make bench` within 15 minutes. Sections that
//! need real guests share one set ([`Run::guests`]).
//!
//! `VMWATCH_BENCH_QUICK=1` is the smoke run that `make test` makes: every
//! section with small counts, to prove the bench still works, its figures
//! meaningless. Every loop is bounded in count and time; only loopback is
//! used.

mod cluster;
mod common;
mod guests;
mod handshake;
mod idle;
mod ingest;
mod latency;
mod master;
mod node;
mod observe;
mod panel;
mod pipeline;
mod procstat;
mod rig;
mod stats;
mod storm;

use std::path::PathBuf;
use std::sync::OnceLock;

use guests::Guests;

/// What a section is given.
pub struct Run {
    /// A scratch folder, removed at the end.
    pub dir: PathBuf,
    /// The smoke run: small counts, figures meaningless.
    pub quick: bool,
    /// The running guests the libvirt sections share; see [`Run::guests`].
    guests: OnceLock<Option<Guests>>,
}

impl Run {
    /// `full` in a real run, `quick` in the smoke run.
    pub fn count(&self, full: u64, quick: u64) -> u64 {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// The shared running guests (`VMWATCH_BENCH_GUESTS`, 50; 2 in the smoke
    /// run), started by the first section that asks and destroyed at the
    /// end; `None` without libvirtd or with `VMWATCH_BENCH_GUESTS=0`.
    pub fn guests(&self) -> Option<&Guests> {
        self.guests
            .get_or_init(|| {
                let n = std::env::var("VMWATCH_BENCH_GUESTS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(self.count(50, 2) as usize);
                (n > 0 && guests::libvirtd_present()).then(|| Guests::start(&self.dir, n))
            })
            .as_ref()
            .filter(|g| !g.is_empty())
    }
}

/// At the end, or when a section panics: the scratch folder goes, then the
/// guests (their disks are unlinked but still open, which QEMU does not mind).
impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type Section = fn(&Run, &mut String);

/// The sections in the order they print, each with the name that selects it.
const SECTIONS: &[(&str, Section)] = &[
    ("pipeline", pipeline::pipeline),
    ("panel", panel::panel_batching),
    ("master", master::master_end_to_end),
    ("flood", master::flood),
    ("handshake", handshake::handshake),
    ("stats", stats::stats_sampling),
    ("storm", storm::storm),
    ("ingest", ingest::ingest),
    ("idle", idle::idle),
];

/// What a background section does once the other sections are done.
pub type Finish = Box<dyn FnOnce(&Run, &mut String)>;
type Background = fn(&Run) -> Finish;

/// Sections started before `SECTIONS` and finished after them.
const BACKGROUND: &[(&str, Background)] = &[("node", node::start)];

fn main() {
    let quick = std::env::var_os("VMWATCH_BENCH_QUICK").is_some_and(|v| v != "0");
    let dir = std::env::temp_dir().join(format!("vmwatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = Run {
        dir,
        quick,
        guests: OnceLock::new(),
    };
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let names: Vec<&str> = SECTIONS
        .iter()
        .map(|(name, _)| *name)
        .chain(BACKGROUND.iter().map(|(name, _)| *name))
        .collect();
    if let Some(unknown) = only.iter().find(|o| !names.contains(&o.as_str())) {
        eprintln!(
            "bench: no section {unknown:?}; the sections are {}",
            names.join(", ")
        );
        std::process::exit(2);
    }
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    println!("| what | measured |\n|---|---|");
    let started: Vec<Finish> = BACKGROUND
        .iter()
        .filter(|(name, _)| wanted(name))
        .map(|(_, start)| start(&run))
        .collect();
    for (name, section) in SECTIONS {
        if wanted(name) {
            let mut out = String::new();
            section(&run, &mut out);
            print!("{out}");
        }
    }
    for finish in started {
        let mut out = String::new();
        finish(&run, &mut out);
        print!("{out}");
    }
}
