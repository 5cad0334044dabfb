//! The capability set of a container's processes.
//!
//! Containers share the host's kernel and run without a user namespace (CRIU's best-supported
//! setup), so their root is the host's uid 0. What keeps it inside is this list: capabilities
//! that reach beyond the container's own namespaces are removed from the bounding, inheritable,
//! permitted, effective and ambient sets before the container's first program runs, so neither
//! it nor any set-uid program it starts can regain them. ARCHITECTURE.md explains each choice.

use std::io;

use super::sys::check;

/// Capabilities a container's root does not get, with why.
pub const DROPPED: &[(u32, &str)] = &[
    (
        2,
        "CAP_DAC_READ_SEARCH: open_by_handle_at reaches files outside the container's root",
    ),
    (16, "CAP_SYS_MODULE: loading kernel modules"),
    (17, "CAP_SYS_RAWIO: raw I/O ports, /dev/mem, /proc/kcore"),
    (20, "CAP_SYS_PACCT: host-wide process accounting"),
    (
        21,
        "CAP_SYS_ADMIN: mounting (remounting /sys or /proc/sys writable, new sysfs or devtmpfs), and much of the host",
    ),
    (25, "CAP_SYS_TIME: setting the host's clock"),
    (27, "CAP_MKNOD: device nodes for host disks"),
    (30, "CAP_AUDIT_CONTROL: the host's audit rules"),
    (32, "CAP_MAC_OVERRIDE: overriding the host's security modules"),
    (33, "CAP_MAC_ADMIN: configuring the host's security modules"),
    (34, "CAP_SYSLOG: the host's kernel log"),
    (35, "CAP_WAKE_ALARM: host wake-up timers"),
    (36, "CAP_BLOCK_SUSPEND: blocking host suspend"),
    (37, "CAP_AUDIT_READ: the host's audit log"),
    (38, "CAP_PERFMON: host-wide performance monitoring"),
    (39, "CAP_BPF: loading BPF programs into the host kernel"),
    (40, "CAP_CHECKPOINT_RESTORE: checkpointing host processes"),
];

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

/// Removes the dropped capabilities from every set of the calling process.
pub fn drop_container_caps() -> io::Result<()> {
    for (cap, _) in DROPPED {
        // SAFETY: prctl with integer arguments. EINVAL means the kernel does not know the cap.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, *cap as libc::c_ulong, 0, 0, 0) };
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
    for (cap, _) in DROPPED {
        let (i, bit) = ((*cap / 32) as usize, 1u32 << (cap % 32));
        data[i].effective &= !bit;
        data[i].permitted &= !bit;
        data[i].inheritable &= !bit;
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
    fn dropped_list_is_sorted_and_unique() {
        let caps: Vec<u32> = DROPPED.iter().map(|(c, _)| *c).collect();
        assert!(caps.windows(2).all(|w| w[0] < w[1]));
    }
}
