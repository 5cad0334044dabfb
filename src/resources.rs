//! Resource limits as vzctl writes them in a container's config, with OpenVZ's keys:
//! `CPUUNITS`, `CPULIMIT` (percent of one CPU), `CPUS`, `CPUMASK`, `PHYSPAGES` and `SWAPPAGES`
//! (`barrier:limit` in 4 KiB pages; vswap uses the limit), `KMEMSIZE` (bytes), `NUMPROC`,
//! `DISKSPACE` (`soft:hard` in KiB) and `DISKINODES` (`soft:hard`).

use thiserror::Error;

use crate::cgroup::{CgroupError, Cgroups};
use crate::config::Config;
use crate::ctid::Ctid;

pub const PAGE: u64 = 4096;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResourceError {
    #[error("invalid size {0:?}: a number with an optional K, M, G or T suffix, or \"unlimited\"")]
    BadSize(String),
    #[error("invalid value {value:?} for {what}: {why}")]
    BadValue { what: String, value: String, why: String },
    #[error("{what}: the soft limit {soft} is above the hard limit {hard}")]
    SoftAboveHard { what: String, soft: String, hard: String },
}

/// Parses a size: a number with an optional K/M/G/T suffix (binary), `unit` bytes when there
/// is none (vzctl counts disk space in KiB without a suffix), or "unlimited".
pub fn parse_size(s: &str, unit: u64) -> Result<u64, ResourceError> {
    let bad = || ResourceError::BadSize(s.to_string());
    let t = s.trim();
    if t.eq_ignore_ascii_case("unlimited") {
        return Ok(u64::MAX);
    }
    let (num, mult) = match t.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'B' => 1,
                _ => return Err(bad()),
            };
            (&t[..t.len() - 1], m)
        }
        _ => (t, unit),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(bad)
}

/// Parses `SOFT[:HARD]` sizes (HARD defaults to SOFT).
pub fn parse_soft_hard(s: &str, unit: u64, what: &str) -> Result<(u64, u64), ResourceError> {
    let (a, b) = match s.split_once(':') {
        Some((a, b)) => (parse_size(a, unit)?, parse_size(b, unit)?),
        None => {
            let v = parse_size(s, unit)?;
            (v, v)
        }
    };
    if a > b {
        return Err(ResourceError::SoftAboveHard {
            what: what.into(),
            soft: a.to_string(),
            hard: b.to_string(),
        });
    }
    Ok((a, b))
}

fn fmt_pair(a: u64, b: u64) -> String {
    let f = |v: u64| {
        if v == u64::MAX {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    format!("{}:{}", f(a), f(b))
}

/// The limits a container's config sets (or, in its run state, those set live since it
/// started).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub cpuunits: Option<u64>,
    pub cpulimit: Option<u64>,
    pub cpus: Option<u64>,
    pub cpumask: Option<String>,
    /// Bytes.
    pub ram: Option<u64>,
    pub swap: Option<u64>,
    pub kmemsize: Option<u64>,
    pub numproc: Option<u64>,
    /// KiB, soft and hard.
    pub diskspace: Option<(u64, u64)>,
    pub diskinodes: Option<(u64, u64)>,
}

fn pair(config: &Config, key: &str, unit: u64) -> Result<Option<(u64, u64)>, ResourceError> {
    match config.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse_soft_hard(v, unit, key)
            .map(Some)
            .map_err(|e| ResourceError::BadValue {
                what: key.into(),
                value: v.into(),
                why: e.to_string(),
            }),
    }
}

fn number(config: &Config, key: &str) -> Result<Option<u64>, ResourceError> {
    match config.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| ResourceError::BadValue {
            what: key.into(),
            value: v.into(),
            why: "not a number".into(),
        }),
    }
}

impl Limits {
    /// The size in bytes of the image a container of the image layout gets: its DISKSPACE hard
    /// limit, which must be finite (a migration's destination and an import make it so).
    pub fn image_bytes(c: &Config) -> Result<u64, String> {
        let limits = Self::from_config(c).map_err(|e| e.to_string())?;
        match limits.diskspace {
            Some((_, hard)) if hard != u64::MAX / 1024 && hard > 0 => Ok(hard.saturating_mul(1024)),
            _ => Err("an image private area needs a finite DISKSPACE in the configuration".into()),
        }
    }

