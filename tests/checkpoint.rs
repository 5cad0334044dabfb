//! Root-only: checkpoint and restore through CRIU, on the testbed where a network is needed.

mod common;

use std::time::Duration;

use common::lab::{vz, vz_ok};
use common::*;
use ferry_testbed::Lab;

fn lab(tag: &str) -> Lab {
    common::lab::single(tag)
}

fn counter(lab: &Lab, ctid: &str) -> u64 {
    count_in(&lab.host("hostA").root.join(format!("vz/private/{ctid}")))
}

/// The counter's value in a container's private area (which stays readable while the
/// container is stopped and unmounted); 0 before it first counts.
fn count_in(private: &std::path::Path) -> u64 {
    std::fs::read_to_string(private.join("tmp/count"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn tcp_session_counter_and_pids_survive_chkpnt_and_restore() {
    let lab = lab("ck");
    vz_ok(&lab, &["create", "101", "--ipadd", "198.18.0.10", "--hostname", "ck"]);
    vz_ok(&lab, &["start", "101"]);
    vz_ok(
        &lab,
        &["exec", "101", "nc -ll -p 7 -e cat </dev/null >/dev/null 2>&1 &"],
    );
    vz_ok(&lab, &["exec", "101", COUNTER_LOOP]);
    wait_until("the counter to start", Duration::from_secs(20), || {
        counter(&lab, "101") > 0
    });
    let session = echo_session(lab.client.clone(), "198.18.0.10:7", 250, Duration::from_millis(20));
    std::thread::sleep(Duration::from_millis(1500));
    let pids_before = vz_ok(&lab, &["exec", "101", "ps -o pid,args | grep -v ps | sort"]);
    let out = vz_ok(&lab, &["chkpnt", "101"]);
    assert!(out.contains("container stopped"), "{out}");
    let at_dump = counter(&lab, "101");
    assert!(at_dump > 0);
    assert_eq!(
        vz(&lab, &["status", "101"]).stdout.trim(),
        "CTID 101 exist unmounted down"
    );
    std::thread::sleep(Duration::from_millis(500));
    vz_ok(&lab, &["restore", "101"]);
    assert_eq!(
        vz(&lab, &["status", "101"]).stdout.trim(),
        "CTID 101 exist mounted running"
    );
    // The counter goes on from where it was, not from zero.
    wait_until("the counter to move on", Duration::from_secs(10), || {
        counter(&lab, "101") > at_dump
    });
    let after = counter(&lab, "101");
    assert!(after > at_dump && after < at_dump + 200, "counter {at_dump} -> {after}");
    let pids_after = vz_ok(&lab, &["exec", "101", "ps -o pid,args | grep -v ps | sort"]);
    // The lasting processes (not a fork of the loop for its `sleep`), by pid.
    let keep = |s: &str| lasting_procs(s, |l| l.contains("while") || l.contains("nc -ll") || l.contains("init"));
    assert_eq!(keep(&pids_before), keep(&pids_after), "pids changed");
    // The client's connection carried on without reconnecting, every byte correct.
    assert_eq!(session.join().unwrap(), Ok(250));
    vz_ok(&lab, &["stop", "101", "--fast"]);
}

#[test]
fn keep_running_then_restore_rolls_memory_and_files_back() {
    let lab = lab("kr");
    vz_ok(&lab, &["create", "102"]);
    vz_ok(&lab, &["start", "102"]);
    vz_ok(
        &lab,
        &["exec", "102", &format!("echo before > /root/marker; {COUNTER_LOOP}")],
    );
    std::thread::sleep(Duration::from_millis(500));
    let out = vz_ok(&lab, &["chkpnt", "102", "--keep-running"]);
    assert!(out.contains("still running"), "{out}");
    let at_ckpt = counter(&lab, "102");
    assert_eq!(
        vz(&lab, &["status", "102"]).stdout.trim(),
        "CTID 102 exist mounted running"
    );
    // Life goes on: memory and files change.
    vz_ok(
        &lab,
        &[
            "exec",
            "102",
            "echo after > /root/marker; echo new > /root/newfile; rm /etc/os-release",
        ],
    );
    wait_until(
        "the counter to go on after the checkpoint",
        Duration::from_secs(20),
        || counter(&lab, "102") > at_ckpt + 10,
    );
    vz_ok(&lab, &["stop", "102", "--fast"]);
    vz_ok(&lab, &["restore", "102"]);
    let files = vz_ok(
        &lab,
        &[
            "exec",
            "102",
            "cat /root/marker; ls /root; test -e /etc/os-release && echo os-release-back",
        ],
    );
    assert_eq!(files, "before\nmarker\nos-release-back\n", "files were not rolled back");
    wait_until("the counter to run again", Duration::from_secs(10), || {
        counter(&lab, "102") > at_ckpt
    });
    assert!(
        counter(&lab, "102") < at_ckpt + 20 + 100,
        "memory was not rolled back: {at_ckpt} then {}",
        counter(&lab, "102")
    );
    // A second checkpoint of the chain is a delta against the first; both restore.
    vz_ok(&lab, &["chkpnt", "102", "--keep-running"]);
    let list: serde_json::Value = serde_json::from_str(&vz_ok(&lab, &["checkpoints", "102", "--json"])).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["level"], 1);
    assert_eq!(list[1]["parent"], list[0]["id"]);
    vz_ok(&lab, &["exec", "102", "echo later > /root/marker"]);
    vz_ok(&lab, &["stop", "102", "--fast"]);
    vz_ok(
        &lab,
        &["restore", "102", "--checkpoint", list[0]["id"].as_str().unwrap()],
    );
    assert_eq!(vz_ok(&lab, &["exec", "102", "cat /root/marker"]), "before\n");
    vz_ok(&lab, &["stop", "102", "--fast"]);
    vz_ok(&lab, &["resume", "102"]);
    assert_eq!(vz_ok(&lab, &["exec", "102", "cat /root/marker"]), "before\n");
    vz_ok(&lab, &["suspend", "102"]);
    assert_eq!(
        vz(&lab, &["status", "102"]).stdout.trim(),
        "CTID 102 exist unmounted down"
    );
    vz_ok(&lab, &["resume", "102"]);
    vz_ok(&lab, &["stop", "102", "--fast"]);
}

#[test]
fn bad_archives_are_refused_before_criu_runs() {
    let lab = lab("ba");
    vz_ok(&lab, &["create", "103"]);
    vz_ok(&lab, &["start", "103"]);
    let dir = lab.base.join("archives");
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.ckpt");
    vz_ok(&lab, &["chkpnt", "103", "--dumpfile", good.to_str().unwrap()]);
    let bytes = std::fs::read(&good).unwrap();
    let log = lab.host("hostA").root.join("vz/log/103.restore.log");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", bytes[..bytes.len() / 2].to_vec(), "truncated or damaged"),
        (
            "flipped",
            {
                let mut b = bytes.clone();
                let i = b.len() - 100;
                b[i] ^= 1;
                b
            },
            "checksum mismatch",
        ),
        (
            "newer",
            {
                let mut b = bytes.clone();
                b[8..12].copy_from_slice(&99u32.to_be_bytes());
                b
            },
            "format version 99",
        ),
        (
            "foreign",
            b"PK\x03\x04 not a checkpoint at all".to_vec(),
            "not a ferry checkpoint",
        ),
    ];
    for (name, data, msg) in cases {
        let f = dir.join(format!("{name}.ckpt"));
        std::fs::write(&f, data).unwrap();
        let o = vz(&lab, &["restore", "103", "--dumpfile", f.to_str().unwrap()]);
        assert_eq!(o.code, 17, "{name}: {o:?}");
        assert!(o.stderr.contains(msg), "{name}: expected {msg:?}: {}", o.stderr);
        assert!(!log.exists(), "{name}: CRIU ran");
        assert_eq!(
            vz(&lab, &["status", "103"]).stdout.trim(),
            "CTID 103 exist unmounted down"
        );
    }
    // A well-formed archive from another kernel (format 1, made from the format 2 file's
    // contents): refused without --force, restored with it.
    let work = dir.join("foreign-kernel.d");
    let mut manifest = ferry::checkpoint::directory::unbundle(&good, &work).unwrap();
    manifest.kernel = "2.6.32-042stab145.3".into();
    manifest.format = 1;
    manifest.files.clear();
    let other = dir.join("other-kernel.ckpt");
    ferry::checkpoint::archive::write(&other, &manifest, &work).unwrap();
    let o = vz(&lab, &["restore", "103", "--dumpfile", other.to_str().unwrap()]);
    assert_eq!(o.code, 17, "{o:?}");
    assert!(
        o.stderr.contains("made on kernel 2.6.32-042stab145.3") && o.stderr.contains("--force"),
        "{}",
        o.stderr
    );
    assert!(!log.exists(), "CRIU ran for an archive from another kernel");
    vz_ok(
        &lab,
        &["restore", "103", "--dumpfile", other.to_str().unwrap(), "--force"],
    );
    vz_ok(&lab, &["chkpnt", "103"]);
    vz_ok(&lab, &["restore", "103", "--dumpfile", good.to_str().unwrap()]);
    vz_ok(&lab, &["stop", "103", "--fast"]);
}

/// One connection from the client: made, a line sent, its echo read back.
fn one_echo(netns: &str, addr: &str, n: usize) -> Result<(), String> {
    use std::io::{Read, Write};
    ferry_testbed::enter_netns(netns).map_err(|e| format!("setns: {e}"))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(30))
        .map_err(|e| format!("connection {n}: connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    let line = format!("connection {n}\n");
    s.write_all(line.as_bytes())
        .map_err(|e| format!("connection {n}: write: {e}"))?;
    let mut got = vec![0u8; line.len()];
    s.read_exact(&mut got)
        .map_err(|e| format!("connection {n}: read: {e}"))?;
    if got != line.as_bytes() {
        return Err(format!(
            "connection {n}: echo came back as {:?}",
            String::from_utf8_lossy(&got)
        ));
    }
    Ok(())
}

/// Clients connecting while a checkpoint freezes and stops the container, and while it is
/// stopped: none is left with a connection the dump dropped (its handshake made by the frozen
/// kernel, its request acknowledged, no answer ever coming), none is refused or reset; each is
/// served once the container is restored. The cut-off leaves no rule behind.
#[test]
fn clients_connecting_during_a_checkpoint_are_served_after_the_restore() {
    let lab = lab("cf");
    vz_ok(&lab, &["create", "105", "--ipadd", "198.18.0.10"]);
    vz_ok(&lab, &["start", "105"]);
    vz_ok(
        &lab,
        &["exec", "105", "nc -ll -p 7 -e cat </dev/null >/dev/null 2>&1 &"],
    );
    wait_until("the echo service", Duration::from_secs(20), || {
        vz(&lab, &["exec", "105", "netstat -tln | grep -q ':7 '"]).code == 0
    });
    // A new connection every 15 ms (at most 300) until told to stop, each on its own thread.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let netns = lab.client.clone();
    let stop2 = stop.clone();
    let opener = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for n in 0..300 {
            if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            let netns = netns.clone();
            conns.push(std::thread::spawn(move || one_echo(&netns, "198.18.0.10:7", n)));
            std::thread::sleep(Duration::from_millis(15));
        }
        conns
    });
    std::thread::sleep(Duration::from_millis(300));
    let out = vz_ok(&lab, &["chkpnt", "105"]);
    assert!(out.contains("container stopped"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    vz_ok(&lab, &["restore", "105"]);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let conns = opener.join().unwrap();
    assert!(conns.len() > 40, "only {} connections tried", conns.len());
    let failed: Vec<String> = conns.into_iter().filter_map(|c| c.join().unwrap().err()).collect();
    assert!(failed.is_empty(), "{} connections failed: {failed:?}", failed.len());
    let h = lab.host("hostA");
    for cmd in ["iptables", "ip6tables"] {
        let mut c = Lab::cmd(&h.netns, cmd);
        c.args(["-w", "-S", "FORWARD"]);
        let rules = run(c, Duration::from_secs(20)).stdout;
        assert!(!rules.contains("venet105"), "{cmd} rules left: {rules}");
    }
    vz_ok(&lab, &["stop", "105", "--fast"]);
}

/// A restore rolls the private area back in place: files keep their inodes (a restored
/// process's file is the one it had), hard links too, a file changed since the checkpoint gets
/// its content back through its own inode, and a file hard-linked to another since is made
/// anew rather than written through the shared inode (which would change the other).
#[test]
fn a_restore_keeps_inodes_and_breaks_only_links_made_since() {
    use std::os::unix::fs::MetadataExt;
    let lab = lab("in");
    vz_ok(&lab, &["create", "107"]);
    vz_ok(&lab, &["start", "107"]);
    vz_ok(
        &lab,
        &[
            "exec",
            "107",
            "mkdir -p /srv; echo a > /srv/a; echo b > /srv/b; echo h > /srv/h1; ln /srv/h1 /srv/h2; echo c > /srv/c",
        ],
    );
    let private = lab.host("hostA").root.join("vz/private/107");
    let ino = |p: &str| std::fs::metadata(private.join(p)).unwrap().ino();
    let read = |p: &str| std::fs::read_to_string(private.join(p)).unwrap();
    let before: Vec<u64> = ["srv/a", "srv/b", "srv/h1", "srv/c", "bin/busybox"]
        .iter()
        .map(|p| ino(p))
        .collect();
    vz_ok(&lab, &["chkpnt", "107"]);
    // While it is stopped: c changed, b now another name of a.
    std::fs::write(private.join("srv/c"), "changed\n").unwrap();
    std::fs::remove_file(private.join("srv/b")).unwrap();
    std::fs::hard_link(private.join("srv/a"), private.join("srv/b")).unwrap();
    vz_ok(&lab, &["restore", "107"]);
    assert_eq!(
        (read("srv/a"), read("srv/b"), read("srv/c")),
        ("a\n".into(), "b\n".into(), "c\n".into())
    );
    assert_eq!(ino("srv/a"), before[0], "a file that never changed was made anew");
    assert_ne!(ino("srv/b"), ino("srv/a"), "b is still a name of a");
    assert_eq!(ino("srv/h1"), before[2], "a hard-linked file was made anew");
    assert_eq!(ino("srv/h2"), before[2], "the hard link is gone");
    assert_eq!(
        ino("srv/c"),
        before[3],
        "a changed file was made anew, not rolled back in place"
    );
    assert_eq!(ino("bin/busybox"), before[4]);
    vz_ok(&lab, &["stop", "107", "--fast"]);
}

#[test]
fn a_file_removed_while_linked_elsewhere_survives_chkpnt_and_restore() {
    let lab = lab("lr");
    vz_ok(&lab, &["create", "106"]);
    vz_ok(&lab, &["start", "106"]);
    vz_ok(&lab, &["exec", "106", HOLD_UNLINKED]);
    let expect = "kept\nsame-inode\nsame-content\n. .. f.link ";
    assert_eq!(vz_ok(&lab, &["exec", "106", CHECK_UNLINKED]), expect);
    // A checkpoint that leaves it running leaves nothing beside the file.
    vz_ok(&lab, &["chkpnt", "106", "--keep-running"]);
    assert_eq!(vz_ok(&lab, &["exec", "106", CHECK_UNLINKED]), expect);
    // The first checkpoint, restored after a stop, and then a stopping one, restored.
    vz_ok(&lab, &["stop", "106", "--fast"]);
    vz_ok(&lab, &["restore", "106"]);
    assert_eq!(vz_ok(&lab, &["exec", "106", CHECK_UNLINKED]), expect);
    vz_ok(&lab, &["chkpnt", "106"]);
    vz_ok(&lab, &["restore", "106"]);
    assert_eq!(vz_ok(&lab, &["exec", "106", CHECK_UNLINKED]), expect);
    vz_ok(&lab, &["stop", "106", "--fast"]);
}

#[test]
fn a_failed_dump_leaves_the_container_running() {
    let lab = lab("fd");
    vz_ok(&lab, &["create", "104"]);
    vz_ok(&lab, &["start", "104"]);
    // A process holding a host descriptor (vzctl's stdout, a file on the host): not dumpable.
    let host_file = lab.base.join("exec-output");
    let h = lab.host("hostA");
    let mut c = Lab::cmd(&h.netns, env!("CARGO_BIN_EXE_vzctl"));
    c.arg("--root-dir").arg(&h.root).args(["exec", "104", "sleep 1000 &"]);
    c.stdout(std::fs::File::create(&host_file).unwrap())
        .stderr(std::fs::File::create(lab.base.join("exec-err")).unwrap());
    assert!(c.status().unwrap().success());
    let o = vz(&lab, &["chkpnt", "104"]);
    assert_eq!(o.code, 16, "{o:?}");
    assert!(
        o.stderr.contains("it keeps running") && o.stderr.contains("Error (criu/"),
        "CRIU's own error lines missing: {}",
        o.stderr
    );
    assert!(o.stderr.contains("104.dump.log"), "{}", o.stderr);
    assert_eq!(
        vz(&lab, &["status", "104"]).stdout.trim(),
        "CTID 104 exist mounted running"
    );
    assert_eq!(vz_ok(&lab, &["exec", "104", "echo alive"]), "alive\n");
    assert!(vz_ok(&lab, &["checkpoints", "104", "--json"]).trim() == "[]");
    vz_ok(&lab, &["stop", "104", "--fast"]);
}

#[test]
fn a_failed_restore_leaves_the_container_stopped_and_the_checkpoint_intact() {
    let lab = lab("fr");
    vz_ok(&lab, &["create", "105", "--ipadd", "198.18.0.15"]);
    vz_ok(&lab, &["start", "105"]);
    vz_ok(&lab, &["exec", "105", "sleep 1000 </dev/null >/dev/null 2>&1 &"]);
    vz_ok(&lab, &["chkpnt", "105"]);
    let netns = lab.host("hostA").netns.clone();
    // A process limit below what the checkpoint holds: CRIU cannot recreate the tree.
    vz_ok(&lab, &["set", "105", "--numproc", "1", "--save"]);
    let o = vz(&lab, &["restore", "105"]);
    assert_eq!(o.code, 17, "{o:?}");
    assert!(
        o.stderr.contains("stays stopped and its checkpoint is intact") && o.stderr.contains("105.restore.log"),
        "{}",
        o.stderr
    );
    assert_eq!(
        vz(&lab, &["status", "105"]).stdout.trim(),
        "CTID 105 exist unmounted down"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&vz_ok(&lab, &["checkpoints", "105", "--json"]))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    vz_ok(&lab, &["set", "105", "--numproc", "unlimited", "--save"]);
    vz_ok(&lab, &["restore", "105"]);
    assert_eq!(vz_ok(&lab, &["exec", "105", "echo restored"]), "restored\n");
    // Stopping a suspended container releases its addresses; the checkpoint stays.
    vz_ok(&lab, &["suspend", "105"]);
    let mut c = Lab::cmd(&netns, "ip");
    c.args(["route", "show", "198.18.0.15"]);
    assert!(
        run(c, Duration::from_secs(10)).stdout.contains("blackhole"),
        "a suspended container's address is not held"
    );
    vz_ok(&lab, &["stop", "105"]);
    let mut c = Lab::cmd(&netns, "ip");
    c.args(["route", "show", "198.18.0.15"]);
    assert_eq!(
        run(c, Duration::from_secs(10)).stdout.trim(),
        "",
        "the address was not released"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&vz_ok(&lab, &["checkpoints", "105", "--json"]))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// Pages a page-server dump hands on, written where CRIU would have put them.
struct PagesInto(std::path::PathBuf);

impl ferry::criu::page_server::PageSink for PagesInto {
    fn open(&mut self, image: &str) -> std::io::Result<()> {
        std::fs::File::create(self.0.join(image)).map(drop)
    }
    fn pages(&mut self, image: &str, offset: u64, data: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.0.join(image))?
            .write_all_at(data, offset)
    }
}

/// The files of an images directory whose names start with one of `prefixes`.
fn images_named(dir: &std::path::Path, prefixes: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p)))
        .collect();
    v.sort();
    v
}

