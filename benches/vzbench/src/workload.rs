//! What the migration benchmark runs: containers with the memory workload (memhog.c, built
//! static and copied into the busybox template's private area) and an echo server, and a TCP
//! client in the lab's client namespace that sends a small message every 10 ms and records the
//! longest wait between two echoes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
pub use ferry_testbed::in_netns;
use ferry_testbed::Lab;

/// Builds memhog (static, so it runs in the busybox container).
pub fn build_memhog(dir: &Path) -> Result<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("memhog.c");
    let out = dir.join("memhog");
    let st = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .context("running cc (scripts/setup.sh installs gcc and libc6-dev)")?;
    if !st.success() {
        bail!("building {} failed", src.display());
    }
    Ok(out)
}

/// Runs a ferry binary for a lab host (in its namespace, with its root); stdout, or an error
/// with stderr.
pub fn on(lab: &Lab, host: &str, prog: &Path, args: &[&str]) -> Result<String> {
    on_with(lab, host, prog, args, &[])
}

/// [`on`], with more variables in the program's environment.
pub fn on_with(lab: &Lab, host: &str, prog: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let h = lab.host(host);
    let out = Lab::cmd(&h.netns, prog)
        .arg("--root-dir")
        .arg(&h.root)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .with_context(|| format!("running {}", prog.display()))?;
    if !out.status.success() {
        bail!(
            "{} {args:?} on {host}: {}",
            prog.file_name().unwrap_or_default().to_string_lossy(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// memhog's load: MiB held, percent of its pages dirtied per second.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub mib: u64,
    pub dirty: f64,
}

/// A fresh container on hostA (whatever had its CTID removed first), as `container`.
pub fn fresh_container(lab: &Lab, vzctl: &Path, memhog: &Path, ctid: &str, ip: &str, load: Load) -> Result<()> {
    remove(lab, vzctl, ctid);
    // Privileged: the baselines run CRIU by hand with ferry's options alone, which a container
    // with a user namespace does not satisfy (ferry also makes its links and hands it its
    // console at restore). The userns family compares the two kinds.
    container(lab, "hostA", vzctl, memhog, ctid, ip, load, false)
}

/// A container on `host` with memhog under `load` and an echo server on port 7; returns once
/// the memory is filled.
/// `userns`: the container has a user namespace of its own (else privileged).
#[allow(clippy::too_many_arguments)]
pub fn container(
    lab: &Lab,
    host: &str,
    vzctl: &Path,
    memhog: &Path,
    ctid: &str,
    ip: &str,
    load: Load,
    userns: bool,
) -> Result<()> {
    let Load { mib, dirty } = load;
    if mib == 0 {
        bail!("memhog holds at least 1 MiB");
    }
    let u = if userns { "yes" } else { "no" };
    on(lab, host, vzctl, &["create", ctid, "--ipadd", ip, "--userns", u])?;
    // Room for memhog beyond the basic sample's 1 GiB.
    let ram = format!("{}M", mib + 512);
    on(lab, host, vzctl, &["set", ctid, "--ram", &ram, "--save"])?;
    let private = lab.host(host).root.join(format!("vz/private/{ctid}"));
    std::fs::copy(memhog, private.join("bin/memhog")).context("copying memhog into the container")?;
    on(lab, host, vzctl, &["start", ctid])?;
    on(
        lab,
        host,
        vzctl,
        &[
            "exec",
            ctid,
            &format!(
                "nc -ll -p 7 -e cat </dev/null >/dev/null 2>&1 & /bin/memhog {mib} {dirty} 3600 /tmp/ready </dev/null >/dev/null 2>&1 &"
            ),
        ],
    )?;
    let t0 = Instant::now();
    while !private.join("tmp/ready").exists() {
        if t0.elapsed() > Duration::from_secs(300) {
            bail!("memhog did not fill {mib} MiB in 300 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Mounts a tmpfs of `mib` MiB on `dir` (made if missing): where the benchmarks keep images.
pub fn mount_tmpfs(dir: &Path, mib: u64) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
        .arg(dir)
        .status()?;
    if !st.success() {
        bail!("mounting a tmpfs on {}", dir.display());
    }
    Ok(())
}

/// Stops and removes a container wherever it is (ignoring what is not there).
pub fn remove(lab: &Lab, vzctl: &Path, ctid: &str) {
    for h in &lab.hosts {
        let _ = on(lab, &h.name, vzctl, &["stop", "--fast", ctid]);
        if h.root.join(format!("etc/vz/conf/{ctid}.conf")).exists() {
            // A container dumped or restored by CRIU by hand is left mounted (vzctl destroy
            // refuses a mounted one); umount of an unmounted one fails harmlessly.
            let _ = on(lab, &h.name, vzctl, &["umount", ctid]);
            if let Err(e) = on(lab, &h.name, vzctl, &["destroy", ctid]) {
                eprintln!("    removing {ctid} on {}: {e:#}", h.name);
            }
        }
        let _ = std::fs::remove_dir_all(h.root.join(format!("vz/dump/{ctid}")));
    }
}

/// The echo client: a message every 10 ms until stopped (at most `max` long).
pub struct Client {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<Gaps>>,
}

/// What the client saw.
#[derive(Debug, Clone, Default)]
pub struct Gaps {
    pub echoes: usize,
    /// The longest wait between two echoes, in ms.
    pub longest_ms: f64,
    /// (seconds since the start, gap in ms) of every echo that waited over 50 ms.
    pub timeline: Vec<(f64, f64)>,
    /// (seconds since the start, gap in ms) of every echo.
    pub all: Vec<(f64, f64)>,
}

impl Client {
    pub fn start(lab: &Lab, addr: &str, max: Duration) -> Result<Client> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let addr: std::net::SocketAddr = addr.parse()?;
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let handle = in_netns(&lab.client, move || -> Result<Gaps> {
            let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            let t0 = Instant::now();
            let mut last = Instant::now();
            let mut g = Gaps::default();
            let msg = b"ping\n";
            let mut back = [0u8; 5];
            let mut told = false;
            while !flag.load(Ordering::SeqCst) && t0.elapsed() < max {
                let sent = Instant::now();
                s.write_all(msg)?;
                s.read_exact(&mut back).map_err(|e| anyhow!("echo {}: {e}", g.echoes))?;
                let now = Instant::now();
                let gap = now.duration_since(last).as_secs_f64() * 1000.0;
                if g.echoes > 0 {
                    g.all.push((now.duration_since(t0).as_secs_f64(), gap));
                    g.longest_ms = g.longest_ms.max(gap);
                    if gap > 50.0 {
                        g.timeline.push((now.duration_since(t0).as_secs_f64(), gap));
                    }
                }
                g.echoes += 1;
                last = now;
                if !told {
                    told = true;
                    ready_tx.send(()).ok();
                }
                let spent = sent.elapsed();
                if spent < Duration::from_millis(10) {
                    std::thread::sleep(Duration::from_millis(10) - spent);
                }
            }
            Ok(g)
        });
        ready
            .recv_timeout(Duration::from_secs(15))
            .map_err(|_| anyhow!("the echo client got no first echo from {addr}"))?;
        Ok(Client { stop, handle })
    }

    pub fn finish(self) -> Result<Gaps> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().map_err(|_| anyhow!("the echo client panicked"))?
    }
}
