//! File sync: a private area sent to another host by ferry's file passes (the code a migration
//! runs: `ferry::migrate::sync::FileSync` on the source, `ferry::migrate::fs::Applier` on the
//! destination, one QUIC connection with mutual TLS) against `rsync -aHAX --delete` to an rsync
//! daemon on the destination, over the same link between the same two lab hosts, in the same
//! run. Each run syncs the tree in full, changes 1% of its files (appends, in-place edits,
//! deletions, new files), and syncs again: for ferry the second pass of the same session, as in
//! a migration, for rsync a second run against the copy it made. After every sync the
//! destination's tree is checked against the source's (a checksum manifest of every entry).
//! Bytes are counted on the source host's uplink (both directions, headers included), so both
//! methods are measured the same way.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ferry::agent::quic::{self, Pins};
use ferry::agent::trust::Identity;
use ferry::migrate::fs::{manifest, Applier};
use ferry::migrate::sync::FileSync;
use ferry::migrate::wire::Wire;
use ferry_testbed::{Lab, LabConfig};
use migrate_proto::msg::Message;

use crate::stats::{at_most, Spread};
use crate::workload::in_netns;
use crate::Section;

const QUIC_PORT: u16 = 9300;
const RSYNC_PORT: u16 = 8873;
/// Where the Debian tree's cache is kept between runs (built with debootstrap once).
const DEBIAN_CACHE: &str = "/var/cache/ferry-bench";

/// What to measure.
#[derive(Debug, Clone)]
pub struct Config {
    pub smoke: bool,
    pub runs: usize,
    pub links: Vec<Option<String>>,
}

/// One sync: seconds until the destination had applied everything, bytes on the source's links.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
struct Sync {
    secs: f64,
    bytes: u64,
}

/// A full sync and the second pass after the changes.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
struct Sample {
    full: Sync,
    second: Sync,
}

/// The lab host's link to the fabric (the veth under its bridge): every byte to another host
/// crosses it once.
const UPLINK: &str = "uplink";

/// Bytes received and sent on the lab host's uplink, from a thread in its namespace.
fn link_bytes_here() -> Result<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/net/dev")?;
    Ok(parse_net_dev(&s, UPLINK))
}

fn parse_net_dev(s: &str, dev: &str) -> u64 {
    s.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim() == dev)
        .map(|(_, rest)| {
            let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            f.first().copied().unwrap_or(0) + f.get(8).copied().unwrap_or(0)
        })
        .sum()
}

fn link_bytes(netns: &str) -> Result<u64> {
    in_netns(netns, link_bytes_here)
        .join()
        .map_err(|_| anyhow!("reading the link counters panicked"))?
}

/// A small deterministic generator (xorshift), so every run builds and changes the same tree.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }

    /// Text such as logs and configuration files hold: words from a small vocabulary.
    fn text(&mut self, n: usize) -> Vec<u8> {
        const WORDS: [&str; 16] = [
            "server",
            "listen",
            "443",
            "user",
            "www-data",
            "error",
            "GET",
            "/index.html",
            "200",
            "worker",
            "timeout",
            "30s",
            "include",
            "/etc/ssl",
            "debug",
            "cache",
        ];
        let mut v = Vec::with_capacity(n + 16);
        while v.len() < n {
            v.extend_from_slice(WORDS[self.below(16) as usize].as_bytes());
            v.push(if self.below(8) == 0 { b'\n' } else { b' ' });
        }
        v.truncate(n);
        v
    }
}

