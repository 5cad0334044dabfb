//! A testbed lab whose hosts pin each other and run agents, for the migration and evacuation
//! tests.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ferry_testbed::{Lab, LabConfig};

use super::*;

/// A lab whose hosts pin each other and run agents.
pub struct MigLab {
    pub lab: Lab,
    pub agents: Vec<(String, Child)>,
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
        let mut me = Self { lab, agents: vec![] };
        let fps: Vec<(String, String, String)> = hosts
            .iter()
            .map(|h| {
                let host = me.lab.host(h);
                let fp = me.agentctl(h, &["fingerprint"]).stdout.trim().to_string();
                (h.to_string(), host.addr.clone(), fp)
            })
            .collect();
        for h in hosts {
            for (other, addr, fp) in &fps {
                if other != h {
                    assert_eq!(me.agentctl(h, &["trust", "add", other, addr, fp]).code, 0);
                }
            }
            me.start_agent(h);
        }
        me
    }

    pub fn agentctl(&self, host: &str, args: &[&str]) -> Out {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vzagentd"));
        c.arg("--root-dir").arg(&self.lab.host(host).root).args(args);
        run(c, Duration::from_secs(30))
    }

    pub fn start_agent(&mut self, host: &str) {
        let h = self.lab.host(host);
        let log = std::fs::File::create(self.lab.base.join(format!("agent-{host}.log"))).unwrap();
        let child = Lab::cmd(&h.netns, env!("CARGO_BIN_EXE_vzagentd"))
            .arg("--root-dir")
            .arg(&h.root)
            .args(["run", "--tick", "5", "--listen", &h.addr])
            .stderr(log)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid_file = h.root.join("vz/run/vzagentd.pid");
        wait_until("the agent to listen", Duration::from_secs(10), || {
            std::fs::read_to_string(self.lab.base.join(format!("agent-{host}.log")))
                .unwrap_or_default()
                .contains("listening")
        });
        assert!(pid_file.exists());
        self.agents.push((host.to_string(), child));
    }

    pub fn kill_agent(&mut self, host: &str) {
        if let Some(i) = self.agents.iter().position(|(h, _)| h == host) {
            let (_, mut c) = self.agents.remove(i);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn agent_log(&self, host: &str) -> String {
        std::fs::read_to_string(self.lab.base.join(format!("agent-{host}.log"))).unwrap_or_default()
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
}

impl Drop for MigLab {
    fn drop(&mut self) {
        for (_, c) in &mut self.agents {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
