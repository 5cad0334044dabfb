//! The command-line front ends. Argument structs live here, apart from the library's option
//! structs; each binary in src/bin is a one-line call into this module.
//!
//! Every binary parses its arguments first (no system calls), then acts, and exits with a code
//! from [`ExitCode`]; errors are printed once, as a chain, on stderr.

pub mod docs;
pub mod openvz;
pub mod vzagentd;
pub mod vzboot;
pub mod vzctl;
pub mod vzevacuate;
pub mod vzlist;
pub mod vzmigrate;
pub mod vzpkg;

use std::io::IsTerminal;

use crate::exitcode::ExitCode;

/// Options every binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// The host root below which all state lives (default: $FERRY_ROOT, else /)
    #[arg(long, global = true, value_name = "DIR")]
    pub root_dir: Option<std::path::PathBuf>,
    /// More log output (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

impl Global {
    pub fn layout(&self) -> crate::layout::HostLayout {
        crate::layout::HostLayout::from_option(self.root_dir.as_deref())
    }
}

/// Installs the log subscriber: warnings by default, more with -v, or FERRY_LOG.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Parses arguments; help and version exit 0, anything wrong exits with [`ExitCode::BadOption`].
pub fn parse<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(t) => t,
        Err(e) => {
            let program = T::command().get_name().to_string();
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                // vzmigrate's usage errors are 1, as OpenVZ's (crate::exitcode::MigrateExit).
                _ if program == "vzmigrate" => crate::exitcode::MigrateExit::Usage.code() as i32,
                clap::error::ErrorKind::ValueValidation => ExitCode::BadValue.code() as i32,
                _ => ExitCode::BadOption.code() as i32,
            };
            // An OpenVZ option or command ferry does not build is said as such.
            match openvz::explain(&program, &e) {
                Some(m) => eprintln!("{m}"),
                None => {
                    let _ = e.print();
                }
            }
            std::process::exit(code);
        }
    }
}

/// The exit code an error chain stands for: the first error in it that has one.
pub fn exit_code_of(err: &anyhow::Error) -> ExitCode {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<crate::migrate::source::MigrateError>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<crate::checkpoint::CheckpointError>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<crate::criu::CriuError>() {
            let _ = e;
            return ExitCode::SystemError;
        }
        if let Some(e) = cause.downcast_ref::<crate::runtime::RuntimeError>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<crate::host::HostError>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<crate::template::TemplateError>() {
            return e.exit_code();
        }
        if cause.downcast_ref::<crate::ctid::IdError>().is_some()
            || cause.downcast_ref::<crate::list::UnknownField>().is_some()
        {
            return ExitCode::BadValue;
        }
        if cause
            .downcast_ref::<crate::agent::trust::TrustError>()
            .is_some_and(|e| {
                !matches!(
                    e,
                    crate::agent::trust::TrustError::Io { .. } | crate::agent::trust::TrustError::KeyGen(_)
                )
            })
        {
            return ExitCode::BadValue;
        }
        if let Some(e) = cause.downcast_ref::<CliError>() {
            return e.exit_code();
        }
    }
    ExitCode::SystemError
}

/// A duration such as 500ms, 2s or 1.5s: [`crate::units::duration`] (a bare number is seconds).
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    crate::units::duration(s)
}

/// Errors of the front ends themselves.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0} must be run as root")]
    NotRoot(&'static str),
    #[error("{0}")]
    BadOption(String),
    /// Some of several migrations failed (their containers stay where they were).
    #[error("{0}")]
    Partial(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::NotRoot(_) => ExitCode::Permission,
            CliError::BadOption(_) => ExitCode::BadOption,
            CliError::Partial(_) => ExitCode::MigrateFailed,
        }
    }
}

pub fn require_root(prog: &'static str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(CliError::NotRoot(prog).into());
    }
    Ok(())
}

/// Prints an error chain once (`prog: error: outer: inner: ...`) and returns its exit code.
pub fn report(prog: &str, err: &anyhow::Error) -> i32 {
    eprintln!("{prog}: error: {}", error_text(err));
    exit_code_of(err).code() as i32
}

/// An error chain said once: `outer: inner: ...`, links that only repeat the next one
/// (transparent wrappers) dropped.
pub fn error_text(err: &anyhow::Error) -> String {
    let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
    let mut parts: Vec<&str> = Vec::new();
    for c in &chain {
        if parts.last().is_none_or(|p| !p.contains(c.as_str())) {
            parts.push(c);
        }
    }
    parts.join(": ")
}

/// Progress for long work: a spinner on a terminal, plain lines otherwise.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    /// Stops the thread that shows a byte counter.
    ticker: Option<(
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        std::thread::JoinHandle<()>,
    )>,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        });
        Self {
            bar,
            quiet,
            ticker: None,
        }
    }

    /// On a terminal: a counter whose bytes and rate the display shows beside the message,
    /// updated by a thread of its own (the work may keep this one busy). None elsewhere.
    pub fn count_bytes(&mut self) -> Option<std::sync::Arc<std::sync::atomic::AtomicU64>> {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let bar = self.bar.clone()?;
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} {msg}  [{binary_bytes} sent, {binary_bytes_per_sec}]")
        {
            bar.set_style(style);
        }
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (count.clone(), stop.clone());
        let h = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                bar.set_position(c.load(Ordering::Relaxed));
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        });
        self.ticker = Some((stop, h));
        Some(count)
    }

    /// Plain lines on stderr, terminal or not (for a parent process that reads them).
    pub fn lines() -> Self {
        Self {
            bar: None,
            quiet: false,
            ticker: None,
        }
    }

    pub fn line(&mut self, msg: &str) {
        match &self.bar {
            Some(b) => b.set_message(msg.to_string()),
            // Not eprintln!, which panics when stderr is gone (a parent that read it died):
            // a migration must not die of its progress display.
            None if !self.quiet => {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "{msg}");
            }
            None => {}
        }
    }

    pub fn finish(&mut self) {
        if let Some((stop, h)) = self.ticker.take() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = h.join();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
