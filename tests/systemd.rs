//! Root-only and slow: a stock Debian 12 container booting systemd (the built-in debian-12
//! recipe, plus lighttpd and PostgreSQL), on this host's cgroup v1 hybrid. It boots to
//! `running` with no failed unit; stops through systemd's halt and starts again; takes live
//! limits; is checkpointed and restored, and migrated live to another host and back, with a
//! PostgreSQL client's session open throughout, each service's main pid and restart count
//! unchanged, its journal, timers and units as they were. A unit that gives itself a namespace
//! CRIU cannot dump is named by `vzmigrate --check-only` and `chkpnt`; a privileged container
//! cannot boot systemd and is told why.
//!
//! The template is built with `vzpkg create-cache` from the recipe; the built cache is kept in
//! /var/cache/ferry-templates under a hash of the recipe (a changed recipe is built again).

mod common;

use std::path::Path;
use std::time::Duration;

use common::lab::{single, vz, vz_ok, MigLab};
use common::services::{http_head, pg_rows, pg_session};
use common::*;

const CT: &str = "401";
const ADDR: &str = "198.18.0.40";
const TEMPLATE: &str = "debian-12";
const SERVICES: &[&str] = &[
    "lighttpd.service",
    "postgresql@15-main.service",
    "systemd-journald.service",
];
const KEPT: &str = "/var/cache/ferry-templates";

/// The cache of built-in recipe `name` with `extra` packages, on `root`: built from the
/// recipe, or copied from the machine's cache of an identical recipe.
fn template(root: &Path, name: &str, extra: &str) {
    let layout = ferry::layout::HostLayout::new(root);
    let recipe = ferry::template::debootstrap::ensure_recipe(&layout, name).unwrap();
    let conf = recipe.join("template.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(
        text.contains("PACKAGES=\"systemd systemd-sysv dbus "),
        "the built-in recipe is not systemd's: {text}"
    );
    std::fs::write(
        &conf,
        text.replace("PACKAGES=\"systemd ", &format!("PACKAGES=\"{extra} systemd ")),
    )
    .unwrap();
    let mut h = blake3::Hasher::new();
    for f in ["template.conf", "pre-install", "post-install"] {
        h.update(f.as_bytes());
        h.update(&std::fs::read(recipe.join(f)).unwrap_or_default());
    }
    let kept = Path::new(KEPT).join(format!("{name}-{}.tar.zst", &h.finalize().to_hex()[..16]));
    let cache = root.join(format!("vz/template/cache/{name}.tar.zst"));
    std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
    if kept.is_file() {
        std::fs::copy(&kept, &cache).unwrap();
        return;
    }
    // The build needs Debian's archive: it runs in the machine's own network namespace.
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_vzpkg"));
    c.arg("--root-dir").arg(root).args(["create-cache", name]);
    let o = run(c, Duration::from_secs(1500));
    assert_eq!(
        o.code, 0,
        "vzpkg create-cache {name} (debootstrap needs Debian's archive): {o:?}"
    );
    std::fs::create_dir_all(KEPT).unwrap();
    let tmp = kept.with_extension("part");
    std::fs::copy(&cache, &tmp).unwrap();
    std::fs::rename(&tmp, &kept).unwrap();
}

/// `systemctl show -p PROP --value UNIT` in the container.
fn show(m: &MigLab, host: &str, unit: &str, prop: &str) -> String {
    m.vz_ok(host, &["exec", CT, &format!("systemctl show -p {prop} --value {unit}")])
        .trim()
        .to_string()
}

/// What must not change when the container moves: each service's main pid and restarts, the
/// running services, the active timers.
fn state(m: &MigLab, host: &str, services: &[&str]) -> Vec<String> {
    let mut s = Vec::new();
    for unit in services {
        for prop in ["MainPID", "NRestarts", "ActiveState"] {
            s.push(format!("{unit} {prop}={}", show(m, host, unit, prop)));
        }
    }
    s.push(m.vz_ok(
        host,
        &[
            "exec",
            CT,
            "systemctl list-units --type=service,timer --state=active --no-legend --plain | awk '{print $1}' | sort",
        ],
    ));
    s
}

/// Boots to `running`: systemd's own verdict, with no failed unit.
fn assert_running(m: &MigLab, host: &str) {
    // Right after a start, systemd's socket may not be there yet.
    let o = m.vz(
        host,
        &[
            "exec",
            CT,
            "for i in $(seq 300); do [ -S /run/systemd/private ] && break; sleep 0.2; done; \
             timeout 120 systemctl is-system-running --wait",
        ],
    );
    let failed = m.vz(host, &["exec", CT, "systemctl --failed --no-legend --plain"]);
    assert_eq!(
        o.stdout.trim(),
        "running",
        "on {host}: {o:?}; failed units: {}",
        failed.stdout
    );
    assert_eq!(failed.stdout.trim(), "", "failed units on {host}");
}

