//! Live migration: the engine that performs what migrate-proto's state machines decide.

pub mod capacity;
pub mod child;
pub mod dest;
pub mod fs;
pub mod pages;
pub mod pull;
pub mod remaps;
pub mod source;
pub mod sync;
pub mod wire;

use migrate_proto::msg::{Capabilities, MigrationId};

/// Connects to a pinned peer (mutual TLS, its key checked) and opens the connection's stream.
pub(crate) async fn dial(
    id: &crate::agent::trust::Identity,
    peer: &crate::agent::trust::Peer,
) -> Result<(quinn::Connection, wire::Wire), source::MigrateError> {
    let conn = crate::agent::quic::connect(id, &peer.fingerprint, peer.address).await?;
    let (send, recv) = conn
        .open_bi()
        .await
        .map_err(|e| source::MigrateError::Wire(wire::WireError::Write(quinn::WriteError::ConnectionLost(e))))?;
    Ok((conn, wire::Wire::new(send, recv)))
}

/// Fault injection for the root-only tests, in the manner of CRIU's `CRIU_FAULT`: with
/// `FERRY_FAULT=NAME` in its environment the process dies at the point called NAME, as if killed
/// (SIGKILL: no destructor runs, no connection is closed), after a moment for what it sent to
/// leave. Points: `vzmigrate-before-commit` (the commit journaled, not sent),
/// `vzmigrate-after-commit` (the commit sent, its answer not read), `vzagentd-before-commit-ack`
/// (the destination committed and runs the container, its acknowledgement not sent).
pub(crate) async fn fault_point(name: &str) {
    if std::env::var("FERRY_FAULT").is_ok_and(|v| v == name) {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        // SAFETY: signalling this process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

/// [`fault_point`] for blocking code (`vzagentd-during-restore`: the destination wrote the
/// container's configuration and has not restored it yet).
pub(crate) fn fault_point_blocking(name: &str) {
    if std::env::var("FERRY_FAULT").is_ok_and(|v| v == name) {
        std::thread::sleep(std::time::Duration::from_millis(500));
        // SAFETY: signalling this process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

/// The protocol versions this build offers (source) and accepts (destination): the current
/// one and the one before. `FERRY_PROTOCOL_MAX=N` caps them at N, for testing a host of this
/// build against one of the previous release (as CRIU's `CRIU_FAULT`, a test hook).
pub(crate) fn protocol_versions() -> (u32, u32) {
    let (lo, hi) = (
        migrate_proto::machine::VERSION_MIN,
        migrate_proto::machine::VERSION_CURRENT,
    );
    match std::env::var("FERRY_PROTOCOL_MAX")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(max) if (lo..=hi).contains(&max) => (lo.min(max), max),
        _ => (lo, hi),
    }
}

/// One line of the agent's log (stderr), time-stamped.
pub fn log(msg: &str) {
    eprintln!("vzagentd: {} {msg}", crate::checkpoint::stamp(crate::units::unix_now()));
}

/// Words of the destination's plan refusals (check_plan) that tell vzmigrate's exit codes
/// apart: the refusal travels as text in the protocol's `PlanRefused`.
pub const REFUSED_EXISTS: &str = "already exists on this host";
pub const REFUSED_ADDRESS: &str = "is used by container";
pub const REFUSED_DISK: &str = "not enough disk space";

/// vzmigrate's exit status for an abort.
pub fn abort_exit(r: &migrate_proto::msg::AbortReason) -> crate::exitcode::MigrateExit {
    use crate::exitcode::MigrateExit as X;
    use migrate_proto::msg::AbortReason::*;
    match r {
        VersionMismatch { .. } => X::Protocol,
        PlanRefused(s) if s.contains(REFUSED_EXISTS) => X::ExistsThere,
        PlanRefused(s) if s.contains(REFUSED_ADDRESS) => X::AddressInUse,
        PlanRefused(s) if s.contains(REFUSED_DISK) => X::NoSpace,
        PlanRefused(_) => X::Refused,
        NoSpace(_) => X::NoSpace,
        DumpFailed(_) => X::DumpFailed,
        RestoreFailed(_) => X::RestoreFailed,
        NotConverging(_) => X::Failed,
        Timeout(_) => X::PeerSilent,
        Cancelled(_) => X::Interrupted,
        Protocol(s) if s == migrate_proto::msg::CONNECTION_LOST => X::ConnectionBroken,
        Protocol(_) => X::Protocol,
        Local(_) => X::Failed,
    }
}

/// Why a destination gives up after a failed write: out of space (or quota), or anything else.
pub(crate) fn io_abort(e: std::io::Error) -> migrate_proto::msg::AbortReason {
    use migrate_proto::msg::AbortReason;
    if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
        AbortReason::NoSpace(e.to_string())
    } else {
        AbortReason::Local(e.to_string())
    }
}

/// A migration id as the journals write it (hex).
pub(crate) fn id_hex(id: &MigrationId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// A migration id from its hex form.
pub(crate) fn parse_id(hex: &str) -> Option<MigrationId> {
    let mut id = [0u8; 16];
    if hex.len() != 32 {
        return None;
    }
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

/// One question on a connection of its own (the peer API's calls other than a migration):
/// sends `request`, waits up to `wait` for the answer, and closes the connection.
pub(crate) async fn ask(
    id: &crate::agent::trust::Identity,
    peer: &crate::agent::trust::Peer,
    request: &migrate_proto::msg::Message,
    wait: std::time::Duration,
) -> Result<migrate_proto::msg::Message, source::MigrateError> {
    let (conn, mut wire) = dial(id, peer).await?;
    wire.send(request).await?;
    let answer = wire.recv(wait).await?;
    wire.finish().await;
    conn.close(0u32.into(), b"done");
    Ok(answer)
}

/// What this host tells a peer of itself in the handshake: its CRIU and kernel, its CPU as
/// CRIU describes it (`cpuinfo.img`), and whether its kernel tracks written pages (soft-dirty).
pub fn local_caps() -> Capabilities {
    let criu = crate::criu::Criu::locate().ok();
    Capabilities {
        mem_dirty_tracking: pages::soft_dirty_works(),
        compression: vec!["zstd".into()],
        criu_version: criu
            .as_ref()
            .and_then(|c| c.version().ok())
            .map(|v| format!("{}.{}.{}", v.0, v.1, v.2))
            .unwrap_or_default(),
        kernel: crate::criu::kernel(),
        cpu_description: criu.as_ref().and_then(cpu_description).unwrap_or_default(),
        free_ram: 0,
        free_disk: 0,
    }
}

/// This host's `cpuinfo.img`, if CRIU can write it and it fits the handshake.
fn cpu_description(criu: &crate::criu::Criu) -> Option<Vec<u8>> {
    in_scratch_dir(|dir| {
        criu.cpuinfo_dump(dir).ok()?;
        let img = std::fs::read(dir.join("cpuinfo.img")).ok()?;
        (img.len() <= migrate_proto::limits::MAX_CPU_DESC).then_some(img)
    })
    .ok()
    .flatten()
}

/// Does a peer's CPU description fit this host (`criu cpuinfo check`)?
pub fn cpu_fits(criu: &crate::criu::Criu, description: &[u8]) -> Result<(), String> {
    in_scratch_dir(|dir| {
        std::fs::write(dir.join("cpuinfo.img"), description).map_err(|e| e.to_string())?;
        criu.cpuinfo_check(dir).map_err(|e| e.to_string())
    })
    .map_err(|e| e.to_string())?
}

/// Runs `f` in a fresh private directory under /tmp, removed afterwards.
fn in_scratch_dir<T>(f: impl FnOnce(&std::path::Path) -> T) -> std::io::Result<T> {
    use std::os::unix::fs::DirBuilderExt;
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ferry-scratch-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let r = f(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(r)
}

#[cfg(test)]
mod exit_tests {
    use super::*;
    use crate::exitcode::MigrateExit as X;
    use migrate_proto::msg::AbortReason as R;

    /// Each abort gets OpenVZ vzmigrate's code; the plan refusals by the words the
    /// destination's check writes (made here as check_plan makes them).
    #[test]
    fn aborts_get_vzmigrate_codes() {
        let cases = [
            (
                R::PlanRefused(format!("container 101 {REFUSED_EXISTS}")),
                X::ExistsThere,
            ),
            (
                R::PlanRefused(format!("/vz/private/101 {REFUSED_EXISTS}")),
                X::ExistsThere,
            ),
            (
                R::PlanRefused(format!("address 198.18.0.10 {REFUSED_ADDRESS} 102 on this host")),
                X::AddressInUse,
            ),
            (
                R::PlanRefused(format!("{REFUSED_DISK}: 10 bytes free in /vz/private, 20 needed")),
                X::NoSpace,
            ),
            (
                R::PlanRefused("container 101 is already being migrated here".into()),
                X::Refused,
            ),
            (
                R::PlanRefused("not enough memory: the container uses 9 MiB".into()),
                X::Refused,
            ),
            (R::NoSpace("No space left on device".into()), X::NoSpace),
            (R::DumpFailed("criu".into()), X::DumpFailed),
            (R::RestoreFailed("criu".into()), X::RestoreFailed),
            (R::Timeout("no word".into()), X::PeerSilent),
            (R::Cancelled("interrupted by a signal".into()), X::Interrupted),
            (
                R::Protocol(migrate_proto::msg::CONNECTION_LOST.into()),
                X::ConnectionBroken,
            ),
            (R::Protocol("unexpected Pages".into()), X::Protocol),
            (
                R::VersionMismatch {
                    ours_min: 1,
                    ours_max: 2,
                },
                X::Protocol,
            ),
            (R::NotConverging("x".into()), X::Failed),
            (R::Local("x".into()), X::Failed),
        ];
        for (r, want) in cases {
            assert_eq!(abort_exit(&r), want, "{r}");
        }
        assert_eq!(
            [X::Usage, X::ExistsThere, X::NoSpace, X::Failed, X::InDoubt].map(X::code),
            [1, 9, 31, 110, 111]
        );
        // A step of the source that failed is told to the peer as what it was, and the code
        // follows: an interruption during the final sync is 25, not a failed dump.
        use source::{abort_reason, MigrateError as E};
        let ct = crate::ctid::Ctid::new(101).unwrap();
        let interrupted = E::Aborted {
            ctid: ct,
            reason: "interrupted by a signal".into(),
            phase: String::new(),
            exit: X::Interrupted,
        };
        assert_eq!(abort_exit(&abort_reason(interrupted)), X::Interrupted);
        assert_eq!(abort_exit(&abort_reason(E::Dump("criu".into()))), X::DumpFailed);
        assert_eq!(abort_exit(&abort_reason(E::Unsupported(ct, "x".into()))), X::Failed);
    }
}
