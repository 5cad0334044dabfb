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

/// `ip -batch -` in this process's network namespace: several commands in one run of `ip`,
/// each given as the words that would follow `ip` (no options: the family follows from the
/// addresses). Stops at the first that fails, unless `force`: then every command runs and the
/// batch fails if any did. A word with a space, quote, backslash or `#` is refused (nothing
/// runs), since `ip` would split or cut the line there.
pub fn batch(cmds: &[Vec<String>], force: bool) -> Result<(), NetError> {
    use std::io::Write;
    if cmds.is_empty() {
        return Ok(());
    }
    let what = format!(
        "ip -batch ({})",
        cmds.iter().map(|c| c.join(" ")).collect::<Vec<_>>().join("; ")
    );
    let bad = |w: &String| w.is_empty() || w.chars().any(|c| c.is_whitespace() || "\"'\\#".contains(c));
    if let Some(w) = cmds.iter().flatten().find(|w| bad(w)) {
        return Err(NetError::Command {
            what,
            stderr: format!("{w:?} cannot be given to ip -batch"),
        });
    }
    let mut text = String::new();
    for c in cmds {
        text.push_str(&c.join(" "));
        text.push('\n');
    }
    let mut c = Command::new("ip");
    if force {
        c.arg("-force");
    }
    c.args(["-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let spawn = |source| NetError::Spawn {
        what: what.clone(),
        source,
    };
    let mut child = c.spawn().map_err(spawn)?;
    // A few lines: they fit in the pipe, so writing them all before reading cannot block.
    let wrote = child.stdin.take().map(|mut i| i.write_all(text.as_bytes()));
    let out = child.wait_with_output().map_err(spawn)?;
    if let Some(Err(e)) = wrote {
        return Err(spawn(e));
    }
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Command {
            what,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The words of one [`batch`] command.
pub fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
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

/// Installs the source-address rule in this network namespace if it is not there yet. Both
/// families are checked at once (two runs side by side).
pub fn antispoof() -> Result<(), NetError> {
    let with = |bin: &str, op: &str| {
        let mut c = Command::new(bin);
        c.args(["-w", "-t", "raw", op]).args(ANTISPOOF);
        c
    };
    let bins = ["iptables", "ip6tables"];
    let checks: Vec<_> = bins
        .iter()
        .map(|b| {
            with(b, "-C")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
        })
        .collect();
    for (bin, check) in bins.iter().zip(checks) {
        if check.and_then(|mut c| c.wait()).is_ok_and(|s| s.success()) {
            continue;
        }
        run(with(bin, "-I"), format!("{bin} -t raw -I {}", ANTISPOOF.join(" ")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_refuses_words_ip_would_split_and_runs_nothing() {
        for bad in ["a b", "a\nlink del x", "", "x#y", "q\"", "q'", "back\\slash"] {
            let cmds = vec![words(&["link", "set", "lo", "up"]), words(&["link", "del", bad])];
            match batch(&cmds, false) {
                Err(NetError::Command { stderr, .. }) => assert!(stderr.contains("cannot be given"), "{stderr}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(batch(&[], false).is_ok());
    }
}