#[test]
fn a_systemd_container_boots_checkpoints_and_moves_live_with_its_services() {
    let m = MigLab::new("sd", &["hostA", "hostB"], None);
    let root_a = m.lab.host("hostA").root.clone();
    template(&root_a, TEMPLATE, "lighttpd postgresql");
    m.vz_ok(
        "hostA",
        &[
            "create",
            CT,
            "--ostemplate",
            TEMPLATE,
            "--hostname",
            "sd",
            "--ipadd",
            ADDR,
        ],
    );
    m.vz_ok("hostA", &["start", CT]);
    assert_running(&m, "hostA");

    // What systemd is given: its container, a machine-id of its own, its cgroup subtree.
    assert_eq!(m.vz_ok("hostA", &["exec", CT, "cat /proc/1/comm"]).trim(), "systemd");
    assert_eq!(
        m.vz_ok("hostA", &["exec", CT, "cat /run/systemd/container"]).trim(),
        "ferry"
    );
    assert_eq!(
        m.vz_ok("hostA", &["exec", CT, "systemd-detect-virt -c"]).trim(),
        "container-other"
    );
    let machine_id = m.vz_ok("hostA", &["exec", CT, "cat /etc/machine-id"]);
    assert_eq!(machine_id.trim().len(), 32, "{machine_id}");
    assert_eq!(
        m.vz_ok("hostA", &["exec", CT, "stat -f -c %T /sys/fs/cgroup"]).trim(),
        "cgroup2fs"
    );
    // A command joins init's cgroup, as systemd's own tools expect.
    assert_eq!(
        m.vz_ok("hostA", &["exec", CT, "grep ^0:: /proc/self/cgroup"]).trim(),
        "0::/init.scope"
    );
    let mounts = m.vz_ok("hostA", &["exec", CT, "grep -E ' /run/lock ' /proc/self/mounts"]);
    assert!(mounts.contains("tmpfs"), "{mounts}");
    wait_until("lighttpd to serve", Duration::from_secs(30), || {
        http_head(&m.lab, ADDR).contains("Server: lighttpd")
    });

    // Stop goes through systemd's halt; start and restart boot it again, same machine-id.
    m.vz_ok("hostA", &["stop", CT]);
    let console = std::fs::read_to_string(root_a.join(format!("vz/log/{CT}.console.log"))).unwrap();
    assert!(
        console.contains("Reached target") && console.contains("Halting system"),
        "systemd did not halt cleanly: {}",
        &console[console.len().saturating_sub(2000)..]
    );
    m.vz_ok("hostA", &["start", CT]);
    assert_running(&m, "hostA");
    m.vz_ok("hostA", &["restart", CT]);
    assert_running(&m, "hostA");
    assert_eq!(m.vz_ok("hostA", &["exec", CT, "cat /etc/machine-id"]), machine_id);

    // A live limit holds inside: with at most 60 processes, 100 more cannot start. (The
    // shell that starts them stops at its first failed fork; the one that counts uses builtins
    // only, as the container is full until the short sleeps end.)
    let numproc = std::fs::read_to_string(root_a.join(format!("etc/vz/conf/{CT}.conf")))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("NUMPROC=").map(|v| v.trim_matches('"').to_string()))
        .expect("NUMPROC in the sample configuration");
    m.vz_ok("hostA", &["set", CT, "--numproc", "60"]);
    let started = m.vz_ok(
        "hostA",
        &[
            "exec",
            CT,
            "sh -c 'i=0; while [ $i -lt 100 ]; do sleep 5 & i=$((i+1)); echo $i; done' >/tmp/started 2>/dev/null; \
             n=0; while read -r l; do n=$l; done </tmp/started; echo $n",
        ],
    );
    let started: u32 = started.trim().parse().unwrap();
    assert!(
        (1..60).contains(&started),
        "{started} sleeps started under a limit of 60 processes"
    );
    std::thread::sleep(Duration::from_secs(6));
    m.vz_ok("hostA", &["set", CT, "--numproc", &numproc]);
    assert_running(&m, "hostA");

    // PostgreSQL as shipped, reachable from the lab's client.
    let pg = "/etc/postgresql/15/main";
    m.vz_ok(
        "hostA",
        &[
            "exec",
            CT,
            &format!(
                "echo \"listen_addresses = '*'\" >> {pg}/postgresql.conf && \
                 echo 'host all all 198.18.0.0/15 trust' >> {pg}/pg_hba.conf && \
                 systemctl restart postgresql@15-main && \
                 su postgres -c \"psql -c 'create table t (i int)'\" >/dev/null"
            ),
        ],
    );
    wait_until("PostgreSQL to accept the lab's client", Duration::from_secs(30), || {
        let mut c = ferry_testbed::Lab::cmd(&m.lab.client, "psql");
        c.args(["-h", ADDR, "-U", "postgres", "-Atc", "select 1"]);
        run(c, Duration::from_secs(10)).stdout.trim() == "1"
    });
    m.vz_ok("hostA", &["exec", CT, "logger -t ferrytest before-the-moves"]);

    // A unit sandboxed in a namespace CRIU cannot dump is named before anything freezes.
    m.vz_ok(
        "hostA",
        &[
            "exec",
            CT,
            "mkdir -p /etc/systemd/system/ferry-probe.service.d && \
             printf '[Service]\\nExecStart=/bin/sleep infinity\\n' > /etc/systemd/system/ferry-probe.service && \
             printf '[Service]\\nProtectHostname=yes\\n' > /etc/systemd/system/ferry-probe.service.d/sandbox.conf && \
             systemctl daemon-reload && systemctl start ferry-probe",
        ],
    );
    let o = m.migrate("hostA", &["--online", "--check-only", "hostB", CT]);
    let said = format!("{}{}", o.stdout, o.stderr);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(
        said.contains("ferry-probe.service") && said.contains("uts namespace"),
        "{said}"
    );
    let o = m.vz("hostA", &["chkpnt", CT]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("ferry-probe.service"), "{o:?}");
    assert_eq!(m.status("hostA", CT), format!("CTID {CT} exist mounted running"));
    let o = m.vz("hostA", &["check", CT, "--json"]);
    assert_eq!(o.code, ferry::exitcode::ExitCode::CheckpointFailed as i32, "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["container"]["init"], "systemd", "{v}");
    assert!(
        v["container"]["dump_blockers"][0]
            .as_str()
            .unwrap_or("")
            .contains("ferry-probe.service"),
        "{v}"
    );
    m.vz_ok("hostA", &["exec", CT, "systemctl stop ferry-probe"]);
    let checked = m.vz_ok("hostA", &["check", CT]);
    assert!(checked.contains("init systemd, running"), "{checked}");

    let session = pg_session(&m.lab, ADDR);
    wait_until("the session's first rows", Duration::from_secs(30), || {
        pg_rows(&m.lab, ADDR) >= 5
    });
    let before = state(&m, "hostA", SERVICES);

    // Checkpoint and restore on this host.
    m.vz_ok("hostA", &["chkpnt", CT]);
    m.vz_ok("hostA", &["restore", CT]);
    assert_eq!(
        state(&m, "hostA", SERVICES),
        before,
        "the services changed across chkpnt/restore"
    );
    assert_running(&m, "hostA");
    assert!(http_head(&m.lab, ADDR).contains("Server: lighttpd"));

    // Live to hostB and back.
    for (from, to) in [("hostA", "hostB"), ("hostB", "hostA")] {
        let o = m.migrate(from, &["--online", to, CT]);
        assert_eq!(o.code, 0, "vzmigrate --online {to} {CT} from {from}: {o:?}");
        assert_eq!(m.status(to, CT), format!("CTID {CT} exist mounted running"));
        assert_eq!(state(&m, to, SERVICES), before, "the services changed moving to {to}");
        assert_running(&m, to);
        assert!(
            http_head(&m.lab, ADDR).contains("Server: lighttpd"),
            "not serving on {to}"
        );
        // Its journal came along and goes on.
        m.vz_ok(to, &["exec", CT, &format!("logger -t ferrytest on-{to}")]);
        wait_until("the journal to take a new entry", Duration::from_secs(20), || {
            m.vz(to, &["exec", CT, "journalctl -t ferrytest -o cat --no-pager"])
                .stdout
                .contains(&format!("on-{to}"))
        });
        let journal = m.vz_ok(to, &["exec", CT, "journalctl -t ferrytest -o cat --no-pager"]);
        assert!(journal.contains("before-the-moves"), "{journal}");
        // systemd still manages its services there.
        m.vz_ok(
            to,
            &["exec", CT, "systemctl start ferry-probe && systemctl stop ferry-probe"],
        );
    }
    let (sent, counted) = session.finish_or(|| {
        m.vz(
            "hostA",
            &["exec", CT, "journalctl -u postgresql@15-main -n 30 --no-pager"],
        )
        .stdout
    });
    assert!(
        sent > 0 && counted == sent,
        "the session sent {sent} rows and the server counted {counted}"
    );
    assert_eq!(m.vz_ok("hostA", &["exec", CT, "cat /etc/machine-id"]), machine_id);

    // Stopped where it ended, cleanly; its cgroups are gone.
    m.vz_ok("hostA", &["stop", CT]);
    assert_eq!(m.status("hostA", CT), format!("CTID {CT} exist unmounted down"));
}

