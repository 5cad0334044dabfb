//! Any text as a dump's cgroup list: what is accepted is bounded, relative, made of plain
//! names, lists every parent before its children and the container's own cgroup only first,
//! with plain controller names; and it reads back the same once written.
#![no_main]
use libfuzzer_sys::fuzz_target;
use migrate_proto::cgroups::*;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(list) = parse_tree(text) {
        assert!(list.len() <= MAX_CGROUPS);
        for (i, c) in list.iter().enumerate() {
            assert!(c.controllers.len() <= MAX_CONTROLLERS);
            for n in &c.controllers {
                assert!(!n.is_empty() && n.len() <= MAX_CONTROLLER_NAME && !n.contains(['/', ' ', '\t', '\n']));
            }
            if c.path == OWN {
                assert_eq!(i, 0);
                continue;
            }
            let parts: Vec<&str> = c.path.split('/').collect();
            assert!(parts.len() <= MAX_DEPTH);
            for p in &parts {
                assert!(!p.is_empty() && *p != "." && *p != ".." && p.len() <= MAX_NAME);
            }
            if let Some((parent, _)) = c.path.rsplit_once('/') {
                assert!(list[..i].iter().any(|q| q.path == parent));
            }
        }
        assert_eq!(parse_tree(&format_tree(&list)).unwrap(), list);
    }
});
