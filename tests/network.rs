//! Root-only, on the testbed: container networking between hosts and a client.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{run, wait_until, Out};
use ferry_testbed::{leftovers, Lab, LabConfig};

fn lab(tag: &str) -> Lab {
    common::require_root();
    let mut cfg = LabConfig::new(&format!("{tag}{}", std::process::id() % 100000));
    cfg.base = "/tmp/ferry-lab-tests".into();
    Lab::up(&cfg).expect("bringing the lab up")
}

fn vz(lab: &Lab, host: &str, args: &[&str]) -> Out {
    let h = lab.host(host);
    let mut c = Lab::cmd(&h.netns, env!("CARGO_BIN_EXE_vzctl"));
    c.arg("--root-dir").arg(&h.root).args(args);
    run(c, Duration::from_secs(120))
}

fn vz_ok(lab: &Lab, host: &str, args: &[&str]) -> String {
    let o = vz(lab, host, args);
    assert_eq!(o.code, 0, "vzctl {args:?} on {host}: {o:?}");
    o.stdout
}

/// An HTTP GET from the client namespace; the body, or None if nothing answered.
fn get(lab: &Lab, addr: &str) -> Option<String> {
    let mut c = Lab::cmd(&lab.client, "sh");
    c.args([
        "-c",
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 {addr} 80"),
    ]);
    let o = run(c, Duration::from_secs(20));
    (o.code == 0 && !o.stdout.is_empty()).then(|| o.stdout.lines().last().unwrap_or("").to_string())
}

fn serve(lab: &Lab, host: &str, ctid: &str, body: &str) {
    vz_ok(
        lab,
        host,
        &[
            "exec",
            ctid,
            &format!(
                "mkdir -p /www && echo {body} > /www/index.html && httpd -p 80 -h /www </dev/null >/dev/null 2>&1"
            ),
        ],
    );
}

fn client_neigh(lab: &Lab, addr: &str) -> String {
    let mut c = Lab::cmd(&lab.client, "ip");
    c.args(["neigh", "show", addr]);
    run(c, Duration::from_secs(10)).stdout
}

fn host_mac(lab: &Lab, host: &str) -> String {
    let mut c = Lab::cmd(&lab.host(host).netns, "ip");
    c.args(["-o", "link", "show", "br0"]);
    let out = run(c, Duration::from_secs(10)).stdout;
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap()
        .to_string()
}

