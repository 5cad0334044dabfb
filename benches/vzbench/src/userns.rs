//! User namespaces: what a container's own user namespace costs. `vzctl create` + `vzctl start`
//! of a busybox container, and `vzctl chkpnt` + `vzctl restore` of one holding M MiB (memhog,
//! idle), with a user namespace and privileged, alternated run by run on one lab host. The user
//! namespace adds an idmapped mount of the root, a mapped user namespace, device nodes bound
//! rather than made, and at restore the veth pair made beforehand and the dumped namespace
//! pointed at the container's range.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use ferry_testbed::{Lab, LabConfig};

use crate::stats::{at_most, Spread};
use crate::workload::{container, on, remove, Load};
use crate::{bin, Section};

const CTID: &str = "303";
const IP: &str = "198.18.0.53";

#[derive(Debug, Clone)]
pub struct Config {
    pub sizes: Vec<u64>,
    pub runs: usize,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
struct Sample {
    /// ms
    create_start: f64,
    chkpnt: f64,
    restore: f64,
}

struct Bench {
    lab: Lab,
    vzctl: PathBuf,
    memhog: PathBuf,
}

impl Drop for Bench {
    fn drop(&mut self) {
        remove(&self.lab, &self.vzctl, CTID);
    }
}

impl Bench {
    fn ms(t: Instant) -> f64 {
        t.elapsed().as_secs_f64() * 1000.0
    }

    fn one(&self, mib: u64, userns: bool) -> Result<Sample> {
        let u = if userns { "yes" } else { "no" };
        remove(&self.lab, &self.vzctl, CTID);
        let t = Instant::now();
        on(
            &self.lab,
            "hostA",
            &self.vzctl,
            &["create", CTID, "--ipadd", IP, "--userns", u],
        )?;
        on(&self.lab, "hostA", &self.vzctl, &["start", CTID])?;
        let create_start = Self::ms(t);
        remove(&self.lab, &self.vzctl, CTID);
        container(
            &self.lab,
            "hostA",
            &self.vzctl,
            &self.memhog,
            CTID,
            IP,
            Load { mib, dirty: 0.0 },
            userns,
        )?;
        let t = Instant::now();
        on(&self.lab, "hostA", &self.vzctl, &["chkpnt", CTID])?;
        let chkpnt = Self::ms(t);
        let t = Instant::now();
        on(&self.lab, "hostA", &self.vzctl, &["restore", CTID])?;
        let restore = Self::ms(t);
        remove(&self.lab, &self.vzctl, CTID);
        Ok(Sample {
            create_start,
            chkpnt,
            restore,
        })
    }
}

pub fn run(cfg: &Config) -> Result<Section> {
    let work = std::env::temp_dir().join(format!("vzbench-userns-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let memhog = crate::workload::build_memhog(&work)?;
    let mut lc = LabConfig::new(&format!("bu{}", std::process::id() % 100000));
    lc.base = "/tmp/ferry-bench".into();
    lc.hosts = vec!["hostA".into()];
    let bench = Bench {
        lab: Lab::up(&lc).context("bringing the lab up")?,
        vzctl: bin("vzctl")?,
        memhog,
    };
    let mut md = String::from(
        "## User namespaces\n\nWhat a container's own user namespace costs: `vzctl create` + `vzctl start` of a busybox \
         container, and `vzctl chkpnt` + `vzctl restore` of one holding M MiB (memhog, idle), with a user namespace \
         and privileged, alternated run by run on one host. Times in ms; medians [min-max]; ratios userns / \
         privileged (target: at most 1.1).\n\n\
         | M | create+start priv | userns | ratio | chkpnt priv | userns | ratio | restore priv | userns | ratio |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut json = Vec::new();
    let mut targets = Vec::new();
    for &mib in &cfg.sizes {
        let (mut p, mut u) = (Vec::new(), Vec::new());
        for run in 0..cfg.runs {
            let order = if run % 2 == 0 { [false, true] } else { [true, false] };
            for userns in order {
                let s = bench
                    .one(mib, userns)
                    .with_context(|| format!("{mib} MiB, userns {userns}"))?;
                eprintln!(
                    "    {mib} MiB run {} {}: create+start {:.0} ms, chkpnt {:.0} ms, restore {:.0} ms",
                    run + 1,
                    if userns { "userns" } else { "privileged" },
                    s.create_start,
                    s.chkpnt,
                    s.restore
                );
                if userns { &mut u } else { &mut p }.push(s);
            }
        }
        let col = |v: &[Sample], f: fn(&Sample) -> f64| Spread::of(&v.iter().map(f).collect::<Vec<_>>());
        let mut row = format!("| {mib} |");
        let mut ratios = serde_json::Map::new();
        for (name, f) in [
            ("create_start", (|s: &Sample| s.create_start) as fn(&Sample) -> f64),
            ("chkpnt", |s: &Sample| s.chkpnt),
            ("restore", |s: &Sample| s.restore),
        ] {
            let (a, b) = (col(&p, f), col(&u, f));
            let ratio = b.median / a.median;
            row.push_str(&format!(" {} | {} | {ratio:.2} |", a.show(0), b.show(0)));
            targets.push(at_most(&format!("{name} userns / privileged at {mib} MiB"), ratio, 1.1));
            ratios.insert(name.into(), ratio.into());
        }
        md.push_str(&row);
        md.push('\n');
        json.push(serde_json::json!({ "mib": mib, "privileged": p, "userns": u, "ratios": ratios }));
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(Section::with_targets(md, &targets, json))
}
