//! Section: a burst of updates to the panel command, batched vs one call each.
use std::time::{Duration, Instant};

use vmwatch::master::panel::update::{PanelState, Update};
use vmwatch::master::panel::PanelCommand;
use vmwatch::vocab::State;

use crate::common::median;
use crate::Run;

/// Section 2: a burst of updates (500; 20 in the smoke run) through the real panel-call code.
pub fn panel_batching(run: &Run, out: &mut String) {
    let dir = run.dir.as_path();
    let script = dir.join("panel.sh");
    crate::common::write_script(&script, "#!/bin/sh\ncat >/dev/null\n");
    let cmd = PanelCommand {
        argv: vec![script.display().to_string()],
        timeout: Duration::from_secs(30),
    };
    let n = run.count(500, 20);
    let updates: Vec<Update> = (0..n)
        .map(|i| Update::Domain {
            node: "1".into(),
            uuid: format!("00000000-0000-4000-8000-{i:012x}"),
            name: format!("vm-{i}"),
            state: PanelState::Is(State::Running),
            reason: "booted".into(),
            old: None,
            since_ms: 1,
        })
        .collect();
    let mut batched = Vec::new();
    let mut single = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        for chunk in updates.chunks(n as usize) {
            cmd.call(chunk, None).result.unwrap();
        }
        batched.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for u in &updates {
            cmd.call(std::slice::from_ref(u), None).result.unwrap();
        }
        single.push(t.elapsed().as_secs_f64());
    }
    let b = median(&mut batched);
    let s = median(&mut single);
    out.push_str(&format!(
        "| {n}-update burst to the panel, batched (panel_batch={n}) | 1 invocation, {:.1} ms |\n\
         | {n}-update burst to the panel, one call per update | {n} invocations, {:.0} ms; batching is {:.0}× faster |\n",
        b * 1000.0,
        s * 1000.0,
        s / b
    ));
}