#[test]
fn routed_addresses_serve_clients_change_live_and_move_between_hosts() {
    let lab = lab("nv");
    vz_ok(
        &lab,
        "hostA",
        &[
            "create",
            "101",
            "--ipadd",
            "198.18.0.10",
            "--ipadd",
            "2001:2::10",
            "--hostname",
            "web",
        ],
    );
    vz_ok(&lab, "hostA", &["start", "101"]);
    // The host side answers the container's ARP requests for its peers at once (a proxied
    // answer is otherwise delayed up to 0.8 s, which a restored container pays after a move).
    let mut c = Lab::cmd(&lab.host("hostA").netns, "cat");
    c.arg("/proc/sys/net/ipv4/neigh/venet101/proxy_delay");
    assert_eq!(run(c, Duration::from_secs(10)).stdout.trim(), "0");
    serve(&lab, "hostA", "101", "hello-101");
    assert_eq!(get(&lab, "198.18.0.10").as_deref(), Some("hello-101"));
    assert_eq!(
        get(&lab, "2001:2::10").as_deref(),
        Some("hello-101"),
        "IPv6 through proxy NDP"
    );

    // A live --ipadd (not saved) works at once; --ipdel takes an address away at once.
    vz_ok(&lab, "hostA", &["set", "101", "--ipadd", "198.18.0.11"]);
    assert_eq!(get(&lab, "198.18.0.11").as_deref(), Some("hello-101"));
    vz_ok(&lab, "hostA", &["set", "101", "--ipdel", "198.18.0.10"]);
    assert_eq!(get(&lab, "198.18.0.10"), None, "a deleted address still answers");
    assert_eq!(get(&lab, "198.18.0.11").as_deref(), Some("hello-101"));
    let conf = std::fs::read_to_string(lab.host("hostA").root.join("etc/vz/conf/101.conf")).unwrap();
    assert!(
        conf.contains("IP_ADDRESS=\"198.18.0.10 2001:2::10\""),
        "a set without --save changed the config:\n{conf}"
    );
    // An address added live is taken away live, added again, then saved while it is there
    // (both were refused), and taken away with --save from both.
    let saved = || std::fs::read_to_string(lab.host("hostA").root.join("etc/vz/conf/101.conf")).unwrap();
    vz_ok(&lab, "hostA", &["set", "101", "--ipdel", "198.18.0.11"]);
    assert_eq!(get(&lab, "198.18.0.11"), None, "a deleted live address still answers");
    vz_ok(&lab, "hostA", &["set", "101", "--ipadd", "198.18.0.11"]);
    vz_ok(&lab, "hostA", &["set", "101", "--ipadd", "198.18.0.11", "--save"]);
    assert!(saved().contains("198.18.0.11"), "{}", saved());
    assert_eq!(get(&lab, "198.18.0.11").as_deref(), Some("hello-101"));
    vz_ok(&lab, "hostA", &["set", "101", "--ipdel", "198.18.0.11", "--save"]);
    assert!(!saved().contains("198.18.0.11"), "{}", saved());
    assert_eq!(get(&lab, "198.18.0.11"), None);
    vz_ok(&lab, "hostA", &["set", "101", "--ipadd", "198.18.0.11"]);

    // A set the kernel refuses halfway is taken back: root in the container has put
    // 198.18.0.12 on its link itself, so adding it fails after 198.18.0.11 was deleted. The
    // deleted address is back and serves, the run state lists what the container has (the
    // next --ipdel of it works), and root's own address inside is left alone.
    vz_ok(&lab, "hostA", &["exec", "101", "ip addr add 198.18.0.12/32 dev venet0"]);
    let o = vz(
        &lab,
        "hostA",
        &["set", "101", "--ipdel", "198.18.0.11", "--ipadd", "198.18.0.12"],
    );
    assert_eq!(o.code, 34, "{o:?}");
    assert_eq!(
        get(&lab, "198.18.0.11").as_deref(),
        Some("hello-101"),
        "the address the failed set deleted is not back"
    );
    let state = std::fs::read_to_string(lab.host("hostA").root.join("vz/run/101.json")).unwrap();
    assert!(
        state.contains("198.18.0.11") && !state.contains("198.18.0.12"),
        "the run state after a failed set:\n{state}"
    );
    let inside = vz_ok(&lab, "hostA", &["exec", "101", "ip -4 -o addr show dev venet0"]);
    assert!(
        inside.contains("198.18.0.12") && inside.contains("198.18.0.11"),
        "{inside}"
    );
    vz_ok(&lab, "hostA", &["exec", "101", "ip addr del 198.18.0.12/32 dev venet0"]);
    vz_ok(&lab, "hostA", &["set", "101", "--ipdel", "198.18.0.11"]);
    assert_eq!(get(&lab, "198.18.0.11"), None, "a deleted live address still answers");
    vz_ok(&lab, "hostA", &["set", "101", "--ipadd", "198.18.0.11"]);

    // Two containers cannot share an address, live or configured.
    let o = vz(&lab, "hostA", &["create", "102", "--ipadd", "198.18.0.11"]);
    assert_eq!(o.code, 78, "{o:?}");
    vz_ok(&lab, "hostA", &["create", "102"]);
    let o = vz(&lab, "hostA", &["set", "102", "--ipadd", "2001:2::10", "--save"]);
    assert_eq!(o.code, 78, "{o:?}");
    let o = vz(&lab, "hostA", &["set", "102", "--ipadd", "198.18.0.999", "--save"]);
    assert_eq!(o.code, 21, "{o:?}");

    // Stop on hostA: its routes and proxy entries go. Start the same private area on hostB:
    // hostB announces, and the client, whose cache still points at hostA, follows at once.
    vz_ok(&lab, "hostA", &["set", "101", "--ipadd", "198.18.0.10", "--save"]);
    vz_ok(&lab, "hostA", &["stop", "101"]);
    let mut c = Lab::cmd(&lab.host("hostA").netns, "ip");
    c.args(["neigh", "show", "proxy"]);
    assert_eq!(
        run(c, Duration::from_secs(10)).stdout.trim(),
        "",
        "hostA kept proxy entries"
    );
    let (a, b) = (lab.host("hostA").root.clone(), lab.host("hostB").root.clone());
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let mut c = Command::new("cp");
        c.arg("-a").arg(from).arg(to);
        run(c, Duration::from_secs(60)).ok();
    };
    copy(&a.join("vz/private/101"), &b.join("vz/private/101"));
    copy(&a.join("etc/vz/conf/101.conf"), &b.join("etc/vz/conf/101.conf"));
    assert!(
        client_neigh(&lab, "198.18.0.10").contains(&host_mac(&lab, "hostA")),
        "the client never learned hostA's MAC"
    );
    vz_ok(&lab, "hostB", &["start", "101"]);
    let mac_b = host_mac(&lab, "hostB");
    wait_until(
        "the client to learn hostB's MAC from the announcement",
        Duration::from_secs(5),
        || client_neigh(&lab, "198.18.0.10").contains(&mac_b),
    );
    serve(&lab, "hostB", "101", "hello-101-on-B");
    assert_eq!(get(&lab, "198.18.0.10").as_deref(), Some("hello-101-on-B"));
    assert_eq!(get(&lab, "2001:2::10").as_deref(), Some("hello-101-on-B"));

    // Teardown leaves nothing: namespaces, links, mounts, cgroups, files.
    let init_b: i32 = serde_json::from_slice::<serde_json::Value>(&std::fs::read(b.join("vz/run/101.json")).unwrap())
        .unwrap()["init_pid"]
        .as_i64()
        .unwrap() as i32;
    let (name, base) = (lab.name.clone(), lab.base.parent().unwrap().to_path_buf());
    lab.down().unwrap();
    drop(lab);
    assert_eq!(leftovers(&name, &base), Vec::<String>::new());
    assert!(
        ferry::runtime::proc::start_time(init_b).is_none(),
        "the container on hostB survived the teardown"
    );
}

