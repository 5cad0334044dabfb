//! Round trips for every message (proptest) and the decoder's refusals.

use migrate_proto::frame::{decode, encode, wrap, FrameReader};
use migrate_proto::limits::*;
use migrate_proto::msg::*;
use migrate_proto::path::RelPath;
use migrate_proto::DecodeError;
use proptest::prelude::*;

fn rel_path() -> impl Strategy<Value = RelPath> {
    prop::collection::vec("[a-zA-Z0-9_ .-]{1,12}", 1..5).prop_filter_map("not . or ..", |parts| {
        if parts.iter().any(|p| p == "." || p == "..") {
            return None;
        }
        RelPath::new(parts.join("/")).ok()
    })
}

fn text() -> impl Strategy<Value = String> {
    ".{0,40}"
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn caps() -> impl Strategy<Value = Capabilities> {
    (
        any::<bool>(),
        prop::collection::vec("[a-z0-9]{1,8}", 0..4),
        text(),
        text(),
        bytes(64),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(d, c, cv, k, cpu, r, disk)| Capabilities {
            mem_dirty_tracking: d,
            compression: c,
            criu_version: cv,
            kernel: k,
            cpu_description: cpu,
            free_ram: r,
            free_disk: disk,
        })
}

fn kind() -> impl Strategy<Value = FileKind> {
    prop_oneof![
        Just(FileKind::Regular),
        Just(FileKind::Dir),
        Just(FileKind::CharDev),
        Just(FileKind::BlockDev),
        Just(FileKind::Fifo),
        Just(FileKind::Socket)
    ]
}

fn entry() -> impl Strategy<Value = FsEntry> {
    (
        rel_path(),
        prop::option::of("[^\0]{1,30}"),
        kind(),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<i64>(),
            0u32..1_000_000_000,
            any::<u64>(),
        ),
        (
            any::<u32>(),
            any::<u32>(),
            prop::option::of(any::<u64>()),
            any::<bool>(),
        ),
        prop::collection::vec(("[a-z.]{1,20}", bytes(32)), 0..3),
    )
        .prop_map(
            |(path, target, kind, (mode, uid, gid, ms, mn, size), (maj, min, hl, sparse), xattrs)| FsEntry {
                path,
                kind: if target.is_some() { FileKind::Symlink } else { kind },
                mode,
                uid,
                gid,
                mtime_sec: ms,
                mtime_nsec: mn,
                size,
                link_target: target,
                rdev_major: maj,
                rdev_minor: min,
                hardlink_group: hl,
                xattrs,
                sparse,
            },
        )
}

fn page() -> impl Strategy<Value = Page> {
    (
        any::<u32>(),
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(|(pid, addr, hash, has, fill)| Page {
            pid,
            vaddr: addr & !(PAGE_SIZE as u64 - 1),
            hash,
            data: has.then(|| vec![fill; PAGE_SIZE]),
        })
}

fn reason() -> impl Strategy<Value = AbortReason> {
    prop_oneof![
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| AbortReason::VersionMismatch {
            ours_min: a,
            ours_max: b
        }),
        text().prop_map(AbortReason::PlanRefused),
        text().prop_map(AbortReason::NoSpace),
        text().prop_map(AbortReason::DumpFailed),
        text().prop_map(AbortReason::RestoreFailed),
        text().prop_map(AbortReason::NotConverging),
        text().prop_map(AbortReason::Timeout),
        text().prop_map(AbortReason::Cancelled),
        text().prop_map(AbortReason::Protocol),
        text().prop_map(AbortReason::Local),
    ]
}

