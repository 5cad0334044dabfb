//! Root-only: every limit is enforced, not just written.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ferry::cgroup::{Cgroups, Freezer};
use ferry::ctid::Ctid;

fn cpu_ns(h: &TestHost, ctid: &str) -> u64 {
    std::fs::read_to_string(format!(
        "/sys/fs/cgroup/cpuacct/{}/{ctid}/cpuacct.usage",
        h.cgroup_parent
    ))
    .unwrap()
    .trim()
    .parse()
    .unwrap()
}

fn ubc(h: &TestHost, ctid: &str, res: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&h.vzctl(&["ubc", ctid, "--json"]).ok().stdout).unwrap();
    v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == res)
        .unwrap()
        .clone()
}

#[test]
fn numproc_limit_is_enforced_and_counted() {
    let h = TestHost::new("numproc");
    h.vzctl(&["create", "401"]).ok();
    h.vzctl(&["start", "401"]).ok();
    h.vzctl(&["set", "401", "--numproc", "12", "--save"]).ok();
    // Start 30 sleepers; the fork that would pass 12 processes fails.
    let out = h.vzctl(&["exec", "401", "n=0; for i in $(seq 30); do sleep 30 </dev/null >/dev/null 2>&1 & n=$((n+1)); done 2>/dev/null; sleep 0.2; ls /proc | grep -c '^[0-9]'"]);
    let running: u32 = out.stdout.trim().parse().unwrap_or(0);
    assert!(
        running <= 12,
        "{running} processes in a container limited to 12: {out:?}"
    );
    let np = ubc(&h, "401", "numproc");
    assert!(np["failcnt"].as_u64().unwrap() > 0, "failcnt did not rise: {np}");
    assert_eq!(np["limit"], 12);
    assert!(np["maxheld"].as_u64().unwrap() <= 12);
    let l = h.vzlist(&["-H", "-o", "ctid,numproc.l,numproc.f"]).ok().stdout;
    let cols: Vec<&str> = l.split_whitespace().collect();
    assert_eq!(cols[..2], ["401", "12"]);
    assert!(cols[2].parse::<u64>().unwrap() > 0);
    h.vzctl(&["stop", "401", "--fast"]).ok();
}

#[test]
fn ram_limit_kills_inside_and_spares_the_host() {
    let h = TestHost::new("ram");
    h.vzctl(&["create", "402"]).ok();
    h.vzctl(&["set", "402", "--ram", "48M", "--swap", "0", "--save"]).ok();
    h.vzctl(&["start", "402"]).ok();
    // A string doubling past 200 MB in a 48 MB container.
    let o = h.vzctl(&[
        "exec",
        "402",
        "awk 'BEGIN { s = \"xxxxxxxx\"; while (length(s) < 200000000) s = s s; print length(s) }'",
    ]);
    assert_ne!(o.code, 0, "the allocation succeeded: {o:?}");
    let pp = ubc(&h, "402", "physpages");
    assert!(pp["failcnt"].as_u64().unwrap() > 0, "no memory failcnt: {pp}");
    assert_eq!(pp["limit"].as_u64().unwrap(), 48 << 8, "limit in pages");
    assert!(pp["maxheld"].as_u64().unwrap() <= 48 << 8);
    // The container, and the host, live on.
    assert_eq!(h.exec("402", "echo alive").trim(), "alive");
    h.vzctl(&["stop", "402", "--fast"]).ok();
}

