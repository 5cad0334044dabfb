//! Root-only: containers with their own user namespace (`vzctl create --userns yes`).

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::lab::vz_ok;
use common::*;
use ferry_testbed::Lab;

fn conf_value(h: &TestHost, ctid: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(h.conf(ctid)).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim_matches('"').to_string())
}

/// The uid of a host process, from /proc/PID/status (real, effective, saved, fs).
fn host_uids(pid: i32) -> Vec<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect()
}

#[test]
fn a_userns_container_is_root_inside_and_a_range_of_unprivileged_ids_outside() {
    let h = TestHost::new("userns");
    h.vzctl(&["create", "101", "--userns", "yes", "--hostname", "un"]).ok();
    h.vzctl(&["create", "102", "--userns", "yes"]).ok();
    h.vzctl(&["create", "103", "--userns", "no"]).ok();
    let uid: u32 = conf_value(&h, "101", "LOCAL_UID").unwrap().parse().unwrap();
    let gid: u32 = conf_value(&h, "101", "LOCAL_GID").unwrap().parse().unwrap();
    let uid2: u32 = conf_value(&h, "102", "LOCAL_UID").unwrap().parse().unwrap();
    assert_eq!(conf_value(&h, "101", "USERNS").as_deref(), Some("yes"));
    assert_eq!(conf_value(&h, "103", "USERNS").as_deref(), Some("no"));
    assert_eq!(conf_value(&h, "103", "LOCAL_UID"), None);
    // Each range is its own, in the default pool, never the host's root.
    assert!(uid >= 1_000_000 && uid2 >= 1_000_000, "{uid} {uid2}");
    assert!(uid.abs_diff(uid2) >= 65536, "ranges overlap: {uid} {uid2}");

    h.vzctl(&["start", "101"]).ok();
    let pid = h.init_pid("101");
    assert_eq!(host_uids(pid), vec![uid; 4], "init's host uids");
    let inside = h.exec(
        "101",
        "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; hostname",
    );
    let lines: Vec<String> = inside
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        vec![
            "0".to_string(),
            "0".into(),
            format!("0 {uid} 65536"),
            format!("0 {gid} 65536"),
            "un".into()
        ]
    );
    // The container's files are in its own ids on disk: root's file is owned by 0.
    h.exec("101", "echo x > /root/made-inside; chown 1000:1000 /tmp");
    let md = std::fs::metadata(h.private("101").join("root/made-inside")).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0));
    let md = std::fs::metadata(h.private("101").join("tmp")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1000));
    // A live hostname change runs as the container's root in its namespaces.
    h.vzctl(&["set", "101", "--hostname", "un2"]).ok();
    assert_eq!(h.exec("101", "hostname").trim(), "un2");

    // What the container's root may and may not do is lifecycle.rs's container_is_isolated_from_
    // the_host (on a container with a user namespace, the default) and escapes.rs.
    // Stop and start again: same range, same files.
    h.vzctl(&["stop", "101"]).ok();
    h.vzctl(&["start", "101"]).ok();
    assert_eq!(host_uids(h.init_pid("101")), vec![uid; 4]);
    assert_eq!(h.exec("101", "cat /root/made-inside").trim(), "x");
    // The privileged container beside it is unchanged: host uid 0.
    h.vzctl(&["start", "103"]).ok();
    assert_eq!(host_uids(h.init_pid("103"))[0], 0);
    assert_eq!(
        h.exec("103", "cat /proc/self/uid_map")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", "0", "4294967295"]
    );
    h.vzctl(&["stop", "101", "--fast"]).ok();
    h.vzctl(&["stop", "103", "--fast"]).ok();
}

