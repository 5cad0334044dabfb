//! Migration: a container holding M MiB of incompressible memory that dirties a fraction of it
//! every second, with a TCP client echoing every 10 ms, moved three ways in the same run over
//! the same link:
//!
//! - ferry: `vzmigrate --online` between two agents;
//! - by hand (the naive method): `vzctl chkpnt --dumpfile` on the source (the container stops),
//!   the archive (CRIU images and the whole private area) copied over a TCP stream, the config
//!   copied, `vzctl restore --dumpfile` on the destination;
//! - the local floor: `vzctl chkpnt` and `vzctl restore` on one host.
//!
//! Images live on tmpfs (vz/dump is a tmpfs on every lab host) for all three.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ferry_testbed::agents::Agents;
use ferry_testbed::{Lab, LabConfig};

use crate::stats::{at_most, verdict, Spread};
use crate::workload::{fresh_container, in_netns, on, on_with, remove, Client, Load};
use crate::{bin, Section};

const CTID: &str = "301";
const IP: &str = "198.18.0.50";

/// What to measure.
#[derive(Debug, Clone)]
pub struct Config {
    pub sizes: Vec<u64>,
    pub dirty: Vec<f64>,
    pub links: Vec<Option<String>>,
    pub runs: usize,
    /// Also move with vzmigrate speaking this older protocol version, and compare.
    pub compare_protocol: Option<u32>,
}

/// One move of one container.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct Sample {
    /// ferry: the engine's frozen time; by hand and floor: from the checkpoint's start to the
    /// restore's end (the container does not run in between).
    downtime_ms: f64,
    gap_ms: f64,
    total_ms: f64,
    wire_bytes: u64,
    /// ferry: bytes sent while the container ran, and while it was frozen.
    live_bytes: u64,
    frozen_bytes: u64,
    /// ferry: bytes of the final dump's pages the destination did not hold (dirtied since the
    /// last pre-copy round).
    dirty_bytes: u64,
    rounds: u32,
    /// ferry: from the end of the last pre-copy round to the destination's acknowledgement of
    /// it (what crossed the link before the freeze instead of during it).
    drain_ms: f64,
    /// ferry: the engine's phases and their times (ms), the final dump's own time within the
    /// frozen phase, and the protocol version spoken.
    phases: Vec<(String, u64)>,
    dump_ms: f64,
    protocol: u32,
    timeline: Vec<(f64, f64)>,
    /// Every echo's wait, for the timeline plot (not in results.json).
    #[serde(skip)]
    all: Vec<(f64, f64)>,
}

struct Bench {
    lab: Lab,
    _agents: Agents,
    vzctl: PathBuf,
    vzmigrate: PathBuf,
    memhog: PathBuf,
    tmpfs: Vec<PathBuf>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        remove(&self.lab, &self.vzctl, CTID);
        for t in &self.tmpfs {
            let _ = Command::new("umount").arg(t).status();
        }
    }
}

impl Bench {
    fn up(link: Option<&str>, max_mib: u64, memhog: &Path) -> Result<Bench> {
        let mut cfg = LabConfig::new(&format!("bm{}", std::process::id() % 100000));
        cfg.base = "/tmp/ferry-bench".into();
        cfg.shape = link.map(str::to_string);
        let lab = Lab::up(&cfg)?;
        let agents = Agents::start(&lab, &["hostA", "hostB"], &bin("vzagentd")?)?;
        let mut tmpfs = Vec::new();
        for h in &lab.hosts {
            let d = h.root.join("vz/dump");
            // The destination's page store lives here too (up to three times the container's
            // memory when it churns), beside the images.
            crate::workload::mount_tmpfs(&d, 5 * max_mib + 1024)?;
            tmpfs.push(d);
        }
        Ok(Bench {
            lab,
            _agents: agents,
            vzctl: bin("vzctl")?,
            vzmigrate: bin("vzmigrate")?,
            memhog: memhog.to_path_buf(),
            tmpfs,
        })
    }

    fn setup(&self, mib: u64, dirty: f64) -> Result<Client> {
        fresh_container(&self.lab, &self.vzctl, &self.memhog, CTID, IP, Load { mib, dirty })?;
        let c = Client::start(&self.lab, &format!("{IP}:7"), Duration::from_secs(900))?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(c)
    }

    fn ferry(&self, mib: u64, dirty: f64) -> Result<Sample> {
        self.ferry_at(mib, dirty, None)
    }