#[test]
fn cpulimit_caps_a_busy_loop() {
    let h = TestHost::new("cpulimit");
    h.vzctl(&["create", "403"]).ok();
    h.vzctl(&["set", "403", "--cpulimit", "20", "--save"]).ok();
    h.vzctl(&["start", "403"]).ok();
    h.exec("403", "(while :; do :; done) </dev/null >/dev/null 2>&1 &");
    std::thread::sleep(Duration::from_millis(300));
    let (c0, t0) = (cpu_ns(&h, "403"), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let share = (cpu_ns(&h, "403") - c0) as f64 / t0.elapsed().as_nanos() as f64;
    assert!(
        (0.10..=0.32).contains(&share),
        "a busy loop capped at 20% used {:.0}% of a CPU",
        share * 100.0
    );
    h.vzctl(&["stop", "403", "--fast"]).ok();
}

#[test]
fn cpuunits_share_one_cpu_about_one_to_three() {
    let h = TestHost::new("cpuunits");
    for (id, units) in [("404", "1000"), ("405", "3000")] {
        h.vzctl(&["create", id]).ok();
        h.vzctl(&["set", id, "--cpuunits", units, "--cpumask", "0", "--save"])
            .ok();
        h.vzctl(&["start", id]).ok();
        h.exec(id, "(while :; do :; done) </dev/null >/dev/null 2>&1 &");
    }
    std::thread::sleep(Duration::from_millis(500));
    let (a0, b0) = (cpu_ns(&h, "404"), cpu_ns(&h, "405"));
    std::thread::sleep(Duration::from_secs(4));
    let (a, b) = ((cpu_ns(&h, "404") - a0) as f64, (cpu_ns(&h, "405") - b0) as f64);
    let ratio = b / a;
    assert!(
        (2.0..=4.5).contains(&ratio),
        "cpuunits 3000 vs 1000 on one CPU gave a ratio of {ratio:.2}"
    );
    for id in ["404", "405"] {
        h.vzctl(&["stop", id, "--fast"]).ok();
    }
}

#[test]
fn image_layout_gives_enospc_and_grows_online() {
    let h = TestHost::new("disk");
    h.vzctl(&["create", "406", "--layout", "image", "--diskspace", "300M:320M"])
        .ok();
    assert!(h.private("406").join("root.hdd").is_file());
    h.vzctl(&["start", "406"]).ok();
    let o = h.vzctl(&["exec", "406", "dd if=/dev/zero of=/fill bs=1M count=400 2>&1"]);
    assert_ne!(o.code, 0, "wrote 400M into a 320M container: {o:?}");
    assert!(o.stdout.contains("No space left on device"), "{o:?}");
    assert_eq!(h.exec("406", "echo still-fine").trim(), "still-fine");
    let ds = ubc(&h, "406", "diskspace");
    assert_eq!(
        (ds["barrier"].as_u64(), ds["limit"].as_u64()),
        (Some(300 << 10), Some(320 << 10))
    );
    assert!(ds["held"].as_u64().unwrap() > 250 << 10, "{ds}");
    // Raising the limit online: the same write now succeeds, without a restart.
    let init = h.init_pid("406");
    h.vzctl(&["set", "406", "--diskspace", "600M:700M", "--save"]).ok();
    h.exec(
        "406",
        "rm /fill && dd if=/dev/zero of=/fill bs=1M count=400 2>/dev/null && rm /fill",
    );
    assert_eq!(h.init_pid("406"), init, "the container was restarted");
    // Shrinking is refused while mounted, works when stopped, and keeps the files.
    assert_eq!(h.vzctl(&["set", "406", "--diskspace", "400M", "--save"]).code, 32);
    h.vzctl(&["stop", "406"]).ok();
    h.vzctl(&["set", "406", "--diskspace", "400M", "--save"]).ok();
    assert_eq!(
        std::fs::metadata(h.private("406").join("root.hdd")).unwrap().len(),
        400 << 20
    );
    h.vzctl(&["start", "406"]).ok();
    assert_eq!(h.exec("406", "ls /bin/busybox").trim(), "/bin/busybox");
    h.vzctl(&["stop", "406", "--fast"]).ok();
    // simfs: recorded, reported, and the user is told it is not enforced.
    h.vzctl(&["create", "407"]).ok();
    let o = h.vzctl(&["set", "407", "--diskspace", "1G:2G", "--save"]);
    assert_eq!(o.code, 0);
    assert!(o.stderr.contains("not enforced on the simfs layout"), "{o:?}");
    assert_eq!(
        h.vzlist(&["-a", "-H", "-o", "diskspace.s,diskspace.h", "407"])
            .ok()
            .stdout
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1048576", "2097152"]
    );
}

#[test]
fn freeze_and_thaw_on_the_v1_and_the_v2_freezer() {
    let h = TestHost::new("freeze");
    h.vzctl(&["create", "408"]).ok();
    h.vzctl(&["start", "408"]).ok();
    h.exec(
        "408",
        "(i=0; while :; do i=$((i+1)); echo $i > /tmp/c; sleep 0.02; done) </dev/null >/dev/null 2>&1 &",
    );
    let count = || -> u64 {
        std::fs::read_to_string(h.root().join("vz/root/408/tmp/c"))
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let cg = Cgroups::detect(&h.cgroup_parent).unwrap();
    let id = Ctid::new(408).unwrap();
    let freezers = cg.freezers(id);
    assert!(
        freezers.contains(&Freezer::V1) && freezers.contains(&Freezer::V2),
        "this host should offer both freezers: {freezers:?}"
    );
    for f in [Freezer::V1, Freezer::V2] {
        wait_until("the counter to run", Duration::from_secs(5), || count() > 0);
        cg.freeze(id, f, Duration::from_secs(5)).unwrap();
        assert!(cg.is_frozen(id, f).unwrap());
        let frozen_at = count();
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(count(), frozen_at, "{f:?}: the counter advanced while frozen");
        cg.thaw(id, f).unwrap();
        assert!(!cg.is_frozen(id, f).unwrap());
        wait_until("the counter to move on after thaw", Duration::from_secs(5), || {
            count() > frozen_at
        });
    }
    h.vzctl(&["stop", "408", "--fast"]).ok();
}

#[test]
fn set_without_save_is_gone_after_restart_and_with_save_survives() {
    let h = TestHost::new("save");
    h.vzctl(&["create", "409"]).ok();
    h.vzctl(&["start", "409"]).ok();
    let pids_max = || {
        std::fs::read_to_string(format!("/sys/fs/cgroup/pids/{}/409/pids.max", h.cgroup_parent))
            .unwrap()
            .trim()
            .to_string()
    };
    h.vzctl(&["set", "409", "--numproc", "50"]).ok();
    assert_eq!(pids_max(), "50");
    h.vzctl(&["restart", "409"]).ok();
    // Back to the sample's limit (NUMPROC in ve-basic.conf-sample).
    assert_eq!(pids_max(), "1024", "an unsaved limit survived a restart");
    h.vzctl(&[
        "set",
        "409",
        "--numproc",
        "60",
        "--ram",
        "128M",
        "--cpuunits",
        "2000",
        "--save",
    ])
    .ok();
    h.vzctl(&["restart", "409"]).ok();
    assert_eq!(pids_max(), "60");
    let conf = std::fs::read_to_string(h.conf("409")).unwrap();
    for line in ["NUMPROC=\"60:60\"", "PHYSPAGES=\"0:32768\"", "CPUUNITS=\"2000\""] {
        assert!(conf.contains(line), "{line} missing:\n{conf}");
    }
    // Bad values are refused and change nothing.
    let before = std::fs::read_to_string(h.conf("409")).unwrap();
    for (args, code) in [
        (vec!["--ram", "-5"], 20),
        (vec!["--ram", "12X"], 21),
        (vec!["--diskspace", "2G:1G"], 21),
        (vec!["--cpuunits", "5"], 21),
        (vec!["--numproc", "abc"], 21),
        (vec!["--cpumask", "3-1"], 21),
        (vec!["--bogus", "1"], 20),
    ] {
        let mut a = vec!["set", "409"];
        a.extend(args.iter());
        a.push("--save");
        let o = h.vzctl(&a);
        assert_eq!(o.code, code, "{args:?}: {o:?}");
    }
    assert_eq!(std::fs::read_to_string(h.conf("409")).unwrap(), before);
    assert_eq!(pids_max(), "60");
    h.vzctl(&["stop", "409", "--fast"]).ok();
}

/// A live `--cpus 1` after a live `--cpulimit 50` keeps the tighter cap of the two (it used to
/// overwrite it with one whole CPU: each `set` merged only the saved limits with its own), and
/// a live `--cpulimit 150` after them does not lift the `--cpus 1` cap either.
#[test]
fn a_live_cpus_after_a_live_cpulimit_keeps_the_tighter_cap() {
    let h = TestHost::new("cpucap");
    h.vzctl(&["create", "410"]).ok();
    h.vzctl(&["start", "410"]).ok();
    // (cgroup v1, as on this project's machines; the guest lane covers v2.)
    let quota = || h.cgroup_file("cpu", "410", "cpu.cfs_quota_us");
    h.vzctl(&["set", "410", "--cpulimit", "50"]).ok();
    assert_eq!(quota(), "50000");
    h.vzctl(&["set", "410", "--cpus", "1"]).ok();
    assert_eq!(quota(), "50000", "--cpus 1 lifted the --cpulimit 50 cap");
    h.vzctl(&["set", "410", "--cpulimit", "150"]).ok();
    assert_eq!(quota(), "100000", "--cpulimit 150 lifted the --cpus 1 cap");
    // A restart starts from the saved limits (none here).
    h.vzctl(&["restart", "410"]).ok();
    assert_eq!(quota(), "-1");
    h.vzctl(&["stop", "410", "--fast"]).ok();
}

/// Limits set live without --save come back with the container after chkpnt/restore and after
/// suspend/resume (a restore used to apply only the saved ones); a restart still drops them.
#[test]
fn live_limits_survive_chkpnt_restore_and_suspend_resume() {
    let h = TestHost::new("livelim");
    h.vzctl(&["create", "411"]).ok();
    h.vzctl(&["start", "411"]).ok();
    let read = |ctrl: &str, file: &str| h.cgroup_file(ctrl, "411", file);
    h.vzctl(&["set", "411", "--numproc", "77", "--ram", "300M"]).ok();
    let ram = (300u64 << 20).to_string();
    assert_eq!(
        (read("pids", "pids.max"), read("memory", "memory.limit_in_bytes")),
        ("77".into(), ram.clone())
    );
    for (down, up) in [("chkpnt", "restore"), ("suspend", "resume")] {
        h.vzctl(&[down, "411"]).ok();
        h.vzctl(&[up, "411"]).ok();
        assert_eq!(read("pids", "pids.max"), "77", "after {down}/{up}");
        assert_eq!(read("memory", "memory.limit_in_bytes"), ram, "after {down}/{up}");
    }
    h.vzctl(&["restart", "411"]).ok();
    assert_eq!(read("pids", "pids.max"), "1024", "an unsaved limit survived a restart");
    h.vzctl(&["stop", "411", "--fast"]).ok();
}
