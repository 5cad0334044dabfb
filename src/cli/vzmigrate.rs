//! `vzmigrate`: move a container to another host (OpenVZ's interface).

use anyhow::Result;
use clap::Parser;

use super::{parse, parse_duration, require_root, CliError, Global, Progress};
use crate::agent::trust::{Identity, TrustStore};
use crate::ctid::CtRef;
use crate::exitcode::MigrateExit;
use crate::host::Host;
use crate::migrate::source::{migrate, MigrateOptions};
use crate::migrate::wire::{parse_rate, RateSource};
use crate::runtime::Runtime;

#[derive(Debug, Parser)]
#[command(
    name = "vzmigrate",
    version,
    about = "Move a container to another host, live with --online",
    after_help = "DEST is a peer pinned with `vzagentd trust add`, by name or address. Exit codes: docs/exit-codes.md"
)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,
    /// Live migration: the container keeps running (frozen only for the final transfer);
    /// --live is OpenVZ's name for it
    #[arg(long, visible_alias = "live")]
    pub online: bool,
    /// Keep the destination's copy of a failed migration for inspection (it never runs)
    #[arg(long = "keep-dst")]
    pub keep_dst: bool,
    /// Remove the private area on this host after the move (yes, the default, or no)
    #[arg(short = 'r', long = "remove-area", default_value = "yes", value_parser = ["yes", "no"])]
    pub remove_area: String,
    /// Only check that the migration can be done; change nothing
    #[arg(long = "check-only", visible_alias = "dry-run")]
    pub check_only: bool,
    /// Print the time and bytes of each phase
    #[arg(short = 't', long)]
    pub times: bool,
    /// Bandwidth limit: bytes per second (50M) or bits per second (100mbit); 0 for none
    #[arg(long, default_value = "0")]
    pub bwlimit: String,
    /// Read the bandwidth limit (bytes per second) from this file, re-read as it changes
    /// (vzevacuate shares one budget among its migrations this way)
    #[arg(long = "bwlimit-file", hide = true, conflicts_with = "bwlimit")]
    pub bwlimit_file: Option<std::path::PathBuf>,
    /// Progress as plain lines on stderr even with --json (for vzevacuate)
    #[arg(long = "progress-lines", hide = true)]
    pub progress_lines: bool,
    /// Frozen-time budget, e.g. 500ms or 2s
    #[arg(long = "max-downtime", default_value = "2s")]
    pub max_downtime: String,
    /// JSON output
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Settle a container whose migration from this host was interrupted (vzmigrate killed,
    /// host crash, link lost after the commit): resumes it here if the commit was not sent yet,
    /// else asks the destination and removes the copy here (it committed) or resumes it (it did
    /// not); vzagentd does the same on its own
    #[arg(long, value_name = "CTID", conflicts_with_all = ["online", "keep_dst", "check_only", "json"])]
    pub recover: Option<CtRef>,
    /// With --recover: resume it here without asking the destination (one gone for good, after
    /// checking that it does not run the container)
    #[arg(long, requires = "recover")]
    pub force: bool,
    #[arg(required_unless_present = "recover")]
    pub dest: Option<String>,
    #[arg(required_unless_present = "recover")]
    pub ctid: Option<CtRef>,
}

pub fn main() -> ! {
    let args: Args = parse();
    super::init_logging(args.global.verbose);
    // Started by vzevacuate or an agent: nothing happens before it has recorded this process.
    if let Err(why) = crate::migrate::child::pass_gate() {
        eprintln!("vzmigrate: error: {why}");
        std::process::exit(MigrateExit::Failed.code() as i32);
    }
    let code = match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("vzmigrate: error: {}", super::error_text(&e));
            exit_status(&e).code() as i32
        }
    };
    std::process::exit(code)
}

/// vzmigrate's exit status for an error chain: the first link that has one (OpenVZ
/// vzmigrate's numbering, [`MigrateExit`]); anything else is a failed migration.
pub fn exit_status(err: &anyhow::Error) -> MigrateExit {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<crate::migrate::source::MigrateError>() {
            return e.migrate_exit();
        }
        if let Some(crate::host::HostError::NoSuchContainer(..) | crate::host::HostError::NoSuchName(_)) =
            cause.downcast_ref::<crate::host::HostError>()
        {
            return MigrateExit::NoContainer;
        }
        if let Some(crate::lock::LockError::Locked { .. }) = cause.downcast_ref::<crate::lock::LockError>() {
            return MigrateExit::Locked;
        }
        if let Some(CliError::BadOption(_) | CliError::NotRoot(_)) = cause.downcast_ref::<CliError>() {
            return MigrateExit::Usage;
        }
    }
    MigrateExit::Failed
}

