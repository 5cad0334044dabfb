//! Checkpoint: `vzctl chkpnt` and `vzctl restore` of a container holding M MiB (memhog, idle:
//! no pages dirtied) against CRIU's own command line making the same dump and restore of the
//! same kind of container, and against Podman checkpointing and restoring a container of the
//! same image running the same program, on one lab host, images on tmpfs for all three,
//! alternated run by run. Local checkpoints (each tool's own store) and export/import (one
//! file carried elsewhere: `vzctl chkpnt --dumpfile` + `vzctl restore --dumpfile` on a host
//! without the container, `podman container checkpoint -e` + `podman container restore -i`).
//!
//! CRIU by hand runs with exactly the options ferry gives it (`Runtime::chkpnt_dump_opts` and
//! `chkpnt_restore_opts`, rendered by `criu::Opts::cli_args`): the container's root, TCP
//! connections, file locks, its cgroups, its link recreated, its console pty passed in. What
//! `vzctl` does beyond CRIU is the difference measured: the lock, the freeze before the dump,
//! a snapshot of the private area, the checkpoint's hashes, and at restore the checks, cgroup
//! limits, the console logger and the network.
//!
//! Podman is Debian's (4.3) with runc and this host's CRIU (Debian's crun has no CRIU), as a
//! user would run it here (docs/benchmarks.md): its storage on a tmpfs of its own, its
//! containers on a bridge of 198.18.0.0/15 addresses inside the lab host's namespace.

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

/// Podman's image and container names, and the bridge its container is on.
const PODMAN_IMAGE: &str = "ferry-bench-busybox";
const PODMAN_CT: &str = "ferry-bench-ckpt";
const PODMAN_NET: &str = "ferry-bench";
const PODMAN_SUBNET: &str = "198.18.200.0/24";

/// Podman as a user would run it here, with its own storage and network configuration.
struct Podman {
    netns: String,
    base: PathBuf,
    criu: PathBuf,
}

