//! Root-only: a container's root trying to get out, as an intruder who broke into a hosted
//! container would. Each attempt is made with the container's real capabilities, by a small
//! static program (tests/escape_probe.c) or the container's own shell, and must be refused.
//! Containers are the default kind (their own user namespace) unless a test says otherwise.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::lab::{vz, vz_ok};
use common::*;
use ferry_testbed::Lab;

/// tests/escape_probe.c, built statically once per test run.
fn probe() -> PathBuf {
    static_program("escape_probe")
}

fn lab(tag: &str) -> Lab {
    common::lab::single(tag)
}

/// A running container on the lab's hostA with the probe in /bin.
fn container(lab: &Lab, ctid: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["create", ctid];
    args.extend(extra);
    vz_ok(lab, &args);
    let private = lab.host("hostA").root.join(format!("vz/private/{ctid}"));
    std::fs::copy(probe(), private.join("bin/escape_probe")).unwrap();
    vz_ok(lab, &["start", ctid]);
    private
}

/// Runs one probe inside; returns its exit code and what it said.
fn attempt(lab: &Lab, ctid: &str, args: &str) -> (i32, String) {
    let o = vz(lab, &["exec", ctid, &format!("escape_probe {args}")]);
    (o.code, format!("{}{}", o.stdout, o.stderr))
}

fn assert_refused(lab: &Lab, ctid: &str, args: &str) {
    let (code, said) = attempt(lab, ctid, args);
    assert_eq!(code, 1, "container {ctid}: `{args}` was not refused: {said}");
}

/// The probes of calls that reach the host's kernel, refused to every container.
const KERNEL_CALLS: &[&str] = &[
    "keyctl",
    "add_key",
    "kexec_load",
    "finit_module",
    "open_by_handle_at",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring",
];

/// Calls that reach the host's kernel: keyrings, kexec, modules, file handles, BPF, host-wide
/// perf, userfaultfd, the uevent netlink group, io_uring; and rtnetlink on the host's network
/// namespace by its id. Refused in a container with a user namespace, before and after a
/// checkpoint (the seccomp filter comes back with the processes), and the seccomp-held ones in
/// a privileged container too, where making a user namespace (the cgroup self-raise) is
/// refused as well.
#[test]
fn calls_that_reach_the_hosts_kernel_are_refused() {
    let lab = lab("esk");
    container(&lab, "101", &["--ipadd", "198.18.0.10"]);
    let kernel: Vec<&str> = KERNEL_CALLS.iter().copied().chain(["uevent"]).collect();
    for a in kernel.iter().chain(&["netnsid"]) {
        assert_refused(&lab, "101", a);
    }
    let status = vz_ok(
        &lab,
        &["exec", "101", "grep -E '^(Seccomp|NoNewPrivs):' /proc/1/status"],
    );
    assert!(
        status.contains("Seccomp:\t2") && status.contains("NoNewPrivs:\t0"),
        "{status}"
    );
    vz_ok(&lab, &["chkpnt", "101"]);
    vz_ok(&lab, &["restore", "101"]);
    for a in ["keyctl", "bpf", "netnsid"] {
        assert_refused(&lab, "101", a);
    }
    assert!(vz_ok(&lab, &["exec", "101", "grep '^Seccomp:' /proc/1/status"]).contains('2'));
    vz_ok(&lab, &["stop", "101", "--fast"]);

    container(&lab, "102", &["--ipadd", "198.18.0.11", "--userns", "no"]);
    for a in kernel.iter().chain(&["unshare_user"]) {
        assert_refused(&lab, "102", a);
    }
    vz_ok(&lab, &["stop", "102", "--fast"]);
}