#[test]
fn a_dump_through_the_page_server_writes_what_criu_writes_and_restores() {
    use ferry::ctid::Ctid;
    let h = TestHost::new("pgsrv");
    h.vzctl(&["create", "105", "--ostemplate", "busybox"]).ok();
    h.vzctl(&["set", "105", "--cpumask", "0", "--save"]).ok();
    h.vzctl(&["start", "105"]).ok();
    // A counter, and a shell holding 2 MB of random text whose checksum it writes at start and
    // again on SIGUSR1.
    h.exec("105", COUNTER_LOOP);
    h.exec(
        "105",
        "sh -c 'x=$(head -c 1500000 /dev/urandom | od -An -x); trap \"echo \\\"\\$x\\\" | md5sum > /tmp/after\" USR1; \
         echo \"$x\" | md5sum > /tmp/before; echo $$ > /tmp/holder; while :; do sleep 1; done' </dev/null >/dev/null 2>&1 &",
    );
    // (It writes its pid after its checksum.)
    wait_until("the holder's checksum and pid", Duration::from_secs(20), || {
        h.private("105").join("tmp/holder").exists()
    });
    // The counter has counted before anything freezes (under load its first write can come
    // after the holder's).
    wait_until("the counter to start", Duration::from_secs(20), || {
        count_in(&h.private("105")) > 0
    });
    let layout = ferry::layout::HostLayout::new(h.root());
    let rt = ferry::runtime::Runtime::new(ferry::host::Host::open(layout).unwrap());
    let ctid = Ctid::new(105).unwrap();
    let ct = rt.host.container(ctid).unwrap();
    let st = rt.run_state(ctid).unwrap().unwrap();
    let cg = rt.cgroups(ctid).unwrap();
    let f = cg.freezers(ctid)[0];
    cg.freeze(ctid, f, Duration::from_secs(30)).unwrap();
    let freezer_dir = cg.freezer_dir(ctid, f).ok();
    let console = ferry::checkpoint::console_key(st.init_pid, &cg.pids(ctid).unwrap());
    let opts = ferry::checkpoint::dump_opts(
        &ct,
        st.init_pid,
        false,
        console.as_deref(),
        freezer_dir.as_deref(),
        true,
    );
    let criu = ferry::criu::Criu::locate().unwrap();
    let dir = |n: &str| {
        let d = h.root().join(n);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let (by_criu, by_server) = (dir("by-criu"), dir("by-server"));
    criu.dump(&by_criu, opts.clone(), &mut |_| Ok(())).unwrap();
    let served =
        ferry::criu::page_server::dump(&criu, &by_server, opts, &mut PagesInto(by_server.clone()), &mut |_| {
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{}", ferry::error::chain_of(&e)));
    assert!(served.pages > 300, "{served:?}");
    // The same pagemap and pages images, and CRIU itself wrote no pages image.
    let names = images_named(&by_criu, &["pagemap-", "pages-"]);
    assert!(names.len() >= 4, "{names:?}");
    assert_eq!(images_named(&by_server, &["pagemap-", "pages-"]), names);
    assert_eq!(served.pagemaps.len() + served.pages_images.len(), names.len());
    // Byte for byte what CRIU writes (the container runs on one CPU: the kernel writes the CPU
    // a task last ran on into its rseq area, which would differ between any two dumps).
    for n in &names {
        let (a, b) = (
            std::fs::read(by_criu.join(n)).unwrap(),
            std::fs::read(by_server.join(n)).unwrap(),
        );
        let differ: Vec<usize> = a
            .chunks(4096)
            .zip(b.chunks(4096))
            .enumerate()
            .filter(|(_, (x, y))| x != y)
            .map(|(i, _)| i)
            .collect();
        assert!(
            a.len() == b.len() && differ.is_empty(),
            "{n}: {} bytes by CRIU, {} through the page server, pages {differ:?} differ",
            a.len(),
            b.len()
        );
    }
    // The copy left frozen goes (killed while frozen, as a migration's source copy); the
    // container comes back from the page server's images.
    let before = std::fs::read_to_string(h.private("105").join("tmp/before")).unwrap();
    let _ = cg.kill_all(ctid, Duration::from_millis(50));
    cg.thaw(ctid, f).unwrap();
    wait_until("the frozen copy to be gone", Duration::from_secs(10), || {
        rt.run_state(ctid).unwrap().is_none()
    });
    let at_dump = count_in(&h.private("105"));
    assert!(at_dump > 0, "the counter had not counted by the dump");
    std::fs::write(by_server.join("ferry-console"), console.unwrap_or_default()).unwrap();
    h.vzctl(&["restore", "105", "--images", by_server.to_str().unwrap()])
        .ok();
    assert_eq!(
        h.vzctl(&["status", "105"]).stdout.trim(),
        "CTID 105 exist mounted running"
    );
    h.exec("105", "kill -USR1 $(cat /tmp/holder)");
    // (The shell makes the file before md5sum writes its line.)
    wait_until("the holder's second checksum", Duration::from_secs(20), || {
        std::fs::read_to_string(h.private("105").join("tmp/after")).is_ok_and(|t| t.ends_with('\n'))
    });
    assert_eq!(
        std::fs::read_to_string(h.private("105").join("tmp/after")).unwrap(),
        before
    );
    wait_until("the counter to move on", Duration::from_secs(10), || {
        count_in(&h.private("105")) > at_dump
    });
    h.vzctl(&["stop", "105", "--fast"]).ok();
}

/// `vzctl check` and `vzctl check --json` say the same of the dirty tracking a migration's
/// pre-copy uses (ferry's own probe of the soft-dirty bits), whatever it finds; the JSON keeps
/// CRIU's own answer beside it. `FERRY_SOFT_DIRTY` decides in place of the probe.
#[test]
fn vzctl_check_says_the_same_in_text_and_json() {
    let h = TestHost::new("check");
    for forced in [None, Some("on"), Some("off")] {
        let check = |args: &[&str]| {
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_vzctl"));
            c.arg("--root-dir").arg(h.root()).args(args).env_remove("FERRY_ROOT");
            match forced {
                Some(v) => c.env("FERRY_SOFT_DIRTY", v),
                None => c.env_remove("FERRY_SOFT_DIRTY"),
            };
            let o = run(c, Duration::from_secs(60));
            assert_eq!(o.code, 0, "vzctl {args:?}: {o:?}");
            o.stdout
        };
        let text = check(&["check"]);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("memory dirty tracking"))
            .unwrap_or_else(|| panic!("no dirty tracking line: {text}"));
        let said = match line.split_whitespace().next() {
            Some("yes") => true,
            Some("no") => false,
            other => panic!("dirty tracking: {other:?} in {text}"),
        };
        let json: serde_json::Value = serde_json::from_str(&check(&["check", "--json"])).unwrap();
        assert_eq!(
            json["precopy_dirty_tracking"].as_bool(),
            Some(said),
            "{forced:?}: {json} against {text}"
        );
        assert!(json["mem_dirty_track"].is_boolean(), "{json}");
        assert_eq!(json["criu_check"].as_bool(), Some(true), "{json}");
        if let Some(v) = forced {
            assert_eq!(said, v == "on", "FERRY_SOFT_DIRTY={v}: {text}");
        }
    }
}

/// A container holding a process stopped by a signal (CRIU hangs attaching to it inside a
/// frozen cgroup, and ferry once waited on CRIU for ever) is checkpointed without the cgroup
/// freezer, and the process comes back stopped. (A live migration, which needs the freezer,
/// refuses it up front: tests/migration.rs.)
#[test]
fn a_stopped_process_comes_back_stopped_through_chkpnt_and_restore() {
    let h = TestHost::new("stp");
    h.vzctl(&["create", "101"]).ok();
    h.vzctl(&["start", "101"]).ok();
    h.exec("101", "sleep 600 </dev/null >/dev/null 2>&1 & echo $! > /tmp/sleeper");
    let pid = h.exec("101", "cat /tmp/sleeper").trim().to_string();
    h.exec("101", &format!("kill -STOP {pid}"));
    let state = || {
        h.exec("101", &format!("grep State /proc/{pid}/status"))
            .trim()
            .to_string()
    };
    assert!(state().contains("T (stopped)"), "{}", state());
    // CRIU stops the tree itself (it would hang attaching to a stopped process under the
    // cgroup freezer): the checkpoint is taken, running on, the process still stopped.
    let o = h.vzctl(&["chkpnt", "101", "--keep-running", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    // --json: the checkpoint, as `checkpoints --json` lists it.
    let c: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(c["keep_running"], true, "{c}");
    let listed: serde_json::Value = serde_json::from_str(&h.vzctl(&["checkpoints", "101", "--json"]).stdout).unwrap();
    assert_eq!(listed[0], c);
    assert!(state().contains("T (stopped)"), "{}", state());
    assert_eq!(h.cgroup_file("freezer", "101", "freezer.state"), "THAWED");
    // And a stopping checkpoint: restored, the same process, stopped still; continued, it runs.
    let o = h.vzctl(&["chkpnt", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    h.vzctl(&["restore", "101"]).ok();
    assert_eq!(h.exec("101", &format!("cat /proc/{pid}/comm")).trim(), "sleep");
    assert!(state().contains("T (stopped)"), "{}", state());
    h.exec("101", &format!("kill -CONT {pid}"));
    assert!(state().contains("S (sleeping)"), "{}", state());
    h.vzctl(&["stop", "101", "--fast"]).ok();
}

/// A dump that meets the container's file system being mounted at that moment (a remount here;
/// on a busy host, any mount of the same file system, such as every container start's cgroup2)
/// is tried again: the kernel then prints an inotify watch without its file handle, and CRIU
/// fails the dump on it. A container holding 1200 watches on its image's XFS is checkpointed
/// while the host remounts that XFS in bursts of 800 ms from the start of each checkpoint;
/// every checkpoint must succeed, and the test goes on until two needed another try. Then the
/// last one restores with all the watches.
#[test]
fn a_dump_that_meets_a_busy_file_system_is_tried_again() {
    let h = TestHost::new("fhr");
    let o = h.vzctl(&["create", "101", "--layout", "image", "--diskspace", "300M:320M"]);
    assert_eq!(o.code, 0, "{o:?}");
    let fs = h.private("101").join("fs");
    h.vzctl(&["start", "101"]).ok();
    // The image is mounted (at fs) while the container runs.
    std::fs::copy(static_program("inotify_watches"), fs.join("bin/inotify_watches")).unwrap();
    h.exec("101", "inotify_watches /w 1200 </dev/null >/tmp/iw.out 2>&1 &");
    wait_until("the watches", Duration::from_secs(20), || {
        h.exec("101", "cat /tmp/iw.out").contains("watching 1200")
    });
    let remount = || {
        let end = std::time::Instant::now() + Duration::from_millis(800);
        while std::time::Instant::now() < end {
            let s = std::process::Command::new("mount")
                .args(["-o", "remount,noatime"])
                .arg(&fs)
                .status()
                .unwrap();
            assert!(s.success(), "remounting {}", fs.display());
        }
    };
    let mut retried = 0;
    for n in 1..=20 {
        let o = std::thread::scope(|s| {
            s.spawn(remount);
            h.vzctl(&["chkpnt", "101", "--keep-running"])
        });
        assert_eq!(o.code, 0, "checkpoint {n} (after {retried} retried): {o:?}");
        if o.stderr.contains("met a passing race, trying again") {
            retried += 1;
            if retried == 2 {
                break;
            }
        }
    }
    assert_eq!(
        retried, 2,
        "20 checkpoints under remounts, and fewer than two met the race"
    );
    let watches = || h.exec("101", "grep -c '^inotify' /proc/$(pidof inotify_watches)/fdinfo/3");
    assert_eq!(watches().trim(), "1200");
    h.vzctl(&["stop", "101"]).ok();
    let o = h.vzctl(&["restore", "101"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(watches().trim(), "1200");
    h.vzctl(&["stop", "101", "--fast"]).ok();
}

/// Export and import: `vzctl chkpnt --dumpfile` on one host root, `vzctl restore --dumpfile` on
/// another that does not have the container makes it there (its configuration with that root's
/// paths and id range, its files) and resumes its processes. A damaged archive makes nothing.
#[test]
fn a_dumpfile_restored_on_a_host_without_the_container_makes_it_there() {
    let a = TestHost::new("exa");
    let b = TestHost::new("exb");
    a.vzctl(&["create", "101", "--hostname", "exported"]).ok();
    a.vzctl(&["start", "101"]).ok();
    a.exec("101", "echo kept > /root/file");
    a.exec("101", COUNTER_LOOP);
    wait_until("the counter to start", Duration::from_secs(20), || {
        count_in(&a.private("101")) > 0
    });
    let pid = a.exec(
        "101",
        "ps -o pid,args | grep 'while true' | grep -v grep | head -1 | awk '{print $1}'",
    );
    let file = a.root().join("export.ckpt");
    a.vzctl(&["chkpnt", "101", "--dumpfile", file.to_str().unwrap()]).ok();
    let at_dump = count_in(&a.private("101"));

    // A damaged copy: refused, and nothing of the container is made.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let bad = b.root().join("bad.ckpt");
    std::fs::write(&bad, &bytes).unwrap();
    let o = b.vzctl(&["restore", "101", "--dumpfile", bad.to_str().unwrap()]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(!b.conf("101").exists(), "a refused import left a configuration");
    assert!(!b.private("101").exists(), "a refused import left a private area");

    let o = b.vzctl(&["restore", "101", "--dumpfile", file.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(b.vzctl(&["status", "101"]).stdout.contains("running"));
    let conf = std::fs::read_to_string(b.conf("101")).unwrap();
    assert!(conf.contains("HOSTNAME=\"exported\""), "{conf}");
    assert!(conf.contains("LOCAL_UID="), "{conf}");
    assert_eq!(b.exec("101", "cat /root/file").trim(), "kept");
    // The same process, counting on from where it was.
    assert_eq!(
        b.exec(
            "101",
            "ps -o pid,args | grep 'while true' | grep -v grep | head -1 | awk '{print $1}'"
        ),
        pid
    );
    wait_until("the counter to move on", Duration::from_secs(10), || {
        count_in(&b.private("101")) > at_dump
    });
    // Now it exists here: the same command is a plain restore, refused while it runs.
    let o = b.vzctl(&["restore", "101", "--dumpfile", file.to_str().unwrap()]);
    assert_eq!(o.code, 32, "{o:?}");
    b.vzctl(&["stop", "101", "--fast"]).ok();
}

/// A checkpoint in vz/dump is a directory CRIU restores from in place (format 2), and a
/// format 1 file there still restores. A page flipped in the directory's pages image fails
/// the restore before any restored process runs (their memory is checked while CRIU reads
/// it); mended, the same checkpoint restores.
#[test]
fn a_damaged_page_stops_the_restore_before_anything_runs_and_format_1_still_restores() {
    use std::os::unix::fs::{FileExt, PermissionsExt};
    let lab = lab("f2");
    vz_ok(&lab, &["create", "109"]);
    vz_ok(&lab, &["start", "109"]);
    vz_ok(&lab, &["exec", "109", COUNTER_LOOP]);
    wait_until("the counter to start", Duration::from_secs(20), || {
        counter(&lab, "109") > 0
    });
    let dump = lab.host("hostA").root.join("vz/dump/109");
    // Format 1, the older one-file form, placed where local checkpoints live: listed and
    // restored. Made from a format 2 file's contents.
    let file = lab.base.join("v2.ckpt");
    vz_ok(&lab, &["chkpnt", "109", "--dumpfile", file.to_str().unwrap()]);
    let unpacked = lab.base.join("v2.d");
    let mut m = ferry::checkpoint::directory::unbundle(&file, &unpacked).unwrap();
    assert_eq!(m.format, 2);
    m.format = 1;
    m.files.clear();
    std::fs::create_dir_all(&dump).unwrap();
    let v1 = dump.join(format!("{}.ckpt", m.id));
    ferry::checkpoint::archive::write(&v1, &m, &unpacked).unwrap();
    assert_eq!(ferry::checkpoint::archive::read_manifest(&v1).unwrap().0.format, 1);
    let at_v1 = counter(&lab, "109");
    vz_ok(&lab, &["restore", "109"]);
    wait_until("the counter to move on", Duration::from_secs(10), || {
        counter(&lab, "109") > at_v1
    });

    // Format 2: a directory only root reads, CRIU's images as written.
    std::thread::sleep(Duration::from_millis(1100));
    vz_ok(&lab, &["chkpnt", "109"]);
    let at_dump = counter(&lab, "109");
    let list: serde_json::Value = serde_json::from_str(&vz_ok(&lab, &["checkpoints", "109", "--json"])).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let ckpt = std::path::PathBuf::from(list[1]["path"].as_str().unwrap());
    assert!(ckpt.is_dir(), "{}", ckpt.display());
    assert_eq!(std::fs::metadata(&ckpt).unwrap().permissions().mode() & 0o777, 0o700);
    let pages: Vec<_> = std::fs::read_dir(ckpt.join("images"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("pages-"))
        .collect();
    let big = pages
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
        .clone();
    let len = std::fs::metadata(&big).unwrap().len();
    assert!(len > 0);
    assert!(list[1]["size"].as_u64().unwrap() >= len);
    let flip = || {
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&big).unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, len / 2).unwrap();
        b[0] ^= 0x40;
        f.write_all_at(&b, len / 2).unwrap();
    };
    flip();
    let o = vz(&lab, &["restore", "109"]);
    assert_eq!(o.code, 17, "{o:?}");
    assert!(
        o.stderr.contains("checksum mismatch") && o.stderr.contains("pages-"),
        "{}",
        o.stderr
    );
    assert_eq!(
        vz(&lab, &["status", "109"]).stdout.trim(),
        "CTID 109 exist unmounted down"
    );
    // No restored process ran: the counter did not move.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(counter(&lab, "109"), at_dump);
    flip();
    vz_ok(&lab, &["restore", "109"]);
    wait_until("the counter to move on", Duration::from_secs(10), || {
        counter(&lab, "109") > at_dump
    });
    vz_ok(&lab, &["stop", "109", "--fast"]);
}

/// `vzctl destroy` takes the container's checkpoints with it; with `--keep-checkpoints` they
/// stay, and a container made again with the same CTID restores one.
#[test]
fn destroy_removes_the_checkpoints_unless_asked_to_keep_them() {
    let lab = lab("dk");
    let dump = lab.host("hostA").root.join("vz/dump/110");
    vz_ok(&lab, &["create", "110"]);
    vz_ok(&lab, &["start", "110"]);
    vz_ok(&lab, &["exec", "110", "echo kept > /root/file"]);
    vz_ok(&lab, &["chkpnt", "110"]);
    let list: serde_json::Value = serde_json::from_str(&vz_ok(&lab, &["checkpoints", "110", "--json"])).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_string();
    vz_ok(&lab, &["stop", "110"]);
    vz_ok(&lab, &["destroy", "110", "--keep-checkpoints"]);
    assert!(dump.join(format!("{id}.ckpt")).is_dir());
    vz_ok(&lab, &["create", "110"]);
    vz_ok(&lab, &["restore", "110", "--checkpoint", &id]);
    assert_eq!(vz_ok(&lab, &["exec", "110", "cat /root/file"]), "kept\n");
    vz_ok(&lab, &["stop", "110", "--fast"]);
    vz_ok(&lab, &["destroy", "110"]);
    assert!(!dump.exists(), "{} is still there", dump.display());
}

/// Every entry of a tree: (path, inode, change time in ns), without following links.
fn inodes(root: &std::path::Path) -> Vec<(std::path::PathBuf, u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            out.push((
                p.strip_prefix(root).unwrap().to_path_buf(),
                md.ino(),
                md.ctime() * 1_000_000_000 + md.ctime_nsec(),
            ));
            if md.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A restore onto the very files its checkpoint recorded touches none of them (the stamp
/// matches: not one inode or change time moves, symbolic links included, which an extraction
/// would make anew); one change since, and the files are rolled back as before.
#[test]
fn a_restore_onto_unchanged_files_leaves_every_inode_alone() {
    let lab = lab("un");
    vz_ok(&lab, &["create", "111"]);
    vz_ok(&lab, &["start", "111"]);
    vz_ok(&lab, &["exec", "111", "echo one > /root/file"]);
    vz_ok(&lab, &["chkpnt", "111"]);
    let private = lab.host("hostA").root.join("vz/private/111");
    let before = inodes(&private);
    assert!(before.len() > 100, "{}", before.len());
    vz_ok(&lab, &["restore", "111"]);
    vz_ok(&lab, &["stop", "111", "--fast"]);
    let after = inodes(&private);
    let moved: Vec<_> = before.iter().filter(|e| !after.contains(e)).take(5).collect();
    assert!(
        moved.is_empty() && before.len() == after.len(),
        "the restore touched files that had not changed: {moved:?} ({} entries, then {})",
        before.len(),
        after.len()
    );
    // Changed while stopped: rolled back.
    vz_ok(&lab, &["start", "111"]);
    vz_ok(&lab, &["chkpnt", "111"]);
    std::fs::write(private.join("root/file"), "two\n").unwrap();
    vz_ok(&lab, &["restore", "111"]);
    assert_eq!(vz_ok(&lab, &["exec", "111", "cat /root/file"]), "one\n");
    vz_ok(&lab, &["stop", "111", "--fast"]);
}

/// A restore onto files changed since the checkpoint rolls back only what differs (names made
/// since removed, a name now linked to another file made anew, a changed file rewritten in
/// place, a replaced link put back, a removed file restored) and leaves every other entry's
/// inode and change time alone, through a chain too; the next checkpoint stays a small delta.
#[test]
fn a_restore_onto_changed_files_rolls_back_only_what_differs() {
    use std::os::unix::fs::MetadataExt;
    let lab = lab("rb");
    vz_ok(&lab, &["create", "112"]);
    vz_ok(&lab, &["start", "112"]);
    vz_ok(
        &lab,
        &[
            "exec",
            "112",
            "mkdir -p /srv/d; echo a > /srv/a; echo b > /srv/b; echo c > /srv/c; ln -s a /srv/l; echo f > /srv/d/f",
        ],
    );
    vz_ok(&lab, &["chkpnt", "112"]);
    let private = lab.host("hostA").root.join("vz/private/112");
    let p = |s: &str| private.join(s);
    let ino = |s: &str| std::fs::symlink_metadata(p(s)).unwrap().ino();
    let read = |s: &str| std::fs::read_to_string(p(s)).unwrap();
    let untouched = |list: &[(std::path::PathBuf, u64, i64)]| -> Vec<(std::path::PathBuf, u64, i64)> {
        list.iter().filter(|(n, _, _)| !n.starts_with("srv")).cloned().collect()
    };
    let before = inodes(&private);
    let (a0, c0) = (ino("srv/a"), ino("srv/c"));
    // While it is stopped: c rewritten, b now a second name of a, a file and a directory
    // made, d/f removed, the link replaced by a file.
    std::fs::write(p("srv/c"), "changed\n").unwrap();
    std::fs::remove_file(p("srv/b")).unwrap();
    std::fs::hard_link(p("srv/a"), p("srv/b")).unwrap();
    std::fs::write(p("srv/new"), "new\n").unwrap();
    std::fs::create_dir_all(p("srv/newdir")).unwrap();
    std::fs::write(p("srv/newdir/x"), "x\n").unwrap();
    std::fs::remove_file(p("srv/d/f")).unwrap();
    std::fs::remove_file(p("srv/l")).unwrap();
    std::fs::write(p("srv/l"), "not a link\n").unwrap();
    let o = vz(&lab, &["restore", "112"]);
    assert!(o.code == 0 && !o.stderr.contains("WARN"), "{o:?}");
    assert_eq!(
        (read("srv/a"), read("srv/b"), read("srv/c"), read("srv/d/f")),
        ("a\n".into(), "b\n".into(), "c\n".into(), "f\n".into())
    );
    assert!(
        !p("srv/new").exists() && !p("srv/newdir").exists(),
        "names made since are still there"
    );
    assert_eq!(std::fs::read_link(p("srv/l")).unwrap(), std::path::Path::new("a"));
    assert_eq!(ino("srv/a"), a0, "a was made anew");
    assert_eq!(ino("srv/c"), c0, "c was made anew, not rolled back in place");
    assert_ne!(ino("srv/b"), ino("srv/a"), "b is still a name of a");
    let after = inodes(&private);
    let moved = |before: &[(std::path::PathBuf, u64, i64)], after: &[(std::path::PathBuf, u64, i64)]| {
        let (b, a) = (untouched(before), untouched(after));
        let m: Vec<_> = b.iter().filter(|e| !a.contains(e)).take(5).cloned().collect();
        assert!(
            m.is_empty() && a.len() == b.len(),
            "entries that had not changed were touched: {m:?} ({} entries, then {})",
            b.len(),
            a.len()
        );
    };
    moved(&before, &after);

    // A chain: a delta with c changed, then c and a changed while stopped.
    vz_ok(&lab, &["exec", "112", "echo v2 > /srv/c"]);
    vz_ok(&lab, &["chkpnt", "112"]);
    let list: serde_json::Value = serde_json::from_str(&vz_ok(&lab, &["checkpoints", "112", "--json"])).unwrap();
    assert_eq!(list[1]["level"], 1, "{list}");
    let before = inodes(&private);
    std::fs::write(p("srv/c"), "v3\n").unwrap();
    std::fs::write(p("srv/a"), "changed\n").unwrap();
    vz_ok(&lab, &["restore", "112"]);
    assert_eq!((read("srv/a"), read("srv/c")), ("a\n".into(), "v2\n".into()));
    moved(&before, &inodes(&private));
    // Nothing but the changed files was rewritten: the next delta is small.
    vz_ok(&lab, &["chkpnt", "112", "--keep-running"]);
    let list: serde_json::Value = serde_json::from_str(&vz_ok(&lab, &["checkpoints", "112", "--json"])).unwrap();
    let tar = |i: usize| {
        std::fs::metadata(std::path::Path::new(list[i]["path"].as_str().unwrap()).join("fs.tar"))
            .unwrap()
            .len()
    };
    assert!(
        tar(2) * 10 < tar(0),
        "the delta after a rollback holds {} of {} bytes",
        tar(2),
        tar(0)
    );

    // A --dumpfile restored onto the same container, one file changed since: only that file.
    let file = lab.base.join("112.ckpt");
    vz_ok(&lab, &["chkpnt", "112", "--dumpfile", file.to_str().unwrap()]);
    let before = inodes(&private);
    let c1 = ino("srv/c");
    std::fs::write(p("srv/c"), "v4\n").unwrap();
    let o = vz(&lab, &["restore", "112", "--dumpfile", file.to_str().unwrap()]);
    assert!(o.code == 0 && !o.stderr.contains("WARN"), "{o:?}");
    assert_eq!((read("srv/c"), ino("srv/c")), ("v2\n".into(), c1));
    moved(&before, &inodes(&private));
    vz_ok(&lab, &["stop", "112", "--fast"]);
}

/// What an interrupted checkpoint or restore left in the container's dump directory (a work
/// directory with its memory, a snapshot list not yet named) is removed by the next one; a
/// migration's work directory there is not touched, and the checkpoints stay.
#[test]
fn leftovers_of_an_interrupted_checkpoint_are_removed_by_the_next() {
    let lab = lab("lo");
    vz_ok(&lab, &["create", "113"]);
    vz_ok(&lab, &["start", "113"]);
    vz_ok(&lab, &["chkpnt", "113", "--keep-running"]);
    let dump = lab.host("hostA").root.join("vz/dump/113");
    let planted = [
        dump.join(".work-20000101-000000/images"),
        dump.join(".restore-999999/images"),
    ];
    for d in &planted {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("pages-1.img"), vec![7u8; 4096]).unwrap();
    }
    std::fs::write(dump.join(".20000101-000000.snar"), b"x").unwrap();
    std::fs::create_dir_all(dump.join(".incoming-4242")).unwrap();
    vz_ok(&lab, &["chkpnt", "113", "--keep-running"]);
    for d in &planted {
        assert!(!d.parent().unwrap().exists(), "{} is still there", d.display());
    }
    assert!(!dump.join(".20000101-000000.snar").exists());
    assert!(
        dump.join(".incoming-4242").exists(),
        "a migration's work directory was removed"
    );
    let list: serde_json::Value = serde_json::from_str(&vz_ok(&lab, &["checkpoints", "113", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    // And by a restore.
    std::fs::create_dir_all(&planted[1]).unwrap();
    vz_ok(&lab, &["stop", "113", "--fast"]);
    vz_ok(&lab, &["restore", "113"]);
    assert!(!planted[1].parent().unwrap().exists());
    vz_ok(&lab, &["stop", "113", "--fast"]);
}