    /// ferry, its vzmigrate speaking protocol version `protocol` at most (None: the current).
    fn ferry_at(&self, mib: u64, dirty: f64, protocol: Option<u32>) -> Result<Sample> {
        let client = self.setup(mib, dirty)?;
        let max = protocol.map(|p| p.to_string()).unwrap_or_default();
        let env: Vec<(&str, &str)> = protocol
            .map(|_| ("FERRY_PROTOCOL_MAX", max.as_str()))
            .into_iter()
            .collect();
        let out = on_with(
            &self.lab,
            "hostA",
            &self.vzmigrate,
            &["--online", "--json", "hostB", CTID],
            &env,
        );
        std::thread::sleep(Duration::from_millis(300));
        let gaps = client.finish();
        let out = out?;
        let gaps = gaps?;
        let r: serde_json::Value = serde_json::from_str(&out).context("vzmigrate's report")?;
        let n = |k: &str| r[k].as_u64().unwrap_or(0);
        let s = Sample {
            downtime_ms: n("frozen_ms") as f64,
            gap_ms: gaps.longest_ms,
            total_ms: n("total_ms") as f64,
            wire_bytes: n("wire_bytes"),
            live_bytes: n("fs_bytes") + n("mem_bytes"),
            frozen_bytes: n("final_fs_bytes") + n("image_bytes"),
            dirty_bytes: n("page_data") * 4096,
            rounds: n("memory_rounds") as u32,
            drain_ms: n("drain_ms") as f64,
            phases: serde_json::from_value(r["phases_ms"].clone()).unwrap_or_default(),
            dump_ms: n("dump_ms") as f64,
            protocol: n("protocol") as u32,
            timeline: gaps.timeline,
            all: gaps.all,
        };
        remove(&self.lab, &self.vzctl, CTID);
        Ok(s)
    }

    /// A move during which the container does not run: `act` is the downtime (it returns the
    /// bytes it copied), `after` cleans up what it left.
    fn stopped_move(&self, client: Client, act: impl FnOnce() -> Result<u64>, after: impl FnOnce()) -> Result<Sample> {
        let t0 = Instant::now();
        let r = act();
        let downtime = t0.elapsed().as_secs_f64() * 1000.0;
        std::thread::sleep(Duration::from_millis(300));
        let gaps = client.finish();
        after();
        let bytes = r?;
        let gaps = gaps?;
        remove(&self.lab, &self.vzctl, CTID);
        Ok(Sample {
            downtime_ms: downtime,
            gap_ms: gaps.longest_ms,
            total_ms: downtime,
            wire_bytes: bytes,
            frozen_bytes: bytes,
            timeline: gaps.timeline,
            all: gaps.all,
            ..Default::default()
        })
    }

    /// Checkpoint, copy, restore, by hand.
    fn naive(&self, mib: u64, dirty: f64) -> Result<Sample> {
        let client = self.setup(mib, dirty)?;
        let (a, b) = (self.lab.host("hostA"), self.lab.host("hostB"));
        let src = a.root.join(format!("vz/dump/naive-{CTID}.ckpt"));
        let dst = b.root.join(format!("vz/dump/naive-{CTID}.ckpt"));
        self.stopped_move(
            client,
            || {
                on(
                    &self.lab,
                    "hostA",
                    &self.vzctl,
                    &["chkpnt", CTID, "--dumpfile", &src.display().to_string()],
                )?;
                let bytes = copy_over_tcp(&self.lab, &src, &dst)?;
                std::fs::copy(
                    a.root.join(format!("etc/vz/conf/{CTID}.conf")),
                    b.root.join(format!("etc/vz/conf/{CTID}.conf")),
                )?;
                std::fs::create_dir_all(b.root.join(format!("vz/private/{CTID}")))?;
                on(
                    &self.lab,
                    "hostB",
                    &self.vzctl,
                    &["restore", CTID, "--dumpfile", &dst.display().to_string()],
                )?;
                Ok(bytes)
            },
            || {
                let _ = on(&self.lab, "hostA", &self.vzctl, &["destroy", CTID]);
                let _ = std::fs::remove_file(&src);
                let _ = std::fs::remove_file(&dst);
            },
        )
    }

