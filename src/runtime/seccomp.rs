//! The default seccomp profile of a container's processes: system calls that reach beyond the
//! container's own namespaces (kernel keyrings, module loading, kexec, BPF, host-wide perf), or
//! that ferry could not checkpoint (io_uring, userfaultfd from inside), fail with EPERM. Like
//! Docker's and LXC's default profiles, in spirit; in a container with a user namespace most of
//! these are already refused by capability checks, and the filter is the second wall.
//!
//! The filter is installed by the container's init before it drops its capabilities (and by the
//! process `vzctl exec` forks its command from), inherited by everything the container runs, and
//! carried through checkpoints and migrations by CRIU (it dumps and restores each task's
//! filters). It is installed WITHOUT `no_new_privs`, which would stop set-uid programs (`su`,
//! `passwd`) inside a system container: the installer holds CAP_SYS_ADMIN in its user namespace
//! at that moment, which the kernel accepts instead. That is also why ferry builds the BPF
//! program itself rather than with seccompiler, which always sets `no_new_privs` when it
//! installs a filter and does not cover the x32 ABI; the program is small, straight-line, and
//! unit-tested instruction by instruction.
//!
//! Architectures: x86_64 is filtered by its numbers; the x32 ABI (x86_64 numbers with bit 30
//! set) is refused whole (ENOSYS), and i386 compatibility calls are filtered by their own
//! numbers, so `int 0x80` is no way around; any other architecture is killed.

use std::io;

/// One system call a container may not make, with its numbers and why.
pub struct Denied {
    pub name: &'static str,
    pub x86_64: u32,
    /// None: the call does not exist on i386.
    pub i386: Option<u32>,
    pub why: &'static str,
}

const fn d(name: &'static str, x86_64: u32, i386: Option<u32>, why: &'static str) -> Denied {
    Denied {
        name,
        x86_64,
        i386,
        why,
    }
}

/// The calls refused to every container.
pub const DENIED: &[Denied] = &[
    d(
        "keyctl",
        250,
        Some(288),
        "kernel keyrings are not namespaced: the host's keys",
    ),
    d("add_key", 248, Some(286), "kernel keyrings are not namespaced"),
    d("request_key", 249, Some(287), "kernel keyrings are not namespaced"),
    d("kexec_load", 246, Some(283), "replacing the host's kernel"),
    d("kexec_file_load", 320, None, "replacing the host's kernel"),
    d("init_module", 175, Some(128), "loading code into the host's kernel"),
    d("finit_module", 313, Some(350), "loading code into the host's kernel"),
    d("delete_module", 176, Some(129), "unloading the host's kernel modules"),
    d(
        "open_by_handle_at",
        304,
        Some(342),
        "file handles reach files outside the container's root",
    ),
    d(
        "bpf",
        321,
        Some(357),
        "BPF programs run in the host's kernel and are not namespaced",
    ),
    d(
        "perf_event_open",
        298,
        Some(336),
        "performance events observe the whole host",
    ),
    d(
        "userfaultfd",
        323,
        Some(374),
        "a fault handler in the container can stall the kernel; CRIU cannot checkpoint it",
    ),
    d(
        "io_uring_setup",
        425,
        Some(425),
        "CRIU cannot checkpoint io_uring; a large attack surface of the host's kernel",
    ),
    d("io_uring_enter", 426, Some(426), "as io_uring_setup"),
    d("io_uring_register", 427, Some(427), "as io_uring_setup"),
    d("syslog", 103, Some(103), "the host's kernel log"),
    d("acct", 163, Some(51), "host-wide process accounting"),
    d("swapon", 167, Some(87), "the host's swap"),
    d("swapoff", 168, Some(115), "the host's swap"),
    d("quotactl", 179, Some(131), "quotas of the host's file systems"),
    d("uselib", 134, Some(86), "obsolete; loads code the old way"),
    d("iopl", 172, Some(110), "the host's I/O ports"),
    d("ioperm", 173, Some(101), "the host's I/O ports"),
];

