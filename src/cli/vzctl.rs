//! `vzctl`: create, start, stop and manage containers (OpenVZ's command, same names).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

use super::{parse, report, require_root, CliError, Global, Progress};
use crate::ctid::{CtRef, Ctid};
use crate::host::Host;
use crate::runtime::{CreateOptions, Runtime};

/// OpenVZ keeps CTIDs up to this one for itself; `create` refuses them.
const RESERVED_CTIDS: u32 = 100;
#[derive(Debug, Parser)]
#[command(
    name = "vzctl",
    version,
    about = "Create, start, stop and manage ferry containers",
    after_help = "Exit codes: see docs/exit-codes.md"
)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,
    /// JSON output: what the command reports (a list, a check), or for a command that changes
    /// a container its state afterwards as `status --json` gives it (`chkpnt`, `suspend`: the
    /// checkpoint as `checkpoints --json` lists it); a failure as {"error", "exit_code"}
    #[arg(short = 'j', long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

// Parsed once per run: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Create a container from an OS template cache
    Create {
        ctid: CtidArg,
        /// OS template (default: DEF_OSTEMPLATE in vz.conf, else busybox)
        #[arg(long)]
        ostemplate: Option<String>,
        /// Sample configuration etc/vz/conf/ve-SAMPLE.conf-sample (default: CONFIGFILE in vz.conf);
        /// --conf as OpenVZ's vzctl spelled it too
        #[arg(long = "config", visible_alias = "conf")]
        config: Option<String>,
        /// IP address (repeatable)
        #[arg(long)]
        ipadd: Vec<String>,
        #[arg(long)]
        hostname: Option<String>,
        /// A name usable wherever the CTID is
        #[arg(long)]
        name: Option<String>,
        /// Private area layout: simfs (a directory) or image (an XFS image whose size is the
        /// hard disk limit); default VE_LAYOUT in vz.conf
        #[arg(long)]
        layout: Option<String>,
        /// Disk space SOFT[:HARD] (K/M/G/T; bare numbers are KiB); default DISKSPACE in vz.conf
        #[arg(long)]
        diskspace: Option<String>,
        /// Inodes SOFT[:HARD] (recorded and reported)
        #[arg(long)]
        diskinodes: Option<String>,
        /// yes: the container runs in its own user namespace (its root is nothing on the
        /// host), with a range of host ids allocated now; no: privileged. Default: USERNS in
        /// vz.conf, else yes
        #[arg(long, value_parser = ["yes", "no"])]
        userns: Option<String>,
    },
    /// Start a container
    Start {
        ctid: CtRef,
        /// Start it though it is DISABLED
        #[arg(long)]
        force: bool,
    },
    /// Stop a container: a clean shutdown through its init, then kill after the timeout
    Stop {
        ctid: CtRef,
        /// Kill at once, without a clean shutdown
        #[arg(long)]
        fast: bool,
        /// Seconds to wait for a clean shutdown (default: STOP_TIMEOUT in vz.conf, else 60)
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Stop and start a container
    Restart {
        ctid: CtRef,
        #[arg(long)]
        timeout: Option<u64>,
        /// Start it though it is DISABLED
        #[arg(long)]
        force: bool,
    },
    /// Show whether a container exists, is mounted, is running
    Status { ctid: CtRef },
    /// Mount a container's private area on its root directory
    Mount { ctid: CtRef },
    /// Unmount a stopped container's root directory
    Umount { ctid: CtRef },
    /// Run a command (through /bin/sh -c) inside a running container; exits with its code
    Exec {
        ctid: CtRef,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Like exec (OpenVZ's exit-code-returning variant; in ferry both return the command's code)
    Exec2 {
        ctid: CtRef,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Open an interactive shell inside a running container
    Enter {
        ctid: CtRef,
        /// The shell to run (default /bin/sh -l)
        #[arg(long)]
        exec: Option<String>,
    },
    /// Attach to a running container's console (what it writes there, and your typing); Esc
    /// then . detaches
    Console { ctid: CtRef },
    /// Change a container's settings: applied at once to a running container; with --save
    /// also written to its configuration (a stopped container needs --save)
    Set {
        ctid: CtRef,
        /// Add a routed (venet) address, IPv4 or IPv6, optionally with /PREFIX (repeatable)
        #[arg(long)]
        ipadd: Vec<String>,
        /// Remove an address, or "all" (repeatable)
        #[arg(long)]
        ipdel: Vec<String>,
        #[arg(long)]
        hostname: Option<String>,
        /// DNS server(s) for /etc/resolv.conf, separated by spaces (repeatable)
        #[arg(long)]
        nameserver: Vec<String>,
        /// DNS search domain(s) for /etc/resolv.conf, separated by spaces (repeatable)
        #[arg(long)]
        searchdomain: Vec<String>,
        /// Add a bridged veth: IFNAME[,MAC,HOST_IFNAME,HOST_MAC,BRIDGE] (repeatable)
        #[arg(long = "netif_add", alias = "netif-add")]
        netif_add: Vec<String>,
        /// Remove a bridged veth by its name inside the container, or "all" (repeatable)
        #[arg(long = "netif_del", alias = "netif-del")]
        netif_del: Vec<String>,
        /// Set the container's name
        #[arg(long)]
        name: Option<String>,
        /// CPU share, 8..500000 (1000 is the default weight)
        #[arg(long)]
        cpuunits: Option<String>,
        /// CPU cap in percent of one CPU, N or N% (200 = two CPUs; 0 = none)
        #[arg(long)]
        cpulimit: Option<String>,
        /// CPU cap in CPUs
        #[arg(long)]
        cpus: Option<String>,
        /// CPUs the container may run on, e.g. 0-1,3
        #[arg(long)]
        cpumask: Option<String>,
        /// Memory limit, e.g. 512M
        #[arg(long)]
        ram: Option<String>,
        /// Swap on top of --ram (vswap), e.g. 256M
        #[arg(long)]
        swap: Option<String>,
        /// Kernel memory limit (cgroup v1 kernels that still have it)
        #[arg(long)]
        kmemsize: Option<String>,
        /// Process limit: N, BARRIER:LIMIT (the limit counts) or unlimited
        #[arg(long)]
        numproc: Option<String>,
        /// Disk space SOFT[:HARD] (K/M/G/T; bare numbers are KiB)
        #[arg(long)]
        diskspace: Option<String>,
        /// Inodes SOFT[:HARD]
        #[arg(long)]
        diskinodes: Option<String>,
        /// Scheduled checkpoints by vzagentd: the interval (seconds, or with s/m/h/d)
        #[arg(long = "checkpoint-interval", alias = "checkpoint_interval")]
        checkpoint_interval: Option<String>,
        /// Scheduled checkpoints: how many to keep (and the length of a chain)
        #[arg(long = "checkpoint-keep", alias = "checkpoint_keep")]
        checkpoint_keep: Option<String>,
        /// yes: convert a stopped container to run in its own user namespace (a range of host
        /// ids is allocated; its files stay as they are); no: back to privileged. Needs --save
        /// and no other option
        #[arg(long, value_parser = ["yes", "no"])]
        userns: Option<String>,
        /// yes: vzboot starts it when the host boots (configuration only: needs --save)
        #[arg(long, value_parser = ["yes", "no"])]
        onboot: Option<String>,
        /// Its place in the boot: higher starts earlier, none after all numbered ones (needs --save)
        #[arg(long, value_parser = clap::value_parser!(u64))]
        bootorder: Option<u64>,
        /// yes: it cannot be started (vzctl start --force still can; needs --save)
        #[arg(long, value_parser = ["yes", "no"])]
        disabled: Option<String>,
        /// A free-text description, shown by vzlist -o description (needs --save)
        #[arg(long)]
        description: Option<String>,
        /// Also write the change to the container's configuration
        #[arg(long)]
        save: bool,
    },
    /// Checkpoint a running container (then stop it, or let it run on with --keep-running)
    Chkpnt {
        ctid: CtRef,
        /// Write a standalone archive here instead of the container's chain in vz/dump
        #[arg(long)]
        dumpfile: Option<PathBuf>,
        #[arg(long = "keep-running", alias = "keep_running")]
        keep_running: bool,
        /// Start a new chain: a full copy of the private area rather than a delta
        #[arg(long)]
        full: bool,
        /// Retention: keep the newest N checkpoints (and what they depend on), delete older
        /// ones; a new chain starts when the newest has N members
        #[arg(long, value_name = "N", conflicts_with_all = ["dumpfile", "full"], value_parser = clap::value_parser!(u32).range(1..))]
        keep: Option<u32>,
    },
    /// Restore a stopped container from a checkpoint (default: its newest); with --dumpfile on
    /// a host that does not have the container, make it from the archive (export/import)
    Restore {
        ctid: CtRef,
        /// A standalone archive (vzctl chkpnt --dumpfile), from this host or another
        #[arg(long)]
        dumpfile: Option<PathBuf>,
        /// A checkpoint id from `vzctl checkpoints`
        #[arg(long)]
        checkpoint: Option<String>,
        /// Restore even where the CPU, CRIU or kernel do not match
        #[arg(long)]
        force: bool,
        /// (Used by vzagentd in a migration) restore from a directory of CRIU images, with the
        /// private area already in place
        #[arg(long, hide = true, conflicts_with_all = ["dumpfile", "checkpoint"])]
        images: Option<PathBuf>,
        /// (Used by vzagentd in a migration) leave the network detached until `vzctl attach`
        #[arg(long = "no-attach", hide = true, requires = "images")]
        no_attach: bool,
    },
    /// (Used by vzagentd in a migration) attach a restored container's network
    #[command(hide = true)]
    Attach { ctid: CtRef },
    /// Checkpoint and stop (OpenVZ 4's name for chkpnt)
    Suspend { ctid: CtRef },
    /// Restore from the newest checkpoint (OpenVZ 4's name for restore)
    Resume { ctid: CtRef },
    /// List a container's checkpoints
    Checkpoints { ctid: CtRef },
    /// What this host's kernel and CRIU can do for checkpoints and migration; with a CTID,
    /// also what would keep that container from starting or being checkpointed
    Check {
        /// Probe again instead of using this boot's cached result
        #[arg(long)]
        refresh: bool,
        /// A container to check as well
        ctid: Option<CtRef>,
    },
    /// Show a container's beancounters: held, maxheld, barrier, limit, failcnt per resource
    Ubc { ctid: CtRef },
    /// Remove a stopped container's private area, configuration and checkpoints
    #[command(alias = "delete")]
    Destroy {
        ctid: CtRef,
        /// Keep its checkpoints in vz/dump (a container made later with the same CTID can
        /// restore them with --checkpoint)
        #[arg(long)]
        keep_checkpoints: bool,
    },
}

/// A CTID as `create` takes it: a number (names come with `--name`).
#[derive(Debug, Clone, Copy)]
pub struct CtidArg(pub Ctid);

impl std::str::FromStr for CtidArg {
    type Err = crate::ctid::IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(CtidArg)
    }
}

pub fn main() -> ! {
    let args: Args = parse();
    super::init_logging(args.global.verbose);
    let json = args.json;
    let code = match run(args) {
        Ok(code) => code,
        Err(e) => {
            let code = report("vzctl", &e);
            if json {
                // The failure as an object of its own (stderr says it in words too).
                let v = serde_json::json!({ "error": super::error_text(&e), "exit_code": code });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }
            code
        }
    };
    std::process::exit(code)
}

fn say(quiet: bool, msg: impl AsRef<str>) {
    if !quiet {
        println!("{}", msg.as_ref());
    }
}

pub fn run(args: Args) -> Result<i32> {
    let json = args.json;
    let quiet = args.global.quiet || json;
    // With --json, what a command that changes a container prints at the end: the container's
    // state, or the checkpoint it took.
    let mut changed: Option<Ctid> = None;
    let mut took: Option<crate::checkpoint::CheckpointInfo> = None;
    // Only create (and check, which reads the host's kernel) may meet a root with no host yet.
    let host = match &args.cmd {
        Cmd::Create { .. } | Cmd::Check { .. } => Host::open(args.global.layout())?,
        _ => Host::open_existing(args.global.layout())?,
    };
    let rt = Runtime::new(host);
    let resolve = |r: &CtRef| -> Result<Ctid> { Ok(rt.host.resolve(r)?) };
    match &args.cmd {
        Cmd::Status { .. } | Cmd::Ubc { .. } | Cmd::Checkpoints { .. } => {}
        Cmd::Check { .. } => require_root("vzctl check")?,
        _ => require_root("vzctl")?,
    }
    match args.cmd {
        Cmd::Create {
            ctid: CtidArg(ctid),
            ostemplate,
            config,
            ipadd,
            hostname,
            name,
            layout,
            diskspace,
            diskinodes,
            userns,
        } => {
            if ctid.get() <= RESERVED_CTIDS {
                return Err(crate::runtime::RuntimeError::BadValue {
                    ctid,
                    what: format!(
                        "CTIDs 1 to {RESERVED_CTIDS} are reserved, as in OpenVZ; choose {} or more",
                        RESERVED_CTIDS + 1
                    ),
                }
                .into());
            }
            changed = Some(ctid);
            let opts = CreateOptions {
                userns,
                ostemplate,
                config_sample: config,
                ipadd,
                hostname,
                name,
                layout,
                diskspace,
                diskinodes,
            };
            let mut p = Progress::new(quiet);
            let ct = rt.create(ctid, &opts, &mut |m| p.line(m))?;
            p.finish();
            say(
                quiet,
                format!("Container {ctid} created; private area {}", ct.private.display()),
            );
        }
        Cmd::Start { ctid, force } => {
            let id = resolve(&ctid)?;
            changed = Some(id);
            rt.refuse_disabled(id, force)?;
            say(quiet, format!("Starting container {id} ..."));
            let st = rt.start(id)?;
            say(
                quiet,
                format!("Container {id} started (init pid {} on the host)", st.init_pid),
            );
        }
        Cmd::Stop { ctid, fast, timeout } => {
            let id = resolve(&ctid)?;
            changed = Some(id);
            say(quiet, format!("Stopping container {id} ..."));
            match rt.stop(id, fast, timeout.map(Duration::from_secs)) {
                // As OpenVZ: stopping a stopped container is done, not an error (scripts that
                // stop before they change something run again).
                Err(crate::runtime::RuntimeError::NotRunning(_)) => {
                    say(quiet, format!("Container {id} is not running"));
                }
                r => {
                    r?;
                    say(quiet, format!("Container {id} was stopped"));
                }
            }
        }
        Cmd::Restart { ctid, timeout, force } => {
            let id = resolve(&ctid)?;
            changed = Some(id);
            rt.refuse_disabled(id, force)?;
            say(quiet, format!("Restarting container {id} ..."));
            rt.restart(id, timeout.map(Duration::from_secs))?;
            say(quiet, format!("Container {id} started"));
        }
        Cmd::Status { ctid } => {
            let id = match rt.host.resolve(&ctid) {
                Ok(id) => id,
                Err(crate::host::HostError::NoSuchName(n)) if !json => {
                    return Err(crate::host::HostError::NoSuchName(n).into())
                }
                Err(e) => return Err(e.into()),
            };
            let st = rt.status(id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                println!("{}", st.line());
            }
        }
        Cmd::Mount { ctid } => {
            let id = resolve(&ctid)?;
            changed = Some(id);
            rt.mount(id)?;
            say(quiet, format!("Container {id} is mounted"));
        }
        Cmd::Umount { ctid } => {
            let id = resolve(&ctid)?;
            changed = Some(id);
            rt.umount(id)?;
            say(quiet, format!("Container {id} is unmounted"));
        }
        Cmd::Exec { ctid, command } | Cmd::Exec2 { ctid, command } => {
            let id = resolve(&ctid)?;
            // As OpenVZ: `-` alone reads the commands from standard input (the container's
            // shell reads them there).
            let argv = if command == ["-"] {
                vec!["/bin/sh".to_string(), "-s".to_string()]
            } else {
                vec!["/bin/sh".to_string(), "-c".to_string(), command.join(" ")]
            };
            return Ok(rt.exec(id, &argv, false)?);
        }
        Cmd::Enter { ctid, exec } => {
            let id = resolve(&ctid)?;
            let argv = match exec {
                Some(cmd) => vec!["/bin/sh".to_string(), "-c".to_string(), cmd],
                None => vec!["/bin/sh".to_string(), "-l".to_string()],
            };
            say(quiet, format!("entered into container {id}"));
            let code = rt.exec(id, &argv, true)?;
            say(quiet, format!("exited from container {id}"));
            return Ok(code);
        }
        Cmd::Console { ctid } => {
            let id = resolve(&ctid)?;
            let hello = format!("Attached to the console of container {id} (Esc then . detaches)");
            rt.console(id, (!quiet).then_some(hello.as_str()))?;
            say(quiet, format!("Detached from the console of container {id}"));
        }
        Cmd::Set {
            ctid,
            ipadd,
            ipdel,
            hostname,
            nameserver,
            searchdomain,
            netif_add,
            netif_del,
            name,
            cpuunits,
            cpulimit,
            cpus,
            cpumask,
            ram,
            swap,
            kmemsize,
            numproc,
            diskspace,
            diskinodes,
            checkpoint_interval,
            checkpoint_keep,
            userns,
            onboot,
            bootorder,
            disabled,
            description,
            save,
        } => {
            let id = resolve(&ctid)?;
            changed = Some(id);
            // Settings only the configuration holds: written with --save or not at all.
            let settings: Vec<(&str, String)> = [
                ("ONBOOT", onboot),
                ("BOOTORDER", bootorder.map(|n| n.to_string())),
                ("DISABLED", disabled),
                ("DESCRIPTION", description),
            ]
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
            let bad = |what: String| crate::runtime::RuntimeError::BadValue { ctid: id, what };
            if !settings.is_empty() && !save {
                let names: Vec<String> = settings
                    .iter()
                    .map(|(k, _)| format!("--{}", k.to_lowercase()))
                    .collect();
                return Err(bad(format!(
                    "{} only change{} the configuration: give --save (nothing was changed)",
                    names.join(", "),
                    if names.len() == 1 { "s" } else { "" }
                ))
                .into());
            }
            Runtime::check_settings(id, &settings)?;
            let others = !(ipadd.is_empty()
                && ipdel.is_empty()
                && nameserver.is_empty()
                && searchdomain.is_empty()
                && netif_add.is_empty()
                && netif_del.is_empty()
                && [
                    &hostname,
                    &name,
                    &cpuunits,
                    &cpulimit,
                    &cpus,
                    &cpumask,
                    &ram,
                    &swap,
                    &kmemsize,
                    &numproc,
                    &diskspace,
                    &diskinodes,
                    &checkpoint_interval,
                    &checkpoint_keep,
                ]
                .iter()
                .all(|o| o.is_none()));
            if let Some(u) = userns {
                if others || !settings.is_empty() || !save {
                    return Err(bad(
                        "--userns changes the configuration of a stopped container: give it alone, with --save".into(),
                    )
                    .into());
                }
                let map = rt.set_userns(id, u == "yes")?;
                match map {
                    Some(m) => say(
                        quiet,
                        format!("Container {id}: saved; runs in its own user namespace from its next start (host ids {}+ for uids, {}+ for gids)", m.uid, m.gid),
                    ),
                    None => say(quiet, format!("Container {id}: saved; runs privileged (no user namespace) from its next start")),
                }
                return Ok(0);
            }
            // OpenVZ takes several servers (domains) in one value, separated by spaces.
            let words = |v: Vec<String>| -> Vec<String> {
                v.iter()
                    .flat_map(|s| s.split_whitespace())
                    .map(str::to_string)
                    .collect()
            };
            let opts = crate::runtime::SetOptions {
                ipadd,
                ipdel,
                hostname,
                nameserver: words(nameserver),
                searchdomain: words(searchdomain),
                netif_add,
                netif_del,
                name,
                cpuunits,
                cpulimit,
                cpus,
                cpumask,
                ram,
                swap,
                kmemsize,
                numproc,
                diskspace,
                diskinodes,
                checkpoint_interval,
                checkpoint_keep,
                save,
            };
            if !others && !settings.is_empty() {
                rt.save_settings(id, &settings)?;
                say(quiet, format!("Container {id}: saved"));
            } else {
                let r = rt.set(id, &opts)?;
                rt.save_settings(id, &settings)?;
                for n in &r.notes {
                    eprintln!("vzctl: note: {n}");
                }
                match (r.applied_live, r.saved) {
                    (true, true) => say(quiet, format!("Container {id}: applied and saved")),
                    (true, false) => say(
                        quiet,
                        format!("Container {id}: applied until the container stops (not saved; use --save to keep it)"),
                    ),
                    (false, true) => say(quiet, format!("Container {id}: saved; applies at next start")),
                    (false, false) => {
                        eprintln!("vzctl: container {id} is not running and --save was not given: nothing was applied")
                    }
                }
            }
        }
        Cmd::Chkpnt {
            ctid,
            dumpfile,
            keep_running,
            full,
            keep,
        } => {
            let id = resolve(&ctid)?;
            say(quiet, format!("Setting up checkpoint of container {id} ..."));
            let (c, pruned) = match keep {
                Some(n) => rt.chkpnt_rotating(id, n as usize, keep_running)?,
                None => (
                    rt.chkpnt(
                        id,
                        &crate::checkpoint::ChkpntOptions {
                            dumpfile,
                            keep_running,
                            full,
                        },
                    )?,
                    Vec::new(),
                ),
            };
            say(
                quiet,
                format!(
                    "Checkpoint {} of container {id} written to {} ({:.1} MiB, frozen {} ms{})",
                    c.id,
                    c.path.display(),
                    c.size as f64 / 1048576.0,
                    c.frozen_ms,
                    if keep_running {
                        ", still running"
                    } else {
                        "; container stopped"
                    }
                ),
            );
            for old in pruned {
                say(quiet, format!("Deleted checkpoint {old} of container {id} (retention)"));
            }
            took = Some(c);
        }
        Cmd::Suspend { ctid } => {
            let id = resolve(&ctid)?;
            let c = rt.chkpnt(id, &crate::checkpoint::ChkpntOptions::default())?;
            say(
                quiet,
                format!(
                    "Container {id} suspended to {} (frozen {} ms)",
                    c.path.display(),
                    c.frozen_ms
                ),
            );
            took = Some(c);
        }
        Cmd::Restore {
            ctid,
            dumpfile,
            checkpoint,
            force,
            images,
            no_attach,
        } => {
            let id = resolve(&ctid)?;
            changed = Some(id);
            say(quiet, format!("Restoring container {id} ..."));
            let st = match (images, &dumpfile) {
                (Some(dir), _) => rt.restore_from_images(id, &dir, !no_attach, force)?,
                // An archive from another host: the container is made from it here.
                (None, Some(file)) if !rt.host.layout.ct_conf(id).exists() => {
                    say(
                        quiet,
                        format!(
                            "Container {id} does not exist here: importing it from {}",
                            file.display()
                        ),
                    );
                    rt.import(id, file, force)?
                }
                (None, _) => rt.restore(
                    id,
                    &crate::checkpoint::RestoreOptions {
                        dumpfile,
                        checkpoint,
                        force,
                    },
                )?,
            };
            say(
                quiet,
                format!("Container {id} restored (init pid {} on the host)", st.init_pid),
            );
        }
        Cmd::Attach { ctid } => {
            let id = resolve(&ctid)?;
            changed = Some(id);
            rt.attach_network(id)?;
        }
        Cmd::Resume { ctid } => {
            let id = resolve(&ctid)?;
            changed = Some(id);
            let st = rt.restore(id, &crate::checkpoint::RestoreOptions::default())?;
            say(
                quiet,
                format!("Container {id} resumed (init pid {} on the host)", st.init_pid),
            );
        }
        Cmd::Checkpoints { ctid } => {
            let id = resolve(&ctid)?;
            let list = rt.checkpoints(id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<18} {:>10} {:>10} {:<6} {:<18} RUNNING",
                    "ID", "SIZE", "FROZEN", "LEVEL", "PARENT"
                );
                for c in list {
                    println!(
                        "{:<18} {:>9.1}M {:>8}ms {:<6} {:<18} {}",
                        c.id,
                        c.size as f64 / 1048576.0,
                        c.frozen_ms,
                        c.level,
                        c.parent.unwrap_or_else(|| "-".into()),
                        if c.keep_running { "yes" } else { "no" }
                    );
                }
            }
        }
        Cmd::Check { refresh, ctid } => {
            let container = match &ctid {
                Some(c) => Some(rt.check_container(resolve(c)?)?),
                None => None,
            };
            let criu = crate::criu::Criu::locate()?;
            let _ = rt.host.initialize();
            let h = criu.host_check(Some(&rt.host.layout.run_dir().join("criu-check.json")), refresh)?;
            // What a live migration's pre-copy does with dirty tracking (ferry's own probe of
            // the soft-dirty bits, which it reads itself rather than through CRIU's pre-dump);
            // the JSON keeps CRIU's own answer beside it (`mem_dirty_track`).
            let tracked = crate::migrate::pages::soft_dirty_works();
            // Containers with a user namespace: ferry's own probe on the private areas' file
            // system (not cached: a host's file systems change without a reboot).
            let userns = crate::runtime::userns::probe(&rt.host.layout.private_base());
            if json {
                let mut v = serde_json::to_value(&h)?;
                v["precopy_dirty_tracking"] = tracked.into();
                v["user_namespaces"] = userns.is_ok().into();
                if let Err(e) = &userns {
                    v["user_namespaces_error"] = e.clone().into();
                }
                // Processes running as another user than root: CRIU reads their limits with
                // CAP_SYS_RESOURCE on the host, or as the owner of their user namespace.
                v["nonroot_checkpointable_privileged"] = h.sys_resource.into();
                v["nonroot_checkpointable_userns"] = userns.is_ok().into();
                if let Some(c) = &container {
                    v["container"] = serde_json::to_value(c)?;
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let yn = |b: bool| if b { "yes" } else { "no" };
                println!("{:<24} {} ({})", "CRIU", h.criu_version, h.criu_path);
                println!("{:<24} {}", "kernel", h.kernel);
                println!("{:<24} {}", "criu check", if h.criu_check { "ok" } else { "FAILED" });
                println!(
                    "{:<24} {}{}",
                    "memory dirty tracking",
                    yn(tracked),
                    if tracked {
                        " (pre-copy rounds read only the pages written since the round before)"
                    } else {
                        " (pre-copy rounds hash every present page to find what changed)"
                    }
                );
                println!("{:<24} {}", "lazy pages (uffd)", yn(h.lazy_pages));
                println!("{:<24} {}", "uffd non-cooperative", yn(h.uffd_noncoop));
                println!("{:<24} {}", "TCP half-closed", yn(h.tcp_half_closed));
                println!(
                    "{:<24} {}",
                    "network lock",
                    if h.network_lock_nftables {
                        "nftables or iptables"
                    } else {
                        "iptables"
                    }
                );
                match &userns {
                    Ok(()) => println!(
                        "{:<24} yes (idmapped mounts on {})",
                        "user namespaces",
                        rt.host.layout.private_base().display()
                    ),
                    Err(e) => println!("{:<24} NO: {e}", "user namespaces"),
                }
                let nonroot = match (h.sys_resource, userns.is_ok()) {
                    (true, _) => "checkpointable".to_string(),
                    (false, true) => "checkpointable in containers with a user namespace; NOT in privileged ones: root lacks CAP_SYS_RESOURCE here, so CRIU cannot read their rlimits".to_string(),
                    (false, false) => "NOT checkpointable: root lacks CAP_SYS_RESOURCE here, so CRIU cannot read their rlimits".to_string(),
                };
                println!("{:<24} {}", "non-root processes", nonroot);
                let cg = crate::cgroup::Cgroups::detect(&rt.host.cgroup_parent())?;
                println!("{:<24} {:?}", "cgroup", cg.version());
                if let Some(c) = &container {
                    let ct = format!("container {}", c.ctid);
                    println!(
                        "{ct:<24} init {}, {}",
                        c.init,
                        if c.running { "running" } else { "stopped" }
                    );
                    for b in &c.start_blockers {
                        println!("{:<24} NO: {b}", "  starts");
                    }
                    if c.running {
                        if c.dump_blockers.is_empty() {
                            println!("{:<24} yes", "  checkpointable now");
                        }
                        for b in &c.dump_blockers {
                            println!("{:<24} NO: {b}", "  checkpointable now");
                        }
                    }
                }
            }
            if !h.criu_check {
                return Ok(crate::exitcode::ExitCode::SystemError.code() as i32);
            }
            if let Some(c) = &container {
                if !c.start_blockers.is_empty() {
                    return Ok(crate::exitcode::ExitCode::BadContainer.code() as i32);
                }
                if !c.dump_blockers.is_empty() {
                    return Ok(crate::exitcode::ExitCode::CheckpointFailed.code() as i32);
                }
            }
        }
        Cmd::Ubc { ctid } => {
            let id = resolve(&ctid)?;
            let rows = rt.ubc(id)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "ctid": id.get(), "resources": rows }))?
                );
            } else {
                print!("{}", crate::resources::ubc_text(id, &rows));
            }
        }
        Cmd::Destroy { ctid, keep_checkpoints } => {
            let id = resolve(&ctid)?;
            changed = Some(id);
            // As OpenVZ: a mounted container is unmounted first, by its administrator.
            let st = rt.status(id)?;
            if st.mounted && !st.running {
                return Err(crate::runtime::RuntimeError::Mounted(id).into());
            }
            say(quiet, format!("Destroying container {id} ..."));
            rt.destroy(id, keep_checkpoints)?;
            say(quiet, format!("Container {id} was destroyed"));
        }
    }
    if json {
        if let Some(c) = took {
            println!("{}", serde_json::to_string_pretty(&c)?);
        } else if let Some(id) = changed {
            println!("{}", serde_json::to_string_pretty(&rt.status(id)?)?);
        }
    }
    let _ = CliError::BadOption(String::new());
    Ok(0)
}
