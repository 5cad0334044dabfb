//! vzbench: ferry's benchmarks on the testbed. Every figure is printed beside a baseline
//! measured in the same run, on the same lab, as medians with their spread over several runs,
//! and the report says for each target whether it is met and by how much it is missed.
//!
//!   vzbench [--smoke] [--runs N] [--only FAMILY,...] [--out DIR]
//!
//! Families: `migration` (ferry's live migration against checkpoint-copy-restore by hand and
//! against the local checkpoint/restore floor, with a memory workload and a TCP client),
//! `sync` (ferry's file passes against rsync to an rsync daemon), `transport` (one QUIC
//! connection between agents' endpoints against a raw TCP stream), `checkpoint` (`vzctl
//! chkpnt`/`restore` against CRIU's command line on the same container), `userns` (a user
//! namespace's cost), `listing` (`vzlist -a` at two container counts against the floor of
//! reading its inputs once).
//! The report goes to DIR/RESULTS.md and DIR/results.json (default docs/bench); a run of some
//! families replaces their sections and keeps the others' from the last run that measured them
//! (each section says when it was measured).

mod checkpoint;
mod filesync;
mod listing;
mod migration;
mod plot;
mod stats;
mod transport;
mod userns;
mod workload;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "vzbench",
    about = "ferry's benchmarks against same-run baselines, on the testbed"
)]
struct Args {
    /// The small configuration CI runs: checks that the harness works, not how fast
    #[arg(long)]
    smoke: bool,
    /// Runs of each measurement (medians and spread over them)
    #[arg(long)]
    runs: Option<usize>,
    /// Families to run, comma-separated: transport, migration, sync, checkpoint, userns, listing
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where RESULTS.md and results.json go
    #[arg(long)]
    out: Option<PathBuf>,
    /// Measure nothing: redraw the migration plots from DIR/results.json
    #[arg(long)]
    replot: bool,
    /// Migration: memory sizes in MiB (default 64,256,512,1024; smoke 16)
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<u64>,
    /// Migration: dirty rates in percent of the pages per second (default 0,1,10; smoke 0)
    #[arg(long, value_delimiter = ',')]
    dirty: Vec<f64>,
    /// Migration: links, "none" or a tbf rate (default none,1gbit; smoke none)
    #[arg(long, value_delimiter = ',')]
    links: Vec<String>,
    /// Migration: also move the container with vzmigrate speaking this older protocol
    /// version (FERRY_PROTOCOL_MAX), alternating with the current one, and compare them
    #[arg(long)]
    compare_protocol: Option<u32>,
}

