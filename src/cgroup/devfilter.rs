//! The cgroup v2 device filter: an eBPF program (`BPF_PROG_TYPE_CGROUP_DEVICE`) attached to a
//! container's cgroup that allows the devices of [`super::ALLOWED_DEVICES`] and refuses every
//! other (v2 has no devices controller; the kernel asks the cgroup's programs instead).
//!
//! The program is a handful of instructions made here from the rules, not compiled C: no BPF
//! toolchain or loader crate is needed for it, and its logic is checked by the unit tests, which
//! run it through a small interpreter of the instructions it uses.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One allowed device rule: its type, major and minor (`None`: any), and the accesses it allows
/// (the kernel's bits: mknod 1, read 2, write 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub char_dev: bool,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u32,
}

const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;
const DEV_BLOCK: u32 = 1;
const DEV_CHAR: u32 = 2;

/// Parses a v1 devices rule (`c 1:3 rwm`, `b *:* m`).
pub fn parse_rule(s: &str) -> Option<Rule> {
    let mut w = s.split_whitespace();
    let char_dev = match w.next()? {
        "c" => true,
        "b" => false,
        _ => return None,
    };
    let (major, minor) = w.next()?.split_once(':')?;
    let num = |x: &str| -> Option<Option<u32>> {
        if x == "*" {
            Some(None)
        } else {
            x.parse().ok().map(Some)
        }
    };
    let mut access = 0;
    for c in w.next()?.chars() {
        access |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return None,
        };
    }
    if w.next().is_some() || access == 0 {
        return None;
    }
    Some(Rule {
        char_dev,
        major: num(major)?,
        minor: num(minor)?,
        access,
    })
}

/// One eBPF instruction, as the kernel reads it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const AND64_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const RSH64_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