/// Mounting kernel file systems and making device nodes are refused. Raising its own limits
/// (a user namespace of its own mapping its current uid to root, a cgroup namespace owned by
/// it, the cgroup v1 hierarchy mounted there, the limit written: the files are owned by host
/// uid 0) is refused to a container with a user namespace (its uid 0 is not the host's) and to
/// a privileged one (its seccomp profile refuses the user namespace); the control, a privileged
/// container without the profile, shows the attempt is real: its limit goes up.
#[test]
fn mounts_devices_and_its_own_limits_are_out_of_reach() {
    let lab = lab("esm");
    let parent = format!("ferry-lab-{}-hostA", lab.name);
    let cg = |ctid: &str, ctrl: &str, file: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{ctrl}/{parent}/{ctid}/{file}"))
            .unwrap()
            .trim()
            .to_string()
    };
    let limited = |ctid: &str, extra: &[&str]| {
        vz_ok(&lab, &[&["create", ctid][..], extra].concat());
        vz_ok(&lab, &["set", ctid, "--ram", "256M", "--numproc", "300", "--save"]);
        let private = lab.host("hostA").root.join(format!("vz/private/{ctid}"));
        std::fs::copy(probe(), private.join("bin/escape_probe")).unwrap();
    };
    limited("103", &[]);
    limited("104", &["--userns", "no"]);
    limited("105", &["--userns", "no"]);
    let conf = lab.host("hostA").root.join("etc/vz/conf/105.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("SECCOMP=\"no\"\n");
    std::fs::write(&conf, text).unwrap();
    for ct in ["103", "104", "105"] {
        vz_ok(&lab, &["start", ct]);
    }
    let mem = (256u64 << 20).to_string();
    for ct in ["103", "104", "105"] {
        assert_eq!(cg(ct, "memory", "memory.limit_in_bytes"), mem);
    }
    // The control: the attempt works where nothing stops it.
    let (code, said) = attempt(&lab, "105", "raise memory memory.limit_in_bytes 999999999");
    assert_eq!(code, 0, "the control could not raise its limit: {said}");
    assert_ne!(cg("105", "memory", "memory.limit_in_bytes"), mem, "{said}");
    for ct in ["103", "104"] {
        assert_refused(&lab, ct, "raise memory memory.limit_in_bytes 999999999");
        assert_refused(&lab, ct, "raise pids pids.max max");
        assert_eq!(
            cg(ct, "memory", "memory.limit_in_bytes"),
            mem,
            "container {ct} raised its memory limit"
        );
        assert_eq!(
            cg(ct, "pids", "pids.max"),
            "300",
            "container {ct} raised its process limit"
        );
    }
    for (what, script) in [
        ("mount proc", "mount -t proc proc /mnt"),
        ("mount sysfs", "mount -t sysfs sysfs /mnt"),
        ("mount devtmpfs", "mount -t devtmpfs devtmpfs /mnt"),
        (
            "mount the cgroup v1 memory hierarchy",
            "mount -t cgroup -o memory cgroup /mnt",
        ),
        ("mount cgroup2", "mount -t cgroup2 cgroup2 /mnt"),
        ("remount /sys writable", "mount -o remount,rw /sys"),
        ("mknod a host disk", "mknod /tmp/sda b 8 0"),
        ("mknod /dev/mem", "mknod /tmp/mem c 1 1"),
    ] {
        for ct in ["103", "104"] {
            let o = vz(&lab, &["exec", ct, &format!("{script} 2>&1")]);
            assert_ne!(o.code, 0, "container {ct}'s root could {what}: {o:?}");
        }
    }
    // A device node that appears in its file system (a template's, an admin's) reaches only
    // the devices every container has: the host's /dev/kmsg, planted world-writable in each,
    // cannot be written from either container, while the allowed devices work. The control:
    // container 105, its devices cgroup opened by hand, writes it.
    let marker = format!("ferry-escape-kmsg-{}", lab.name);
    for ct in ["103", "104", "105"] {
        let node = lab.host("hostA").root.join(format!("vz/private/{ct}/tmp/kmsg"));
        let made = std::process::Command::new("mknod")
            .args(["-m", "0666"])
            .arg(&node)
            .args(["c", "1", "11"])
            .status()
            .unwrap();
        assert!(made.success(), "mknod {}", node.display());
    }
    for ct in ["103", "104"] {
        let o = vz(&lab, &["exec", ct, &format!("echo {marker}-{ct} > /tmp/kmsg 2>&1")]);
        assert_ne!(o.code, 0, "container {ct} wrote to the host's kernel log: {o:?}");
        vz_ok(
            &lab,
            &["exec", ct, "echo x > /dev/null && head -c 1 /dev/urandom > /dev/null"],
        );
        assert_eq!(
            cg(ct, "devices", "devices.list")
                .lines()
                .filter(|l| l.contains("rwm"))
                .count(),
            ferry::cgroup::ALLOWED_DEVICES
                .iter()
                .filter(|r| r.ends_with("rwm"))
                .count()
        );
    }
    std::fs::write(format!("/sys/fs/cgroup/devices/{parent}/105/devices.allow"), "a").unwrap();
    vz_ok(&lab, &["exec", "105", &format!("echo {marker}-105 > /tmp/kmsg")]);
    let dmesg = std::process::Command::new("dmesg").output().unwrap();
    let log = String::from_utf8_lossy(&dmesg.stdout);
    assert!(
        log.contains(&format!("{marker}-105")),
        "the control's write is not in the kernel log"
    );
    assert!(!log.contains(&format!("{marker}-103")) && !log.contains(&format!("{marker}-104")));

    // Every process it can see has its root, not the host's.
    let leaks = vz_ok(
        &lab,
        &[
            "exec",
            "103",
            "for p in /proc/[0-9]*; do [ -e $p/root/opt/ferry/criu/criu ] && echo $p; done; true",
        ],
    );
    assert!(leaks.trim().is_empty(), "processes with the host's root: {leaks}");
    for ct in ["103", "104", "105"] {
        vz_ok(&lab, &["stop", ct, "--fast"]);
    }
}