    /// `vzctl chkpnt` and `vzctl restore` on one host.
    fn floor(&self, mib: u64, dirty: f64) -> Result<Sample> {
        let client = self.setup(mib, dirty)?;
        let mut s = self.stopped_move(
            client,
            || {
                on(&self.lab, "hostA", &self.vzctl, &["chkpnt", CTID])?;
                on(&self.lab, "hostA", &self.vzctl, &["restore", CTID])?;
                Ok(0)
            },
            || {},
        )?;
        s.frozen_bytes = 0;
        Ok(s)
    }
}

/// Copies a file from hostA to hostB over one TCP stream; returns its size.
fn copy_over_tcp(lab: &Lab, src: &Path, dst: &Path) -> Result<u64> {
    let addr: std::net::SocketAddr = format!("{}:9200", lab.host("hostB").addr).parse()?;
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let dst = dst.to_path_buf();
    let recv = in_netns(&lab.host("hostB").netns, move || -> Result<u64> {
        let l = std::net::TcpListener::bind(addr)?;
        ready_tx.send(()).ok();
        let (mut s, _) = l.accept()?;
        let mut f = std::fs::File::create(&dst)?;
        let n = std::io::copy(&mut s, &mut f)?;
        f.flush()?;
        Ok(n)
    });
    ready.recv_timeout(Duration::from_secs(10))?;
    let src = src.to_path_buf();
    let sent = in_netns(&lab.host("hostA").netns, move || -> Result<u64> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        let mut f = std::fs::File::open(&src)?;
        let n = std::io::copy(&mut f, &mut s)?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut end = [0u8; 1];
        let _ = s.read(&mut end);
        Ok(n)
    })
    .join()
    .map_err(|_| anyhow!("the copy's sender panicked"))??;
    let got = recv.join().map_err(|_| anyhow!("the copy's receiver panicked"))??;
    if got != sent {
        bail!("the copy delivered {got} of {sent} bytes");
    }
    Ok(got)
}

/// A row of the frozen-time breakdown: the frozen time, the final dump, the rest of the final
/// transfer, the restore (to the commit), the bytes sent while frozen, the protocol spoken.
fn phase_row(mib: u64, dirty: f64, which: &str, samples: &[Sample]) -> String {
    let phase = |s: &Sample, name: &str| {
        s.phases
            .iter()
            .filter(|(p, _)| p == name)
            .map(|(_, ms)| *ms as f64)
            .sum::<f64>()
    };
    format!(
        "| {mib} | {dirty} | {which} | {} | {} | {} | {} | {} | {} |\n",
        spread(samples, |s| s.downtime_ms).show(0),
        spread(samples, |s| s.dump_ms).show(0),
        spread(samples, |s| phase(s, "FinalSync") - s.dump_ms).show(0),
        spread(samples, |s| phase(s, "Restore") + phase(s, "Commit")).show(0),
        spread(samples, |s| s.frozen_bytes as f64 / 1048576.0).show(1),
        samples.first().map(|s| s.protocol).unwrap_or(0),
    )
}