/// Many small files (half text, half binary) in directories of 100, and a few large ones
/// (alternately incompressible and text).
fn generate(root: &Path, small: usize, large: usize, large_mib: usize) -> Result<()> {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for i in 0..small {
        let dir = root.join(format!("srv/gen/d{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir)?;
        }
        let n = 200 + rng.below(8000) as usize;
        let data = if i % 2 == 0 { rng.text(n) } else { rng.bytes(n) };
        std::fs::write(dir.join(format!("f{i:05}")), data)?;
    }
    let dir = root.join("srv/large");
    std::fs::create_dir_all(&dir)?;
    for i in 0..large {
        let mut f = std::fs::File::create(dir.join(format!("blob{i}")))?;
        for _ in 0..large_mib {
            let mib = if i % 2 == 0 {
                rng.bytes(1 << 20)
            } else {
                rng.text(1 << 20)
            };
            f.write_all(&mib)?;
        }
    }
    Ok(())
}

/// Changes 1% of the regular files (every 100th in path order: appends, in-place edits and
/// deletions in turn), adds new files numbering a third of those, and edits 4 KiB in the
/// middle of each large file. Returns how many files it touched.
fn mutate(root: &Path) -> Result<usize> {
    let mut rng = Rng(0x2545f4914f6cdd1d);
    let files: Vec<String> = ferry::migrate::fs::scan(root)?
        .into_iter()
        .filter(|(_, m)| m.file_type().is_file())
        .map(|(p, _)| p)
        .collect();
    let mut touched = 0;
    for (k, rel) in files
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 100 == 50)
        .map(|(_, r)| r)
        .enumerate()
    {
        let p = root.join(rel);
        match k % 3 {
            0 => {
                let mut f = std::fs::OpenOptions::new().append(true).open(&p)?;
                f.write_all(&rng.text(1024))?;
            }
            1 => edit(&p, 64, &mut rng)?,
            _ => std::fs::remove_file(&p)?,
        }
        touched += 1;
    }
    let new = root.join("srv/gen/new");
    std::fs::create_dir_all(&new)?;
    for i in 0..files.len() / 300 {
        let n = 200 + rng.below(8000) as usize;
        std::fs::write(new.join(format!("n{i:05}")), rng.text(n))?;
        touched += 1;
    }
    for e in std::fs::read_dir(root.join("srv/large"))? {
        edit(&e?.path(), 4096, &mut rng)?;
        touched += 1;
    }
    Ok(touched)
}

/// Overwrites `n` bytes in the middle of a file, keeping its size.
fn edit(p: &Path, n: usize, rng: &mut Rng) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(p)?;
    let len = f.metadata()?.len();
    f.write_all_at(&rng.bytes(n.min(len as usize)), (len / 2).saturating_sub(n as u64 / 2))?;
    Ok(())
}

fn same_tree(src: &Path, dst: &Path, what: &str) -> Result<()> {
    let (a, b) = (manifest(src)?, manifest(dst)?);
    if a != b {
        let only_a: Vec<&String> = a.iter().filter(|l| !b.contains(l)).take(3).collect();
        let only_b: Vec<&String> = b.iter().filter(|l| !a.contains(l)).take(3).collect();
        bail!(
            "{what}: the destination's tree differs from the source's: source has {only_a:?}, destination {only_b:?}"
        );
    }
    Ok(())
}

/// Replaces `dst` with a copy of `src` (`cp -a`: owners, modes, times, hard links, xattrs).
fn fresh_copy(src: &Path, dst: &Path) -> Result<()> {
    if dst.exists() {
        std::fs::remove_dir_all(dst)?;
    }
    let st = Command::new("cp").arg("-a").arg(src).arg(dst).status()?;
    if !st.success() {
        bail!("cp -a {} {}", src.display(), dst.display());
    }
    Ok(())
}

fn empty_dir(d: &Path) -> Result<()> {
    if d.exists() {
        std::fs::remove_dir_all(d)?;
    }
    std::fs::create_dir_all(d)?;
    Ok(())
}