/// A container whose init is systemd keeps CAP_SYS_ADMIN in its own user namespace: with it
/// its root may mount and unmount what its own namespaces made, but the kernel still refuses it
/// everything of the host's. Here the "systemd" is busybox init started by a script of that
/// name, which is all ferry looks at; the probes run with the capability (checked in its
/// bounding set). The kernel's calls stay refused, as do device nodes and its own limits; what
/// the start made read-only or masked, it can unmount, and what is behind stays the host's and
/// refused: /sys written, /proc/sys written, /proc/kcore read.
#[test]
fn a_systemd_container_with_cap_sys_admin_still_cannot_reach_the_host() {
    let lab = lab("esd");
    vz_ok(&lab, &["create", "106", "--ipadd", "198.18.0.12"]);
    vz_ok(&lab, &["set", "106", "--ram", "256M", "--numproc", "300", "--save"]);
    let private = lab.host("hostA").root.join("vz/private/106");
    std::fs::copy(probe(), private.join("bin/escape_probe")).unwrap();
    std::fs::create_dir_all(private.join("lib/systemd")).unwrap();
    std::fs::write(
        private.join("lib/systemd/systemd"),
        "#!/bin/sh\nexec /bin/busybox init\n",
    )
    .unwrap();
    std::fs::set_permissions(
        private.join("lib/systemd/systemd"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::remove_file(private.join("sbin/init")).unwrap();
    std::os::unix::fs::symlink("/lib/systemd/systemd", private.join("sbin/init")).unwrap();
    vz_ok(&lab, &["start", "106"]);
    let status = vz_ok(&lab, &["exec", "106", "cat /proc/1/status /proc/self/status"]);
    let bnd: Vec<u64> = status
        .lines()
        .filter_map(|l| l.strip_prefix("CapBnd:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .collect();
    assert_eq!(bnd.len(), 2, "{status}");
    for b in bnd {
        assert_eq!(b, ferry::runtime::caps::allowed_mask() | 1 << 21, "{status}");
    }
    for a in KERNEL_CALLS.iter().chain(&[
        "netnsid",
        "raise memory memory.limit_in_bytes 999999999",
        "raise pids pids.max max",
    ]) {
        assert_refused(&lab, "106", a);
    }
    for (what, script) in [
        ("mknod a host disk", "mknod /tmp/sda b 8 0"),
        // The kernel lets a cgroup namespace's owner mount the v1 hierarchy (its own part of
        // it); the files there stay the host's.
        (
            "raise its limit through the cgroup v1 memory hierarchy it mounts",
            "mkdir -p /tmp/m; mount -t cgroup -o memory cgroup /tmp/m; echo 999999999 > /tmp/m/memory.limit_in_bytes",
        ),
        (
            "make a cgroup in the v1 memory hierarchy",
            "mkdir -p /tmp/m; mount -t cgroup -o memory cgroup /tmp/m; mkdir /tmp/m/sub",
        ),
        (
            "write /sys",
            "mount -o remount,rw /sys; echo /tmp/x > /sys/kernel/uevent_helper",
        ),
        ("write /proc/sys", "umount /proc/sys; echo 0 > /proc/sys/kernel/sysrq"),
        (
            "read /proc/kcore",
            "umount /proc/kcore; head -c 1 /proc/kcore > /dev/null",
        ),
        // Its delegated v2 cgroup's own limit files stay the host's (on a pure v2 host; a
        // hybrid host's unified hierarchy has no controllers, so no such file).
        ("raise its own cgroup v2 limit", "echo max > /sys/fs/cgroup/pids.max"),
    ] {
        let o = vz(&lab, &["exec", "106", &format!("{script} 2>&1")]);
        assert_ne!(o.code, 0, "the systemd container's root could {what}: {o:?}");
    }
    let cg = |ctrl: &str, file: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{ctrl}/ferry-lab-{}-hostA/106/{file}", lab.name))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(cg("memory", "memory.limit_in_bytes"), (256u64 << 20).to_string());
    assert_eq!(cg("pids", "pids.max"), "300");
    vz_ok(&lab, &["stop", "106", "--fast"]);
}

/// A container sends only from its own addresses: a datagram from its address reaches the
/// client, one from any other (an unused one, the host's own) is dropped on the host, IPv4 and
/// IPv6, and again after `vzctl set --ipadd` and after a restore.
#[test]
fn a_container_cannot_send_from_addresses_that_are_not_its_own() {
    let lab = lab("ess");
    container(&lab, "104", &["--ipadd", "198.18.0.10", "--ipadd", "2001:2::10"]);
    let client = lab.client.clone();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let listener = std::thread::spawn(move || {
        ferry_testbed::enter_netns(&client).unwrap();
        let s = std::net::UdpSocket::bind("[::]:9999").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut buf = [0u8; 256];
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    });
    let arrived = |src: &str, dst: &str| -> bool {
        while rx.try_recv().is_ok() {}
        let (code, said) = attempt(&lab, "104", &format!("udp {src} {dst} 9999"));
        assert_eq!(code, 0, "the probe could not send from {src}: {said}");
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_secs(2) {
            if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
                if m == format!("from {src}") {
                    return true;
                }
            }
        }
        false
    };
    // What an intruder does first: put the addresses it wants to send from on its own link (its
    // root may configure its own network namespace). IPv6 addresses wait out duplicate address
    // detection before they can send.
    let foreign = ["198.18.0.99", "198.18.0.1", "2001:2::99", "2001:2::1"];
    let take_foreign = || {
        for a in foreign {
            let (fam, len) = if a.contains(':') { ("-6", 128) } else { ("-4", 32) };
            vz_ok(
                &lab,
                &["exec", "104", &format!("ip {fam} addr add {a}/{len} dev venet0")],
            );
        }
        std::thread::sleep(Duration::from_secs(3));
    };
    take_foreign();
    let check = |when: &str, own: &[&str]| {
        for src in own {
            let dst = if src.contains(':') {
                "2001:2::100"
            } else {
                "198.18.0.100"
            };
            assert!(
                arrived(src, dst),
                "{when}: a datagram from its own {src} did not arrive"
            );
        }
        for src in foreign {
            let dst = if src.contains(':') {
                "2001:2::100"
            } else {
                "198.18.0.100"
            };
            assert!(
                !arrived(src, dst),
                "{when}: a datagram from {src}, not the container's, arrived"
            );
        }
    };
    check("at start", &["198.18.0.10", "2001:2::10"]);
    vz_ok(&lab, &["set", "104", "--ipadd", "198.18.0.12"]);
    check("after --ipadd", &["198.18.0.12"]);
    vz_ok(&lab, &["chkpnt", "104"]);
    vz_ok(&lab, &["restore", "104"]);
    check("after a restore", &["198.18.0.10", "2001:2::10"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    listener.join().unwrap();
    vz_ok(&lab, &["stop", "104", "--fast"]);
}

/// Nothing a container writes can be run with privileges by a host user, and no host user reads
/// a container's files, memory (checkpoints) or console output: a set-uid copy of a shell
/// planted inside is out of reach through both the private area and the root, and the
/// checkpoint and console log refuse a host user.
#[test]
fn host_users_cannot_reach_what_a_container_wrote() {
    let h = TestHost::new("esu");
    h.vzctl(&["create", "105"]).ok();
    h.vzctl(&["start", "105"]).ok();
    h.exec(
        "105",
        "cp /bin/busybox /tmp/suid && chmod 4755 /tmp/suid && echo secret > /root/secret",
    );
    h.vzctl(&["chkpnt", "105", "--keep-running"]).ok();
    // As a host user (std drops the supplementary groups when a root parent sets the uid).
    let as_nobody = |prog: &Path, arg: &str| std::process::Command::new(prog).arg(arg).uid(65534).gid(65534).output();
    let root = h.root();
    for p in [root.join("vz/private/105/tmp/suid"), root.join("vz/root/105/tmp/suid")] {
        assert!(p.exists(), "{}", p.display());
        assert!(as_nobody(&p, "true").is_err(), "a host user ran {}", p.display());
    }
    let mut readable = vec![
        root.join("vz/private/105/root/secret"),
        root.join("vz/root/105/root/secret"),
        root.join("vz/log/105.console.log"),
    ];
    // A checkpoint is a directory (format 2) of mode 0700: its files are out of reach too
    // (CRIU's images keep CRIU's modes, for a restore into the user namespace to open).
    let mut inside = Vec::new();
    for e in std::fs::read_dir(root.join("vz/dump/105")).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            for f in ["manifest", "fs.tar"] {
                inside.push(p.join(f));
            }
            for i in std::fs::read_dir(p.join("images")).unwrap() {
                inside.push(i.unwrap().path());
            }
        }
        readable.push(p);
    }
    for p in &inside {
        let o = as_nobody(Path::new("/bin/cat"), p.to_str().unwrap()).unwrap();
        assert!(!o.status.success(), "a host user read {}", p.display());
    }
    for p in &readable {
        let o = as_nobody(Path::new("/bin/cat"), p.to_str().unwrap()).unwrap();
        assert!(!o.status.success(), "a host user read {}", p.display());
    }
    for d in ["vz/private", "vz/root", "vz/dump", "vz/log"] {
        let mode = std::fs::metadata(root.join(d)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700, "{d} is {mode:o}");
    }
    for p in &readable[2..] {
        let mode = std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", p.display());
    }
    // The planted program is set-uid to the container's root, an unprivileged host id.
    let md = std::fs::metadata(root.join("vz/root/105/tmp/suid")).unwrap();
    assert!(
        md.uid() >= 1_000_000 && md.mode() & 0o4000 != 0,
        "{:?}",
        (md.uid(), md.mode())
    );
    h.vzctl(&["stop", "105", "--fast"]).ok();
}

/// A container made with the default sample cannot take the host's processes or memory: its
/// forks stop at NUMPROC and a program taking more than its memory is killed, counted as a
/// failure in its beancounters.
#[test]
fn the_default_sample_bounds_processes_and_memory() {
    let h = TestHost::new("esl");
    h.vzctl(&["create", "106"]).ok();
    std::fs::copy(probe(), h.private("106").join("bin/escape_probe")).unwrap();
    h.vzctl(&["start", "106"]).ok();
    let ubc = h.vzctl(&["ubc", "106", "--json"]).ok().stdout;
    let rows: serde_json::Value = serde_json::from_str(&ubc).unwrap();
    let row = |name: &str| {
        rows["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == name)
            .unwrap_or_else(|| panic!("no {name} in {rows}"))
            .clone()
    };
    assert_eq!(row("numproc")["limit"], 1024, "{rows}");
    assert_eq!(row("physpages")["limit"], 262144, "{rows}");
    // 1100 sleepers (the loop is the shell's own builtins): forks past the limit fail. Counted
    // on the host, since inside nothing more can be forked once the limit is reached.
    // (The shell may give up at the first refused fork: its exit code says nothing here.)
    h.vzctl(&[
        "exec",
        "106",
        "i=0; while [ $i -lt 1100 ]; do sleep 60 </dev/null >/dev/null 2>&1 & i=$((i+1)); done 2>/dev/null; exit 0",
    ]);
    let pids =
        |file: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/pids/{}/106/{file}", h.cgroup_parent)).unwrap();
    let current: u64 = pids("pids.current").trim().parse().unwrap();
    assert!(current <= 1024, "{current} processes ran");
    let refused: u64 = pids("pids.events")
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    assert!(refused > 0, "no fork was refused (pids.current {current})");
    h.vzctl(&["stop", "106", "--fast"]).ok();
    h.vzctl(&["start", "106"]).ok();
    // 2.5 GiB against 1 GiB of memory and 1 GiB of swap (this host has more than that free).
    let o = h.vzctl(&["exec", "106", "escape_probe alloc 2560"]);
    assert_ne!(o.code, 0, "the container took 2.5 GiB: {o:?}");
    let ubc = h.vzctl(&["ubc", "106", "--json"]).ok().stdout;
    let rows: serde_json::Value = serde_json::from_str(&ubc).unwrap();
    let failcnt = rows["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "physpages")
        .unwrap()["failcnt"]
        .as_u64()
        .unwrap();
    assert!(failcnt > 0, "{rows}");
    h.vzctl(&["stop", "106", "--fast"]).ok();
}