/// The exec window: the command `vzctl exec` starts appears in the container's pid namespace
/// only once it has the container's root directory and capabilities. A watcher inside looks,
/// as fast as it can while forty commands start, for any process whose root shows a file that
/// only the host has (CRIU's wrapper, which setup installs). Before the fix, the new process
/// was visible with the host's root between its fork and its joining the mount namespace. A
/// race cannot prove absence; this one bounds it, in both kinds of container.
#[test]
fn exec_never_shows_the_container_a_process_with_the_hosts_root() {
    let marker = "/opt/ferry/criu/criu";
    assert!(
        std::path::Path::new(marker).exists(),
        "{marker} missing: run scripts/setup.sh"
    );
    let h = TestHost::new("window");
    h.vzctl(&["create", "111", "--userns", "yes"]).ok();
    h.vzctl(&["create", "112", "--userns", "no"]).ok();
    for ct in ["111", "112"] {
        h.vzctl(&["start", ct]).ok();
        let watch = format!(
            "(end=$(( $(date +%s) + 60 )); while [ $(date +%s) -lt $end ] && [ ! -e /tmp/stop ]; do \
               for p in /proc/[0-9]*; do [ -e $p/root{marker} ] && echo \"leak $p\" >> /tmp/leaks; done; \
             done; touch /tmp/watch-done) </dev/null >/dev/null 2>&1 &"
        );
        h.exec(ct, &watch);
        for _ in 0..40 {
            h.exec(ct, "true");
        }
        h.exec(ct, "touch /tmp/stop");
        wait_until("the watcher to finish", Duration::from_secs(70), || {
            h.private(ct).join("tmp/watch-done").exists()
        });
        let leaks = std::fs::read_to_string(h.private(ct).join("tmp/leaks")).unwrap_or_default();
        assert!(leaks.is_empty(), "container {ct} saw the host's root:\n{leaks}");
        // And the commands themselves never hold the host's: their root is the container's.
        let o = h.exec(
            ct,
            &format!("[ -e /proc/self/root{marker} ] && echo host || echo container"),
        );
        assert_eq!(o.trim(), "container");
        h.vzctl(&["stop", ct, "--fast"]).ok();
    }
}

fn lab(tag: &str) -> Lab {
    common::lab::single(tag)
}

fn count_in(private: &std::path::Path, file: &str) -> u64 {
    std::fs::read_to_string(private.join(file))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

/// A service running as its own user (as PostgreSQL or Redis do) cannot be dumped in a
/// privileged container on hosts whose root lacks CAP_SYS_RESOURCE (CRIU cannot read its
/// limits); in a container with its own user namespace CRIU, as the namespace's owner, can.
/// The client's TCP session, the counters and the pids come through chkpnt and restore.
#[test]
fn a_userns_container_with_a_non_root_service_survives_chkpnt_and_restore() {
    let lab = lab("uc");
    let private = lab.host("hostA").root.join("vz/private/101");
    vz_ok(&lab, &["create", "101", "--userns", "yes", "--ipadd", "198.18.0.10"]);
    vz_ok(&lab, &["start", "101"]);
    vz_ok(
        &lab,
        &[
            "exec",
            "101",
            "echo 'svc:x:1000:1000::/home/svc:/bin/sh' >> /etc/passwd; echo 'svc:x:1000:' >> /etc/group; \
             mkdir -p /home/svc; chown svc:svc /home/svc",
        ],
    );
    vz_ok(
        &lab,
        &[
            "exec",
            "101",
            "su -s /bin/sh svc -c 'nc -ll -p 7007 -e cat' </dev/null >/dev/null 2>&1 &",
        ],
    );
    vz_ok(
        &lab,
        &[
            "exec",
            "101",
            "su -s /bin/sh svc -c '(i=0; while :; do i=$((i+1)); echo $i > /home/svc/count; sleep 0.05; done)' \
             </dev/null >/dev/null 2>&1 &",
        ],
    );
    wait_until("the service's counter to start", Duration::from_secs(20), || {
        count_in(&private, "home/svc/count") > 0
    });
    let owners = vz_ok(
        &lab,
        &[
            "exec",
            "101",
            "ps -o user,args | grep -v grep | grep -E 'nc -ll|while' | cut -d' ' -f1 | sort -u",
        ],
    );
    assert_eq!(
        owners.trim(),
        "svc",
        "the service does not run as its own user: {owners}"
    );
    let session = echo_session(lab.client.clone(), "198.18.0.10:7007", 250, Duration::from_millis(20));
    std::thread::sleep(Duration::from_millis(1500));
    let pids_before = vz_ok(&lab, &["exec", "101", "ps -o pid,user,args | grep -v ps | sort"]);
    let out = vz_ok(&lab, &["chkpnt", "101"]);
    assert!(out.contains("container stopped"), "{out}");
    let at_dump = count_in(&private, "home/svc/count");
    // The checkpoint holds the container's memory: the host's root alone may read it.
    let dump_dir = lab.host("hostA").root.join("vz/dump/101");
    for e in std::fs::read_dir(&dump_dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "ckpt") {
            let mode = std::fs::metadata(&p).unwrap().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", p.display());
        }
    }
    vz_ok(&lab, &["restore", "101"]);
    wait_until("the counter to move on", Duration::from_secs(10), || {
        count_in(&private, "home/svc/count") > at_dump
    });
    let pids_after = vz_ok(&lab, &["exec", "101", "ps -o pid,user,args | grep -v ps | sort"]);
    let keep = |s: &str| lasting_procs(s, |l| l.contains("while") || l.contains("nc -ll") || l.contains("init"));
    assert_eq!(keep(&pids_before), keep(&pids_after), "pids changed");
    assert_eq!(session.join().unwrap(), Ok(250));
    // Still its own range after the restore.
    let uid_map = vz_ok(&lab, &["exec", "101", "cat /proc/self/uid_map"]);
    let conf = std::fs::read_to_string(lab.host("hostA").root.join("etc/vz/conf/101.conf")).unwrap();
    let local = conf
        .lines()
        .find_map(|l| l.strip_prefix("LOCAL_UID="))
        .unwrap()
        .trim_matches('"');
    assert_eq!(uid_map.split_whitespace().collect::<Vec<_>>(), ["0", local, "65536"]);
    vz_ok(&lab, &["stop", "101", "--fast"]);
}

