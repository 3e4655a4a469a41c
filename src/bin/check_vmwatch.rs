//! check_vmwatch: monitoring plugin for vmwatch-master and vmwatch-node
//! (Nagios, Opsview, Icinga; locally or through check_by_ssh). Exit status
//! 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. See check_vmwatch(8).

use std::process::ExitCode;

fn main() -> ExitCode {
    // It only prints: a closed pipe ends it quietly (src/service/sigpipe.rs).
    vmwatch::service::default_for_printing();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (code, out) = vmwatch::check::plugin(&argv, vmwatch::clock::now_ms);
    print!("{out}");
    ExitCode::from(code)
}