const SOCKET: (u32, u32) = (41, 359);
const UNSHARE: (u32, u32) = (272, 310);
const CLONE: (u32, u32) = (56, 120);
const CLONE3: u32 = 435;
const AF_NETLINK: u32 = 16;
const NETLINK_KOBJECT_UEVENT: u32 = 15;
const CLONE_NEWUSER: u32 = 0x1000_0000;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;

const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// The low 32 bits of argument `i` (little-endian).
const fn off_arg(i: u32) -> u32 {
    16 + 8 * i
}

/// One BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const fn stmt(code: u16, k: u32) -> Insn {
    Insn { code, jt: 0, jf: 0, k }
}
const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

fn ret(action: u32) -> Insn {
    stmt(BPF_RET_K, action)
}
fn eperm() -> Insn {
    ret(SECCOMP_RET_ERRNO | libc::EPERM as u32)
}
fn enosys() -> Insn {
    ret(SECCOMP_RET_ERRNO | libc::ENOSYS as u32)
}

/// What the profile refuses besides `DENIED`.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// A privileged container (no user namespace of its own) may not make one either: mapping
    /// its uid 0 to itself in a new user namespace and mounting the cgroup v1 hierarchy there
    /// would let it raise its own limits (the files are owned by host uid 0). `clone3`, whose
    /// flags a filter cannot read, then fails with ENOSYS, and the C library falls back to
    /// `clone`.
    pub no_nested_userns: bool,
    /// The uevent netlink socket is refused (the host's device events). Allowed only to a
    /// systemd container, which has a user namespace: its logind and udev clients open one,
    /// and the kernel sends a network namespace owned by another user namespace no device
    /// events but its own links' (Linux 4.18, "netns: restrict uevents").
    pub no_uevent: bool,
}

/// The filter of one architecture's calls (the accumulator holds nothing yet). Straight-line:
/// every test jumps over its own short block, so no jump is ever longer than a few
/// instructions.
fn arch_block(p: &mut Vec<Insn>, i386: bool, profile: Profile) {
    let pick = |pair: (u32, u32)| if i386 { pair.1 } else { pair.0 };
    p.push(stmt(BPF_LD_W_ABS, OFF_NR));
    if !i386 {
        p.push(jump(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1));
        p.push(enosys());
    }
    for dn in DENIED {
        let nr = if i386 { dn.i386 } else { Some(dn.x86_64) };
        if let Some(nr) = nr {
            p.push(jump(BPF_JEQ_K, nr, 0, 1));
            p.push(eperm());
        }
    }
    if profile.no_nested_userns {
        p.push(jump(BPF_JEQ_K, CLONE3, 0, 1));
        p.push(enosys());
        for call in [UNSHARE, CLONE] {
            // if nr == call { if args[0] & CLONE_NEWUSER { EPERM } else { ALLOW } }
            p.push(jump(BPF_JEQ_K, pick(call), 0, 4));
            p.push(stmt(BPF_LD_W_ABS, off_arg(0)));
            p.push(jump(BPF_JSET_K, CLONE_NEWUSER, 0, 1));
            p.push(eperm());
            p.push(ret(SECCOMP_RET_ALLOW));
        }
    }
    // if nr == socket { if args[0] == AF_NETLINK && args[2] == NETLINK_KOBJECT_UEVENT { EPERM } }
    // (the host's device events). i386's older socketcall multiplexer passes its arguments in
    // memory, which a filter cannot read: that one way stays open to 32-bit programs.
    if profile.no_uevent {
        p.push(jump(BPF_JEQ_K, pick(SOCKET), 0, 6));
        p.push(stmt(BPF_LD_W_ABS, off_arg(0)));
        p.push(jump(BPF_JEQ_K, AF_NETLINK, 0, 3));
        p.push(stmt(BPF_LD_W_ABS, off_arg(2)));
        p.push(jump(BPF_JEQ_K, NETLINK_KOBJECT_UEVENT, 0, 1));
        p.push(eperm());
        p.push(ret(SECCOMP_RET_ALLOW));
    }
    p.push(ret(SECCOMP_RET_ALLOW));
}

