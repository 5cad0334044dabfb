//! `vzagentd run`: the host agent's main loop. For now: scheduled checkpoints
//! (`CHECKPOINT_INTERVAL`, `CHECKPOINT_KEEP` in a container's config) with `--keep-running`
//! semantics, incremental chains and retention.

use std::collections::HashMap;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use thiserror::Error;

use crate::ctid::Ctid;
use crate::error::chain_of;
use crate::host::Host;
use crate::migrate::log;
use crate::runtime::Runtime;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error("vzagentd is already running on this host (pid {0}, pid file {1})")]
    AlreadyRunning(i32, String),
    #[error("writing the pid file {0}")]
    PidFile(String, #[source] std::io::Error),
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    #[error("cannot listen for migrations: {0}")]
    Listen(String),
}

/// How often the agent tries to settle interrupted outgoing migrations.
const RECOVERY_EVERY: Duration = Duration::from_secs(30);

/// The default number of checkpoints kept when CHECKPOINT_KEEP is not set.
pub const DEFAULT_KEEP: usize = 10;

/// Serves incoming migrations on `addr` (a thread with its own tokio runtime).
fn listen(host: &Host, addr: std::net::SocketAddr) -> Result<(), DaemonError> {
    use std::sync::Arc;
    let name = host.setting("AGENT_NAME", "ferry-host");
    let id =
        super::trust::Identity::load_or_create(&host.layout, &name).map_err(|e| DaemonError::Listen(e.to_string()))?;
    let layout = host.layout.clone();
    let vzctl = crate::fsutil::sibling_binary("vzctl");
    let caps = crate::migrate::local_caps();
    let ctx = Arc::new(crate::migrate::dest::DestCtx {
        layout: layout.clone(),
        vzctl,
        name,
        caps,
        decisions: crate::migrate::dest::Decisions::load(&layout)
            .map_err(|e| DaemonError::Listen(format!("reading the migrations' decisions: {e}")))?,
        busy: Default::default(),
        live: Default::default(),
    });
    crate::migrate::dest::recover(&ctx);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        };
        rt.block_on(async move {
            let ep = match super::quic::server(&id, super::quic::Pins::Store(layout.clone()), addr) {
                Ok(ep) => ep,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = tx.send(Ok(()));
            while let Some(inc) = ep.accept().await {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    match inc.await {
                        Ok(conn) => crate::migrate::dest::serve(conn, ctx).await,
                        Err(e) => log(&format!("a peer's connection failed at the handshake: {e}")),
                    }
                });
            }
        });
    });
    match rx.recv() {
        Ok(Ok(())) => {
            log(&format!("listening for migrations on {addr}"));
            Ok(())
        }
        Ok(Err(e)) => Err(DaemonError::Listen(e)),
        Err(_) => Err(DaemonError::Listen("the listener thread died".into())),
    }
}

/// Runs until SIGTERM or SIGINT; serves migrations if AGENT_LISTEN is set in vz.conf.
pub fn run(host: Host, tick: Duration) -> Result<(), DaemonError> {
    let listen_on = host
        .global
        .get("AGENT_LISTEN")
        .filter(|s| !s.is_empty())
        .map(super::trust::parse_address)
        .transpose()
        .map_err(|e| DaemonError::Listen(e.to_string()))?;
    run_with(host, tick, listen_on)
}

/// Runs until SIGTERM or SIGINT, serving migrations on `listen_on` if given.
pub fn run_with(host: Host, tick: Duration, listen_on: Option<std::net::SocketAddr>) -> Result<(), DaemonError> {
    host.initialize()?;
    let pid_file = host.layout.run_dir().join("vzagentd.pid");
    let pid_s = pid_file.display().to_string();
    if let Ok(old) = fs::read_to_string(&pid_file) {
        if let Ok(pid) = old.trim().parse::<i32>() {
            if pid != std::process::id() as i32
                && pid > 0
                && crate::runtime::proc::runs_as(pid as u32, "vzagentd")
                && crate::runtime::proc::start_time(pid).is_some()
            {
                return Err(DaemonError::AlreadyRunning(pid, pid_s));
            }
        }
    }
    crate::fsutil::write_atomic(&pid_file, format!("{}\n", std::process::id()).as_bytes(), 0o644)
        .map_err(|e| DaemonError::PidFile(pid_s.clone(), e))?;
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    log(&format!(
        "started (pid {}, host root {})",
        std::process::id(),
        host.layout.root().display()
    ));
    if let Some(addr) = listen_on {
        if let Err(e) = listen(&host, addr) {
            let _ = fs::remove_file(&pid_file);
            return Err(e);
        }
    }
    let rt = Runtime::new(host);
    let mut last_attempt: HashMap<Ctid, u64> = HashMap::new();
    let mut last_recovery: Option<std::time::Instant> = None;
    while !STOP.load(Ordering::SeqCst) {
        // Outgoing migrations whose vzmigrate died: settled with their destinations (at start,
        // then every half minute while any is left).
        if last_recovery.is_none_or(|t| t.elapsed() >= RECOVERY_EVERY) {
            last_recovery = Some(std::time::Instant::now());
            for line in crate::migrate::source::recover_interrupted(&rt) {
                log(&format!("interrupted migration: {line}"));
            }
        }
        for ctid in rt.host.ctids().unwrap_or_default() {
            if STOP.load(Ordering::SeqCst) {
                break;
            }
            scheduled(&rt, ctid, &mut last_attempt);
        }
        let mut slept = Duration::ZERO;
        while slept < tick && !STOP.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            slept += Duration::from_millis(100);
        }
    }
    let _ = fs::remove_file(&pid_file);
    log("stopped");
    Ok(())
}

/// One container's schedule: checkpoint if due, then prune.
fn scheduled(rt: &Runtime, ctid: Ctid, last_attempt: &mut HashMap<Ctid, u64>) {
    let Ok(ct) = rt.host.container(ctid) else { return };
    let Some(interval) = ct.get("CHECKPOINT_INTERVAL").and_then(crate::units::interval_secs) else {
        return;
    };
    let keep = ct
        .get("CHECKPOINT_KEEP")
        .and_then(|k| k.parse::<usize>().ok())
        .filter(|k| *k > 0)
        .unwrap_or(DEFAULT_KEEP);
    if !matches!(rt.run_state(ctid), Ok(Some(_))) {
        return;
    }
    let newest = match rt.checkpoints(ctid) {
        Ok(l) => l.iter().map(|c| c.created).max(),
        Err(e) => {
            log(&format!(
                "container {ctid}: listing checkpoints failed: {}",
                chain_of(&e)
            ));
            return;
        }
    };
    let newest = newest.into_iter().chain(last_attempt.get(&ctid).copied()).max();
    let t = crate::units::unix_now();
    if !crate::checkpoint::retention::due(newest, interval, t) {
        return;
    }
    last_attempt.insert(ctid, t);
    match rt.chkpnt_rotating(ctid, keep, true) {
        Ok((c, pruned)) => {
            log(&format!(
                "checkpoint {ctid} {}: frozen {} ms, {} bytes, level {}",
                c.id, c.frozen_ms, c.size, c.level
            ));
            for id in pruned {
                log(&format!("pruned checkpoint {ctid} {id}"));
            }
        }
        Err(e) => log(&format!(
            "checkpoint of {ctid} failed, retrying in {interval} s: {}",
            chain_of(&e)
        )),
    }
}