pub fn run(args: Args) -> Result<()> {
    let max_downtime = parse_duration(&args.max_downtime).ok_or_else(|| {
        CliError::BadOption(format!(
            "invalid --max-downtime {:?}: e.g. 500ms or 2s",
            args.max_downtime
        ))
    })?;
    let bwlimit = match &args.bwlimit_file {
        Some(f) => RateSource::File(f.clone()),
        None => RateSource::Fixed(parse_rate(&args.bwlimit).map_err(CliError::BadOption)?),
    };
    require_root("vzmigrate")?;
    let host = Host::open(args.global.layout())?;
    if let Some(r) = &args.recover {
        let ctid = host.resolve(r)?;
        host.container(ctid)?;
        let rt = Runtime::new(host);
        let msg = crate::migrate::source::recover(&rt, ctid, args.force)?;
        if !args.global.quiet {
            println!("{msg}");
        }
        return Ok(());
    }
    let (Some(dest), Some(ct_ref)) = (&args.dest, &args.ctid) else {
        return Err(CliError::BadOption("DEST and CTID are required".into()).into());
    };
    let ctid = host.resolve(ct_ref)?;
    host.container(ctid)?;
    let store = TrustStore::load(&host.layout)?;
    let peer = store.find(dest).cloned().ok_or_else(|| {
        CliError::BadOption(format!(
            "{dest} is not a pinned peer: pin it first with `vzagentd trust add NAME ADDRESS FINGERPRINT`"
        ))
    })?;
    let id = Identity::load_or_create(&host.layout, &host.setting("AGENT_NAME", "ferry-host"))?;
    let rt = Runtime::new(host);
    let tokio_rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut progress = if args.progress_lines {
        Progress::lines()
    } else {
        Progress::new(args.global.quiet || args.json)
    };
    let opts = MigrateOptions {
        online: args.online,
        keep_dst: args.keep_dst,
        remove_area: args.remove_area == "yes",
        check_only: args.check_only,
        max_downtime,
        bwlimit,
        // On a terminal: the bytes sent and the rate beside the phase.
        sent: progress.count_bytes(),
    };
    let r = tokio_rt.block_on(migrate(&rt, ctid, &peer, &id, opts, &mut |m| progress.line(m)));
    progress.finish();
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            if args.json {
                // The failure as an object of its own (stderr says it in words too).
                let v = serde_json::json!({
                    "ctid": ctid.get(),
                    "destination": peer.name,
                    "online": args.online,
                    "outcome": "failed",
                    "error": e.to_string(),
                    "phase": e.phase(),
                    "container_on": e.container_on(),
                    "exit_code": e.migrate_exit().code(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            return Err(e.into());
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    if args.check_only {
        println!("Container {ctid} can be migrated to {}: {}", peer.name, r.outcome);
        return Ok(());
    }
    if !args.global.quiet {
        println!(
            "Container {ctid} migrated to {} {} in {} ms (frozen {} ms)",
            peer.name,
            if args.online { "online" } else { "offline" },
            r.total_ms,
            r.frozen_ms
        );
    }
    if args.online && r.frozen_ms > max_downtime.as_millis() as u64 {
        eprintln!(
            "vzmigrate: note: the container was frozen {} ms, over the --max-downtime budget of {} ms ({} pre-copy round(s); the final dump and restore alone take about this long on this host)",
            r.frozen_ms,
            max_downtime.as_millis(),
            r.memory_rounds
        );
    }
    if args.times {
        println!(
            "  protocol version {}{}",
            r.protocol,
            if r.bulk_streams > 0 {
                format!(", {} bulk streams beside the control stream", r.bulk_streams)
            } else {
                String::new()
            }
        );
        for (phase, ms) in &r.phases_ms {
            println!("  {phase:<12} {ms:>8} ms");
        }
        println!(
            "  file sync {} bytes, final files {} bytes, images {} bytes, on the wire {} bytes, compression {:.2}x",
            r.fs_bytes, r.final_fs_bytes, r.image_bytes, r.wire_bytes, r.compression_ratio
        );
        if args.online {
            println!(
                "  memory pre-copy: {} round(s), {} bytes; pages of the final dump: {} by reference, {} sent{}",
                r.memory_rounds,
                r.mem_bytes,
                r.page_refs,
                r.page_data,
                if r.pages_streamed {
                    " (streamed from CRIU's page server as dumped)"
                } else {
                    " (read from the dump's pages images)"
                }
            );
            for x in &r.rounds {
                println!(
                    "    round {}: {} ms, {} bytes sent, {} bytes dirtied since the round before",
                    x.round, x.duration_ms, x.sent_bytes, x.dirty_bytes
                );
            }
            println!(
                "  packets held while frozen and sent on to the destination: {}",
                r.held_packets
            );
        }
        if r.delta_files > 0 {
            println!(
                "  rsync deltas: {} changed files of {} bytes sent as {} bytes",
                r.delta_files, r.delta_file_bytes, r.delta_bytes
            );
        }
    }
    Ok(())
}