/// Bad input about id ranges: each refused with a clear message, nothing changed.
#[test]
fn id_ranges_that_cannot_be_given_are_refused() {
    let h = TestHost::new("idbad");
    // A pool of exactly one range: the second container finds none.
    let vz_conf = h.root().join("etc/vz/vz.conf");
    let mut text = std::fs::read_to_string(&vz_conf).unwrap();
    text.push_str("USERNS_ID_POOL=\"2000000:65536\"\n");
    std::fs::write(&vz_conf, &text).unwrap();
    h.vzctl(&["create", "101", "--userns", "yes"]).ok();
    assert_eq!(conf_value(&h, "101", "LOCAL_UID").as_deref(), Some("2000000"));
    let o = h.vzctl(&["create", "102", "--userns", "yes"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("no free id range"), "{o:?}");
    assert!(!h.conf("102").exists() && !h.private("102").exists());
    let o = h.vzctl(&["create", "102", "--userns", "maybe"]);
    assert_ne!(o.code, 0);
    assert!(!h.conf("102").exists());

    // A range edited by hand to overlap another container's, or outside the pool: start is
    // refused, nothing is mounted or started.
    h.vzctl(&["create", "103", "--userns", "no"]).ok();
    let c103 = std::fs::read_to_string(h.conf("103")).unwrap();
    std::fs::write(
        h.conf("103"),
        c103.replace(
            "USERNS=\"no\"",
            "USERNS=\"yes\"\nLOCAL_UID=\"2000000\"\nLOCAL_GID=\"2000000\"",
        ),
    )
    .unwrap();
    let before = h.mounts_below();
    let o = h.vzctl(&["start", "103"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("overlap") && o.stderr.contains("101"), "{o:?}");
    assert_eq!(h.mounts_below(), before);
    assert!(!h.root().join("vz/run/103.json").exists());
    std::fs::write(
        h.conf("103"),
        c103.replace(
            "USERNS=\"no\"",
            "USERNS=\"yes\"\nLOCAL_UID=\"5000\"\nLOCAL_GID=\"5000\"",
        ),
    )
    .unwrap();
    let o = h.vzctl(&["start", "103"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("outside this host's pool"), "{o:?}");
    assert_eq!(h.mounts_below(), before);
}

/// Live migration of a container with a user namespace between hosts whose id ranges differ:
/// the destination gives it a range of its own (hostB's pool starts elsewhere), the dumped
/// namespace is pointed at it, and inside nothing changes: ids, files, the service's user, its
/// pids and the client's TCP session. There and back.
#[test]
fn a_userns_container_migrates_live_between_hosts_with_different_ranges() {
    let m = common::lab::MigLab::new("um", &["hostA", "hostB"], None);
    let conf_b = m.lab.host("hostB").root.join("etc/vz/vz.conf");
    let mut text = std::fs::read_to_string(&conf_b).unwrap();
    text.push_str("USERNS_ID_POOL=\"3000000:6553600\"\n");
    std::fs::write(&conf_b, text).unwrap();
    let local = |host: &str| -> String {
        let conf = std::fs::read_to_string(m.lab.host(host).root.join("etc/vz/conf/101.conf")).unwrap();
        conf.lines()
            .find_map(|l| l.strip_prefix("LOCAL_UID="))
            .unwrap()
            .trim_matches('"')
            .to_string()
    };
    m.vz_ok("hostA", &["create", "101", "--userns", "yes", "--ipadd", "198.18.0.10"]);
    m.vz_ok("hostA", &["start", "101"]);
    m.vz_ok(
        "hostA",
        &[
            "exec",
            "101",
            "echo 'svc:x:1000:1000::/home/svc:/bin/sh' >> /etc/passwd; echo 'svc:x:1000:' >> /etc/group; \
             mkdir -p /home/svc; chown svc:svc /home/svc; \
             su -s /bin/sh svc -c 'nc -ll -p 7007 -e cat' </dev/null >/dev/null 2>&1 &",
        ],
    );
    m.vz_ok(
        "hostA",
        &[
            "exec",
            "101",
            "su -s /bin/sh svc -c '(i=0; while :; do i=$((i+1)); echo $i > /home/svc/count; sleep 0.05; done)' \
             </dev/null >/dev/null 2>&1 &",
        ],
    );
    let count = |host: &str| count_in(&m.private(host, "101"), "home/svc/count");
    wait_until("the service's counter to start", Duration::from_secs(20), || {
        count("hostA") > 0
    });
    let a_uid = local("hostA");
    assert!(a_uid.parse::<u32>().unwrap() < 3_000_000);
    let view = |host: &str| {
        m.vz_ok(
            host,
            &[
                "exec",
                "101",
                "id -u; ls -ln /home | grep svc | tr -s ' ' | cut -d' ' -f3,4",
            ],
        )
    };
    let inside_a = view("hostA");
    let procs = |host: &str| {
        lasting_procs(&m.vz_ok(host, &["exec", "101", "ps -o pid,user,args"]), |l| {
            l.contains("nc -ll") || l.contains("while") || l.contains("init")
        })
    };
    let pids = procs("hostA");
    let session = echo_session(m.lab.client.clone(), "198.18.0.10:7007", 300, Duration::from_millis(30));
    std::thread::sleep(Duration::from_secs(1));

    let o = m.migrate("hostA", &["--online", "hostB", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(m.status("hostB", "101"), "CTID 101 exist mounted running");
    let b_uid = local("hostB");
    assert!(
        b_uid.parse::<u32>().unwrap() >= 3_000_000,
        "hostB kept hostA's range: {b_uid}"
    );
    let uid_map = m.vz_ok("hostB", &["exec", "101", "cat /proc/1/uid_map"]);
    assert_eq!(
        uid_map.split_whitespace().collect::<Vec<_>>(),
        ["0", b_uid.as_str(), "65536"]
    );
    assert_eq!(view("hostB"), inside_a);
    assert_eq!(procs("hostB"), pids, "pids changed");
    // hostB keeps it to its own addresses too: the commit installed the source-address rule in
    // hostB's namespace, for both families (tests/escapes.rs shows what the rule does).
    for bin in ["iptables", "ip6tables"] {
        let mut c = ferry_testbed::Lab::cmd(&m.lab.host("hostB").netns, bin);
        c.args(["-w", "-t", "raw", "-C"]).args(ferry::net::ip::ANTISPOOF);
        assert_eq!(
            run(c, Duration::from_secs(10)).code,
            0,
            "no {bin} source-address rule on hostB"
        );
    }
    // The seccomp profile came with the processes (CRIU dumps and restores each task's filter).
    let status = m.vz_ok(
        "hostB",
        &["exec", "101", "grep -E '^(Seccomp|NoNewPrivs):' /proc/1/status"],
    );
    assert!(
        status.contains("Seccomp:\t2") && status.contains("NoNewPrivs:\t0"),
        "{status}"
    );
    let at_b = count("hostB");
    wait_until("the counter to go on on hostB", Duration::from_secs(10), || {
        count("hostB") > at_b
    });

    let o = m.migrate("hostB", &["--online", "hostA", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(m.status("hostA", "101"), "CTID 101 exist mounted running");
    let uid_map = m.vz_ok("hostA", &["exec", "101", "cat /proc/1/uid_map"]);
    assert_eq!(uid_map.split_whitespace().nth(1), Some(local("hostA").as_str()));
    assert!(local("hostA").parse::<u32>().unwrap() < 3_000_000);
    assert_eq!(view("hostA"), inside_a);
    assert_eq!(procs("hostA"), pids, "pids changed");
    assert_eq!(session.join().unwrap(), Ok(300));
    m.vz_ok("hostA", &["stop", "101", "--fast"]);
}

/// An image private area with a user namespace: the image's file system is mounted as it is on
/// disk at private/fs (host-side work reads it there) and the root is an idmapped clone; files
/// keep the container's own ids on disk, chkpnt/restore and online growth work, and stop
/// unmounts both.
#[test]
fn a_userns_container_on_an_image_checkpoints_grows_and_unmounts() {
    let h = TestHost::new("unimg");
    h.vzctl(&[
        "create",
        "106",
        "--userns",
        "yes",
        "--layout",
        "image",
        "--diskspace",
        "512M",
    ])
    .ok();
    h.vzctl(&["start", "106"]).ok();
    h.exec("106", "echo x > /root/f; chown 1000:1000 /root/f");
    let raw = h.private("106").join("fs/root/f");
    let md = std::fs::metadata(&raw).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1000), "not in the container's ids on disk");
    let root = h.root().join("vz/root/106/root/f");
    let local: u32 = conf_value(&h, "106", "LOCAL_UID").unwrap().parse().unwrap();
    assert_eq!(
        std::fs::metadata(&root).unwrap().uid(),
        local + 1000,
        "the root is not idmapped"
    );
    let o = h.vzctl(&["chkpnt", "106"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        h.mounts_below().is_empty(),
        "left mounted after the checkpoint: {:?}",
        h.mounts_below()
    );
    let o = h.vzctl(&["restore", "106"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(h.exec("106", "cat /root/f; stat -c %u /root/f"), "x\n1000\n");
    h.vzctl(&["set", "106", "--diskspace", "1G", "--save"]).ok();
    let size: u64 = h
        .exec("106", "df -k / | tail -1 | tr -s ' ' | cut -d' ' -f2")
        .trim()
        .parse()
        .unwrap();
    assert!(size > 800 * 1024, "not grown: {size} KiB");
    h.vzctl(&["stop", "106"]).ok();
    assert!(
        h.mounts_below().is_empty(),
        "left mounted after stop: {:?}",
        h.mounts_below()
    );
    h.vzctl(&["destroy", "106"]).ok();
    assert!(!h.private("106").exists());
}

/// `vzctl check` says whether containers with a user namespace can run here (text and JSON
/// agree), and a host whose private areas sit on a file system without idmapped mounts (ramfs
/// here) is told so at create, with nothing made; `--userns no` still works there.
#[test]
fn user_namespace_support_is_checked_and_reported() {
    let h = TestHost::new("unchk");
    let check = |args: &[&str]| {
        let o = h.vzctl(args);
        assert_eq!(o.code, 0, "vzctl {args:?}: {o:?}");
        o.stdout
    };
    let text = check(&["check"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("user namespaces") && l.contains("yes")),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&check(&["check", "--json"])).unwrap();
    assert_eq!(json["user_namespaces"].as_bool(), Some(true), "{json}");
    assert_eq!(json["nonroot_checkpointable_userns"].as_bool(), Some(true), "{json}");
    assert_eq!(
        json["nonroot_checkpointable_privileged"].as_bool(),
        Some(ferry::criu::has_cap(24)),
        "{json}"
    );
    let nonroot = text.lines().find(|l| l.starts_with("non-root processes")).unwrap();
    assert!(nonroot.contains("checkpointable"), "{nonroot}");
    if !ferry::criu::has_cap(24) {
        assert!(nonroot.contains("in containers with a user namespace"), "{nonroot}");
    }

    let private = h.root().join("vz/private");
    std::fs::create_dir_all(&private).unwrap();
    let c = std::ffi::CString::new(private.to_str().unwrap()).unwrap();
    let ramfs = std::ffi::CString::new("ramfs").unwrap();
    // SAFETY: mounting a ramfs on a directory of our own temporary host.
    assert_eq!(
        unsafe { libc::mount(ramfs.as_ptr(), c.as_ptr(), ramfs.as_ptr(), 0, std::ptr::null()) },
        0
    );
    let o = h.vzctl(&["create", "101", "--userns", "yes"]);
    let json: serde_json::Value = serde_json::from_str(&check(&["check", "--json"])).unwrap();
    let made_userns = h.conf("101").exists();
    let o2 = h.vzctl(&["create", "102", "--userns", "no"]);
    let made_privileged = h.conf("102").exists();
    let _ = h.vzctl(&["destroy", "102"]);
    // SAFETY: undoing the mount above.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains("cannot run containers with a user namespace") && o.stderr.contains("idmapped"),
        "{o:?}"
    );
    assert!(!made_userns, "a configuration was written");
    assert_eq!(json["user_namespaces"].as_bool(), Some(false), "{json}");
    assert!(
        json["user_namespaces_error"].as_str().unwrap().contains("idmapped"),
        "{json}"
    );
    assert_eq!(o2.code, 0, "{o2:?}");
    assert!(made_privileged);
}

/// The other side of the non-root service test: in a privileged container, on a host whose root
/// lacks CAP_SYS_RESOURCE (this project's machines), the checkpoint is refused before anything
/// is frozen, the container running on, naming the process and the way out (a user namespace
/// lifts the limit). On a host with the capability it succeeds.
#[test]
fn a_privileged_container_with_a_non_root_service_is_told_why_it_cannot_be_dumped() {
    let h = TestHost::new("unpriv");
    h.vzctl(&["create", "120", "--userns", "no"]).ok();
    h.vzctl(&["start", "120"]).ok();
    h.exec(
        "120",
        "echo 'svc:x:1000:1000::/tmp:/bin/sh' >> /etc/passwd; echo 'svc:x:1000:' >> /etc/group; \
         su -s /bin/sh svc -c 'sleep 600' </dev/null >/dev/null 2>&1 &",
    );
    let o = h.vzctl(&["chkpnt", "120"]);
    if ferry::criu::has_cap(24) {
        assert_eq!(o.code, 0, "{o:?}");
        return;
    }
    // Found before anything is frozen or CRIU runs: the process is named, and so is the way
    // out (CRIU's own error, had it run, leads with its real error: a unit test in src/criu).
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("cannot be checkpointed here"), "{}", o.stderr);
    assert!(o.stderr.contains("runs as uid 1000"), "{}", o.stderr);
    assert!(
        o.stderr.contains("CAP_SYS_RESOURCE") && o.stderr.contains("--userns yes"),
        "{}",
        o.stderr
    );
    assert_eq!(
        h.vzctl(&["status", "120"]).stdout.trim(),
        "CTID 120 exist mounted running"
    );
    h.vzctl(&["stop", "120", "--fast"]).ok();
}
