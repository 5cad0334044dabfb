//! Distribution templates built with debootstrap (`vzpkg create-cache NAME`).
//!
//! A template's recipe lives in `vz/template/NAME/`: `template.conf` (DISTRIBUTION, SUITE,
//! VARIANT, PACKAGES, optional MIRROR) and optional executable `pre-install` and
//! `post-install` scripts, each run on the host with the new root's path as `$1` (before and
//! after debootstrap). Names with a built-in recipe (`debian-11`, `debian-12`, `debian-13` with
//! systemd, the distribution's default; `debian-11-sysv`, ... with sysvinit) get their recipe
//! written on first use, so it can be read and edited.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{io_err, TemplateError};
use crate::config::Config;
use crate::layout::HostLayout;

pub const META_FILE: &str = "template.conf";

/// Built-in recipes: template name, Debian suite, and whether its init is systemd (else
/// sysvinit).
pub const KNOWN: &[(&str, &str, bool)] = &[
    ("debian-11", "bullseye", true),
    ("debian-12", "bookworm", true),
    ("debian-13", "trixie", true),
    ("debian-11-sysv", "bullseye", false),
    ("debian-12-sysv", "bookworm", false),
    ("debian-13-sysv", "trixie", false),
];

/// Packages added to minbase so the container boots with a real init and can be managed: the
/// init (systemd with D-Bus for logind, as Debian installs it; or sysvinit), ps, ip.
const DEBIAN_PACKAGES: &str = "procps iproute2 netbase";
const SYSTEMD_PACKAGES: &str = "systemd systemd-sysv dbus";
const SYSV_PACKAGES: &str = "sysvinit-core";

/// The post-install script of the built-in recipes: no gettys on virtual terminals a container
/// does not have, an empty hostname and resolver, no package caches in the template.
const DEBIAN_POST_INSTALL: &str = r#"#!/bin/sh
# ferry: adapt a debootstrapped Debian tree for running as a container. $1 is the new root.
set -e
root="$1"
if [ -f "$root/etc/inittab" ]; then
    sed -i -e 's/^\([1-6]\):\([0-9]*\):respawn:/#\1:\2:respawn:/' "$root/etc/inittab"
fi
# Each container gets its own machine-id at its first start (ferry writes it; systemd keeps it).
if [ -e "$root/etc/machine-id" ]; then
    : > "$root/etc/machine-id"
fi
rm -f "$root/var/lib/dbus/machine-id"
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
    let Some((_, suite, systemd)) = KNOWN.iter().find(|(n, _, _)| *n == name) else {
        return Err(TemplateError::NoRecipe {
            name: name.to_string(),
            dir,
        });
    };
    fs::create_dir_all(&dir).map_err(io_err(format!("mkdir {}", dir.display())))?;
    let init = if *systemd { SYSTEMD_PACKAGES } else { SYSV_PACKAGES };
    let conf = format!(
        "# ferry template recipe for {name}\nDISTRIBUTION=\"debian\"\nSUITE=\"{suite}\"\nVARIANT=\"minbase\"\nPACKAGES=\"{init} {DEBIAN_PACKAGES}\"\n# MIRROR=\"\"  (empty: debootstrap's default)\n"
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

/// A template's recipe, as `vzpkg create-cache` builds it and `vzpkg recipe` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recipe {
    pub name: String,
    pub dir: PathBuf,
    pub suite: Option<String>,
    pub variant: String,
    pub packages: Vec<String>,
    pub mirror: Option<String>,
    pub pre_install: bool,
    pub post_install: bool,
}

