//! The built-in `busybox` template: a root file system made from the host's static busybox,
//! with busybox init, an inittab and rc scripts. It needs no download.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{io_err, TemplateError};
use crate::layout::HostLayout;

pub const BUSYBOX: &str = "busybox";

/// Where the host's static busybox is looked for, in order.
const BUSYBOX_PATHS: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

const INITTAB: &str = "\
# ferry busybox template. Stop: SIGUSR2 to init runs ::shutdown, then powers the container off.
::sysinit:/etc/init.d/rcS
::shutdown:/etc/init.d/rcK
::ctrlaltdel:/sbin/reboot
";

const RCS: &str = r#"#!/bin/sh
# ferry busybox template: brings the container up. The host has already mounted /proc, /sys,
# /dev and /run and set the hostname; this applies what the container's own files say.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
if [ -s /etc/hostname ]; then
    h=$(cat /etc/hostname)
    [ "$(hostname)" = "$h" ] || hostname "$h" 2>/dev/null
fi
ip link set lo up 2>/dev/null
# Network settings written by the host for this container (addresses, routes), if any.
[ -r /etc/ferry/network ] && . /etc/ferry/network
for s in /etc/rc.d/S*; do
    [ -x "$s" ] && "$s" start
done
echo "ferry: $(hostname) is up"
"#;

const RCK: &str = r#"#!/bin/sh
# ferry busybox template: runs at shutdown, before init stops every process.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
for s in /etc/rc.d/K*; do
    [ -x "$s" ] && "$s" stop
done
echo "ferry: $(hostname) is stopping"
"#;

fn host_busybox() -> Result<PathBuf, TemplateError> {
    BUSYBOX_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| TemplateError::NoBusybox(PathBuf::from(BUSYBOX_PATHS[0])))
}

fn write(root: &Path, rel: &str, text: &str, mode: u32) -> Result<(), TemplateError> {
    let p = root.join(rel);
    fs::write(&p, text).map_err(io_err(format!("writing {}", p.display())))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(io_err(format!("chmod {}", p.display())))
}

/// Builds the root file system into `root` (an empty directory).
pub fn build_tree(root: &Path) -> Result<(), TemplateError> {
    let bb = host_busybox()?;
    let dirs: &[(&str, u32)] = &[
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("etc", 0o755),
        ("etc/init.d", 0o755),
        ("etc/rc.d", 0o755),
        ("etc/ferry", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("home", 0o755),
        ("mnt", 0o755),
        ("var", 0o755),
        ("var/log", 0o755),
        ("var/tmp", 0o1777),
        ("var/spool", 0o755),
        ("var/spool/cron", 0o755),
        ("var/spool/cron/crontabs", 0o755),
        ("var/www", 0o755),
    ];
    for (d, mode) in dirs {
        let p = root.join(d);
        fs::create_dir_all(&p).map_err(io_err(format!("mkdir {}", p.display())))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).map_err(io_err(format!("chmod {}", p.display())))?;
    }
    let dest = root.join("bin/busybox");
    fs::copy(&bb, &dest).map_err(io_err(format!("copying {}", bb.display())))?;
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).map_err(io_err("chmod busybox"))?;
    let out = Command::new(&bb)
        .arg("--list-full")
        .output()
        .map_err(io_err(format!("running {} --list-full", bb.display())))?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "bin/busybox" || applet.contains("..") {
            continue;
        }
        let link = root.join(applet);
        if link.symlink_metadata().is_err() {
            if let Some(parent) = link.parent() {
                fs::create_dir_all(parent).map_err(io_err(format!("mkdir {}", parent.display())))?;
            }
            symlink("/bin/busybox", &link).map_err(io_err(format!("symlink {}", link.display())))?;
        }
    }
    if root.join("sbin/init").symlink_metadata().is_err() {
        symlink("/bin/busybox", root.join("sbin/init")).map_err(io_err("symlink /sbin/init"))?;
    }
    let version = String::from_utf8_lossy(&Command::new(&bb).output().map(|o| o.stdout).unwrap_or_default())
        .lines()
        .next()
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .map(|v| v.trim_start_matches('v').to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    write(root, "etc/inittab", INITTAB, 0o644)?;
    write(root, "etc/init.d/rcS", RCS, 0o755)?;
    write(root, "etc/init.d/rcK", RCK, 0o755)?;
    write(
        root,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
    )?;
    write(
        root,
        "etc/shadow",
        "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
        0o600,
    )?;
    write(root, "etc/group", "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n", 0o644)?;
    write(root, "etc/hostname", "", 0o644)?;
    write(
        root,
        "etc/hosts",
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        0o644,
    )?;
    write(root, "etc/resolv.conf", "", 0o644)?;
    write(
        root,
        "etc/profile",
        "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1='\\h:\\w\\$ '\n",
        0o644,
    )?;
    write(
        root,
        "etc/os-release",
        &format!(
            "NAME=\"ferry busybox\"\nID=busybox\nVERSION_ID=\"{version}\"\nPRETTY_NAME=\"ferry busybox {version}\"\n"
        ),
        0o644,
    )?;
    Ok(())
}

/// Builds `busybox.tar.zst` in the host's template cache and returns its path.
pub fn build_cache(layout: &HostLayout) -> Result<PathBuf, TemplateError> {
    let cache_dir = layout.template_cache();
    fs::create_dir_all(&cache_dir).map_err(io_err(format!("mkdir {}", cache_dir.display())))?;
    let build = cache_dir.join(format!(".busybox.build-{}", std::process::id()));
    let _ = fs::remove_dir_all(&build);
    fs::create_dir(&build).map_err(io_err(format!("mkdir {}", build.display())))?;
    let dest = cache_dir.join(format!("{BUSYBOX}.tar.zst"));
    let r = build_tree(&build).and_then(|_| super::pack(&build, &dest));
    let _ = fs::remove_dir_all(&build);
    r.map(|_| dest)
}
