//! Manual pages and shell completions for every command, generated from the same clap
//! definitions the commands parse with (clap_mangen, clap_complete), so they cannot drift from
//! what the commands accept. `ferry-docs DIR` writes them; a package installs them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

/// Every command a host runs, by name, with its clap definition.
pub fn commands() -> Vec<clap::Command> {
    vec![
        super::vzctl::Args::command(),
        super::vzlist::Args::command(),
        super::vzmigrate::Args::command(),
        super::vzagentd::Args::command(),
        super::vzpkg::Args::command(),
        super::vzevacuate::Args::command(),
        super::vzboot::Args::command(),
    ]
}

/// The shells completions are written for, and each one's file name for command `name` in the
/// directory its package layout uses (bash-completion, zsh's site-functions, fish's
/// vendor_completions.d).
const SHELLS: &[(Shell, &str)] = &[(Shell::Bash, "bash"), (Shell::Zsh, "zsh"), (Shell::Fish, "fish")];

fn completion_file(shell: Shell, name: &str) -> String {
    match shell {
        Shell::Zsh => format!("_{name}"),
        Shell::Fish => format!("{name}.fish"),
        _ => name.to_string(),
    }
}

/// Writes `DIR/man/man8/NAME.8` and `NAME-SUBCOMMAND.8` for each command (section 8: system
/// administration, as OpenVZ's were), and `DIR/completions/{bash,zsh,fish}/...`; returns the
/// files written.
pub fn write_all(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man = dir.join("man/man8");
    std::fs::create_dir_all(&man).with_context(|| format!("mkdir {}", man.display()))?;
    for cmd in commands() {
        let name = cmd.get_name().to_string();
        let cmd = cmd.version(env!("CARGO_PKG_VERSION"));
        written.extend(write_man(&man, cmd.clone())?);
        for (shell, sub) in SHELLS {
            let d = dir.join("completions").join(sub);
            std::fs::create_dir_all(&d).with_context(|| format!("mkdir {}", d.display()))?;
            let path = d.join(completion_file(*shell, &name));
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut cmd.clone(), name.clone(), &mut buf);
            std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// The page of `cmd` and one per subcommand, recursively (`vzctl-set.8`), in section 8.
fn write_man(dir: &Path, cmd: clap::Command) -> Result<Vec<PathBuf>> {
    fn each(cmd: clap::Command, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            each(sub, dir, out)?;
        }
        out.push(clap_mangen::Man::new(cmd).section("8").generate_to(dir)?);
        Ok(())
    }
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    each(cmd, dir, &mut out).with_context(|| format!("writing manual pages to {}", dir.display()))?;
    Ok(out)
}

/// `ferry-docs DIR`.
pub fn main() -> ! {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.as_slice() {
        [dir] if !dir.starts_with('-') => match write_all(Path::new(dir)) {
            Ok(files) => {
                println!("{} files written below {dir}", files.len());
                0
            }
            Err(e) => {
                eprintln!("ferry-docs: error: {e:#}");
                1
            }
        },
        _ => {
            eprintln!("usage: ferry-docs DIR   (writes DIR/man/man8/*.8 and DIR/completions/{{bash,zsh,fish}}/*)");
            2
        }
    };
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_and_subcommand_gets_a_page_and_completions() {
        let d = tempfile::tempdir().unwrap();
        let files = write_all(d.path()).unwrap();
        let man = d.path().join("man/man8");
        for cmd in commands() {
            let name = cmd.get_name().to_string();
            let page = std::fs::read_to_string(man.join(format!("{name}.8"))).unwrap();
            assert!(page.starts_with(".ie") || page.contains(".TH"), "{name}.8 is not roff");
            assert!(page.contains(&format!(".TH {name} 8")), "{name}.8 is not in section 8");
            for sub in cmd
                .get_subcommands()
                .filter(|s| s.get_name() != "help" && !s.is_hide_set())
            {
                let sub = sub.get_name();
                // (roff writes a hyphen as `\-`)
                assert!(page.contains(&sub.replace('-', "\\-")), "{name}.8 does not list {sub}");
                assert!(
                    man.join(format!("{name}-{sub}.8")).is_file(),
                    "no page for {name} {sub}"
                );
            }
            for (shell, dir) in SHELLS {
                let f = d
                    .path()
                    .join("completions")
                    .join(dir)
                    .join(completion_file(*shell, &name));
                let text = std::fs::read_to_string(&f).unwrap();
                assert!(text.contains("root-dir"), "{} lacks the global options", f.display());
            }
        }
        let bash = std::fs::read_to_string(d.path().join("completions/bash/vzctl")).unwrap();
        assert!(bash.contains("chkpnt") && bash.contains("--ostemplate"));
        let set = std::fs::read_to_string(man.join("vzctl-set.8")).unwrap();
        assert!(set.contains("numproc") && set.contains("cpulimit"));
        assert!(!man.join("vzctl-help.8").exists());
        assert_eq!(
            files.len(),
            std::fs::read_dir(&man).unwrap().count() + 3 * commands().len()
        );
    }
}