/// Whether `p` is a Debian package name (Policy 5.6.1: lower-case letters, digits, `+`, `-`,
/// `.`, at least two characters, starting with a letter or digit).
fn package_name_ok(p: &str) -> bool {
    p.len() >= 2
        && p.len() <= 128
        && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

/// The recipe of template `name`, written first if it is a built-in one not yet on this host;
/// with `add`, those packages are appended to its PACKAGES (the ones it lacks, in order) and
/// the recipe saved. A bad package name changes nothing.
pub fn recipe(layout: &HostLayout, name: &str, add: &[String]) -> Result<Recipe, TemplateError> {
    super::validate_name(name)?;
    if let Some(bad) = add.iter().find(|p| !package_name_ok(p)) {
        return Err(TemplateError::BadPackage(bad.clone()));
    }
    let dir = ensure_recipe(layout, name)?;
    let meta_path = dir.join(META_FILE);
    let read_err = |e: crate::config::ConfigError| TemplateError::Tool {
        what: format!("reading {}", meta_path.display()),
        stderr: e.to_string(),
    };
    let mut meta = Config::load(&meta_path).map_err(read_err)?;
    let mut packages: Vec<String> = meta
        .get("PACKAGES")
        .unwrap_or("")
        .split_whitespace()
        .map(String::from)
        .collect();
    let before = packages.len();
    for p in add {
        if !packages.contains(p) {
            packages.push(p.clone());
        }
    }
    if packages.len() != before {
        meta.set("PACKAGES", &packages.join(" ")).map_err(read_err)?;
        meta.save(&meta_path).map_err(|e| TemplateError::Tool {
            what: format!("writing {}", meta_path.display()),
            stderr: e.to_string(),
        })?;
    }
    let script = |n: &str| dir.join(n).is_file();
    Ok(Recipe {
        name: name.to_string(),
        suite: meta.get("SUITE").filter(|s| !s.is_empty()).map(String::from),
        variant: meta.get("VARIANT").unwrap_or("minbase").to_string(),
        packages,
        mirror: meta.get("MIRROR").filter(|m| !m.is_empty()).map(String::from),
        pre_install: script("pre-install"),
        post_install: script("post-install"),
        dir,
    })
}

/// Builds `NAME.tar.zst` with debootstrap. `progress` gets one line per step.
pub fn create_cache(layout: &HostLayout, name: &str, progress: &mut dyn FnMut(&str)) -> Result<PathBuf, TemplateError> {
    let Recipe {
        dir,
        suite,
        variant,
        packages,
        mirror,
        ..
    } = recipe(layout, name, &[])?;
    let suite = suite.ok_or_else(|| TemplateError::Tool {
        what: format!("reading {}", dir.join(META_FILE).display()),
        stderr: "SUITE is not set".into(),
    })?;
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
        cmd.arg(&suite).arg(&build);
        if let Some(m) = &mirror {
            cmd.arg(m);
        }
        progress(&format!("debootstrap {suite} ({variant}) into {}", build.display()));
        let mut steps = Steps::default();
        stream(cmd, "debootstrap", &mut |l| {
            if let Some(m) = steps.feed(l) {
                progress(&m)
            }
        })?;
        run_script(&dir.join("post-install"), &build, progress)?;
        progress(&format!("packing {}", dest.display()));
        super::pack(&build, &dest)
    })();
    let _ = fs::remove_dir_all(&build);
    r.map(|_| dest)
}

/// debootstrap's hundreds of `I: Retrieving PKG` lines summed up as its steps with counts:
/// a line when a step begins and every [`Steps::EVERY`] packages of it, warnings and errors as
/// they are, everything else dropped (the last lines still go into a failure's message).
#[derive(Debug, Default)]
pub struct Steps {
    step: Option<&'static str>,
    count: usize,
}

impl Steps {
    pub const EVERY: usize = 25;

