//! The `pull` call of the peer API: a host asks a peer for a container back
//! (`vzevacuate --return`). The peer runs `vzmigrate` to the asking host and streams its
//! progress lines; it only gives back a container that the asking host moved there (an
//! arrival record written at the commit names the source's key).

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use migrate_proto::msg::{AbortReason, Message, PullRequest, Stats};

use super::dest::DestCtx;
use super::source::MigrateError;
use super::wire::Wire;
use crate::agent::trust::{Identity, Peer, TrustStore};
use crate::layout::HostLayout;

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

enum Event {
    Line(String),
    Exit { ok: bool, stdout: String },
}

/// Serves one pull request on `wire`: runs vzmigrate to the asking peer.
pub async fn serve(ctx: &DestCtx, from: Option<String>, req: PullRequest, wire: &mut Wire) {
    let name = match allowed(ctx, from.as_deref(), req.ctid) {
        Ok(n) => n,
        Err(why) => {
            super::dest::log(&format!("refused to give back container {}: {why}", req.ctid));
            let _ = wire.send(&Message::Abort(AbortReason::PlanRefused(why))).await;
            wire.finish().await;
            return;
        }
    };
    super::dest::log(&format!("giving container {} back to {name}", req.ctid));
    let vzmigrate = ctx.vzctl.with_file_name("vzmigrate");
    let mut cmd = Command::new(&vzmigrate);
    cmd.arg("--root-dir").arg(ctx.layout.root());
    if req.online {
        cmd.arg("--online");
    }
    cmd.args(["--json", "--progress-lines", "--max-downtime"])
        .arg(format!("{}ms", req.max_downtime_ms))
        .arg("--bwlimit")
        .arg(req.bwlimit.to_string())
        .arg(&name)
        .arg(req.ctid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let why = format!("running {}: {e}", vzmigrate.display());
            let _ = wire.send(&Message::Abort(AbortReason::Local(why))).await;
            wire.finish().await;
            return;
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    std::thread::spawn(move || {
        if let Some(e) = stderr {
            for line in BufReader::new(e).lines().map_while(Result::ok) {
                let _ = tx.send(Event::Line(line));
            }
        }
        let mut out = String::new();
        if let Some(mut o) = stdout {
            let _ = o.read_to_string(&mut out);
        }
        let ok = child.wait().is_ok_and(|s| s.success());
        let _ = tx.send(Event::Exit { ok, stdout: out });
    });
    let mut last = String::new();
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
            Some(Event::Line(mut l)) => {
                l.truncate(1024);
                let _ = wire
                    .send(&Message::Progress {
                        phase: l.clone(),
                        done: 0,
                        total: 0,
                    })
                    .await;
                last = l;
            }
            Some(Event::Exit { ok: true, stdout }) => {
                let r: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
                let n = |k: &str| r[k].as_u64().unwrap_or(0);
                let stats = Stats {
                    total_ms: n("total_ms"),
                    frozen_ms: n("frozen_ms"),
                    rounds: Vec::new(),
                    fs_bytes: n("wire_bytes"),
                    mem_bytes: 0,
                    final_bytes: n("image_bytes"),
                };
                let _ = std::fs::remove_file(arrival_path(&ctx.layout, req.ctid));
                super::dest::log(&format!("gave container {} back to {name}", req.ctid));
                let _ = wire.send(&Message::Done(stats)).await;
                break;
            }
            Some(Event::Exit { ok: false, .. }) | None => {
                let why = last.strip_prefix("vzmigrate: error: ").unwrap_or(&last).to_string();
                super::dest::log(&format!("giving back container {} failed: {why}", req.ctid));
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
    let r = loop {
        match wire.recv(Duration::from_secs(60)).await? {
            Message::Progress { phase, .. } => {
                if !phase.is_empty() {
                    progress(&phase);
                }
            }
            Message::Done(s) => break Ok(s),
            Message::Abort(r) => {
                let why = match r {
                    AbortReason::PlanRefused(s) => s,
                    other => other.to_string(),
                };
                break Err(MigrateError::Aborted { ctid, reason: why });
            }
            other => {
                break Err(MigrateError::Aborted {
                    ctid,
                    reason: format!("the peer answered with {:?}", other.kind()),
                })
            }
        }
    };
    wire.finish().await;
    conn.close(0u32.into(), b"done");
    r
}
