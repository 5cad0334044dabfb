//! Any bytes as a postcard string: a path that decodes is relative, normalized and bounded.
#![no_main]
use libfuzzer_sys::fuzz_target;
use migrate_proto::limits::{MAX_NAME, MAX_PATH};
use migrate_proto::path::RelPath;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = postcard::from_bytes::<RelPath>(data) {
        let s = p.as_str();
        assert!(!s.is_empty() && s.len() <= MAX_PATH && !s.starts_with('/') && !s.contains('\0'));
        for c in p.components() {
            assert!(!c.is_empty() && c != "." && c != ".." && c.len() <= MAX_NAME);
        }
    }
});