/// Where the ferry binaries are: beside vzbench (cargo builds them all into one directory).
pub fn bin(name: &str) -> Result<PathBuf> {
    let p = std::env::current_exe()?
        .parent()
        .map(|d| d.join(name))
        .context("locating the ferry binaries")?;
    if !p.is_file() {
        bail!(
            "{} is missing: build the workspace first (cargo build --release --workspace)",
            p.display()
        );
    }
    Ok(p)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem = ferry::migrate::capacity::meminfo("MemTotal").unwrap_or(0) >> 30;
    let criu = ferry::migrate::local_caps().criu_version;
    format!(
        "{cpus} x {cpu}, {mem} GiB RAM, kernel {}, CRIU {criu}",
        ferry::criu::kernel()
    )
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("vzbench: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    if args.replot {
        return replot(&args.out.clone().unwrap_or_else(default_out));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("vzbench needs root (network namespaces, containers, CRIU): run it as root");
    }
    for f in &args.only {
        if !FAMILIES.iter().any(|(k, _)| k == f) {
            bail!("unknown family {f:?}: transport, migration, sync, checkpoint, userns, listing");
        }
    }
    // What an interrupted run left behind (labs, their tmpfs mounts).
    let _ = ferry_testbed::down_all(std::path::Path::new("/tmp/ferry-bench"));
    let want = |f: &str| args.only.is_empty() || args.only.iter().any(|o| o == f);
    let runs = args.runs.unwrap_or(if args.smoke { 1 } else { 3 }).max(1);
    let out = args.out.clone().unwrap_or_else(default_out);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let date = String::from_utf8_lossy(
        &std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()?
            .stdout,
    )
    .trim()
    .to_string();
    let header = format!(
        "# ferry benchmarks\n\n{}.\nFigures are medians with [min-max] over several runs; each section says when it was \
         measured and how many runs it took.\n\n",
        machine(),
    );
    let smoke = if args.smoke {
        " Smoke configuration: it shows the harness works, not how fast ferry is."
    } else {
        ""
    };
    let stamp = |s: Section, runs: usize| Section {
        markdown: insert_stamp(
            &s.markdown,
            &format!("_Measured {date}, {runs} run(s) per figure._{smoke}"),
        ),
        json: s.json,
    };
    if want("transport") {
        eprintln!("vzbench: transport");
        let r = transport::run(args.smoke, runs.max(3))?;
        save(&header, &out, "transport", stamp(r, runs.max(3)))?;
    }
    // What was asked for, else the smoke or the full configuration.
    fn pick<T: Clone>(given: &[T], smoke: bool, small: &[T], full: &[T]) -> Vec<T> {
        if !given.is_empty() {
            given.to_vec()
        } else if smoke {
            small.to_vec()
        } else {
            full.to_vec()
        }
    }
    let none = || "none".to_string();
    let links: Vec<Option<String>> = pick(&args.links, args.smoke, &[none()], &[none(), "1gbit".into()])
        .into_iter()
        .map(|l| (l != "none").then_some(l))
        .collect();
    if want("migration") {
        eprintln!("vzbench: migration");
        let cfg = migration::Config {
            sizes: pick(&args.sizes, args.smoke, &[16], &[64, 256, 512, 1024]),
            dirty: pick(&args.dirty, args.smoke, &[0.0], &[0.0, 1.0, 10.0]),
            links: links.clone(),
            runs,
            compare_protocol: args.compare_protocol,
        };
        let r = migration::run(&cfg, &out)?;
        save(&header, &out, "migration", stamp(r, runs))?;
    }
    if want("sync") {
        eprintln!("vzbench: sync");
        let cfg = filesync::Config {
            smoke: args.smoke,
            runs,
            links: links.clone(),
        };
        save(&header, &out, "sync", stamp(filesync::run(&cfg)?, runs))?;
    }
    if want("checkpoint") {
        eprintln!("vzbench: checkpoint");
        let cfg = checkpoint::Config {
            sizes: pick(&args.sizes, args.smoke, &[16], &[1, 256, 1024]),
            runs: if args.smoke { runs } else { runs.max(5) },
        };
        let n = cfg.runs;
        save(&header, &out, "checkpoint", stamp(checkpoint::run(&cfg)?, n))?;
    }
    if want("userns") {
        eprintln!("vzbench: userns");
        let cfg = userns::Config {
            sizes: pick(&args.sizes, args.smoke, &[16], &[16, 256]),
            runs: if args.smoke { runs } else { runs.max(5) },
        };
        let n = cfg.runs;
        save(&header, &out, "userns", stamp(userns::run(&cfg)?, n))?;
    }
    if want("listing") {
        eprintln!("vzbench: listing");
        let cfg = listing::Config {
            counts: if args.smoke { vec![4, 8] } else { vec![50, 200] },
            runs: if args.smoke { runs } else { runs.max(5) },
        };
        let n = cfg.runs;
        save(&header, &out, "listing", stamp(listing::run(&cfg)?, n))?;
    }
    if let Ok(md) = std::fs::read_to_string(out.join("RESULTS.md")) {
        print!("{md}");
    }
    eprintln!("vzbench: report in {}", out.join("RESULTS.md").display());
    Ok(())
}

