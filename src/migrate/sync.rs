//! The source's file passes over the private area: the first sends the whole tree, each later
//! one only what changed since the one before (noticed by size, times and inode, no reading),
//! changed files the destination already holds going as rsync deltas against the signature of
//! what was sent. A migration runs its passes through this; `vzbench` drives it directly to
//! measure file sync against rsync.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use migrate_proto::msg::{FileKind, FsData, FsDelta, Message};
use migrate_proto::path::RelPath;
use thiserror::Error;

use super::fs::{self as tree, Snapshot};
use super::wire::{Outbox, WireError};

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
    /// Entries sent (new or changed).
    pub changed: usize,
    /// Bytes this pass put on the wire.
    pub bytes: u64,
}

/// The state the passes over one tree share.
pub struct FileSync {
    root: PathBuf,
    snapshot: Snapshot,
    /// Signatures of what the destination holds of files it could take a delta for.
    signatures: HashMap<String, fast_rsync::Signature>,
    /// The delta counters (the compression counters are the packer's).
    deltas: Counters,
    packer: Packer,
}

/// Reads and compresses chunks: one zstd context for every chunk (a new one per chunk costs
/// more than compressing a small file) and buffers used again (fresh pages for every file
/// cost more than reading it here).
struct Packer {
    zstd: Option<zstd::bulk::Compressor<'static>>,
    pool: Vec<Vec<u8>>,
    raw: u64,
    compressed: u64,
}

impl Default for Packer {
    fn default() -> Self {
        Self {
            zstd: zstd::bulk::Compressor::new(1).ok(),
            pool: Vec::new(),
            raw: 0,
            compressed: 0,
        }
    }
}

impl Packer {
    fn buffer(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_default()
    }

    fn recycle(&mut self, mut v: Vec<u8>) {
        if self.pool.len() < 4 {
            v.clear();
            self.pool.push(v);
        }
    }

    /// A chunk as it goes on the wire: zstd-compressed when that makes it smaller (and
    /// whether it is), counted for the compression ratio.
    fn compress(&mut self, chunk: Vec<u8>) -> (bool, Vec<u8>) {
        self.raw += chunk.len() as u64;
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
        self.compressed += data.len() as u64;
        (compressed, data)
    }
}

/// What the reader thread hands the sending side.
enum Piece {
    Data(Message),
    /// The signature of a file sent whole that may later go as a delta.
    Signature(String, fast_rsync::Signature),
    Failed(SyncError),
}

