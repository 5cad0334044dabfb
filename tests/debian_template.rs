//! Root-only and slow: builds a Debian cache with debootstrap from Debian's archive, then
//! creates, boots, uses, stops and destroys a container from it.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn debian_cache_builds_and_boots() {
    let h = TestHost::new("debian");
    let o = h.vzpkg(&["create-cache", "debian-12"], Duration::from_secs(1500));
    assert_eq!(
        o.code, 0,
        "vzpkg create-cache debian-12 failed (debootstrap needs Debian's archive): {o:?}"
    );
    assert!(h.root().join("vz/template/cache/debian-12.tar.zst").is_file());
    assert!(
        h.root().join("vz/template/debian-12/template.conf").is_file(),
        "recipe not written"
    );
    let list = h.vzpkg(&["list", "--json"], Duration::from_secs(30));
    let l: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let entry = l
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "debian-12")
        .expect("debian-12 not listed");
    assert!(
        entry["size"].as_u64().unwrap() > 10 << 20,
        "suspiciously small cache: {entry}"
    );

    h.vzctl(&["create", "301", "--ostemplate", "debian-12", "--hostname", "deb"])
        .ok();
    h.vzctl(&["start", "301"]).ok();
    assert!(h.exec("301", "cat /etc/debian_version").trim().starts_with("12"));
    assert_eq!(h.exec("301", "hostname").trim(), "deb");
    // sysvinit is pid 1 and has run its boot scripts (runlevel 2).
    assert_eq!(h.exec("301", "cat /proc/1/comm").trim(), "init");
    wait_until("sysvinit to reach runlevel 2", Duration::from_secs(60), || {
        h.vzctl(&["exec", "301", "runlevel"]).stdout.contains(" 2")
    });
    // Packages of the recipe are there.
    h.exec("301", "ps -e >/dev/null && ip -o link show lo >/dev/null");
    // A clean stop through sysvinit's ctrl-alt-del action (shutdown -r: the pid namespace ends).
    h.vzctl(&["stop", "301"]).ok();
    assert_eq!(
        h.vzctl(&["status", "301"]).stdout.trim(),
        "CTID 301 exist unmounted down"
    );
    h.vzctl(&["destroy", "301"]).ok();
}
