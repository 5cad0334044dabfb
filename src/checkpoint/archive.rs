//! The checkpoint archive: one file per checkpoint (docs/checkpoint-format.md).
//!
//! ```text
//! magic "FERRYCKP" (8) | format version u32 BE | manifest length u32 BE | manifest (JSON)
//! | payload: zstd-compressed tar of images/ and fs.tar | payload length u64 BE
//! | BLAKE3 of every byte before it (32)
//! ```
//! Reading checks the magic, the format version and the sizes first; the hash is checked over
//! the whole file either up front (`verify`) or as the payload is unpacked (`unpack`, whose
//! output is used only if it matches), so a truncated, damaged or foreign file never reaches
//! CRIU or the private area.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const MAGIC: &[u8; 8] = b"FERRYCKP";
/// The format of a checkpoint file (the one-file form `--dumpfile` writes).
pub const FORMAT_VERSION: u32 = 1;
/// The newest checkpoint format this build reads (2: a directory, `directory.rs`).
pub const NEWEST_FORMAT: u32 = super::directory::FORMAT;
pub const MAX_MANIFEST: u32 = 1 << 20;
/// Largest archive accepted (a sanity bound on what a file may claim).
pub const MAX_ARCHIVE: u64 = 1 << 40;
const HEADER: u64 = 16;
const TRAILER: u64 = 40;

#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error("{0} is not a ferry checkpoint (bad magic)")]
    Foreign(PathBuf),
    #[error("{path} uses checkpoint format version {found}; this ferry reads versions up to {NEWEST_FORMAT}: restore it with a newer ferry")]
    TooNew { path: PathBuf, found: u32 },
    #[error("{path} is truncated or damaged ({why})")]
    Damaged { path: PathBuf, why: String },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} failed: {stderr}")]
    Tool { what: String, stderr: String },
}

/// How the archive records the private area.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsSnapshot {
    /// 0: a full copy; n > 0: a delta against checkpoint `parent` (GNU tar incremental).
    pub level: u32,
    pub parent: Option<String>,
    /// The private area's stamp (`stamp.rs`) as the snapshot saw it, for a stopping
    /// checkpoint: a restore that finds the same leaves the files alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub ctid: u32,
    /// Unix time of the checkpoint.
    pub created: u64,
    /// The container's configuration file at checkpoint time.
    pub config: String,
    pub criu_version: String,
    pub kernel: String,
    /// `images/cpuinfo.img` (CRIU's CPU description) is in the archive.
    pub cpuinfo: bool,
    pub keep_running: bool,
    /// Milliseconds the container was frozen.
    pub frozen_ms: u64,
    /// The console descriptor CRIU recorded as external (`tty[rdev:dev]`), if any.
    pub console: Option<String>,
    pub fs: FsSnapshot,
    /// Uncompressed bytes of the payload.
    pub payload_bytes: u64,
    /// Limits set on the running container with `vzctl set` and not saved (in force at the
    /// checkpoint): a restore applies them over the configuration's. Absent in older archives.
    #[serde(default)]
    pub live_limits: crate::resources::Limits,
    /// Format 2 (a checkpoint directory): every file it holds, with its size and hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<super::directory::SealedFile>,
}

struct Hashing<W: Write> {
    inner: W,
    hasher: blake3::Hasher,
    count: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.to_path_buf();
    move |source| ArchiveError::Io { what, path, source }
}

