//! `vzpkg`: OS template caches.

use anyhow::Result;
use clap::{Parser, Subcommand};

use super::{parse, report, require_root, Global, Progress};
use crate::template;

#[derive(Debug, Parser)]
#[command(name = "vzpkg", version, about = "Build and list ferry OS template caches")]
pub struct Args {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Build (or rebuild) the cache of a template: busybox from the host's busybox-static,
    /// distributions with debootstrap from their recipe in vz/template/NAME/
    CreateCache { name: String },
    /// Show a distribution template's recipe (vz/template/NAME/), writing the built-in one first
    /// if it is not there yet; --add-package puts packages (services) in its PACKAGES for the
    /// next create-cache
    Recipe {
        name: String,
        /// A Debian package to add (repeatable; ones already there are left as they are)
        #[arg(long = "add-package", value_name = "PKG")]
        add: Vec<String>,
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// List the templates: caches present and recipes known
    List {
        #[arg(short = 'j', long)]
        json: bool,
    },
}

pub fn main() -> ! {
    let args: Args = parse();
    super::init_logging(args.global.verbose);
    let code = match run(args) {
        Ok(()) => 0,
        Err(e) => report("vzpkg", &e),
    };
    std::process::exit(code)
}

pub fn run(args: Args) -> Result<()> {
    let layout = args.global.layout();
    match args.cmd {
        Cmd::CreateCache { name } => {
            template::validate_name(&name)?;
            require_root("vzpkg")?;
            let start = std::time::Instant::now();
            let mut p = Progress::new(args.global.quiet);
            let path = if name == template::BUSYBOX {
                p.line("building the busybox template");
                let _ = std::fs::remove_file(layout.template_cache().join("busybox.tar.zst"));
                template::cache_for(&layout, &name)?.0
            } else {
                template::debootstrap::create_cache(&layout, &name, &mut |l| p.line(l))?
            };
            p.finish();
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if !args.global.quiet {
                println!(
                    "Template cache {} built in {:.1}s ({:.1} MiB)",
                    path.display(),
                    start.elapsed().as_secs_f64(),
                    size as f64 / 1048576.0
                );
            }
        }
        Cmd::Recipe { name, add, json } => {
            require_root("vzpkg")?;
            let r = template::debootstrap::recipe(&layout, &name, &add)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("recipe of {}: {}", r.name, r.dir.display());
                println!("  suite     {}", r.suite.as_deref().unwrap_or("(not set)"));
                println!("  variant   {}", r.variant);
                println!("  packages  {}", r.packages.join(" "));
                println!(
                    "  mirror    {}",
                    r.mirror.as_deref().unwrap_or("(debootstrap's default)")
                );
                let yes = |b: bool| if b { "yes" } else { "no" };
                println!(
                    "  scripts   pre-install {}, post-install {}",
                    yes(r.pre_install),
                    yes(r.post_install)
                );
            }
        }
        Cmd::List { json } => {
            let list = template::list(&layout)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<20} {:>10} {:<8} CACHE", "TEMPLATE", "SIZE", "RECIPE");
                for t in list {
                    let size = t
                        .size
                        .map(|s| format!("{:.1}M", s as f64 / 1048576.0))
                        .unwrap_or_else(|| "-".into());
                    let cache = t
                        .cache
                        .map(|c| c.display().to_string())
                        .unwrap_or_else(|| "(not built)".into());
                    println!(
                        "{:<20} {:>10} {:<8} {}",
                        t.name,
                        size,
                        if t.recipe { "yes" } else { "no" },
                        cache
                    );
                }
            }
        }
    }
    Ok(())
}
