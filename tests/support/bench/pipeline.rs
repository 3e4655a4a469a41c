//! Section: the master pipeline in-process, accepted vs forged messages.
use std::time::Instant;

use vmwatch::master::receiver::replay::ReplayGuard;
use vmwatch::master::view::table::StateTable;
use vmwatch::protocol::{decode, encode};

use crate::common::{event_msg, median, now_ms, SECRET};
use crate::Run;

/// Section 1: decode + verify + replay check + apply, per message.
pub fn pipeline(run: &Run, out: &mut String) {
    let n = run.count(20_000, 200) as usize;
    let ts = now_ms();
    let good: Vec<[Vec<u8>; 2]> = (0..n)
        .map(|i| encode(SECRET, &event_msg(i as u64 + 1, i, ts)))
        .collect();
    let forged: Vec<[Vec<u8>; 2]> = (0..n)
        .map(|i| encode(b"WRONG-SECRET", &event_msg(i as u64 + 1, i, ts)))
        .collect();
    let mut good_ns = Vec::new();
    let mut bad_ns = Vec::new();
    for _round in 0..3 {
        let mut guard = ReplayGuard::new(300);
        let mut table = StateTable::new(true, 90);
        let t = Instant::now();
        let mut updates = 0;
        for f in &good {
            let m = decode(SECRET, f.as_ref()).expect("valid");
            guard.check(&m.header, ts, 0).expect("fresh");
            updates += table.apply(&m, ts).len();
        }
        good_ns.push(t.elapsed().as_nanos() as f64 / n as f64);
        assert!(updates > 0);
        let t = Instant::now();
        let mut rejected = 0;
        for f in &forged {
            if decode(SECRET, f.as_ref()).is_err() {
                rejected += 1;
            }
        }
        bad_ns.push(t.elapsed().as_nanos() as f64 / n as f64);
        assert_eq!(rejected, n);
    }
    let g = median(&mut good_ns);
    let b = median(&mut bad_ns);
    out.push_str(&format!(
        "| master pipeline, accepted event message | {:.1} µs/msg ({:.0} msg/s) |\n\
         | master pipeline, forged message (bad MAC) | {:.1} µs/msg ({:.0} msg/s); {:.2}× the cost of an accepted one |\n",
        g / 1000.0,
        1e9 / g,
        b / 1000.0,
        1e9 / b,
        b / g
    ));
}
