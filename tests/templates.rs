//! Root-only: template caches keep every attribute, and the stop timeout falls back to kill.

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use common::*;

fn sh(script: &str) {
    let mut c = Command::new("sh");
    c.args(["-ec", script]);
    run(c, Duration::from_secs(60)).ok();
}

#[test]
fn a_cache_unpacks_with_owners_modes_links_devices_and_xattrs() {
    let h = TestHost::new("attrs");
    // A template made by hand from the busybox one, plus files with every kind of attribute.
    let src = h.root().join("src");
    std::fs::create_dir_all(h.root().join("vz/template/cache")).unwrap();
    h.vzpkg(&["create-cache", "busybox"], Duration::from_secs(60)).ok();
    std::fs::create_dir_all(&src).unwrap();
    let cache = h.root().join("vz/template/cache");
    sh(&format!(
        "cd {src}; tar --zstd -xf {cache}/busybox.tar.zst; \
         mkdir -p srv; echo data > srv/owned; \
         chown 1234:5678 srv/owned; chmod 4751 srv/owned; ln srv/owned srv/hardlink; \
         mknod srv/null c 1 3; mkfifo srv/fifo; ln -s /bin/busybox srv/link; \
         setfattr -n user.ferry -v kept srv/owned 2>/dev/null || python3 -c \"import os; os.setxattr('srv/owned', 'user.ferry', b'kept')\"; \
         tar --numeric-owner --xattrs --xattrs-include='*' --acls --zstd -cf {cache}/custom.tar.zst -C {src} .",
        src = src.display(),
        cache = cache.display()
    ));
    h.vzctl(&["create", "150", "--ostemplate", "custom"]).ok();
    let p = h.private("150");
    let owned = std::fs::symlink_metadata(p.join("srv/owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (1234, 5678));
    assert_eq!(owned.mode() & 0o7777, 0o4751);
    let hard = std::fs::symlink_metadata(p.join("srv/hardlink")).unwrap();
    assert_eq!(hard.ino(), owned.ino(), "hard link became a copy");
    let dev = std::fs::symlink_metadata(p.join("srv/null")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&dev.file_type()));
    assert_eq!(dev.rdev(), libc::makedev(1, 3));
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &std::fs::symlink_metadata(p.join("srv/fifo")).unwrap().file_type()
    ));
    assert_eq!(
        std::fs::read_link(p.join("srv/link")).unwrap().to_str().unwrap(),
        "/bin/busybox"
    );
    let mut c = Command::new("python3");
    c.args([
        "-c",
        &format!(
            "import os; print(os.getxattr('{}', 'user.ferry').decode())",
            p.join("srv/owned").display()
        ),
    ]);
    assert_eq!(run(c, Duration::from_secs(10)).ok().stdout.trim(), "kept", "xattr lost");
}

#[test]
fn stop_kills_after_the_timeout_when_init_ignores_the_signal() {
    let h = TestHost::new("stopto");
    h.vzctl(&["create", "160"]).ok();
    // busybox init rereads its inittab on SIGHUP and goes on running.
    let conf = h.conf("160");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("STOP_SIGNAL=\"HUP\"\n");
    std::fs::write(&conf, text).unwrap();
    h.vzctl(&["start", "160"]).ok();
    let init = h.init_pid("160");
    let o = h.vzctl(&["stop", "160", "--timeout", "1", "-v"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("did not stop within"), "no timeout reported: {o:?}");
    assert!(ferry::runtime::proc::start_time(init).is_none());
    assert_eq!(
        h.vzctl(&["status", "160"]).stdout.trim(),
        "CTID 160 exist unmounted down"
    );
}
