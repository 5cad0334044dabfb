//! `vzboot`: start the host's ONBOOT containers at boot, stop (or suspend) them all at
//! shutdown, in BOOTORDER (crate::boot). `ferry.service` runs it.

use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

use super::{parse, report, require_root, Global};
use crate::boot::{self, BootEntry};
use crate::exitcode::ExitCode;
use crate::host::Host;
use crate::runtime::Runtime;

#[derive(Debug, Parser)]
#[command(
    name = "vzboot",
    version,
    about = "Start ONBOOT containers at boot and stop or suspend every container at shutdown, in BOOTORDER",
    after_help = "Exit codes: 0 when every container did what was asked; 133 (start) or 33 (stop) when one or \
                  more failed (the others went on); see docs/exit-codes.md"
)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,
    /// JSON output: a list with one object per container {ctid, action, result, error}
    #[arg(short = 'j', long, global = true)]
    pub json: bool,
    /// Say what would be done, change nothing
    #[arg(long = "dry-run", global = true)]
    pub dry_run: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Start the ONBOOT containers (highest BOOTORDER first, none last; never DISABLED ones);
    /// resume those the last shutdown suspended
    Start,
    /// Stop every running container in the reverse order; with VE_STOP_MODE="suspend",
    /// checkpoint it instead, for the next start to resume
    Stop {
        /// Seconds each container has for a clean shutdown (default: STOP_TIMEOUT)
        #[arg(long)]
        timeout: Option<u64>,
    },
}

/// What was done to one container (`--json`: one of these per container).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub ctid: u32,
    /// "start", "resume", "stop", "suspend" or "skip"
    pub action: &'static str,
    /// "done", "failed" or, with --dry-run, "planned"; for "skip", why
    pub result: String,
    /// What went wrong, when something did (a resume that failed and fell back to a fresh
    /// start says so here with result "done")
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub fn main() -> ! {
    let args: Args = parse();
    super::init_logging(args.global.verbose);
    let code = match run(args) {
        Ok(code) => code,
        Err(e) => report("vzboot", &e),
    };
    std::process::exit(code)
}

pub fn run(args: Args) -> Result<i32> {
    require_root("vzboot")?;
    let host = Host::open_existing(args.global.layout())?;
    let rt = Runtime::new(host);
    let quiet = args.global.quiet || args.json;
    let stop_mode = rt.host.setting("VE_STOP_MODE", "stop");
    let mut entries = Vec::new();
    for ctid in rt.host.ctids()? {
        let ct = rt.host.container(ctid)?;
        entries.push(BootEntry::of(&ct, &rt.host.layout, &stop_mode));
    }
    let say = |m: String| {
        if !quiet {
            println!("{m}");
        }
    };
    let mut out = Vec::new();
    let failed_code;
    match args.cmd {
        Cmd::Start => {
            failed_code = ExitCode::StartFailed;
            for e in boot::boot_plan(&entries) {
                let id = e.ctid;
                let mut o = Outcome {
                    ctid: id.get(),
                    action: if e.suspended.is_some() { "resume" } else { "start" },
                    result: "planned".into(),
                    error: None,
                };
                if rt.run_state(id)?.is_some() {
                    o.action = "skip";
                    o.result = "already running".into();
                } else if !args.dry_run {
                    o.result = "done".into();
                    if let Some(cp) = &e.suspended {
                        say(format!("Resuming container {id} from checkpoint {cp} ..."));
                        let r = rt.restore(
                            id,
                            &crate::checkpoint::RestoreOptions {
                                checkpoint: Some(cp.clone()),
                                ..Default::default()
                            },
                        );
                        // Tried once, whatever came of it: a broken checkpoint must not
                        // hold every later boot.
                        let _ = std::fs::remove_file(boot::suspend_mark(&rt.host.layout, id));
                        if let Err(err) = r {
                            o.error = Some(format!("resuming from {cp}: {err}"));
                            if e.onboot {
                                say(format!("Container {id}: the resume failed ({err}); starting it afresh"));
                                o.action = "start";
                                if let Err(err) = rt.start(id) {
                                    o.result = "failed".into();
                                    o.error = Some(format!(
                                        "{}; then starting: {}",
                                        o.error.take().unwrap_or_default(),
                                        err
                                    ));
                                }
                            } else {
                                o.result = "failed".into();
                            }
                        }
                    } else {
                        say(format!("Starting container {id} ..."));
                        if let Err(err) = rt.start(id) {
                            o.result = "failed".into();
                            o.error = Some(err.to_string());
                        }
                    }
                    if o.result == "failed" {
                        eprintln!("vzboot: container {id}: {}", o.error.as_deref().unwrap_or(""));
                    } else {
                        say(format!(
                            "Container {id} {}",
                            if o.action == "resume" { "resumed" } else { "started" }
                        ));
                    }
                }
                out.push(o);
            }
        }
        Cmd::Stop { timeout } => {
            failed_code = ExitCode::StopFailed;
            let mut running = Vec::new();
            for e in entries {
                if rt.run_state(e.ctid)?.is_some() {
                    running.push(e);
                }
            }
            for e in boot::shutdown_plan(&running) {
                let id = e.ctid;
                let mut o = Outcome {
                    ctid: id.get(),
                    action: if e.suspend_at_stop { "suspend" } else { "stop" },
                    result: "planned".into(),
                    error: None,
                };
                if !args.dry_run {
                    o.result = "done".into();
                    let mut stop = true;
                    if e.suspend_at_stop {
                        say(format!("Suspending container {id} ..."));
                        match rt.chkpnt(id, &crate::checkpoint::ChkpntOptions::default()) {
                            Ok(c) => {
                                stop = false;
                                let mark = boot::suspend_mark(&rt.host.layout, id);
                                if let Err(err) = crate::fsutil::write_atomic(&mark, c.id.as_bytes(), 0o600) {
                                    // Suspended and stopped; the next boot treats it by ONBOOT.
                                    o.error = Some(format!("writing {}: {err}", mark.display()));
                                }
                                say(format!("Container {id} suspended to checkpoint {}", c.id));
                            }
                            Err(err) => {
                                // It still runs: stop it cleanly rather than leave it to the
                                // host's shutdown.
                                o.action = "stop";
                                o.error = Some(format!("suspending: {err}"));
                                eprintln!("vzboot: container {id}: suspending failed ({err}); stopping it");
                            }
                        }
                    }
                    if stop {
                        say(format!("Stopping container {id} ..."));
                        match rt.stop(id, false, timeout.map(Duration::from_secs)) {
                            Ok(()) | Err(crate::runtime::RuntimeError::NotRunning(_)) => {
                                say(format!("Container {id} was stopped"));
                            }
                            Err(err) => {
                                o.result = "failed".into();
                                o.error = Some(err.to_string());
                                eprintln!("vzboot: container {id}: {err}");
                            }
                        }
                    }
                }
                out.push(o);
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if args.dry_run {
        for o in &out {
            println!("{} {} ({})", o.action, o.ctid, o.result);
        }
    }
    Ok(if out.iter().any(|o| o.result == "failed") {
        failed_code as i32
    } else {
        0
    })
}
