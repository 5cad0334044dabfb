//! The source's file passes over the private area: the first sends the whole tree, each later
//! one only what changed since the one before (noticed by size, times and inode, no reading),
//! changed files the destination already holds going as rsync deltas against the signature of
//! what was sent. A migration runs its passes through this; `vzbench` drives it directly to
//! measure file sync against rsync.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use migrate_proto::msg::{FileKind, FsData, FsDelta, Message};
use migrate_proto::path::RelPath;
use thiserror::Error;

use super::fs::{self as tree, Snapshot};
use super::wire::{Wire, WireError};

/// Entries per `FsEntries` message.
const BATCH: usize = 512;
/// Bytes of file data per `FsData` message.
pub const CHUNK: usize = 4 << 20;

#[derive(Debug, Error)]
pub enum SyncError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("interrupted by a signal")]
    Interrupted,
}

/// What the passes sent, for the migration's report.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Bytes of content before and after compression (or as deltas), for the ratio.
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    /// Changed files sent as rsync deltas, their sizes, and the bytes of the deltas.
    pub delta_files: u32,
    pub delta_file_bytes: u64,
    pub delta_bytes: u64,
}

/// One pass's result.
#[derive(Debug, Clone, Copy)]
pub struct PassStats {
    /// Entries sent (new or changed) and deleted.
    pub changed: usize,
    pub deleted: usize,
    /// Bytes this pass put on the wire.
    pub bytes: u64,
}

/// The state the passes over one tree share.
pub struct FileSync {
    root: PathBuf,
    snapshot: Snapshot,
    /// Hard-link groups whose data this pass sent (with the first member; the others are
    /// links to it on the destination).
    sent_groups: HashSet<u64>,
    /// Signatures of what the destination holds of files it could take a delta for.
    signatures: HashMap<String, fast_rsync::Signature>,
    pub counters: Counters,
    /// One zstd context for every chunk (a new one per chunk costs more than compressing a
    /// small file).
    zstd: Option<zstd::bulk::Compressor<'static>>,
    /// Buffers sent and given back, read into and compressed into again.
    pool: Vec<Vec<u8>>,
}

