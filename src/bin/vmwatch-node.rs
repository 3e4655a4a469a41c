//! vmwatch-node: runs on every KVM node and reports libvirt domain events and
//! activity to vmwatch-master. See vmwatch-node(8).

use std::process::ExitCode;

use vmwatch::cli::{parse, Parsed};
use vmwatch::node::Node;
use vmwatch::service::{main as daemon_main, Daemon};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match parse(Node::PROGRAM, &argv, true) {
        Parsed::Exit(status) => status.into(),
        Parsed::Run(args) if args.status => ExitCode::from(vmwatch::node::status::status(&args)),
        Parsed::Run(args) => daemon_main::<Node>(&args).into(),
    }
}
