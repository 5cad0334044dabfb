//! Transport: bulk throughput of one QUIC connection between two agents' endpoints (mutual TLS,
//! ferry's transport settings) against a raw TCP stream, on the same unshaped veth path
//! between two lab hosts, in the same run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use ferry::agent::quic::{self, Pins};
use ferry::agent::trust::Identity;
use ferry::layout::HostLayout;
use ferry_testbed::{Lab, LabConfig};

use crate::stats::{verdict, Spread};
use crate::workload::in_netns;
use crate::Section;

const CHUNK: usize = 1 << 20;

fn identity(dir: &std::path::Path, name: &str) -> Result<Identity> {
    let layout = HostLayout::new(dir.join(name));
    std::fs::create_dir_all(layout.root())?;
    Identity::load_or_create(&layout, name).map_err(|e| anyhow!("{name}'s key: {e}"))
}

/// Seconds to move `bytes` over TCP, the sender's view: until the receiver has read it all and
/// closed.
fn tcp_once(lab: &Lab, addr: SocketAddr, bytes: usize) -> Result<f64> {
    let b = lab.host("hostB").netns.clone();
    let a = lab.host("hostA").netns.clone();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let server = in_netns(&b, move || -> Result<usize> {
        let l = TcpListener::bind(addr)?;
        ready_tx.send(()).ok();
        let (mut s, _) = l.accept()?;
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok(got)
    });
    ready.recv_timeout(Duration::from_secs(10))?;
    let secs = in_netns(&a, move || -> Result<f64> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        let buf = vec![0x5au8; CHUNK];
        let t0 = Instant::now();
        let mut sent = 0;
        while sent < bytes {
            let n = CHUNK.min(bytes - sent);
            s.write_all(&buf[..n])?;
            sent += n;
        }
        s.shutdown(std::net::Shutdown::Write)?;
        let mut end = [0u8; 1];
        let _ = s.read(&mut end);
        Ok(t0.elapsed().as_secs_f64())
    })
    .join()
    .map_err(|_| anyhow!("the TCP sender panicked"))??;
    let got = server.join().map_err(|_| anyhow!("the TCP receiver panicked"))??;
    if got != bytes {
        return Err(anyhow!("TCP delivered {got} of {bytes} bytes"));
    }
    Ok(secs)
}

/// Seconds to move `bytes` over one QUIC stream, until the receiver has acknowledged it all.
fn quic_once(lab: &Lab, addr: SocketAddr, server_id: &Identity, client_id: &Identity, bytes: usize) -> Result<f64> {
    let b = lab.host("hostB").netns.clone();
    let a = lab.host("hostA").netns.clone();
    let (sid, cid) = (server_id.clone(), client_id.clone());
    let client_fp = cid.fingerprint.clone();
    let server_fp = sid.fingerprint.clone();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let server = in_netns(&b, move || -> Result<usize> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let ep = quic::server(&sid, Pins::Fixed(vec![client_fp]), addr)?;
            ready_tx.send(()).ok();
            let conn = ep.accept().await.context("no connection")?.await?;
            let mut r = conn.accept_uni().await?;
            let mut buf = vec![0u8; CHUNK];
            let mut got = 0;
            while let Some(n) = r.read(&mut buf).await? {
                got += n;
            }
            // Hold the connection until the sender has seen everything acknowledged.
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
            Ok::<usize, anyhow::Error>(got)
        })
    });
    ready.recv_timeout(Duration::from_secs(10))?;
    let secs = in_netns(&a, move || -> Result<f64> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let conn = quic::connect(&cid, &server_fp, addr).await?;
            let mut s = conn.open_uni().await?;
            let buf = vec![0x5au8; CHUNK];
            let t0 = Instant::now();
            let mut sent = 0;
            while sent < bytes {
                let n = CHUNK.min(bytes - sent);
                s.write_all(&buf[..n]).await?;
                sent += n;
            }
            s.finish()?;
            s.stopped().await?;
            let secs = t0.elapsed().as_secs_f64();
            conn.close(0u32.into(), b"done");
            Ok::<f64, anyhow::Error>(secs)
        })
    })
    .join()
    .map_err(|_| anyhow!("the QUIC sender panicked"))??;
    let got = server.join().map_err(|_| anyhow!("the QUIC receiver panicked"))??;
    if got != bytes {
        return Err(anyhow!("QUIC delivered {got} of {bytes} bytes"));
    }
    Ok(secs)
}