#[test]
fn bridged_interfaces_keep_their_mac_and_reach_the_client() {
    let lab = lab("nb");
    vz_ok(&lab, "hostA", &["create", "103", "--hostname", "bridged"]);
    vz_ok(
        &lab,
        "hostA",
        &[
            "set",
            "103",
            "--netif_add",
            "eth0",
            "--nameserver",
            "198.18.0.53 198.18.0.54",
            "--searchdomain",
            "lab.test other.test",
            "--save",
        ],
    );
    let conf = std::fs::read_to_string(lab.host("hostA").root.join("etc/vz/conf/103.conf")).unwrap();
    let netif = conf
        .lines()
        .find(|l| l.starts_with("NETIF="))
        .expect("NETIF not saved")
        .to_string();
    let mac = netif
        .split(',')
        .find_map(|kv| kv.strip_prefix("mac="))
        .unwrap()
        .to_lowercase();
    vz_ok(&lab, "hostA", &["start", "103"]);
    let inside = vz_ok(
        &lab,
        "hostA",
        &["exec", "103", "cat /sys/class/net/eth0/address; cat /etc/resolv.conf"],
    );
    assert!(
        inside.contains(&mac),
        "eth0 does not have the configured MAC {mac}: {inside}"
    );
    assert!(
        inside.contains("nameserver 198.18.0.53\nnameserver 198.18.0.54")
            && inside.contains("search lab.test other.test"),
        "{inside}"
    );
    vz_ok(&lab, "hostA", &["exec", "103", "ip addr add 198.18.0.50/24 dev eth0"]);
    serve(&lab, "hostA", "103", "hello-bridged");
    assert_eq!(get(&lab, "198.18.0.50").as_deref(), Some("hello-bridged"));
    // The MAC survives a restart.
    vz_ok(&lab, "hostA", &["restart", "103"]);
    assert!(vz_ok(&lab, "hostA", &["exec", "103", "cat /sys/class/net/eth0/address"]).contains(&mac));
    // Live hostname change, without --save.
    vz_ok(&lab, "hostA", &["set", "103", "--hostname", "renamed"]);
    assert_eq!(
        vz_ok(&lab, "hostA", &["exec", "103", "hostname; cat /etc/hostname"]),
        "renamed\nrenamed\n"
    );
    // Bad input: an unknown bridge, a duplicate interface, a stopped container without --save.
    let o = vz(&lab, "hostA", &["set", "103", "--netif_add", "eth1,,,,nosuchbr"]);
    assert_eq!(o.code, 21, "{o:?}");
    assert!(o.stderr.contains("bridge nosuchbr does not exist"), "{o:?}");
    assert_eq!(vz(&lab, "hostA", &["set", "103", "--netif_add", "eth0"]).code, 21);
    vz_ok(&lab, "hostA", &["stop", "103"]);
    let before = std::fs::read_to_string(lab.host("hostA").root.join("etc/vz/conf/103.conf")).unwrap();
    let o = vz(&lab, "hostA", &["set", "103", "--hostname", "ignored"]);
    assert_eq!(o.code, 0);
    assert!(o.stderr.contains("nothing was applied"), "{o:?}");
    assert_eq!(
        std::fs::read_to_string(lab.host("hostA").root.join("etc/vz/conf/103.conf")).unwrap(),
        before
    );
    vz_ok(&lab, "hostA", &["set", "103", "--netif_del", "eth0", "--save"]);
    assert!(
        !std::fs::read_to_string(lab.host("hostA").root.join("etc/vz/conf/103.conf"))
            .unwrap()
            .contains("ifname=eth0")
    );
}

