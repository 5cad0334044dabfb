//! OS templates: tarball caches in `vz/template/cache/NAME.tar.{zst,gz,xz}` unpacked into a
//! private area, the built-in `busybox` template built on the fly from the host's
//! busybox-static, and distribution caches built with debootstrap (`vzpkg create-cache`).
//!
//! Archives are read and written by GNU tar with numeric owners, xattrs and ACLs, so owners,
//! modes, device nodes, hard links and extended attributes survive.

mod busybox;
pub mod debootstrap;

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

use crate::exitcode::ExitCode;
use crate::layout::HostLayout;

pub use busybox::BUSYBOX;

#[derive(Debug, Error)]
pub enum TemplateError {
    #[error("invalid template name {0:?}: use letters, digits, '.', '-' and '_'")]
    BadName(String),
    #[error("OS template {name} not found: no {dir}/{name}.tar.zst (or .tar.gz, .tar.xz); build one with `vzpkg create-cache {name}` or list them with `vzpkg list`")]
    NotFound { name: String, dir: PathBuf },
    #[error("the built-in busybox template needs {0} (Debian package busybox-static); run scripts/setup.sh")]
    NoBusybox(PathBuf),
    #[error("{what} failed")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what} failed: {stderr}")]
    Tool { what: String, stderr: String },
    #[error("invalid package name {0:?}: Debian package names are lower-case letters, digits, '+', '-' and '.'")]
    BadPackage(String),
    #[error("no metadata for template {name} in {dir} and no built-in recipe for that name; create {dir}/template.conf (see docs/templates.md)")]
    NoRecipe { name: String, dir: PathBuf },
}

impl TemplateError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            TemplateError::BadName(_) | TemplateError::BadPackage(_) => ExitCode::BadValue,
            TemplateError::NotFound { .. } | TemplateError::NoRecipe { .. } => ExitCode::NoTemplate,
            TemplateError::NoBusybox(_) => ExitCode::NoTemplate,
            TemplateError::Io { .. } | TemplateError::Tool { .. } => ExitCode::CreateFailed,
        }
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> TemplateError {
    let what = what.into();
    move |source| TemplateError::Io { what, source }
}

/// Compression of a cache tarball, by file suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Gzip,
    Xz,
}

impl Compression {
    pub const ALL: [Compression; 3] = [Compression::Zstd, Compression::Gzip, Compression::Xz];
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::Zstd => ".tar.zst",
            Compression::Gzip => ".tar.gz",
            Compression::Xz => ".tar.xz",
        }
    }
    fn tar_flag(self) -> &'static str {
        match self {
            Compression::Zstd => "--zstd",
            Compression::Gzip => "--gzip",
            Compression::Xz => "--xz",
        }
    }
}

pub fn validate_name(name: &str) -> Result<(), TemplateError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(TemplateError::BadName(name.to_string()))
    }
}

/// The cache tarball of a template, if one exists.
pub fn find_cache(layout: &HostLayout, name: &str) -> Result<Option<(PathBuf, Compression)>, TemplateError> {
    validate_name(name)?;
    for c in Compression::ALL {
        let p = layout.template_cache().join(format!("{name}{}", c.suffix()));
        if p.is_file() {
            return Ok(Some((p, c)));
        }
    }
    Ok(None)
}

/// The cache of a template; the built-in busybox template is built when missing.
pub fn cache_for(layout: &HostLayout, name: &str) -> Result<(PathBuf, Compression), TemplateError> {
    if let Some(found) = find_cache(layout, name)? {
        return Ok(found);
    }
    if name == BUSYBOX {
        return Ok((busybox::build_cache(layout)?, Compression::Zstd));
    }
    Err(TemplateError::NotFound {
        name: name.to_string(),
        dir: layout.template_cache(),
    })
}

fn run_tool(mut cmd: Command, what: &str) -> Result<(), TemplateError> {
    let out = cmd.output().map_err(io_err(what))?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        Err(TemplateError::Tool {
            what: what.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("; "),
        })
    }
}