    pub fn from_config(c: &Config) -> Result<Self, ResourceError> {
        let pages = |key: &str| -> Result<Option<u64>, ResourceError> {
            Ok(pair(c, key, 1)?.map(|(_, l)| if l == u64::MAX { l } else { l.saturating_mul(PAGE) }))
        };
        Ok(Self {
            cpuunits: number(c, "CPUUNITS")?,
            cpulimit: number(c, "CPULIMIT")?,
            cpus: number(c, "CPUS")?,
            cpumask: c.get("CPUMASK").filter(|v| !v.is_empty()).map(str::to_string),
            ram: pages("PHYSPAGES")?,
            swap: pages("SWAPPAGES")?,
            kmemsize: pair(c, "KMEMSIZE", 1)?.map(|(_, l)| l),
            numproc: pair(c, "NUMPROC", 1)?.map(|(_, l)| l),
            diskspace: pair(c, "DISKSPACE", 1024)?.map(|(s, h)| (s / 1024, h / 1024)),
            diskinodes: pair(c, "DISKINODES", 1)?,
        })
    }

    /// Writes these limits into a config with OpenVZ's keys.
    pub fn store(&self, c: &mut Config) -> Result<(), crate::config::ConfigError> {
        let pages = |b: u64| if b == u64::MAX { u64::MAX } else { b.div_ceil(PAGE) };
        if let Some(v) = self.cpuunits {
            c.set("CPUUNITS", &v.to_string())?;
        }
        if let Some(v) = self.cpulimit {
            c.set("CPULIMIT", &v.to_string())?;
        }
        if let Some(v) = self.cpus {
            c.set("CPUS", &v.to_string())?;
        }
        if let Some(v) = &self.cpumask {
            c.set("CPUMASK", v)?;
        }
        if let Some(v) = self.ram {
            c.set("PHYSPAGES", &fmt_pair(0, pages(v)))?;
        }
        if let Some(v) = self.swap {
            c.set("SWAPPAGES", &fmt_pair(0, pages(v)))?;
        }
        if let Some(v) = self.kmemsize {
            c.set("KMEMSIZE", &fmt_pair(v, v))?;
        }
        if let Some(v) = self.numproc {
            c.set("NUMPROC", &fmt_pair(v, v))?;
        }
        if let Some((s, h)) = self.diskspace {
            c.set("DISKSPACE", &fmt_pair(s, h))?;
        }
        if let Some((s, h)) = self.diskinodes {
            c.set("DISKINODES", &fmt_pair(s, h))?;
        }
        Ok(())
    }

    /// Overlays the values `other` sets.
    pub fn merge(&mut self, other: &Limits) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f.clone(); } )* };
        }
        take!(cpuunits, cpulimit, cpus, cpumask, ram, swap, kmemsize, numproc, diskspace, diskinodes);
    }

    /// The CPU cap in percent of one CPU from CPULIMIT and CPUS (the tighter wins; 0 = none).
    pub fn cpu_cap(&self) -> u64 {
        let from_cpus = self.cpus.filter(|n| *n > 0).map(|n| n * 100);
        match (self.cpulimit.filter(|p| *p > 0), from_cpus) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => 0,
        }
    }

    /// Applies the cgroup part of these limits to a container's cgroup.
    pub fn apply(&self, cg: &Cgroups, ctid: Ctid) -> Result<(), CgroupError> {
        cg.enable_v2_controllers()?;
        if let Some(u) = self.cpuunits {
            cg.set_cpu_units(ctid, u)?;
        }
        if self.cpulimit.is_some() || self.cpus.is_some() {
            cg.set_cpu_limit(ctid, self.cpu_cap())?;
        }
        if let Some(m) = &self.cpumask {
            cg.set_cpumask(ctid, m)?;
        }
        if self.ram.is_some() || self.swap.is_some() {
            cg.set_memory(ctid, self.ram, self.swap)?;
        }
        if let Some(k) = self.kmemsize {
            cg.set_kmem(ctid, k)?;
        }
        if let Some(n) = self.numproc {
            cg.set_pids_max(ctid, (n != u64::MAX).then_some(n))?;
        }
        Ok(())
    }
}

