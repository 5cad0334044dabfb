//! Clients of real services for the distribution tests (tests/debian_template.rs,
//! tests/systemd.rs), run from a lab's client namespace.

use std::time::Duration;

use ferry_testbed::Lab;

use super::run;

/// The first 2000 bytes of `GET /` from a web server at `addr`, port 80.
pub fn http_head(lab: &Lab, addr: &str) -> String {
    let mut c = Lab::cmd(&lab.client, "sh");
    c.args([
        "-c",
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 5 {addr} 80 | head -c 2000"),
    ]);
    run(c, Duration::from_secs(20)).stdout
}

/// A PostgreSQL client's session from the lab's client (the host's psql): one connection that
/// inserts a row every 50 ms until told to finish (at most 6000 rows, 300 s), then counts them.
pub struct PgSession {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<Result<(u64, u64), String>>,
}

impl PgSession {
    /// (rows sent, rows the server counts at the end over the same connection); a broken
    /// session fails the test with psql's error and `context()`.
    pub fn finish_or(self, context: impl FnOnce() -> String) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        match self.handle.join().unwrap() {
            Ok(r) => r,
            Err(e) => panic!("the session broke: {e}\n{}", context()),
        }
    }
}

pub fn pg_session(lab: &Lab, addr: &str) -> PgSession {
    use std::io::Write;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let mut c = Lab::cmd(&lab.client, "psql");
    c.args(["-h", addr, "-U", "postgres", "-At", "-v", "ON_ERROR_STOP=1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("psql (scripts/setup.sh installs postgresql-client)");
    let handle = std::thread::spawn(move || {
        let mut stdin = child.stdin.take().unwrap();
        let t0 = std::time::Instant::now();
        let mut sent = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed)
            && sent < 6000
            && t0.elapsed() < Duration::from_secs(300)
        {
            if writeln!(stdin, "insert into t values ({sent});").is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = writeln!(stdin, "select count(*) from t;");
        let _ = writeln!(stdin, "\\q");
        drop(stdin);
        // A connection that went dead hangs psql: bounded.
        let t1 = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t1.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                return Err(format!(
                    "psql did not finish within 60 s after {sent} rows (a dead connection): {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "psql exited with {} after {sent} rows: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let counted = text.lines().rev().find_map(|l| l.trim().parse().ok()).unwrap_or(0);
        Ok((sent, counted))
    });
    PgSession { stop, handle }
}

/// The rows of table `t` as PostgreSQL at `addr` counts them for the lab's client (0 when it
/// does not answer).
pub fn pg_rows(lab: &Lab, addr: &str) -> u64 {
    let mut c = Lab::cmd(&lab.client, "psql");
    c.args(["-h", addr, "-U", "postgres", "-Atc", "select count(*) from t"]);
    run(c, Duration::from_secs(10)).stdout.trim().parse().unwrap_or(0)
}
