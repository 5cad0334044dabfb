//! Resource limits and counters on a container's cgroup, for cgroup v1 and v2, and the
//! freezer. Everything goes through files below the hierarchies' mount points, so the logic is
//! unit-tested against fixture directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{CgroupError, Cgroups, Version};
use crate::ctid::Ctid;

/// CFS period used for CPU caps, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Maps OpenVZ's cpuunits (8..500000, 1000 = default) to cgroup v1 cpu.shares (1024 = default).
pub fn units_to_shares(units: u64) -> u64 {
    (units * 1024 / 1000).clamp(2, 262_144)
}

/// Maps cpuunits to cgroup v2 cpu.weight (1..10000, 100 = default).
pub fn units_to_weight(units: u64) -> u64 {
    (units / 10).clamp(1, 10_000)
}

/// CFS quota for a cap in percent of one CPU (0 = no cap).
pub fn percent_to_quota(pct: u64) -> Option<u64> {
    (pct > 0).then(|| pct * CPU_PERIOD_US / 100)
}

/// Which freezer to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Freezer {
    /// v1 `freezer.state`.
    V1,
    /// v2 `cgroup.freeze` (works on a controller-less unified mount too).
    V2,
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| CgroupError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A `key value` line of a flat-keyed file (memory.events, pids.events, cpu.stat).
fn keyed(path: &Path, key: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The kernel's counters for one container, as far as its cgroup version has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub pids_current: Option<u64>,
    pub pids_peak: Option<u64>,
    pub pids_max: Option<u64>,
    pub pids_failcnt: Option<u64>,
    pub mem_usage: Option<u64>,
    pub mem_peak: Option<u64>,
    pub mem_limit: Option<u64>,
    pub mem_failcnt: Option<u64>,
    pub swap_usage: Option<u64>,
    pub swap_limit: Option<u64>,
    pub kmem_usage: Option<u64>,
    pub kmem_peak: Option<u64>,
    pub kmem_limit: Option<u64>,
    pub kmem_failcnt: Option<u64>,
    /// CPU time used, nanoseconds.
    pub cpu_usage_ns: Option<u64>,
}

/// "max" or a number, as cgroup files write limits.
fn limit(s: Option<String>) -> Option<u64> {
    let s = s?;
    if s == "max" {
        Some(u64::MAX)
    } else {
        s.parse().ok()
    }
}

impl Cgroups {
    fn need(&self, controller: &str, ctid: Ctid) -> Result<PathBuf, CgroupError> {
        let dir = self
            .controller_dir(controller, ctid)
            .ok_or(CgroupError::NoController(controller.to_string()))?;
        if self.version() == Version::V2 {
            let have = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
            if !have.split_whitespace().any(|c| c == controller) {
                return Err(CgroupError::NoController(controller.to_string()));
            }
        }
        Ok(dir)
    }

    /// On cgroup v2, makes the controllers available to the containers' cgroups by enabling
    /// them in the parents' `cgroup.subtree_control`. Controllers the host lacks are skipped.
    pub fn enable_v2_controllers(&self) -> Result<(), CgroupError> {
        if self.version() != Version::V2 {
            return Ok(());
        }
        let Some(h) = self.hierarchies().first() else {
            return Ok(());
        };
        let parent = h.mount.join(self.parent_name());
        let available = fs::read_to_string(h.mount.join("cgroup.controllers")).unwrap_or_default();
        for c in ["cpu", "cpuset", "memory", "pids", "io"] {
            if available.split_whitespace().any(|a| a == c) {
                for dir in [h.mount.clone(), parent.clone()] {
                    let _ = fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
                }
            }
        }
        Ok(())
    }

    pub fn set_cpu_units(&self, ctid: Ctid, units: u64) -> Result<(), CgroupError> {
        let dir = self.need("cpu", ctid)?;
        match self.version() {
            Version::V1 => write(&dir.join("cpu.shares"), &units_to_shares(units).to_string()),
            Version::V2 => write(&dir.join("cpu.weight"), &units_to_weight(units).to_string()),
        }
    }