impl FileSync {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            snapshot: Snapshot::new(),
            sent_groups: HashSet::new(),
            signatures: HashMap::new(),
            counters: Counters::default(),
            zstd: zstd::bulk::Compressor::new(1).ok(),
            pool: Vec::new(),
        }
    }

    fn buffer(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_default()
    }

    /// Takes back a buffer whose message went out.
    pub fn recycle(&mut self, mut v: Vec<u8>) {
        if self.pool.len() < 4 {
            v.clear();
            self.pool.push(v);
        }
    }

    /// A chunk as it goes on the wire: zstd-compressed when that makes it smaller (and
    /// whether it is), counted for the compression ratio.
    pub fn compress(&mut self, chunk: Vec<u8>) -> (bool, Vec<u8>) {
        self.counters.raw_bytes += chunk.len() as u64;
        let mut out = self.buffer();
        out.reserve(zstd::zstd_safe::compress_bound(chunk.len()));
        let z = match self.zstd.as_mut() {
            Some(c) => c.compress_to_buffer(&chunk, &mut out).is_ok(),
            None => zstd::bulk::compress(&chunk, 1).map(|z| out = z).is_ok(),
        };
        let (compressed, data) = if z && out.len() < chunk.len() {
            self.recycle(chunk);
            (true, out)
        } else {
            self.recycle(out);
            (false, chunk)
        };
        self.counters.compressed_bytes += data.len() as u64;
        (compressed, data)
    }

    /// Sends the tree, or what changed since the last pass (the caller says when a pass is
    /// done: in a migration, the state machine does).
    pub async fn pass(&mut self, wire: &mut Wire, pass: u32, interrupted: &AtomicBool) -> Result<PassStats, SyncError> {
        let root = self.root.clone();
        let io = |what: String| move |source| SyncError::Io { what, source };
        let list = tree::scan(&root).map_err(io(format!("reading {}", root.display())))?;
        let cur: Snapshot = list.iter().map(|(p, m)| (p.clone(), tree::stamp(m))).collect();
        let (changed, gone) = tree::changes(&self.snapshot, &cur);
        let changed: HashSet<String> = changed.into_iter().collect();
        let start = wire.sent;
        // A group whose file changed arrives anew in this pass (the destination starts its
        // groups afresh at each pass's end): its first member with the data, then the links.
        self.sent_groups.clear();
        for g in &gone {
            self.signatures.remove(g);
        }
        // Deltas first: each rebuilds a file from what the destination holds, before this
        // pass's entry for it arrives.
        let mut by_delta = HashMap::new();
        for (rel, md) in &list {
            if changed.contains(rel) {
                if let Some(sig) = self.signatures.remove(rel) {
                    if md.is_file() && md.nlink() == 1 && md.len() <= tree::DELTA_MAX_FILE {
                        if let Some(sent) = self.send_delta(wire, rel, &sig).await? {
                            by_delta.insert(rel.clone(), sent);
                        }
                    }
                }
            }
        }
        let mut batch = Vec::new();
        let mut data_files = Vec::new();
        for (rel, md) in &list {
            if !changed.contains(rel) {
                continue;
            }
            let mut e = tree::entry(&root, rel, md).map_err(io(format!("reading {rel}")))?;
            if let Some(sent) = by_delta.get(rel) {
                e.size = *sent;
            }
            if e.kind == FileKind::Regular
                && !by_delta.contains_key(rel)
                && e.hardlink_group.is_none_or(|g| self.sent_groups.insert(g))
            {
                let sign =
                    e.hardlink_group.is_none() && (tree::DELTA_MIN_FILE..=tree::DELTA_MAX_FILE).contains(&md.len());
                data_files.push((e.path.clone(), md.len(), sign));
            }
            batch.push(e);
            if batch.len() >= BATCH {
                wire.send(&Message::FsEntries {
                    pass,
                    entries: std::mem::take(&mut batch),
                })
                .await?;
            }
        }
        if !batch.is_empty() {
            wire.send(&Message::FsEntries { pass, entries: batch }).await?;
        }
        for (path, len, sign) in data_files {
            if interrupted.load(Ordering::SeqCst) {
                return Err(SyncError::Interrupted);
            }
            let mut off = 0u64;
            let mut sent = Vec::new();
            while off < len {
                let mut chunk = self.buffer();
                tree::read_chunk_into(&root, path.as_str(), off, CHUNK, &mut chunk)
                    .map_err(io(format!("reading {path}")))?;
                if chunk.is_empty() {
                    self.recycle(chunk);
                    break;
                }
                let n = chunk.len() as u64;
                if sign {
                    sent.extend_from_slice(&chunk);
                }
                let (compressed, data) = self.compress(chunk);
                let msg = Message::FsData(FsData {
                    path: path.clone(),
                    offset: off,
                    compressed,
                    data,
                });
                wire.send(&msg).await?;
                if let Message::FsData(d) = msg {
                    self.recycle(d.data);
                }
                off += n;
            }
            // The destination holds exactly these bytes unless the file shrank while it was
            // read (then its entry's size left a tail of zeros there).
            if sign && sent.len() as u64 >= len {
                self.signatures
                    .insert(path.as_str().to_string(), tree::signature(&sent));
            }
        }
        let gone: Vec<RelPath> = gone.into_iter().filter_map(|g| RelPath::new(g).ok()).collect();
        for g in gone.chunks(BATCH) {
            wire.send(&Message::FsDelete {
                pass,
                paths: g.to_vec(),
            })
            .await?;
        }
        self.snapshot = cur;
        Ok(PassStats {
            changed: changed.len(),
            deleted: gone.len(),
            bytes: wire.sent - start,
        })
    }

    /// Sends `rel` as a delta against what the destination holds (`sig`), if the delta is worth
    /// it; returns the size of the content sent (which the entry for the file then carries:
    /// the file may have grown since the scan).
    async fn send_delta(
        &mut self,
        wire: &mut Wire,
        rel: &str,
        sig: &fast_rsync::Signature,
    ) -> Result<Option<u64>, SyncError> {
        let data = tree::read_chunk(&self.root, rel, 0, tree::DELTA_MAX_FILE as usize + 1).map_err(|source| {
            SyncError::Io {
                what: format!("reading {rel}"),
                source,
            }
        })?;
        if data.len() as u64 > tree::DELTA_MAX_FILE {
            return Ok(None);
        }
        let Some(delta) = tree::delta(sig, &data, migrate_proto::limits::MAX_BLOB - 4096) else {
            return Ok(None);
        };
        let Ok(path) = RelPath::new(rel.to_string()) else {
            return Ok(None);
        };
        let len = data.len() as u64;
        let c = &mut self.counters;
        c.delta_files += 1;
        c.delta_file_bytes += len;
        c.delta_bytes += delta.len() as u64;
        c.raw_bytes += len;
        c.compressed_bytes += delta.len() as u64;
        wire.send(&Message::FsDelta(FsDelta {
            path,
            delta,
            result_size: len,
            result_hash: *blake3::hash(&data).as_bytes(),
        }))
        .await?;
        self.signatures.insert(rel.to_string(), tree::signature(&data));
        Ok(Some(len))
    }
}
