//! vmwatch-master: runs on the panel host, receives the nodes' messages and
//! keeps the panel in step with the hypervisors. See vmwatch-master(8).

use std::process::ExitCode;

use vmwatch::cli::{parse, Parsed};
use vmwatch::master::Master;
use vmwatch::service::{main as daemon_main, Daemon};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match parse(Master::PROGRAM, &argv, true) {
        Parsed::Exit(status) => status.into(),
        Parsed::Run(args) if args.status => ExitCode::from(vmwatch::master::status(&args)),
        Parsed::Run(args) => daemon_main::<Master>(&args).into(),
    }
}
