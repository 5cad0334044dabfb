//! The simulated pair: normal migrations, and every way one can fail, each ending with exactly
//! one side owning a running container.

use core::time::Duration;

use migrate_proto::machine::{Custody, Outcome, Phase};
use migrate_proto::msg::AbortReason;
use migrate_proto::sim::{Copy, Fault, LinkConfig, Side, Sim, SimConfig, SimResult, Workload};

fn run(cfg: SimConfig) -> SimResult {
    Sim::new(cfg).run()
}

const SOURCE_PHASES: &[Phase] = &[
    Phase::Handshake,
    Phase::Plan,
    Phase::FsSync,
    Phase::MemPrecopy,
    Phase::Freeze,
    Phase::FinalSync,
    Phase::Restore,
    Phase::Commit,
];
const DEST_PHASES: &[Phase] = &[
    Phase::Handshake,
    Phase::Plan,
    Phase::FsSync,
    Phase::MemPrecopy,
    Phase::FinalSync,
    Phase::Restore,
    Phase::Commit,
];

fn committed(r: &SimResult) {
    assert_eq!(r.source_outcome, Some(Outcome::Committed), "{r:#?}");
    assert_eq!(r.dest_outcome, Some(Outcome::Committed), "{r:#?}");
    assert_eq!((r.source_custody, r.dest_custody), (Custody::Released, Custody::Holds));
    assert_eq!((r.source_copy, r.dest_copy), (Copy::None, Copy::Running));
    assert!(r.exactly_one_owner());
}

fn rolled_back(r: &SimResult) {
    assert!(matches!(r.source_outcome, Some(Outcome::Aborted(_))), "{r:#?}");
    assert_eq!(
        (r.source_custody, r.dest_custody),
        (Custody::Holds, Custody::Released),
        "{r:#?}"
    );
    assert_eq!((r.source_copy, r.dest_copy), (Copy::Running, Copy::None), "{r:#?}");
    assert!(r.exactly_one_owner());
}

#[test]
fn normal_online_migration() {
    let r = run(SimConfig::default());
    committed(&r);
    assert_eq!(r.version, Some(4));
    assert!(r.page_refs_seen, "version 4 should use page references");
    assert!(r.round_acks_seen, "version 4 should acknowledge memory rounds");
    assert!(r.bulk_frames > 0, "version 4 should use bulk streams");
    assert!(r.rounds >= 1);
    for p in SOURCE_PHASES {
        assert!(r.phases_seen.contains(&(Side::Source, *p)), "source never in {p:?}");
    }
}

#[test]
fn normal_offline_migration() {
    let r = run(SimConfig {
        online: false,
        ..SimConfig::default()
    });
    committed(&r);
    assert_eq!(r.rounds, 0, "offline migrations copy no memory");
    assert!(!r.phases_seen.contains(&(Side::Source, Phase::MemPrecopy)));
}

#[test]
fn migration_over_a_slow_lossy_link() {
    let link = LinkConfig {
        latency: Duration::from_millis(40),
        bandwidth: 12_500_000,
        loss_every: 2,
        rto: Duration::from_millis(200),
        ..LinkConfig::default()
    };
    let r = run(SimConfig {
        link,
        max_downtime: Duration::from_secs(3),
        ..SimConfig::default()
    });
    committed(&r);
}

#[test]
fn a_failure_at_every_phase_from_either_side_leaves_one_owner() {
    for (side, phases) in [(Side::Source, SOURCE_PHASES), (Side::Destination, DEST_PHASES)] {
        for phase in phases {
            let r = run(SimConfig {
                faults: vec![Fault::Fail(side, *phase)],
                ..SimConfig::default()
            });
            assert_eq!(r.faults_fired, 1, "{side:?} never reached {phase:?}");
            assert!(r.exactly_one_owner(), "failure of {side:?} in {phase:?}: {r:#?}");
            if side == Side::Source && *phase == Phase::Commit {
                // Commit was already sent: a local failure cannot take it back.
                committed(&r);
            } else {
                rolled_back(&r);
            }
        }
    }
}

#[test]
fn a_cut_at_every_phase_leaves_one_owner() {
    for (side, phases) in [(Side::Source, SOURCE_PHASES), (Side::Destination, DEST_PHASES)] {
        for phase in phases {
            let r = run(SimConfig {
                faults: vec![Fault::Cut(side, *phase)],
                ..SimConfig::default()
            });
            assert_eq!(r.faults_fired, 1, "{side:?} never reached {phase:?}");
            assert!(r.exactly_one_owner(), "cut when {side:?} entered {phase:?}: {r:#?}");
            assert!(
                r.source_outcome.is_some(),
                "source never resolved after a cut in {phase:?}: {r:#?}"
            );
        }
    }
}

