//! Root-only, on the testbed with hostA, hostB and hostC: `vzevacuate` empties a host, carries
//! on after being killed halfway without moving anything twice, leaves a container it cannot
//! move running where it was, and `--return` brings everything back; a vzmigrate it starts
//! waits to be recorded before it does anything.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::lab::MigLab;
use common::*;
use ferry_testbed::Lab;

fn evac_cmd(m: &MigLab, host: &str, args: &[&str]) -> Command {
    let h = m.lab.host(host);
    let mut c = Lab::cmd(&h.netns, env!("CARGO_BIN_EXE_vzevacuate"));
    c.arg("--root-dir").arg(&h.root).args(args);
    c
}

fn evac(m: &MigLab, host: &str, args: &[&str]) -> Out {
    run(evac_cmd(m, host, args), Duration::from_secs(300))
}

fn journal(m: &MigLab, host: &str) -> serde_json::Value {
    std::fs::read_to_string(m.lab.host(host).root.join("vz/run/evacuation.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// How many times each container was committed on a host (its agent's log).
fn commits(m: &MigLab, host: &str, ctid: u32) -> usize {
    m.agent_log(host)
        .matches(&format!("migration of container {ctid} committed"))
        .count()
}

const ADDRS: [&str; 4] = ["198.18.0.20:7", "198.18.0.21:7", "198.18.0.22:7", "198.18.0.23:7"];

#[test]
fn evacuating_a_host_carrying_on_after_a_kill_and_returning() {
    let m = MigLab::new("ev", &["hostA", "hostB", "hostC"], None);
    // Four containers of different sizes, each serving echo; a fifth whose address is taken on
    // both peers, so its migration's preflight fails wherever it is placed.
    for (i, ctid) in ["101", "102", "103", "104"].iter().enumerate() {
        m.vz_ok("hostA", &["create", ctid, "--ipadd", &format!("198.18.0.{}", 20 + i)]);
        m.vz_ok("hostA", &["start", ctid]);
        m.vz_ok(
            "hostA",
            &[
                "exec",
                ctid,
                &format!(
                    "dd if=/dev/urandom of=/root/ballast bs=1M count={} 2>/dev/null; nc -ll -p 7 -e cat </dev/null >/dev/null 2>&1 &",
                    3 * (i + 1)
                ),
            ],
        );
    }
    m.vz_ok("hostA", &["create", "105", "--ipadd", "198.18.0.30"]);
    m.vz_ok("hostA", &["start", "105"]);
    for h in ["hostB", "hostC"] {
        m.vz_ok(h, &["create", "205", "--ipadd", "198.18.0.30"]);
    }

    // Bad options change nothing.
    assert_eq!(evac(&m, "hostA", &["--to", "hostZ"]).code, 20);
    assert_eq!(evac(&m, "hostA", &["--parallel", "0"]).code, 20);
    assert_eq!(evac(&m, "hostA", &["--bwlimit", "fast"]).code, 20);

    // A full peer is not chosen: hostC's private areas on a 40 MiB file system cannot take the
    // 64 MiB headroom a migration needs.
    let c_private = m.lab.host("hostC").root.join("vz/private");
    let mut mount = Command::new("mount");
    mount.args(["-t", "tmpfs", "-o", "size=40m", "tmpfs"]).arg(&c_private);
    assert_eq!(run(mount, Duration::from_secs(10)).code, 0);
    let o = evac(&m, "hostA", &["--dry-run", "--json", "--parallel", "2"]);
    let mut umount = Command::new("umount");
    umount.arg(&c_private);
    assert_eq!(run(umount, Duration::from_secs(10)).code, 0);
    assert_eq!(o.code, 0, "{o:?}");
    let plan: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let placed: Vec<(u64, String)> = plan["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["ctid"].as_u64().unwrap(),
                p["peer"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(placed.len(), 5, "{plan}");
    assert!(
        placed.iter().all(|(_, p)| p == "hostB"),
        "the full hostC was chosen: {plan}"
    );
    assert_eq!(placed[0].0, 104, "the largest is not placed first: {plan}");
    assert!(!journal(&m, "hostA").is_object(), "a dry run wrote the journal");

    // Clients talk to the four while they move.
    let sessions: Vec<_> = ADDRS
        .iter()
        .map(|a| echo_session(m.lab.client.clone(), a, 500, Duration::from_millis(30)))
        .collect();

    // Killed (SIGKILL, no chance to clean up) as soon as the first container has moved.
    let log = std::fs::File::create(m.lab.base.join("evacuate-1.log")).unwrap();
    let mut first = evac_cmd(&m, "hostA", &["--parallel", "2"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        let j = journal(&m, "hostA");
        let states: Vec<&str> = j["entries"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["state"].as_str()).collect())
            .unwrap_or_default();
        if states.contains(&"moved") {
            assert!(
                states.iter().any(|s| *s != "moved"),
                "everything moved before the kill: {j}"
            );
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "nothing moved: {j}");
        assert!(first.try_wait().unwrap().is_none(), "vzevacuate ended early: {j}");
        std::thread::sleep(Duration::from_millis(10));
    }
    first.kill().unwrap();
    first.wait().unwrap();

    // Again: it waits for the migrations the killed run left going, and finishes the rest.
    let o = evac(&m, "hostA", &["--parallel", "2", "--json"]);
    eprintln!(
        "the killed run:\n{}\nthe second run:\n{}{}",
        std::fs::read_to_string(m.lab.base.join("evacuate-1.log")).unwrap_or_default(),
        o.stderr,
        o.stdout
    );
    assert_eq!(o.code, 110, "105 cannot move, so the evacuation is incomplete: {o:?}");
    assert!(o.stderr.contains("1 container(s) could not be moved"), "{}", o.stderr);
    let done: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let entries = done["containers"].as_array().unwrap();
    for ctid in [101u32, 102, 103, 104] {
        let e = entries.iter().find(|e| e["ctid"] == ctid).unwrap();
        assert_eq!(e["state"], "moved", "{done}");
        let peer = e["peer"].as_str().unwrap();
        assert_eq!(
            m.status(peer, &ctid.to_string()),
            format!("CTID {ctid} exist mounted running")
        );
        assert_eq!(
            commits(&m, "hostB", ctid) + commits(&m, "hostC", ctid),
            1,
            "container {ctid} moved more or less than once"
        );
        assert_eq!(
            m.status("hostA", &ctid.to_string()),
            format!("CTID {ctid} deleted unmounted down")
        );
    }
    assert!(
        entries.iter().any(|e| e["peer"] == "hostB") && entries.iter().any(|e| e["peer"] == "hostC"),
        "not spread over both peers: {done}"
    );
    let failed = entries.iter().find(|e| e["ctid"] == 105).unwrap();
    assert_eq!(failed["state"], "failed");
    assert!(failed["reason"].as_str().unwrap().contains("198.18.0.30"), "{failed}");
    assert_eq!(m.status("hostA", "105"), "CTID 105 exist mounted running");
    for (a, s) in ADDRS.iter().zip(sessions) {
        assert_eq!(s.join().unwrap(), Ok(500), "the session with {a} broke");
    }

    // --return brings the four back (pulled by the peers' agents), each once.
    let sessions: Vec<_> = ADDRS
        .iter()
        .map(|a| echo_session(m.lab.client.clone(), a, 300, Duration::from_millis(30)))
        .collect();
    // One budget of 8 MiB/s: each of the two pulls at a time gets 4 MiB/s.
    let o = evac(
        &m,
        "hostA",
        &["--return", "--parallel", "2", "--bwlimit", "8M", "--json"],
    );
    eprintln!("the return:\n{}{}", o.stderr, o.stdout);
    assert_eq!(o.code, 0, "{o:?}");
    let back: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    for e in back["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state"] == "returned")
    {
        let (bytes, ms) = (e["wire_bytes"].as_u64().unwrap(), e["total_ms"].as_u64().unwrap());
        // The bucket lets a tenth of a second through at once; allow a quarter over the rate.
        assert!(
            bytes > 2 << 20 && bytes * 1000 / ms.max(1) <= 5 << 20,
            "{} came back at {} KiB/s, over its 4 MiB/s share: {e}",
            e["ctid"],
            bytes * 1000 / ms.max(1) / 1024
        );
    }
    for ctid in [101u32, 102, 103, 104] {
        assert_eq!(
            m.status("hostA", &ctid.to_string()),
            format!("CTID {ctid} exist mounted running")
        );
        assert_eq!(
            commits(&m, "hostA", ctid),
            1,
            "container {ctid} came back more or less than once"
        );
        for h in ["hostB", "hostC"] {
            assert_eq!(
                m.status(h, &ctid.to_string()),
                format!("CTID {ctid} deleted unmounted down")
            );
        }
    }
    for (a, s) in ADDRS.iter().zip(sessions) {
        assert_eq!(s.join().unwrap(), Ok(300), "the session with {a} broke on the way back");
    }
    assert!(!journal(&m, "hostA").is_object(), "the journal outlived the return");
    // Nothing is left to bring back; and a peer gives back only what this host moved there.
    assert_eq!(evac(&m, "hostA", &["--return"]).code, 0);
    m.vz_ok("hostB", &["start", "205"]);
    let layout = ferry::layout::HostLayout::new(&m.lab.host("hostA").root);
    let id = ferry::agent::trust::Identity::load_or_create(&layout, "hostA").unwrap();
    let store = ferry::agent::trust::TrustStore::load(&layout).unwrap();
    let b = store.find("hostB").unwrap().clone();
    let netns = m.lab.host("hostA").netns.clone();
    let r = std::thread::spawn(move || {
        ferry_testbed::enter_netns(&netns).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(ferry::migrate::pull::request(
            &id,
            &b,
            migrate_proto::msg::PullRequest {
                ctid: 205,
                online: true,
                max_downtime_ms: 2000,
                bwlimit: 0,
            },
            &mut |_| {},
        ))
        .map(|_| ())
        .map_err(|e| e.to_string())
    })
    .join()
    .unwrap();
    let err = r.unwrap_err();
    assert!(err.contains("did not come to") && err.contains("from hostA"), "{err}");
    assert_eq!(m.status("hostB", "205"), "CTID 205 exist mounted running");
}

/// What a vzmigrate started behind its gate ends with, the gate opened or dropped.
fn gated_vzmigrate(root: &std::path::Path, open: bool) -> Result<ferry::migrate::child::Report, String> {
    use ferry::migrate::child::Event;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut gate = Some(open);
    ferry::migrate::child::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_vzmigrate")),
        root,
        false,
        &[],
        "nowhere",
        199,
        move |ev| match ev {
            Event::Started(_, g) => {
                if gate.take() == Some(true) {
                    g.open();
                }
            }
            Event::Line(_) => {}
            Event::Done(r) => {
                let _ = tx.send(r);
            }
        },
    )
    .unwrap();
    rx.recv_timeout(Duration::from_secs(60)).unwrap()
}

/// A vzmigrate that vzevacuate started does nothing until vzevacuate has recorded it: with its
/// gate dropped (vzevacuate killed first) it exits untouched; opened, it goes ahead (and here
/// meets a container and a peer that do not exist).
#[test]
fn a_vzmigrate_started_behind_its_gate_waits_to_be_recorded() {
    let h = TestHost::new("gate");
    let dropped = gated_vzmigrate(h.root(), false).unwrap_err();
    assert!(dropped.contains("went away before recording it"), "{dropped}");
    let opened = gated_vzmigrate(h.root(), true).unwrap_err();
    assert!(!opened.contains("went away"), "{opened}");
    assert!(opened.contains("199") || opened.contains("nowhere"), "{opened}");
}
