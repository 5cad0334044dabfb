//! vzbench: ferry's benchmarks on the testbed. Every figure is printed beside a baseline
//! measured in the same run, on the same lab, as medians with their spread over several runs,
//! and the report says for each target whether it is met and by how much it is missed.
//!
//!   vzbench [--smoke] [--runs N] [--only FAMILY,...] [--out DIR]
//!
//! Families: `migration` (ferry's live migration against checkpoint-copy-restore by hand and
//! against the local checkpoint/restore floor, with a memory workload and a TCP client),
//! `transport` (one QUIC connection between agents' endpoints against a raw TCP stream).
//! The report goes to DIR/RESULTS.md and DIR/results.json (default docs/bench).

mod migration;
mod plot;
mod stats;
mod transport;
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
    /// Families to run, comma-separated: migration, transport
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where RESULTS.md and results.json go
    #[arg(long)]
    out: Option<PathBuf>,
    /// Migration: memory sizes in MiB (default 64,256,512,1024; smoke 16)
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<u64>,
    /// Migration: dirty rates in percent of the pages per second (default 0,1,10; smoke 0)
    #[arg(long, value_delimiter = ',')]
    dirty: Vec<f64>,
    /// Migration: links, "none" or a tbf rate (default none,1gbit; smoke none)
    #[arg(long, value_delimiter = ',')]
    links: Vec<String>,
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
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("vzbench needs root (network namespaces, containers, CRIU): run it as root");
    }
    for f in &args.only {
        if !["migration", "transport"].contains(&f.as_str()) {
            bail!("unknown family {f:?}: migration, transport");
        }
    }
    // What an interrupted run left behind (labs, their tmpfs mounts).
    let _ = ferry_testbed::down_all(std::path::Path::new("/tmp/ferry-bench"));
    let want = |f: &str| args.only.is_empty() || args.only.iter().any(|o| o == f);
    let runs = args.runs.unwrap_or(if args.smoke { 1 } else { 3 }).max(1);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/bench"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let date = String::from_utf8_lossy(
        &std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()?
            .stdout,
    )
    .trim()
    .to_string();
    let mut md = format!(
        "# ferry benchmarks\n\n{date}, {}.\n{} run(s) per measurement; figures are medians with [min-max].{}\n\n",
        machine(),
        runs,
        if args.smoke {
            " Smoke configuration: it shows the harness works, not how fast ferry is."
        } else {
            ""
        }
    );
    let mut json = serde_json::Map::new();
    if want("transport") {
        eprintln!("vzbench: transport");
        let r = transport::run(args.smoke, runs.max(3))?;
        md.push_str(&r.markdown);
        json.insert("transport".into(), r.json);
    }
    if want("migration") {
        eprintln!("vzbench: migration");
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
        let cfg = migration::Config {
            sizes: pick(&args.sizes, args.smoke, &[16], &[64, 256, 512, 1024]),
            dirty: pick(&args.dirty, args.smoke, &[0.0], &[0.0, 1.0, 10.0]),
            links: pick(&args.links, args.smoke, &[none()], &[none(), "1gbit".into()])
                .into_iter()
                .map(|l| (l != "none").then_some(l))
                .collect(),
            runs,
        };
        let r = migration::run(&cfg, &out)?;
        md.push_str(&r.markdown);
        json.insert("migration".into(), r.json);
    }
    std::fs::write(out.join("RESULTS.md"), &md)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&serde_json::Value::Object(json))?,
    )?;
    print!("{md}");
    eprintln!("vzbench: report in {}", out.join("RESULTS.md").display());
    Ok(())
}

/// A family's part of the report.
pub struct Section {
    pub markdown: String,
    pub json: serde_json::Value,
}
