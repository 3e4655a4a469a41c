//! vmwatch-master: runs on the panel host, receives the nodes' messages and
//! keeps the panel in step with the hypervisors. See vmwatch-master(8).

use std::process::ExitCode;

use vmwatch::master::Master;

fn main() -> ExitCode {
    vmwatch::service::program::<Master>()
}
