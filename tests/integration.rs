//! vmwatch's integration and end-to-end tests: one test binary, one module
//! per file of tests/ (as ripgrep's tests/tests.rs does), so the shared
//! harness in tests/common/ is compiled once rather than once per file, and
//! `cargo test` names each test by its file: `e2e_lifecycle::…`.
//!
//! A test that needs what a plain `cargo test` on any machine does not have
//! (the machine's libvirtd, root for namespaces and firewall rules, the
//! packages tests/support/setup-host.sh installs) is `#[ignore]`d with the
//! reason, so `cargo test` lists it as ignored, never as passed; `make test`
//! prepares the machine and runs them all one at a time:
//! `cargo test -- --include-ignored --test-threads=1`. One module:
//! `cargo test --test integration e2e_clock:: -- --include-ignored`.
//!
//! Every test makes the state it needs itself: none depends on another
//! having run before it.

mod common;

mod check_vmwatch;
mod daemon_cli;
mod e2e_chaos;
mod e2e_clock;
mod e2e_cluster;
mod e2e_lifecycle;
mod e2e_migration;
mod e2e_reboots;
mod fuzz_regressions;
mod graphite_carbon;
mod graphite_status;
mod master_cluster;
mod master_faults;
mod master_forget;
mod master_hostile;
mod master_input;
mod master_refused;
mod ops_check_by_ssh;
mod ops_logrotate;
mod ops_rsyslog;