/// Debian 13's systemd (257, which has dropped cgroup v1 and watches memory pressure): boots
/// to `running` with lighttpd, and keeps its services through chkpnt/restore and a live
/// migration there and back.
#[test]
fn debian_13s_systemd_boots_checkpoints_and_moves_live() {
    let m = MigLab::new("s3", &["hostA", "hostB"], None);
    template(&m.lab.host("hostA").root, "debian-13", "lighttpd");
    m.vz_ok("hostA", &["create", CT, "--ostemplate", "debian-13", "--ipadd", ADDR]);
    m.vz_ok("hostA", &["start", CT]);
    assert_running(&m, "hostA");
    assert!(m
        .vz_ok("hostA", &["exec", CT, "cat /etc/debian_version"])
        .starts_with("13"));
    wait_until("lighttpd to serve", Duration::from_secs(30), || {
        http_head(&m.lab, ADDR).contains("Server: lighttpd")
    });
    let services = &["lighttpd.service", "systemd-journald.service", "systemd-logind.service"];
    let before = state(&m, "hostA", services);
    m.vz_ok("hostA", &["chkpnt", CT]);
    m.vz_ok("hostA", &["restore", CT]);
    assert_eq!(state(&m, "hostA", services), before);
    // Its job queue runs after the restore (init once spun on its restored pressure watch).
    m.vz_ok("hostA", &["exec", CT, "timeout 60 systemctl restart systemd-logind"]);
    let mut before = state(&m, "hostA", services);
    for (from, to) in [("hostA", "hostB"), ("hostB", "hostA")] {
        let o = m.migrate(from, &["--online", to, CT]);
        assert_eq!(o.code, 0, "vzmigrate --online {to} {CT} from {from}: {o:?}");
        assert_eq!(state(&m, to, services), before, "the services changed moving to {to}");
        assert_running(&m, to);
        assert!(
            http_head(&m.lab, ADDR).contains("Server: lighttpd"),
            "not serving on {to}"
        );
        m.vz_ok(to, &["exec", CT, "timeout 60 systemctl restart lighttpd"]);
        wait_until("lighttpd to serve again", Duration::from_secs(30), || {
            http_head(&m.lab, ADDR).contains("Server: lighttpd")
        });
        // The restarted service's new pid is what the next move must keep.
        let after = state(&m, to, services);
        assert_ne!(after, before, "lighttpd was not restarted");
        before = after;
    }
    m.vz_ok("hostA", &["stop", CT]);
    assert_eq!(m.status("hostA", CT), format!("CTID {CT} exist unmounted down"));
}

