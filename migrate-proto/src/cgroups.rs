//! The list of a systemd container's cgroups that a dump carries beside its images (ferry's
//! `ferry-cgroups`), as read on the side that restores it: from a checkpoint, or from a
//! migration's peer, so it is checked and bounded.
//!
//! One cgroup per line, parents first: its path relative to the container's own cgroup (`.` for
//! that one, on the first line only), then optionally a tab and the controllers it had enabled
//! for its children (`cgroup.subtree_control`), separated by spaces. systemd watches files that
//! only those controllers make (`init.scope/memory.events`), so the restore enables them again
//! before CRIU reopens the watches. A list of paths alone (written before controllers were
//! recorded) still reads, with none enabled.

/// At most this many cgroups, this deep, each name at most this long.
pub const MAX_CGROUPS: usize = 4096;
pub const MAX_DEPTH: usize = 32;
pub const MAX_NAME: usize = 255;
/// At most this many controllers per cgroup, each name at most this long.
pub const MAX_CONTROLLERS: usize = 32;
pub const MAX_CONTROLLER_NAME: usize = 32;
/// The path of the container's own cgroup in the list.
pub const OWN: &str = ".";

/// One cgroup of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    /// Relative to the container's cgroup; [`OWN`] for that one.
    pub path: String,
    /// What its `cgroup.subtree_control` enabled (`memory`, `pids`, ...).
    pub controllers: Vec<String>,
}

fn controller_ok(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= MAX_CONTROLLER_NAME
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Reads the list: relative paths of plain names only (no `..`, `.` but for the first line,
/// absolute path, empty component or control character), each listed after its parent, with controller names of
/// lower-case letters, digits and `_`; empty lines are skipped.
pub fn parse_tree(text: &str) -> Result<Vec<Cgroup>, String> {
    let mut out: Vec<Cgroup> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if out.len() >= MAX_CGROUPS {
            return Err(format!("the dump lists more than {MAX_CGROUPS} cgroups"));
        }
        let (path, ctrls) = line.split_once('\t').unwrap_or((line, ""));
        let controllers: Vec<String> = ctrls.split(' ').filter(|c| !c.is_empty()).map(String::from).collect();
        if controllers.len() > MAX_CONTROLLERS || !controllers.iter().all(|c| controller_ok(c)) {
            return Err(format!(
                "the dump lists cgroup controllers that are not plain names: {line:?}"
            ));
        }
        if path == OWN {
            if !out.is_empty() {
                return Err("the dump lists the container's own cgroup after others".into());
            }
            out.push(Cgroup {
                path: path.into(),
                controllers,
            });
            continue;
        }
        let parts: Vec<&str> = path.split('/').collect();
        let plain = parts.len() <= MAX_DEPTH
            && parts.iter().all(|c| {
                !c.is_empty()
                    && *c != "."
                    && *c != ".."
                    && c.len() <= MAX_NAME
                    && !c.bytes().any(|b| b < 0x20 || b == 0x7f)
            });
        if !plain {
            return Err(format!(
                "the dump lists a cgroup that is not a plain relative path: {path:?}"
            ));
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !out.iter().any(|o| o.path == parent) {
                return Err(format!("the dump lists cgroup {path:?} before its parent"));
            }
        }
        out.push(Cgroup {
            path: path.into(),
            controllers,
        });
    }
    Ok(out)
}

/// The list as [`parse_tree`] reads it.
pub fn format_tree(list: &[Cgroup]) -> String {
    let mut s = String::new();
    for c in list {
        s.push_str(&c.path);
        if !c.controllers.is_empty() {
            s.push('\t');
            s.push_str(&c.controllers.join(" "));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dumps_cgroup_list_is_confined_and_bounded() {
        let paths = |t: &str| parse_tree(t).map(|l| l.into_iter().map(|c| c.path).collect::<Vec<_>>());
        assert_eq!(
            paths("init.scope\nsystem.slice\nsystem.slice/a.service\n").unwrap(),
            ["init.scope", "system.slice", "system.slice/a.service"]
        );
        for bad in [
            "../x",
            "/abs",
            "a/../b",
            "system.slice/x",
            "a//b",
            "a/",
            "./a",
            "a\0b",
            "a\n.",
            "a\t+memory",
            "a\tMem",
            "a\tx/y",
            "a\r",
            "b\x1b",
        ] {
            assert!(parse_tree(bad).is_err(), "{bad:?}");
        }
        let many: String = (0..=MAX_CGROUPS).map(|i| format!("c{i}\n")).collect();
        assert!(parse_tree(&many).is_err());
        let deep: Vec<String> = (1..=MAX_DEPTH + 1).map(|n| vec!["d"; n].join("/")).collect();
        assert!(parse_tree(&deep.join("\n")).is_err());
        assert!(parse_tree(&deep[..MAX_DEPTH].join("\n")).is_ok());
        assert!(parse_tree(&"n".repeat(MAX_NAME + 1)).is_err());
        let ctrls = vec!["c"; MAX_CONTROLLERS + 1].join(" ");
        assert!(parse_tree(&format!("a\t{ctrls}")).is_err());
    }

    #[test]
    fn controllers_are_read_back_as_written() {
        let list = vec![
            Cgroup {
                path: OWN.into(),
                controllers: vec!["memory".into(), "pids".into()],
            },
            Cgroup {
                path: "init.scope".into(),
                controllers: vec![],
            },
            Cgroup {
                path: "system.slice".into(),
                controllers: vec!["memory".into()],
            },
            Cgroup {
                path: "system.slice/a.service".into(),
                controllers: vec![],
            },
        ];
        let text = format_tree(&list);
        assert_eq!(
            text,
            ".\tmemory pids\ninit.scope\nsystem.slice\tmemory\nsystem.slice/a.service\n"
        );
        assert_eq!(parse_tree(&text).unwrap(), list);
    }
}
