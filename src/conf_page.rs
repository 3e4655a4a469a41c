//! vmwatch.conf(5) against the code: the page documents every key both
//! daemons read (the keys are taken from the effective configuration `-t`
//! prints).
//!
//! A file of its own because it reads both daemons' configurations: in
//! either daemon's folder, or in the plugin's, it would tie them together.

use crate::config::{DaemonConfig, Loader};

#[test]
fn every_configuration_key_is_in_vmwatch_conf_5() {
    let page = include_str!("../docs/vmwatch.conf.5");
    let mut keys: Vec<String> = Vec::new();
    let mut l = Loader::from_reader("m", "secret=ABCDEFGHIJKLMNOP\n".as_bytes());
    let m = crate::master::config::MasterConfig::from_loader("m".into(), &mut l);
    keys.extend(m.describe().into_iter().map(|(k, _)| k));
    #[cfg(feature = "node")]
    {
        let text = "connect=tcp://127.0.0.1:1\nsecret=ABCDEFGHIJKLMNOP\nnode_id=1\n";
        let mut l = Loader::from_reader("n", text.as_bytes());
        let n = crate::node::NodeConfig::from_loader("n".into(), &mut l);
        keys.extend(n.describe().into_iter().map(|(k, _)| k));
    }
    assert!(keys.len() > 20, "{keys:?}");
    for k in keys {
        let entry = format!(".TP\n.B {}\n", k.replace('-', "\\-"));
        assert!(page.contains(&entry), "vmwatch.conf(5) lacks `{k}`");
    }
}
