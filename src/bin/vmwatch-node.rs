//! vmwatch-node: runs on every KVM node and reports libvirt domain events and
//! activity to vmwatch-master. See vmwatch-node(8).

use std::process::ExitCode;

use vmwatch::node::Node;

fn main() -> ExitCode {
    vmwatch::service::program::<Node>()
}
