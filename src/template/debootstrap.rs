//! Distribution templates built with debootstrap (`vzpkg create-cache NAME`).
//!
//! A template's recipe lives in `vz/template/NAME/`: `template.conf` (DISTRIBUTION, SUITE,
//! VARIANT, PACKAGES, optional MIRROR) and optional executable `pre-install` and
//! `post-install` scripts, each run on the host with the new root's path as `$1` (before and
//! after debootstrap). Names with a built-in recipe (`debian-11`, `debian-12`, `debian-13`) get
//! their recipe written on first use, so it can be read and edited.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{io_err, TemplateError};
use crate::config::Config;
use crate::layout::HostLayout;

pub const META_FILE: &str = "template.conf";

/// Built-in recipes: template name and Debian suite.
pub const KNOWN: &[(&str, &str)] = &[
    ("debian-11", "bullseye"),
    ("debian-12", "bookworm"),
    ("debian-13", "trixie"),
];

/// Packages added to minbase so the container boots with a real init and can be managed:
/// sysvinit (no systemd: it needs CAP_SYS_ADMIN, which containers do not get), ps, ip.
const DEBIAN_PACKAGES: &str = "sysvinit-core procps iproute2 netbase";

/// The post-install script of the built-in recipes: no gettys on virtual terminals a container
/// does not have, an empty hostname and resolver, no package caches in the template.
const DEBIAN_POST_INSTALL: &str = r#"#!/bin/sh
# ferry: adapt a debootstrapped Debian tree for running as a container. $1 is the new root.
set -e
root="$1"
if [ -f "$root/etc/inittab" ]; then
    sed -i -e 's/^\([1-6]\):\([0-9]*\):respawn:/#\1:\2:respawn:/' "$root/etc/inittab"
fi
: > "$root/etc/hostname"
: > "$root/etc/resolv.conf"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*_*
rm -f "$root/usr/sbin/policy-rc.d"
"#;

/// The pre-install script of the built-in recipes: no daemon starts inside the build chroot
/// while packages are installed (post-install removes the policy again).
const DEBIAN_PRE_INSTALL: &str = r#"#!/bin/sh
# ferry: keep package scripts from starting services in the tree being built. $1 is the new root.
set -e
mkdir -p "$1/usr/sbin"
printf '#!/bin/sh\nexit 101\n' > "$1/usr/sbin/policy-rc.d"
chmod 755 "$1/usr/sbin/policy-rc.d"
"#;

/// Writes the built-in recipe for a known name if the template has no recipe yet.
pub fn ensure_recipe(layout: &HostLayout, name: &str) -> Result<PathBuf, TemplateError> {
    let dir = layout.template_dir().join(name);
    if dir.join(META_FILE).is_file() {
        return Ok(dir);
    }
    let Some((_, suite)) = KNOWN.iter().find(|(n, _)| *n == name) else {
        return Err(TemplateError::NoRecipe {
            name: name.to_string(),
            dir,
        });
    };
    fs::create_dir_all(&dir).map_err(io_err(format!("mkdir {}", dir.display())))?;
    let conf = format!(
        "# ferry template recipe for {name}\nDISTRIBUTION=\"debian\"\nSUITE=\"{suite}\"\nVARIANT=\"minbase\"\nPACKAGES=\"{DEBIAN_PACKAGES}\"\n# MIRROR=\"\"  (empty: debootstrap's default)\n"
    );
    for (name, text) in [
        ("pre-install", DEBIAN_PRE_INSTALL),
        ("post-install", DEBIAN_POST_INSTALL),
    ] {
        let path = dir.join(name);
        fs::write(&path, text).map_err(io_err(format!("writing {}", path.display())))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(io_err(format!("chmod {name}")))?;
    }
    crate::fsutil::write_atomic(&dir.join(META_FILE), conf.as_bytes(), 0o644)
        .map_err(io_err("writing template.conf"))?;
    Ok(dir)
}