/// Throughput samples (Mbit/s) of TCP and QUIC on one lab link.
fn measure(link: Option<&str>, bytes: usize, runs: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut cfg = LabConfig::new(&format!("bt{}", std::process::id() % 100000));
    cfg.base = "/tmp/ferry-bench".into();
    cfg.shape = link.map(str::to_string);
    let lab = Lab::up(&cfg)?;
    let keys = tempdir()?;
    let sid = identity(&keys, "server")?;
    let cid = identity(&keys, "client")?;
    let addr: SocketAddr = format!("{}:9100", lab.host("hostB").addr).parse()?;
    let (mut tcp, mut q) = (Vec::new(), Vec::new());
    for i in 0..runs {
        // Alternated, so drift in the machine's load touches both alike.
        let t = tcp_once(&lab, addr, bytes)?;
        let qs = quic_once(&lab, addr, &sid, &cid, bytes)?;
        let mbit = |s: f64| bytes as f64 * 8.0 / s / 1e6;
        eprintln!(
            "  {} run {}: TCP {:.0} Mbit/s, QUIC {:.0} Mbit/s",
            link.unwrap_or("unshaped"),
            i + 1,
            mbit(t),
            mbit(qs)
        );
        tcp.push(mbit(t));
        q.push(mbit(qs));
    }
    let _ = std::fs::remove_dir_all(&keys);
    Ok((tcp, q))
}

pub fn run(smoke: bool, runs: usize) -> Result<Section> {
    let links: &[Option<&str>] = if smoke { &[None] } else { &[None, Some("1gbit")] };
    let mut markdown = String::from(
        "## Transport\n\nOne stream between two lab hosts (veths through the fabric bridge; shaped with tbf on \
         both ends of each uplink where a rate is given), raw TCP against one QUIC connection with ferry's \
         transport settings and mutual TLS, alternated run by run.\n\n\
         | link | MiB | raw TCP (Mbit/s, baseline) | QUIC (Mbit/s) | QUIC / TCP |\n|---|---|---|---|---|\n",
    );
    let mut json = serde_json::Map::new();
    let mut verdicts = Vec::new();
    for link in links {
        // Unshaped, half a GiB; at 1 Gbit/s, 128 MiB (about a second).
        let bytes: usize = match (smoke, link) {
            (true, _) => 16 << 20,
            (false, None) => 512 << 20,
            (false, Some(_)) => 128 << 20,
        };
        let (tcp, q) = measure(*link, bytes, runs)?;
        let ratios: Vec<f64> = q.iter().zip(&tcp).map(|(a, b)| a / b).collect();
        let (t, qq, r) = (Spread::of(&tcp), Spread::of(&q), Spread::of(&ratios));
        let name = link.unwrap_or("unshaped");
        markdown.push_str(&format!(
            "| {name} | {} | {} | {} | {} |\n",
            bytes >> 20,
            t.show(0),
            qq.show(0),
            r.show(2)
        ));
        if link.is_none() {
            verdicts.push(format!(
                "Target QUIC >= 0.8 x TCP on the unshaped veth: {}.",
                verdict(r.median, 0.8, false)
            ));
        }
        json.insert(
            name.to_string(),
            serde_json::json!({"bytes": bytes, "tcp_mbit": tcp, "quic_mbit": q, "ratio": r}),
        );
    }
    markdown.push('\n');
    for v in verdicts {
        markdown.push_str(&v);
        markdown.push_str(
            " Unshaped, the veth path moves TCP with segmentation offloads in the kernel, while QUIC \
             encrypts and packetizes each datagram in user space on one core per side (2 CPUs here), so the \
             unshaped figure measures CPU, not the network; on a real link (the 1 Gbit/s row) both fill it.\n\n",
        );
    }
    Ok(Section {
        markdown,
        json: serde_json::Value::Object(json),
    })
}

fn tempdir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("vzbench-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