/// The whole program: dispatch on the architecture, then its block.
pub fn program(profile: Profile) -> Vec<Insn> {
    let mut x64 = Vec::new();
    arch_block(&mut x64, false, profile);
    let mut i386 = Vec::new();
    arch_block(&mut i386, true, profile);
    assert!(
        x64.len() < 256 && i386.len() < 256,
        "a BPF jump reaches 255 instructions at most"
    );
    let mut p = vec![stmt(BPF_LD_W_ABS, OFF_ARCH)];
    p.push(jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, 0, x64.len() as u8));
    p.extend(x64);
    p.push(jump(BPF_JEQ_K, AUDIT_ARCH_I386, 0, i386.len() as u8));
    p.extend(i386);
    p.push(ret(SECCOMP_RET_KILL_PROCESS));
    p
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const Insn,
}

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

/// Installs the profile on the calling thread (and what it forks and execs). Needs
/// CAP_SYS_ADMIN in the caller's user namespace, since `no_new_privs` is deliberately not set.
pub fn install(profile: Profile) -> io::Result<()> {
    let prog = program(profile);
    let fprog = SockFprog {
        len: prog.len() as u16,
        filter: prog.as_ptr(),
    };
    // SAFETY: seccomp(SET_MODE_FILTER) with a valid program that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            0 as libc::c_ulong,
            &fprog as *const SockFprog,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on one call, as the kernel would: (action, errno).
    fn run(p: &[Insn], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let word = |off: u32| -> u32 {
            match off {
                0 => nr,
                4 => arch,
                o if (16..64).contains(&o) => {
                    let a = args[((o - 16) / 8) as usize];
                    if (o - 16) % 8 == 0 {
                        a as u32
                    } else {
                        (a >> 32) as u32
                    }
                }
                o => panic!("load at {o}"),
            }
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => acc = word(i.k),
                BPF_RET_K => return i.k,
                BPF_JEQ_K | BPF_JGE_K | BPF_JSET_K => {
                    let t = match i.code {
                        BPF_JEQ_K => acc == i.k,
                        BPF_JGE_K => acc >= i.k,
                        _ => acc & i.k != 0,
                    };
                    pc += if t { i.jt } else { i.jf } as usize;
                }
                c => panic!("instruction {c:#x}"),
            }
        }
    }

    const ALLOW: u32 = SECCOMP_RET_ALLOW;
    const EPERM: u32 = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    #[test]
    fn numbers_are_this_architectures() {
        assert_eq!(
            DENIED.iter().find(|d| d.name == "keyctl").unwrap().x86_64,
            libc::SYS_keyctl as u32
        );
        for (name, nr) in [
            ("add_key", libc::SYS_add_key),
            ("request_key", libc::SYS_request_key),
            ("kexec_load", libc::SYS_kexec_load),
            ("kexec_file_load", libc::SYS_kexec_file_load),
            ("init_module", libc::SYS_init_module),
            ("finit_module", libc::SYS_finit_module),
            ("delete_module", libc::SYS_delete_module),
            ("open_by_handle_at", libc::SYS_open_by_handle_at),
            ("bpf", libc::SYS_bpf),
            ("perf_event_open", libc::SYS_perf_event_open),
            ("userfaultfd", libc::SYS_userfaultfd),
            ("io_uring_setup", libc::SYS_io_uring_setup),
            ("syslog", libc::SYS_syslog),
            ("acct", libc::SYS_acct),
            ("swapon", libc::SYS_swapon),
            ("quotactl", libc::SYS_quotactl),
            ("iopl", libc::SYS_iopl),
            ("ioperm", libc::SYS_ioperm),
        ] {
            assert_eq!(
                DENIED.iter().find(|d| d.name == name).unwrap().x86_64,
                nr as u32,
                "{name}"
            );
        }
        assert_eq!(SOCKET.0, libc::SYS_socket as u32);
        assert_eq!(UNSHARE.0, libc::SYS_unshare as u32);
        assert_eq!(CLONE.0, libc::SYS_clone as u32);
        assert_eq!(CLONE3, libc::SYS_clone3 as u32);
    }

    #[test]
    fn denies_what_it_lists_and_allows_the_rest() {
        let p = program(Profile {
            no_nested_userns: false,
            no_uevent: true,
        });
        let x = AUDIT_ARCH_X86_64;
        for dn in DENIED {
            assert_eq!(run(&p, x, dn.x86_64, [0; 6]), EPERM, "{}", dn.name);
            if let Some(n) = dn.i386 {
                assert_eq!(run(&p, AUDIT_ARCH_I386, n, [0; 6]), EPERM, "{} (i386)", dn.name);
            }
        }
        for ok in [0u32, 1, 2, 57, 59, 165, 272, 56, 435, 300] {
            assert_eq!(run(&p, x, ok, [0x1000_0000, 0, 0, 0, 0, 0]), ALLOW, "{ok}");
        }
        // The uevent netlink socket, and no other socket.
        assert_eq!(run(&p, x, 41, [16, 3, 15, 0, 0, 0]), EPERM);
        assert_eq!(run(&p, x, 41, [16, 3, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run(&p, x, 41, [2, 1, 15, 0, 0, 0]), ALLOW);
        assert_eq!(run(&p, AUDIT_ARCH_I386, 359, [16, 3, 15, 0, 0, 0]), EPERM);
        // x32 calls, whatever their number; unknown architectures.
        assert_eq!(run(&p, x, X32_SYSCALL_BIT | 250, [0; 6]), ENOSYS);
        assert_eq!(run(&p, x, X32_SYSCALL_BIT, [0; 6]), ENOSYS);
        assert_eq!(run(&p, 0xC000_00B7, 1, [0; 6]), SECCOMP_RET_KILL_PROCESS);
        // High argument bits do not confuse the checks (only the low word is compared).
        assert_eq!(run(&p, x, 41, [16 | 1 << 32, 3, 15 | 1 << 40, 0, 0, 0]), EPERM);
    }

    #[test]
    fn a_privileged_container_makes_no_user_namespace() {
        let p = program(Profile {
            no_nested_userns: true,
            no_uevent: true,
        });
        let x = AUDIT_ARCH_X86_64;
        assert_eq!(run(&p, x, 272, [0x1000_0000 | 0x0002_0000, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(run(&p, x, 272, [0x0002_0000, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run(&p, x, 56, [0x1000_0000 | 17, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(run(&p, x, 56, [17, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run(&p, x, 435, [0; 6]), ENOSYS);
        assert_eq!(run(&p, AUDIT_ARCH_I386, 310, [0x1000_0000, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(run(&p, AUDIT_ARCH_I386, 120, [0x1000_0000, 0, 0, 0, 0, 0]), EPERM);
        // Everything else as without it.
        assert_eq!(run(&p, x, 250, [0; 6]), EPERM);
        assert_eq!(run(&p, x, 41, [16, 3, 15, 0, 0, 0]), EPERM);
        assert_eq!(run(&p, x, 0, [0; 6]), ALLOW);
    }

    #[test]
    fn a_systemd_container_opens_the_uevent_socket_and_nothing_else_changes() {
        let p = program(Profile {
            no_nested_userns: false,
            no_uevent: false,
        });
        let x = AUDIT_ARCH_X86_64;
        assert_eq!(run(&p, x, 41, [16, 3, 15, 0, 0, 0]), ALLOW);
        assert_eq!(run(&p, AUDIT_ARCH_I386, 359, [16, 3, 15, 0, 0, 0]), ALLOW);
        for dn in DENIED {
            assert_eq!(run(&p, x, dn.x86_64, [0; 6]), EPERM, "{}", dn.name);
        }
    }
}