#[test]
fn shaped_lab_and_cleanup_after_a_crashed_run() {
    common::require_root();
    let mut cfg = LabConfig::new(&format!("ns{}", std::process::id() % 100000));
    cfg.base = "/tmp/ferry-lab-tests".into();
    cfg.hosts = vec!["hostA".into(), "hostB".into(), "hostC".into()];
    cfg.shape = Some("100mbit".into());
    let lab = Lab::up(&cfg).unwrap();
    for h in ["hostA", "hostC"] {
        let mut c = Lab::cmd(&lab.host(h).netns, "tc");
        c.args(["qdisc", "show", "dev", "uplink"]);
        let q = run(c, Duration::from_secs(10)).stdout;
        assert!(q.contains("tbf") && q.contains("100Mbit"), "{h} uplink not shaped: {q}");
    }
    vz_ok(&lab, "hostC", &["create", "301", "--ipadd", "198.18.0.31"]);
    vz_ok(&lab, "hostC", &["start", "301"]);
    let init: i32 = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(lab.host("hostC").root.join("vz/run/301.json")).unwrap(),
    )
    .unwrap()["init_pid"]
        .as_i64()
        .unwrap() as i32;
    // A run that crashed leaves its lab behind; the next cleanup finds and removes it all.
    let (name, base) = (lab.name.clone(), lab.base.parent().unwrap().to_path_buf());
    lab.keep();
    assert!(!leftovers(&name, &base).is_empty());
    ferry_testbed::down_named(&name, &base).unwrap();
    ferry_testbed::down_named(&name, &base).unwrap();
    assert_eq!(leftovers(&name, &base), Vec::<String>::new());
    assert!(
        ferry::runtime::proc::start_time(init).is_none(),
        "a container outlived the cleanup"
    );
}