/// Writes an archive of `work` (which holds `images/` and `fs.tar`) to `dest`, atomically.
pub fn write(dest: &Path, manifest: &Manifest, work: &Path) -> Result<u64, ArchiveError> {
    let tmp = dest.with_extension("ckpt.tmp");
    let r = (|| {
        // A checkpoint holds the container's memory: the host's root alone may read it.
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io_err("creating", &tmp))?
        };
        let mut w = Hashing {
            inner: io::BufWriter::new(file),
            hasher: blake3::Hasher::new(),
            count: 0,
        };
        let m = serde_json::to_vec(manifest).map_err(|e| ArchiveError::Damaged {
            path: tmp.clone(),
            why: e.to_string(),
        })?;
        w.write_all(MAGIC).map_err(io_err("writing", &tmp))?;
        w.write_all(&FORMAT_VERSION.to_be_bytes())
            .map_err(io_err("writing", &tmp))?;
        w.write_all(&(m.len() as u32).to_be_bytes())
            .map_err(io_err("writing", &tmp))?;
        w.write_all(&m).map_err(io_err("writing", &tmp))?;
        let start = w.count;
        let mut tar = Command::new("tar")
            .args(["--numeric-owner", "-C"])
            .arg(work)
            .args(["-cf", "-", "images", "fs.tar"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_err("running tar for", &tmp))?;
        {
            let mut enc = zstd::stream::write::Encoder::new(&mut w, 3).map_err(io_err("compressing", &tmp))?;
            io::copy(tar.stdout.as_mut().unwrap(), &mut enc).map_err(io_err("compressing", &tmp))?;
            enc.finish().map_err(io_err("compressing", &tmp))?;
        }
        let out = tar.wait_with_output().map_err(io_err("running tar for", &tmp))?;
        if !out.status.success() {
            return Err(ArchiveError::Tool {
                what: "packing the checkpoint".into(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let payload_len = w.count - start;
        w.write_all(&payload_len.to_be_bytes())
            .map_err(io_err("writing", &tmp))?;
        let hash = w.hasher.finalize();
        let mut inner = w.inner.into_inner().map_err(|e| ArchiveError::Io {
            what: "writing",
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        inner.write_all(hash.as_bytes()).map_err(io_err("writing", &tmp))?;
        inner.sync_all().map_err(io_err("syncing", &tmp))?;
        std::fs::rename(&tmp, dest).map_err(io_err("renaming into place", dest))?;
        Ok(std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0))
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// The format version a checkpoint's head (at least its first 12 bytes) claims, for either
/// form: another magic is not a checkpoint, a version newer than this ferry reads is refused.
pub(super) fn claimed_version(path: &Path, head: &[u8]) -> Result<u32, ArchiveError> {
    if head.len() < 12 || &head[..8] != MAGIC {
        return Err(ArchiveError::Foreign(path.to_path_buf()));
    }
    let version = u32::from_be_bytes(head[8..12].try_into().unwrap());
    if version > NEWEST_FORMAT {
        return Err(ArchiveError::TooNew {
            path: path.to_path_buf(),
            found: version,
        });
    }
    Ok(version)
}

/// Reads the header and manifest without checking the hash (for listings).
pub fn read_manifest(path: &Path) -> Result<(Manifest, u64, u64), ArchiveError> {
    let mut f = File::open(path).map_err(io_err("opening", path))?;
    let size = f.metadata().map_err(io_err("reading", path))?.len();
    let damaged = |why: &str| ArchiveError::Damaged {
        path: path.to_path_buf(),
        why: why.into(),
    };
    if size > MAX_ARCHIVE {
        return Err(damaged("larger than any checkpoint ferry writes"));
    }
    let mut head = [0u8; HEADER as usize];
    if size < HEADER {
        let mut start = vec![0u8; size as usize];
        f.read_exact(&mut start).map_err(io_err("reading", path))?;
        if !MAGIC.starts_with(&start[..start.len().min(8)]) || start.is_empty() {
            return Err(ArchiveError::Foreign(path.to_path_buf()));
        }
        return Err(damaged("shorter than a header"));
    }
    f.read_exact(&mut head).map_err(io_err("reading", path))?;
    if &head[..8] != MAGIC {
        return Err(ArchiveError::Foreign(path.to_path_buf()));
    }
    let version = claimed_version(path, &head)?;
    if version != FORMAT_VERSION {
        return Err(damaged(&format!("format version {version} is not a checkpoint file")));
    }
    let mlen = u32::from_be_bytes(head[12..16].try_into().unwrap());
    if mlen > MAX_MANIFEST {
        return Err(damaged("manifest larger than the limit"));
    }
    if size < HEADER + mlen as u64 + TRAILER {
        return Err(damaged("shorter than its manifest says"));
    }
    let mut m = vec![0u8; mlen as usize];
    f.read_exact(&mut m).map_err(io_err("reading", path))?;
    let manifest: Manifest = serde_json::from_slice(&m).map_err(|e| damaged(&format!("manifest: {e}")))?;
    let payload_off = HEADER + mlen as u64;
    let payload_len = size - payload_off - TRAILER;
    f.seek(SeekFrom::Start(size - TRAILER))
        .map_err(io_err("reading", path))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(io_err("reading", path))?;
    if u64::from_be_bytes(len) != payload_len {
        return Err(damaged("payload length does not match the file size"));
    }
    Ok((manifest, payload_off, payload_len))
}

/// Checks everything (header, sizes, hash) and returns the manifest. The hash is checked
/// before the manifest is parsed, so damage anywhere reads as a checksum mismatch.
pub fn verify(path: &Path) -> Result<Manifest, ArchiveError> {
    check_frame(path)?;
    let mut f = BufReader::new(File::open(path).map_err(io_err("opening", path))?);
    let size = std::fs::metadata(path).map_err(io_err("reading", path))?.len();
    let mut h = blake3::Hasher::new();
    let mut left = size - 32;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = (left as usize).min(buf.len());
        f.read_exact(&mut buf[..n]).map_err(io_err("reading", path))?;
        h.update(&buf[..n]);
        left -= n as u64;
    }
    let mut want = [0u8; 32];
    f.read_exact(&mut want).map_err(io_err("reading", path))?;
    if h.finalize().as_bytes() != &want {
        return Err(ArchiveError::Damaged {
            path: path.to_path_buf(),
            why: "checksum mismatch".into(),
        });
    }
    Ok(read_manifest(path)?.0)
}

/// The checks that need no parsing: magic, version, sizes, trailer length.
fn check_frame(path: &Path) -> Result<(), ArchiveError> {
    let mut f = File::open(path).map_err(io_err("opening", path))?;
    let size = f.metadata().map_err(io_err("reading", path))?.len();
    let damaged = |why: &str| ArchiveError::Damaged {
        path: path.to_path_buf(),
        why: why.into(),
    };
    let mut head = vec![0u8; (size.min(HEADER)) as usize];
    f.read_exact(&mut head).map_err(io_err("reading", path))?;
    if head.is_empty() || !MAGIC.starts_with(&head[..head.len().min(8)]) {
        return Err(ArchiveError::Foreign(path.to_path_buf()));
    }
    if size < HEADER {
        return Err(damaged("shorter than a header"));
    }
    let version = claimed_version(path, &head)?;
    let mlen = u32::from_be_bytes(head[12..16].try_into().unwrap()) as u64;
    if version != FORMAT_VERSION || mlen > MAX_MANIFEST as u64 || size > MAX_ARCHIVE || size < HEADER + mlen + TRAILER {
        return Err(damaged("sizes do not fit"));
    }
    f.seek(SeekFrom::Start(size - TRAILER))
        .map_err(io_err("reading", path))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(io_err("reading", path))?;
    if u64::from_be_bytes(len) != size - HEADER - mlen - TRAILER {
        return Err(damaged("payload length does not match the file size"));
    }
    Ok(())
}

/// The frame and the manifest, without reading the payload (`unpack` checks the hash as it
/// reads); a damaged archive gets `verify`'s diagnosis.
pub fn inspect(path: &Path) -> Result<Manifest, ArchiveError> {
    framed_manifest(path).map(|(m, _, _)| m)
}

/// `check_frame` and `read_manifest`; where either fails, the diagnosis `verify` gives (so
/// damage in the manifest reads as a checksum mismatch, as anywhere else).
fn framed_manifest(path: &Path) -> Result<(Manifest, u64, u64), ArchiveError> {
    check_frame(path)
        .and_then(|_| read_manifest(path))
        .map_err(|e| verify(path).err().unwrap_or(e))
}

/// A reader that hashes what passes through it.
struct HashingReader<'a, R: Read> {
    inner: R,
    hasher: &'a mut blake3::Hasher,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks an archive's payload into `dest` (`images/`, `fs.tar`), checking its hash in the
/// same pass (one read of the archive, not one to verify and one to unpack): what it unpacked
/// is only to be used if this returns Ok, and a damaged archive reads as a checksum mismatch
/// even where the decompression or tar failed first.
pub fn unpack(path: &Path, dest: &Path) -> Result<Manifest, ArchiveError> {
    let (manifest, off, len) = framed_manifest(path)?;
    let mut f = BufReader::with_capacity(1 << 20, File::open(path).map_err(io_err("opening", path))?);
    let mut hasher = blake3::Hasher::new();
    let mut head = vec![0u8; off as usize];
    f.read_exact(&mut head).map_err(io_err("reading", path))?;
    hasher.update(&head);
    std::fs::create_dir_all(dest).map_err(io_err("creating", dest))?;
    let mut tar = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(dest)
        .args(["-xf", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err("running tar for", path))?;
    let mut payload = HashingReader {
        inner: (&mut f).take(len),
        hasher: &mut hasher,
    };
    let copied = zstd::stream::read::Decoder::new(&mut payload)
        .and_then(|mut dec| io::copy(&mut dec, tar.stdin.as_mut().unwrap()));
    drop(tar.stdin.take());
    let out = tar.wait_with_output().map_err(io_err("running tar for", path))?;
    // What the decoder left (or all of it, had it failed) still counts for the hash.
    io::copy(&mut payload, &mut io::sink()).map_err(io_err("reading", path))?;
    let mut trailer = [0u8; TRAILER as usize];
    f.read_exact(&mut trailer).map_err(io_err("reading", path))?;
    hasher.update(&trailer[..8]);
    if hasher.finalize().as_bytes() != &trailer[8..] {
        return Err(ArchiveError::Damaged {
            path: path.to_path_buf(),
            why: "checksum mismatch".into(),
        });
    }
    copied.map_err(io_err("decompressing", path))?;
    if !out.status.success() {
        return Err(ArchiveError::Tool {
            what: "unpacking the checkpoint".into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> (PathBuf, Manifest) {
        let work = dir.join("work");
        std::fs::create_dir_all(work.join("images")).unwrap();
        std::fs::write(work.join("images/core-1.img"), vec![7u8; 100_000]).unwrap();
        std::fs::write(work.join("fs.tar"), b"not really a tar").unwrap();
        let m = Manifest {
            format: FORMAT_VERSION,
            id: "20261123-120000".into(),
            ctid: 101,
            created: 1_795_000_000,
            config: "HOSTNAME=\"x\"\n".into(),
            criu_version: "4.2.1".into(),
            kernel: "6.18".into(),
            cpuinfo: false,
            keep_running: true,
            frozen_ms: 12,
            console: Some("tty[8800:2b]".into()),
            fs: FsSnapshot {
                level: 0,
                parent: None,
                stamp: None,
            },
            payload_bytes: 100_016,
            live_limits: Default::default(),
            files: Vec::new(),
        };
        let dest = dir.join("a.ckpt");
        write(&dest, &m, &work).unwrap();
        (dest, m)
    }

    #[test]
    fn round_trip() {
        let d = tempfile::tempdir().unwrap();
        let (a, m) = sample(d.path());
        assert_eq!(verify(&a).unwrap(), m);
        let out = d.path().join("out");
        assert_eq!(unpack(&a, &out).unwrap(), m);
        assert_eq!(
            std::fs::read(out.join("images/core-1.img")).unwrap(),
            vec![7u8; 100_000]
        );
    }

    #[test]
    fn truncated_flipped_foreign_and_newer_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let (a, _) = sample(d.path());
        let bytes = std::fs::read(&a).unwrap();
        let t = d.path().join("t.ckpt");
        std::fs::write(&t, &bytes[..bytes.len() - 100]).unwrap();
        assert!(matches!(verify(&t), Err(ArchiveError::Damaged { .. })));
        let mut flipped = bytes.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x20;
        std::fs::write(&t, &flipped).unwrap();
        match verify(&t) {
            Err(ArchiveError::Damaged { why, .. }) => assert!(why.contains("checksum"), "{why}"),
            other => panic!("{other:?}"),
        }
        std::fs::write(&t, b"#!/bin/sh\necho hello\n").unwrap();
        assert!(matches!(verify(&t), Err(ArchiveError::Foreign(_))));
        let mut newer = bytes.clone();
        newer[8..12].copy_from_slice(&(NEWEST_FORMAT + 1).to_be_bytes());
        std::fs::write(&t, &newer).unwrap();
        assert!(matches!(verify(&t), Err(ArchiveError::TooNew { found: 3, .. })));
        // A file claiming the directory format is no checkpoint file.
        newer[8..12].copy_from_slice(&2u32.to_be_bytes());
        std::fs::write(&t, &newer).unwrap();
        assert!(matches!(verify(&t), Err(ArchiveError::Damaged { .. })));
        std::fs::write(&t, b"").unwrap();
        assert!(verify(&t).is_err());
    }

    #[test]
    fn unpacking_checks_the_hash_wherever_the_damage_is() {
        let d = tempfile::tempdir().unwrap();
        let (a, m) = sample(d.path());
        let bytes = std::fs::read(&a).unwrap();
        let t = d.path().join("t.ckpt");
        // In the payload (where decompression may fail first), in the manifest, in the
        // trailer's length: each reads as damage, from unpack as from verify.
        let (_, off, len) = read_manifest(&a).unwrap();
        for at in [off as usize + len as usize / 2, off as usize + 3, 20, bytes.len() - 40] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x01;
            std::fs::write(&t, &flipped).unwrap();
            let out = d.path().join(format!("out-{at}"));
            match unpack(&t, &out) {
                Err(ArchiveError::Damaged { .. }) => {}
                other => panic!("a flipped byte at {at}: {other:?}"),
            }
        }
        std::fs::write(&t, &bytes[..bytes.len() - 100]).unwrap();
        assert!(matches!(
            unpack(&t, &d.path().join("cut")),
            Err(ArchiveError::Damaged { .. })
        ));
        // And whole, it unpacks; inspect reads the manifest without the payload.
        assert_eq!(inspect(&a).unwrap(), m);
        assert_eq!(unpack(&a, &d.path().join("whole")).unwrap(), m);
        assert_eq!(
            std::fs::read(d.path().join("whole/images/core-1.img")).unwrap(),
            vec![7u8; 100_000]
        );
    }
}
