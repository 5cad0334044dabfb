//! The capability set of a container's processes.
//!
//! An allow-list: a container's processes keep the capabilities named here and lose every
//! other one the kernel has (up to /proc/sys/kernel/cap_last_cap, and any number past it), from
//! the bounding, inheritable, permitted, effective and ambient sets, before the container's
//! first program runs, so neither it nor any set-uid program it starts can regain them. A
//! capability a future kernel adds is not granted until it is added here. In a container with
//! a user namespace these are capabilities over its own namespaces only. ARCHITECTURE.md
//! explains what is withheld and why.

use std::io;

use super::sys::check;

/// The capabilities a container's root keeps, with why.
pub const ALLOWED: &[(u32, &str)] = &[
    (0, "CAP_CHOWN: owning its own files"),
    (1, "CAP_DAC_OVERRIDE: root reads and writes its own files"),
    (3, "CAP_FOWNER: root acts on files it does not own, in its tree"),
    (4, "CAP_FSETID: set-uid and set-gid bits kept on its own files"),
    (5, "CAP_KILL: signals to its own processes"),
    (
        6,
        "CAP_SETGID: its own users' groups (login, daemons dropping privileges)",
    ),
    (7, "CAP_SETUID: its own users (login, daemons dropping privileges)"),
    (8, "CAP_SETPCAP: passing capabilities on to its own processes"),
    (
        9,
        "CAP_LINUX_IMMUTABLE: immutable and append-only flags on its own files",
    ),
    (10, "CAP_NET_BIND_SERVICE: services on ports below 1024"),
    (11, "CAP_NET_BROADCAST: broadcast and multicast in its own network"),
    (12, "CAP_NET_ADMIN: configuring its own network namespace"),
    (
        13,
        "CAP_NET_RAW: ping, raw and packet sockets in its own network namespace",
    ),
    (14, "CAP_IPC_LOCK: locking memory (counted against its memory limit)"),
    (15, "CAP_IPC_OWNER: its own System V IPC objects"),
    (18, "CAP_SYS_CHROOT: chroot within its tree"),
    (
        19,
        "CAP_SYS_PTRACE: debugging its own processes (its pid namespace shows no others)",
    ),
    (
        22,
        "CAP_SYS_BOOT: shutting itself down (reboot() in a child pid namespace ends that namespace)",
    ),
    (23, "CAP_SYS_NICE: priorities of its own processes"),
    (
        24,
        "CAP_SYS_RESOURCE: its own processes' limits, below the host's cgroup limits",
    ),
    (26, "CAP_SYS_TTY_CONFIG: its own terminals"),
    (28, "CAP_LEASE: file leases on its own files"),
    (29, "CAP_AUDIT_WRITE: login programs writing audit records"),
    (
        31,
        "CAP_SETFCAP: file capabilities on its own files (package installs set them)",
    ),
];

/// CAP_SYS_ADMIN, added for a container whose init is systemd, which has a user namespace:
/// systemd mounts (`/run/user`, its units' sandboxes: private `/tmp`, read-only views, new
/// namespaces) and manages its delegated cgroups. In its own user namespace that covers only
/// the namespaces the container owns; the kernel refuses it everything of the host's, as for
/// the capabilities above (ARCHITECTURE.md, "systemd containers"). Never for a privileged
/// container, where it would be the host's.
pub const SYS_ADMIN: (u32, &str) = (
    21,
    "CAP_SYS_ADMIN (systemd containers only): mounts and namespaces of its own",
);

/// A container's capability set: the allowed ones, plus CAP_SYS_ADMIN for systemd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Set {
    pub sys_admin: bool,
}

impl Set {
    /// Is capability `c` kept?
    pub fn keeps(self, c: u32) -> bool {
        ALLOWED.iter().any(|(a, _)| *a == c) || (self.sys_admin && c == SYS_ADMIN.0)
    }

    /// The kept capabilities as a bit mask.
    pub fn mask(self) -> u64 {
        (0..64).filter(|c| self.keeps(*c)).fold(0, |m, c| m | 1u64 << c)
    }
}

/// The capability numbers a container loses: everything up to `last` that is not allowed.
pub fn dropped(last: u32) -> Vec<u32> {
    dropped_from(Set::default(), last)
}

fn dropped_from(set: Set, last: u32) -> Vec<u32> {
    (0..=last).filter(|c| !set.keeps(*c)).collect()
}

/// The highest capability this kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// The allowed capabilities as a bit mask.
pub fn allowed_mask() -> u64 {
    Set::default().mask()
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

/// Removes every capability but the container's (`set`) from every set of the calling process.
pub fn drop_container_caps(set: Set) -> io::Result<()> {
    // Past cap_last_cap too: a kernel newer than the one probed may know more; EINVAL means the
    // kernel does not know the capability, so there is nothing to drop.
    for cap in dropped_from(set, 63) {
        // SAFETY: prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
        }
    }
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget fills two CapData structs for version 3.
    check(unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut CapHeader, data.as_mut_ptr()) as libc::c_int })?;
    let mask = set.mask();
    for (i, d) in data.iter_mut().enumerate() {
        let m = (mask >> (32 * i)) as u32;
        d.effective &= m;
        d.permitted &= m;
        d.inheritable &= m;
    }
    // SAFETY: capset with the structs capget filled.
    check(unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) as libc::c_int })
        .map(|_| ())
}

/// The bounding set of a process as a bit mask, from /proc/PID/status.
pub fn bounding_set(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bounding_set() {
        assert_eq!(
            bounding_set("Name:\tx\nCapBnd:\t000001ffffffffff\n"),
            Some(0x1ff_ffff_ffff)
        );
        assert_eq!(bounding_set("Name:\tx\n"), None);
    }

    #[test]
    fn allowed_list_is_sorted_unique_and_withholds_the_host_wide_ones() {
        let caps: Vec<u32> = ALLOWED.iter().map(|(c, _)| *c).collect();
        assert!(caps.windows(2).all(|w| w[0] < w[1]));
        // CAP_DAC_READ_SEARCH, SYS_MODULE, SYS_RAWIO, SYS_ADMIN, SYS_TIME, MKNOD, MAC_*, SYSLOG,
        // BPF, PERFMON, CHECKPOINT_RESTORE, and whatever comes after the last one known today.
        let gone = dropped(63);
        for c in [
            2, 16, 17, 20, 21, 25, 27, 30, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 63,
        ] {
            assert!(gone.contains(&c), "capability {c} is granted");
        }
        assert_eq!(gone.len() + ALLOWED.len(), 64);
        let sd = Set { sys_admin: true };
        assert_eq!(sd.mask(), allowed_mask() | 1 << 21);
        assert_eq!(dropped_from(sd, 63).len() + 1, gone.len());
    }
}
