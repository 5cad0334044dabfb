//! Writes seeds for the `dest_machine` fuzz target: what the destination received in simulated
//! migrations (normal, offline, a peer of the previous version, failures), in the target's
//! record format. Version 4's bulk frames are in the order they reached the destination's state
//! machine (the streams' own framing, `BulkStream` and `Flush`, is the engine's, not the
//! machine's).
//!
//!     cargo run -p migrate-proto --example fuzz_seeds -- migrate-proto/fuzz/corpus/dest_machine

use migrate_proto::machine::{Event, Phase};
use migrate_proto::sim::{DestInput, Fault, Side, Sim, SimConfig};

fn record(ctl: u8, body: &[u8], out: &mut Vec<u8>) {
    for chunk in body.chunks(u16::MAX as usize) {
        out.push(ctl);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: fuzz_seeds DIR");
    std::fs::create_dir_all(&dir).expect("creating the corpus directory");
    let configs = [
        ("normal", SimConfig::default()),
        (
            "offline",
            SimConfig {
                online: false,
                ..SimConfig::default()
            },
        ),
        // A peer of the previous release: version 3, pages by hash, no bulk streams.
        (
            "version-3",
            SimConfig {
                dest_versions: Some((2, 3)),
                ..SimConfig::default()
            },
        ),
        (
            "version-mismatch",
            SimConfig {
                dest_versions: Some((1, 1)),
                ..SimConfig::default()
            },
        ),
        (
            "restore-fails",
            SimConfig {
                faults: vec![migrate_proto::sim::Fault::RestoreFails],
                ..SimConfig::default()
            },
        ),
        (
            "cut-commit",
            SimConfig {
                faults: vec![Fault::Cut(Side::Source, Phase::Commit)],
                ..SimConfig::default()
            },
        ),
    ];
    for (name, cfg) in configs {
        let mut sim = Sim::new(cfg);
        sim.run();
        let mut out = Vec::new();
        for input in &sim.dest_trace {
            match input {
                DestInput::Frame(b) => record(6, b, &mut out),
                DestInput::Event(Event::PlanChecked(Ok(()))) => record(0, &[], &mut out),
                DestInput::Event(Event::RestoreSucceeded) => record(1, &[], &mut out),
                DestInput::Event(Event::LinkLost) => record(2, &[], &mut out),
                DestInput::Event(Event::Journaled(_)) => record(5, &[], &mut out),
                DestInput::Event(_) => record(3, &[], &mut out),
                DestInput::Timeout => record(4, &[], &mut out),
            }
        }
        let path = format!("{dir}/seed-{name}");
        std::fs::write(&path, &out).expect("writing a seed");
        println!("{path}: {} bytes, {} inputs", out.len(), sim.dest_trace.len());
    }
}
