//! Per-container locks: two commands never change one container at once.
//!
//! The lock is an advisory `flock` on `vz/lock/CTID.lck`, which the kernel releases when the
//! holder dies, so a crashed command never leaves the container locked. The file also holds the
//! holder's pid for the error message; a pid left there by a dead holder is reported as stale
//! and the lock is taken over. The holder removes the file when it lets go.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::ctid::Ctid;

#[derive(Debug, Error)]
pub enum LockError {
    #[error("container {ctid} is locked by another command (pid {holder}); wait for it to finish")]
    Locked { ctid: Ctid, holder: String },
    #[error("cannot lock container {ctid} through {path}")]
    Io {
        ctid: Ctid,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A held lock; released on drop.
#[derive(Debug)]
pub struct CtLock {
    file: File,
    path: PathBuf,
    /// The pid of a dead holder whose lock was taken over, if any.
    pub stale_holder: Option<i32>,
}

impl CtLock {
    pub fn acquire(lock_dir: &Path, ctid: Ctid) -> Result<Self, LockError> {
        let path = lock_dir.join(format!("{ctid}.lck"));
        let io = |source| LockError::Io {
            ctid,
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(lock_dir).map_err(io)?;
        // The holder removes the file when it lets go; a file locked after its holder removed
        // it is not the lock any more, and the next one is taken instead.
        let mut file = loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    let mut s = String::new();
                    let _ = (&file).read_to_string(&mut s);
                    let holder = s.trim().to_string();
                    return Err(LockError::Locked {
                        ctid,
                        holder: if holder.is_empty() { "unknown".into() } else { holder },
                    });
                }
                return Err(io(err));
            }
            use std::os::unix::fs::MetadataExt;
            let ours = file.metadata().map_err(io)?;
            match std::fs::metadata(&path) {
                Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => break file,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e)),
            }
        };
        let mut s = String::new();
        file.read_to_string(&mut s).map_err(io)?;
        let stale_holder = s.trim().parse::<i32>().ok().filter(|p| *p != std::process::id() as i32);
        if let Some(pid) = stale_holder {
            tracing::warn!(ctid = %ctid, pid, "taking over a stale lock left by a process that is gone");
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self {
            file,
            path,
            stale_holder,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for CtLock {
    fn drop(&mut self) {
        // Removed while still held (no lock file is left behind, as OpenVZ's vzctl leaves
        // none); one that opened it meanwhile finds it gone once it has it, and takes a new one.
        let _ = std::fs::remove_file(&self.path);
        // Empty the file first, so a reader never sees our pid on an unlocked file.
        let _ = self.file.set_len(0);
        // SAFETY: unlocking a descriptor we own.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_and_names_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let id = Ctid::new(101).unwrap();
        let l = CtLock::acquire(d.path(), id).unwrap();
        assert_eq!(l.stale_holder, None);
        // flock locks belong to open file descriptions: a second open in the same process
        // conflicts just as another process would.
        match CtLock::acquire(d.path(), id) {
            Err(LockError::Locked { holder, .. }) => {
                assert_eq!(holder, std::process::id().to_string())
            }
            other => panic!("{other:?}"),
        }
        drop(l);
        // Released, the file is gone; taken again, it is back.
        assert!(!d.path().join("101.lck").exists());
        let l = CtLock::acquire(d.path(), id).unwrap();
        assert!(d.path().join("101.lck").exists());
        // One that opened the file before its holder removed it does not hold the lock
        // through it: the next acquire takes a new file, and a second is refused by that one.
        let old = File::open(d.path().join("101.lck")).unwrap();
        drop(l);
        // SAFETY: flock on a descriptor we own (the old, removed file).
        assert_eq!(
            unsafe { libc::flock(old.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
            0
        );
        let l = CtLock::acquire(d.path(), id).unwrap();
        assert!(matches!(CtLock::acquire(d.path(), id), Err(LockError::Locked { .. })));
        drop(l);
    }

    #[test]
    fn stale_pid_is_detected_and_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let id = Ctid::new(7).unwrap();
        std::fs::write(d.path().join("7.lck"), "999999\n").unwrap();
        let l = CtLock::acquire(d.path(), id).unwrap();
        assert_eq!(l.stale_holder, Some(999999));
        assert_eq!(
            std::fs::read_to_string(l.path()).unwrap().trim(),
            std::process::id().to_string()
        );
    }
}