    /// Caps CPU time at `pct` percent of one CPU (0 removes the cap).
    pub fn set_cpu_limit(&self, ctid: Ctid, pct: u64) -> Result<(), CgroupError> {
        let dir = self.need("cpu", ctid)?;
        let quota = percent_to_quota(pct);
        match self.version() {
            Version::V1 => {
                write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                write(
                    &dir.join("cpu.cfs_quota_us"),
                    &quota.map(|q| q as i64).unwrap_or(-1).to_string(),
                )
            }
            Version::V2 => write(
                &dir.join("cpu.max"),
                &format!(
                    "{} {CPU_PERIOD_US}",
                    quota.map(|q| q.to_string()).unwrap_or_else(|| "max".into())
                ),
            ),
        }
    }

    pub fn set_cpumask(&self, ctid: Ctid, cpus: &str) -> Result<(), CgroupError> {
        let dir = self.need("cpuset", ctid)?;
        // The same file name under cgroups v1 and v2.
        write(&dir.join("cpuset.cpus"), cpus)
    }

    /// RAM and swap (OpenVZ's vswap: `ram` is the memory limit, `ram + swap` the memory+swap
    /// limit). `None` leaves a value as it is; `u64::MAX` removes the limit.
    pub fn set_memory(&self, ctid: Ctid, ram: Option<u64>, swap: Option<u64>) -> Result<(), CgroupError> {
        let dir = self.need("memory", ctid)?;
        let fmt = |v: u64| {
            if v == u64::MAX {
                "max".to_string()
            } else {
                v.to_string()
            }
        };
        match self.version() {
            Version::V1 => {
                let fmt1 = |v: u64| if v == u64::MAX { "-1".to_string() } else { v.to_string() };
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                let cur_ram = read_u64(&dir.join("memory.limit_in_bytes")).unwrap_or(u64::MAX);
                let new_ram = ram.unwrap_or(cur_ram);
                let total = swap.map(|s| new_ram.saturating_add(s));
                if swap.is_some() && !memsw.exists() {
                    return Err(CgroupError::NoController(
                        "memory.memsw (swap accounting is off in this kernel)".into(),
                    ));
                }
                // The memory+swap limit must stay at or above the memory limit at every step.
                if memsw.exists() {
                    let cur_total = read_u64(&memsw).unwrap_or(u64::MAX);
                    if new_ram > cur_total || total.is_some_and(|t| t > cur_total) {
                        write(&memsw, &fmt1(total.unwrap_or(u64::MAX)))?;
                        if ram.is_some() {
                            write(&dir.join("memory.limit_in_bytes"), &fmt1(new_ram))?;
                        }
                        return Ok(());
                    }
                }
                if ram.is_some() {
                    write(&dir.join("memory.limit_in_bytes"), &fmt1(new_ram))?;
                }
                if let Some(t) = total {
                    write(&memsw, &fmt1(t))?;
                }
                Ok(())
            }
            Version::V2 => {
                if let Some(r) = ram {
                    write(&dir.join("memory.max"), &fmt(r))?;
                }
                if let Some(s) = swap {
                    write(&dir.join("memory.swap.max"), &fmt(s))?;
                }
                Ok(())
            }
        }
    }

    /// Kernel memory limit: cgroup v1 only, and only where the kernel still has it.
    pub fn set_kmem(&self, ctid: Ctid, bytes: u64) -> Result<(), CgroupError> {
        if self.version() == Version::V2 {
            return Err(CgroupError::Unsupported(
                "kmemsize is not supported on cgroup v2 (the kernel accounts kernel memory in the memory limit)".into(),
            ));
        }
        let dir = self.need("memory", ctid)?;
        let f = dir.join("memory.kmem.limit_in_bytes");
        if !f.exists() {
            return Err(CgroupError::Unsupported("kmemsize is not supported by this kernel (memory.kmem.limit_in_bytes is gone; kernel memory counts toward --ram)".into()));
        }
        write(&f, &bytes.to_string())
    }

    pub fn set_pids_max(&self, ctid: Ctid, n: Option<u64>) -> Result<(), CgroupError> {
        let dir = self.need("pids", ctid)?;
        write(
            &dir.join("pids.max"),
            &n.map(|n| n.to_string()).unwrap_or_else(|| "max".into()),
        )
    }

