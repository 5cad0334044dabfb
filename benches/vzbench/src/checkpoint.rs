//! Checkpoint: `vzctl chkpnt` and `vzctl restore` of a container holding M MiB (memhog, idle:
//! no pages dirtied) against CRIU's own command line making the same dump and restore of the
//! same kind of container, on one lab host, images on tmpfs for both, alternated run by run.
//!
//! CRIU by hand runs with exactly the options ferry gives it (`Runtime::chkpnt_dump_opts` and
//! `chkpnt_restore_opts`, rendered by `criu::Opts::cli_args`): the container's root, TCP
//! connections, file locks, its cgroups, its link recreated, its console pty passed in. What
//! `vzctl` does beyond CRIU is the difference measured: the lock, the freeze before the dump,
//! a snapshot of the private area, the archive (compressed, hashed, synced), and at restore
//! the archive checked and unpacked, cgroup limits, the console logger and the network.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ferry_testbed::{Lab, LabConfig};

use crate::stats::{at_most, Spread};
use crate::workload::{fresh_container, on, remove, Load};
use crate::{bin, Section};

const CTID: &str = "302";
const IP: &str = "198.18.0.52";

#[derive(Debug, Clone)]
pub struct Config {
    pub sizes: Vec<u64>,
    pub runs: usize,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
struct Sample {
    /// ms
    dump: f64,
    restore: f64,
}

struct Bench {
    lab: Lab,
    vzctl: PathBuf,
    memhog: PathBuf,
    criu: PathBuf,
    tmpfs: PathBuf,
}

impl Drop for Bench {
    fn drop(&mut self) {
        remove(&self.lab, &self.vzctl, CTID);
        let _ = Command::new("umount").arg(&self.tmpfs).status();
    }
}

/// A pty pair: the master, and the slave that stands in for the container's console.
fn pty() -> Result<(OwnedFd, OwnedFd)> {
    // SAFETY: plain libc calls on descriptors this function owns.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if m < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let master = OwnedFd::from_raw_fd(m);
        if libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let mut name = [0 as libc::c_char; 64];
        if libc::ptsname_r(m, name.as_mut_ptr(), name.len()) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let s = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if s < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok((master, OwnedFd::from_raw_fd(s)))
    }
}

impl Bench {
    fn up(max_mib: u64, memhog: &Path) -> Result<Bench> {
        let mut cfg = LabConfig::new(&format!("bc{}", std::process::id() % 100000));
        cfg.base = "/tmp/ferry-bench".into();
        cfg.hosts = vec!["hostA".into()];
        let lab = Lab::up(&cfg)?;
        let tmpfs = lab.host("hostA").root.join("vz/dump");
        crate::workload::mount_tmpfs(&tmpfs, 2 * max_mib + 512)?;
        let criu = ferry::criu::Criu::locate()
            .map_err(|e| anyhow!("{e} (scripts/setup.sh installs CRIU)"))?
            .bin;
        Ok(Bench {
            lab,
            vzctl: bin("vzctl")?,
            memhog: memhog.to_path_buf(),
            criu,
            tmpfs,
        })
    }

    fn setup(&self, mib: u64) -> Result<()> {
        fresh_container(&self.lab, &self.vzctl, &self.memhog, CTID, IP, Load { mib, dirty: 0.0 })
    }

    fn ms(t: Instant) -> f64 {
        t.elapsed().as_secs_f64() * 1000.0
    }

    fn ferry(&self, mib: u64) -> Result<Sample> {
        self.setup(mib)?;
        let t = Instant::now();
        on(&self.lab, "hostA", &self.vzctl, &["chkpnt", CTID])?;
        let dump = Self::ms(t);
        let t = Instant::now();
        on(&self.lab, "hostA", &self.vzctl, &["restore", CTID])?;
        let restore = Self::ms(t);
        let st = on(&self.lab, "hostA", &self.vzctl, &["status", CTID])?;
        if !st.contains("running") {
            bail!("after vzctl restore the container is not running: {st}");
        }
        remove(&self.lab, &self.vzctl, CTID);
        Ok(Sample { dump, restore })
    }

