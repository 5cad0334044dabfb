//! A testbed lab whose hosts pin each other and run agents, for the migration and evacuation
//! tests; and a lab of one host without agents, for tests that need a network only.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ferry_testbed::agents::Agents;
use ferry_testbed::{Lab, LabConfig};

use super::*;

/// A lab of one host, hostA, and the client, without agents.
pub fn single(tag: &str) -> Lab {
    require_root();
    let mut cfg = LabConfig::new(&format!("{tag}{}", std::process::id() % 100000));
    cfg.base = "/tmp/ferry-lab-tests".into();
    cfg.hosts = vec!["hostA".into()];
    Lab::up(&cfg).expect("bringing the lab up")
}

/// `vzctl ARGS` on a lab's hostA, in its network namespace.
pub fn vz(lab: &Lab, args: &[&str]) -> Out {
    let h = lab.host("hostA");
    let mut c = Lab::cmd(&h.netns, env!("CARGO_BIN_EXE_vzctl"));
    c.arg("--root-dir").arg(&h.root).args(args);
    run(c, Duration::from_secs(120))
}

/// [`vz`] that must succeed; returns its stdout.
pub fn vz_ok(lab: &Lab, args: &[&str]) -> String {
    let o = vz(lab, args);
    assert_eq!(o.code, 0, "vzctl {args:?}: {o:?}");
    o.stdout
}

/// A lab whose hosts pin each other and run agents.
pub struct MigLab {
    // Declared first, so the agents stop before the lab goes down.
    pub agents: Agents,
    pub lab: Lab,
}

impl MigLab {
    pub fn new(tag: &str, hosts: &[&str], shape: Option<&str>) -> Self {
        require_root();
        // Tests run at once in one process: two labs with one tag would share namespaces.
        static TAGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let mut tags = TAGS.lock().unwrap();
        assert!(!tags.contains(&tag.to_string()), "lab tag {tag} used twice");
        tags.push(tag.to_string());
        drop(tags);
        let mut cfg = LabConfig::new(&format!("{tag}{}", std::process::id() % 100000));
        cfg.base = "/tmp/ferry-lab-tests".into();
        cfg.hosts = hosts.iter().map(|h| h.to_string()).collect();
        cfg.shape = shape.map(str::to_string);
        let lab = Lab::up(&cfg).unwrap();
        let agents = Agents::start(&lab, hosts, Path::new(env!("CARGO_BIN_EXE_vzagentd"))).unwrap();
        for h in hosts {
            assert!(lab.host(h).root.join("vz/run/vzagentd.pid").exists());
        }
        Self { agents, lab }
    }

    pub fn agentctl(&self, host: &str, args: &[&str]) -> Out {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vzagentd"));
        c.arg("--root-dir").arg(&self.lab.host(host).root).args(args);
        run(c, Duration::from_secs(30))
    }

    pub fn start_agent(&mut self, host: &str) {
        self.agents.start_one(&self.lab, host).unwrap();
    }

    pub fn start_agent_env(&mut self, host: &str, env: &[(&str, &str)]) {
        self.agents.start_one_env(&self.lab, host, env).unwrap();
    }

    pub fn agent_exited(&mut self, host: &str) -> bool {
        self.agents.exited(host)
    }

    pub fn kill_agent(&mut self, host: &str) {
        self.agents.kill(host);
    }

    pub fn agent_log(&self, host: &str) -> String {
        self.agents.log(host)
    }

    pub fn vz(&self, host: &str, args: &[&str]) -> Out {
        let h = self.lab.host(host);
        let mut c = Lab::cmd(&h.netns, env!("CARGO_BIN_EXE_vzctl"));
        c.arg("--root-dir").arg(&h.root).args(args);
        run(c, Duration::from_secs(120))
    }

    pub fn vz_ok(&self, host: &str, args: &[&str]) -> String {
        let o = self.vz(host, args);
        assert_eq!(o.code, 0, "vzctl {args:?} on {host}: {o:?}");
        o.stdout
    }

    pub fn migrate_cmd(&self, from: &str, args: &[&str]) -> Command {
        let h = self.lab.host(from);
        let mut c = Lab::cmd(&h.netns, env!("CARGO_BIN_EXE_vzmigrate"));
        c.arg("--root-dir").arg(&h.root).args(args);
        c
    }

    pub fn migrate(&self, from: &str, args: &[&str]) -> Out {
        run(self.migrate_cmd(from, args), Duration::from_secs(180))
    }

    pub fn status(&self, host: &str, ctid: &str) -> String {
        self.vz(host, &["status", ctid]).stdout.trim().to_string()
    }

    pub fn private(&self, host: &str, ctid: &str) -> std::path::PathBuf {
        self.lab.host(host).root.join(format!("vz/private/{ctid}"))
    }

    /// The host pid of a running container's init (from its run state).
    pub fn init_pid(&self, host: &str, ctid: &str) -> i64 {
        let p = self.lab.host(host).root.join(format!("vz/run/{ctid}.json"));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        v["init_pid"].as_i64().unwrap()
    }
}