/// Applies one message of a pass.
fn apply(a: &mut Applier, m: &Message) -> Result<()> {
    let on = |p: &migrate_proto::path::RelPath| format!("applying {}", p.as_str());
    match m {
        Message::FsEntries { entries, .. } => {
            for e in entries {
                a.entry(e).with_context(|| on(&e.path))?;
            }
        }
        Message::FsData(d) => a.data(d).with_context(|| on(&d.path))?,
        Message::FsDelta(d) => a.delta(d).with_context(|| on(&d.path))?,
        Message::FsDelete { paths, .. } => {
            for p in paths {
                a.delete(p).with_context(|| on(p))?;
            }
        }
        Message::FsPassDone { .. } => a.finish()?,
        other => bail!("unexpected {other:?}"),
    }
    Ok(())
}

/// The destination side of ferry's session, run as the agent runs a migration's destination
/// (a task on a two-worker runtime, file work in `block_in_place`, so the connection keeps
/// being served meanwhile): applies passes, acknowledges each once applied.
fn ferry_receiver(
    netns: &str,
    id: Identity,
    client_fp: String,
    addr: SocketAddr,
    dst: PathBuf,
    ready: std::sync::mpsc::Sender<()>,
) -> std::thread::JoinHandle<Result<()>> {
    in_netns(netns, move || -> Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let ep = rt.block_on(async { quic::server(&id, Pins::Fixed(vec![client_fp]), addr) })?;
        ready.send(()).ok();
        let task = rt.spawn(async move {
            let conn = ep.accept().await.context("no connection")?.await?;
            let (send, recv) = conn.accept_bi().await?;
            let mut wire = Wire::new(send, recv);
            let mut a = Applier::new(&dst);
            loop {
                let m = wire.recv(Duration::from_secs(300)).await?;
                tokio::task::block_in_place(|| apply(&mut a, &m))?;
                if let Message::FsPassDone { pass, last } = m {
                    wire.send(&Message::FsPassDone { pass, last }).await?;
                    if last {
                        break;
                    }
                }
            }
            wire.finish().await;
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
            Ok::<(), anyhow::Error>(())
        });
        rt.block_on(task).map_err(|e| anyhow!("ferry's receiver: {e}"))?
    })
}

/// ferry: a full pass, the changes, a second pass, in one session.
fn ferry_once(lab: &Lab, keys: &(Identity, Identity), src: &Path, dst: &Path) -> Result<Sample> {
    empty_dir(dst)?;
    let (sid, cid) = (keys.0.clone(), keys.1.clone());
    let addr: SocketAddr = format!("{}:{QUIC_PORT}", lab.host("hostB").addr).parse()?;
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let server = ferry_receiver(
        &lab.host("hostB").netns,
        sid.clone(),
        cid.fingerprint.clone(),
        addr,
        dst.to_path_buf(),
        ready_tx,
    );
    ready
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| anyhow!("ferry's receiver did not start"))?;
    let (src, dst) = (src.to_path_buf(), dst.to_path_buf());
    let sent = in_netns(&lab.host("hostA").netns, move || -> Result<Sample> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let stop = std::sync::Arc::new(AtomicBool::new(false));
            let mut files = FileSync::new(&src);
            let mut s = Sample::default();
            let b0 = link_bytes_here()?;
            let t0 = Instant::now();
            let conn = quic::connect(&cid, &sid.fingerprint, addr).await?;
            let (send, recv) = conn.open_bi().await?;
            let mut wire = Wire::new(send, recv);
            for pass in [1u32, 2] {
                if pass == 2 {
                    same_tree(&src, &dst, "ferry, full sync")?;
                    mutate(&src)?;
                }
                let (t, b) = (Instant::now(), link_bytes_here()?);
                files.pass(&mut wire, pass, &stop).await?;
                wire.send(&Message::FsPassDone { pass, last: pass == 2 }).await?;
                match wire.recv(Duration::from_secs(300)).await? {
                    Message::FsPassDone { .. } => {}
                    other => bail!("the receiver answered {other:?}"),
                }
                let r = if pass == 1 {
                    Sync {
                        secs: t0.elapsed().as_secs_f64(),
                        bytes: link_bytes_here()? - b0,
                    }
                } else {
                    Sync {
                        secs: t.elapsed().as_secs_f64(),
                        bytes: link_bytes_here()? - b,
                    }
                };
                if pass == 1 {
                    s.full = r;
                } else {
                    s.second = r;
                }
            }
            wire.finish().await;
            conn.close(0u32.into(), b"done");
            same_tree(&src, &dst, "ferry, second pass")?;
            Ok::<Sample, anyhow::Error>(s)
        })
    })
    .join()
    .map_err(|_| anyhow!("ferry's sender panicked"))?;
    let got = server.join().map_err(|_| anyhow!("ferry's receiver panicked"))?;
    // The receiver's failure first: the sender then only sees the connection time out.
    got.context("ferry's receiver")?;
    sent
}

