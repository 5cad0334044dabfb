//! Scheduled checkpoints: when one is due, whether it starts a new chain, and which old ones
//! retention may delete. Pure functions over checkpoint lists, unit-tested without a kernel.

use std::collections::BTreeSet;

/// What retention needs to know of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub created: u64,
    pub level: u32,
    pub parent: Option<String>,
}

/// Is a checkpoint due, given the newest one's time?
pub fn due(newest: Option<u64>, interval: u64, now: u64) -> bool {
    newest.is_none_or(|t| now >= t.saturating_add(interval))
}

/// Should the next checkpoint start a new chain (a full copy)? Yes once the newest chain has
/// `keep` members, so that retention can drop whole old chains.
pub fn start_new_chain(list: &[Entry], keep: usize) -> bool {
    list.last().is_none_or(|e| e.level as usize + 1 >= keep.max(1))
}

/// The checkpoints retention deletes: all but the newest `keep` and everything they depend on.
pub fn prune(list: &[Entry], keep: usize) -> Vec<String> {
    let mut sorted = list.to_vec();
    sorted.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    let mut needed: BTreeSet<String> = BTreeSet::new();
    for e in sorted.iter().rev().take(keep) {
        let mut cur = Some(e.clone());
        while let Some(c) = cur {
            if !needed.insert(c.id.clone()) {
                break;
            }
            cur = c
                .parent
                .as_ref()
                .and_then(|p| sorted.iter().find(|x| &x.id == p).cloned());
        }
    }
    sorted
        .into_iter()
        .filter(|e| !needed.contains(&e.id))
        .map(|e| e.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize, keep: usize) -> Vec<Entry> {
        // What the agent produces: a new chain every `keep` checkpoints.
        let mut out: Vec<Entry> = Vec::new();
        for i in 0..n {
            let full = start_new_chain(&out, keep);
            let (level, parent) = if full {
                (0, None)
            } else {
                (out[i - 1].level + 1, Some(out[i - 1].id.clone()))
            };
            out.push(Entry {
                id: format!("c{i}"),
                created: 100 + i as u64,
                level,
                parent,
            });
        }
        out
    }

    #[test]
    fn intervals() {
        assert_eq!(crate::units::interval_secs("90"), Some(90));
        assert_eq!(crate::units::interval_secs("2s"), Some(2));
        assert_eq!(crate::units::interval_secs("1h"), Some(3600));
        assert_eq!(crate::units::interval_secs("1d"), Some(86400));
        assert_eq!(crate::units::interval_secs("1.5h"), Some(5400));
        for bad in ["", "h", "0", "0.5s", "1x", "-1h"] {
            assert_eq!(crate::units::interval_secs(bad), None, "{bad:?}");
        }
        assert!(due(None, 60, 0));
        assert!(!due(Some(100), 60, 159));
        assert!(due(Some(100), 60, 160));
    }

    #[test]
    fn chains_are_bounded_by_keep() {
        let c = chain(7, 3);
        let levels: Vec<u32> = c.iter().map(|e| e.level).collect();
        assert_eq!(levels, vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn retention_never_breaks_a_kept_chain() {
        let c = chain(5, 3);
        // Kept: c2, c3, c4. c2 needs c1 and c0. Nothing can go.
        assert_eq!(prune(&c, 3), Vec::<String>::new());
        let c = chain(6, 3);
        // Kept: c3, c4, c5, a chain of their own: c0..c2 go.
        assert_eq!(prune(&c, 3), vec!["c0", "c1", "c2"]);
        let c = chain(10, 3);
        let gone = prune(&c, 3);
        let left: Vec<&Entry> = c.iter().filter(|e| !gone.contains(&e.id)).collect();
        for e in &left {
            if let Some(p) = &e.parent {
                assert!(left.iter().any(|x| &x.id == p), "{} lost its parent {p}", e.id);
            }
        }
        assert!(left.len() >= 3 && left.len() <= 5, "{left:?}");
        assert_eq!(prune(&c, 100), Vec::<String>::new());
    }
}