#[test]
fn a_cut_after_commit_is_resolved_by_asking() {
    // The destination got Commit (it runs the container) but the acknowledgement is lost.
    let r = run(SimConfig {
        faults: vec![Fault::Cut(Side::Destination, Phase::Done)],
        ..SimConfig::default()
    });
    committed(&r);
    assert!(
        r.phases_seen.contains(&(Side::Source, Phase::InDoubt)),
        "the source should have been in doubt: {r:#?}"
    );
}

#[test]
fn an_older_destination_speaks_version_2_without_round_acknowledgements() {
    let r = run(SimConfig {
        source_versions: Some((2, 3)),
        dest_versions: Some((1, 2)),
        ..SimConfig::default()
    });
    committed(&r);
    assert_eq!(r.version, Some(2));
    assert!(r.page_refs_seen);
    assert!(!r.round_acks_seen, "the source waited for what version 2 never sends");
}

#[test]
fn a_source_that_speaks_version_1_only_sends_no_page_references() {
    let r = run(SimConfig {
        source_versions: Some((1, 1)),
        dest_versions: Some((1, 1)),
        ..SimConfig::default()
    });
    committed(&r);
    assert_eq!(r.version, Some(1));
    assert!(!r.page_refs_seen);
    assert!(!r.round_acks_seen);
}

#[test]
fn a_newer_destination_meets_us_at_our_version() {
    let r = run(SimConfig {
        dest_versions: Some((4, 5)),
        ..SimConfig::default()
    });
    committed(&r);
    assert_eq!(r.version, Some(4));
}

#[test]
fn incompatible_versions_abort_and_the_source_keeps_the_container() {
    let r = run(SimConfig {
        dest_versions: Some((5, 6)),
        ..SimConfig::default()
    });
    rolled_back(&r);
    assert!(
        matches!(
            r.source_outcome,
            Some(Outcome::Aborted(AbortReason::VersionMismatch {
                ours_min: 5,
                ours_max: 6
            }))
        ),
        "{r:#?}"
    );
}

#[test]
fn refused_plan_and_failed_restore_roll_back() {
    let r = run(SimConfig {
        faults: vec![Fault::PlanRefused],
        ..SimConfig::default()
    });
    rolled_back(&r);
    assert!(matches!(
        r.source_outcome,
        Some(Outcome::Aborted(AbortReason::PlanRefused(_)))
    ));
    let r = run(SimConfig {
        faults: vec![Fault::RestoreFails],
        ..SimConfig::default()
    });
    rolled_back(&r);
    assert!(matches!(
        r.source_outcome,
        Some(Outcome::Aborted(AbortReason::RestoreFailed(_)))
    ));
}

#[test]
fn a_container_dirtying_faster_than_the_link_is_not_moved() {
    let workload = Workload {
        dirty_rate: 400 << 20,
        ram_bytes: 1 << 30,
        ..Workload::default()
    };
    let link = LinkConfig {
        bandwidth: 12_500_000,
        ..LinkConfig::default()
    };
    let r = run(SimConfig {
        workload,
        link,
        max_downtime: Duration::from_millis(100),
        ..SimConfig::default()
    });
    rolled_back(&r);
    assert!(
        matches!(r.source_outcome, Some(Outcome::Aborted(AbortReason::NotConverging(_)))),
        "{r:#?}"
    );
}

#[test]
fn online_migration_without_memory_precopy_freezes_after_the_file_sync() {
    let r = run(SimConfig {
        mem_precopy: false,
        ..SimConfig::default()
    });
    committed(&r);
    assert_eq!(r.rounds, 0);
    assert!(!r.phases_seen.contains(&(Side::Source, Phase::MemPrecopy)));
    assert!(r.phases_seen.contains(&(Side::Source, Phase::Freeze)));
    for phase in [
        Phase::FsSync,
        Phase::Freeze,
        Phase::FinalSync,
        Phase::Restore,
        Phase::Commit,
    ] {
        let r = run(SimConfig {
            mem_precopy: false,
            faults: vec![Fault::Cut(Side::Source, phase)],
            ..SimConfig::default()
        });
        assert!(r.exactly_one_owner(), "cut in {phase:?}: {r:#?}");
    }
}