/// Unpacks a cache into `dest` (which must exist and be empty).
pub fn unpack(cache: &Path, comp: Compression, dest: &Path) -> Result<(), TemplateError> {
    let mut cmd = Command::new("tar");
    cmd.args(crate::fsutil::TAR_EXTRACT_KEEP)
        .args([comp.tar_flag(), "-xf"])
        .arg(cache)
        .arg("-C")
        .arg(dest);
    run_tool(cmd, &format!("unpacking {}", cache.display()))
}

/// Packs the tree at `src` into a cache, written under a temporary name and renamed into place.
pub fn pack(src: &Path, dest: &Path) -> Result<(), TemplateError> {
    let tmp = dest.with_file_name(format!(
        ".{}.tmp-{}",
        dest.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let mut cmd = Command::new("tar");
    cmd.args(crate::fsutil::TAR_KEEP)
        .args(["--zstd", "-cf"])
        .arg(&tmp)
        .arg("-C")
        .arg(src)
        .arg(".");
    let r = run_tool(cmd, &format!("packing {}", src.display()))
        .and_then(|_| std::fs::rename(&tmp, dest).map_err(io_err(format!("renaming {}", tmp.display()))));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// A template available on a host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TemplateInfo {
    pub name: String,
    /// The cache file, if built.
    pub cache: Option<PathBuf>,
    pub size: Option<u64>,
    /// Unix time of the cache's last change.
    pub mtime: Option<u64>,
    /// Whether there is a recipe (metadata directory, a built-in recipe) to build it.
    pub recipe: bool,
}

/// Every template with a cache or a recipe on this host, plus the built-in ones.
pub fn list(layout: &HostLayout) -> Result<Vec<TemplateInfo>, TemplateError> {
    use std::collections::BTreeMap;
    let mut m: BTreeMap<String, TemplateInfo> = BTreeMap::new();
    let entry = |m: &mut BTreeMap<String, TemplateInfo>, name: &str| {
        m.entry(name.to_string())
            .or_insert_with(|| TemplateInfo {
                name: name.to_string(),
                cache: None,
                size: None,
                mtime: None,
                recipe: false,
            })
            .clone()
    };
    if let Ok(rd) = std::fs::read_dir(layout.template_cache()) {
        for e in rd.flatten() {
            let fname = e.file_name().to_string_lossy().into_owned();
            let Some(name) = Compression::ALL.iter().find_map(|c| fname.strip_suffix(c.suffix())) else {
                continue;
            };
            if validate_name(name).is_err() {
                continue;
            }
            entry(&mut m, name);
            let md = e.metadata().map_err(io_err("reading the template cache"))?;
            let t = m.get_mut(name).unwrap();
            t.cache = Some(e.path());
            t.size = Some(md.len());
            t.mtime = md
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
        }
    }
    if let Ok(rd) = std::fs::read_dir(layout.template_dir()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name != "cache" && validate_name(&name).is_ok() && e.path().join(debootstrap::META_FILE).is_file() {
                entry(&mut m, &name);
                m.get_mut(&name).unwrap().recipe = true;
            }
        }
    }
    for name in std::iter::once(BUSYBOX).chain(debootstrap::KNOWN.iter().map(|(n, _, _)| *n)) {
        entry(&mut m, name);
        m.get_mut(name).unwrap().recipe = true;
    }
    Ok(m.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["busybox", "debian-12", "centos-7-x86_64", "ubuntu-22.04"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn finds_caches_by_suffix_and_reports_missing() {
        let d = tempfile::tempdir().unwrap();
        let l = HostLayout::new(d.path());
        std::fs::create_dir_all(l.template_cache()).unwrap();
        assert!(find_cache(&l, "debian-12").unwrap().is_none());
        std::fs::write(l.template_cache().join("debian-12.tar.gz"), b"x").unwrap();
        assert_eq!(find_cache(&l, "debian-12").unwrap().unwrap().1, Compression::Gzip);
        match cache_for(&l, "centos-7") {
            Err(e @ TemplateError::NotFound { .. }) => {
                assert_eq!(e.exit_code(), ExitCode::NoTemplate)
            }
            other => panic!("{other:?}"),
        }
        let names: Vec<String> = list(&l).unwrap().into_iter().map(|t| t.name).collect();
        assert!(names.contains(&"busybox".to_string()) && names.contains(&"debian-12".to_string()));
    }
}