/// systemd needs a user namespace: a privileged container made from a systemd template is
/// refused at start, saying so, and left as it was.
#[test]
fn a_privileged_systemd_container_is_refused_at_start_saying_why() {
    let lab = single("sp");
    let root = lab.host("hostA").root.clone();
    vz_ok(&lab, &["create", "402", "--userns", "no"]);
    // Its init made systemd: what the start checks is where /sbin/init leads.
    let tree = root.join("vz/private/402");
    std::fs::create_dir_all(tree.join("lib/systemd")).unwrap();
    std::fs::copy(tree.join("bin/busybox"), tree.join("lib/systemd/systemd")).unwrap();
    std::fs::remove_file(tree.join("sbin/init")).unwrap();
    std::os::unix::fs::symlink("/lib/systemd/systemd", tree.join("sbin/init")).unwrap();
    let o = vz(&lab, &["start", "402"]);
    assert_eq!(o.code, ferry::exitcode::ExitCode::BadContainer as i32, "{o:?}");
    assert!(
        o.stderr.contains("systemd") && o.stderr.contains("user namespace") && o.stderr.contains("--userns yes"),
        "{o:?}"
    );
    assert_eq!(vz_ok(&lab, &["status", "402"]).trim(), "CTID 402 exist unmounted down");
    // vzctl check says so before a start is tried.
    let o = vz(&lab, &["check", "402"]);
    assert_eq!(o.code, ferry::exitcode::ExitCode::BadContainer as i32, "{o:?}");
    assert!(
        o.stdout.contains("init systemd")
            && o.stdout
                .contains("NO: its init is systemd, which needs a user namespace"),
        "{o:?}"
    );
}