/// Both sides speak version 4 (streams and slots). It is the current version, so every test
/// here that leaves the versions as they are (the failures and cuts at every phase among them)
/// runs on bulk streams too; this pins the tests of the streams themselves to it.
fn v4(cfg: SimConfig) -> SimConfig {
    SimConfig {
        source_versions: Some((3, 4)),
        dest_versions: Some((3, 4)),
        ..cfg
    }
}

#[test]
fn version_4_carries_bulk_data_on_streams_that_overtake_nothing_that_matters() {
    let r = run(v4(SimConfig::default()));
    committed(&r);
    assert_eq!(r.version, Some(4));
    assert!(r.round_acks_seen);
    assert!(r.bulk_frames > 0 && r.flushes > 0, "{r:#?}");
    // The streams really were out of step with the control stream: bulk frames arrived after
    // control frames sent after them, and control messages waited for bulk data.
    assert!(r.overtaken > 0, "no bulk frame arrived late: {r:#?}");
    assert!(r.held_for_flush > 0, "no control message had to wait: {r:#?}");
    for p in SOURCE_PHASES {
        assert!(r.phases_seen.contains(&(Side::Source, *p)), "source never in {p:?}");
    }
    let r = run(v4(SimConfig {
        online: false,
        ..SimConfig::default()
    }));
    committed(&r);
    assert_eq!(r.rounds, 0);
}

#[test]
fn version_4_over_a_slow_lossy_link_with_skewed_streams() {
    let link = LinkConfig {
        latency: Duration::from_millis(40),
        bandwidth: 12_500_000,
        loss_every: 2,
        rto: Duration::from_millis(200),
        bulk_skew: Duration::from_millis(150),
        ..LinkConfig::default()
    };
    let r = run(v4(SimConfig {
        link,
        max_downtime: Duration::from_secs(3),
        ..SimConfig::default()
    }));
    committed(&r);
    assert!(r.overtaken > 0 && r.held_for_flush > 0, "{r:#?}");
}

#[test]
fn version_4_meets_a_version_3_peer_at_3_either_way() {
    for (src, dst) in [((3, 4), (2, 3)), ((2, 3), (3, 4))] {
        let r = run(SimConfig {
            source_versions: Some(src),
            dest_versions: Some(dst),
            ..SimConfig::default()
        });
        committed(&r);
        assert_eq!(r.version, Some(3));
        assert_eq!(r.bulk_frames, 0, "no bulk streams below version 4");
    }
}

#[test]
fn the_source_sends_commit_only_after_its_journal_recorded_it() {
    // The simulation asserts at every send that Commit follows the journal's record of it.
    let r = run(SimConfig::default());
    committed(&r);
    let src: Vec<Phase> = r
        .journaled
        .iter()
        .filter(|(s, _)| *s == Side::Source)
        .map(|(_, p)| *p)
        .collect();
    let commit = src
        .iter()
        .position(|p| *p == Phase::Commit)
        .expect("the commit was never journaled");
    assert!(src[..commit].contains(&Phase::Restore), "{src:?}");
    assert_eq!(src.last(), Some(&Phase::Done), "{src:?}");
}

#[test]
fn a_journal_that_cannot_be_written_rolls_the_migration_back() {
    // A full disk on either side, at each phase the journal records before the commit: the
    // step the record was for is not taken, and the source keeps (and resumes) the container.
    for (side, phases) in [(Side::Source, SOURCE_PHASES), (Side::Destination, DEST_PHASES)] {
        for phase in phases {
            let r = run(SimConfig {
                faults: vec![Fault::JournalFails(side, *phase)],
                ..SimConfig::default()
            });
            assert_eq!(r.faults_fired, 1, "{side:?} never journaled {phase:?}");
            assert!(r.exactly_one_owner(), "journal of {side:?} failed at {phase:?}: {r:#?}");
            rolled_back(&r);
            assert!(
                matches!(r.source_outcome, Some(Outcome::Aborted(AbortReason::Local(_)))),
                "not rolled back for the journal: {r:#?}"
            );
            // Decided on the spot: never sent Commit, so never in doubt.
            assert!(!r.phases_seen.contains(&(Side::Source, Phase::InDoubt)), "{r:#?}");
            if side == Side::Source && *phase == Phase::Commit {
                assert!(
                    !matches!(r.dest_outcome, Some(Outcome::Committed)),
                    "the destination committed though the source could not record the commit: {r:#?}"
                );
            }
        }
    }
}
