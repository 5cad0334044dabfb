//! Listing: `vzlist -a` over N mounted containers, at two counts, against the floor of reading
//! the same inputs (every container's configuration and the mount table once) in this process.
//! The target is linear cost: the time per container at the larger count at most 1.5 x the time
//! per container at the smaller one (a mount table read per container made it grow with the
//! square of the count).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use ferry_testbed::{Lab, LabConfig};

use crate::stats::{at_most, Spread};
use crate::workload::on;
use crate::{bin, Section};

#[derive(Debug, Clone)]
pub struct Config {
    /// Container counts, smaller first.
    pub counts: Vec<usize>,
    pub runs: usize,
}

const FIRST: u32 = 1001;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// The floor: what any listing must read, once (the configurations, the mount table).
fn floor(root: &Path, n: usize) -> Result<f64> {
    let t = Instant::now();
    let mut bytes = std::fs::read("/proc/self/mountinfo")?.len();
    for i in 0..n {
        let id = FIRST + i as u32;
        bytes += std::fs::read(root.join(format!("etc/vz/conf/{id}.conf")))?.len();
    }
    std::hint::black_box(bytes);
    Ok(ms(t))
}

pub fn run(cfg: &Config) -> Result<Section> {
    let mut lc = LabConfig::new(&format!("bl{}", std::process::id() % 100000));
    lc.base = "/tmp/ferry-bench".into();
    lc.hosts = vec!["hostA".into()];
    let lab = Lab::up(&lc).context("bringing the lab up")?;
    let vzctl = bin("vzctl")?;
    let vzlist: PathBuf = bin("vzlist")?;
    let root = lab.host("hostA").root.clone();
    let mut md = String::from(
        "## Listing\n\n`vzlist -a` over N mounted containers (busybox, simfs) on one host, against the floor of \
         reading the same inputs once in-process (every configuration, the mount table). Times in ms; medians \
         [min-max].\n\n| N | vzlist -a | per container | floor | vzlist / floor |\n|---|---|---|---|---|\n",
    );
    let mut json = Vec::new();
    let mut per = Vec::new();
    let mut made = 0;
    for &n in &cfg.counts {
        while made < n {
            let id = (FIRST + made as u32).to_string();
            on(&lab, "hostA", &vzctl, &["create", &id])?;
            on(&lab, "hostA", &vzctl, &["mount", &id])?;
            made += 1;
        }
        let (mut list, mut fl) = (Vec::new(), Vec::new());
        for _ in 0..cfg.runs {
            let t = Instant::now();
            let out = on(&lab, "hostA", &vzlist, &["-a", "-H", "-o", "ctid,status"])?;
            list.push(ms(t));
            let mounted = out.lines().filter(|l| l.contains("mounted")).count();
            anyhow::ensure!(
                mounted == n,
                "vzlist showed {mounted} mounted containers of {n}:\n{out}"
            );
            fl.push(floor(&root, n)?);
        }
        let (l, f) = (Spread::of(&list), Spread::of(&fl));
        let each = l.median / n as f64;
        eprintln!(
            "    {n} containers: vzlist {:.1} ms, floor {:.2} ms",
            l.median, f.median
        );
        md.push_str(&format!(
            "| {n} | {} | {each:.2} | {} | {:.0} |\n",
            l.show(1),
            f.show(2),
            l.median / f.median.max(0.001)
        ));
        per.push((n, each));
        json.push(serde_json::json!({ "containers": n, "vzlist_ms": list, "floor_ms": fl }));
    }
    let mut targets = Vec::new();
    if let (Some((a, pa)), Some((b, pb))) = (per.first(), per.last()) {
        if b > a {
            targets.push(at_most(
                &format!("time per container at {b} / at {a} (linear: 1)"),
                pb / pa,
                1.5,
            ));
        }
    }
    for i in 0..made {
        let id = (FIRST + i as u32).to_string();
        let _ = on(&lab, "hostA", &vzctl, &["umount", &id]);
    }
    drop(lab);
    Ok(Section::with_targets(md, &targets, json))
}
