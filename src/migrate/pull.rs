//! The `pull` call of the peer API: a host asks a peer for a container back
//! (`vzevacuate --return`). The peer runs `vzmigrate` to the asking host and streams its
//! progress lines; it only gives back a container that the asking host moved there (an
//! arrival record written at the commit names the source's key).

use std::path::PathBuf;
use std::time::Duration;

use migrate_proto::msg::{AbortReason, Message, PullRequest, Stats};

use super::child::Event;
use super::dest::DestCtx;
use super::source::MigrateError;
use super::wire::Wire;
use crate::agent::trust::{Identity, Peer, TrustStore};
use crate::layout::HostLayout;
use crate::migrate::log;

/// Where a host records which peer moved a container to it.
pub fn arrival_path(layout: &HostLayout, ctid: u32) -> PathBuf {
    layout.run_dir().join(format!("arrived-{ctid}.json"))
}

/// Records, at the commit of an incoming migration, which peer key sent the container.
pub fn record_arrival(layout: &HostLayout, ctid: u32, from: &str) {
    let name = TrustStore::load(layout)
        .ok()
        .and_then(|s| s.trusts(from).map(|p| p.name.clone()))
        .unwrap_or_default();
    let j = serde_json::json!({ "from": from, "name": name });
    let _ = crate::fsutil::write_atomic(&arrival_path(layout, ctid), format!("{j}\n").as_bytes(), 0o644);
}

/// May the peer with key `from` have container `ctid` back? Returns its pinned name.
fn allowed(ctx: &DestCtx, from: Option<&str>, ctid: u32) -> Result<String, String> {
    let from = from.ok_or("the peer presented no key")?;
    let store = TrustStore::load(&ctx.layout).map_err(|e| e.to_string())?;
    let peer = store.trusts(from).ok_or("the peer is not pinned")?;
    let id = crate::ctid::Ctid::new(ctid).map_err(|e| e.to_string())?;
    if !ctx.layout.ct_conf(id).exists() {
        return Err(format!("container {ctid} does not exist on {}", ctx.name));
    }
    let rec: serde_json::Value = std::fs::read_to_string(arrival_path(&ctx.layout, ctid))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    if rec["from"].as_str() != Some(from) {
        return Err(format!(
            "container {ctid} did not come to {} from {}: a peer can only ask back containers it moved here",
            ctx.name, peer.name
        ));
    }
    Ok(peer.name.clone())
}

/// Serves one pull request on `wire`: runs vzmigrate to the asking peer.
pub async fn serve(ctx: &DestCtx, from: Option<String>, req: PullRequest, wire: &mut Wire) {
    let name = match allowed(ctx, from.as_deref(), req.ctid) {
        Ok(n) => n,
        Err(why) => {
            log(&format!("refused to give back container {}: {why}", req.ctid));
            let _ = wire.send(&Message::Abort(AbortReason::PlanRefused(why))).await;
            wire.finish().await;
            return;
        }
    };
    log(&format!("giving container {} back to {name}", req.ctid));
    let vzmigrate = ctx.vzctl.with_file_name("vzmigrate");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let args = [
        "--max-downtime".to_string(),
        format!("{}ms", req.max_downtime_ms),
        "--bwlimit".to_string(),
        req.bwlimit.to_string(),
    ];
    if let Err(e) = super::child::spawn(
        &vzmigrate,
        ctx.layout.root(),
        req.online,
        &args,
        &name,
        req.ctid,
        move |ev| {
            let _ = tx.send(ev);
        },
    ) {
        let why = format!("running {}: {e}", vzmigrate.display());
        let _ = wire.send(&Message::Abort(AbortReason::Local(why))).await;
        wire.finish().await;
        return;
    }
    let mut beat = tokio::time::interval(Duration::from_secs(5));
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            _ = beat.tick() => {
                // A heartbeat (an empty phase) keeps a quiet transfer from looking dead.
                let _ = wire.send(&Message::Progress { phase: String::new(), done: 0, total: 0 }).await;
                continue;
            }
        };
        match ev {
            // Nothing to record: it may go ahead at once.
            Some(Event::Started(_, gate)) => gate.open(),
            Some(Event::Line(mut l)) => {
                l.truncate(1024);
                let _ = wire
                    .send(&Message::Progress {
                        phase: l,
                        done: 0,
                        total: 0,
                    })
                    .await;
            }
            Some(Event::Done(Ok(r))) => {
                let stats = Stats {
                    total_ms: r.total_ms,
                    frozen_ms: r.frozen_ms,
                    rounds: Vec::new(),
                    fs_bytes: r.wire_bytes,
                    mem_bytes: 0,
                    final_bytes: r.image_bytes,
                };
                let _ = std::fs::remove_file(arrival_path(&ctx.layout, req.ctid));
                log(&format!("gave container {} back to {name}", req.ctid));
                let _ = wire.send(&Message::Done(stats)).await;
                break;
            }
            Some(Event::Done(Err(why))) => {
                log(&format!("giving back container {} failed: {why}", req.ctid));
                let _ = wire.send(&Message::Abort(AbortReason::Local(why))).await;
                break;
            }
            None => {
                let why = "vzmigrate ended without a word".to_string();
                log(&format!("giving back container {} failed: {why}", req.ctid));
                let _ = wire.send(&Message::Abort(AbortReason::Local(why))).await;
                break;
            }
        }
    }
    wire.finish().await;
}

/// Asks a pinned peer for a container back; `progress` sees the peer's progress lines.
/// Returns the migration's statistics (`fs_bytes` holds the bytes on the wire).
pub async fn request(
    id: &Identity,
    peer: &Peer,
    req: PullRequest,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Stats, MigrateError> {
    let ctid = crate::ctid::Ctid::new(req.ctid).map_err(|e| MigrateError::Recover {
        ctid: crate::ctid::Ctid::new(1).expect("1 is a valid CTID"),
        why: e.to_string(),
    })?;
    let (conn, mut wire) = super::dial(id, peer).await?;
    wire.send(&Message::Pull(req)).await?;
    // The peer's last progress line: where a refusal or abort came.
    let mut last = String::from("the request");
    let r = loop {
        match wire.recv(Duration::from_secs(60)).await? {
            Message::Progress { phase, .. } => {
                if !phase.is_empty() {
                    progress(&phase);
                    last = phase;
                }
            }
            Message::Done(s) => break Ok(s),
            Message::Abort(r) => {
                let exit = super::abort_exit(&r);
                let why = match r {
                    AbortReason::PlanRefused(s) => s,
                    other => other.to_string(),
                };
                break Err(MigrateError::Aborted {
                    ctid,
                    reason: why,
                    phase: last,
                    exit,
                });
            }
            other => {
                break Err(MigrateError::Aborted {
                    ctid,
                    reason: format!("the peer answered with {:?}", other.kind()),
                    phase: last,
                    exit: crate::exitcode::MigrateExit::Protocol,
                })
            }
        }
    };
    wire.finish().await;
    conn.close(0u32.into(), b"done");
    r
}