/// Writes a family's section into the report as soon as it is measured (so a later family's
/// failure loses nothing measured before it), keeping the other families' sections.
fn save(header: &str, out: &std::path::Path, family: &str, section: Section) -> Result<()> {
    let (md, json) = merge(header, out, family, section);
    std::fs::write(out.join("RESULTS.md"), &md)?;
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&json)?)?;
    Ok(())
}

fn default_out() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/bench")
}

/// Redraws the migration plots from a report's results.json and points RESULTS.md at them.
fn replot(out: &std::path::Path) -> Result<()> {
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("results.json")).with_context(|| format!("reading {}/results.json", out.display()))?,
    )?;
    let entries = json["migration"]
        .as_array()
        .context("results.json holds no migration results")?;
    let files = migration::plots(entries, out)?;
    let md_path = out.join("RESULTS.md");
    let mut md = std::fs::read_to_string(&md_path)?;
    for f in &files {
        let old = f.replace(".png", ".svg");
        md = md.replace(&format!("![{old}]({old})"), &format!("![{f}]({f})"));
        let _ = std::fs::remove_file(out.join(&old));
        eprintln!("vzbench: drew {}", out.join(f).display());
    }
    std::fs::write(&md_path, md)?;
    Ok(())
}

/// The families in the report's order, with their sections' headings.
const FAMILIES: [(&str, &str); 6] = [
    ("transport", "## Transport"),
    ("migration", "## Migration"),
    ("sync", "## File sync"),
    ("checkpoint", "## Checkpoint"),
    ("userns", "## User namespaces"),
    ("listing", "## Listing"),
];

/// Puts a line under a section's heading.
fn insert_stamp(md: &str, line: &str) -> String {
    match md.split_once("\n\n") {
        Some((heading, rest)) => format!("{heading}\n\n{line}\n\n{rest}"),
        None => format!("{md}\n\n{line}\n"),
    }
}

/// The sections of an earlier report, by family.
fn sections_of(md: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let starts: Vec<(usize, &'static str)> = FAMILIES
        .iter()
        .filter_map(|(k, h)| md.find(&format!("\n{h}\n")).map(|i| (i + 1, *k)))
        .collect();
    for (i, k) in &starts {
        let end = starts.iter().map(|s| s.0).filter(|s| s > i).min().unwrap_or(md.len());
        out.push((*k, md[*i..end].trim_end().to_string() + "\n\n"));
    }
    out
}

/// The report with `family`'s new section and the report's sections of the other families.
fn merge(header: &str, out: &std::path::Path, family: &str, section: Section) -> (String, serde_json::Value) {
    let old_md = std::fs::read_to_string(out.join("RESULTS.md")).unwrap_or_default();
    let old_json: serde_json::Value = std::fs::read(out.join("results.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let old = sections_of(&old_md);
    let mut md = header.to_string();
    let mut json = serde_json::Map::new();
    for (k, _) in FAMILIES {
        if k == family {
            md.push_str(&section.markdown);
            json.insert(k.into(), section.json.clone());
        } else if let Some((_, s)) = old.iter().find(|(f, _)| *f == k) {
            md.push_str(s);
            if let Some(v) = old_json.get(k) {
                json.insert(k.into(), v.clone());
            }
        }
    }
    (md, serde_json::Value::Object(json))
}

/// A family's part of the report.
pub struct Section {
    pub markdown: String,
    pub json: serde_json::Value,
}

impl Section {
    /// A family's section: its text, then its targets' lines under "Targets".
    pub fn with_targets(mut markdown: String, targets: &[String], json: Vec<serde_json::Value>) -> Section {
        markdown.push_str("### Targets\n\n");
        for t in targets {
            markdown.push_str(t);
            markdown.push('\n');
        }
        markdown.push('\n');
        Section {
            markdown,
            json: serde_json::Value::Array(json),
        }
    }
}
