//! `vzmigrate` run as a child process, by `vzevacuate` and by an agent giving a container back
//! (the pull call): its progress lines as they come (`--progress-lines` on stderr), then its
//! report (`--json` on stdout) or its error.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

/// What a finished migration reported.
#[derive(Debug, Default, Clone, Copy)]
pub struct Report {
    pub frozen_ms: u64,
    pub total_ms: u64,
    pub wire_bytes: u64,
    pub image_bytes: u64,
}

pub enum Event {
    /// Running, with this pid (the first event).
    Started(u32),
    Line(String),
    /// The report, or the error vzmigrate printed last.
    Done(Result<Report, String>),
}

/// Starts `vzmigrate --root-dir ROOT [--online] --json --progress-lines ARGS... DEST CTID`;
/// `on_event` sees its start, its lines and then its end, in that order, on a thread of their
/// own.
pub fn spawn(
    vzmigrate: &Path,
    root: &Path,
    online: bool,
    args: &[String],
    dest: &str,
    ctid: u32,
    mut on_event: impl FnMut(Event) + Send + 'static,
) -> std::io::Result<()> {
    let mut cmd = Command::new(vzmigrate);
    cmd.arg("--root-dir").arg(root);
    if online {
        cmd.arg("--online");
    }
    cmd.args(["--json", "--progress-lines"])
        .args(args)
        .arg(dest)
        .arg(ctid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    std::thread::spawn(move || {
        on_event(Event::Started(child.id()));
        let mut last = String::new();
        if let Some(e) = child.stderr.take() {
            for line in BufReader::new(e).lines().map_while(Result::ok) {
                on_event(Event::Line(line.clone()));
                last = line;
            }
        }
        let mut out = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        let ok = child.wait().is_ok_and(|st| st.success());
        let r = if ok {
            let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            let n = |k: &str| v[k].as_u64().unwrap_or(0);
            Ok(Report {
                frozen_ms: n("frozen_ms"),
                total_ms: n("total_ms"),
                wire_bytes: n("wire_bytes"),
                image_bytes: n("image_bytes"),
            })
        } else {
            Err(last.strip_prefix("vzmigrate: error: ").unwrap_or(&last).to_string())
        };
        on_event(Event::Done(r));
    });
    Ok(())
}