/// An rsync daemon on hostB serving one writable module.
struct Daemon {
    child: Child,
    module_path: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(lab: &Lab, work: &Path) -> Result<Daemon> {
        let b = lab.host("hostB");
        let module_path = b.root.join("vz/bench-sync/rsync");
        std::fs::create_dir_all(&module_path)?;
        let conf = work.join("rsyncd.conf");
        std::fs::write(
            &conf,
            format!(
                "use chroot = yes\nmunge symlinks = no\nnumeric ids = yes\nlog file = {}\n\n[bench]\npath = {}\nread only = no\nuid = 0\ngid = 0\n",
                work.join("rsyncd.log").display(),
                module_path.display()
            ),
        )?;
        let child = Lab::cmd(&b.netns, "rsync")
            .args(["--daemon", "--no-detach", "--config"])
            .arg(&conf)
            .args(["--address", &b.addr, "--port", &RSYNC_PORT.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the rsync daemon (scripts/setup.sh installs rsync)")?;
        let d = Daemon { child, module_path };
        let addr: SocketAddr = format!("{}:{RSYNC_PORT}", b.addr).parse()?;
        let up = in_netns(&lab.host("hostA").netns, move || {
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                    let mut greeting = [0u8; 8];
                    return s.read(&mut greeting).is_ok();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        })
        .join()
        .unwrap_or(false);
        if !up {
            bail!("the rsync daemon on hostB did not come up");
        }
        Ok(d)
    }
}

fn rsync_to(lab: &Lab, src: &Path) -> Result<Sync> {
    let a = lab.host("hostA");
    let target = format!("rsync://{}:{RSYNC_PORT}/bench/", lab.host("hostB").addr);
    let b0 = link_bytes(&a.netns)?;
    let t = Instant::now();
    let out = Lab::cmd(&a.netns, "rsync")
        .args(["-aHAX", "--delete"])
        .arg(format!("{}/", src.display()))
        .arg(&target)
        .output()
        .context("running rsync")?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("rsync: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(Sync {
        secs,
        bytes: link_bytes(&a.netns)? - b0,
    })
}

/// rsync: a full run into an empty module, the changes, a second run.
fn rsync_once(lab: &Lab, d: &Daemon, src: &Path) -> Result<Sample> {
    empty_dir(&d.module_path)?;
    let full = rsync_to(lab, src)?;
    same_tree(src, &d.module_path, "rsync, full sync")?;
    mutate(src)?;
    let second = rsync_to(lab, src)?;
    same_tree(src, &d.module_path, "rsync, second run")?;
    Ok(Sample { full, second })
}

/// The Debian tree: the debian-12 cache, built with debootstrap into DEBIAN_CACHE if missing.
fn debian(dest: &Path) -> Result<()> {
    let layout = ferry::layout::HostLayout::new(DEBIAN_CACHE);
    let cache = match ferry::template::find_cache(&layout, "debian-12")? {
        Some(c) => c,
        None => {
            eprintln!("  building the debian-12 cache with debootstrap (once, kept in {DEBIAN_CACHE})");
            ferry::template::debootstrap::create_cache(&layout, "debian-12", &mut |l| eprintln!("    {l}"))
                .context("building the debian-12 cache (debootstrap needs Debian's archive)")?;
            ferry::template::find_cache(&layout, "debian-12")?
                .context("the debian-12 cache is missing after its build")?
        }
    };
    ferry::template::unpack(&cache.0, cache.1, dest)?;
    Ok(())
}

fn identity(dir: &Path, name: &str) -> Result<Identity> {
    let layout = ferry::layout::HostLayout::new(dir.join(name));
    std::fs::create_dir_all(layout.root())?;
    Identity::load_or_create(&layout, name).map_err(|e| anyhow!("{name}'s key: {e}"))
}

/// Files and bytes of a tree.
fn tree_size(root: &Path) -> Result<(usize, u64)> {
    let list = ferry::migrate::fs::scan(root)?;
    let files = list.iter().filter(|(_, m)| m.file_type().is_file()).count();
    let bytes = list
        .iter()
        .filter(|(_, m)| m.file_type().is_file())
        .map(|(_, m)| m.len())
        .sum();
    Ok((files, bytes))
}

pub fn run(cfg: &Config) -> Result<Section> {
    let work = std::env::temp_dir().join(format!("vzbench-sync-{}", std::process::id()));
    empty_dir(&work)?;
    let r = run_in(cfg, &work);
    let _ = std::fs::remove_dir_all(&work);
    r
}

fn run_in(cfg: &Config, work: &Path) -> Result<Section> {
    let keys = (identity(work, "server")?, identity(work, "client")?);
    let mut md = String::from("## File sync\n\n");
    let mut json = Vec::new();
    let mut targets = Vec::new();
    for link in &cfg.links {
        let name = link.clone().unwrap_or_else(|| "unshaped".into());
        eprintln!("  link {name}");
        let mut lc = LabConfig::new(&format!("bs{}", std::process::id() % 100000));
        lc.base = "/tmp/ferry-bench".into();
        lc.shape = link.clone();
        lc.hosts = vec!["hostA".into(), "hostB".into()];
        let lab = Lab::up(&lc)?;
        let a = lab.host("hostA").root.join("vz/bench-sync");
        let pristine = a.join("pristine");
        let src = a.join("src");
        let ferry_dst = lab.host("hostB").root.join("vz/bench-sync/ferry");
        empty_dir(&pristine)?;
        let what = if cfg.smoke {
            generate(&pristine, 2000, 2, 2)?;
            "a generated tree (2,000 small files, two 2 MiB files)".to_string()
        } else {
            debian(&pristine)?;
            generate(&pristine, 20000, 4, 32)?;
            "the debian-12 template (debootstrap) plus a generated tree under /srv (20,000 files of 0.2-8 KiB, half \
             text and half random bytes; four 32 MiB files, two random and two text)"
                .to_string()
        };
        let (files, bytes) = tree_size(&pristine)?;
        let daemon = Daemon::start(&lab, work)?;
        let mut fe = Vec::new();
        let mut rs = Vec::new();
        for run in 0..cfg.runs {
            // Alternated, so the page cache and the machine's drift touch both alike.
            for m in if run % 2 == 0 {
                ["ferry", "rsync"]
            } else {
                ["rsync", "ferry"]
            } {
                fresh_copy(&pristine, &src)?;
                let s = if m == "ferry" {
                    ferry_once(&lab, &keys, &src, &ferry_dst).context("ferry's file sync")?
                } else {
                    rsync_once(&lab, &daemon, &src).context("rsync")?
                };
                eprintln!(
                    "    run {}: {m} full {:.2} s {} bytes, second {:.2} s {} bytes",
                    run + 1,
                    s.full.secs,
                    s.full.bytes,
                    s.second.secs,
                    s.second.bytes
                );
                if m == "ferry" {
                    fe.push(s);
                } else {
                    rs.push(s);
                }
            }
        }
        drop(daemon);
        let sp = |v: &[Sample], f: &dyn Fn(&Sample) -> f64| Spread::of(&v.iter().map(f).collect::<Vec<_>>());
        let ratio =
            |f: &dyn Fn(&Sample) -> f64| Spread::of(&fe.iter().zip(&rs).map(|(a, b)| f(a) / f(b)).collect::<Vec<_>>());
        let mib = |b: u64| b as f64 / 1048576.0;
        md.push_str(&format!(
            "### Link: {name}\n\nThe tree: {what}; {files} files, {:.0} MiB. The second pass follows changes to 1% of \
             the files (every 100th regular file in path order: appends of 1 KiB, in-place edits of 64 bytes and \
             deletions in turn), new files numbering a third of those, and a 4 KiB in-place edit in each large \
             file. Times in s, bytes in MiB on the source host's uplink (both directions, headers included); medians [min-max].\n\n\
             | sync | ferry time | rsync time | ferry / rsync time | ferry bytes | rsync bytes | ferry / rsync bytes |\n\
             |---|---|---|---|---|---|---|\n",
            mib(bytes)
        ));
        let full_t = ratio(&|s| s.full.secs);
        let full_b = ratio(&|s| s.full.bytes as f64);
        let sec_t = ratio(&|s| s.second.secs);
        let sec_b = ratio(&|s| s.second.bytes as f64);
        for (row, t, b, tr, br) in [
            (
                "full",
                &(|s: &Sample| s.full.secs) as &dyn Fn(&Sample) -> f64,
                &(|s: &Sample| mib(s.full.bytes)) as &dyn Fn(&Sample) -> f64,
                full_t,
                full_b,
            ),
            (
                "second pass",
                &|s: &Sample| s.second.secs,
                &|s: &Sample| mib(s.second.bytes),
                sec_t,
                sec_b,
            ),
        ] {
            md.push_str(&format!(
                "| {row} | {} | {} | {} | {} | {} | {} |\n",
                sp(&fe, t).show(2),
                sp(&rs, t).show(2),
                tr.show(2),
                sp(&fe, b).show(1),
                sp(&rs, b).show(1),
                br.show(2),
            ));
        }
        md.push('\n');
        targets.push(at_most(
            &format!("{name}: full sync no slower than rsync"),
            full_t.median,
            1.0,
        ));
        targets.push(at_most(
            &format!("{name}: second pass sends no more bytes than rsync"),
            sec_b.median,
            1.0,
        ));
        targets.push(at_most(
            &format!("{name}: second pass takes no longer than rsync"),
            sec_t.median,
            1.0,
        ));
        json.push(serde_json::json!({
            "link": name, "files": files, "bytes": bytes,
            "ferry": fe, "rsync": rs,
            "full_time_ratio": full_t, "full_bytes_ratio": full_b,
            "second_time_ratio": sec_t, "second_bytes_ratio": sec_b,
        }));
        drop(lab);
    }
    Ok(Section::with_targets(md, &targets, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uplinks_counters_are_summed() {
        let s = "Inter-|   Receive                                                |  Transmit\n \
                 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                 lo: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n  \
                 uplink: 1000 10 0 0 0 0 0 0 250 3 0 0 0 0 0 0\n    \
                 br0: 900 10 0 0 0 0 0 0 200 3 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(s, "uplink"), 1250);
    }

    #[test]
    fn the_changes_touch_one_file_in_a_hundred() {
        let d = std::env::temp_dir().join(format!("vzbench-mutate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        generate(&d, 1000, 2, 1).unwrap();
        let before = manifest(&d).unwrap();
        let n = mutate(&d).unwrap();
        // 10 of the 1,002 files changed or removed, 3 new files, 2 large files edited.
        assert_eq!(n, 15);
        let after = manifest(&d).unwrap();
        assert_ne!(before, after);
        let (files, _) = tree_size(&d).unwrap();
        assert_eq!(files, 1002 - 3 + 3);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
