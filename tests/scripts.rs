//! Root-only: the two worked examples in scripts/ that administrators copy, run as they would
//! run them: the nightly checkpoint job on one host, the hardware-upgrade runbook on the testbed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::lab::MigLab;
use common::*;
use ferry_testbed::Lab;

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_vzctl")).parent().unwrap().to_path_buf()
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name)
}

#[test]
fn the_nightly_checkpoint_job_keeps_n_per_running_container() {
    let h = TestHost::new("nightly");
    for ctid in ["101", "102", "103"] {
        assert_eq!(h.vzctl(&["create", ctid]).code, 0);
    }
    for ctid in ["101", "102"] {
        assert_eq!(h.vzctl(&["start", ctid]).code, 0);
    }
    let job = |args: &[&str]| {
        let mut c = Command::new("bash");
        c.arg(script("nightly-checkpoints.sh"))
            .args(args)
            .arg("--root-dir")
            .arg(h.root())
            .arg("--bin")
            .arg(bin_dir())
            .env_remove("FERRY_ROOT");
        run(c, Duration::from_secs(120))
    };
    assert_eq!(job(&["--keep", "0"]).code, 2);
    assert_eq!(job(&["--keep", "many"]).code, 2);
    for night in 0..4 {
        let o = job(&["--keep", "2"]);
        assert_eq!(o.code, 0, "night {night}: {o:?}");
        assert!(
            o.stdout.contains("container 101: Checkpoint") && o.stdout.contains("container 102: Checkpoint"),
            "{}",
            o.stdout
        );
        assert!(
            !o.stdout.contains("container 103"),
            "a stopped container was checkpointed"
        );
        assert!(o.stdout.contains("2 running container(s), 0 failed"), "{}", o.stdout);
        // Checkpoint ids are stamped to the second.
        std::thread::sleep(Duration::from_millis(1100));
    }
    for ctid in ["101", "102"] {
        let list: serde_json::Value = serde_json::from_str(&h.vzctl(&["checkpoints", ctid, "--json"]).stdout).unwrap();
        let list = list.as_array().unwrap();
        // Four nights at --keep 2: two chains of two; the older chain was deleted.
        assert_eq!(list.len(), 2, "{list:?}");
        assert_eq!(list[0]["level"], 0);
        assert_eq!(list[1]["level"], 1);
        assert_eq!(list[1]["parent"], list[0]["id"]);
        assert!(h.vzctl(&["status", ctid]).stdout.contains("running"));
    }
    // The newest checkpoint restores.
    assert_eq!(h.vzctl(&["stop", "101"]).code, 0);
    let o = h.vzctl(&["restore", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(h.vzctl(&["status", "101"]).stdout.contains("running"));
}

#[test]
fn the_upgrade_runbook_evacuates_waits_and_brings_everything_back() {
    let m = MigLab::new("rb", &["hostA", "hostB"], None);
    for (ctid, ip) in [("101", "198.18.0.40"), ("102", "198.18.0.41")] {
        m.vz_ok("hostA", &["create", ctid, "--ipadd", ip]);
        m.vz_ok("hostA", &["start", ctid]);
    }
    m.vz_ok(
        "hostA",
        &["exec", "101", "nc -ll -p 7 -e cat </dev/null >/dev/null 2>&1 &"],
    );
    let session = echo_session(m.lab.client.clone(), "198.18.0.40:7", 400, Duration::from_millis(30));
    let wait_file = m.lab.base.join("upgrade-in-progress");
    let h = m.lab.host("hostA");
    let out = std::fs::File::create(m.lab.base.join("runbook.log")).unwrap();
    let mut child = Lab::cmd(&h.netns, "bash")
        .arg(script("upgrade-runbook.sh"))
        .args(["--to", "hostB", "--parallel", "2", "--bwlimit", "50M", "--wait-file"])
        .arg(&wait_file)
        .arg("--root-dir")
        .arg(&h.root)
        .arg("--bin")
        .arg(bin_dir())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(m.lab.base.join("runbook.log")).unwrap_or_default();
    let t0 = Instant::now();
    while !wait_file.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the runbook ended early:\n{}",
            log()
        );
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "no maintenance window:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The window: hostA runs nothing, hostB runs both.
    for ctid in ["101", "102"] {
        assert_eq!(m.status("hostA", ctid), format!("CTID {ctid} deleted unmounted down"));
        assert_eq!(m.status("hostB", ctid), format!("CTID {ctid} exist mounted running"));
    }
    std::fs::remove_file(&wait_file).unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(360), "the runbook hangs:\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("{}", log());
    assert!(status.success(), "{}", log());
    assert!(log().contains("done: 2 container(s) back"), "{}", log());
    for ctid in ["101", "102"] {
        assert_eq!(m.status("hostA", ctid), format!("CTID {ctid} exist mounted running"));
        assert_eq!(m.status("hostB", ctid), format!("CTID {ctid} deleted unmounted down"));
    }
    assert_eq!(session.join().unwrap(), Ok(400), "the client's session broke");
}