/// Builds `NAME.tar.zst` with debootstrap. `progress` gets one line per step.
pub fn create_cache(layout: &HostLayout, name: &str, progress: &mut dyn FnMut(&str)) -> Result<PathBuf, TemplateError> {
    super::validate_name(name)?;
    let dir = ensure_recipe(layout, name)?;
    let meta_path = dir.join(META_FILE);
    let meta = Config::load(&meta_path).map_err(|e| TemplateError::Tool {
        what: format!("reading {}", meta_path.display()),
        stderr: e.to_string(),
    })?;
    let suite = meta
        .get("SUITE")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| TemplateError::Tool {
            what: format!("reading {}", meta_path.display()),
            stderr: "SUITE is not set".into(),
        })?;
    let variant = meta.get("VARIANT").unwrap_or("minbase");
    let packages: Vec<&str> = meta.get("PACKAGES").unwrap_or("").split_whitespace().collect();
    let cache_dir = layout.template_cache();
    fs::create_dir_all(&cache_dir).map_err(io_err(format!("mkdir {}", cache_dir.display())))?;
    let build = cache_dir.join(format!(".{name}.build-{}", std::process::id()));
    let _ = fs::remove_dir_all(&build);
    fs::create_dir(&build).map_err(io_err(format!("mkdir {}", build.display())))?;
    let dest = cache_dir.join(format!("{name}.tar.zst"));
    let r = (|| {
        run_script(&dir.join("pre-install"), &build, progress)?;
        let mut cmd = Command::new("debootstrap");
        cmd.arg(format!("--variant={variant}"));
        if !packages.is_empty() {
            cmd.arg(format!("--include={}", packages.join(",")));
        }
        cmd.arg(suite).arg(&build);
        if let Some(m) = meta.get("MIRROR").filter(|m| !m.is_empty()) {
            cmd.arg(m);
        }
        progress(&format!("debootstrap {suite} ({variant}) into {}", build.display()));
        stream(cmd, "debootstrap", progress)?;
        run_script(&dir.join("post-install"), &build, progress)?;
        progress(&format!("packing {}", dest.display()));
        super::pack(&build, &dest)
    })();
    let _ = fs::remove_dir_all(&build);
    r.map(|_| dest)
}

fn run_script(script: &Path, root: &Path, progress: &mut dyn FnMut(&str)) -> Result<(), TemplateError> {
    if !script.is_file() {
        return Ok(());
    }
    progress(&format!("running {}", script.display()));
    let mut cmd = Command::new(script);
    cmd.arg(root);
    stream(cmd, &script.display().to_string(), progress)
}

/// Runs a command, passing each line of its output to `progress`; on failure the error holds
/// the last lines.
fn stream(mut cmd: Command, what: &str, progress: &mut dyn FnMut(&str)) -> Result<(), TemplateError> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err(format!("starting {what}")))?;
    let stderr = child.stderr.take().unwrap();
    let err_thread =
        std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>());
    let mut last: Vec<String> = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        progress(&line);
        last.push(line);
        if last.len() > 5 {
            last.remove(0);
        }
    }
    let status = child.wait().map_err(io_err(format!("waiting for {what}")))?;
    let errs = err_thread.join().unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        last.extend(errs.into_iter().rev().take(5).collect::<Vec<_>>().into_iter().rev());
        Err(TemplateError::Tool {
            what: what.to_string(),
            stderr: last.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_recipe_is_written_once_and_unknown_names_refused() {
        let d = tempfile::tempdir().unwrap();
        let l = HostLayout::new(d.path());
        let dir = ensure_recipe(&l, "debian-12").unwrap();
        let c = Config::load(&dir.join(META_FILE)).unwrap();
        assert_eq!(c.get("SUITE"), Some("bookworm"));
        fs::write(dir.join(META_FILE), "SUITE=\"sid\"\n").unwrap();
        ensure_recipe(&l, "debian-12").unwrap();
        assert_eq!(
            Config::load(&dir.join(META_FILE)).unwrap().get("SUITE"),
            Some("sid"),
            "an edited recipe was overwritten"
        );
        assert!(matches!(
            ensure_recipe(&l, "plan9"),
            Err(TemplateError::NoRecipe { .. })
        ));
    }
}