    /// Reads the counters the kernel keeps for the container.
    pub fn counters(&self, ctid: Ctid) -> Counters {
        let mut c = Counters::default();
        let v2 = self.version() == Version::V2;
        if let Some(d) = self.controller_dir("pids", ctid) {
            c.pids_current = read_u64(&d.join("pids.current"));
            c.pids_peak = read_u64(&d.join("pids.peak"));
            c.pids_max = limit(
                fs::read_to_string(d.join("pids.max"))
                    .ok()
                    .map(|s| s.trim().to_string()),
            );
            c.pids_failcnt = keyed(&d.join("pids.events"), "max");
        }
        if let Some(d) = self.controller_dir("memory", ctid) {
            if v2 {
                c.mem_usage = read_u64(&d.join("memory.current"));
                c.mem_peak = read_u64(&d.join("memory.peak"));
                c.mem_limit = limit(
                    fs::read_to_string(d.join("memory.max"))
                        .ok()
                        .map(|s| s.trim().to_string()),
                );
                c.mem_failcnt = keyed(&d.join("memory.events"), "max");
                c.swap_usage = read_u64(&d.join("memory.swap.current"));
                c.swap_limit = limit(
                    fs::read_to_string(d.join("memory.swap.max"))
                        .ok()
                        .map(|s| s.trim().to_string()),
                );
            } else {
                c.mem_usage = read_u64(&d.join("memory.usage_in_bytes"));
                c.mem_peak = read_u64(&d.join("memory.max_usage_in_bytes"));
                c.mem_limit = read_u64(&d.join("memory.limit_in_bytes"));
                // Times the limit refused memory: failed charges against the memory or the
                // memory+swap counter, and OOM kills (recent kernels kill rather than fail a
                // charge, leaving both failcnt files at 0).
                let parts = [
                    read_u64(&d.join("memory.failcnt")),
                    read_u64(&d.join("memory.memsw.failcnt")),
                    keyed(&d.join("memory.oom_control"), "oom_kill"),
                ];
                c.mem_failcnt = parts.iter().any(Option::is_some).then(|| parts.iter().flatten().sum());
                if let (Some(sw), Some(m)) = (read_u64(&d.join("memory.memsw.usage_in_bytes")), c.mem_usage) {
                    c.swap_usage = Some(sw.saturating_sub(m));
                }
                if let (Some(sw), Some(m)) = (read_u64(&d.join("memory.memsw.limit_in_bytes")), c.mem_limit) {
                    c.swap_limit = Some(sw.saturating_sub(m));
                }
                c.kmem_usage = read_u64(&d.join("memory.kmem.usage_in_bytes"));
                c.kmem_peak = read_u64(&d.join("memory.kmem.max_usage_in_bytes"));
                c.kmem_limit = read_u64(&d.join("memory.kmem.limit_in_bytes"));
                c.kmem_failcnt = read_u64(&d.join("memory.kmem.failcnt"));
            }
        }
        if v2 {
            if let Some(d) = self.controller_dir("cpu", ctid) {
                c.cpu_usage_ns = keyed(&d.join("cpu.stat"), "usage_usec").map(|u| u * 1000);
            }
        } else if let Some(d) = self.controller_dir("cpuacct", ctid) {
            c.cpu_usage_ns = read_u64(&d.join("cpuacct.usage"));
        }
        c
    }

    /// Freezers this host offers for the container, preferred first.
    pub fn freezers(&self, ctid: Ctid) -> Vec<Freezer> {
        let mut out = Vec::new();
        for h in self.hierarchies() {
            if !h.v2 && h.controllers.iter().any(|c| c == "freezer") {
                out.push(Freezer::V1);
            }
        }
        for h in self.hierarchies() {
            if h.v2 && self.dir(h, ctid).join("cgroup.freeze").exists() {
                out.push(Freezer::V2);
            }
        }
        out
    }

    /// The cgroup directory whose freezer `which` freezes the container (what CRIU's
    /// `freeze_cgroup` option names).
    pub fn freezer_dir(&self, ctid: Ctid, which: Freezer) -> Result<PathBuf, CgroupError> {
        self.hierarchies()
            .iter()
            .find(|h| match which {
                Freezer::V1 => !h.v2 && h.controllers.iter().any(|c| c == "freezer"),
                Freezer::V2 => h.v2,
            })
            .map(|h| self.dir(h, ctid))
            .ok_or_else(|| CgroupError::NoController(format!("{which:?} freezer")))
    }

    /// Is the container frozen (by this freezer)?
    pub fn is_frozen(&self, ctid: Ctid, which: Freezer) -> Result<bool, CgroupError> {
        let d = self.freezer_dir(ctid, which)?;
        Ok(match which {
            Freezer::V1 => read(&d.join("freezer.state"))? == "FROZEN",
            Freezer::V2 => keyed(&d.join("cgroup.events"), "frozen") == Some(1),
        })
    }

