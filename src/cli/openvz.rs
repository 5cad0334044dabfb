//! OpenVZ's commands and options that ferry does not build: named as such when given, with
//! what to use instead where ferry has it, rather than clap's generic "unexpected argument".
//! docs/openvz.md lists the same; the unit test keeps every entry refused by the parser, so an
//! option that gets built leaves this table.

/// (program, OpenVZ's option or subcommand as typed, what ferry offers instead; empty: nothing).
pub const NOT_BUILT: &[(&str, &str, &str)] = &[
    (
        "vzctl",
        "snapshot",
        "vzctl chkpnt --keep-running takes a checkpoint of the running state and files",
    ),
    ("vzctl", "snapshot-switch", "vzctl restore --checkpoint ID"),
    (
        "vzctl",
        "snapshot-delete",
        "checkpoints are pruned with vzctl chkpnt --keep N",
    ),
    ("vzctl", "snapshot-mount", ""),
    ("vzctl", "snapshot-umount", ""),
    ("vzctl", "snapshot-list", "vzctl checkpoints CTID"),
    ("vzctl", "runscript", "vzctl exec CTID - < script"),
    ("vzctl", "convert", ""),
    ("vzctl", "compact", ""),
    ("vzctl", "quotaon", ""),
    ("vzctl", "quotaoff", ""),
    ("vzctl", "quotainit", ""),
    ("vzctl", "--iolimit", ""),
    ("vzctl", "--iopslimit", ""),
    ("vzctl", "--ioprio", ""),
    ("vzctl", "--devnodes", ""),
    ("vzctl", "--devices", ""),
    ("vzctl", "--features", ""),
    ("vzctl", "--capability", ""),
    ("vzctl", "--quotaugidlimit", ""),
    ("vzctl", "--meminfo", ""),
    (
        "vzctl",
        "--userpasswd",
        "vzctl exec CTID 'echo USER:PASSWORD | chpasswd'",
    ),
    ("vzctl", "--physpages", "--ram"),
    ("vzctl", "--swappages", "--swap"),
    ("vzctl", "--vmguarpages", "--ram"),
    ("vzctl", "--oomguarpages", "--ram"),
    ("vzctl", "--privvmpages", "--ram"),
    ("vzctl", "--lockedpages", ""),
    ("vzctl", "--shmpages", ""),
    ("vzctl", "--numfile", ""),
    ("vzctl", "--numtcpsock", ""),
    ("vzctl", "--numothersock", ""),
    ("vzctl", "--applyconfig", ""),
    ("vzctl", "--setmode", ""),
    ("vzctl", "--noatime", ""),
    ("vzctl", "--skip-suspend", ""),
    (
        "vzmigrate",
        "--ssh",
        "ferry's agents talk over QUIC with mutual TLS: vzagentd trust add",
    ),
    ("vzmigrate", "--rsync", ""),
    ("vzmigrate", "--nodeps", ""),
    ("vzlist", "-t", ""),
    ("vzlist", "--no-trim", ""),
];

/// What to say of `arg` (as typed: `--iolimit`, `--iolimit=10M`, `snapshot`) given to
/// `program`, if it is an OpenVZ name ferry does not build.
pub fn not_supported(program: &str, arg: &str) -> Option<String> {
    let name = arg.split('=').next().unwrap_or(arg);
    NOT_BUILT
        .iter()
        .find(|(p, n, _)| *p == program && *n == name)
        .map(|(p, n, instead)| {
            let what = if n.starts_with('-') { "option" } else { "command" };
            let mut m = format!("{p}: {n} is an OpenVZ {what} not supported by ferry");
            if !instead.is_empty() {
                m.push_str(&format!(" (instead: {instead})"));
            }
            m
        })
}

/// From a clap error for an argument or subcommand it does not know, the OpenVZ message.
pub fn explain(program: &str, e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(e.kind(), ErrorKind::UnknownArgument | ErrorKind::InvalidSubcommand) {
        return None;
    }
    let arg = match e
        .get(ContextKind::InvalidArg)
        .or_else(|| e.get(ContextKind::InvalidSubcommand))
    {
        Some(ContextValue::String(s)) => s.clone(),
        _ => return None,
    };
    not_supported(program, &arg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Where each name is tried: a subcommand alone; an option after the subcommand that
    /// OpenVZ takes it with.
    fn argv(program: &str, name: &str) -> Vec<String> {
        let mut v = vec![program.to_string()];
        match (program, name.starts_with('-')) {
            ("vzctl", false) => v.extend([name.into(), "101".into()]),
            ("vzctl", true) => v.extend(["set".into(), "101".into(), name.into(), "1".into(), "--save".into()]),
            ("vzmigrate", _) => v.extend([name.into(), "hostB".into(), "101".into()]),
            _ => v.push(name.into()),
        }
        v
    }

    #[test]
    fn every_name_in_the_table_is_refused_and_said_as_not_supported() {
        for (program, name, _) in NOT_BUILT {
            let cmd = match *program {
                "vzctl" => super::super::vzctl::Args::command(),
                "vzmigrate" => super::super::vzmigrate::Args::command(),
                "vzlist" => super::super::vzlist::Args::command(),
                p => panic!("no program {p}"),
            };
            let e = cmd.try_get_matches_from(argv(program, name)).expect_err(&format!(
                "{program} {name} parses: it is built, so take it out of NOT_BUILT"
            ));
            let said = explain(program, &e).unwrap_or_else(|| panic!("{program} {name}: {e}"));
            assert!(said.contains("not supported by ferry"), "{said}");
            assert!(said.contains(name), "{said}");
        }
        // With a value attached, and only for its own program.
        assert!(not_supported("vzctl", "--iolimit=10M").unwrap().contains("--iolimit"));
        assert!(not_supported("vzctl", "--physpages")
            .unwrap()
            .contains("instead: --ram"));
        assert_eq!(not_supported("vzlist", "--iolimit"), None);
        assert_eq!(not_supported("vzctl", "--bogus"), None);
    }
}
