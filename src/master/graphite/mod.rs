//! The `graphite` thread: exports metrics to carbon, when configured.
//!
//! Off unless `graphite=tcp://HOST[:PORT]` is set ([`settings`]). The
//! receiver hands every accepted stats message, and once per
//! `graphite_interval` a summary of the state table, to the `graphite`
//! thread ([`sink`]) through a bounded channel ([`channel`]) with
//! `try_send` ([`exporter`]): when the channel is full the item is dropped
//! and counted, so carbon being slow or down never slows the receiver or
//! the panel. Lines are rendered ([`render`]), buffered and sent in that
//! thread.

pub mod channel;
pub mod exporter;
pub mod render;
pub mod settings;
pub mod sink;

use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use channel::{GraphiteCounters, CHANNEL_ITEMS};
use exporter::Exporter;
use settings::Settings;

/// Starts the `graphite` thread if export is on.
pub fn start(settings: &Settings) -> Option<(Exporter, JoinHandle<()>)> {
    let target = settings.target.clone()?;
    let (tx, rx) = sync_channel(CHANNEL_ITEMS);
    let counters = Arc::new(GraphiteCounters::default());
    let sink = sink::Sink::new(
        target,
        settings.prefix.clone(),
        settings.buffer,
        counters.clone(),
    );
    let thread = crate::service::spawn("graphite", move || sink.run(rx));
    let exporter = Exporter::new(tx, counters, Duration::from_secs(settings.interval));
    Some((exporter, thread))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::time::Instant;

    /// Accepts one connection on `l` within 20 s and returns its first
    /// `n` lines.
    fn lines_from(l: &TcpListener, n: usize) -> Vec<String> {
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let stream = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("nothing connected to the test carbon: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut r = BufReader::new(stream);
        (0..n)
            .map(|_| {
                let mut s = String::new();
                r.read_line(&mut s).expect("a line from the exporter");
                s.trim_end().to_string()
            })
            .collect()
    }

    #[test]
    fn lines_wait_for_carbon_and_arrive_once_it_listens() {
        // A port with nothing behind it yet.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = Settings {
            target: Some(format!("127.0.0.1:{port}")),
            prefix: "t".into(),
            interval: 3600,
            buffer: 100,
        };
        let (mut exp, thread) = start(&settings).unwrap();
        let mut table = crate::master::view::table::StateTable::new(false, 90);
        table.restore_node("n1", 0, true);
        exp.tick(&table, 5_000);
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let got = lines_from(&l, 2);
        assert_eq!(got[0], "t.nodes.n1.up 1 5");
        assert_eq!(got[1], "t.nodes.n1.states.blocked 0 5");
        drop(exp);
        thread.join().unwrap();
    }
}
