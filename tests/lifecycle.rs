//! Root-only: the container lifecycle end to end with busybox containers.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn create_start_exec_stop_restart_destroy() {
    let h = TestHost::new("life");
    let o = h.vzctl(&[
        "create",
        "101",
        "--hostname",
        "ct101",
        "--name",
        "web",
        "--ipadd",
        "198.18.0.10",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(h.private("101").join("bin/busybox").is_file());
    let conf = std::fs::read_to_string(h.conf("101")).unwrap();
    for line in [
        "OSTEMPLATE=\"busybox\"",
        "HOSTNAME=\"ct101\"",
        "NAME=\"web\"",
        "IP_ADDRESS=\"198.18.0.10\"",
        "VE_PRIVATE=\"/vz/private/$VEID\"",
    ] {
        assert!(conf.contains(line), "{line} missing from:\n{conf}");
    }
    assert_eq!(
        h.vzctl(&["status", "101"]).stdout.trim(),
        "CTID 101 exist unmounted down"
    );

    // The name works wherever the CTID does.
    h.vzctl(&["start", "web"]).ok();
    assert_eq!(
        h.vzctl(&["status", "101"]).stdout.trim(),
        "CTID 101 exist mounted running"
    );
    let st: serde_json::Value = serde_json::from_str(&h.vzctl(&["status", "web", "--json"]).stdout).unwrap();
    assert_eq!(st["running"], true);
    assert_eq!(st["init_pid"].as_i64().unwrap() as i32, h.init_pid("101"));
    // With --json, a command that changes a container prints its state afterwards (the schema
    // of status --json), and a failure prints an error object with the exit code.
    let o = h.vzctl(&["start", "101", "--json"]);
    assert_eq!(o.code, 32, "{o:?}");
    let err: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(err["exit_code"], 32);
    assert!(
        err["error"].as_str().unwrap().contains("container 101 is running"),
        "{err}"
    );
    let o = h.vzctl(&["restart", "web", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let after: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        (&after["ctid"], &after["running"]),
        (&serde_json::json!(101), &serde_json::json!(true))
    );
    assert_ne!(after["init_pid"], st["init_pid"], "restart kept the init");

    // pid 1 is the template's init, and it is a session leader with the console as its tty.
    assert_eq!(h.exec("101", "cat /proc/1/comm").trim(), "init");
    let stat = h.exec("101", "cat /proc/1/stat");
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    assert_eq!(fields[3], "1", "init is not its own session leader: {stat}");
    assert_eq!(h.exec("101", "hostname").trim(), "ct101");
    assert_eq!(h.exec("101", "cat /etc/hostname").trim(), "ct101");
    // The command itself runs as a session leader inside the container.
    let me = h.exec("101", "cut -d' ' -f1,6 /proc/self/stat");
    let (pid, sid) = me.trim().split_once(' ').unwrap();
    assert_eq!(pid, sid, "exec'd command is not a session leader");

    // The container outlived the vzctl that started it and is visible in vzlist.
    let l = h.vzlist(&["-H", "-o", "ctid,status,hostname,name,ip"]);
    assert_eq!(
        l.stdout.split_whitespace().collect::<Vec<_>>(),
        vec!["101", "running", "ct101", "web", "198.18.0.10"]
    );

    // exec and exec2 return the command's exit code.
    assert_eq!(h.vzctl(&["exec", "101", "exit 3"]).code, 3);
    assert_eq!(h.vzctl(&["exec2", "101", "exit 5"]).code, 5);
    // `exec CT -` reads the commands from standard input, as OpenVZ's does.
    {
        use std::io::Write;
        let mut c = Command::new(env!("CARGO_BIN_EXE_vzctl"));
        c.arg("--root-dir")
            .arg(h.root())
            .args(["exec", "101", "-"])
            .env_remove("FERRY_ROOT");
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"echo one\ncat /etc/hostname\nexit 4\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "one\nct101\n");
        assert_eq!(out.status.code(), Some(4));
    }
    assert_eq!(h.vzctl(&["exec", "101", "echo", "two", "words"]).stdout, "two words\n");

    // The console is logged on the host.
    let console = h.root().join("vz/log/101.console.log");
    wait_until("the boot message on the console", Duration::from_secs(10), || {
        std::fs::read_to_string(&console)
            .unwrap_or_default()
            .contains("ct101 is up")
    });

    // restart: a new init, still running.
    let first = h.init_pid("101");
    h.vzctl(&["restart", "101"]).ok();
    assert_ne!(h.init_pid("101"), first);
    assert_eq!(
        h.vzctl(&["status", "101"]).stdout.trim(),
        "CTID 101 exist mounted running"
    );

    // A clean stop goes through init's shutdown (rcK writes to the console).
    h.vzctl(&["stop", "101"]).ok();
    assert!(
        std::fs::read_to_string(&console).unwrap().contains("ct101 is stopping"),
        "no clean shutdown"
    );
    assert_eq!(
        h.vzctl(&["status", "101"]).stdout.trim(),
        "CTID 101 exist unmounted down"
    );
    assert!(h.mounts_below().is_empty(), "mounts left: {:?}", h.mounts_below());
    assert!(
        !std::path::Path::new(&format!("/sys/fs/cgroup/pids/{}/101", h.cgroup_parent)).exists(),
        "cgroup left behind"
    );

    // --fast kills at once.
    h.vzctl(&["start", "101"]).ok();
    h.vzctl(&["stop", "101", "--fast"]).ok();
    assert_eq!(
        h.vzctl(&["status", "101"]).stdout.trim(),
        "CTID 101 exist unmounted down"
    );

    // mount / umount of a stopped container.
    h.vzctl(&["mount", "101"]).ok();
    assert_eq!(h.vzctl(&["status", "101"]).stdout.trim(), "CTID 101 exist mounted down");
    assert_eq!(h.vzlist(&["-a", "-H", "-o", "status"]).stdout.trim(), "mounted");
    h.vzctl(&["umount", "101"]).ok();

    h.vzctl(&["destroy", "web"]).ok();
    assert_eq!(
        h.vzctl(&["status", "101"]).stdout.trim(),
        "CTID 101 deleted unmounted down"
    );
    assert!(!h.private("101").exists());
    assert!(!h.conf("101").exists());
}

#[test]
fn container_is_isolated_from_the_host() {
    let h = TestHost::new("iso");
    h.vzctl(&["create", "110", "--hostname", "iso"]).ok();
    // A mount made on the host before start must not be visible inside.
    let marker = h.root().join("host-only-mount");
    std::fs::create_dir_all(&marker).unwrap();
    let c = std::ffi::CString::new(marker.to_str().unwrap()).unwrap();
    let tmpfs = std::ffi::CString::new("tmpfs").unwrap();
    // SAFETY: mounting a tmpfs on a directory of our own temporary host.
    assert_eq!(
        unsafe { libc::mount(tmpfs.as_ptr(), c.as_ptr(), tmpfs.as_ptr(), 0, std::ptr::null(),) },
        0
    );
    h.vzctl(&["start", "110"]).ok();
    let mounts = h.exec("110", "cat /proc/self/mountinfo");
    assert!(!mounts.contains("host-only-mount"), "host mount visible:\n{mounts}");
    // Every mount point is a path of the container's own tree (field 5; field 4 of the root
    // mount names the bind source, which is how the kernel reports any bind mount).
    for l in mounts.lines() {
        let mp = l.split(' ').nth(4).unwrap();
        assert!(
            !mp.contains(h.root().to_str().unwrap()) && !mp.starts_with("/tmp/") && !mp.starts_with("/work"),
            "host mount point visible: {l}"
        );
    }
    for masked in ["/proc/sysrq-trigger", "/proc/kcore", "/proc/keys", "/proc/sys"] {
        let covered = mounts.lines().any(|l| l.split(' ').nth(4) == Some(masked));
        // Some kernels lack some of these files; what a kernel lacks needs no cover.
        assert!(
            covered || !std::path::Path::new(masked).exists(),
            "{masked} is not covered:\n{mounts}"
        );
    }
    // SAFETY: undoing the mount above.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };

    // Host processes are invisible: only the container's own pids exist in its /proc.
    let pids = h.exec("110", "ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '");
    let pids: Vec<u32> = pids.split_whitespace().map(|p| p.parse().unwrap()).collect();
    assert_eq!(pids[0], 1);
    assert!(pids.len() < 10, "too many processes visible: {pids:?}");
    let comms = h.exec("110", "cat /proc/[0-9]*/comm");
    assert!(
        !comms.contains("lifecycle") && !comms.contains("process_api") && !comms.contains("cargo"),
        "host processes visible:\n{comms}"
    );

    // /sys and /proc/sys are read-only; the host's clock, modules, devices and mounts are out
    // of reach.
    for (what, script) in [
        ("write /sys", "echo 1 > /sys/kernel/uevent_helper"),
        ("remount /sys rw", "mount -o remount,rw /sys"),
        ("write /proc/sys", "echo 1 > /proc/sys/kernel/sysrq"),
        ("sysrq-trigger", "echo h > /proc/sysrq-trigger"),
        ("mount", "mount -t tmpfs none /mnt"),
        // busybox date exits 0 even when settimeofday fails: look at the clock instead.
        (
            "set the clock",
            "date -s 2001-01-01 >/dev/null 2>&1; [ \"$(date +%Y)\" = 2001 ]",
        ),
        ("mknod a disk", "mknod /tmp/disk b 8 0"),
        ("load a module", "insmod /nonexistent.ko || [ $? -ne 1 ] && false"),
        ("read the host's kernel log", "dmesg | head -1 | grep -q ."),
    ] {
        let o = h.vzctl(&["exec", "110", &format!("{script} 2>/dev/null")]);
        assert_ne!(o.code, 0, "container root could {what}");
    }
    let status = h.exec("110", "cat /proc/self/status");
    let bnd = ferry::runtime::caps::bounding_set(&status).unwrap();
    // Nothing beyond the allow-list, and all of it the host's bounding set has (a container
    // with a user namespace starts from a full set of its own, over its own namespaces only).
    let host = ferry::runtime::caps::bounding_set(&std::fs::read_to_string("/proc/self/status").unwrap()).unwrap();
    let allowed = ferry::runtime::caps::allowed_mask();
    assert_eq!(
        bnd & !allowed,
        0,
        "bounding set {bnd:x} goes beyond the allow-list {allowed:x}"
    );
    assert_eq!(
        allowed & host & !bnd,
        0,
        "bounding set {bnd:x} lacks some of {allowed:x}"
    );
    // What the container may do: its own network configuration and its own files.
    h.exec("110", "ip link set lo up && touch /root/ok && rm /root/ok");
    h.vzctl(&["stop", "110", "--fast"]).ok();
}

#[test]
fn enter_gives_an_interactive_shell() {
    let h = TestHost::new("enter");
    h.vzctl(&["create", "120", "--hostname", "entered"]).ok();
    h.vzctl(&["start", "120"]).ok();
    let cmd = format!(
        "{} --root-dir {} enter 120; echo ENTER-EXIT=$?; sleep 60",
        env!("CARGO_BIN_EXE_vzctl"),
        h.root().display()
    );
    let t = Tmux::start("ferry-enter", &cmd);
    t.wait_for("entered into container 120", Duration::from_secs(10));
    t.send("echo host=$(hostname) pid1=$(cat /proc/1/comm); tty; stty size");
    let screen = t.wait_for("host=entered pid1=init", Duration::from_secs(10));
    assert!(screen.contains("/dev/pts/"), "no pty: {screen}");
    assert!(screen.contains("40 120"), "window size not passed on: {screen}");
    t.send("exit 7");
    t.wait_for("ENTER-EXIT=7", Duration::from_secs(10));
    h.vzctl(&["stop", "120", "--fast"]).ok();
}

#[test]
fn the_console_is_shown_typed_into_logged_and_held_by_one_client_at_a_time() {
    let h = TestHost::new("console");
    h.vzctl(&["create", "121"]).ok();
    let o = h.vzctl(&["console", "121"]);
    assert_eq!(o.code, 31, "a stopped container's console: {o:?}");
    h.vzctl(&["start", "121"]).ok();
    let socket = h.root().join("vz/run/121.console");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the console socket is for the host's root alone");
    // Something inside reads the console, as a getty would.
    h.vzctl(&["exec", "121", "cat /dev/console > /tmp/typed 2>&1 </dev/null &"])
        .ok();
    let cmd = format!(
        "{} --root-dir {} console 121; echo CONSOLE-EXIT=$?; sleep 60",
        env!("CARGO_BIN_EXE_vzctl"),
        h.root().display()
    );
    let t = Tmux::start("ferry-console", &cmd);
    t.wait_for("Attached to the console of container 121", Duration::from_secs(10));
    h.vzctl(&["exec", "121", "echo shown-line > /dev/console"]).ok();
    t.wait_for("shown-line", Duration::from_secs(10));
    t.send("typed-line");
    let typed = h.private("121").join("tmp/typed");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&typed)
        .unwrap_or_default()
        .contains("typed-line")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "what was typed did not reach the console"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // One client at a time: a second is refused while the first stays attached.
    let o = h.vzctl(&["console", "121"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("attached elsewhere"), "{o:?}");
    h.vzctl(&["exec", "121", "echo still-here > /dev/console"]).ok();
    t.wait_for("still-here", Duration::from_secs(10));
    // Esc then . detaches; the container runs on, and the log has it all.
    t.keys(&["Escape", "."]);
    t.wait_for("CONSOLE-EXIT=0", Duration::from_secs(10));
    let log = std::fs::read_to_string(h.root().join("vz/log/121.console.log")).unwrap();
    for line in ["shown-line", "typed-line", "still-here"] {
        assert!(log.contains(line), "{line} is not in the console log:\n{log}");
    }
    assert_eq!(
        h.vzctl(&["status", "121"]).stdout.trim(),
        "CTID 121 exist mounted running"
    );
    // Detached, the console takes a client again; stopped, it has no socket.
    let o = h.vzctl(&["console", "121", "--quiet"]);
    assert_eq!(o.code, 0, "{o:?}");
    h.vzctl(&["stop", "121", "--fast"]).ok();
    assert!(!socket.exists(), "the console socket outlived the container");
}

#[test]
fn a_fresh_container_is_dumped_and_restored_by_criu() {
    let h = TestHost::new("criu");
    let criu = criu();
    // Privileged: CRIU by hand with plain options (a container with a user namespace needs the
    // external mounts, links and console that ferry adds; tests/userns.rs covers it).
    h.vzctl(&["create", "130", "--hostname", "dumped", "--userns", "no"])
        .ok();
    h.vzctl(&["start", "130"]).ok();
    // A service started the clean way (no host descriptors), with a counter in a file.
    h.exec("130", COUNTER_LOOP);
    // The loop's pid (not a fork of it for its `sleep`).
    let before = lasting_procs(&h.exec("130", "ps -o pid,args"), |l| l.contains("while true"))
        .first()
        .expect("the loop's pid")
        .0
        .to_string();
    let init = h.init_pid("130");
    let imgs = h.root().join("img");
    std::fs::create_dir_all(&imgs).unwrap();
    // The console is the one descriptor that refers outside: CRIU is told it is external.
    let md = std::fs::metadata(format!("/proc/{init}/fd/0")).unwrap();
    use std::os::unix::fs::MetadataExt;
    let ext = format!("tty[{:x}:{:x}]", md.rdev(), md.dev());
    let dump = run(
        {
            let mut c = std::process::Command::new(&criu);
            c.args(["dump", "-t", &init.to_string(), "-D"]).arg(&imgs).args([
                "-o",
                "dump.log",
                "-v4",
                "--manage-cgroups",
                "--tcp-established",
                "--file-locks",
                "--external",
                &ext,
            ]);
            c
        },
        Duration::from_secs(60),
    );
    let log = std::fs::read_to_string(imgs.join("dump.log")).unwrap_or_default();
    assert_eq!(
        dump.code,
        0,
        "criu dump failed: {dump:?}\n{}",
        log.lines()
            .filter(|l| l.contains("Error"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        ferry::runtime::proc::start_time(init).is_none(),
        "the dumped container is still running"
    );

    // Restore with a new pty slave in place of the console.
    // SAFETY: opening a pty pair on the host for the restored console.
    let (master, slave) = unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(m >= 0);
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let name = std::ffi::CStr::from_ptr(libc::ptsname(m)).to_owned();
        let s = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        assert!(s >= 0);
        (m, s)
    };
    let root = h.root().join("vz/root/130");
    let pidfile = imgs.join("pid");
    let mut c = std::process::Command::new(&criu);
    c.args(["restore", "-D"]).arg(&imgs).args([
        "-o",
        "restore.log",
        "-v4",
        "--manage-cgroups",
        "--tcp-established",
        "--file-locks",
        "--restore-detached",
        "--root",
    ]);
    c.arg(&root)
        .arg("--pidfile")
        .arg(&pidfile)
        .args(["--inherit-fd", &format!("fd[{slave}]:{ext}")]);
    // SAFETY: clearing close-on-exec on the slave in the child only.
    unsafe {
        use std::os::unix::process::CommandExt;
        c.pre_exec(move || {
            let flags = libc::fcntl(slave, libc::F_GETFD);
            libc::fcntl(slave, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            Ok(())
        });
    }
    let restore = run(c, Duration::from_secs(60));
    let log = std::fs::read_to_string(imgs.join("restore.log")).unwrap_or_default();
    assert_eq!(
        restore.code,
        0,
        "criu restore failed: {restore:?}\n{}",
        log.lines()
            .filter(|l| l.contains("Error"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let new_init: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    // The restored tree: same pid namespace layout, the counter process under the same pid,
    // and the counter moving on from where it was.
    let status = std::fs::read_to_string(format!("/proc/{new_init}/status")).unwrap();
    assert!(
        status.lines().any(|l| l.starts_with("NSpid:") && l.ends_with("\t1")),
        "restored init is not pid 1 of its namespace:\n{status}"
    );
    let count_path = root.join("tmp/count");
    let c1: u64 = std::fs::read_to_string(&count_path).unwrap().trim().parse().unwrap();
    wait_until("the restored counter to advance", Duration::from_secs(10), || {
        std::fs::read_to_string(&count_path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .is_some_and(|c| c > c1)
    });
    let children = std::fs::read_to_string(format!("/proc/{new_init}/task/{new_init}/children")).unwrap_or_default();
    let ns_pids: Vec<String> = children
        .split_whitespace()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("NSpid:"))
                .map(|l| l.rsplit('\t').next().unwrap().to_string())
        })
        .collect();
    assert!(
        ns_pids.contains(&before.trim().to_string()),
        "counter pid {} not among restored pids {ns_pids:?}",
        before.trim()
    );
    // SAFETY: killing the restored container (its init takes the namespace with it) and
    // closing our pty ends.
    unsafe {
        libc::kill(new_init, libc::SIGKILL);
        libc::close(master);
        libc::close(slave);
    }
    wait_until("the restored container to exit", Duration::from_secs(10), || {
        ferry::runtime::proc::start_time(new_init).is_none()
    });
    // Mounted still (its init ended without a stop): unmounted first, as OpenVZ asks.
    let _ = h.vzctl(&["umount", "130"]);
    h.vzctl(&["destroy", "130"]).ok();
}

#[test]
fn vzlist_columns_sorting_and_json() {
    let h = TestHost::new("list");
    h.vzctl(&["create", "201", "--hostname", "bbb", "--ipadd", "198.18.1.1"])
        .ok();
    h.vzctl(&["create", "202", "--hostname", "aaa", "--name", "db"]).ok();
    h.vzctl(&["create", "203"]).ok();
    h.vzctl(&["start", "201"]).ok();
    h.vzctl(&["start", "202"]).ok();
    let out = h.vzlist(&[]).stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        vec!["CTID", "NPROC", "STATUS", "IP_ADDR", "HOSTNAME"]
    );
    assert_eq!(lines.len(), 3, "only running containers by default:\n{out}");
    assert!(
        lines[1].trim_start().starts_with("201") && lines[1].contains("running") && lines[1].contains("198.18.1.1")
    );
    let nproc: usize = lines[1].split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(nproc >= 1);
    assert_eq!(h.vzlist(&["-S", "-H", "-o", "ctid"]).stdout.trim(), "203");
    assert_eq!(
        h.vzlist(&["-a", "-H", "-o", "ctid", "-s", "hostname"])
            .stdout
            .split_whitespace()
            .collect::<Vec<_>>(),
        vec!["203", "202", "201"]
    );
    assert_eq!(
        h.vzlist(&["-a", "-H", "-o", "ctid", "-s", "-ctid"])
            .stdout
            .split_whitespace()
            .collect::<Vec<_>>(),
        vec!["203", "202", "201"]
    );
    assert_eq!(h.vzlist(&["-H", "-o", "name", "db"]).stdout.trim(), "db");
    let j: serde_json::Value = serde_json::from_str(&h.vzlist(&["-a", "-j"]).stdout).unwrap();
    let arr = j.as_array().unwrap();
    assert_eq!(arr.len(), 3);
    assert_eq!(arr[0]["ctid"], 201);
    assert_eq!(arr[0]["ip"], serde_json::json!(["198.18.1.1"]));
    assert_eq!(arr[2]["status"], "stopped");
    assert_eq!(arr[2]["nproc"], serde_json::Value::Null);
    assert_eq!(arr[1]["ostemplate"], "busybox");
    assert_eq!(arr[1]["private"], "/vz/private/202");
    let o = h.vzlist(&["-o", "ctid,bogus"]);
    assert_eq!(o.code, 21, "{o:?}");
    assert!(o.stderr.contains("unknown field \"bogus\""));
    // OpenVZ's filters and short forms: -h hostname pattern (not help), -N name pattern, -n the
    // NAME column, -1 the CTIDs alone, -L the fields.
    let ids = |args: &[&str]| {
        h.vzlist(args)
            .stdout
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&["-a", "-H", "-o", "ctid", "-h", "b*"]), ["201"]);
    assert_eq!(ids(&["-a", "-H", "-o", "ctid", "-h", "?a?"]), ["202"]);
    assert_eq!(ids(&["-a", "-H", "-o", "ctid", "-N", "d[a-c]"]), ["202"]);
    assert!(ids(&["-a", "-H", "-h", "nomatch*"]).is_empty());
    let o = h.vzlist(&["-n"]);
    assert_eq!(
        o.stdout.lines().next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["CTID", "NPROC", "STATUS", "IP_ADDR", "NAME"]
    );
    assert_eq!(ids(&["-1"]), ["201", "202"]);
    assert_eq!(ids(&["-1", "-a"]), ["201", "202", "203"]);
    let fields = h.vzlist(&["-L"]).stdout;
    assert!(fields.lines().any(|l| l.starts_with("hostname ")), "{fields}");
    assert!(h.vzlist(&["--help"]).stdout.contains("--hostname <PATTERN>"));
}

/// A container left frozen (an interrupted checkpoint or migration leaves it so) is stopped
/// by `vzctl stop` and by `vzctl stop --fast`: stop thaws it (after the kill, for --fast),
/// where it used to wait out its timeout and fail ("did not stop").
#[test]
fn a_frozen_container_is_stopped_gracefully_and_fast() {
    let h = TestHost::new("frz");
    h.vzctl(&["create", "101"]).ok();
    let freezer = format!("/sys/fs/cgroup/freezer/{}/101/freezer.state", h.cgroup_parent);
    for fast in [false, true] {
        h.vzctl(&["start", "101"]).ok();
        h.exec("101", "sleep 1000 </dev/null >/dev/null 2>&1 &");
        std::fs::write(&freezer, "FROZEN").unwrap();
        wait_until("the container to freeze", Duration::from_secs(10), || {
            h.cgroup_file("freezer", "101", "freezer.state") == "FROZEN"
        });
        let args: &[&str] = if fast {
            &["stop", "--fast", "101"]
        } else {
            &["stop", "101"]
        };
        let o = h.vzctl(args);
        assert_eq!(o.code, 0, "vzctl {args:?} of a frozen container: {o:?}");
        assert_eq!(
            h.vzctl(&["status", "101"]).stdout.trim(),
            "CTID 101 exist unmounted down"
        );
    }
}

/// The host's boot service: `vzboot start` starts ONBOOT containers, highest BOOTORDER first and
/// unnumbered last, never DISABLED ones; `vzboot stop` stops every running one in the reverse
/// order, or suspends one whose VE_STOP_MODE says so, and the next `vzboot start` resumes it
/// (the same process) whatever its ONBOOT. The settings behind it are configuration only.
#[test]
fn vzboot_starts_in_bootorder_and_stops_or_suspends_in_reverse() {
    let h = TestHost::new("boot");
    for id in ["101", "102", "103", "104"] {
        h.vzctl(&["create", id]).ok();
    }
    // Configuration only: without --save refused, and nothing written.
    let before = std::fs::read_to_string(h.conf("101")).unwrap();
    let o = h.vzctl(&["set", "101", "--onboot", "yes", "--bootorder", "10"]);
    assert_eq!(o.code, 21, "{o:?}");
    assert!(o.stderr.contains("--save"), "{o:?}");
    let o = h.vzctl(&[
        "set",
        "101",
        "--onboot",
        "yes",
        "--description",
        "a \"quoted\" one",
        "--save",
    ]);
    assert_eq!(o.code, 21, "{o:?}");
    assert_eq!(std::fs::read_to_string(h.conf("101")).unwrap(), before);
    h.vzctl(&[
        "set",
        "101",
        "--onboot",
        "yes",
        "--bootorder",
        "10",
        "--description",
        "the first",
        "--save",
    ])
    .ok();
    h.vzctl(&["set", "102", "--onboot", "yes", "--bootorder", "50", "--save"])
        .ok();
    h.vzctl(&[
        "set",
        "103",
        "--onboot",
        "yes",
        "--bootorder",
        "99",
        "--disabled",
        "yes",
        "--save",
    ])
    .ok();
    h.vzctl(&["set", "104", "--onboot", "yes", "--save"]).ok();
    let conf = std::fs::read_to_string(h.conf("101")).unwrap();
    for l in ["ONBOOT=\"yes\"", "BOOTORDER=\"10\"", "DESCRIPTION=\"the first\""] {
        assert!(conf.contains(l), "{conf}");
    }
    let listed: serde_json::Value = serde_json::from_str(
        &h.vzlist(&["-a", "-j", "-o", "ctid,onboot,bootorder,disabled,description"])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(listed[0]["onboot"], true, "{listed}");
    assert_eq!(listed[0]["bootorder"], 10, "{listed}");
    assert_eq!(listed[0]["description"], "the first", "{listed}");
    assert_eq!(listed[2]["disabled"], true, "{listed}");
    assert_eq!(h.vzlist(&["-a", "-1", "-d", "the*"]).ok().stdout.trim(), "101");

    // The plan changes nothing.
    let plan = |o: Out| -> Vec<(u64, String, String)> {
        assert_eq!(o.code, 0, "{o:?}");
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["ctid"].as_u64().unwrap(),
                    e["action"].as_str().unwrap().to_string(),
                    e["result"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let s = |v: &[(u64, &str, &str)]| -> Vec<(u64, String, String)> {
        v.iter().map(|(c, a, r)| (*c, a.to_string(), r.to_string())).collect()
    };
    assert_eq!(
        plan(h.vzboot(&["start", "--dry-run", "--json"])),
        s(&[
            (102, "start", "planned"),
            (101, "start", "planned"),
            (104, "start", "planned")
        ])
    );
    let status = |id: &str| h.vzctl(&["status", id]).stdout;
    assert!(status("102").contains("down"), "{}", status("102"));

    // Boot: in order, the disabled one left down.
    assert_eq!(
        plan(h.vzboot(&["start", "--json"])),
        s(&[(102, "start", "done"), (101, "start", "done"), (104, "start", "done")])
    );
    for id in ["101", "102", "104"] {
        assert!(status(id).contains("running"), "{id}: {}", status(id));
    }
    assert!(status("103").contains("down"), "{}", status("103"));
    // A second boot finds them running.
    assert_eq!(
        plan(h.vzboot(&["start", "--json"])),
        s(&[
            (102, "skip", "already running"),
            (101, "skip", "already running"),
            (104, "skip", "already running")
        ])
    );
    // Disabled: refused by hand too, unless forced.
    let o = h.vzctl(&["start", "103"]);
    assert_eq!(o.code, 133, "{o:?}");
    assert!(o.stderr.contains("disabled"), "{o:?}");
    assert!(status("103").contains("down"));
    h.vzctl(&["start", "103", "--force"]).ok();

    // Shutdown: the reverse order; 101 is suspended, not stopped.
    let mut conf = std::fs::read_to_string(h.conf("101")).unwrap();
    conf.push_str("VE_STOP_MODE=\"suspend\"\n");
    std::fs::write(h.conf("101"), conf).unwrap();
    h.exec("101", "sleep 600 </dev/null >/dev/null 2>&1 & echo $! > /tmp/sleeper");
    let sleeper = h.exec("101", "cat /tmp/sleeper").trim().to_string();
    assert_eq!(
        plan(h.vzboot(&["stop", "--json"])),
        s(&[
            (104, "stop", "done"),
            (101, "suspend", "done"),
            (102, "stop", "done"),
            (103, "stop", "done")
        ])
    );
    for id in ["101", "102", "103", "104"] {
        assert!(status(id).contains("down"), "{id}: {}", status(id));
    }
    let mark = h.root().join("etc/vz/conf/101.suspended");
    assert!(mark.is_file());
    assert_eq!(std::fs::metadata(&mark).unwrap().permissions().mode() & 0o777, 0o600);

    // Next boot: 101 resumed (its process the same), the others started afresh.
    assert_eq!(
        plan(h.vzboot(&["start", "--json"])),
        s(&[(102, "start", "done"), (101, "resume", "done"), (104, "start", "done")])
    );
    assert_eq!(h.exec("101", &format!("cat /proc/{sleeper}/comm")).trim(), "sleep");
    assert!(!mark.exists());
    // Not ONBOOT any more, stopped rather than suspended: the next boot leaves it alone.
    let conf = std::fs::read_to_string(h.conf("101"))
        .unwrap()
        .replace("VE_STOP_MODE=\"suspend\"\n", "");
    std::fs::write(h.conf("101"), conf).unwrap();
    h.vzctl(&["set", "101", "--onboot", "no", "--save"]).ok();
    h.vzboot(&["stop"]).ok();
    assert_eq!(
        plan(h.vzboot(&["start", "--json"])),
        s(&[(102, "start", "done"), (104, "start", "done")])
    );
    assert!(status("101").contains("down"));
    h.vzboot(&["stop"]).ok();
}

/// Two host roots on one machine that share a CGROUP_PARENT: the second is refused (exit 10,
/// naming the first) when it would make or end a cgroup there, so it never kills the first
/// root's container of the same CTID; once the first no longer uses that parent, the claim
/// passes to the second.
#[test]
fn two_roots_with_one_cgroup_parent_never_end_each_others_containers() {
    let a = TestHost::new("cpa");
    let b = TestHost::new("cpb");
    let set_parent = |h: &TestHost, parent: &str| {
        let conf = h.root().join("etc/vz/vz.conf");
        let text: String = std::fs::read_to_string(&conf)
            .unwrap()
            .lines()
            .map(|l| {
                if l.starts_with("CGROUP_PARENT=") {
                    format!("CGROUP_PARENT=\"{parent}\"\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(&conf, text).unwrap();
    };
    set_parent(&b, &a.cgroup_parent);
    a.vzctl(&["create", "101"]).ok();
    a.vzctl(&["start", "101"]).ok();
    let pid = a.init_pid("101");
    b.vzctl(&["create", "101"]).ok();
    let o = b.vzctl(&["start", "101"]);
    assert_eq!(o.code, 10, "{o:?}");
    let a_root = a.root().canonicalize().unwrap();
    assert!(
        o.stderr.contains(&a_root.display().to_string()) && o.stderr.contains("CGROUP_PARENT"),
        "{o:?}"
    );
    assert!(b.vzctl(&["status", "101"]).stdout.contains("down"));
    // The first root's container lives on, untouched.
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(a.exec("101", "echo alive").trim(), "alive");
    assert_eq!(a.init_pid("101"), pid);
    // The first root moves to a parent of its own: the second takes the claim over.
    a.vzctl(&["stop", "101", "--fast"]).ok();
    set_parent(&a, &format!("{}-moved", a.cgroup_parent));
    b.vzctl(&["start", "101"]).ok();
    assert!(b.vzctl(&["status", "101"]).stdout.contains("running"));
    b.vzctl(&["stop", "101", "--fast"]).ok();
}
