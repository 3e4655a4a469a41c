//! `make bench`: speed and memory of vmwatch, measured side by side.
//!
//! This machine is shared and noisy, so each figure is taken next to the one
//! it is compared with, in the same run, alternating rounds, and reported as
//! a ratio as well as a rate. Each section is a file of its own (see
//! `SECTIONS`); `cargo bench --bench vmwatch -- NAME` runs one of them.
//!
//! `VMWATCH_BENCH_QUICK=1` is the smoke run that `make test` makes: every
//! section with small counts, to prove the bench still works, its figures
//! meaningless. Every loop is bounded in count and time; only loopback is
//! used.

mod cluster;
mod common;
mod ingest;
mod master;
mod node;
mod panel;
mod pipeline;
mod stats;
mod storm;

use std::path::PathBuf;

/// What a section is given.
pub struct Run {
    /// A scratch folder, removed at the end.
    pub dir: PathBuf,
    /// The smoke run: small counts, figures meaningless.
    pub quick: bool,
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
}

type Section = fn(&Run, &mut String);

/// The sections in the order they print, each with the name that selects it.
const SECTIONS: &[(&str, Section)] = &[
    ("pipeline", pipeline::pipeline),
    ("panel", panel::panel_batching),
    ("master", master::master_end_to_end),
    ("flood", master::flood),
    ("node", node::node_memory),
    ("stats", stats::stats_sampling),
    ("storm", storm::storm),
    ("ingest", ingest::ingest),
];

fn main() {
    let quick = std::env::var_os("VMWATCH_BENCH_QUICK").is_some_and(|v| v != "0");
    let dir = std::env::temp_dir().join(format!("vmwatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = Run { dir, quick };
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let Some(unknown) = only
        .iter()
        .find(|o| !SECTIONS.iter().any(|(name, _)| name == o))
    {
        let names: Vec<&str> = SECTIONS.iter().map(|(name, _)| *name).collect();
        eprintln!(
            "bench: no section {unknown:?}; the sections are {}",
            names.join(", ")
        );
        std::process::exit(2);
    }
    println!("| what | measured |\n|---|---|");
    for (name, section) in SECTIONS {
        if only.is_empty() || only.iter().any(|o| o == name) {
            let mut out = String::new();
            section(&run, &mut out);
            print!("{out}");
        }
    }
    let _ = std::fs::remove_dir_all(&run.dir);
}
