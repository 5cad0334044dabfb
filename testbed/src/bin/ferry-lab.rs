//! `ferry-lab up|down|status`: the lab for demos, benchmarks and hands-on testing.
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ferry_testbed::{down_all, down_named, Lab, LabConfig};

#[derive(Parser)]
#[command(name = "ferry-lab", about = "ferry's multi-host lab in network namespaces")]
struct Args {
    /// Where the hosts' ferry roots live
    #[arg(long, default_value = "/var/lib/ferry-lab", global = true)]
    base: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Bring a lab up (a lab of the same name is torn down first)
    Up {
        #[arg(long, default_value = "lab")]
        name: String,
        /// Host names, comma-separated
        #[arg(long, default_value = "hostA,hostB")]
        hosts: String,
        /// Shape each host's uplink with tbf, e.g. 1gbit or 100mbit
        #[arg(long)]
        shape: Option<String>,
        /// Print the lab as JSON
        #[arg(long)]
        json: bool,
    },
    /// Tear a lab down, or every lab with --all (idempotent; cleans up after crashes)
    Down {
        #[arg(long, default_value = "lab")]
        name: String,
        #[arg(long)]
        all: bool,
    },
    /// List what a lab left behind (nothing when it is down)
    Leftovers {
        #[arg(long, default_value = "lab")]
        name: String,
    },
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    match a.cmd {
        Cmd::Up {
            name,
            hosts,
            shape,
            json,
        } => {
            let mut cfg = LabConfig::new(&name);
            cfg.hosts = hosts.split(',').map(str::to_string).collect();
            cfg.shape = shape;
            cfg.base = a.base;
            let lab = Lab::up(&cfg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&lab)?);
            } else {
                println!(
                    "lab {} is up: client {} in netns {}",
                    lab.name, lab.client_addr, lab.client
                );
                for h in &lab.hosts {
                    println!("  {} {} netns {} root {}", h.name, h.addr, h.netns, h.root.display());
                }
                println!("run vzctl on a host with: nsenter --net=/run/netns/NETNS vzctl --root-dir ROOT ...");
            }
            lab.keep();
        }
        Cmd::Down { name, all } => {
            if all {
                let gone = down_all(&a.base)?;
                println!(
                    "labs torn down: {}",
                    if gone.is_empty() {
                        "none".into()
                    } else {
                        gone.join(", ")
                    }
                );
            } else {
                down_named(&name, &a.base)?;
                println!("lab {name} is down");
            }
        }
        Cmd::Leftovers { name } => {
            let l = ferry_testbed::leftovers(&name, &a.base);
            for x in &l {
                println!("{x}");
            }
            if !l.is_empty() {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
