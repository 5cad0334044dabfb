//! Root-only, on the testbed: live and offline migration between agents, and the ways one
//! can fail.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::lab::MigLab;
use common::*;
// A frame around any payload, as the wire has it (our encoder refuses what these tests send).
use migrate_proto::frame::wrap as raw_frame;

/// `vzmigrate --online hostB 101` from hostA, running, its output captured.
fn spawn_online_migration(m: &MigLab) -> std::process::Child {
    spawn_migration(m, &["--online", "hostB", "101"])
}

/// `vzmigrate ARGS` from hostA, running, its output captured.
fn spawn_migration(m: &MigLab, args: &[&str]) -> std::process::Child {
    m.migrate_cmd("hostA", args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The packets held while frozen and sent on, from `vzmigrate --times`' output.
fn held_packets(times: &str) -> u32 {
    times
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("packets held while frozen and sent on to the destination: ")
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no held-packets line: {times}"))
}

fn counter(m: &MigLab, host: &str) -> u64 {
    std::fs::read_to_string(m.private(host, "101").join("tmp/count"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

fn serve_echo_and_count(m: &MigLab, host: &str) {
    m.vz_ok(
        host,
        &["exec", "101", "nc -ll -p 7 -e cat </dev/null >/dev/null 2>&1 &"],
    );
    m.vz_ok(host, &["exec", "101", COUNTER_LOOP]);
}

/// The lasting processes of the container: init, the echo server and the loops (pid and
/// arguments), without the loops' momentary forks (`lasting_procs`; a fork for `usleep` may also
/// show as `{usleep}`).
fn procs(m: &MigLab, host: &str) -> Vec<(u32, String)> {
    lasting_procs(&m.vz_ok(host, &["exec", "101", "ps -o pid,args"]), |l| {
        (l.contains("nc -ll") || l.contains("while") || l.contains("init")) && !l.contains("{usleep}")
    })
}

#[test]
fn online_migration_there_and_back_keeps_tcp_counter_pids_and_files() {
    let m = MigLab::new("mo", &["hostA", "hostB"], None);
    m.vz_ok(
        "hostA",
        &["create", "101", "--ipadd", "198.18.0.10", "--hostname", "mover"],
    );
    m.vz_ok("hostA", &["start", "101"]);
    serve_echo_and_count(&m, "hostA");
    // Without it, 60 pages went by reference and 61 were sent once on the way back.
    hold_stable_memory(&m, "hostA");
    // A 2 MiB file that grows every 5 ms (for at most 6000 lines): each pass after the first
    // finds it changed and sends it as an rsync delta.
    m.vz_ok(
        "hostA",
        &[
            "exec",
            "101",
            "dd if=/dev/urandom of=/root/big bs=64k count=32 2>/dev/null; \
             (i=0; while [ $i -lt 6000 ]; do echo line $i >> /root/big; usleep 5000; i=$((i+1)); done) \
             </dev/null >/dev/null 2>&1 &",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let pids = procs(&m, "hostA");
    let session = echo_session(m.lab.client.clone(), "198.18.0.10:7", 300, Duration::from_millis(30));
    std::thread::sleep(Duration::from_secs(1));

    let o = m.migrate("hostA", &["--online", "--times", "hostB", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("migrated to hostB online") && o.stdout.contains("frozen"),
        "{}",
        o.stdout
    );
    // The client talks every 30 ms: what it sent while the container was frozen was held and
    // handed to hostB at the commit, not dropped.
    assert!(held_packets(&o.stdout) >= 1, "nothing held: {}", o.stdout);
    assert!(o.stdout.contains("streamed from CRIU's page server"), "{}", o.stdout);
    assert!(
        o.stdout
            .contains("protocol version 4, 3 bulk streams beside the control stream"),
        "{}",
        o.stdout
    );
    assert_eq!(m.status("hostB", "101"), "CTID 101 exist mounted running");
    assert_eq!(m.status("hostA", "101"), "CTID 101 deleted unmounted down");
    assert!(
        !m.private("hostA", "101").exists(),
        "the source's private area was kept without -r no"
    );
    let at_b = counter(&m, "hostB");
    wait_until("the counter to go on on hostB", Duration::from_secs(10), || {
        counter(&m, "hostB") > at_b
    });
    assert_eq!(procs(&m, "hostB"), pids, "pids changed");

    // And back, keeping the private area on hostB (-r no) to compare the trees, with the final
    // dump written to pages images and read back (hostB's setting) rather than streamed.
    let conf = m.lab.host("hostB").root.join("etc/vz/vz.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("MIGRATE_PAGE_SERVER=\"no\"\n");
    std::fs::write(&conf, text).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let o = m.migrate("hostB", &["--online", "-r", "no", "--json", "hostA", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    let report: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(report["outcome"], "committed");
    assert!(
        report["frozen_ms"].as_u64().unwrap() > 0
            && report["total_ms"].as_u64().unwrap() >= report["frozen_ms"].as_u64().unwrap()
    );
    assert!(report["image_bytes"].as_u64().unwrap() > 0 && report["fs_bytes"].as_u64().unwrap() > 1 << 20);
    eprintln!("the way back: {report}");
    // Memory went ahead while the container ran: the final dump's pages went mostly as
    // references to what the pre-copy sent.
    assert!(report["memory_rounds"].as_u64().unwrap() >= 1, "{report}");
    // Each round with its time, bytes and dirtied bytes.
    let rounds = report["rounds"].as_array().unwrap();
    assert_eq!(
        rounds.len() as u64,
        report["memory_rounds"].as_u64().unwrap(),
        "{report}"
    );
    assert!(
        rounds[0]["sent_bytes"].as_u64().unwrap() > 0 && rounds[0]["dirty_bytes"].is_u64(),
        "{report}"
    );
    assert_eq!(report["pages_streamed"], false, "{report}");
    assert_eq!(
        (report["protocol"].as_u64(), report["bulk_streams"].as_u64()),
        (Some(4), Some(3))
    );
    // Version 4 names the final dump's pages by store slot and in runs.
    assert!(report["page_refs"].as_u64().unwrap() > 0, "{report}");
    assert!(
        report["page_refs"].as_u64().unwrap() > report["page_data"].as_u64().unwrap(),
        "{report}"
    );
    // No rule that muted the frozen copy is left behind on either host.
    for h in ["hostA", "hostB"] {
        let mut c = ferry_testbed::Lab::cmd(&m.lab.host(h).netns, "iptables");
        c.args(["-S", "FORWARD"]);
        let rules = run(c, Duration::from_secs(10)).stdout;
        assert!(!rules.contains("venet101"), "{h}: {rules}");
    }
    // The frozen pass found the growing file changed since the pass before and sent a delta.
    assert!(report["delta_files"].as_u64().unwrap() >= 1, "no delta: {report}");
    assert!(
        report["delta_bytes"].as_u64().unwrap() * 10 < report["delta_file_bytes"].as_u64().unwrap(),
        "{report}"
    );
    assert_eq!(m.status("hostA", "101"), "CTID 101 exist mounted running");
    assert_eq!(procs(&m, "hostA"), pids, "pids changed on the way back");
    assert_eq!(session.join().unwrap(), Ok(300), "the client's session broke");
    // The tree on hostB as it was when frozen equals the tree now on hostA (but for the
    // counter's files, which the running container has rewritten since, and the growing file,
    // whose frozen copy must be where the file now on hostA begins).
    let strip = |v: Vec<String>| {
        v.into_iter()
            .filter(|l| !l.starts_with("tmp/count ") && !l.starts_with("tmp/count.new ") && !l.starts_with("root/big "))
            .collect::<Vec<_>>()
    };
    let big_b = std::fs::read(m.private("hostB", "101").join("root/big")).unwrap();
    let big_a = std::fs::read(m.private("hostA", "101").join("root/big")).unwrap();
    assert!(
        big_b.len() > 2 << 20 && big_a.starts_with(&big_b),
        "the growing file was mangled"
    );
    let a = strip(ferry::migrate::fs::manifest(&m.private("hostA", "101")).unwrap());
    let b = strip(ferry::migrate::fs::manifest(&m.private("hostB", "101")).unwrap());
    assert_eq!(a, b, "the private areas differ");
    assert!(m.agent_log("hostA").contains("committed: the container is ours"));
}

/// `vzmigrate --check-only` changes nothing, offline as online: the offline flow's first step
/// stops the container, and a check used to take it (stopping the container, then starting it
/// again when the check ended: its processes and their sessions gone).
#[test]
fn check_only_without_online_leaves_the_container_running() {
    let m = MigLab::new("ck", &["hostA", "hostB"], None);
    m.vz_ok("hostA", &["create", "101", "--ipadd", "198.18.0.12"]);
    m.vz_ok("hostA", &["start", "101"]);
    m.vz_ok("hostA", &["exec", "101", "sleep 600 </dev/null >/dev/null 2>&1 &"]);
    let sleeper = || {
        lasting_procs(&m.vz_ok("hostA", &["exec", "101", "ps -o pid,args"]), |l| {
            l.contains("sleep 600")
        })
    };
    let (init, before) = (m.init_pid("hostA", "101"), sleeper());
    assert_eq!(before.len(), 1, "{before:?}");
    for args in [
        &["--check-only", "hostB", "101"][..],
        &["--check-only", "--online", "hostB", "101"],
        // OpenVZ's name for --online.
        &["--check-only", "--live", "hostB", "101"],
    ] {
        let o = m.migrate("hostA", args);
        assert_eq!(o.code, 0, "vzmigrate {args:?}: {o:?}");
        assert!(o.stdout.contains("can be migrated"), "{}", o.stdout);
        assert_eq!(m.status("hostA", "101"), "CTID 101 exist mounted running");
        assert_eq!(
            m.init_pid("hostA", "101"),
            init,
            "vzmigrate {args:?} restarted the container"
        );
        assert_eq!(
            sleeper(),
            before,
            "vzmigrate {args:?}: the container's processes changed"
        );
        assert_eq!(m.status("hostB", "101"), "CTID 101 deleted unmounted down");
    }
    // What would hang the final dump (a stopped process) is found by the check, before
    // anything is sent, and named.
    let pid = before[0].0;
    m.vz_ok("hostA", &["exec", "101", &format!("kill -STOP {pid}")]);
    let o = m.migrate("hostA", &["--check-only", "--online", "hostB", "101"]);
    // Refused up front, as OpenVZ vzmigrate's "cannot migrate as asked".
    assert_eq!(o.code, 5, "{o:?}");
    assert!(
        o.stderr.contains(&format!("process {pid} (sleep) is stopped")),
        "{}",
        o.stderr
    );
    assert_eq!(m.status("hostA", "101"), "CTID 101 exist mounted running");
    m.vz_ok("hostA", &["exec", "101", &format!("kill -CONT {pid}")]);
}

/// An offline migration stops the container first, as `vzctl stop` does: here its init ignores
/// the stop signal, so the stop takes STOP_TIMEOUT (20 s in the lab) before the kill, longer
/// than the link's idle timeout (15 s). vzmigrate waits for it without blocking the thread that
/// drives the connection, so the link lives and the migration completes.
#[test]
fn an_offline_migration_outlives_an_init_slow_to_stop() {
    let m = MigLab::new("mt", &["hostA", "hostB"], None);
    m.vz_ok("hostA", &["create", "101", "--ipadd", "198.18.0.13"]);
    let conf = m.lab.host("hostA").root.join("etc/vz/conf/101.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    // SIGWINCH (28): busybox init has no handler for it, so as pid 1 it never sees it.
    text.push_str("STOP_SIGNAL=\"28\"\n");
    std::fs::write(&conf, text).unwrap();
    m.vz_ok("hostA", &["start", "101"]);
    m.vz_ok("hostA", &["exec", "101", "echo kept > /root/file"]);
    let o = m.migrate("hostA", &["hostB", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    // (The premise: init did ignore the signal, and was killed after the timeout.)
    assert!(o.stderr.contains("did not stop within"), "{}", o.stderr);
    assert_eq!(m.status("hostB", "101"), "CTID 101 exist mounted running");
    assert_eq!(m.vz_ok("hostB", &["exec", "101", "cat /root/file"]), "kept\n");
    assert_eq!(m.status("hostA", "101"), "CTID 101 deleted unmounted down");
}

/// The destination's agent stops answering (SIGSTOP: a hung host) while the container is frozen,
/// before the commit: the source gives up once the destination has sent nothing, not even the
/// link's keep-alives, for a few seconds (not the link's idle timeout), and thaws and resumes
/// the container, its client's session unbroken. The destination, continued, cleans up.
#[test]
fn a_destination_hung_while_the_container_is_frozen_is_given_up() {
    let m = MigLab::new("hz", &["hostA", "hostB"], None);
    busy_container(&m, 0);
    let session = echo_session(m.lab.client.clone(), "198.18.0.10:7", 300, Duration::from_millis(30));
    std::thread::sleep(Duration::from_millis(300));
    let agent_b: i32 = std::fs::read_to_string(m.lab.host("hostB").root.join("vz/run/vzagentd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let journal = m.lab.host("hostB").root.join("vz/run/migrate-in-101.json");
    let vzmigrate = spawn_online_migration(&m);
    // Stopped once the container is frozen: hostB has the Frozen message (or is restoring).
    let mut phase = String::new();
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(120) {
        phase = std::fs::read_to_string(&journal)
            .ok()
            .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
            .and_then(|j| j["phase"].as_str().map(str::to_string))
            .unwrap_or_default();
        if phase == "FinalSync" || phase == "Restore" {
            // SAFETY: signalling the lab's agent process.
            unsafe { libc::kill(agent_b, libc::SIGSTOP) };
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        phase == "FinalSync" || phase == "Restore",
        "hostB's journal never showed the frozen phase: {phase:?}"
    );
    let out = vzmigrate.wait_with_output().unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(agent_b, libc::SIGCONT) };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("sent nothing for"), "{stderr}");
    // What the client sent meanwhile was held, and handed to the resumed container (its
    // session need not wait for its retransmission timer).
    let handed: u32 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("packets held while frozen handed back to the container: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no packets handed back: {stderr}"));
    assert!(handed >= 1, "{stderr}");
    assert_source_keeps_running(&m, session, 300);
    let cg = ferry::cgroup::Cgroups::detect(&m.lab.host("hostA").cgroup_parent).unwrap();
    let id = ferry::ctid::Ctid::new(101).unwrap();
    assert!(
        cg.freezers(id).iter().all(|f| !cg.is_frozen(id, *f).unwrap()),
        "the source stayed frozen"
    );
    wait_until("hostB to clean up", Duration::from_secs(90), || {
        left_on(&m, "hostB").is_none()
    });
}

#[test]
fn offline_migration_and_an_untrusted_peer() {
    let mut m = MigLab::new("mf", &["hostA", "hostB", "hostC"], None);
    m.vz_ok("hostA", &["create", "101", "--ipadd", "198.18.0.11"]);
    m.vz_ok("hostA", &["start", "101"]);
    m.vz_ok("hostA", &["exec", "101", "echo persisted > /root/file"]);
    let o = m.migrate("hostA", &["hostB", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("offline"), "{}", o.stdout);
    assert_eq!(m.status("hostB", "101"), "CTID 101 exist mounted running");
    assert_eq!(m.vz_ok("hostB", &["exec", "101", "cat /root/file"]), "persisted\n");
    assert_eq!(m.status("hostA", "101"), "CTID 101 deleted unmounted down");
    // hostB no longer trusts hostC: hostC's migration is refused at the handshake.
    assert_eq!(m.agentctl("hostB", &["trust", "remove", "hostC"]).code, 0);
    m.vz_ok("hostC", &["create", "102"]);
    let o = m.migrate("hostC", &["hostB", "102"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(
        m.agent_log("hostB").contains("is not pinned"),
        "{}",
        m.agent_log("hostB")
    );
    assert_eq!(m.status("hostC", "102"), "CTID 102 exist unmounted down");
    assert_eq!(m.status("hostB", "102"), "CTID 102 deleted unmounted down");
    // A destination that is not pinned at all is refused before anything is sent.
    let o = m.migrate("hostC", &["nowhere", "102"]);
    // vzmigrate's usage error, as OpenVZ's.
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("not a pinned peer"));
    // A container whose CTID is taken on the destination is refused by the plan check, and
    // nothing changes on either side.
    m.vz_ok("hostC", &["set", "102", "--save", "--hostname", "other"]);
    assert_eq!(
        m.agentctl(
            "hostB",
            &[
                "trust",
                "add",
                "hostC",
                &m.lab.host("hostC").addr,
                m.agentctl("hostC", &["fingerprint"]).stdout.trim()
            ]
        )
        .code,
        0
    );
    m.vz_ok("hostC", &["create", "101"]);
    let o = m.migrate("hostC", &["--check-only", "hostB", "101"]);
    // OpenVZ vzmigrate's "exists on the destination".
    assert_eq!(o.code, 9, "{o:?}");
    assert!(o.stderr.contains("already exists"), "{o:?}");
    assert_eq!(m.status("hostC", "101"), "CTID 101 exist unmounted down");
    // With --json a failure is an object too: the reason, the phase, where the container is.
    let o = m.migrate("hostC", &["--json", "hostB", "101"]);
    assert_eq!(o.code, 9, "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"));
    assert_eq!(v["outcome"], "failed", "{v}");
    assert_eq!(v["phase"], "Plan", "{v}");
    assert_eq!(v["container_on"], "source", "{v}");
    assert_eq!(v["exit_code"].as_i64(), Some(i64::from(o.code)), "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("already exists"), "{v}");
    assert_eq!(error.matches("aborted").count(), 1, "said more than once: {error}");
    assert_eq!(m.status("hostC", "101"), "CTID 101 exist unmounted down");
    // --check-only on a good plan changes nothing.
    let o = m.migrate("hostC", &["--check-only", "hostB", "102"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("can be migrated"), "{o:?}");
    assert_eq!(m.status("hostB", "102"), "CTID 102 deleted unmounted down");
    assert!(!m.private("hostB", "102").exists(), "--check-only left files behind");
    m.kill_agent("hostA");
}

/// About 750 KB of memory in container 101 that does not change (a shell holding random
/// text), so that the pre-copy carries most of the container's memory ahead of the freeze:
/// without it, the loops' few pages that change in the moment between the last round and the
/// freeze can be as many as those pre-copied, and a test of what went by reference measures a
/// race.
fn hold_stable_memory(m: &MigLab, host: &str) {
    m.vz_ok(
        host,
        &[
            "exec",
            "101",
            "sh -c 'x=$(head -c 300000 /dev/urandom | od -An -x); while :; do sleep 1; done' \
             </dev/null >/dev/null 2>&1 &",
        ],
    );
}

/// A container with an echo server, a counter, and `mb` MB of incompressible data in its
/// private area (to make the file sync last a while on a shaped link).
fn busy_container(m: &MigLab, mb: u32) {
    container_with_blob(m, "101", "198.18.0.10", mb);
    serve_echo_and_count(m, "hostA");
    std::thread::sleep(Duration::from_millis(300));
}

/// Container `ctid` running on hostA with address `ip` and `mb` MB of incompressible data in
/// its private area.
fn container_with_blob(m: &MigLab, ctid: &str, ip: &str, mb: u32) {
    m.vz_ok("hostA", &["create", ctid, "--ipadd", ip]);
    m.vz_ok("hostA", &["start", ctid]);
    if mb > 0 {
        m.vz_ok(
            "hostA",
            &[
                "exec",
                ctid,
                &format!("dd if=/dev/urandom of=/root/blob bs=1M count={mb} 2>/dev/null"),
            ],
        );
    }
}

fn assert_source_keeps_running(m: &MigLab, session: std::thread::JoinHandle<Result<usize, String>>, n: usize) {
    assert_eq!(m.status("hostA", "101"), "CTID 101 exist mounted running");
    let c = counter(m, "hostA");
    wait_until("the counter to go on on hostA", Duration::from_secs(10), || {
        counter(m, "hostA") > c
    });
    assert_eq!(session.join().unwrap(), Ok(n), "the client's session broke");
}

/// What of container 101 or its incoming migration is still on `host`, if anything.
fn left_on(m: &MigLab, host: &str) -> Option<String> {
    let status = m.status(host, "101");
    if status != "CTID 101 deleted unmounted down" {
        return Some(format!("the container ({status})"));
    }
    if m.private(host, "101").exists() {
        return Some("the private area".into());
    }
    let run = m.lab.host(host).root.join("vz/run");
    let journals: Vec<_> = std::fs::read_dir(&run)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("migrate-in-"))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if !journals.is_empty() {
        return Some(format!("a migration journal ({})", journals.join(", ")));
    }
    let work: Vec<_> = std::fs::read_dir(m.lab.host(host).root.join("vz/dump/101"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".incoming-"))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    (!work.is_empty()).then(|| format!("a migration work directory ({})", work.join(", ")))
}

fn assert_nothing_left_on(m: &MigLab, host: &str) {
    if let Some(what) = left_on(m, host) {
        panic!("{what} was left on {host}");
    }
}

#[test]
fn a_restore_failure_on_the_destination_rolls_back() {
    let m = MigLab::new("mr", &["hostA", "hostB"], None);
    busy_container(&m, 0);
    // In the configuration only (the running source keeps its limits), applied on the
    // destination: CRIU cannot recreate the processes under a one-process limit.
    let conf = m.lab.host("hostA").root.join("etc/vz/conf/101.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("NUMPROC=\"1:1\"\n");
    std::fs::write(&conf, text).unwrap();
    let session = echo_session(m.lab.client.clone(), "198.18.0.10:7", 150, Duration::from_millis(30));
    std::thread::sleep(Duration::from_millis(500));
    let o = m.migrate("hostA", &["--online", "hostB", "101"]);
    assert_eq!(o.code, 7, "a restore failure on the destination: {o:?}");
    assert!(
        o.stderr.contains("the restore failed: ") && o.stderr.contains("stays on this host"),
        "{}",
        o.stderr
    );
    assert_source_keeps_running(&m, session, 150);
    assert_nothing_left_on(&m, "hostB");
    assert!(m.agent_log("hostB").contains("restore failed"));
    // With --keep-dst the destination keeps what it received, stopped, never run; the source
    // runs on all the same.
    let o = m.migrate("hostA", &["--online", "--keep-dst", "hostB", "101"]);
    assert_eq!(o.code, 7, "a restore failure on the destination: {o:?}");
    assert_eq!(m.status("hostA", "101"), "CTID 101 exist mounted running");
    assert_eq!(m.status("hostB", "101"), "CTID 101 exist unmounted down");
    assert!(m.private("hostB", "101").join("bin/busybox").exists());
}

/// A file held open after its name was removed while a second name links it (CRIU's zdtm
/// unlink_fstat03) moves live: the final dump's link remap, which CRIU removes when the
/// processes keep running, reaches the destination; after a failed migration nothing of it is
/// left on the source.
#[test]
fn a_file_removed_while_linked_elsewhere_migrates_live_and_rolls_back_clean() {
    let m = MigLab::new("lk", &["hostA", "hostB"], None);
    m.vz_ok("hostA", &["create", "101", "--ipadd", "198.18.0.10"]);
    m.vz_ok("hostA", &["start", "101"]);
    m.vz_ok("hostA", &["exec", "101", HOLD_UNLINKED]);
    let expect = "kept\nsame-inode\nsame-content\n. .. f.link ";
    // A failed migration (the destination cannot recreate the processes under a one-process
    // limit): the container runs on here, nothing beside its file.
    let conf = m.lab.host("hostA").root.join("etc/vz/conf/101.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("{text}NUMPROC=\"1:1\"\n")).unwrap();
    let o = m.migrate("hostA", &["--online", "hostB", "101"]);
    assert_eq!(o.code, 7, "a restore failure on the destination: {o:?}");
    std::fs::write(&conf, text).unwrap();
    assert_eq!(m.vz_ok("hostA", &["exec", "101", CHECK_UNLINKED]), expect);
    let o = m.migrate("hostA", &["--online", "hostB", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(m.vz_ok("hostB", &["exec", "101", CHECK_UNLINKED]), expect);
    m.vz_ok("hostB", &["stop", "101", "--fast"]);
}

#[test]
fn a_full_destination_disk_rolls_back() {
    let m = MigLab::new("md", &["hostA", "hostB"], Some("50mbit"));
    busy_container(&m, 30);
    // hostB's private areas live on a small file system that fills up during the transfer.
    let base = m.lab.host("hostB").root.join("vz/private");
    std::fs::create_dir_all(&base).unwrap();
    let mut c = Command::new("mount");
    c.args(["-t", "tmpfs", "-o", "size=110m", "tmpfs"]).arg(&base);
    run(c, Duration::from_secs(10)).ok();
    let session = echo_session(m.lab.client.clone(), "198.18.0.10:7", 300, Duration::from_millis(30));
    std::thread::sleep(Duration::from_secs(1));
    let child = spawn_online_migration(&m);
    wait_until("the transfer to start", Duration::from_secs(20), || {
        m.private("hostB", "101").exists()
    });
    let mut c = Command::new("sh");
    c.arg("-c").arg(format!(
        "dd if=/dev/zero of={}/fill bs=1M count=200 2>/dev/null; true",
        base.display()
    ));
    run(c, Duration::from_secs(30));
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(31),
        "out of space there: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("out of space: "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(base.join("fill")).unwrap();
    assert_source_keeps_running(&m, session, 300);
    assert_nothing_left_on(&m, "hostB");
    let mut c = Command::new("umount");
    c.arg(&base);
    run(c, Duration::from_secs(10));
}

#[test]
fn a_destination_agent_killed_mid_transfer_is_cleaned_up_on_restart() {
    let mut m = MigLab::new("mk", &["hostA", "hostB"], Some("50mbit"));
    busy_container(&m, 30);
    let session = echo_session(m.lab.client.clone(), "198.18.0.10:7", 500, Duration::from_millis(30));
    std::thread::sleep(Duration::from_secs(1));
    let child = spawn_online_migration(&m);
    wait_until("the transfer to start", Duration::from_secs(20), || {
        m.private("hostB", "101").exists()
    });
    std::thread::sleep(Duration::from_millis(500));
    m.kill_agent("hostB");
    let out = child.wait_with_output().unwrap();
    assert!(
        matches!(out.status.code(), Some(21 | 22)),
        "the link broke or went silent: {:?} {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_source_keeps_running(&m, session, 500);
    // The agent's restart resolves what the crash left: nothing remains.
    assert!(
        m.private("hostB", "101").exists(),
        "nothing to clean up: the test did not catch the transfer"
    );
    m.start_agent("hostB");
    assert!(
        m.agent_log("hostB")
            .contains("aborted the migration of container 101 that a crash interrupted"),
        "{}",
        m.agent_log("hostB")
    );
    assert_nothing_left_on(&m, "hostB");
}

/// A peer of hostB speaking the protocol by hand, for the hostile tests: hostA's identity (which
/// hostB pins), hostB's key and address.
struct RawPeer {
    id: ferry::agent::trust::Identity,
    fp_b: String,
    addr: std::net::SocketAddr,
}

fn raw_peer(m: &MigLab) -> RawPeer {
    let a = m.lab.host("hostA");
    RawPeer {
        id: ferry::agent::trust::Identity::load_or_create(&ferry::layout::HostLayout::new(&a.root), "x").unwrap(),
        fp_b: m.agentctl("hostB", &["fingerprint"]).stdout.trim().to_string(),
        addr: format!("{}:7447", m.lab.host("hostB").addr).parse().unwrap(),
    }
}

/// The frames a hostile peer opens with: its `Hello` (migration id `[mid; 16]`, speaking
/// `versions`, claiming CRIU `criu` and the CPU `cpu_description`) and the plan of container
/// `ctid` (online or not, claiming `ram_bytes` of memory).
fn hostile_opening(
    mid: u8,
    versions: (u32, u32),
    criu: &str,
    cpu_description: Vec<u8>,
    ctid: u32,
    online: bool,
    ram_bytes: u64,
) -> [Vec<u8>; 2] {
    use migrate_proto::msg::{Capabilities, Hello, Layout, Message, Plan};
    let hello = Message::Hello(Hello {
        migration_id: [mid; 16],
        version_min: versions.0,
        version_max: versions.1,
        host: "evil".into(),
        caps: Capabilities {
            mem_dirty_tracking: false,
            compression: vec![],
            criu_version: criu.into(),
            kernel: "x".into(),
            cpu_description,
            free_ram: 0,
            free_disk: 0,
        },
    });
    let plan = Message::Plan(Plan {
        ctid,
        config: "HOSTNAME=\"evil\"\n".into(),
        layout: Layout::Simfs,
        private_bytes: 0,
        private_inodes: 0,
        ram_bytes,
        online,
        keep_dst: false,
        bwlimit: 0,
        max_downtime_ms: 0,
        start: false,
    });
    [hello, plan].map(|m| migrate_proto::frame::encode(&m).unwrap())
}

#[test]
fn a_hostile_peer_cannot_write_outside_the_area() {
    let m = MigLab::new("mh", &["hostA", "hostB"], None);
    let (a, RawPeer { id, fp_b, addr }) = (m.lab.host("hostA"), raw_peer(&m));
    // A manifest entry in the wire layout, with a path the real types cannot even hold.
    #[derive(serde::Serialize)]
    struct EvilEntry {
        path: String,
        kind: u32,
        mode: u32,
        uid: u32,
        gid: u32,
        mtime_sec: i64,
        mtime_nsec: u32,
        size: u64,
        link_target: Option<String>,
        rdev_major: u32,
        rdev_minor: u32,
        hardlink_group: Option<u64>,
        xattrs: Vec<(String, Vec<u8>)>,
        sparse: bool,
    }
    // A file-list frame (type 10) of one 5-byte regular file at `path`.
    let evil_file = |path: &str| {
        let entry = EvilEntry {
            path: path.into(),
            kind: 0,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_sec: 0,
            mtime_nsec: 0,
            size: 5,
            link_target: None,
            rdev_major: 0,
            rdev_minor: 0,
            hardlink_group: None,
            xattrs: vec![],
            sparse: false,
        };
        raw_frame(10, &postcard::to_allocvec(&(1u32, vec![entry])).unwrap())
    };
    let outside = m.lab.host("hostB").root.join("vz/escaped");
    let oversized = {
        let mut f = 13u16.to_be_bytes().to_vec();
        f.extend_from_slice(&(64u32 << 20).to_be_bytes());
        f.extend_from_slice(&[0; 4]);
        f
    };
    // (case, the CRIU the peer claims, online, the RAM its plan claims, what it sends after the
    // plan, what the agent logs): hostile data, then plans this host cannot honour (preflight).
    for (name, criu, online, ram_bytes, attack, logged) in [
        (
            "dotdot",
            "4.2.1",
            false,
            0,
            Some(evil_file("../../escaped")),
            "refused bad data",
        ),
        (
            "absolute",
            "4.2.1",
            false,
            0,
            Some(evil_file(&outside.display().to_string())),
            "refused bad data",
        ),
        ("oversized", "4.2.1", false, 0, Some(oversized), "refused bad data"),
        (
            "newer-criu",
            "99.0.0",
            true,
            0,
            None,
            "CRIU 99.0.0 is newer than this host's",
        ),
        ("no-memory", "4.2.1", true, 1u64 << 60, None, "not enough memory"),
        (
            "foreign-cpu",
            "4.2.1",
            true,
            0,
            None,
            "the source's CPU does not fit this host",
        ),
    ] {
        // The CPU the peer describes: CRIU's cpuinfo.img, or here something this host's CRIU
        // cannot accept.
        let cpu_description = if name == "foreign-cpu" {
            b"not a cpuinfo image".to_vec()
        } else {
            vec![]
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // This thread joins hostA's network namespace for the connection.
            ferry_testbed::enter_netns(&a.netns).unwrap();
            let conn = ferry::agent::quic::connect(&id, &fp_b, addr).await.unwrap();
            let (mut s, mut r) = conn.open_bi().await.unwrap();
            for f in hostile_opening(7, (3, 4), criu, cpu_description, 150, online, ram_bytes) {
                s.write_all(&f).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            if let Some(attack) = attack {
                let _ = s.write_all(&attack).await;
            }
            let _ = s.finish();
            let mut buf = vec![0u8; 1 << 16];
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while let Ok(Some(_)) = r.read(&mut buf).await {}
            })
            .await;
        });
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            !outside.exists() && !m.lab.host("hostB").root.join("escaped").exists(),
            "{name}: a file was written outside the area"
        );
        assert!(
            !m.private("hostB", "150").exists(),
            "{name}: the refused migration's area was left"
        );
        assert!(
            m.agent_log("hostB").contains(logged),
            "{name}: {}",
            m.agent_log("hostB")
        );
    }
}

/// A frozen transfer under way on a shaped link: the container (echo server, counter, and 30
/// MB of incompressible memory, since a tmpfs file is part of the dump) has been dumped and is
/// frozen and cut off (the host side of its link is down) while its images travel, which takes
/// seconds. The client's session of 200 echoes runs on.
struct FrozenTransfer {
    session: std::thread::JoinHandle<Result<usize, String>>,
    vzmigrate: Child,
    cg: ferry::cgroup::Cgroups,
    id: ferry::ctid::Ctid,
    freezer: ferry::cgroup::Freezer,
}

impl FrozenTransfer {
    fn start(m: &MigLab) -> Self {
        busy_container(m, 0);
        m.vz_ok(
            "hostA",
            &[
                "exec",
                "101",
                "dd if=/dev/urandom of=/dev/shm/blob bs=1M count=30 2>/dev/null",
            ],
        );
        let session = echo_session(m.lab.client.clone(), "198.18.0.10:7", 200, Duration::from_millis(30));
        let vzmigrate = spawn_online_migration(m);
        let cg = ferry::cgroup::Cgroups::detect(&m.lab.host("hostA").cgroup_parent).unwrap();
        let id = ferry::ctid::Ctid::new(101).unwrap();
        let freezer = cg.freezers(id)[0];
        let netns = m.lab.host("hostA").netns.clone();
        wait_until(
            "the dump to end and the link to go down",
            Duration::from_secs(30),
            || {
                let o = Command::new("ip")
                    .args(["-n", &netns, "-o", "link", "show", "venet101"])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&o.stdout).contains("state DOWN")
            },
        );
        assert!(cg.is_frozen(id, freezer).unwrap());
        Self {
            session,
            vzmigrate,
            cg,
            id,
            freezer,
        }
    }
}

#[test]
fn a_link_cut_during_the_final_transfer_rolls_back() {
    let m = MigLab::new("mc", &["hostA", "hostB"], Some("50mbit"));
    let t = FrozenTransfer::start(&m);
    let mut c = Command::new("ip");
    c.args(["-n", &m.lab.fabric, "link", "set", "h2", "down"]);
    run(c, Duration::from_secs(10)).ok();
    let out = t.vzmigrate.wait_with_output().unwrap();
    assert!(
        matches!(out.status.code(), Some(21 | 22)),
        "the link broke or went silent: {:?} {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!t.cg.is_frozen(t.id, t.freezer).unwrap(), "the source stayed frozen");
    assert_source_keeps_running(&m, t.session, 200);
    let mut c = Command::new("ip");
    c.args(["-n", &m.lab.fabric, "link", "set", "h2", "up"]);
    run(c, Duration::from_secs(10)).ok();
    wait_until("the destination to clean up", Duration::from_secs(30), || {
        !m.private("hostB", "101").exists()
    });
    assert_nothing_left_on(&m, "hostB");
}

#[test]
fn an_interrupted_vzmigrate_rolls_back() {
    let m = MigLab::new("mi", &["hostA", "hostB"], Some("50mbit"));
    let t = FrozenTransfer::start(&m);
    // vzmigrate holds the container's lock: nothing else changes it meanwhile.
    let o = m.vz("hostA", &["set", "101", "--cpuunits", "500"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("locked by another command"), "{o:?}");
    // The administrator presses Ctrl-C while the container is frozen.
    // SAFETY: signalling the vzmigrate this test started.
    assert_eq!(unsafe { libc::kill(t.vzmigrate.id() as i32, libc::SIGINT) }, 0);
    let out = t.vzmigrate.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(25), "interrupted: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!t.cg.is_frozen(t.id, t.freezer).unwrap(), "the source stayed frozen");
    assert_source_keeps_running(&m, t.session, 200);
    wait_until("the destination to clean up", Duration::from_secs(30), || {
        !m.private("hostB", "101").exists()
    });
    assert_nothing_left_on(&m, "hostB");
}

#[test]
fn a_killed_vzmigrate_is_recovered_on_the_source() {
    let mut m = MigLab::new("mz", &["hostA", "hostB"], Some("50mbit"));
    // By hand here: hostA's agent would settle it on its own (the next tests).
    m.kill_agent("hostA");
    let mut t = FrozenTransfer::start(&m);
    // vzmigrate dies outright while the container is frozen and cut off.
    t.vzmigrate.kill().unwrap();
    t.vzmigrate.wait().unwrap();
    assert!(t.cg.is_frozen(t.id, t.freezer).unwrap());
    // A new migration is refused until the interrupted one is seen to.
    let o = m.migrate("hostA", &["--online", "hostB", "101"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("vzmigrate --recover 101"), "{}", o.stderr);
    // The commit was never sent: --recover resumes it here.
    let o = m.migrate("hostA", &["--recover", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("resumed here"), "{}", o.stdout);
    assert!(!t.cg.is_frozen(t.id, t.freezer).unwrap(), "the source stayed frozen");
    assert_source_keeps_running(&m, t.session, 200);
    let o = m.migrate("hostA", &["--recover", "101"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("no interrupted migration"), "{}", o.stderr);
}

/// Runs an online migration of 101 from hostA to hostB whose vzmigrate dies (SIGKILL) at the
/// fault point `fault`, with a client session of `n` echoes running; returns the session.
fn migration_killed_at(m: &MigLab, fault: &str, n: usize) -> std::thread::JoinHandle<Result<usize, String>> {
    busy_container(m, 0);
    let session = echo_session(m.lab.client.clone(), "198.18.0.10:7", n, Duration::from_millis(30));
    std::thread::sleep(Duration::from_millis(300));
    let mut c = m.migrate_cmd("hostA", &["--online", "hostB", "101"]);
    c.env("FERRY_FAULT", fault);
    let o = run(c, Duration::from_secs(180));
    assert_eq!(o.code, 128 + 9, "vzmigrate was to die at {fault}: {o:?}");
    let journal = m.lab.host("hostA").root.join("vz/run/migrate-out-101.json");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&journal).unwrap()).unwrap();
    assert_eq!(j["phase"], "Commit", "{j}");
    assert_eq!(j["migration_id"].as_str().map(str::len), Some(32), "{j}");
    session
}

#[test]
fn a_vzmigrate_killed_after_sending_the_commit_is_settled_by_the_agent() {
    let mut m = MigLab::new("mb", &["hostA", "hostB"], None);
    m.kill_agent("hostA");
    let session = migration_killed_at(&m, "vzmigrate-after-commit", 300);
    // hostB had the commit: the container runs there, and the copy on hostA stays frozen, cut
    // off, with its journal.
    wait_until("the container to run on hostB", Duration::from_secs(30), || {
        m.status("hostB", "101") == "CTID 101 exist mounted running"
    });
    assert_eq!(m.status("hostA", "101"), "CTID 101 exist mounted running");
    let cg = ferry::cgroup::Cgroups::detect(&m.lab.host("hostA").cgroup_parent).unwrap();
    let id = ferry::ctid::Ctid::new(101).unwrap();
    assert!(cg.freezers(id).iter().any(|f| cg.is_frozen(id, *f).unwrap()));
    // A new migration is refused until it is settled.
    let o = m.migrate("hostA", &["--online", "hostB", "101"]);
    assert_ne!(o.code, 0, "{o:?}");
    // hostA's agent, started again, asks hostB, which says it committed: the copy here goes.
    m.start_agent("hostA");
    // (The agent logs what it did once it has done it: wait for the line, not only the status.)
    wait_until(
        "hostA's agent to remove the copy left there and say so",
        Duration::from_secs(60),
        || {
            m.status("hostA", "101") == "CTID 101 deleted unmounted down"
                && m.agent_log("hostA")
                    .contains("runs on hostB: the migration had committed there")
        },
    );
    assert!(!m.private("hostA", "101").exists());
    assert!(!m.lab.host("hostA").root.join("vz/run/migrate-out-101.json").exists());
    assert!(m.agent_log("hostB").contains("a source asked how migration"));
    // Exactly one copy runs, on hostB, and the client's session went on there.
    let at_b = counter(&m, "hostB");
    wait_until("the counter to go on on hostB", Duration::from_secs(10), || {
        counter(&m, "hostB") > at_b
    });
    assert_eq!(session.join().unwrap(), Ok(300), "the client's session broke");
    // Nothing is left to recover.
    let o = m.migrate("hostA", &["--recover", "101"]);
    assert_ne!(o.code, 0, "{o:?}");
}

#[test]
fn a_vzmigrate_killed_before_sending_the_commit_resumes_after_asking() {
    let mut m = MigLab::new("mq", &["hostA", "hostB"], None);
    m.kill_agent("hostA");
    let session = migration_killed_at(&m, "vzmigrate-before-commit", 200);
    // The commit phase was journaled but the commit never left: --recover asks hostB, which
    // records that it never will commit, and the container resumes here.
    let o = m.migrate("hostA", &["--recover", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("resumed here"), "{}", o.stdout);
    assert!(o.stdout.contains("hostB confirms it did not commit"), "{}", o.stdout);
    assert_source_keeps_running(&m, session, 200);
    // hostB gives up the restored copy it never ran once the dead connection times out: the
    // container first, its journal last.
    wait_until("hostB to clean up", Duration::from_secs(90), || {
        left_on(&m, "hostB").is_none()
    });
    // Its answer stands across a restart of its agent: the decision is on disk.
    let decisions = std::fs::read_to_string(m.lab.host("hostB").root.join("vz/run/migrate-decisions.json")).unwrap();
    assert!(decisions.contains("\"committed\":false"), "{decisions}");
}

#[test]
fn a_destination_agent_killed_before_acknowledging_the_commit() {
    let mut m = MigLab::new("mv", &["hostA", "hostB"], None);
    m.kill_agent("hostB");
    m.start_agent_env("hostB", &[("FERRY_FAULT", "vzagentd-before-commit-ack")]);
    busy_container(&m, 0);
    let session = echo_session(m.lab.client.clone(), "198.18.0.10:7", 300, Duration::from_millis(30));
    std::thread::sleep(Duration::from_millis(300));
    let vzmigrate = spawn_online_migration(&m);
    // hostB commits, runs the container and dies before it says so.
    wait_until(
        "hostB's agent to die at the fault point",
        Duration::from_secs(120),
        || m.agent_exited("hostB"),
    );
    let journal = std::fs::read_to_string(m.lab.host("hostB").root.join("vz/run/migrate-in-101.json")).unwrap();
    assert!(journal.contains("\"phase\":\"Done\""), "{journal}");
    // vzmigrate, in doubt, keeps asking; hostB's agent comes back, finishes the commit from its
    // journal and answers from its decisions on disk: committed.
    std::thread::sleep(Duration::from_secs(2));
    m.start_agent("hostB");
    let out = vzmigrate.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("migrated to hostB"), "{stdout}");
    assert!(
        m.agent_log("hostB")
            .contains("recovered the committed migration of container 101"),
        "{}",
        m.agent_log("hostB")
    );
    assert_eq!(m.status("hostA", "101"), "CTID 101 deleted unmounted down");
    assert!(!m.lab.host("hostA").root.join("vz/run/migrate-out-101.json").exists());
    assert_eq!(m.status("hostB", "101"), "CTID 101 exist mounted running");
    let at_b = counter(&m, "hostB");
    wait_until("the counter to go on on hostB", Duration::from_secs(10), || {
        counter(&m, "hostB") > at_b
    });
    assert_eq!(session.join().unwrap(), Ok(300), "the client's session broke");
    // The images it restored from went with the recovery: no work directory is left behind.
    let work = m.lab.host("hostB").root.join("vz/dump/101");
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", work.display());
}

/// The destination's agent dies after it wrote the container's configuration and before the
/// restore: the source keeps the container, and the agent, started again, removes what the
/// migration had made (its journal says the configuration was written), so the next migration
/// of the container to that host is not refused as "already exists". Nothing is left.
#[test]
fn a_destination_agent_killed_during_the_restore_leaves_no_ghost() {
    let mut m = MigLab::new("mj", &["hostA", "hostB"], None);
    m.kill_agent("hostB");
    m.start_agent_env("hostB", &[("FERRY_FAULT", "vzagentd-during-restore")]);
    busy_container(&m, 0);
    let session = echo_session(m.lab.client.clone(), "198.18.0.10:7", 300, Duration::from_millis(30));
    std::thread::sleep(Duration::from_millis(300));
    let o = m.migrate("hostA", &["--online", "hostB", "101"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(m.agent_exited("hostB"), "hostB's agent was to die in the restore");
    let journal = std::fs::read_to_string(m.lab.host("hostB").root.join("vz/run/migrate-in-101.json")).unwrap();
    assert!(journal.contains("\"config_written\":true"), "{journal}");
    assert!(m.lab.host("hostB").root.join("etc/vz/conf/101.conf").exists());
    // The commit was never sent: the source resumed the container, its session unbroken.
    assert_source_keeps_running(&m, session, 300);
    m.start_agent("hostB");
    wait_until(
        "hostB's agent to settle the interrupted migration",
        Duration::from_secs(60),
        || {
            m.agent_log("hostB")
                .contains("aborted the migration of container 101 that a crash interrupted in phase Restore")
        },
    );
    assert_nothing_left_on(&m, "hostB");
    assert!(!m.lab.host("hostB").root.join("etc/vz/conf/101.conf").exists());
    // And the container moves there now.
    let o = m.migrate("hostA", &["--online", "hostB", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(m.status("hostB", "101"), "CTID 101 exist mounted running");
    assert_nothing_left_on(&m, "hostA");
}

/// An incoming migration's work directory that no journal names (left by a crash between the
/// steps, or by an older agent) is removed when the agent starts, and a configuration with no
/// private area beside it (the ghost such a migration left) too; a real container's is kept.
#[test]
fn the_agent_sweeps_orphaned_work_directories_and_ghost_configs_at_start() {
    let mut m = MigLab::new("ml", &["hostA", "hostB"], None);
    let root = m.lab.host("hostB").root.clone();
    m.vz_ok("hostB", &["create", "102"]);
    m.kill_agent("hostB");
    // A ghost: a configuration, an empty private area and an orphaned work directory.
    std::fs::copy(root.join("etc/vz/conf/102.conf"), root.join("etc/vz/conf/101.conf")).unwrap();
    let text = std::fs::read_to_string(root.join("etc/vz/conf/101.conf")).unwrap();
    std::fs::write(root.join("etc/vz/conf/101.conf"), text.replace("/102", "/101")).unwrap();
    std::fs::create_dir_all(root.join("vz/private/101")).unwrap();
    std::fs::create_dir_all(root.join("vz/dump/101/.incoming-4242/images")).unwrap();
    std::fs::write(root.join("vz/dump/101/.incoming-4242/images/pages-1.img"), b"x").unwrap();
    // A real container with a stale work directory: only the directory goes.
    std::fs::create_dir_all(root.join("vz/dump/102/.incoming-4243")).unwrap();
    m.start_agent("hostB");
    wait_until("hostB's agent to sweep", Duration::from_secs(30), || {
        m.agent_log("hostB")
            .contains("removed the configuration of container 101")
    });
    assert_nothing_left_on(&m, "hostB");
    assert!(!root.join("vz/dump/102/.incoming-4243").exists());
    assert!(root.join("etc/vz/conf/102.conf").exists());
    assert!(root.join("vz/private/102/bin").exists());
    let log = m.agent_log("hostB");
    assert!(log.contains("removed the orphaned migration work directory"), "{log}");
}

#[test]
fn online_migration_over_ipv6_holds_its_clients_packets() {
    let m = MigLab::new("m6", &["hostA", "hostB"], None);
    m.vz_ok("hostA", &["create", "101", "--ipadd", "2001:2::10"]);
    m.vz_ok("hostA", &["start", "101"]);
    serve_echo_and_count(&m, "hostA");
    std::thread::sleep(Duration::from_millis(300));
    // hostB counts the IPv6 packets for the container that come from hostA's MAC: only the
    // held ones do (the client sends its own from its own MAC).
    let ns = |h: &str| m.lab.host(h).netns.clone();
    let sh = |h: &str, script: &str| {
        let mut c = ferry_testbed::Lab::cmd(&ns(h), "sh");
        c.args(["-c", script]);
        run(c, Duration::from_secs(10))
    };
    let mac_a = sh(
        "hostA",
        "ip -o link show $(ip -4 route get 198.18.0.2 | grep -o 'dev [^ ]*' | cut -d' ' -f2) \
         | grep -o 'link/ether [^ ]*' | cut -d' ' -f2",
    )
    .stdout
    .trim()
    .to_string();
    assert_eq!(mac_a.len(), 17, "{mac_a:?}");
    let o = sh(
        "hostB",
        &format!("ip6tables -w -I FORWARD -d 2001:2::10 -m mac --mac-source {mac_a} -j ACCEPT"),
    );
    assert_eq!(o.code, 0, "{o:?}");
    let session = echo_session(m.lab.client.clone(), "[2001:2::10]:7", 200, Duration::from_millis(30));
    std::thread::sleep(Duration::from_secs(1));
    let o = m.migrate("hostA", &["--online", "--times", "hostB", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    // Only the IPv6 client talks: what it sent while the container was frozen was held and
    // sent on to hostB as frames, not blackholed.
    assert!(held_packets(&o.stdout) >= 1, "nothing held: {}", o.stdout);
    assert_eq!(m.status("hostB", "101"), "CTID 101 exist mounted running");
    assert_eq!(session.join().unwrap(), Ok(200), "the client's IPv6 session broke");
    let counted = sh("hostB", "ip6tables -w -L FORWARD -v -n -x | grep -i 'MAC'").stdout;
    let arrived: u64 = counted
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(arrived >= 1, "no held packet reached hostB: {counted}");
}

#[test]
fn a_bridged_container_migrates_live_with_its_mac_and_sessions() {
    let m = MigLab::new("mn", &["hostA", "hostB"], None);
    m.vz_ok("hostA", &["create", "101"]);
    m.vz_ok("hostA", &["set", "101", "--netif_add", "eth0", "--save"]);
    m.vz_ok("hostA", &["start", "101"]);
    m.vz_ok("hostA", &["exec", "101", "ip addr add 198.18.0.50/24 dev eth0"]);
    let mac = |h: &str| m.vz_ok(h, &["exec", "101", "cat /sys/class/net/eth0/address"]);
    let mac_a = mac("hostA");
    serve_echo_and_count(&m, "hostA");
    std::thread::sleep(Duration::from_millis(300));
    let session = echo_session(m.lab.client.clone(), "198.18.0.50:7", 200, Duration::from_millis(30));
    std::thread::sleep(Duration::from_secs(1));
    // While the source is frozen its bridge port passes nothing: hostA's bridge reports the
    // port disabled while its link is still up (the link goes down, which disables the port
    // too, only once the dump is done).
    let mut monitor = ferry_testbed::Lab::cmd(&m.lab.host("hostA").netns, "bridge")
        .args(["monitor", "link"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let o = m.migrate("hostA", &["--online", "hostB", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    std::thread::sleep(Duration::from_millis(200));
    let _ = monitor.kill();
    let events = std::io::read_to_string(monitor.stdout.take().unwrap()).unwrap();
    let _ = monitor.wait();
    assert!(
        events
            .lines()
            .any(|l| l.contains("veth101.0") && l.contains(",UP,LOWER_UP>") && l.contains("state disabled")),
        "the frozen copy's bridge port was never disabled with its link up:\n{events}"
    );
    assert_eq!(m.status("hostB", "101"), "CTID 101 exist mounted running");
    assert_eq!(mac("hostB"), mac_a, "the MAC changed");
    assert_eq!(session.join().unwrap(), Ok(200), "the client's session broke");
}

#[test]
fn image_private_areas_migrate_live_and_offline() {
    let m = MigLab::new("mg", &["hostA", "hostB"], None);
    m.vz_ok(
        "hostA",
        &[
            "create",
            "101",
            "--layout",
            "image",
            "--diskspace",
            "400M:420M",
            "--ipadd",
            "198.18.0.10",
        ],
    );
    m.vz_ok("hostA", &["start", "101"]);
    m.vz_ok(
        "hostA",
        &["exec", "101", "echo kept > /root/file; ln /root/file /root/link"],
    );
    serve_echo_and_count(&m, "hostA");
    std::thread::sleep(Duration::from_millis(300));
    let session = echo_session(m.lab.client.clone(), "198.18.0.10:7", 150, Duration::from_millis(30));
    std::thread::sleep(Duration::from_millis(500));
    let image = |h: &str| m.private(h, "101").join("root.hdd");
    let fstype = |h: &str| {
        let root = m.lab.host(h).root.join("vz/root/101");
        let o = Command::new("findmnt")
            .args(["-n", "-o", "FSTYPE"])
            .arg(&root)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };

    // Live: the destination makes an image of the same size, fills it and restores into it.
    let o = m.migrate("hostA", &["--online", "hostB", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(m.status("hostB", "101"), "CTID 101 exist mounted running");
    assert_eq!(std::fs::metadata(image("hostB")).unwrap().len(), 420 << 20);
    assert_eq!(fstype("hostB"), "xfs");
    assert_eq!(
        m.vz_ok("hostB", &["exec", "101", "cat /root/link; stat -c %h /root/file"]),
        "kept\n2\n"
    );
    assert_eq!(session.join().unwrap(), Ok(150), "the client's session broke");
    assert_eq!(m.status("hostA", "101"), "CTID 101 deleted unmounted down");
    assert!(!m.private("hostA", "101").exists());

    // Offline and back: stopped there, started here, from an image again.
    let o = m.migrate("hostB", &["hostA", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(m.status("hostA", "101"), "CTID 101 exist mounted running");
    assert_eq!(fstype("hostA"), "xfs");
    assert_eq!(m.vz_ok("hostA", &["exec", "101", "cat /root/file"]), "kept\n");
    assert_eq!(m.status("hostB", "101"), "CTID 101 deleted unmounted down");

    // A stopped image container arrives stopped and unmounted; -r no keeps the source's copy
    // as it was (stopped, unmounted).
    m.vz_ok("hostA", &["stop", "101"]);
    let o = m.migrate("hostA", &["-r", "no", "hostB", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(m.status("hostB", "101"), "CTID 101 exist unmounted down");
    assert_eq!(m.status("hostA", "101"), "CTID 101 exist unmounted down");
    m.vz_ok("hostB", &["start", "101"]);
    assert_eq!(m.vz_ok("hostB", &["exec", "101", "cat /root/file"]), "kept\n");

    // A destination that cannot make the image (a configuration asking for one too small)
    // refuses the plan and leaves nothing behind.
    m.vz_ok("hostB", &["stop", "101"]);
    m.vz_ok("hostB", &["destroy", "101"]);
    let conf = m.lab.host("hostA").root.join("etc/vz/conf/101.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let small: String = text
        .lines()
        .map(|l| {
            if l.starts_with("DISKSPACE=") {
                "DISKSPACE=\"1024:1024\""
            } else {
                l
            }
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&conf, small).unwrap();
    let o = m.migrate("hostA", &["hostB", "101"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(
        !m.private("hostB", "101").exists(),
        "the refused plan left a private area"
    );
    assert_eq!(m.status("hostB", "101"), "CTID 101 deleted unmounted down");
    assert_eq!(m.status("hostA", "101"), "CTID 101 exist unmounted down");
}

#[test]
fn only_the_sending_host_may_ask_how_a_running_migration_ended() {
    let m = MigLab::new("mw", &["hostA", "hostB", "hostC"], Some("50mbit"));
    // A migration from hostA that lasts (40 MB of incompressible files on a 50 Mbit/s link: about
    // 7 s of file sync).
    busy_container(&m, 40);
    let vzmigrate = spawn_online_migration(&m);
    let journal = m.lab.host("hostA").root.join("vz/run/migrate-out-101.json");
    wait_until("hostA's migration to start", Duration::from_secs(30), || {
        std::fs::read_to_string(&journal).is_ok_and(|t| t.contains("FsSync"))
    });
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&journal).unwrap()).unwrap();
    // hostC, also pinned by hostB, asks about it as if it were its own interrupted migration.
    m.vz_ok("hostC", &["create", "101"]);
    let forged = serde_json::json!({
        "phase": "Commit", "peer": "hostB", "pid": 0,
        "migration_id": j["migration_id"], "remove_area": true,
    });
    let c_run = m.lab.host("hostC").root.join("vz/run");
    std::fs::create_dir_all(&c_run).unwrap();
    std::fs::write(c_run.join("migrate-out-101.json"), forged.to_string()).unwrap();
    let o = m.migrate("hostC", &["--recover", "101"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("cannot say how it ended"), "{o:?}");
    assert!(
        m.agent_log("hostB").contains("refused a question about migration"),
        "{}",
        m.agent_log("hostB")
    );
    // Nothing was decided for hostA's migration: it commits.
    let out = vzmigrate.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(m.status("hostB", "101"), "CTID 101 exist mounted running");
    // hostC's own container is untouched.
    assert_eq!(m.status("hostC", "101"), "CTID 101 exist unmounted down");
}

/// One live migration from `from` to `to` (vzmigrate speaking at most version `max`) that must
/// speak `(protocol, bulk streams)`; its report.
fn moved(m: &MigLab, from: &str, to: &str, max: Option<&str>, spoken: (u64, u64)) -> serde_json::Value {
    let mut c = m.migrate_cmd(from, &["--online", "--json", to, "101"]);
    if let Some(v) = max {
        c.env("FERRY_PROTOCOL_MAX", v);
    }
    let o = run(c, Duration::from_secs(180));
    assert_eq!(o.code, 0, "{o:?}");
    let r: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        (r["protocol"].as_u64(), r["bulk_streams"].as_u64()),
        (Some(spoken.0), Some(spoken.1)),
        "{r}"
    );
    assert_eq!(m.status(to, "101"), "CTID 101 exist mounted running");
    r
}

#[test]
fn hosts_of_protocol_versions_3_and_4_migrate_either_way() {
    let mut m = MigLab::new("ma", &["hostA", "hostB"], None);
    busy_container(&m, 8);
    // The last migration's final dump must go mostly by reference (41 pages against 43 sent
    // once without this).
    hold_stable_memory(&m, "hostA");
    let session = echo_session(m.lab.client.clone(), "198.18.0.10:7", 300, Duration::from_millis(30));
    // hostB speaks version 3 only (a host of the previous release): no bulk streams, pages by
    // hash.
    m.kill_agent("hostB");
    m.start_agent_env("hostB", &[("FERRY_PROTOCOL_MAX", "3")]);
    let r = moved(&m, "hostA", "hostB", None, (3, 0));
    assert!(r["page_refs"].as_u64().unwrap() > 0, "{r}");
    // Back with a vzmigrate of version 3 to hostA's agent of version 4.
    m.kill_agent("hostB");
    m.start_agent("hostB");
    std::thread::sleep(Duration::from_secs(1));
    moved(&m, "hostB", "hostA", Some("3"), (3, 0));
    // And once more with both at version 4.
    std::thread::sleep(Duration::from_secs(1));
    let r = moved(&m, "hostA", "hostB", None, (4, 3));
    assert!(
        r["page_refs"].as_u64().unwrap() > r["page_data"].as_u64().unwrap(),
        "the pre-copy went ahead: {r}"
    );
    assert_eq!(session.join().unwrap(), Ok(300), "the client's session broke");
}

/// What a hostile peer of protocol version 4 does after its plan is accepted.
#[derive(Debug, Clone, Copy, PartialEq)]
enum BulkAttack {
    /// A bulk stream that does not name itself first.
    Unnamed,
    /// Two bulk streams naming themselves the same.
    NamedTwice,
    /// A pages image referring to a store slot never filled.
    NeverFilled,
    /// A store slot filled twice.
    FilledTwice,
    /// Slots far past the memory the plan claims.
    PastTheBudget,
    /// A pages image named `../../escaped` (bytes the real types cannot even hold).
    ImageOutside,
    /// A flush naming more streams than the protocol has.
    FlushTooWide,
}

#[test]
fn a_hostile_peer_cannot_abuse_bulk_streams_or_store_slots() {
    use migrate_proto::msg::{ImageRuns, Message, PageRun, PageSlots};
    let m = MigLab::new("mx", &["hostA", "hostB"], None);
    let (a, b, RawPeer { id, fp_b, addr }) = (m.lab.host("hostA"), m.lab.host("hostB"), raw_peer(&m));
    let enc = |msg: &Message| migrate_proto::frame::encode(msg).unwrap();
    let page = vec![7u8; 4096];
    let slots = |first_slot: u32| {
        enc(&Message::PageSlots(PageSlots {
            round: 1,
            first_slot,
            data: page.clone(),
        }))
    };
    let outside = b.root.join("escaped");
    for (attack, logged) in [
        (BulkAttack::Unnamed, "did not begin by naming itself"),
        (BulkAttack::NamedTwice, "opened twice"),
        (BulkAttack::NeverFilled, "a reference to a store slot never filled"),
        (BulkAttack::FilledTwice, "a store slot filled twice"),
        (BulkAttack::PastTheBudget, "outgrew its budget"),
        (BulkAttack::ImageOutside, "refused bad data"),
        (BulkAttack::FlushTooWide, "refused bad data"),
    ] {
        let before = m.agent_log("hostB").len();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let frames: Vec<(Option<u32>, Vec<u8>)> = match attack {
            // (bulk stream to send on, or None for control; the frame)
            BulkAttack::Unnamed => vec![(Some(9), slots(0))],
            BulkAttack::NamedTwice => vec![
                (Some(1), enc(&Message::BulkStream { index: 1 })),
                (Some(2), enc(&Message::BulkStream { index: 1 })),
            ],
            BulkAttack::NeverFilled => vec![
                (Some(1), enc(&Message::BulkStream { index: 1 })),
                (Some(1), slots(0)),
                (
                    Some(1),
                    enc(&Message::ImageRuns(ImageRuns {
                        name: migrate_proto::path::RelPath::new("pages-1.img").unwrap(),
                        offset: 0,
                        runs: vec![PageRun::Held { slot: 5, count: 1 }],
                        data: vec![],
                    })),
                ),
            ],
            BulkAttack::FilledTwice => vec![
                (Some(1), enc(&Message::BulkStream { index: 1 })),
                (Some(1), slots(3)),
                (Some(1), slots(3)),
            ],
            BulkAttack::PastTheBudget => vec![
                (Some(1), enc(&Message::BulkStream { index: 1 })),
                (Some(1), slots(1 << 30)),
            ],
            BulkAttack::ImageOutside => {
                #[derive(serde::Serialize)]
                struct EvilRuns {
                    name: String,
                    offset: u64,
                    runs: Vec<PageRun>,
                    data: Vec<u8>,
                }
                let evil = EvilRuns {
                    name: "../../escaped".into(),
                    offset: 0,
                    runs: vec![PageRun::Data { count: 1 }],
                    data: page.clone(),
                };
                vec![
                    (Some(1), enc(&Message::BulkStream { index: 1 })),
                    (Some(1), raw_frame(34, &postcard::to_allocvec(&evil).unwrap())),
                ]
            }
            BulkAttack::FlushTooWide => vec![(None, raw_frame(81, &postcard::to_allocvec(&vec![0u64; 9]).unwrap()))],
        };
        rt.block_on(async {
            ferry_testbed::enter_netns(&a.netns).unwrap();
            let conn = ferry::agent::quic::connect(&id, &fp_b, addr).await.unwrap();
            let (mut s, mut r) = conn.open_bi().await.unwrap();
            for f in hostile_opening(9, (4, 4), "4.2.1", vec![], 151, true, 1 << 20) {
                s.write_all(&f).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut streams: Vec<(u32, quinn::SendStream)> = Vec::new();
            for (on, frame) in frames {
                match on {
                    None => s.write_all(&frame).await.unwrap(),
                    Some(k) => {
                        if !streams.iter().any(|(i, _)| *i == k) {
                            streams.push((k, conn.open_uni().await.unwrap()));
                        }
                        let st = &mut streams.iter_mut().find(|(i, _)| *i == k).unwrap().1;
                        let _ = st.write_all(&frame).await;
                    }
                }
            }
            let mut buf = vec![0u8; 1 << 16];
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while let Ok(Some(_)) = r.read(&mut buf).await {}
            })
            .await;
        });
        wait_until(
            &format!("{attack:?}: the agent to refuse it"),
            Duration::from_secs(20),
            || m.agent_log("hostB")[before..].contains(logged),
        );
        std::thread::sleep(Duration::from_millis(500));
        assert!(!outside.exists(), "{attack:?}: a file was written outside the area");
        assert!(
            !m.private("hostB", "151").exists(),
            "{attack:?}: the refused migration's area was left"
        );
        let dump = b.root.join("vz/dump/151");
        assert!(
            std::fs::read_dir(&dump).map(|d| d.count()).unwrap_or(0) == 0,
            "{attack:?}: the refused migration's work directory was left"
        );
    }
}

#[test]
fn a_pre_copy_that_misses_every_change_still_moves_memory_as_it_is() {
    // FERRY_SOFT_DIRTY=on on a kernel without soft-dirty bits: every round after the first
    // trusts bits that are never set and reads nothing, so everything written after the first
    // round reaches the destination only through the final dump, compared page by page with
    // what the destination holds. The memory must arrive as it was when frozen.
    let m = MigLab::new("ms", &["hostA", "hostB"], None);
    busy_container(&m, 0);
    // A shell that rewrites 200 KB of text every 0.2 s, keeping its checksum beside it in
    // memory; on SIGUSR1 it writes both (they agree only if its memory is whole). The new pair
    // is made aside and then put in place by two assignments in a row, so the trap never sees
    // a text without its own checksum (the shell runs traps between commands: while it waits
    // for md5sum, the old pair is in place).
    m.vz_ok(
        "hostA",
        &[
            "exec",
            "101",
            "sh -c 'trap \"echo \\\"\\$x\\\" | md5sum > /tmp/check; echo \\\"\\$s\\\" >> /tmp/check\" USR1; \
             echo $$ > /tmp/holder; n=0; while [ $n -lt 3000 ]; do n=$((n+1)); \
             y=$(head -c 100000 /dev/urandom | od -An -x | head -c 200000); t=$(echo \"$y\" | md5sum); \
             x=$y; s=$t; sleep 0.2; done' </dev/null >/dev/null 2>&1 &",
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    let session = echo_session(m.lab.client.clone(), "198.18.0.10:7", 200, Duration::from_millis(30));
    let mut c = m.migrate_cmd(
        "hostA",
        &["--online", "--json", "--max-downtime", "100ms", "hostB", "101"],
    );
    c.env("FERRY_SOFT_DIRTY", "on");
    let o = run(c, Duration::from_secs(180));
    assert_eq!(o.code, 0, "{o:?}");
    let r: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(r["dirty_tracking"], true, "{r}");
    // Rounds after the first read only processes that appeared since (their bits were never
    // cleared): the long-lived ones, never.
    let rounds = r["rounds"].as_array().unwrap();
    assert!(rounds.len() >= 2, "one round only: {r}");
    assert!(
        rounds[1..].iter().any(|x| x["dirty_bytes"].as_u64() == Some(0)),
        "every later round read pages: {r}"
    );
    // What changed after the first round went with the final dump.
    assert!(r["page_data"].as_u64().unwrap() > 0, "{r}");
    // The counter goes on from the value it had in memory when frozen, never back.
    let at_freeze = counter(&m, "hostB");
    wait_until("the counter to go on on hostB", Duration::from_secs(10), || {
        counter(&m, "hostB") > at_freeze
    });
    // The text and its checksum agree.
    m.vz_ok("hostB", &["exec", "101", "kill -USR1 $(cat /tmp/holder)"]);
    wait_until("the holder's check", Duration::from_secs(10), || {
        std::fs::read_to_string(m.private("hostB", "101").join("tmp/check")).is_ok_and(|t| t.lines().count() == 2)
    });
    let check = std::fs::read_to_string(m.private("hostB", "101").join("tmp/check")).unwrap();
    let lines: Vec<&str> = check.lines().collect();
    assert_eq!(lines[0], lines[1], "the memory arrived torn: {check}");
    assert_eq!(session.join().unwrap(), Ok(200), "the client's session broke");
}

#[test]
fn a_destination_agent_killed_during_the_memory_precopy_is_cleaned_up_on_restart() {
    let mut m = MigLab::new("mp", &["hostA", "hostB"], Some("50mbit"));
    busy_container(&m, 0);
    // About 50 MB of process memory: the pre-copy takes seconds on this link.
    m.vz_ok(
        "hostA",
        &[
            "exec",
            "101",
            "sh -c 'x=$(head -c 20000000 /dev/urandom | od -An -x); while :; do sleep 1; done' \
             </dev/null >/dev/null 2>&1 &",
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    let session = echo_session(m.lab.client.clone(), "198.18.0.10:7", 500, Duration::from_millis(30));
    let child = spawn_online_migration(&m);
    // hostB journals the pre-copy once the first pages arrive; the source is still copying
    // memory then (50 MB take about 8 s at 50 Mbit/s).
    let (source_journal, dest_journal) = (
        m.lab.host("hostA").root.join("vz/run/migrate-out-101.json"),
        m.lab.host("hostB").root.join("vz/run/migrate-in-101.json"),
    );
    let in_precopy = |j: &std::path::Path| std::fs::read_to_string(j).is_ok_and(|t| t.contains("\"MemPrecopy\""));
    wait_until("the memory pre-copy to reach hostB", Duration::from_secs(60), || {
        in_precopy(&dest_journal)
    });
    assert!(in_precopy(&source_journal), "the pre-copy ended before the kill");
    m.kill_agent("hostB");
    let out = child.wait_with_output().unwrap();
    assert!(
        matches!(out.status.code(), Some(21 | 22)),
        "the link broke or went silent: {:?} {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_source_keeps_running(&m, session, 500);
    assert!(m.private("hostB", "101").exists(), "nothing to clean up on hostB");
    m.start_agent("hostB");
    assert!(
        m.agent_log("hostB")
            .contains("aborted the migration of container 101 that a crash interrupted in phase MemPrecopy"),
        "{}",
        m.agent_log("hostB")
    );
    assert_nothing_left_on(&m, "hostB");
}

#[test]
fn a_churning_container_keeps_the_destination_store_near_its_memory() {
    // Every second a process comes that holds 5 MB of new text for two seconds and goes: each
    // pre-copy round on this 20 Mbit/s link (about 4 s for what two of them hold) finds only
    // processes the round before did not. The destination's store used to keep every content
    // it was ever sent (and a container churning fast enough for long enough could not be
    // moved: "out of space"); the slots of contents no page holds any more now take the next
    // round's. Processes that come and go, not one process rewriting its memory, so that the
    // churn goes on however busy the machine is: it costs a tenth of a CPU.
    let m = MigLab::new("mu", &["hostA", "hostB"], Some("20mbit"));
    busy_container(&m, 0);
    m.vz_ok(
        "hostA",
        &[
            "exec",
            "101",
            "echo 'if [ x$1 = xhold ]; then x=$(head -c 2000000 /dev/urandom | od -An -x); sleep 2; exit; fi; \
             i=0; while [ $i -lt 120 ]; do i=$((i+1)); sh /root/churn hold & sleep 1; done' >/root/churn",
        ],
    );
    m.vz_ok("hostA", &["exec", "101", "sh /root/churn </dev/null >/dev/null 2>&1 &"]);
    std::thread::sleep(Duration::from_secs(3));
    let session = echo_session(m.lab.client.clone(), "198.18.0.10:7", 800, Duration::from_millis(30));
    // A budget no round's leftovers fit, so the pre-copy goes on until the rounds stop shrinking.
    let o = m.migrate("hostA", &["--online", "--json", "--max-downtime", "1s", "hostB", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    let r: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let (store, sent, reused) = (
        r["store_bytes"].as_u64().unwrap(),
        r["mem_bytes"].as_u64().unwrap(),
        r["store_reused"].as_u64().unwrap(),
    );
    eprintln!(
        "the pre-copy sent {sent} bytes in {} rounds; the store grew to {store}, {reused} pages went to freed slots: {}",
        r["memory_rounds"], r["rounds"]
    );
    // A slot is freed after a round that found its content gone, and given again by the next.
    assert!(
        r["memory_rounds"].as_u64().unwrap() >= 3,
        "the churn did not keep the pre-copy going: {r}"
    );
    // Without freed slots given again, the store holds every page sent (reused 0, and store
    // equal to the pages' bytes of `sent`).
    assert!(
        reused > 0 && store + reused * 4096 <= sent,
        "no slot was given again: {r}"
    );
    assert_eq!(session.join().unwrap(), Ok(800), "the client's session broke");
    let at_b = counter(&m, "hostB");
    wait_until("the counter to go on on hostB", Duration::from_secs(10), || {
        counter(&m, "hostB") > at_b
    });
}

/// Several migrations at once, each container at most once: hostA sends two containers to
/// hostB together; while they are on their way, hostC's own container 101 is refused there (hostB
/// is already receiving a 101), and so is a second vzmigrate of hostA's 101. Both moves complete;
/// hostC's container runs on as before.
#[test]
fn several_migrations_at_once_and_each_container_at_most_once() {
    let m = MigLab::new("mm", &["hostA", "hostB", "hostC"], Some("50mbit"));
    busy_container(&m, 12);
    container_with_blob(&m, "102", "198.18.0.12", 12);
    m.vz_ok("hostC", &["create", "101", "--ipadd", "198.18.0.11"]);
    m.vz_ok("hostC", &["start", "101"]);
    let session = echo_session(m.lab.client.clone(), "198.18.0.10:7", 300, Duration::from_millis(30));
    let first = spawn_online_migration(&m);
    let second = spawn_migration(&m, &["--online", "hostB", "102"]);
    // hostB has taken on the first 101 (its private area is there) while both are on their way.
    wait_until("hostB to take on hostA's 101", Duration::from_secs(30), || {
        m.private("hostB", "101").exists()
    });
    let o = m.migrate("hostC", &["--online", "hostB", "101"]);
    assert_eq!(o.code, 5, "{o:?}");
    assert!(
        o.stderr.contains("container 101 is already being migrated here"),
        "{o:?}"
    );
    assert_eq!(m.status("hostC", "101"), "CTID 101 exist mounted running");
    assert_eq!(m.vz_ok("hostC", &["exec", "101", "echo ok"]), "ok\n");
    let o = m.migrate("hostA", &["--online", "hostB", "101"]);
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stderr.contains("locked by another command"), "{o:?}");
    for (ctid, child) in [("101", first), ("102", second)] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{ctid}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(m.status("hostB", ctid), format!("CTID {ctid} exist mounted running"));
        assert_eq!(m.status("hostA", ctid), format!("CTID {ctid} deleted unmounted down"));
    }
    assert_eq!(session.join().unwrap(), Ok(300), "the client's session broke");
    assert_eq!(m.status("hostC", "101"), "CTID 101 exist mounted running");
}