/// Checks a cpumask such as "0-3,6".
pub fn validate_cpumask(s: &str) -> Result<(), ResourceError> {
    let bad = |why: &str| ResourceError::BadValue {
        what: "--cpumask".into(),
        value: s.into(),
        why: why.into(),
    };
    if s == "all" {
        return Ok(());
    }
    for part in s.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u32, u32) = (
            a.parse()
                .map_err(|_| bad("expected CPU numbers and ranges like 0-3,6"))?,
            b.parse()
                .map_err(|_| bad("expected CPU numbers and ranges like 0-3,6"))?,
        );
        if a > b {
            return Err(bad("a range runs backwards"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M", 1), Ok(512 << 20));
        assert_eq!(parse_size("1g", 1), Ok(1 << 30));
        assert_eq!(parse_size("2T", 1), Ok(2 << 40));
        assert_eq!(
            parse_size("100", 1024),
            Ok(100 * 1024),
            "bare numbers use the unit (KiB for disk)"
        );
        assert_eq!(parse_size("unlimited", 1), Ok(u64::MAX));
        for bad in ["", "-1", "1.5G", "10X", "G", "99999999999999999999", "1 G"] {
            assert!(parse_size(bad, 1).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn soft_hard() {
        assert_eq!(parse_soft_hard("1G:2G", 1024, "d"), Ok((1 << 30, 2 << 30)));
        assert_eq!(parse_soft_hard("1G", 1024, "d"), Ok((1 << 30, 1 << 30)));
        assert!(matches!(
            parse_soft_hard("2G:1G", 1024, "d"),
            Err(ResourceError::SoftAboveHard { .. })
        ));
    }

    #[test]
    fn config_round_trip_in_openvz_keys() {
        let l = Limits {
            cpuunits: Some(3000),
            cpulimit: Some(20),
            cpus: Some(2),
            cpumask: Some("0-1".into()),
            ram: Some(256 << 20),
            swap: Some(128 << 20),
            kmemsize: None,
            numproc: Some(64),
            diskspace: Some((1 << 20, 2 << 20)),
            diskinodes: Some((1000, 2000)),
        };
        let mut c = Config::new();
        l.store(&mut c).unwrap();
        assert_eq!(c.get("PHYSPAGES"), Some("0:65536"));
        assert_eq!(c.get("SWAPPAGES"), Some("0:32768"));
        assert_eq!(c.get("NUMPROC"), Some("64:64"));
        assert_eq!(c.get("DISKSPACE"), Some("1048576:2097152"));
        let back = Limits::from_config(&Config::parse(&c.to_string(), Path::new("t")).unwrap()).unwrap();
        assert_eq!(back, l);
        assert_eq!(back.cpu_cap(), 20);
        let bad = Config::parse("NUMPROC=\"many\"\n", Path::new("t")).unwrap();
        assert!(Limits::from_config(&bad).is_err());
    }

    #[test]
    fn cpu_cap_takes_the_tighter() {
        let l = Limits {
            cpulimit: Some(250),
            cpus: Some(2),
            ..Limits::default()
        };
        assert_eq!(l.cpu_cap(), 200);
        let l = Limits {
            cpus: Some(1),
            ..Limits::default()
        };
        assert_eq!(l.cpu_cap(), 100);
        assert_eq!(Limits::default().cpu_cap(), 0);
    }

    #[test]
    fn cpumasks() {
        for ok in ["0", "0-3", "0,2,4-5", "all"] {
            validate_cpumask(ok).unwrap();
        }
        for bad in ["", "a", "3-1", "0-", "-1"] {
            assert!(validate_cpumask(bad).is_err(), "{bad:?}");
        }
    }
}

/// One line of the beancounter view.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UbcRow {
    pub resource: &'static str,
    pub held: Option<u64>,
    pub maxheld: Option<u64>,
    pub barrier: Option<u64>,
    pub limit: Option<u64>,
    pub failcnt: Option<u64>,
}

/// The beancounter resources, in OpenVZ's order (cpuusage, in ms, is ferry's addition).
pub const UBC_RESOURCES: &[&str] = &[
    "kmemsize",
    "numproc",
    "physpages",
    "swappages",
    "numfile",
    "diskspace",
    "diskinodes",
    "cpuusage",
];

/// What the beancounters are made of: the kernel's cgroup counters, the configured limits,
/// the open files counted in /proc, the file system's usage (KiB, inodes).
pub fn ubc(c: &crate::cgroup::Counters, l: &Limits, numfile: Option<u64>, disk: Option<(u64, u64)>) -> Vec<UbcRow> {
    let pages = |b: Option<u64>| b.map(|v| if v == u64::MAX { v } else { v / PAGE });
    let row = |resource, held, maxheld, barrier, limit, failcnt| UbcRow {
        resource,
        held,
        maxheld,
        barrier,
        limit,
        failcnt,
    };
    vec![
        row(
            "kmemsize",
            c.kmem_usage,
            c.kmem_peak,
            c.kmem_limit.or(l.kmemsize),
            c.kmem_limit.or(l.kmemsize),
            c.kmem_failcnt,
        ),
        row(
            "numproc",
            c.pids_current,
            c.pids_peak,
            c.pids_max.or(l.numproc),
            c.pids_max.or(l.numproc),
            c.pids_failcnt,
        ),
        row(
            "physpages",
            pages(c.mem_usage),
            pages(c.mem_peak),
            Some(0),
            pages(c.mem_limit.or(l.ram)),
            c.mem_failcnt,
        ),
        row(
            "swappages",
            pages(c.swap_usage),
            None,
            Some(0),
            pages(c.swap_limit.or(l.swap)),
            None,
        ),
        row("numfile", numfile, None, None, None, None),
        row(
            "diskspace",
            disk.map(|d| d.0),
            None,
            l.diskspace.map(|d| d.0),
            l.diskspace.map(|d| d.1),
            None,
        ),
        row(
            "diskinodes",
            disk.map(|d| d.1),
            None,
            l.diskinodes.map(|d| d.0),
            l.diskinodes.map(|d| d.1),
            None,
        ),
        row(
            "cpuusage",
            c.cpu_usage_ns.map(|n| n / 1_000_000),
            None,
            None,
            None,
            None,
        ),
    ]
}

/// A number as OpenVZ printed it: unlimited as LONG_MAX, unknown as "-".
pub fn ubc_value(v: Option<u64>) -> String {
    match v {
        None => "-".into(),
        Some(u64::MAX) => i64::MAX.to_string(),
        Some(n) => n.to_string(),
    }
}

/// The text of /proc/user_beancounters for one container.
pub fn ubc_text(ctid: Ctid, rows: &[UbcRow]) -> String {
    let mut s = String::from("Version: 2.5\n");
    s.push_str(&format!(
        "{:>10}  {:<12}{:>20} {:>20} {:>20} {:>20} {:>20}\n",
        "uid", "resource", "held", "maxheld", "barrier", "limit", "failcnt"
    ));
    for (i, r) in rows.iter().enumerate() {
        let uid = if i == 0 { format!("{ctid}:") } else { String::new() };
        s.push_str(&format!(
            "{:>10}  {:<12}{:>20} {:>20} {:>20} {:>20} {:>20}\n",
            uid,
            r.resource,
            ubc_value(r.held),
            ubc_value(r.maxheld),
            ubc_value(r.barrier),
            ubc_value(r.limit),
            ubc_value(r.failcnt)
        ));
    }
    s
}

#[cfg(test)]
mod ubc_tests {
    use super::*;

    #[test]
    fn view() {
        let c = crate::cgroup::Counters {
            pids_current: Some(3),
            pids_peak: Some(9),
            pids_max: Some(64),
            pids_failcnt: Some(2),
            mem_usage: Some(8 << 20),
            mem_limit: Some(u64::MAX),
            ..Default::default()
        };
        let l = Limits {
            diskspace: Some((1000, 2000)),
            ..Default::default()
        };
        let rows = ubc(&c, &l, Some(12), Some((500, 40)));
        let np = rows.iter().find(|r| r.resource == "numproc").unwrap();
        assert_eq!(
            (np.held, np.maxheld, np.barrier, np.limit, np.failcnt),
            (Some(3), Some(9), Some(64), Some(64), Some(2))
        );
        let pp = rows.iter().find(|r| r.resource == "physpages").unwrap();
        assert_eq!((pp.held, pp.limit), (Some(2048), Some(u64::MAX)));
        let text = ubc_text(Ctid::new(101).unwrap(), &rows);
        assert!(text.starts_with("Version: 2.5\n"));
        let line = text.lines().find(|l| l.contains("numproc")).unwrap();
        assert_eq!(
            line.split_whitespace().collect::<Vec<_>>(),
            vec!["numproc", "3", "9", "64", "64", "2"]
        );
        assert!(text.lines().nth(2).unwrap().trim_start().starts_with("101:  kmemsize"));
        assert!(text.contains("9223372036854775807"), "unlimited is LONG_MAX");
    }
}