    /// Freezes every process of the container and waits until the kernel reports it frozen.
    /// On timeout the container is thawed again and an error returned.
    pub fn freeze(&self, ctid: Ctid, which: Freezer, timeout: Duration) -> Result<(), CgroupError> {
        let d = self.freezer_dir(ctid, which)?;
        match which {
            Freezer::V1 => write(&d.join("freezer.state"), "FROZEN")?,
            Freezer::V2 => write(&d.join("cgroup.freeze"), "1")?,
        }
        let start = Instant::now();
        loop {
            if self.is_frozen(ctid, which)? {
                return Ok(());
            }
            if start.elapsed() > timeout {
                let _ = self.thaw(ctid, which);
                return Err(CgroupError::FreezeTimeout {
                    path: d,
                    waited: timeout,
                });
            }
            if which == Freezer::V1 {
                // A v1 freeze that stalls in FREEZING is retried by writing FROZEN again.
                let _ = fs::write(d.join("freezer.state"), "FROZEN");
            }
            sleep(Duration::from_millis(5));
        }
    }

    pub fn thaw(&self, ctid: Ctid, which: Freezer) -> Result<(), CgroupError> {
        let d = self.freezer_dir(ctid, which)?;
        match which {
            Freezer::V1 => write(&d.join("freezer.state"), "THAWED"),
            Freezer::V2 => write(&d.join("cgroup.freeze"), "0"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_mapping() {
        assert_eq!(units_to_shares(1000), 1024);
        assert_eq!(units_to_shares(8), 8);
        assert_eq!(units_to_shares(500_000), 262_144);
        assert_eq!(units_to_weight(1000), 100);
        assert_eq!(units_to_weight(8), 1);
        assert_eq!(units_to_weight(500_000), 10_000);
        assert_eq!(percent_to_quota(20), Some(20_000));
        assert_eq!(percent_to_quota(250), Some(250_000));
        assert_eq!(percent_to_quota(0), None);
    }

    fn fixture(v2: bool) -> (tempfile::TempDir, Cgroups, Ctid) {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().to_str().unwrap().to_string();
        let id = Ctid::new(101).unwrap();
        let info = if v2 {
            format!("1 0 0:1 / {m}/unified rw - cgroup2 cgroup2 rw\n")
        } else {
            ["cpu", "cpuacct", "memory", "pids", "freezer"]
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{i} 0 0:{i} / {m}/{c} rw - cgroup cgroup rw,{c}\n"))
                .collect()
        };
        let cg = Cgroups::from_mountinfo(&info, "ferry").unwrap();
        for dir in cg.dirs(id) {
            fs::create_dir_all(&dir).unwrap();
        }
        if v2 {
            fs::write(cg.dirs(id)[0].join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        }
        (d, cg, id)
    }

    #[test]
    fn v1_files() {
        let (_d, cg, id) = fixture(false);
        let dir = |c: &str| cg.controller_dir(c, id).unwrap();
        cg.set_cpu_units(id, 3000).unwrap();
        assert_eq!(fs::read_to_string(dir("cpu").join("cpu.shares")).unwrap(), "3072");
        cg.set_cpu_limit(id, 20).unwrap();
        assert_eq!(
            fs::read_to_string(dir("cpu").join("cpu.cfs_quota_us")).unwrap(),
            "20000"
        );
        cg.set_cpu_limit(id, 0).unwrap();
        assert_eq!(fs::read_to_string(dir("cpu").join("cpu.cfs_quota_us")).unwrap(), "-1");
        cg.set_pids_max(id, Some(50)).unwrap();
        assert_eq!(fs::read_to_string(dir("pids").join("pids.max")).unwrap(), "50");
        // No memsw file: swap needs swap accounting, and the error says so.
        assert!(matches!(
            cg.set_memory(id, Some(1 << 20), Some(1 << 20)),
            Err(CgroupError::NoController(_))
        ));
        cg.set_memory(id, Some(64 << 20), None).unwrap();
        assert_eq!(
            fs::read_to_string(dir("memory").join("memory.limit_in_bytes")).unwrap(),
            (64u64 << 20).to_string()
        );
        // With memsw, raising RAM above the current memory+swap limit raises that first.
        fs::write(
            dir("memory").join("memory.memsw.limit_in_bytes"),
            (64u64 << 20).to_string(),
        )
        .unwrap();
        cg.set_memory(id, Some(128 << 20), Some(32 << 20)).unwrap();
        assert_eq!(
            fs::read_to_string(dir("memory").join("memory.memsw.limit_in_bytes")).unwrap(),
            (160u64 << 20).to_string()
        );
        assert_eq!(
            fs::read_to_string(dir("memory").join("memory.limit_in_bytes")).unwrap(),
            (128u64 << 20).to_string()
        );
        assert!(matches!(cg.set_kmem(id, 1 << 20), Err(CgroupError::Unsupported(_))));
        fs::write(dir("pids").join("pids.current"), "7\n").unwrap();
        fs::write(dir("pids").join("pids.events"), "max 3\n").unwrap();
        fs::write(dir("memory").join("memory.failcnt"), "2\n").unwrap();
        fs::write(dir("cpuacct").join("cpuacct.usage"), "123456\n").unwrap();
        let c = cg.counters(id);
        assert_eq!(
            (
                c.pids_current,
                c.pids_max,
                c.pids_failcnt,
                c.mem_failcnt,
                c.cpu_usage_ns
            ),
            (Some(7), Some(50), Some(3), Some(2), Some(123456))
        );
        // Freezer: a plain file reads back what was written, as a kernel that froze at once.
        assert_eq!(cg.freezers(id), vec![Freezer::V1]);
        cg.freeze(id, Freezer::V1, Duration::from_millis(30)).unwrap();
        assert!(cg.is_frozen(id, Freezer::V1).unwrap());
        cg.thaw(id, Freezer::V1).unwrap();
        assert_eq!(
            fs::read_to_string(dir("freezer").join("freezer.state")).unwrap(),
            "THAWED"
        );
    }

    #[test]
    fn v2_files() {
        let (_d, cg, id) = fixture(true);
        let dir = cg.dirs(id)[0].clone();
        cg.set_cpu_units(id, 3000).unwrap();
        assert_eq!(fs::read_to_string(dir.join("cpu.weight")).unwrap(), "300");
        cg.set_cpu_limit(id, 150).unwrap();
        assert_eq!(fs::read_to_string(dir.join("cpu.max")).unwrap(), "150000 100000");
        cg.set_cpu_limit(id, 0).unwrap();
        assert_eq!(fs::read_to_string(dir.join("cpu.max")).unwrap(), "max 100000");
        cg.set_memory(id, Some(256 << 20), Some(0)).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("memory.max")).unwrap(),
            (256u64 << 20).to_string()
        );
        assert_eq!(fs::read_to_string(dir.join("memory.swap.max")).unwrap(), "0");
        cg.set_pids_max(id, None).unwrap();
        assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap(), "max");
        assert!(matches!(cg.set_kmem(id, 1), Err(CgroupError::Unsupported(m)) if m.contains("cgroup v2")));
        assert!(
            matches!(cg.set_cpumask(id, "0"), Err(CgroupError::NoController(_))),
            "cpuset is not in cgroup.controllers"
        );
        fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 4\noom 1\n").unwrap();
        fs::write(dir.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
        let c = cg.counters(id);
        assert_eq!(
            (c.mem_failcnt, c.cpu_usage_ns, c.mem_limit),
            (Some(4), Some(1_500_000), Some(256 << 20))
        );
        // cgroup.freeze present: the v2 freezer is offered. A kernel that never reports frozen
        // makes freeze time out and thaw again.
        fs::write(dir.join("cgroup.freeze"), "0").unwrap();
        fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert_eq!(cg.freezers(id), vec![Freezer::V2]);
        assert!(matches!(
            cg.freeze(id, Freezer::V2, Duration::from_millis(30)),
            Err(CgroupError::FreezeTimeout { .. })
        ));
        assert_eq!(fs::read_to_string(dir.join("cgroup.freeze")).unwrap(), "0");
        fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        cg.freeze(id, Freezer::V2, Duration::from_millis(100)).unwrap();
        assert_eq!(fs::read_to_string(dir.join("cgroup.freeze")).unwrap(), "1");
        cg.thaw(id, Freezer::V2).unwrap();
        assert_eq!(fs::read_to_string(dir.join("cgroup.freeze")).unwrap(), "0");
    }
}
