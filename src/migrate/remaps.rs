//! CRIU's link remaps through a migration's final dump.
//!
//! A file a process holds open after its name was removed, while another name still links it,
//! is dumped by a hard link CRIU makes beside it (`link_remap.N`, with `--link-remap`), which
//! the restore opens it by and then removes. The final dump of a migration leaves the
//! processes running (a failed migration resumes them), and CRIU then removes its links itself
//! before returning, before the final file pass could send them. So at CRIU's post-dump
//! notification each gets a second name of ferry's, and after the dump it is put back under
//! the name the images give it, for the final pass; if the container stays, it is removed here.

use std::io;
use std::path::{Path, PathBuf};

use migrate_proto::path::RelPath;

/// The link remaps of one dump.
pub struct RemapKeeper {
    root: PathBuf,
    images: PathBuf,
    /// Each remap's path and the second name it was given.
    kept: Vec<(PathBuf, PathBuf)>,
}

impl RemapKeeper {
    /// For a dump into `images` of the container whose files are below `root` in their own ids
    /// (`Container::tree`: never an idmapped root, where a link fails with EOVERFLOW).
    pub fn new(root: &Path, images: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            images: images.to_path_buf(),
            kept: Vec::new(),
        }
    }

    /// CRIU's notification: at post-dump (the images written, the processes still frozen) each
    /// link remap gets a second name. A remap on a file system of the container's own (a tmpfs,
    /// whose content CRIU dumps itself) is not below the root and is left to CRIU.
    pub fn notify(&mut self, script: &str) -> Result<(), String> {
        if script != "post-dump" {
            return Ok(());
        }
        let names = crate::criu::images::link_remaps(&self.images)
            .map_err(|e| format!("reading the dump's link remaps: {e}"))?;
        for name in names {
            let rel = RelPath::new(name.trim_start_matches('/'))
                .map_err(|e| format!("the dump's link remap {name:?}: {e}"))?;
            let path = super::fs::confined(&self.root, &rel).map_err(|e| format!("link remap {name}: {e}"))?;
            if std::fs::symlink_metadata(&path).is_err() {
                continue;
            }
            let keep = second_name(&path);
            let _ = std::fs::remove_file(&keep);
            std::fs::hard_link(&path, &keep).map_err(|e| format!("keeping link remap {name}: {e}"))?;
            self.kept.push((path, keep));
        }
        Ok(())
    }

    /// After the dump, CRIU having removed its links: each back under its own name. Returns
    /// their paths (to be removed if the container stays here).
    pub fn put_back(self) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for (path, keep) in self.kept {
            std::fs::rename(&keep, &path)?;
            out.push(path);
        }
        Ok(out)
    }
}

fn second_name(path: &Path) -> PathBuf {
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".ferry-kept-{base}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_name_stays_in_the_same_directory() {
        assert_eq!(
            second_name(Path::new("/vz/root/101/tmp/link_remap.7")),
            Path::new("/vz/root/101/tmp/.ferry-kept-link_remap.7")
        );
    }
}