/// The program: r2 = requested access, r3 = device type, r4 = major, r5 = minor; each rule a
/// block that jumps to the next on a mismatch and returns 1 (allow) when all of it matches;
/// 0 (refuse) after the last.
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
        insn(MOV64_X, 3, 2, 0, 0),
        insn(AND64_K, 3, 0, 0, 0xffff),
        insn(RSH64_K, 2, 0, 0, 16),
    ];
    for r in rules {
        let kind = if r.char_dev { DEV_CHAR } else { DEV_BLOCK };
        let mut block = vec![insn(JNE_K, 3, 0, 0, kind as i32)];
        if let Some(m) = r.major {
            block.push(insn(JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = r.minor {
            block.push(insn(JNE_K, 5, 0, 0, m as i32));
        }
        // Every access asked for must be allowed: none outside the rule's.
        block.push(insn(MOV64_X, 6, 2, 0, 0));
        block.push(insn(AND64_K, 6, 0, 0, (!r.access & 7) as i32));
        block.push(insn(JNE_K, 6, 0, 0, 0));
        block.push(insn(MOV64_K, 0, 0, 0, 1));
        block.push(insn(EXIT, 0, 0, 0, 0));
        // Each jump lands just past the block.
        let len = block.len();
        for (i, b) in block.iter_mut().enumerate() {
            if b.code == JNE_K {
                b.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> io::Result<i64> {
    // SAFETY: the bpf syscall with a zero-padded attribute buffer of the size passed.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), std::mem::size_of_val(attr)) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u64 = 15;
const BPF_CGROUP_DEVICE: u64 = 6;
const BPF_F_ALLOW_MULTI: u64 = 2;

/// Attaches the filter for `rules` to the v2 cgroup `dir`, unless it has a device program
/// already (a cgroup made again for a restore). Allow-multi: programs the container's own
/// subtree might attach can only refuse more.
pub fn attach(dir: &Path, rules: &[Rule]) -> io::Result<()> {
    let cg = std::fs::File::open(dir)?;
    // Attached already?
    let mut q = [0u64; 16];
    q[0] = cg.as_raw_fd() as u64 | (BPF_CGROUP_DEVICE << 32);
    bpf(BPF_PROG_QUERY, &mut q)?;
    if (q[3] & 0xffff_ffff) > 0 {
        return Ok(());
    }
    let prog = program(rules);
    let license = b"GPL\0";
    let load = |log: Option<&mut Vec<u8>>| {
        let mut a = [0u64; 16];
        a[0] = BPF_PROG_TYPE_CGROUP_DEVICE | ((prog.len() as u64) << 32);
        a[1] = prog.as_ptr() as u64;
        a[2] = license.as_ptr() as u64;
        if let Some(log) = log {
            a[3] = 1 | ((log.len() as u64) << 32);
            a[4] = log.as_mut_ptr() as u64;
        }
        bpf(BPF_PROG_LOAD, &mut a)
    };
    // Without a verifier log first (a log that does not fit fails a good load); with one
    // only to say why a load failed.
    let fd = load(None).map_err(|e| {
        let mut log = vec![0u8; 64 << 10];
        let _ = load(Some(&mut log));
        let said = String::from_utf8_lossy(&log);
        let said = said.trim_end_matches('\0').trim();
        io::Error::new(
            e.kind(),
            format!("loading the device filter: {e}; the verifier said: {said}"),
        )
    })?;
    // SAFETY: the descriptor the kernel just returned.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut at = [0u64; 16];
    at[0] = cg.as_raw_fd() as u64 | ((prog_fd.as_raw_fd() as u64) << 32);
    at[1] = BPF_CGROUP_DEVICE | (BPF_F_ALLOW_MULTI << 32);
    bpf(BPF_PROG_ATTACH, &mut at).map_err(|e| io::Error::new(e.kind(), format!("attaching the device filter: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the instructions `program` emits, as the kernel would, on one access.
    fn run(p: &[Insn], access_type: u32, major: u32, minor: u32) -> u64 {
        let ctx = [access_type, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => {
                    assert_eq!(src, 1);
                    r[dst] = ctx[i.off as usize / 4] as u64;
                }
                MOV64_X => r[dst] = r[src],
                MOV64_K => r[dst] = i.imm as i64 as u64,
                AND64_K => r[dst] &= i.imm as i64 as u64,
                RSH64_K => r[dst] >>= i.imm,
                JNE_K => {
                    if r[dst] != i.imm as i64 as u64 {
                        pc += i.off as usize;
                    }
                }
                EXIT => return r[0],
                c => panic!("instruction {c:#x}"),
            }
        }
    }

    fn allowed(rules: &[Rule], char_dev: bool, major: u32, minor: u32, access: u32) -> bool {
        rules.iter().any(|r| {
            r.char_dev == char_dev
                && r.major.is_none_or(|m| m == major)
                && r.minor.is_none_or(|m| m == minor)
                && access & !r.access == 0
        })
    }

    #[test]
    fn the_program_allows_exactly_what_the_rules_allow() {
        let rules: Vec<Rule> = crate::cgroup::ALLOWED_DEVICES
            .iter()
            .map(|s| parse_rule(s).unwrap_or_else(|| panic!("{s}")))
            .collect();
        let p = program(&rules);
        let mut seen = (0, 0);
        for char_dev in [true, false] {
            for major in [0, 1, 4, 5, 7, 8, 10, 136, 254] {
                for minor in [0, 1, 2, 3, 5, 7, 8, 9, 11, 200, 229] {
                    for access in 1..8 {
                        let t = (access << 16) | if char_dev { DEV_CHAR } else { DEV_BLOCK };
                        let want = allowed(&rules, char_dev, major, minor, access);
                        assert_eq!(
                            run(&p, t, major, minor) == 1,
                            want,
                            "{char_dev} {major}:{minor} {access}"
                        );
                        if want {
                            seen.0 += 1
                        } else {
                            seen.1 += 1
                        }
                    }
                }
            }
        }
        assert!(seen.0 > 50 && seen.1 > 500, "{seen:?}");
        // The ones that matter by name.
        let ok = |c, ma, mi, acc| run(&p, (acc << 16) | if c { DEV_CHAR } else { DEV_BLOCK }, ma, mi) == 1;
        assert!(ok(true, 1, 3, ACC_READ | ACC_WRITE), "/dev/null");
        assert!(ok(true, 136, 4, ACC_READ | ACC_WRITE), "a pty");
        assert!(!ok(true, 1, 11, ACC_WRITE), "/dev/kmsg");
        assert!(!ok(true, 1, 1, ACC_READ), "/dev/mem");
        assert!(!ok(false, 8, 0, ACC_READ), "a disk");
        assert!(ok(false, 8, 0, ACC_MKNOD), "mknod alone");
        assert!(!ok(true, 10, 200, ACC_READ | ACC_WRITE), "tun, not allowed by default");
    }

    #[test]
    fn rules_parse_as_the_v1_controller_writes_them() {
        assert_eq!(
            parse_rule("c 136:* rwm"),
            Some(Rule {
                char_dev: true,
                major: Some(136),
                minor: None,
                access: 7
            })
        );
        assert_eq!(parse_rule("b *:* m").unwrap().access, ACC_MKNOD);
        for bad in [
            "",
            "x 1:3 rw",
            "c 1 rw",
            "c 1:3",
            "c 1:3 rx",
            "c a:3 r",
            "c 1:3 r extra",
        ] {
            assert_eq!(parse_rule(bad), None, "{bad:?}");
        }
    }
}
