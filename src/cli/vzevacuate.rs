//! `vzevacuate`: move every container off this host before maintenance, and bring them back
//! with `--return`.
//!
//! The plan comes from the peers' capacity answers (evacuate::plan). Each container moves with
//! its own `vzmigrate` child (so a failure, a crash or a Ctrl-C affects one migration, and each
//! keeps vzmigrate's rollback and recovery); `--return` asks each peer, through the pull call,
//! to run vzmigrate back to this host. The journal (evacuate::Journal) makes both resumable.

use std::collections::{HashMap, VecDeque};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use migrate_proto::msg::{Capacity, PullRequest};

use super::{parse, parse_duration, report, require_root, CliError, Global};
use crate::agent::trust::{Identity, Peer, TrustStore};
use crate::ctid::Ctid;
use crate::evacuate::{plan, Candidate, Journal, Placement, State};
use crate::host::Host;
use crate::migrate::child::{Event, Report};
use crate::migrate::wire::parse_rate;
use crate::runtime::Runtime;

#[derive(Debug, Parser)]
#[command(
    name = "vzevacuate",
    version,
    about = "Move every container off this host (running ones live), and back with --return",
    after_help = "Peers are those pinned with `vzagentd trust add`. The journal is vz/run/evacuation.json: \
                  running vzevacuate again carries on where an interrupted run stopped. Exit codes: docs/exit-codes.md"
)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,
    /// Peers to move containers to, comma-separated (default: every pinned peer)
    #[arg(long, value_delimiter = ',', value_name = "PEER[,PEER...]")]
    pub to: Vec<String>,
    /// Migrations at once
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// One bandwidth budget shared by all migrations: bytes per second (50M) or bits (100mbit)
    #[arg(long, default_value = "0")]
    pub bwlimit: String,
    /// Frozen-time budget of each live migration, e.g. 500ms or 2s
    #[arg(long = "max-downtime", default_value = "2s")]
    pub max_downtime: String,
    /// Also move stopped containers (offline)
    #[arg(long)]
    pub all: bool,
    /// Only print the plan
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Bring back the containers the last evacuation moved
    #[arg(long = "return")]
    pub return_home: bool,
    /// JSON output
    #[arg(short = 'j', long)]
    pub json: bool,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

pub fn main() -> ! {
    let args: Args = parse();
    super::init_logging(args.global.verbose);
    let code = match run(args) {
        Ok(()) => 0,
        Err(e) => report("vzevacuate", &e),
    };
    std::process::exit(code)
}

enum Note {
    /// A migration began: a local vzmigrate's pid and the gate it waits at, opened once the
    /// pid is in the journal (none for a pull).
    Started(u32, Option<(u32, crate::migrate::child::Gate)>),
    Line(u32, String),
    Done(u32, Result<Report, String>),
}

/// One migration to run: pushed by a local vzmigrate, or pulled back from a peer.
struct Job {
    ctid: u32,
    peer: Peer,
    online: bool,
}

struct Settings {
    root: PathBuf,
    vzmigrate: PathBuf,
    max_downtime: String,
    max_downtime_ms: u64,
    rate: u64,
    parallel: usize,
    rate_file: PathBuf,
    id: Arc<Identity>,
}

/// Progress: one spinner per migration and a total bar on a terminal, plain lines otherwise.
struct Ui {
    multi: Option<(indicatif::MultiProgress, indicatif::ProgressBar)>,
    bars: HashMap<u32, indicatif::ProgressBar>,
    quiet: bool,
}

