//! Running iproute2's `ip`, on the host (the network namespace vzctl runs in) or inside a
//! container's network namespace (through `nsenter --net`, so the host's `ip` binary runs;
//! nothing from the container's file system is executed with host privileges).
//!
//! iproute2 rather than a netlink crate: CRIU itself needs iproute2 on the host, and the
//! netlink crates change their APIs every few months (../shared/docs/CRATES.md).

use std::process::Command;

use super::NetError;

fn run(mut cmd: Command, what: String) -> Result<String, NetError> {
    let out = cmd.output().map_err(|source| NetError::Spawn {
        what: what.clone(),
        source,
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetError::Command {
            what,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// `ip ARGS` in this process's network namespace.
pub fn host(args: &[&str]) -> Result<String, NetError> {
    let mut c = Command::new("ip");
    c.args(args);
    run(c, format!("ip {}", args.join(" ")))
}

/// `bridge ARGS` in vzctl's own network namespace (iproute2's bridge tool: `ip link set ...
/// type bridge_slave state N` is accepted and ignored by some versions).
pub fn bridge(args: &[&str]) -> Result<String, NetError> {
    let mut c = Command::new("bridge");
    c.args(args);
    run(c, format!("bridge {}", args.join(" ")))
}

/// `ip ARGS` inside the network namespace of process `pid`.
pub fn inside(pid: i32, args: &[&str]) -> Result<String, NetError> {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/proc/{pid}/ns/net")).arg("ip").args(args);
    run(c, format!("ip {} (in the container)", args.join(" ")))
}

/// Writes a sysctl of this network namespace (`/proc/sys/net/...` follows the writer's
/// namespace).
pub fn sysctl(path: &str, value: &str) -> Result<(), NetError> {
    let p = format!("/proc/sys/{path}");
    std::fs::write(&p, value).map_err(|source| NetError::Spawn {
        what: format!("writing {p}"),
        source,
    })
}

/// Does a link exist in this network namespace?
pub fn link_exists(name: &str) -> bool {
    super::announce::ifindex(name).is_ok()
}

/// The rule that keeps a container to its own addresses: a packet that arrives on a container's
/// routed link (any `venet*` of this namespace) is dropped unless the route back to its source
/// leaves through that same link (reverse-path filtering, strict), i.e. unless its source is one
/// of the addresses routed to that container. IPv4 and IPv6 alike, in the raw table before
/// anything else sees the packet. One rule per family for every container of the host, added
/// once (`-C` first), so there is nothing to remove when a container goes.
pub const ANTISPOOF: &[&str] = &[
    "PREROUTING",
    "-i",
    "venet+",
    "-m",
    "rpfilter",
    "--invert",
    "-m",
    "comment",
    "--comment",
    "ferry: a container sends only from its own addresses",
    "-j",
    "DROP",
];

/// Installs the source-address rule in this network namespace if it is not there yet.
pub fn antispoof() -> Result<(), NetError> {
    for bin in ["iptables", "ip6tables"] {
        let with = |op: &str| {
            let mut c = Command::new(bin);
            c.args(["-w", "-t", "raw", op]).args(ANTISPOOF);
            c
        };
        if with("-C").output().is_ok_and(|o| o.status.success()) {
            continue;
        }
        run(with("-I"), format!("{bin} -t raw -I {}", ANTISPOOF.join(" ")))?;
    }
    Ok(())
}