impl Podman {
    /// Its storage on a tmpfs at `base`, the image made from the lab host's busybox template
    /// and memhog, its network made.
    fn up(netns: &str, base: &Path, max_mib: u64, template: &Path, memhog: &Path, criu: &Path) -> Result<Podman> {
        for (tool, path) in [("podman", "/usr/bin/podman"), ("runc", "/usr/sbin/runc")] {
            if !Path::new(path).exists() {
                bail!("{tool} is missing ({path}): scripts/setup.sh installs Debian's podman and runc");
            }
        }
        crate::workload::mount_tmpfs(base, 2 * max_mib + 1024)?;
        let p = Podman {
            netns: netns.into(),
            base: base.to_path_buf(),
            criu: criu.to_path_buf(),
        };
        let rootfs = base.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin"))?;
        let tar = |args: &[&str]| -> Result<()> {
            let st = Command::new("sh").arg("-c").arg(args.join(" ")).status()?;
            if !st.success() {
                bail!("making Podman's image: {}", args.join(" "));
            }
            Ok(())
        };
        tar(&[
            "zstd -dc",
            &template.display().to_string(),
            "| tar -C",
            &rootfs.display().to_string(),
            "-xf -",
        ])?;
        std::fs::copy(memhog, rootfs.join("bin/memhog"))?;
        let image = base.join("image.tar");
        tar(&[
            "tar -C",
            &rootfs.display().to_string(),
            "-cf",
            &image.display().to_string(),
            ".",
        ])?;
        p.ok(&["import", &image.display().to_string(), PODMAN_IMAGE])?;
        p.ok(&["network", "create", "--subnet", PODMAN_SUBNET, PODMAN_NET])?;
        Ok(p)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Lab::cmd(&self.netns, "podman");
        // Podman asks `criu` on PATH for its version; runc is told where it is.
        let dir = self.criu.parent().unwrap_or(Path::new("/"));
        c.env("PATH", format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", dir.display()));
        c.arg("--root")
            .arg(self.base.join("storage"))
            .arg("--runroot")
            .arg(self.base.join("run"))
            .arg("--network-config-dir")
            .arg(self.base.join("net"))
            .args(["--runtime", "/usr/sbin/runc", "--runtime-flag"])
            .arg(format!("criu={}", self.criu.display()))
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(args);
        c
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.cmd(args).output().context("running podman")?;
        if !out.status.success() {
            bail!(
                "podman {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A fresh container running memhog (M MiB) and an echo server; returns once the memory
    /// is filled.
    fn fresh(&self, mib: u64) -> Result<()> {
        let _ = self.cmd(&["rm", "-f", PODMAN_CT]).output();
        let script = format!(
            "nc -ll -p 7 -e cat </dev/null >/dev/null 2>&1 & exec /bin/memhog {mib} 0 3600 /tmp/ready </dev/null >/dev/null 2>&1"
        );
        self.ok(&[
            "run",
            "-d",
            "--name",
            PODMAN_CT,
            "--network",
            PODMAN_NET,
            // Its default limits need CAP_SYS_RESOURCE, which this host's root lacks.
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
            PODMAN_IMAGE,
            "/bin/sh",
            "-c",
            &script,
        ])?;
        let merged = self.ok(&["inspect", "--format", "{{.GraphDriver.Data.MergedDir}}", PODMAN_CT])?;
        let ready = Path::new(merged.trim()).join("tmp/ready");
        let t0 = Instant::now();
        while !ready.exists() {
            if t0.elapsed() > Duration::from_secs(300) {
                bail!("memhog in Podman's container did not fill {mib} MiB in 300 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn running(&self) -> Result<()> {
        let st = self.ok(&["inspect", "--format", "{{.State.Running}}", PODMAN_CT])?;
        if st.trim() != "true" {
            bail!(
                "after podman container restore the container is not running ({})",
                st.trim()
            );
        }
        Ok(())
    }

    /// `podman container checkpoint` and `restore`, local.
    fn local(&self, mib: u64) -> Result<Sample> {
        self.fresh(mib)?;
        let t = Instant::now();
        self.ok(&["container", "checkpoint", "--tcp-established", PODMAN_CT])?;
        let dump = Bench::ms(t);
        let t = Instant::now();
        self.ok(&["container", "restore", "--tcp-established", PODMAN_CT])?;
        let restore = Bench::ms(t);
        self.running()?;
        Ok(Sample { dump, restore })
    }

    /// Export (`checkpoint -e FILE`) and import (`restore -i FILE` with the container gone).
    fn export(&self, mib: u64) -> Result<Sample> {
        self.fresh(mib)?;
        let file = self.base.join("export.tar");
        let f = file.display().to_string();
        let t = Instant::now();
        self.ok(&["container", "checkpoint", "--tcp-established", "-e", &f, PODMAN_CT])?;
        let dump = Bench::ms(t);
        self.ok(&["rm", "-f", PODMAN_CT])?;
        let t = Instant::now();
        self.ok(&["container", "restore", "--tcp-established", "-i", &f])?;
        let restore = Bench::ms(t);
        self.running()?;
        let _ = std::fs::remove_file(&file);
        Ok(Sample { dump, restore })
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd(&["rm", "-f", "-a"]).output();
        let _ = self.cmd(&["network", "rm", "-f", PODMAN_NET]).output();
        let _ = Command::new("umount").arg("-l").arg(&self.base).status();
    }
}

struct Bench {
    /// Dropped before the lab: its containers and network live in the lab's namespace.
    podman: Option<Podman>,
    lab: Lab,
    vzctl: PathBuf,
    memhog: PathBuf,
    criu: PathBuf,
    tmpfs: PathBuf,
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.podman.take();
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
        crate::workload::mount_tmpfs(&tmpfs, 3 * max_mib + 512)?;
        let criu = ferry::criu::Criu::locate()
            .map_err(|e| anyhow!("{e} (scripts/setup.sh installs CRIU)"))?
            .bin;
        // The busybox template Podman's image is made from: vzctl makes it at the first create.
        let vzctl = bin("vzctl")?;
        remove(&lab, &vzctl, CTID);
        on(&lab, "hostA", &vzctl, &["create", CTID])?;
        remove(&lab, &vzctl, CTID);
        let h = lab.host("hostA");
        let podman = Podman::up(
            &h.netns,
            &lab.base.join("podman"),
            max_mib,
            &h.root.join("vz/template/cache/busybox.tar.zst"),
            memhog,
            &criu,
        )?;
        Ok(Bench {
            podman: Some(podman),
            lab,
            vzctl,
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

    /// `vzctl chkpnt` and `vzctl restore`; then a second checkpoint of the unchanged container
    /// (kept running), for the bytes of the private area each wrote (fs.tar).
    fn ferry(&self, mib: u64) -> Result<(Sample, (u64, u64))> {
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
        on(&self.lab, "hostA", &self.vzctl, &["chkpnt", CTID, "--keep-running"])?;
        let list: serde_json::Value =
            serde_json::from_str(&on(&self.lab, "hostA", &self.vzctl, &["checkpoints", CTID, "--json"])?)?;
        let fs_bytes = |i: usize| -> Result<u64> {
            let path = list[i]["path"]
                .as_str()
                .ok_or_else(|| anyhow!("no checkpoint {i}: {list}"))?;
            Ok(std::fs::metadata(Path::new(path).join("fs.tar"))?.len())
        };
        let bytes = (fs_bytes(0)?, fs_bytes(1)?);
        if list[1]["level"] != 1 {
            bail!("the second checkpoint is not a delta: {list}");
        }
        remove(&self.lab, &self.vzctl, CTID);
        Ok((Sample { dump, restore }, bytes))
    }

    /// `vzctl chkpnt --dumpfile` and, with the container destroyed, `vzctl restore
    /// --dumpfile` making it again (export and import).
    fn ferry_export(&self, mib: u64) -> Result<Sample> {
        self.setup(mib)?;
        let file = self.tmpfs.join("export.ckpt");
        let f = file.display().to_string();
        let t = Instant::now();
        on(&self.lab, "hostA", &self.vzctl, &["chkpnt", CTID, "--dumpfile", &f])?;
        let dump = Self::ms(t);
        on(&self.lab, "hostA", &self.vzctl, &["destroy", CTID])?;
        let t = Instant::now();
        on(&self.lab, "hostA", &self.vzctl, &["restore", CTID, "--dumpfile", &f])?;
        let restore = Self::ms(t);
        let st = on(&self.lab, "hostA", &self.vzctl, &["status", CTID])?;
        if !st.contains("running") {
            bail!("after vzctl restore --dumpfile the container is not running: {st}");
        }
        let _ = std::fs::remove_file(&file);
        remove(&self.lab, &self.vzctl, CTID);
        Ok(Sample { dump, restore })
    }

    fn podman(&self) -> &Podman {
        self.podman.as_ref().expect("up until dropped")
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
         host by `vzctl chkpnt` + `vzctl restore`, by CRIU's command line with the same options (`criu dump`, \
         `criu restore -d`: the options ferry passes over RPC, rendered as flags), and by Podman 4.3 (runc, this \
         host's CRIU) running the same image and program, alternated run by run, images on tmpfs for all. `vzctl` \
         does more than CRIU: the freeze before the dump, a snapshot of the private area, the checkpoint's hashes \
         (format 2: a directory CRIU restores from in place), and at restore the checks, limits, console and \
         network. Times in ms; medians [min-max]; ratios are vzctl's over the other's, per run.\n\n\
         ### Local\n\n\
         | M | vzctl chkpnt | criu dump | podman checkpoint | / criu | / podman | vzctl restore | criu restore | podman restore | / criu | / podman |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut export_md = String::from(
        "### Export and import\n\n`vzctl chkpnt --dumpfile FILE`, the container destroyed, `vzctl restore --dumpfile FILE` \
         making it again; `podman container checkpoint -e FILE`, the container removed, `podman container restore -i \
         FILE`. The time is the checkpoint's plus the restore's.\n\n\
         | M | vzctl export | import | podman export | import | total / podman |\n\
         |---|---|---|---|---|---|\n",
    );
    let mut bytes_md = String::from(
        "### The private area of a second checkpoint\n\nBytes of the private area's snapshot (fs.tar) in the first \
         checkpoint and in a second one of the unchanged, restored container (a delta).\n\n\
         | M | first | second | second / first |\n|---|---|---|---|\n",
    );
    let mut json = Vec::new();
    let mut targets = Vec::new();
    let methods = ["ferry", "criu", "podman", "ferry-export", "podman-export"];
    for &mib in &cfg.sizes {
        let mut got: std::collections::BTreeMap<&str, Vec<Sample>> = Default::default();
        let mut fs_bytes = Vec::new();
        for run in 0..cfg.runs {
            // A different order each run.
            let mut order = methods;
            order.rotate_left(run % methods.len());
            for m in order {
                let s = match m {
                    "ferry" => {
                        let (s, b) = bench.ferry(mib).context("vzctl chkpnt/restore")?;
                        fs_bytes.push(b);
                        s
                    }
                    "criu" => bench.by_hand(mib).context("criu by hand")?,
                    "podman" => bench.podman().local(mib).context("podman checkpoint/restore")?,
                    "ferry-export" => bench.ferry_export(mib).context("vzctl export/import")?,
                    _ => bench.podman().export(mib).context("podman export/import")?,
                };
                eprintln!(
                    "    {mib} MiB run {}: {m} checkpoint {:.0} ms, restore {:.0} ms",
                    run + 1,
                    s.dump,
                    s.restore
                );
                got.entry(m).or_default().push(s);
            }
        }
        let (fe, cl, pm) = (&got["ferry"], &got["criu"], &got["podman"]);
        let (fx, px) = (&got["ferry-export"], &got["podman-export"]);
        let sp = |v: &[Sample], f: fn(&Sample) -> f64| Spread::of(&v.iter().map(f).collect::<Vec<_>>());
        let ratio = |a: &[Sample], b: &[Sample], f: fn(&Sample) -> f64| {
            Spread::of(&a.iter().zip(b).map(|(x, y)| f(x) / f(y)).collect::<Vec<_>>())
        };
        let dump = |s: &Sample| s.dump;
        let restore = |s: &Sample| s.restore;
        let total = |s: &Sample| s.dump + s.restore;
        let (dc, dp) = (ratio(fe, cl, dump), ratio(fe, pm, dump));
        let (rc, rp) = (ratio(fe, cl, restore), ratio(fe, pm, restore));
        let xp = ratio(fx, px, total);
        md.push_str(&format!(
            "| {mib} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            sp(fe, dump).show(0),
            sp(cl, dump).show(0),
            sp(pm, dump).show(0),
            dc.show(2),
            dp.show(2),
            sp(fe, restore).show(0),
            sp(cl, restore).show(0),
            sp(pm, restore).show(0),
            rc.show(2),
            rp.show(2),
        ));
        export_md.push_str(&format!(
            "| {mib} | {} | {} | {} | {} | {} |\n",
            sp(fx, dump).show(0),
            sp(fx, restore).show(0),
            sp(px, dump).show(0),
            sp(px, restore).show(0),
            xp.show(2),
        ));
        let second = Spread::of(&fs_bytes.iter().map(|(a, b)| *b as f64 / *a as f64).collect::<Vec<_>>());
        let (first_b, second_b) = fs_bytes.first().copied().unwrap_or_default();
        bytes_md.push_str(&format!(
            "| {mib} | {} | {} | {} |\n",
            ferry::units::size(first_b),
            ferry::units::size(second_b),
            second.show(3)
        ));
        if mib >= 256 {
            targets.push(at_most(&format!("{mib} MiB: vzctl chkpnt / criu dump"), dc.median, 1.1));
            targets.push(at_most(
                &format!("{mib} MiB: vzctl restore / criu restore"),
                rc.median,
                1.1,
            ));
            targets.push(at_most(
                &format!("{mib} MiB: vzctl chkpnt / podman checkpoint"),
                dp.median,
                1.0,
            ));
            targets.push(at_most(
                &format!("{mib} MiB: vzctl restore / podman restore"),
                rp.median,
                1.0,
            ));
        }
        if mib >= 1024 {
            targets.push(at_most(
                &format!("{mib} MiB: vzctl export+import / podman's"),
                xp.median,
                0.5,
            ));
            targets.push(at_most(
                &format!("{mib} MiB: private area written by a second checkpoint / the first's"),
                second.median,
                0.05,
            ));
        }
        json.push(serde_json::json!({
            "mib": mib, "ferry": fe, "criu": cl, "podman": pm, "ferry_export": fx, "podman_export": px,
            "chkpnt_over_dump": dc, "restore_over_restore": rc, "chkpnt_over_podman": dp,
            "restore_over_podman": rp, "export_import_over_podman": xp, "fs_tar_bytes": fs_bytes,
        }));
    }
    drop(bench);
    let _ = std::fs::remove_dir_all(&work);
    md.push('\n');
    md.push_str(&export_md);
    md.push('\n');
    md.push_str(&bytes_md);
    md.push('\n');
    Ok(Section::with_targets(md, &targets, json))
}
