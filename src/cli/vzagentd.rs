//! `vzagentd`: the host agent.

use anyhow::Result;
use clap::{Parser, Subcommand};

use super::{parse, report, require_root, Global};
use crate::host::Host;

#[derive(Debug, Parser)]
#[command(
    name = "vzagentd",
    version,
    about = "ferry's host agent: scheduled checkpoints (live migration comes later)"
)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run in the foreground until SIGTERM or SIGINT (the default)
    Run {
        /// Seconds between looks at the schedule
        #[arg(long, default_value_t = 10)]
        tick: u64,
    },
}

pub fn main() -> ! {
    let args: Args = parse();
    super::init_logging(args.global.verbose);
    let code = match run(args) {
        Ok(()) => 0,
        Err(e) => report("vzagentd", &e),
    };
    std::process::exit(code)
}

pub fn run(args: Args) -> Result<()> {
    require_root("vzagentd")?;
    let host = Host::open(args.global.layout())?;
    let tick = match args.cmd {
        Some(Cmd::Run { tick }) => tick,
        None => 10,
    };
    crate::agent::daemon::run(host, std::time::Duration::from_secs(tick.max(1)))?;
    Ok(())
}
