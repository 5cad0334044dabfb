//! Root-only: every bad input gets a clear error, a documented exit code, and changes nothing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

/// A snapshot of everything a host keeps, to prove a failed command changed nothing.
fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            // Lock files are rewritten by every command that takes them; the console log grows.
            if rel.starts_with("vz/lock") || rel.starts_with("vz/log") || rel.starts_with("vz/root/") {
                continue;
            }
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                out.insert(rel.clone() + "/", vec![]);
                walk(base, &p, out);
            } else if md.is_file() {
                out.insert(rel, std::fs::read(&p).unwrap());
            } else {
                out.insert(rel, b"special".to_vec());
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(root, root, &mut m);
    m
}

#[track_caller]
fn refused(h: &TestHost, args: &[&str], code: i32, msg: &str) {
    let before = snapshot(h.root());
    let o = h.vzctl(args);
    assert_eq!(o.code, code, "vzctl {args:?}: {o:?}");
    assert!(
        o.stderr.contains(msg),
        "vzctl {args:?}: expected {msg:?} in stderr: {:?}",
        o.stderr
    );
    // Errors found while parsing arguments come in clap's format ("error: ..."), the rest in ours.
    assert!(
        o.stderr.starts_with("vzctl: error: ") || o.stderr.starts_with("error: "),
        "unexpected error format: {:?}",
        o.stderr
    );
    let after = snapshot(h.root());
    assert!(
        before == after,
        "vzctl {args:?} changed the host: {:?}",
        before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .collect::<Vec<_>>()
    );
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let h = TestHost::new("bad");
    h.vzctl(&["create", "101", "--name", "web", "--ipadd", "198.18.0.10"])
        .ok();
    h.vzctl(&["create", "102"]).ok();

    // Unknown and malformed CTIDs.
    refused(&h, &["start", "999"], 14, "container 999 does not exist");
    refused(&h, &["start", "nosuchname"], 14, "no container is named \"nosuchname\"");
    refused(&h, &["start", "0"], 21, "invalid CTID \"0\"");
    refused(&h, &["start", "12x!"], 21, "invalid CTID");
    refused(&h, &["create", "abc"], 21, "invalid CTID \"abc\"");
    refused(&h, &["create", "99999999999"], 21, "invalid CTID");

    // create: existing CTID, unknown template, bad address, hostname, name, sample.
    refused(&h, &["create", "101"], 44, "container 101 already exists");
    refused(
        &h,
        &["create", "103", "--ostemplate", "centos-9"],
        91,
        "OS template centos-9 not found",
    );
    refused(
        &h,
        &["create", "103", "--ostemplate", "../etc"],
        21,
        "invalid template name",
    );
    refused(
        &h,
        &["create", "103", "--ipadd", "198.18.0.300"],
        21,
        "invalid IP address \"198.18.0.300\"",
    );
    refused(
        &h,
        &["create", "103", "--ipadd", "198.18.0.10"],
        78,
        "address 198.18.0.10 is already used by container 101",
    );
    refused(
        &h,
        &["create", "103", "--hostname", "bad_host!"],
        21,
        "invalid hostname",
    );
    refused(
        &h,
        &["create", "103", "--name", "web"],
        21,
        "the name \"web\" is already used by container 101",
    );
    refused(&h, &["create", "103", "--name", "12345"], 21, "invalid container name");
    refused(&h, &["create", "100"], 21, "CTIDs 1 to 100 are reserved");
    refused(
        &h,
        &["create", "103", "--config", "nosuch"],
        21,
        "sample configuration \"nosuch\" not found",
    );
    // OpenVZ's spelling of the same option.
    refused(
        &h,
        &["create", "103", "--conf", "nosuch"],
        21,
        "sample configuration \"nosuch\" not found",
    );

    // Options a command does not take, missing arguments, unknown commands.
    refused(&h, &["start", "101", "--fast"], 20, "--fast");
    refused(&h, &["exec", "101"], 20, "required");
    refused(&h, &["frobnicate", "101"], 20, "frobnicate");

    // Wrong state.
    // Stopping a stopped container is done, as in OpenVZ (exit 0, nothing changed).
    let before = snapshot(h.root());
    let o = h.vzctl(&["stop", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("Container 101 is not running"), "{o:?}");
    assert_eq!(
        snapshot(h.root()),
        before,
        "stopping a stopped container changed something"
    );
    // A mounted container is not destroyed (OpenVZ's 41): unmount it first.
    h.vzctl(&["mount", "101"]).ok();
    refused(
        &h,
        &["destroy", "101"],
        41,
        "container 101 is mounted; unmount it first",
    );
    h.vzctl(&["umount", "101"]).ok();
    refused(&h, &["exec", "101", "true"], 31, "container 101 is not running");
    refused(&h, &["umount", "101"], 40, "container 101 is not mounted");
    h.vzctl(&["start", "101"]).ok();
    refused(&h, &["start", "web"], 32, "container 101 is running");
    refused(&h, &["destroy", "101"], 32, "container 101 is running");
    refused(&h, &["umount", "101"], 32, "container 101 is running");
    refused(&h, &["mount", "101"], 41, "container 101 is mounted");
    h.vzctl(&["stop", "101", "--fast"]).ok();

    // A broken container: no init.
    std::fs::remove_file(h.private("102").join("sbin/init")).unwrap();
    refused(&h, &["start", "102"], 47, "/sbin/init not found");

    // A malformed configuration line is named with file and line.
    let conf = h.conf("102");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("THIS LINE IS BROKEN\n");
    std::fs::write(&conf, &text).unwrap();
    let line = text.lines().count();
    refused(
        &h,
        &["start", "102"],
        14,
        &format!("102.conf:{line}: no '=' on this line"),
    );

    // A container locked by another command.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(h.root().join("vz/lock/101.lck"))
        .unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on our own descriptor, as another vzctl would hold it.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    refused(&h, &["start", "101"], 9, "container 101 is locked by another command");
    drop(lock);
    h.vzctl(&["start", "101"]).ok();
    h.vzctl(&["stop", "101", "--fast"]).ok();
    // No command, refused or done, left a container's lock file behind.
    let left: Vec<String> = std::fs::read_dir(h.root().join("vz/lock"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "idmap.lck")
        .collect();
    assert!(left.is_empty(), "lock files left: {left:?}");
}

#[test]
fn non_root_is_refused() {
    let h = TestHost::new("nonroot");
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_vzctl"));
    c.arg("--root-dir").arg(h.root()).args(["create", "101"]);
    use std::os::unix::process::CommandExt;
    c.uid(65534).gid(65534);
    let o = run(c, std::time::Duration::from_secs(30));
    assert_eq!(o.code, 12, "{o:?}");
    assert!(o.stderr.contains("must be run as root"));
    assert!(!h.conf("101").exists());
}

/// A mistyped `--root-dir` (no etc/vz/vz.conf there) is refused with exit 10, naming the
/// root, by every command but `vzctl create` and `check`, and nothing is made there.
#[test]
fn a_root_with_no_host_is_refused_and_nothing_is_made_there() {
    let h = TestHost::new("noroot");
    h.vzctl(&["create", "101"]).ok();
    let typo = h.root().join("typo");
    let cmd = |bin: &str, args: &[&str]| {
        let mut c = std::process::Command::new(bin);
        c.arg("--root-dir").arg(&typo).args(args).env_remove("FERRY_ROOT");
        run(c, std::time::Duration::from_secs(30))
    };
    let vzctl = env!("CARGO_BIN_EXE_vzctl");
    for (bin, args) in [
        (vzctl, &["status", "101"][..]),
        (vzctl, &["start", "101"]),
        (vzctl, &["stop", "101"]),
        (vzctl, &["set", "101", "--onboot", "yes", "--save"]),
        (vzctl, &["destroy", "101"]),
        (vzctl, &["checkpoints", "101"]),
        (env!("CARGO_BIN_EXE_vzlist"), &["-a"]),
        (env!("CARGO_BIN_EXE_vzboot"), &["start"]),
    ] {
        let o = cmd(bin, args);
        assert_eq!(o.code, 10, "{bin} {args:?}: {o:?}");
        assert!(
            o.stderr.contains("no ferry host at") && o.stderr.contains("--root-dir"),
            "{o:?}"
        );
        assert!(!typo.exists(), "{bin} {args:?} made {}", typo.display());
    }
    // The real host is untouched.
    assert!(h.vzctl(&["status", "101"]).ok().stdout.contains("exist"));
}
