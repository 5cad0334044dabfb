//! Root-only: scheduled checkpoints by vzagentd.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn scheduled_checkpoints_chain_prune_and_restore() {
    let h = TestHost::new("agent");
    h.vzctl(&["create", "501"]).ok();
    h.vzctl(&["start", "501"]).ok();
    h.vzctl(&[
        "set",
        "501",
        "--checkpoint-interval",
        "2s",
        "--checkpoint-keep",
        "3",
        "--save",
    ])
    .ok();
    assert!(std::fs::read_to_string(h.conf("501"))
        .unwrap()
        .contains("CHECKPOINT_INTERVAL=\"2\""));
    // A container that cannot be checkpointed (a process holds a host file): logged, retried,
    // and the others go on.
    h.vzctl(&["create", "502"]).ok();
    h.vzctl(&["start", "502"]).ok();
    h.vzctl(&["set", "502", "--checkpoint-interval", "2s", "--save"]).ok();
    let mut c = Command::new(env!("CARGO_BIN_EXE_vzctl"));
    c.arg("--root-dir")
        .arg(h.root())
        .args(["exec", "502", "sleep 1000 &"])
        .stdout(std::fs::File::create(h.root().join("held")).unwrap())
        .stderr(Stdio::null());
    assert!(c.status().unwrap().success());
    assert_eq!(h.vzctl(&["set", "501", "--checkpoint-interval", "soon"]).code, 21);

    let log_path = h.root().join("agent.log");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_vzagentd"))
        .arg("--root-dir")
        .arg(h.root())
        .args(["run", "--tick", "1"])
        .stderr(std::fs::File::create(&log_path).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = h.root().join("vz/run/vzagentd.pid");
    wait_until("the pid file", Duration::from_secs(10), || pid_file.exists());
    // A second agent on the same host is refused.
    let mut c2 = Command::new(env!("CARGO_BIN_EXE_vzagentd"));
    c2.arg("--root-dir").arg(h.root()).args(["run"]);
    let o = run(c2, Duration::from_secs(10));
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("already running"), "{o:?}");
    // Checkpoints every 2 s, chained three to a level-0 one: the first chain is pruned once
    // the second holds three: at the sixth, about 12 s after the start (it once took longer
    // than the fixed 11 s this test used to wait).
    wait_until(
        "the agent to prune a checkpoint of 501",
        Duration::from_secs(90),
        || {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            log.contains("pruned checkpoint 501") && log.contains("checkpoint of 502 failed")
        },
    );
    // SAFETY: asking the agent to stop.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let status = agent.wait().unwrap();
    assert!(status.success(), "vzagentd exited with {status:?}");
    assert!(!pid_file.exists(), "pid file left behind");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.lines()
            .filter(|l| l.contains("checkpoint 501 ") && l.contains("frozen"))
            .count()
            >= 4,
        "{log}"
    );
    assert!(log.contains("checkpoint of 502 failed"), "{log}");
    assert!(log.contains("pruned checkpoint 501"), "{log}");
    assert!(log.trim_end().ends_with("stopped"), "{log}");

    let list: serde_json::Value =
        serde_json::from_str(&h.vzctl(&["checkpoints", "501", "--json"]).ok().stdout).unwrap();
    let list = list.as_array().unwrap().clone();
    assert!((3..=5).contains(&list.len()), "retention kept {}", list.len());
    for c in &list {
        if let Some(p) = c["parent"].as_str() {
            assert!(
                list.iter().any(|x| x["id"] == p),
                "checkpoint {} lost its parent {p}",
                c["id"]
            );
        }
    }
    // Pruning left nothing behind: the checkpoints listed (directories) and their snapshot
    // lists are all that vz/dump holds.
    let mut on_disk: Vec<String> = std::fs::read_dir(h.root().join("vz/dump/501"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut want: Vec<String> = list
        .iter()
        .flat_map(|c| {
            let id = c["id"].as_str().unwrap();
            [format!("{id}.ckpt"), format!("{id}.snar")]
        })
        .collect();
    want.sort();
    assert_eq!(on_disk, want);
    for id in [
        list.first().unwrap()["id"].as_str().unwrap(),
        list.last().unwrap()["id"].as_str().unwrap(),
    ] {
        h.vzctl(&["stop", "501", "--fast"]).ok();
        h.vzctl(&["restore", "501", "--checkpoint", id]).ok();
        assert_eq!(h.exec("501", "echo back").trim(), "back");
    }
    h.vzctl(&["stop", "501", "--fast"]).ok();
    h.vzctl(&["stop", "502", "--fast"]).ok();
}