fn round_report() -> impl Strategy<Value = RoundReport> {
    (any::<u32>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
        |(round, sent_bytes, dirty_bytes, duration_ms)| RoundReport {
            round,
            sent_bytes,
            dirty_bytes,
            duration_ms,
        },
    )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<[u8; 16]>(), any::<u32>(), any::<u32>(), text(), caps()).prop_map(
            |(migration_id, version_min, version_max, host, caps)| {
                Message::Hello(Hello {
                    migration_id,
                    version_min,
                    version_max,
                    host,
                    caps,
                })
            }
        ),
        (any::<u32>(), text(), caps()).prop_map(|(version, host, caps)| Message::HelloAck(HelloAck {
            version,
            host,
            caps
        })),
        (
            any::<u32>(),
            text(),
            any::<bool>(),
            (any::<u64>(), any::<u64>(), any::<u64>()),
            (any::<bool>(), any::<bool>(), any::<u64>(), any::<u64>())
        )
            .prop_map(
                |(ctid, config, image, (pb, pi, ram), (online, keep_dst, bwlimit, dt))| {
                    Message::Plan(Plan {
                        ctid,
                        config,
                        layout: if image { Layout::Image } else { Layout::Simfs },
                        private_bytes: pb,
                        private_inodes: pi,
                        ram_bytes: ram,
                        online,
                        keep_dst,
                        bwlimit,
                        max_downtime_ms: dt,
                        start: online || keep_dst,
                    })
                }
            ),
        Just(Message::PlanAccepted),
        (any::<u32>(), prop::collection::vec(entry(), 0..5))
            .prop_map(|(pass, entries)| Message::FsEntries { pass, entries }),
        (rel_path(), any::<u32>(), bytes(100)).prop_map(|(path, block_size, signature)| {
            Message::FsSignature(FsSignature {
                path,
                block_size,
                signature,
            })
        }),
        (rel_path(), bytes(100), any::<u64>(), any::<[u8; 32]>()).prop_map(
            |(path, delta, result_size, result_hash)| Message::FsDelta(FsDelta {
                path,
                delta,
                result_size,
                result_hash
            })
        ),
        (rel_path(), any::<u64>(), any::<bool>(), bytes(100)).prop_map(|(path, offset, compressed, data)| {
            Message::FsData(FsData {
                path,
                offset,
                compressed,
                data,
            })
        }),
        (any::<u32>(), prop::collection::vec(rel_path(), 0..5))
            .prop_map(|(pass, paths)| Message::FsDelete { pass, paths }),
        (any::<u32>(), any::<bool>()).prop_map(|(pass, last)| Message::FsPassDone { pass, last }),
        (any::<u32>(), prop::collection::vec(page(), 0..4))
            .prop_map(|(round, pages)| Message::Pages(PageBatch { round, pages })),
        (rel_path(), prop::collection::vec(page(), 0..4))
            .prop_map(|(name, pages)| Message::ImagePages(ImagePages { name, pages })),
        (any::<u32>(), 0u32..1_000_000, 1usize..4).prop_map(|(round, first_slot, n)| Message::PageSlots(PageSlots {
            round,
            first_slot,
            data: vec![first_slot as u8; n * PAGE_SIZE],
        })),
        (
            rel_path(),
            0u64..1 << 20,
            prop::collection::vec((0u8..3, 0u32..1 << 20, 1u32..64), 0..6)
        )
            .prop_map(|(name, page, runs)| {
                let runs: Vec<PageRun> = runs
                    .into_iter()
                    .map(|(k, slot, count)| match k {
                        0 => PageRun::Held { slot, count },
                        1 => PageRun::Data { count: count % 4 + 1 },
                        _ => PageRun::Zero { count },
                    })
                    .collect();
                let data_pages: u32 = runs
                    .iter()
                    .map(|r| if let PageRun::Data { count } = r { *count } else { 0 })
                    .sum();
                Message::ImageRuns(ImageRuns {
                    name,
                    offset: page * PAGE_SIZE as u64,
                    runs,
                    data: vec![3; data_pages as usize * PAGE_SIZE],
                })
            }),
        (0u32..MAX_STREAMS as u32).prop_map(|index| Message::BulkStream { index }),
        prop::collection::vec(any::<u64>(), 0..MAX_STREAMS).prop_map(|frames| Message::Flush { frames }),
        round_report().prop_map(Message::MemRoundDone),
        any::<u32>().prop_map(|round| Message::MemRoundAck { round }),
        Just(Message::Frozen),
        (rel_path(), any::<u64>(), any::<bool>(), bytes(100)).prop_map(|(name, offset, compressed, data)| {
            Message::Image(ImageChunk {
                name,
                offset,
                compressed,
                data,
            })
        }),
        (any::<u32>(), any::<u64>()).prop_map(|(images, bytes)| Message::FinalDone { images, bytes }),
        Just(Message::Restored),
        Just(Message::Commit),
        Just(Message::CommitAck),
        reason().prop_map(Message::Abort),
        (text(), any::<u64>(), any::<u64>()).prop_map(|(phase, done, total)| Message::Progress { phase, done, total }),
        (
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(round_report(), 0..4),
            any::<u64>(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(t, f, rounds, fs, mem, fin)| Message::Done(Stats {
                total_ms: t,
                frozen_ms: f,
                rounds,
                fs_bytes: fs,
                mem_bytes: mem,
                final_bytes: fin
            })),
        any::<[u8; 16]>().prop_map(|migration_id| Message::Resolve { migration_id }),
        (any::<[u8; 16]>(), any::<bool>()).prop_map(|(migration_id, committed)| {
            Message::Resolved {
                migration_id,
                committed,
            }
        }),
        Just(Message::CapacityQuery),
        (
            text(),
            any::<[u64; 4]>(),
            any::<u32>(),
            prop::collection::vec(any::<u32>(), 0..8),
            any::<u32>()
        )
            .prop_map(|(host, m, cpus, ctids, running)| Message::Capacity(Capacity {
                host,
                mem_available: m[0],
                mem_total: m[1],
                disk_free: m[2],
                disk_total: m[3],
                cpus,
                ctids,
                running
            })),
        (any::<u32>(), any::<bool>(), any::<u64>(), any::<u64>()).prop_map(
            |(ctid, online, max_downtime_ms, bwlimit)| {
                Message::Pull(PullRequest {
                    ctid,
                    online,
                    max_downtime_ms,
                    bwlimit,
                })
            }
        ),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(m in message()) {
        let frame = encode(&m).unwrap();
        let (back, used) = decode(&frame).unwrap().unwrap();
        prop_assert_eq!(used, frame.len());
        prop_assert_eq!(back, m);
    }

    #[test]
    fn a_stream_split_anywhere_yields_the_same_messages(ms in prop::collection::vec(message(), 1..6), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let stream: Vec<u8> = ms.iter().flat_map(|m| encode(m).unwrap()).collect();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        points.sort();
        let mut r = FrameReader::new();
        let mut out = Vec::new();
        let mut last = 0;
        for p in points.into_iter().chain(std::iter::once(stream.len())) {
            r.push(&stream[last..p]);
            last = p;
            while let Some(m) = r.next().unwrap() {
                out.push(m);
            }
        }
        prop_assert_eq!(out, ms);
        prop_assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(b in bytes(512)) {
        let _ = decode(&b);
        let mut r = FrameReader::new();
        r.push(&b);
        while let Ok(Some(_)) = r.next() {}
    }

    #[test]
    fn a_flipped_bit_is_caught(m in message(), pos in any::<usize>(), bit in 0u8..8) {
        let mut frame = encode(&m).unwrap();
        let i = pos % frame.len();
        frame[i] ^= 1 << bit;
        // Anything but the same message: a refusal, a wait for more bytes (length grew), or,
        // never, a silently different message.
        if let Ok(Some((back, _))) = decode(&frame) {
            prop_assert!(false, "corrupted frame decoded as {:?}", back);
        }
    }
}

#[test]
fn an_oversized_length_is_refused_from_the_header_alone() {
    let mut header = (Kind::FsData as u16).to_be_bytes().to_vec();
    header.extend_from_slice(&((MAX_FRAME + 1) as u32).to_be_bytes());
    header.extend_from_slice(&[0; 4]);
    assert!(matches!(decode(&header), Err(DecodeError::Limit { what: "frame", .. })));
    let mut r = FrameReader::new();
    r.push(&header);
    assert!(r.next().is_err());
    assert_eq!(r.buffered(), 0, "the reader kept the hostile bytes");
}

#[test]
fn unknown_kinds_and_bad_checksums_are_refused() {
    assert_eq!(decode(&wrap(999, b"")), Err(DecodeError::UnknownKind(999)));
    let mut f = encode(&Message::Commit).unwrap();
    f[9] ^= 1;
    assert_eq!(decode(&f), Err(DecodeError::Checksum));
    // A unit message with a payload is malformed.
    assert!(matches!(
        decode(&wrap(Kind::Commit as u16, b"x")),
        Err(DecodeError::Payload { .. })
    ));
}

#[test]
fn hostile_paths_are_refused_while_decoding() {
    for bad in ["../../etc/shadow", "/etc/shadow", "a/../../b", "a\0b", "a//b", ""] {
        let payload = postcard::to_allocvec(&(bad.to_string(), 0u64, false, vec![1u8, 2, 3])).unwrap();
        match decode(&wrap(Kind::FsData as u16, &payload)) {
            Err(DecodeError::Payload { .. }) => {}
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn counts_and_sizes_over_the_limits_are_refused() {
    let p = RelPath::new("f").unwrap();
    let too_many = Message::FsDelete {
        pass: 1,
        paths: vec![p.clone(); MAX_ENTRIES + 1],
    };
    assert!(matches!(
        encode(&too_many),
        Err(DecodeError::Limit { what: "deletions", .. })
    ));
    let payload = postcard::to_allocvec(&(1u32, vec![p.clone(); MAX_ENTRIES + 1])).unwrap();
    assert!(matches!(
        decode(&wrap(Kind::FsDelete as u16, &payload)),
        Err(DecodeError::Limit { what: "deletions", .. })
    ));
    let big = Message::FsData(FsData {
        path: p.clone(),
        offset: 0,
        compressed: false,
        data: vec![0; MAX_CHUNK + 1],
    });
    assert!(matches!(encode(&big), Err(DecodeError::Limit { .. })));
    let bad_page = Message::Pages(PageBatch {
        round: 1,
        pages: vec![Page {
            pid: 1,
            vaddr: 4096,
            hash: [0; 32],
            data: Some(vec![0; 100]),
        }],
    });
    assert!(matches!(encode(&bad_page), Err(DecodeError::Invalid(_))));
    let unaligned = Message::Pages(PageBatch {
        round: 1,
        pages: vec![Page {
            pid: 1,
            vaddr: 4095,
            hash: [0; 32],
            data: None,
        }],
    });
    assert!(matches!(encode(&unaligned), Err(DecodeError::Invalid(_))));
    // A length prefix claiming a huge vector in a small frame fails without allocating it.
    let mut payload = postcard::to_allocvec(&1u32).unwrap();
    payload.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(matches!(
        decode(&wrap(Kind::FsDelete as u16, &payload)),
        Err(DecodeError::Payload { .. })
    ));
}

#[test]
fn version_4_messages_over_their_limits_are_refused() {
    let name = RelPath::new("pages-1.img").unwrap();
    let runs = |runs: Vec<PageRun>, data: usize, offset: u64| {
        Message::ImageRuns(ImageRuns {
            name: name.clone(),
            offset,
            runs,
            data: vec![0; data],
        })
    };
    let invalid = |m: &Message| matches!(encode(m), Err(DecodeError::Invalid(_)) | Err(DecodeError::Limit { .. }));
    // Slots: whole pages, at least one, not past the last slot, at most a batch.
    for data in [0, 100, PAGE_SIZE + 1, (MAX_PAGES + 1) * PAGE_SIZE] {
        let m = Message::PageSlots(PageSlots {
            round: 1,
            first_slot: 0,
            data: vec![0; data],
        });
        assert!(invalid(&m), "{data} bytes of slots");
    }
    assert!(invalid(&Message::PageSlots(PageSlots {
        round: 1,
        first_slot: u32::MAX,
        data: vec![0; 2 * PAGE_SIZE],
    })));
    // Runs: data matching the data runs, no empty run, aligned, bounded in count and pages.
    assert!(encode(&runs(
        vec![PageRun::Data { count: 2 }, PageRun::Zero { count: 5 }],
        2 * PAGE_SIZE,
        0
    ))
    .is_ok());
    assert!(invalid(&runs(vec![PageRun::Data { count: 2 }], PAGE_SIZE, 0)));
    assert!(invalid(&runs(vec![PageRun::Zero { count: 0 }], 0, 0)));
    assert!(invalid(&runs(vec![PageRun::Zero { count: 1 }], 0, 100)));
    assert!(invalid(&runs(vec![PageRun::Zero { count: 1 }; MAX_RUNS + 1], 0, 0)));
    assert!(invalid(&runs(
        vec![PageRun::Held {
            slot: 0,
            count: MAX_RUN_PAGES as u32 + 1
        }],
        0,
        0
    )));
    assert!(invalid(&runs(
        vec![PageRun::Held {
            slot: u32::MAX - 1,
            count: 2
        }],
        0,
        0
    )));
    assert!(invalid(&runs(vec![PageRun::Zero { count: 1 }], 0, MAX_IMAGE_BYTES)));
    assert!(invalid(&runs(vec![PageRun::Zero { count: 1 }], 0, u64::MAX - 4095)));
    // Streams: named within range, flushes naming at most every stream.
    assert!(invalid(&Message::BulkStream {
        index: MAX_STREAMS as u32
    }));
    assert!(invalid(&Message::Flush {
        frames: vec![0; MAX_STREAMS + 1]
    }));
    // The same refusals when the bytes come from a peer rather than our encoder.
    let payload = postcard::to_allocvec(&ImageRuns {
        name: name.clone(),
        offset: 0,
        runs: vec![PageRun::Data { count: 3 }],
        data: vec![0; PAGE_SIZE],
    })
    .unwrap();
    assert!(matches!(
        decode(&wrap(Kind::ImageRuns as u16, &payload)),
        Err(DecodeError::Invalid(_))
    ));
}

/// Byte buffers are encoded as serde_bytes: the same bytes as the plain `Vec<u8>` sequences of
/// earlier builds, so peers of either build understand each other.
#[test]
fn byte_buffers_keep_their_wire_format() {
    #[derive(serde::Serialize)]
    struct PlainPage {
        pid: u32,
        vaddr: u64,
        hash: [u8; 32],
        data: Option<Vec<u8>>,
    }
    let data: Vec<u8> = (0..=255u8).cycle().take(PAGE_SIZE).collect();
    let ours = Page {
        pid: 7,
        vaddr: 4096,
        hash: [9; 32],
        data: Some(data.clone()),
    };
    let plain = PlainPage {
        pid: 7,
        vaddr: 4096,
        hash: [9; 32],
        data: Some(data),
    };
    assert_eq!(
        postcard::to_allocvec(&ours).unwrap(),
        postcard::to_allocvec(&plain).unwrap()
    );
    let back: Page = postcard::from_bytes(&postcard::to_allocvec(&plain).unwrap()).unwrap();
    assert_eq!(back, ours);
}
