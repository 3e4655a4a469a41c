//! Every input the fuzzers found (`fuzz/regressions/<target>/`) and every
//! seed (`fuzz/corpus/<target>/seed-*`), fed through the very function the
//! fuzz target runs: `fuzz/src/lib.rs` is compiled into this test as it is.
//!
//! A regression fails while its bug is there and passes once it is fixed;
//! fuzz/README.md lists the findings. No cargo-fuzz or nightly needed.

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod fuzz;

use std::path::{Path, PathBuf};

/// The files in `dir` whose name starts with `prefix`, sorted.
fn inputs(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix) && !n.starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Runs `target` on each file; fails naming every file that panics.
fn check(target: &str, files: &[PathBuf]) {
    let mut failed = Vec::new();
    for path in files {
        let data = std::fs::read(path).expect("read input");
        let outcome = std::panic::catch_unwind(|| fuzz::run(target, &data));
        if let Err(e) = outcome {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{}: {why}", path.display()));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs fail:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

fn regressions(target: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    check(target, &inputs(&dir, ""));
}

#[test]
fn seed_corpora_pass() {
    for target in fuzz::TARGETS {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let seeds = inputs(&dir, "seed-");
        assert!(!seeds.is_empty(), "no seeds for {target}");
        check(target, &seeds);
    }
}

#[test]
fn every_regression_names_a_target() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    for entry in std::fs::read_dir(dir).expect("fuzz/regressions") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                fuzz::TARGETS.contains(&name.as_str()),
                "unknown target {name}"
            );
        }
    }
}

#[test]
fn decode_signed() {
    regressions("decode_signed");
}

#[test]
fn decode_raw() {
    regressions("decode_raw");
}

#[test]
fn config() {
    regressions("config");
}

#[test]
fn statefile() {
    regressions("statefile");
}

#[test]
fn panel_line() {
    regressions("panel_line");
}
