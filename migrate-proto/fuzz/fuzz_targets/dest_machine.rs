//! A destination fed arbitrary frames from a hostile source, interleaved with local events and
//! timeouts chosen by the input: it never panics, and it never runs a container it has not been
//! told to commit. Input: records of `ctl: u8, len: u16 (big-endian), body[len]`; `ctl % 8`
//! picks a local event (0-4) or stream bytes (5-7). Seeds recorded from simulated migrations
//! (`cargo run -p migrate-proto --example fuzz_seeds`) start it deep in the protocol.
#![no_main]
use core::time::Duration;

use libfuzzer_sys::fuzz_target;
use migrate_proto::frame::FrameReader;
use migrate_proto::machine::{Action, Custody, DestConfig, Destination, Event, Phase};
use migrate_proto::msg::{AbortReason, Message};
use migrate_proto::sim::caps;

fuzz_target!(|data: &[u8]| {
    let mut d = Destination::new(DestConfig::new("fuzz".into(), caps()));
    let mut r = FrameReader::new();
    let mut now = Duration::ZERO;
    let mut committed_by_message = false;
    let mut rest = data;
    while rest.len() >= 3 {
        let ctl = rest[0];
        let len = (u16::from_be_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
        let body = &rest[3..3 + len];
        rest = &rest[3 + len..];
        now += Duration::from_millis(10);
        let actions = match ctl % 8 {
            0 => d.handle_event(now, Event::PlanChecked(Ok(()))),
            1 => d.handle_event(now, Event::RestoreSucceeded),
            2 => d.handle_event(now, Event::LinkLost),
            3 => d.handle_event(now, Event::Failed(AbortReason::Local("fuzz".into()))),
            4 => d.handle_timeout(now + Duration::from_secs(120)),
            5 => d.handle_event(now, Event::Journaled(Phase::Commit)),
            _ => {
                r.push(body);
                let mut acts = Vec::new();
                loop {
                    match r.next() {
                        Ok(Some(m)) => {
                            if m == Message::Commit {
                                committed_by_message = true;
                            }
                            acts.extend(d.handle_message(now, m));
                        }
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
                acts
            }
        };
        for a in &actions {
            if matches!(a, Action::RunRestored) {
                assert!(committed_by_message, "ran a container without a Commit");
            }
        }
        if d.custody() == Custody::Holds {
            assert!(committed_by_message);
        }
    }
});