    pub fn feed(&mut self, line: &str) -> Option<String> {
        const STEPS: [(&str, &str); 7] = [
            ("I: Retrieving ", "retrieving packages"),
            ("I: Validating ", "validating packages"),
            ("I: Extracting ", "extracting packages"),
            ("I: Unpacking ", "unpacking packages"),
            ("I: Configuring ", "configuring packages"),
            ("I: Resolving dependencies", "resolving dependencies"),
            ("I: Checking Release", "checking the release signature"),
        ];
        if line.starts_with("W: ") || line.starts_with("E: ") {
            return Some(format!("debootstrap: {line}"));
        }
        let (_, step) = STEPS.iter().find(|(p, _)| line.starts_with(p))?;
        if self.step != Some(step) {
            self.step = Some(step);
            self.count = 1;
            return Some(format!("debootstrap: {step}"));
        }
        self.count += 1;
        (self.count % Self::EVERY == 0).then(|| format!("debootstrap: {step} ({})", self.count))
    }
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
    fn debootstraps_lines_are_summed_up_as_steps() {
        let mut st = Steps::default();
        let mut out = Vec::new();
        let mut lines = vec![
            "I: Checking Release signature".to_string(),
            "I: Valid Release signature".into(),
        ];
        lines.extend((0..60).map(|i| format!("I: Retrieving pkg{i} 1.0")));
        lines.extend((0..3).map(|i| format!("I: Validating pkg{i} 1.0")));
        lines.push("W: Failure trying to run: chroot x".into());
        lines.extend((0..30).map(|i| format!("I: Unpacking pkg{i}...")));
        lines.push("I: Base system installed successfully.".into());
        for l in &lines {
            out.extend(st.feed(l));
        }
        assert_eq!(
            out,
            [
                "debootstrap: checking the release signature",
                "debootstrap: retrieving packages",
                "debootstrap: retrieving packages (25)",
                "debootstrap: retrieving packages (50)",
                "debootstrap: validating packages",
                "debootstrap: W: Failure trying to run: chroot x",
                "debootstrap: unpacking packages",
                "debootstrap: unpacking packages (25)",
            ]
        );
    }

    #[test]
    fn built_in_recipe_is_written_once_and_unknown_names_refused() {
        let d = tempfile::tempdir().unwrap();
        let l = HostLayout::new(d.path());
        let dir = ensure_recipe(&l, "debian-12").unwrap();
        let c = Config::load(&dir.join(META_FILE)).unwrap();
        assert_eq!(c.get("SUITE"), Some("bookworm"));
        assert!(c.get("PACKAGES").unwrap().starts_with("systemd systemd-sysv dbus "));
        let sysv = Config::load(&ensure_recipe(&l, "debian-12-sysv").unwrap().join(META_FILE)).unwrap();
        assert_eq!(sysv.get("SUITE"), Some("bookworm"));
        assert!(sysv.get("PACKAGES").unwrap().starts_with("sysvinit-core "));
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

    #[test]
    fn packages_are_added_once_and_a_bad_name_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let l = HostLayout::new(d.path());
        let add = |p: &[&str]| recipe(&l, "debian-13", &p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let r = add(&["lighttpd", "postgresql-17", "lighttpd"]).unwrap();
        assert_eq!(r.suite.as_deref(), Some("trixie"));
        assert!(r.pre_install && r.post_install);
        assert_eq!(&r.packages[r.packages.len() - 2..], ["lighttpd", "postgresql-17"]);
        let conf = r.dir.join(META_FILE);
        let text = fs::read_to_string(&conf).unwrap();
        assert_eq!(add(&["lighttpd"]).unwrap().packages, r.packages, "added twice");
        for bad in ["Lighttpd", "x", "a b", "-rf", "nginx;reboot"] {
            assert!(
                matches!(add(&["redis", bad]), Err(TemplateError::BadPackage(_))),
                "{bad}"
            );
        }
        assert_eq!(
            fs::read_to_string(&conf).unwrap(),
            text,
            "a refused call changed the recipe"
        );
        assert!(matches!(add(&["x11-common"]).map(|_| ()), Ok(())));
        assert!(matches!(recipe(&l, "plan9", &[]), Err(TemplateError::NoRecipe { .. })));
    }
}