    fn criu(&self, args: &[String], images: &Path, console: Option<&OwnedFd>) -> Result<()> {
        let mut c = Lab::cmd(&self.lab.host("hostA").netns, &self.criu);
        c.args(args);
        if let Some(fd) = console {
            let raw = fd.as_raw_fd();
            // SAFETY: dup2 in the child before exec; the copy at 3 has no close-on-exec.
            unsafe {
                c.pre_exec(move || {
                    if libc::dup2(raw, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let out = c.output().context("running criu")?;
        if !out.status.success() {
            let log = if args.iter().any(|a| a == "dump") {
                "dump.log"
            } else {
                "restore.log"
            };
            let errors = ferry::criu::log_errors(&images.join(log), 5);
            bail!(
                "criu {}: {} {errors:?}",
                args.first().map(String::as_str).unwrap_or(""),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn link_exists(&self, link: &str) -> bool {
        Lab::cmd(&self.lab.host("hostA").netns, "ip")
            .args(["link", "show", link])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// The same dump and restore by CRIU's command line.
    fn by_hand(&self, mib: u64) -> Result<Sample> {
        self.setup(mib)?;
        let h = self.lab.host("hostA");
        let host = ferry::host::Host::open(ferry::layout::HostLayout::new(&h.root))?;
        let rt = ferry::runtime::Runtime::new(host);
        let ctid: ferry::ctid::Ctid = CTID.parse().map_err(|e| anyhow!("{e}"))?;
        let images = self.tmpfs.join("by-hand");
        let _ = std::fs::remove_dir_all(&images);
        std::fs::create_dir_all(&images)?;
        let d = |o: ferry::criu::Opts, op: &str, extra: &[&str]| -> Vec<String> {
            let mut a: Vec<String> = vec![op.into(), "-D".into(), images.display().to_string()];
            a.extend(["-o".into(), format!("{op}.log"), "-v4".into()]);
            a.extend(extra.iter().map(|s| s.to_string()));
            a.extend(o.cli_args());
            a
        };
        let dump_opts = rt.chkpnt_dump_opts(ctid)?;
        let console = dump_opts.external.iter().find(|e| e.starts_with("tty[")).cloned();
        let t = Instant::now();
        self.criu(&d(dump_opts, "dump", &[]), &images, None)?;
        let dump = Self::ms(t);
        // The dumped tree's network namespace goes away asynchronously, and its link with it;
        // the restore recreates the link under the same name.
        let link = ferry::net::venet_host_ifname(ctid.get());
        let t = Instant::now();
        while self.link_exists(&link) {
            if t.elapsed() > Duration::from_secs(10) {
                bail!("{link} is still there 10 s after the dump");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (_master, slave) = pty()?;
        let ropts = rt.chkpnt_restore_opts(ctid, console.as_deref(), 3)?;
        let pidfile = images.join("restored.pid");
        let pf = pidfile.display().to_string();
        let t = Instant::now();
        self.criu(&d(ropts, "restore", &["-d", "--pidfile", &pf]), &images, Some(&slave))?;
        let restore = Self::ms(t);
        let pid: i32 = std::fs::read_to_string(&pidfile)?.trim().parse()?;
        let alive = Path::new(&format!("/proc/{pid}")).exists();
        // The restored tree is not ferry's: end it (its pid namespace's init) before the
        // container is removed.
        // SAFETY: kill on the pid CRIU wrote.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::remove_dir_all(&images);
        remove(&self.lab, &self.vzctl, CTID);
        if !alive {
            bail!("criu restore returned but the restored init ({pid}) is not running");
        }
        Ok(Sample { dump, restore })
    }
}

pub fn run(cfg: &Config) -> Result<Section> {
    let work = std::env::temp_dir().join(format!("vzbench-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let memhog = crate::workload::build_memhog(&work)?;
    let max = cfg.sizes.iter().copied().max().unwrap_or(16);
    let bench = Bench::up(max, &memhog)?;
    let mut md = String::from(
        "## Checkpoint\n\nA busybox container holding M MiB (memhog, no pages dirtied), checkpointed and restored on one \
         host by `vzctl chkpnt` + `vzctl restore` and by CRIU's command line with the same options (`criu dump`, \
         `criu restore -d`: the options ferry passes over RPC, rendered as flags), alternated run by run, images on \
         tmpfs for both. `vzctl` does more than CRIU: the freeze before the dump, a snapshot of the private area, \
         the archive (zstd, BLAKE3, fsync), and at restore the archive checked and unpacked, limits, console and \
         network. Times in ms; medians [min-max].\n\n\
         | M | vzctl chkpnt | criu dump | chkpnt / dump | vzctl restore | criu restore | restore / restore |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let mut json = Vec::new();
    let mut targets = Vec::new();
    for &mib in &cfg.sizes {
        let (mut fe, mut cl) = (Vec::new(), Vec::new());
        for run in 0..cfg.runs {
            let order: [&str; 2] = if run % 2 == 0 {
                ["ferry", "criu"]
            } else {
                ["criu", "ferry"]
            };
            for m in order {
                let s = if m == "ferry" {
                    bench.ferry(mib).context("vzctl chkpnt/restore")?
                } else {
                    bench.by_hand(mib).context("criu by hand")?
                };
                eprintln!(
                    "    {mib} MiB run {}: {m} dump {:.0} ms, restore {:.0} ms",
                    run + 1,
                    s.dump,
                    s.restore
                );
                if m == "ferry" {
                    fe.push(s);
                } else {
                    cl.push(s);
                }
            }
        }
        let sp = |v: &[Sample], f: fn(&Sample) -> f64| Spread::of(&v.iter().map(f).collect::<Vec<_>>());
        let ratio =
            |f: fn(&Sample) -> f64| Spread::of(&fe.iter().zip(&cl).map(|(a, b)| f(a) / f(b)).collect::<Vec<_>>());
        let (rd, rr) = (ratio(|s| s.dump), ratio(|s| s.restore));
        md.push_str(&format!(
            "| {mib} | {} | {} | {} | {} | {} | {} |\n",
            sp(&fe, |s| s.dump).show(0),
            sp(&cl, |s| s.dump).show(0),
            rd.show(2),
            sp(&fe, |s| s.restore).show(0),
            sp(&cl, |s| s.restore).show(0),
            rr.show(2),
        ));
        targets.push(at_most(
            &format!("{mib} MiB: vzctl chkpnt within 10% of criu dump"),
            rd.median,
            1.1,
        ));
        targets.push(at_most(
            &format!("{mib} MiB: vzctl restore within 10% of criu restore"),
            rr.median,
            1.1,
        ));
        json.push(serde_json::json!({
            "mib": mib, "ferry": fe, "criu": cl, "chkpnt_over_dump": rd, "restore_over_restore": rr,
        }));
    }
    drop(bench);
    let _ = std::fs::remove_dir_all(&work);
    md.push('\n');
    Ok(Section::with_targets(md, &targets, json))
}
