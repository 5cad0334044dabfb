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
        /// Serve migrations on this address (IP[:PORT]); default AGENT_LISTEN in vz.conf
        #[arg(long)]
        listen: Option<String>,
    },
    /// Print this host's key fingerprint (what peers pin with `trust add`)
    Fingerprint,
    /// Manage the peers this host trusts
    Trust {
        #[command(subcommand)]
        cmd: TrustCmd,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrustCmd {
    /// Pin a peer: its name, its address (IP[:PORT]) and its fingerprint
    Add {
        name: String,
        address: String,
        fingerprint: String,
    },
    /// List the pinned peers
    List {
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Unpin a peer
    Remove { name: String },
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
    use crate::agent::trust::{Identity, TrustStore};
    let name = host.setting("AGENT_NAME", "ferry-host");
    match args.cmd {
        Some(Cmd::Run { tick, listen: Some(l) }) => {
            let addr = crate::agent::trust::parse_address(&l)?;
            crate::agent::daemon::run_with(host, std::time::Duration::from_secs(tick.max(1)), Some(addr))?
        }
        Some(Cmd::Run { tick, listen: None }) => {
            crate::agent::daemon::run(host, std::time::Duration::from_secs(tick.max(1)))?
        }
        None => crate::agent::daemon::run(host, std::time::Duration::from_secs(10))?,
        Some(Cmd::Fingerprint) => {
            host.initialize()?;
            println!("{}", Identity::load_or_create(&host.layout, &name)?.fingerprint);
        }
        Some(Cmd::Trust { cmd }) => {
            let mut store = TrustStore::load(&host.layout)?;
            match cmd {
                TrustCmd::Add {
                    name,
                    address,
                    fingerprint,
                } => {
                    store.add(&name, &address, &fingerprint)?;
                    store.save(&host.layout)?;
                    if !args.global.quiet {
                        println!("pinned {name}");
                    }
                }
                TrustCmd::Remove { name } => {
                    store.remove(&name)?;
                    store.save(&host.layout)?;
                    if !args.global.quiet {
                        println!("unpinned {name}");
                    }
                }
                TrustCmd::List { json } => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&store.peers)?);
                    } else {
                        for p in &store.peers {
                            println!("{:<16} {:<24} {}", p.name, p.address, p.fingerprint);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
