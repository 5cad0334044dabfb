//! Root-only, on the testbed: live and offline migration between agents, and the ways one
//! can fail.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use ferry_testbed::{Lab, LabConfig};

/// A lab whose hosts pin each other and run agents.
struct MigLab {
    lab: Lab,
    agents: Vec<(String, Child)>,
}

impl MigLab {
    fn new(tag: &str, hosts: &[&str], shape: Option<&str>) -> Self {
        require_root();
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

    fn agentctl(&self, host: &str, args: &[&str]) -> Out {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vzagentd"));
        c.arg("--root-dir").arg(&self.lab.host(host).root).args(args);
        run(c, Duration::from_secs(30))
    }

    fn start_agent(&mut self, host: &str) {
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

    fn kill_agent(&mut self, host: &str) {
        if let Some(i) = self.agents.iter().position(|(h, _)| h == host) {
            let (_, mut c) = self.agents.remove(i);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn agent_log(&self, host: &str) -> String {
        std::fs::read_to_string(self.lab.base.join(format!("agent-{host}.log"))).unwrap_or_default()
    }

    fn vz(&self, host: &str, args: &[&str]) -> Out {
        let h = self.lab.host(host);
        let mut c = Lab::cmd(&h.netns, env!("CARGO_BIN_EXE_vzctl"));
        c.arg("--root-dir").arg(&h.root).args(args);
        run(c, Duration::from_secs(120))
    }

    fn vz_ok(&self, host: &str, args: &[&str]) -> String {
        let o = self.vz(host, args);
        assert_eq!(o.code, 0, "vzctl {args:?} on {host}: {o:?}");
        o.stdout
    }

    fn migrate_cmd(&self, from: &str, args: &[&str]) -> Command {
        let h = self.lab.host(from);
        let mut c = Lab::cmd(&h.netns, env!("CARGO_BIN_EXE_vzmigrate"));
        c.arg("--root-dir").arg(&h.root).args(args);
        c
    }

    fn migrate(&self, from: &str, args: &[&str]) -> Out {
        run(self.migrate_cmd(from, args), Duration::from_secs(180))
    }

    fn status(&self, host: &str, ctid: &str) -> String {
        self.vz(host, &["status", ctid]).stdout.trim().to_string()
    }

    fn private(&self, host: &str, ctid: &str) -> std::path::PathBuf {
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

/// An echo session from the client namespace on its own thread: `n` lines, each checked.
fn echo_session(
    netns: String,
    addr: &'static str,
    n: usize,
    gap: Duration,
) -> std::thread::JoinHandle<Result<usize, String>> {
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{netns}")).map_err(|e| e.to_string())?;
        // SAFETY: setns of this thread only (network namespaces are per thread).
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns: {}", std::io::Error::last_os_error()));
        }
        let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(10))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        for i in 0..n {
            let line = format!("message {i} of {n}\n");
            s.write_all(line.as_bytes()).map_err(|e| format!("write {i}: {e}"))?;
            let mut got = vec![0u8; line.len()];
            s.read_exact(&mut got).map_err(|e| format!("read {i}: {e}"))?;
            if got != line.as_bytes() {
                return Err(format!("echo {i} came back as {:?}", String::from_utf8_lossy(&got)));
            }
            std::thread::sleep(gap);
        }
        Ok(n)
    })
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
    m.vz_ok(
        host,
        &[
            "exec",
            "101",
            "(i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done) </dev/null >/dev/null 2>&1 &",
        ],
    );
}

fn procs(m: &MigLab, host: &str) -> Vec<String> {
    m.vz_ok(host, &["exec", "101", "ps -o pid,args"])
        .lines()
        .filter(|l| l.contains("nc -ll") || l.contains("while") || l.contains("init"))
        .map(str::to_string)
        .collect()
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

    // And back, keeping the private area on hostB (-r no) to compare the trees.
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
    assert_eq!(m.status("hostA", "101"), "CTID 101 exist mounted running");
    assert_eq!(procs(&m, "hostA"), pids, "pids changed on the way back");
    assert_eq!(session.join().unwrap(), Ok(300), "the client's session broke");
    // The tree on hostB as it was when frozen equals the tree now on hostA (but for the
    // counter file, which the running container has rewritten since).
    let strip = |v: Vec<String>| {
        v.into_iter()
            .filter(|l| !l.starts_with("tmp/count "))
            .collect::<Vec<_>>()
    };
    let a = strip(ferry::migrate::fs::manifest(&m.private("hostA", "101")).unwrap());
    let b = strip(ferry::migrate::fs::manifest(&m.private("hostB", "101")).unwrap());
    assert_eq!(a, b, "the private areas differ");
    assert!(m.agent_log("hostA").contains("committed: the container is ours"));
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
    assert_eq!(o.code, 20, "{o:?}");
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
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("already exists"), "{o:?}");
    assert_eq!(m.status("hostC", "101"), "CTID 101 exist unmounted down");
    // --check-only on a good plan changes nothing.
    let o = m.migrate("hostC", &["--check-only", "hostB", "102"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("can be migrated"), "{o:?}");
    assert_eq!(m.status("hostB", "102"), "CTID 102 deleted unmounted down");
    assert!(!m.private("hostB", "102").exists(), "--check-only left files behind");
    m.kill_agent("hostA");
}
