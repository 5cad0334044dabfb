//! Host agents on a lab: every host's key pinned on every other host (`vzagentd trust add`),
//! and `vzagentd run --listen` on each host's address inside its namespace, logging to
//! `BASE/agent-HOST.log`. The agents are killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::Lab;

pub struct Agents {
    vzagentd: PathBuf,
    base: PathBuf,
    children: Vec<(String, Child)>,
}

impl Agents {
    /// Pins every pair of `hosts` and starts an agent on each.
    pub fn start(lab: &Lab, hosts: &[&str], vzagentd: &Path) -> Result<Agents> {
        let mut me = Agents {
            vzagentd: vzagentd.to_path_buf(),
            base: lab.base.clone(),
            children: Vec::new(),
        };
        let mut fps = Vec::new();
        for h in hosts {
            let fp = me.ctl(lab, h, &["fingerprint"])?;
            fps.push((h.to_string(), lab.host(h).addr.clone(), fp.trim().to_string()));
        }
        for h in hosts {
            for (other, addr, fp) in &fps {
                if other != h {
                    me.ctl(lab, h, &["trust", "add", other, addr, fp])?;
                }
            }
            me.start_one(lab, h)?;
        }
        Ok(me)
    }

    /// Runs `vzagentd ARGS` for a host; its stdout, or an error with its stderr.
    pub fn ctl(&self, lab: &Lab, host: &str, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.vzagentd)
            .arg("--root-dir")
            .arg(&lab.host(host).root)
            .args(args)
            .output()
            .with_context(|| format!("running {}", self.vzagentd.display()))?;
        if !out.status.success() {
            bail!(
                "vzagentd {args:?} on {host}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn log_path(&self, host: &str) -> PathBuf {
        self.base.join(format!("agent-{host}.log"))
    }

    pub fn log(&self, host: &str) -> String {
        std::fs::read_to_string(self.log_path(host)).unwrap_or_default()
    }

    /// Starts (or restarts) one host's agent and waits until it listens.
    pub fn start_one(&mut self, lab: &Lab, host: &str) -> Result<()> {
        self.start_one_env(lab, host, &[])
    }

    /// As [`Agents::start_one`], with variables added to the agent's environment (the tests'
    /// fault points, `FERRY_FAULT`).
    pub fn start_one_env(&mut self, lab: &Lab, host: &str, env: &[(&str, &str)]) -> Result<()> {
        let h = lab.host(host);
        let log = std::fs::File::create(self.log_path(host))?;
        let child = Lab::cmd(&h.netns, &self.vzagentd)
            .arg("--root-dir")
            .arg(&h.root)
            .args(["run", "--tick", "5", "--listen", &h.addr])
            .envs(env.iter().copied())
            .stderr(log)
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting the agent of {host}"))?;
        self.children.push((host.to_string(), child));
        let t0 = Instant::now();
        while !self.log(host).contains("listening") {
            if t0.elapsed() > Duration::from_secs(10) {
                bail!("the agent of {host} did not listen in 10 s: {}", self.log(host));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Has the agent last started on `host` exited (on its own)?
    pub fn exited(&mut self, host: &str) -> bool {
        self.children
            .iter_mut()
            .rev()
            .find(|(h, _)| h == host)
            .is_some_and(|(_, c)| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Kills one host's agent (SIGKILL: as in a crash).
    pub fn kill(&mut self, host: &str) {
        self.children.retain_mut(|(h, c)| {
            if h == host {
                let _ = c.kill();
                let _ = c.wait();
                false
            } else {
                true
            }
        });
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
