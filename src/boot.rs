//! The host's boot and shutdown of containers (`vzboot`, run by `ferry.service`): which
//! containers start when the host boots and in what order, and what shutdown does to each.
//!
//! OpenVZ's rules, from ctid.conf(5): `ONBOOT="yes"` containers start at boot, highest
//! `BOOTORDER` first, those without one last; `DISABLED="yes"` ones never start (not even
//! by hand without `--force`). At shutdown every running container stops in the reverse
//! order, or, with `VE_STOP_MODE="suspend"` (the container's configuration, else vz.conf), is
//! checkpointed and marked, and the next boot resumes it from that checkpoint whatever its
//! ONBOOT (it was running).

use std::path::PathBuf;

use crate::ctid::Ctid;
use crate::host::Container;
use crate::layout::HostLayout;

/// What boot and shutdown need of one container's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    pub ctid: Ctid,
    pub onboot: bool,
    pub disabled: bool,
    /// BOOTORDER: higher starts earlier; none starts after every numbered one.
    pub bootorder: Option<u64>,
    /// The checkpoint the last shutdown suspended it to, if it did.
    pub suspended: Option<String>,
    /// VE_STOP_MODE says suspend.
    pub suspend_at_stop: bool,
}

/// A yes/no configuration value as OpenVZ writes it.
pub fn yes(v: Option<&str>) -> bool {
    matches!(v.map(str::trim), Some("yes"))
}

/// BOOTORDER: a number, or none (one that is not a number reads as none, as vzctl does, so a
/// typo never stops a boot).
pub fn bootorder(ct: &Container) -> Option<u64> {
    ct.get("BOOTORDER").and_then(|v| v.trim().parse().ok())
}

/// Where the last shutdown's suspend mark of a container lives (its checkpoint id): beside its
/// configuration, which is persistent (unlike the run directory) and read by nothing else.
pub fn suspend_mark(layout: &HostLayout, ctid: Ctid) -> PathBuf {
    layout.conf_dir().join(format!("{ctid}.suspended"))
}

impl BootEntry {
    /// Reads a container's entry (`global_stop_mode`: VE_STOP_MODE of vz.conf).
    pub fn of(ct: &Container, layout: &HostLayout, global_stop_mode: &str) -> Self {
        let mark = std::fs::read_to_string(suspend_mark(layout, ct.ctid))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        BootEntry {
            ctid: ct.ctid,
            onboot: yes(ct.get("ONBOOT")),
            disabled: yes(ct.get("DISABLED")),
            bootorder: bootorder(ct),
            suspended: mark,
            suspend_at_stop: ct.get("VE_STOP_MODE").unwrap_or(global_stop_mode).trim() == "suspend",
        }
    }
}

/// The boot's order: highest BOOTORDER first, none last, ties by CTID.
fn boot_key(e: &BootEntry) -> (std::cmp::Reverse<Option<u64>>, u32) {
    // Some(n) > None, so reversing puts the numbered ones first, highest first.
    (std::cmp::Reverse(e.bootorder), e.ctid.get())
}

/// The containers the boot brings up, in order: ONBOOT or suspended at the last shutdown, and
/// not DISABLED.
pub fn boot_plan(entries: &[BootEntry]) -> Vec<BootEntry> {
    let mut v: Vec<BootEntry> = entries
        .iter()
        .filter(|e| (e.onboot || e.suspended.is_some()) && !e.disabled)
        .cloned()
        .collect();
    v.sort_by_key(boot_key);
    v
}

/// The order shutdown stops these (running) containers in: the boot's, reversed.
pub fn shutdown_plan(entries: &[BootEntry]) -> Vec<BootEntry> {
    let mut v = entries.to_vec();
    v.sort_by_key(boot_key);
    v.reverse();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(ctid: u32, onboot: bool, bootorder: Option<u64>) -> BootEntry {
        BootEntry {
            ctid: Ctid::new(ctid).unwrap(),
            onboot,
            disabled: false,
            bootorder,
            suspended: None,
            suspend_at_stop: false,
        }
    }

    fn ids(v: &[BootEntry]) -> Vec<u32> {
        v.iter().map(|e| e.ctid.get()).collect()
    }

    #[test]
    fn boot_starts_onboot_ones_highest_order_first_and_unnumbered_last() {
        let mut all = vec![
            e(101, true, None),
            e(102, true, Some(10)),
            e(103, false, Some(99)),
            e(104, true, Some(50)),
            e(105, true, Some(10)),
            e(106, true, None),
        ];
        // Disabled: never, even ONBOOT with the highest order.
        let mut d = e(107, true, Some(1000));
        d.disabled = true;
        all.push(d);
        // Suspended at the last shutdown: resumed though not ONBOOT; disabled wins still.
        let mut s = e(108, false, Some(20));
        s.suspended = Some("20261204-120000".into());
        all.push(s);
        let mut sd = e(109, false, None);
        sd.suspended = Some("x".into());
        sd.disabled = true;
        all.push(sd);
        assert_eq!(ids(&boot_plan(&all)), [104, 108, 102, 105, 101, 106]);
        assert_eq!(ids(&shutdown_plan(&all)), [109, 106, 101, 105, 102, 108, 104, 103, 107]);
    }

    #[test]
    fn yes_is_only_yes() {
        assert!(yes(Some("yes")));
        assert!(yes(Some(" yes ")));
        for v in [None, Some("no"), Some(""), Some("YES"), Some("1")] {
            assert!(!yes(v), "{v:?}");
        }
    }
}