fn spread(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> Spread {
    Spread::of(&samples.iter().map(f).collect::<Vec<_>>())
}

/// The dirty rate the plots show: 1 %/s if measured, else the first measured.
fn plotted_dirty(rates: &[f64]) -> f64 {
    if rates.contains(&1.0) {
        1.0
    } else {
        rates.first().copied().unwrap_or(0.0)
    }
}

/// Draws the section's plots from its results (also `vzbench --replot`, from results.json):
/// downtime against memory size per link, and the client's waits across the largest move on
/// the last link. Returns the files' names.
pub fn plots(json: &[serde_json::Value], out: &Path) -> Result<Vec<String>> {
    let f = |e: &serde_json::Value, k: &str| e[k].as_f64().unwrap_or(f64::NAN);
    let dirty: Vec<f64> = json.iter().map(|e| f(e, "dirty_pct")).collect();
    let plot_dirty = plotted_dirty(&dirty);
    let mut links: Vec<String> = Vec::new();
    for e in json {
        let l = e["link"].as_str().unwrap_or("").to_string();
        if !links.contains(&l) {
            links.push(l);
        }
    }
    let median = |samples: &serde_json::Value| {
        Spread::of(
            &samples
                .as_array()
                .map(|a| a.iter().filter_map(|s| s["downtime_ms"].as_f64()).collect::<Vec<_>>())
                .unwrap_or_default(),
        )
        .median
    };
    let mut files = Vec::new();
    for link in &links {
        let mut rows: Vec<&serde_json::Value> = json
            .iter()
            .filter(|e| e["link"] == link.as_str() && f(e, "dirty_pct") == plot_dirty)
            .collect();
        rows.sort_by(|a, b| f(a, "mib").total_cmp(&f(b, "mib")));
        if rows.len() < 2 {
            continue;
        }
        let series: Vec<crate::plot::Series> = [
            ("ferry (frozen)", "ferry"),
            ("by hand", "naive"),
            ("local floor", "floor"),
        ]
        .iter()
        .map(|(label, k)| {
            (
                label.to_string(),
                rows.iter().map(|e| (f(e, "mib"), median(&e[*k]))).collect(),
            )
        })
        .collect();
        let file = format!("frozen-vs-memory-{link}.png");
        crate::plot::lines(
            &out.join(&file),
            &format!("Downtime against memory size ({plot_dirty} %/s dirtied, {link})"),
            "memory (MiB)",
            "downtime (ms)",
            &series,
        )?;
        files.push(file);
    }
    let largest = json
        .iter()
        .filter(|e| Some(e["link"].as_str().unwrap_or("")) == links.last().map(String::as_str))
        .filter(|e| f(e, "dirty_pct") == plot_dirty)
        .max_by(|a, b| f(a, "mib").total_cmp(&f(b, "mib")));
    if let Some(e) = largest {
        let what = format!(
            "{} MiB, {plot_dirty} %/s, {}",
            f(e, "mib"),
            e["link"].as_str().unwrap_or("")
        );
        let pts = |v: &serde_json::Value| -> Vec<(f64, f64)> { serde_json::from_value(v.clone()).unwrap_or_default() };
        let file = "gap-timeline.png".to_string();
        if e.get("timeline_all").is_some() {
            crate::plot::lines(
                &out.join(&file),
                &format!("The client's wait for each echo across one move ({what})"),
                "seconds since the client started",
                "wait for the echo (ms)",
                &[
                    ("ferry".into(), pts(&e["timeline_all"]["ferry"])),
                    ("by hand".into(), pts(&e["timeline_all"]["by hand"])),
                ],
            )?;
        } else {
            // Reports from before every wait was kept hold only the waits over 50 ms.
            crate::plot::points(
                &out.join(&file),
                &format!("Echoes that waited over 50 ms across one move ({what})"),
                "seconds since the client started",
                "wait for the echo (ms)",
                &[
                    ("ferry".into(), pts(&e["ferry"][0]["timeline"])),
                    ("by hand".into(), pts(&e["naive"][0]["timeline"])),
                ],
            )?;
        }
        files.push(file);
    }
    Ok(files)
}

pub fn run(cfg: &Config, out: &Path) -> Result<Section> {
    let work = std::env::temp_dir().join(format!("vzbench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let max_mib = cfg.sizes.iter().copied().max().unwrap_or(64);
    let memhog = crate::workload::build_memhog(&work)?;
    let mut md = String::from(
        "## Migration\n\nA busybox container running memhog (M MiB of incompressible memory, D % of its pages \
         dirtied per second) and an echo server; a client in the lab's client namespace sends a message every \
         10 ms. Moved by ferry (`vzmigrate --online`), by hand (`vzctl chkpnt --dumpfile`, the archive copied \
         over one TCP stream, `vzctl restore --dumpfile`: the way checkpoint/restore is done by hand with runc \
         or podman export/import), and the local floor (`vzctl chkpnt` + `vzctl restore` on one host). Images \
         on tmpfs for all three. Times in ms, sizes in MiB; medians [min-max].\n\n",
    );
    let mut json = Vec::new();
    let mut targets: Vec<String> = Vec::new();
    let mut idle_ratio: Vec<(String, f64)> = Vec::new();
    let mut gap_checks: Vec<String> = Vec::new();
    let mut frozen_checks: Vec<String> = Vec::new();
    let plot_dirty = plotted_dirty(&cfg.dirty);
    let mut phase_rows: Vec<String> = Vec::new();
    // The older protocol's failures, by configuration (the first reason).
    let mut older_failures: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for link in &cfg.links {
        let name = link.clone().unwrap_or_else(|| "unshaped".into());
        eprintln!("  link {name}");
        let bench = Bench::up(link.as_deref(), max_mib, &memhog)?;
        md.push_str(&format!(
            "### Link: {name}\n\n| M | D %/s | ferry frozen | ferry client gap | ferry total | ferry pre-copy drain | on the wire (live + frozen) | by hand downtime | by hand gap | by hand bytes | floor | frozen / by hand | frozen / floor |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        ));
        for &mib in &cfg.sizes {
            for &dirty in &cfg.dirty {
                let mut per: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
                for run in 0..cfg.runs {
                    let older = cfg.compare_protocol.map(|p| ("ferry-older", p));
                    for (method, f) in [
                        ("ferry", Bench::ferry as fn(&Bench, u64, f64) -> Result<Sample>),
                        ("naive", Bench::naive),
                        ("floor", Bench::floor),
                    ]
                    .into_iter()
                    .map(|(m, f)| (m, Some(f)))
                    .chain(older.map(|(m, _)| (m, None)))
                    {
                        let s = match f {
                            Some(f) => f(&bench, mib, dirty),
                            // The older protocol may fail where the current one does not (its
                            // store keeps every page it was sent): that is a result, not the
                            // end of the run.
                            None => match bench.ferry_at(mib, dirty, cfg.compare_protocol) {
                                Ok(s) => Ok(s),
                                Err(e) => {
                                    eprintln!("    {mib} MiB {dirty} %/s run {}: {method} failed: {e:#}", run + 1);
                                    older_failures
                                        .entry((mib, dirty.to_bits()))
                                        .or_insert_with(|| format!("{e:#}"));
                                    remove(&bench.lab, &bench.vzctl, CTID);
                                    continue;
                                }
                            },
                        }
                        .with_context(|| format!("{method}, {mib} MiB, {dirty} %/s, {name}"))?;
                        eprintln!(
                            "    {mib} MiB {dirty} %/s run {}: {method} down {:.0} ms, gap {:.0} ms, {} bytes",
                            run + 1,
                            s.downtime_ms,
                            s.gap_ms,
                            s.wire_bytes
                        );
                        per.entry(method).or_default().push(s);
                    }
                }
                let (fe, na, fl) = (&per["ferry"], &per["naive"], &per["floor"]);
                let mb = |b: f64| b / 1048576.0;
                let ratio_naive: Vec<f64> = fe.iter().zip(na).map(|(a, b)| a.downtime_ms / b.downtime_ms).collect();
                let ratio_floor: Vec<f64> = fe.iter().zip(fl).map(|(a, b)| a.downtime_ms / b.downtime_ms).collect();
                let (rn, rf) = (Spread::of(&ratio_naive), Spread::of(&ratio_floor));
                md.push_str(&format!(
                    "| {mib} | {dirty} | {} | {} | {} | {} | {} ({} + {}) | {} | {} | {} | {} | {} | {} |\n",
                    spread(fe, |s| s.downtime_ms).show(0),
                    spread(fe, |s| s.gap_ms).show(0),
                    spread(fe, |s| s.total_ms).show(0),
                    spread(fe, |s| s.drain_ms).show(0),
                    spread(fe, |s| mb(s.wire_bytes as f64)).show(1),
                    spread(fe, |s| mb(s.live_bytes as f64)).show(1),
                    spread(fe, |s| mb(s.frozen_bytes as f64)).show(1),
                    spread(na, |s| s.downtime_ms).show(0),
                    spread(na, |s| s.gap_ms).show(0),
                    spread(na, |s| mb(s.wire_bytes as f64)).show(1),
                    spread(fl, |s| s.downtime_ms).show(0),
                    rn.show(2),
                    rf.show(2),
                ));
                phase_rows.push(phase_row(mib, dirty, "current", fe));
                if let (Some(p), Some(why)) = (cfg.compare_protocol, older_failures.get(&(mib, dirty.to_bits()))) {
                    phase_rows.push(format!(
                        "| {mib} | {dirty} | version {p} | failed {} of {} runs: {} | | | | | |\n",
                        cfg.runs - per.get("ferry-older").map_or(0, Vec::len),
                        cfg.runs,
                        why.rsplit(": ").next().unwrap_or(why).replace('|', "/")
                    ));
                }
                if let (Some(p), Some(old)) = (cfg.compare_protocol, per.get("ferry-older")) {
                    phase_rows.push(phase_row(mib, dirty, &format!("version {p}"), old));
                    let ratio: Vec<f64> = fe.iter().zip(old).map(|(a, b)| a.downtime_ms / b.downtime_ms).collect();
                    phase_rows.push(format!(
                        "| {mib} | {dirty} | current / version {p} | {} | | | | | |\n",
                        Spread::of(&ratio).show(2)
                    ));
                }
                let fb = spread(fe, |s| s.frozen_bytes as f64).median;
                let db = spread(fe, |s| s.dirty_bytes as f64).median;
                frozen_checks.push(format!(
                    "{mib} MiB, {dirty} %/s, {name}: {:.1} MiB frozen vs {:.1} MiB dirtied: {}",
                    fb / 1048576.0,
                    db / 1048576.0,
                    verdict(fb, 1.2 * db + 1048576.0, true)
                ));
                let frozen = spread(fe, |s| s.downtime_ms).median;
                let gap = spread(fe, |s| s.gap_ms).median;
                gap_checks.push(format!(
                    "{mib} MiB, {dirty} %/s, {name}: gap {gap:.0} ms vs frozen {frozen:.0} + 100 ms: {}",
                    verdict(gap, frozen + 100.0, true)
                ));
                if mib == 512 && dirty == 1.0 && link.as_deref() == Some("1gbit") {
                    targets.push(at_most(
                        "frozen time <= 0.3 x by hand (512 MiB, 1 %/s, 1 Gbit/s)",
                        rn.median,
                        0.3,
                    ));
                    targets.push(at_most(
                        "frozen time <= 1.3 x local floor (512 MiB, 1 %/s, 1 Gbit/s)",
                        rf.median,
                        1.3,
                    ));
                }
                if dirty == 0.0 {
                    // An idle container's whole state: its memory (memhog's M MiB dominates the
                    // resident set) and its private area (the busybox template, ~2 MiB).
                    let base = (mib << 20) as f64 + (2u64 << 20) as f64;
                    idle_ratio.push((
                        format!("{mib} MiB, {name}"),
                        spread(fe, |s| s.wire_bytes as f64).median / base,
                    ));
                }
                let mut entry = serde_json::json!({
                    "link": name, "mib": mib, "dirty_pct": dirty,
                    "ferry": fe, "naive": na, "floor": fl,
                    "frozen_over_naive": rn, "frozen_over_floor": rf,
                });
                if let (Some(p), Some(old)) = (cfg.compare_protocol, per.get("ferry-older")) {
                    entry["ferry_older"] = serde_json::json!({ "protocol": p, "samples": old });
                }
                // Every echo's wait in the first run of each method, for the timeline plot.
                if dirty == plot_dirty && mib == max_mib {
                    entry["timeline_all"] = serde_json::json!({ "ferry": fe[0].all, "by hand": na[0].all });
                }
                json.push(entry);
            }
        }
        md.push_str(&format!(
            "\nWhere ferry's frozen time goes on this link: the final dump (its pages streamed to the \
             destination as CRIU dumps them), the rest of the final transfer (images, files), and the \
             destination's restore up to the commit.\n\n| M | D %/s | ferry | frozen | final dump | rest of the final \
             transfer | restore and commit | on the wire while frozen (MiB) | protocol |\n|---|---|---|---|---|---|---|---|---|\n{}",
            phase_rows.concat()
        ));
        phase_rows.clear();
        md.push('\n');
        drop(bench);
    }
    let _ = std::fs::remove_dir_all(&work);
    let plots = plots(&json, out)?;
    for p in &plots {
        md.push_str(&format!("![{p}]({p})\n\n"));
    }
    md.push_str("### Targets\n\n");
    if targets.is_empty() {
        md.push_str("- frozen time against by hand and the floor: measured at 512 MiB, 1 %/s on the 1 Gbit/s link, which this configuration does not include\n");
    }
    for t in targets {
        md.push_str(&t);
        md.push('\n');
    }
    md.push_str("- the client's longest gap <= frozen time + 100 ms:\n");
    for g in gap_checks {
        md.push_str(&format!("  - {g}\n"));
    }
    md.push_str("- total bytes of an idle container's online migration <= 1.1 x (resident memory + private area):\n");
    for (what, r) in idle_ratio {
        md.push_str(&format!("  - {what}: {}\n", verdict(r, 1.1, true)));
    }
    md.push_str(
        "- bytes sent while frozen <= 1.2 x the pages dirtied since the last pre-copy round + 1 MiB (the final \
         dump's pages the destination did not hold):\n",
    );
    for c in frozen_checks {
        md.push_str(&format!("  - {c}\n"));
    }
    md.push('\n');
    Ok(Section {
        markdown: md,
        json: serde_json::Value::Array(json),
    })
}