impl Ui {
    fn new(quiet: bool, total: usize) -> Self {
        let multi = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let m = indicatif::MultiProgress::new();
            let t = m.add(indicatif::ProgressBar::new(total as u64));
            t.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} containers {msg} [{elapsed}]")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            (m, t)
        });
        Self {
            multi,
            bars: HashMap::new(),
            quiet,
        }
    }

    fn line(&mut self, ctid: u32, peer: &str, msg: &str) {
        match &self.multi {
            Some((m, _)) => {
                let b = self.bars.entry(ctid).or_insert_with(|| {
                    let b = m.insert_from_back(1, indicatif::ProgressBar::new_spinner());
                    b.enable_steady_tick(Duration::from_millis(120));
                    b.set_prefix(format!("{ctid} -> {peer}"));
                    b.set_style(
                        indicatif::ProgressStyle::with_template("{spinner} {prefix}: {msg}")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                    );
                    b
                });
                b.set_message(msg.to_string());
            }
            None if !self.quiet => eprintln!("{ctid} -> {peer}: {msg}"),
            None => {}
        }
    }

    fn done(&mut self, ctid: u32, peer: &str, msg: &str) {
        if let Some(b) = self.bars.remove(&ctid) {
            b.finish_and_clear();
        }
        if let Some((m, t)) = &self.multi {
            t.inc(1);
            let _ = m.println(format!("{ctid} -> {peer}: {msg}"));
        } else if !self.quiet {
            eprintln!("{ctid} -> {peer}: {msg}");
        }
    }

    fn finish(&mut self) {
        for (_, b) in self.bars.drain() {
            b.finish_and_clear();
        }
        if let Some((_, t)) = self.multi.take() {
            t.finish_and_clear();
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let bad = |m: String| -> anyhow::Error { CliError::BadOption(m).into() };
    if args.parallel == 0 || args.parallel > 16 {
        return Err(bad(format!("--parallel {}: between 1 and 16", args.parallel)));
    }
    let rate = parse_rate(&args.bwlimit).map_err(bad)?;
    let max_downtime = parse_duration(&args.max_downtime).ok_or_else(|| {
        bad(format!(
            "invalid --max-downtime {:?}: e.g. 500ms or 2s",
            args.max_downtime
        ))
    })?;
    if args.return_home && args.all {
        return Err(bad("--all has no meaning with --return".into()));
    }
    require_root("vzevacuate")?;
    let host = Host::open(args.global.layout())?;
    host.initialize()?;
    let store = TrustStore::load(&host.layout)?;
    let peers: Vec<Peer> = if args.to.is_empty() {
        store.peers.clone()
    } else {
        args.to
            .iter()
            .map(|n| {
                store.find(n).cloned().ok_or_else(|| {
                    bad(format!(
                        "{n} is not a pinned peer: pin it first with `vzagentd trust add NAME ADDRESS FINGERPRINT`"
                    ))
                })
            })
            .collect::<Result<_>>()?
    };
    if peers.is_empty() && !args.return_home {
        return Err(bad("no pinned peers to move containers to (vzagentd trust add)".into()));
    }
    let id = Arc::new(Identity::load_or_create(
        &host.layout,
        &host.setting("AGENT_NAME", "ferry-host"),
    )?);
    let vzmigrate = crate::fsutil::sibling_binary("vzmigrate");
    let settings = Settings {
        root: host.layout.root().to_path_buf(),
        vzmigrate,
        max_downtime: args.max_downtime.clone(),
        max_downtime_ms: max_downtime.as_millis() as u64,
        rate,
        parallel: args.parallel,
        rate_file: host.layout.run_dir().join("evacuation.rate"),
        id,
    };
    let rt = Runtime::new(host);
    let mut journal = Journal::load(&rt.host.layout)?;
    journal.claim()?;
    if !args.dry_run {
        journal.save(&rt.host.layout)?;
    }
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    let r = if args.return_home {
        return_home(&rt, &args, &settings, &store, &mut journal)
    } else {
        evacuate(&rt, &args, &settings, &peers, &mut journal)
    };
    let _ = std::fs::remove_file(&settings.rate_file);
    if !args.dry_run {
        journal.pid = None;
        journal.save(&rt.host.layout)?;
    }
    r
}

fn exists_here(rt: &Runtime, ctid: u32) -> bool {
    Ctid::new(ctid).is_ok_and(|c| rt.host.layout.ct_conf(c).exists())
}

/// Brings the journal up to date after an interrupted run: waits for migrations still running,
/// settles those whose vzmigrate died (resumed here, or gone if the destination says it
/// committed), and notes which containers arrived
/// or came back.
fn settle(rt: &Runtime, journal: &mut Journal, ui: &mut Ui) -> Result<()> {
    for i in 0..journal.entries.len() {
        let (ctid, peer, state) = {
            let e = &journal.entries[i];
            (e.ctid, e.peer.clone(), e.state)
        };
        match state {
            State::Moving => {
                let id = Ctid::new(ctid)?;
                // The earlier run's vzmigrate: recorded in this journal before it began (it
                // waits at its gate until then), and in its own once it has.
                let recorded = journal.entries[i].pid;
                let still_moving = || {
                    recorded
                        .filter(|p| crate::runtime::proc::runs_as(*p, "vzmigrate"))
                        .or_else(|| crate::migrate::source::moving_pid(rt, id))
                };
                while let Some(pid) = still_moving() {
                    ui.line(
                        ctid,
                        &peer,
                        &format!("waiting for the earlier run's vzmigrate (pid {pid})"),
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                let e = &mut journal.entries[i];
                if !exists_here(rt, ctid) {
                    e.state = State::Moved;
                    e.reason = None;
                } else if crate::migrate::source::journal_path(rt, id).exists() {
                    match crate::migrate::source::recover(rt, id, false) {
                        Ok(msg) => {
                            ui.line(ctid, &peer, &msg);
                            // Resumed here, or (the destination had committed) gone from here.
                            e.state = if exists_here(rt, ctid) {
                                State::Planned
                            } else {
                                State::Moved
                            };
                        }
                        Err(err) => {
                            e.state = State::Failed;
                            e.reason = Some(err.to_string());
                        }
                    }
                } else {
                    e.state = State::Planned;
                }
            }
            State::Returning | State::Moved if exists_here(rt, ctid) => {
                journal.entries[i].state = State::Returned;
            }
            State::Returning => journal.entries[i].state = State::Moved,
            _ => {}
        }
    }
    journal.entries.retain(|e| e.state != State::Returned);
    journal.save(&rt.host.layout)?;
    Ok(())
}

fn evacuate(rt: &Runtime, args: &Args, s: &Settings, peers: &[Peer], journal: &mut Journal) -> Result<()> {
    let mut ui = Ui::new(args.global.quiet, 0);
    settle(rt, journal, &mut ui)?;
    ui.finish();
    let mut cands = Vec::new();
    for ctid in rt.host.ctids()? {
        if journal
            .entries
            .iter()
            .any(|e| e.ctid == ctid.get() && e.state == State::Moving)
        {
            continue;
        }
        let running = rt.run_state(ctid)?.is_some();
        if !running && !args.all {
            continue;
        }
        let needs = crate::migrate::capacity::footprint(rt, &rt.host.container(ctid)?);
        cands.push(Candidate {
            ctid: ctid.get(),
            running,
            ram_bytes: if running { needs.ram_bytes } else { 0 },
            private_bytes: needs.private_bytes,
        });
    }
    let tokio_rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let answers: Vec<(String, Result<Capacity, String>)> = tokio_rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (i, p) in peers.iter().cloned().enumerate() {
            let id = s.id.clone();
            set.spawn(async move {
                let r = tokio::time::timeout(Duration::from_secs(20), crate::migrate::capacity::query(&id, &p)).await;
                let r = match r {
                    Ok(Ok(c)) => Ok(c),
                    Ok(Err(e)) => Err(crate::error::chain_of(&e)),
                    Err(_) => Err("no answer in 20 s".to_string()),
                };
                (i, p.name, r)
            });
        }
        let mut out = set.join_all().await;
        out.sort_by_key(|a| a.0);
        out.into_iter().map(|(_, n, r)| (n, r)).collect()
    });
    let reachable: Vec<(String, Capacity)> = answers
        .iter()
        .filter_map(|(n, r)| r.as_ref().ok().map(|c| (n.clone(), c.clone())))
        .collect();
    let placements = plan(&cands, &reachable);
    if args.dry_run || !args.json {
        print_plan(&answers, &placements, args.json && args.dry_run);
    }
    if args.dry_run {
        return Ok(());
    }
    let mut jobs = VecDeque::new();
    for p in &placements {
        match &p.peer {
            Some(name) => {
                journal.set(p.ctid, name, p.online, State::Planned).reason = None;
                let peer = peers
                    .iter()
                    .find(|x| &x.name == name)
                    .cloned()
                    .expect("placed on a known peer");
                jobs.push_back(Job {
                    ctid: p.ctid,
                    peer,
                    online: p.online,
                });
            }
            None => {
                journal.set(p.ctid, "", p.online, State::Failed).reason = Some(format!(
                    "no peer can take it: {}",
                    p.why_not.clone().unwrap_or_default()
                ));
            }
        }
    }
    journal.save(&rt.host.layout)?;
    let mut ui = Ui::new(args.global.quiet || args.json, jobs.len());
    run_jobs(rt, s, journal, jobs, false, &mut ui)?;
    ui.finish();
    conclude(args, journal, "evacuation", "stay on this host", State::Failed)
}

fn return_home(rt: &Runtime, args: &Args, s: &Settings, store: &TrustStore, journal: &mut Journal) -> Result<()> {
    let mut ui = Ui::new(args.global.quiet, 0);
    settle(rt, journal, &mut ui)?;
    ui.finish();
    let mut jobs = VecDeque::new();
    for e in journal.entries.iter().filter(|e| e.state == State::Moved) {
        if !args.to.is_empty() && !args.to.contains(&e.peer) {
            continue;
        }
        match store.find(&e.peer) {
            Some(p) => jobs.push_back(Job {
                ctid: e.ctid,
                peer: p.clone(),
                online: e.online,
            }),
            None => ui.line(e.ctid, &e.peer, "that peer is no longer pinned: skipped"),
        }
    }
    if args.dry_run {
        for j in &jobs {
            println!(
                "{} <- {} ({})",
                j.ctid,
                j.peer.name,
                if j.online { "online" } else { "offline" }
            );
        }
        return Ok(());
    }
    if jobs.is_empty() && !args.global.quiet {
        eprintln!("vzevacuate: nothing to bring back");
    }
    let mut ui = Ui::new(args.global.quiet || args.json, jobs.len());
    run_jobs(rt, s, journal, jobs, true, &mut ui)?;
    ui.finish();
    let r = conclude(args, journal, "return", "stay where they are", State::Moved);
    // What came back, and what never left, is done with.
    journal
        .entries
        .retain(|e| !matches!(e.state, State::Returned | State::Failed));
    r
}

fn print_plan(answers: &[(String, Result<Capacity, String>)], placements: &[Placement], json: bool) {
    if json {
        let peers: Vec<serde_json::Value> = answers
            .iter()
            .map(|(n, r)| match r {
                Ok(c) => serde_json::json!({"name": n, "capacity": {
                    "mem_available": c.mem_available, "mem_total": c.mem_total,
                    "disk_free": c.disk_free, "disk_total": c.disk_total,
                    "cpus": c.cpus, "containers": c.ctids.len(), "running": c.running}}),
                Err(e) => serde_json::json!({"name": n, "error": e}),
            })
            .collect();
        let out = serde_json::json!({"peers": peers, "plan": placements});
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    println!(
        "{:<10} {:>10} {:>10} {:>5} {:>10}",
        "PEER", "FREE_RAM", "FREE_DISK", "CPUS", "CONTAINERS"
    );
    for (n, r) in answers {
        match r {
            Ok(c) => println!(
                "{:<10} {:>10} {:>10} {:>5} {:>10}",
                n,
                crate::units::size(c.mem_available),
                crate::units::size(c.disk_free),
                c.cpus,
                c.ctids.len()
            ),
            Err(e) => println!("{n:<10} unreachable: {e}"),
        }
    }
    println!();
    println!(
        "{:>6} {:<10} {:<8} {:>8} {:>9}  NOTE",
        "CTID", "PEER", "MODE", "RAM", "PRIVATE"
    );
    for p in placements {
        println!(
            "{:>6} {:<10} {:<8} {:>8} {:>9}  {}",
            p.ctid,
            p.peer.as_deref().unwrap_or("-"),
            if p.online { "online" } else { "offline" },
            crate::units::size(p.ram_bytes),
            crate::units::size(p.private_bytes),
            p.why_not.as_deref().unwrap_or("")
        );
    }
}

/// Prints the table of results (or JSON) and fails if any container did not move.
/// `failed` is the state a failure leaves its container in (with the reason recorded).
fn conclude(args: &Args, journal: &Journal, what: &str, stay: &str, failed_state: State) -> Result<()> {
    let failed: Vec<u32> = journal
        .entries
        .iter()
        .filter(|e| e.state == failed_state && e.reason.is_some())
        .map(|e| e.ctid)
        .collect();
    if args.json {
        let out = serde_json::json!({ "mode": what, "containers": journal.entries });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if !args.global.quiet {
        println!(
            "{:>6} {:<10} {:<9} {:>9} {:>9} {:>12}  NOTE",
            "CTID", "PEER", "RESULT", "FROZEN", "TOTAL", "BYTES"
        );
        // A return lists what it moved; containers that never left are not its business.
        let shown = journal
            .entries
            .iter()
            .filter(|e| failed_state == State::Failed || e.state != State::Failed);
        for e in shown {
            let ms = |v: u64| if v > 0 { format!("{v}ms") } else { "-".into() };
            println!(
                "{:>6} {:<10} {:<9} {:>9} {:>9} {:>12}  {}",
                e.ctid,
                if e.peer.is_empty() { "-" } else { &e.peer },
                format!("{:?}", e.state).to_lowercase(),
                ms(e.frozen_ms),
                ms(e.total_ms),
                if e.wire_bytes > 0 {
                    e.wire_bytes.to_string()
                } else {
                    "-".into()
                },
                e.reason.as_deref().unwrap_or("")
            );
        }
    }
    if STOP.load(Ordering::SeqCst) {
        return Err(CliError::Partial(format!(
            "the {what} was interrupted; run the same command again to carry on"
        ))
        .into());
    }
    if !failed.is_empty() {
        return Err(CliError::Partial(format!(
            "the {what} is incomplete: {} container(s) could not be moved and {stay}: {}",
            failed.len(),
            failed.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
        ))
        .into());
    }
    Ok(())
}

/// Runs the jobs, at most `parallel` at once, recording each step in the journal. Pushes share
/// the bandwidth budget through a rate file (the budget divided by the migrations running);
/// pulls get an equal fixed share, as the peers cannot read it.
fn run_jobs(
    rt: &Runtime,
    s: &Settings,
    journal: &mut Journal,
    mut jobs: VecDeque<Job>,
    pull: bool,
    ui: &mut Ui,
) -> Result<()> {
    let (tx, rx) = mpsc::channel::<Note>();
    let mut running: HashMap<u32, (String, Option<u32>)> = HashMap::new();
    loop {
        while running.len() < s.parallel && !STOP.load(Ordering::SeqCst) {
            let Some(job) = jobs.pop_front() else { break };
            let e = journal.set(
                job.ctid,
                &job.peer.name,
                job.online,
                if pull { State::Returning } else { State::Moving },
            );
            e.reason = None;
            journal.save(&rt.host.layout)?;
            running.insert(job.ctid, (job.peer.name.clone(), None));
            ui.line(job.ctid, &job.peer.name, "starting");
            share_rate(s, running.len());
            let tx = tx.clone();
            if pull {
                let req = PullRequest {
                    ctid: job.ctid,
                    online: job.online,
                    max_downtime_ms: s.max_downtime_ms,
                    bwlimit: s.rate / s.parallel as u64,
                };
                let id = s.id.clone();
                std::thread::spawn(move || pull_one(&id, job, req, tx));
            } else {
                push_one(s, job, tx);
            }
        }
        if running.is_empty() {
            break;
        }
        let Ok(note) = rx.recv_timeout(Duration::from_millis(200)) else {
            if STOP.load(Ordering::SeqCst) {
                // A SIGTERM sent to vzevacuate alone: pass it on, each vzmigrate rolls back.
                for (_, pid) in running.values() {
                    if let Some(pid) = pid {
                        // SAFETY: signalling a child we started.
                        unsafe { libc::kill(*pid as i32, libc::SIGTERM) };
                    }
                }
            }
            continue;
        };
        match note {
            Note::Started(ctid, child) => {
                let (pid, gate) = child.map_or((None, None), |(p, g)| (Some(p), Some(g)));
                if let Some(r) = running.get_mut(&ctid) {
                    r.1 = pid;
                }
                if let Some(e) = journal.entry(ctid) {
                    e.pid = pid;
                }
                journal.save(&rt.host.layout)?;
                // Recorded: a run after this one, if this one is killed, waits for it.
                if let Some(g) = gate {
                    g.open();
                }
            }
            Note::Line(ctid, l) => {
                let peer = running.get(&ctid).map(|r| r.0.clone()).unwrap_or_default();
                ui.line(ctid, &peer, &l);
            }
            Note::Done(ctid, r) => {
                let (peer, _) = running.remove(&ctid).unwrap_or_default();
                share_rate(s, running.len());
                let e = journal.entry(ctid).expect("a running job has an entry");
                e.pid = None;
                match r {
                    Ok(m) => {
                        e.state = if pull { State::Returned } else { State::Moved };
                        e.frozen_ms = m.frozen_ms;
                        e.total_ms = m.total_ms;
                        e.wire_bytes = m.wire_bytes;
                        ui.done(
                            ctid,
                            &peer,
                            &format!("{} (frozen {} ms)", if pull { "back" } else { "moved" }, m.frozen_ms),
                        );
                    }
                    Err(why) => {
                        e.state = if pull { State::Moved } else { State::Failed };
                        ui.done(ctid, &peer, &format!("failed: {why}"));
                        e.reason = Some(why);
                    }
                }
                journal.save(&rt.host.layout)?;
            }
        }
    }
    Ok(())
}

fn share_rate(s: &Settings, running: usize) {
    if s.rate > 0 && running > 0 {
        let _ = crate::fsutil::write_atomic(&s.rate_file, format!("{}\n", s.rate / running as u64).as_bytes(), 0o644);
    }
}

/// Starts a vzmigrate for one container; a thread reports its lines and its end.
fn push_one(s: &Settings, job: Job, tx: mpsc::Sender<Note>) {
    let mut args = vec!["--max-downtime".to_string(), s.max_downtime.clone()];
    if s.rate > 0 {
        args.push("--bwlimit-file".into());
        args.push(s.rate_file.display().to_string());
    }
    let ctid = job.ctid;
    let events = tx.clone();
    let started = crate::migrate::child::spawn(
        &s.vzmigrate,
        &s.root,
        job.online,
        &args,
        &job.peer.name,
        ctid,
        move |ev| {
            let _ = events.send(match ev {
                Event::Started(pid, gate) => Note::Started(ctid, Some((pid, gate))),
                Event::Line(l) => Note::Line(ctid, l),
                Event::Done(r) => Note::Done(ctid, r),
            });
        },
    );
    if let Err(e) = started {
        let _ = tx.send(Note::Done(ctid, Err(format!("running {}: {e}", s.vzmigrate.display()))));
    }
}

/// Asks the peer for one container back (in its own thread, with its own runtime).
fn pull_one(id: &Identity, job: Job, req: PullRequest, tx: mpsc::Sender<Note>) {
    let ctid = job.ctid;
    let _ = tx.send(Note::Started(ctid, None));
    let r = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            let lines = tx.clone();
            let mut progress = move |l: &str| {
                let _ = lines.send(Note::Line(ctid, l.to_string()));
            };
            rt.block_on(crate::migrate::pull::request(id, &job.peer, req, &mut progress))
                .map_err(|e| crate::error::chain_of(&e))
        })
        .map(|st| Report {
            frozen_ms: st.frozen_ms,
            total_ms: st.total_ms,
            wire_bytes: st.fs_bytes,
            image_bytes: st.final_bytes,
        });
    let _ = tx.send(Note::Done(ctid, r));
}