/// A file that was deleted (or whose directory was) between a pass's scan and its reading:
/// normal on a running container, and never an error of the migration (rsync's "file has
/// vanished"). Only the frozen pass, whose container cannot change anything, reads a settled tree.
fn vanished(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

/// The data of a pass's files, read and compressed on a thread of its own so the connection
/// keeps sending meanwhile (vzmigrate's runtime has one thread).
fn read_files(
    root: &Path,
    files: Vec<(RelPath, u64, bool)>,
    packer: &mut Packer,
    tx: &tokio::sync::mpsc::Sender<Piece>,
    back: &std::sync::mpsc::Receiver<Vec<u8>>,
    interrupted: &AtomicBool,
) {
    for (path, len, sign) in files {
        if interrupted.load(Ordering::SeqCst) {
            let _ = tx.blocking_send(Piece::Failed(SyncError::Interrupted));
            return;
        }
        let mut off = 0u64;
        let mut sent = Vec::new();
        while off < len {
            let mut chunk = back.try_recv().unwrap_or_else(|_| packer.buffer());
            if let Err(source) = tree::read_chunk_into(root, path.as_str(), off, CHUNK, &mut chunk) {
                if vanished(&source) {
                    // Deleted since the scan, as files of a running container are: what was
                    // sent stands until the next pass finds it gone (and deletes it there) or
                    // changed; the frozen pass settles it. No signature: the bytes are partial.
                    packer.recycle(chunk);
                    break;
                }
                let _ = tx.blocking_send(Piece::Failed(SyncError::Io {
                    what: format!("reading {path}"),
                    source,
                }));
                return;
            }
            if chunk.is_empty() {
                packer.recycle(chunk);
                break;
            }
            let n = chunk.len() as u64;
            if sign {
                sent.extend_from_slice(&chunk);
            }
            let (compressed, data) = packer.compress(chunk);
            let msg = Message::FsData(FsData {
                path: path.clone(),
                offset: off,
                compressed,
                data,
            });
            if tx.blocking_send(Piece::Data(msg)).is_err() {
                return;
            }
            off += n;
        }
        // The destination holds exactly these bytes unless the file shrank while it was read
        // (then its entry's size left a tail of zeros there).
        if sign
            && sent.len() as u64 >= len
            && tx
                .blocking_send(Piece::Signature(path.as_str().to_string(), tree::signature(&sent)))
                .is_err()
        {
            return;
        }
    }
}

impl FileSync {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            snapshot: Snapshot::new(),
            signatures: HashMap::new(),
            deltas: Counters::default(),
            packer: Packer::default(),
        }
    }

    /// What the passes sent so far.
    pub fn counters(&self) -> Counters {
        Counters {
            raw_bytes: self.deltas.raw_bytes + self.packer.raw,
            compressed_bytes: self.deltas.compressed_bytes + self.packer.compressed,
            ..self.deltas
        }
    }

    /// A chunk as it goes on the wire: zstd-compressed when that makes it smaller (and
    /// whether it is), counted for the compression ratio.
    pub fn compress(&mut self, chunk: Vec<u8>) -> (bool, Vec<u8>) {
        self.packer.compress(chunk)
    }

    /// Sends the tree, or what changed since the last pass (the caller says when a pass is
    /// done: in a migration, the state machine does).
    pub async fn pass(
        &mut self,
        wire: &mut impl Outbox,
        pass: u32,
        interrupted: &Arc<AtomicBool>,
    ) -> Result<PassStats, SyncError> {
        let root = self.root.clone();
        let io = |what: String| move |source| SyncError::Io { what, source };
        let list = tree::scan(&root).map_err(io(format!("reading {}", root.display())))?;
        let cur: Snapshot = list.iter().map(|(p, m)| (p.clone(), tree::stamp(m))).collect();
        let (changed, gone) = tree::changes(&self.snapshot, &cur);
        let changed: HashSet<String> = changed.into_iter().collect();
        let start = wire.sent();
        // Hard-link groups whose data this pass sends, with the first member (the others are
        // links to it on the destination). A group whose file changed arrives anew in each
        // pass, as the destination starts its groups afresh at each pass's end.
        let mut sent_groups = HashSet::new();
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
            let mut e = match tree::entry(&root, rel, md) {
                Ok(e) => e,
                // Gone since the scan: the next pass finds it gone, or changed.
                Err(err) if vanished(&err) => continue,
                Err(err) => return Err(io(format!("reading {rel}"))(err)),
            };
            if let Some(sent) = by_delta.get(rel) {
                e.size = *sent;
            }
            if e.kind == FileKind::Regular
                && !by_delta.contains_key(rel)
                && e.hardlink_group.is_none_or(|g| sent_groups.insert(g))
            {
                let sign =
                    e.hardlink_group.is_none() && (tree::DELTA_MIN_FILE..=tree::DELTA_MAX_FILE).contains(&md.len());
                data_files.push((e.path.clone(), md.len(), sign));
            }
            batch.push(e);
            if batch.len() >= BATCH {
                wire.put(&Message::FsEntries {
                    pass,
                    entries: std::mem::take(&mut batch),
                })
                .await?;
            }
        }
        if !batch.is_empty() {
            wire.put(&Message::FsEntries { pass, entries: batch }).await?;
        }
        self.send_data(wire, &root, data_files, interrupted).await?;
        let gone: Vec<RelPath> = gone.into_iter().filter_map(|g| RelPath::new(g).ok()).collect();
        for g in gone.chunks(BATCH) {
            wire.put(&Message::FsDelete {
                pass,
                paths: g.to_vec(),
            })
            .await?;
        }
        self.snapshot = cur;
        Ok(PassStats {
            changed: changed.len(),
            bytes: wire.sent() - start,
        })
    }

    /// Sends the files' data, read and compressed by a thread of its own.
    async fn send_data(
        &mut self,
        wire: &mut impl Outbox,
        root: &Path,
        files: Vec<(RelPath, u64, bool)>,
        interrupted: &Arc<AtomicBool>,
    ) -> Result<(), SyncError> {
        if files.is_empty() {
            return Ok(());
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Piece>(8);
        let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let mut packer = std::mem::take(&mut self.packer);
        let (root, stop) = (root.to_path_buf(), interrupted.clone());
        let reader = std::thread::Builder::new()
            .name("ferry-read".into())
            .spawn(move || {
                read_files(&root, files, &mut packer, &tx, &back_rx, &stop);
                packer
            })
            .map_err(|source| SyncError::Io {
                what: "starting the reader thread".into(),
                source,
            })?;
        let r = async {
            while let Some(p) = rx.recv().await {
                match p {
                    Piece::Data(msg) => {
                        wire.put(&msg).await?;
                        if let Message::FsData(d) = msg {
                            let _ = back_tx.send(d.data);
                        }
                    }
                    Piece::Signature(path, sig) => {
                        self.signatures.insert(path, sig);
                    }
                    Piece::Failed(e) => return Err(e),
                }
            }
            Ok(())
        }
        .await;
        // The reader stops at its next piece once nobody takes them.
        drop(rx);
        self.packer = reader.join().unwrap_or_default();
        r
    }

    /// Sends `rel` as a delta against what the destination holds (`sig`), if the delta is worth
    /// it; returns the size of the content sent (which the entry for the file then carries:
    /// the file may have grown since the scan).
    async fn send_delta(
        &mut self,
        wire: &mut impl Outbox,
        rel: &str,
        sig: &fast_rsync::Signature,
    ) -> Result<Option<u64>, SyncError> {
        let data = match tree::read_chunk(&self.root, rel, 0, tree::DELTA_MAX_FILE as usize + 1) {
            Ok(d) => d,
            // Gone since the scan: no delta (its data read finds it gone too).
            Err(e) if vanished(&e) => return Ok(None),
            Err(source) => {
                return Err(SyncError::Io {
                    what: format!("reading {rel}"),
                    source,
                })
            }
        };
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
        let c = &mut self.deltas;
        c.delta_files += 1;
        c.delta_file_bytes += len;
        c.delta_bytes += delta.len() as u64;
        c.raw_bytes += len;
        c.compressed_bytes += delta.len() as u64;
        wire.put(&Message::FsDelta(FsDelta {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A file deleted between a pass's scan and its reading (PostgreSQL replaces files such as
    /// pg_internal.init while it runs) is skipped, not a failure of the migration: no data, no
    /// signature for it; the other files go whole.
    #[test]
    fn a_file_that_vanished_after_the_scan_is_skipped() {
        let d = tempfile::tempdir().unwrap();
        let body = vec![7u8; 3 * tree::DELTA_MIN_FILE as usize];
        std::fs::write(d.path().join("kept"), &body).unwrap();
        let files = vec![
            (RelPath::new("gone".to_string()).unwrap(), 5000, true),
            (RelPath::new("kept".to_string()).unwrap(), body.len() as u64, true),
        ];
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let (_back_tx, back) = std::sync::mpsc::channel();
        let mut packer = Packer::default();
        read_files(d.path(), files, &mut packer, &tx, &back, &AtomicBool::new(false));
        drop(tx);
        let (mut data, mut signed) = (Vec::new(), Vec::new());
        while let Some(p) = rx.blocking_recv() {
            match p {
                Piece::Data(Message::FsData(f)) => data.push(f.path.as_str().to_string()),
                Piece::Data(m) => panic!("unexpected {m:?}"),
                Piece::Signature(path, _) => signed.push(path),
                Piece::Failed(e) => panic!("the pass failed: {e}"),
            }
        }
        assert!(!data.is_empty() && data.iter().all(|p| p == "kept"), "{data:?}");
        assert_eq!(signed, vec!["kept".to_string()]);
    }
}
