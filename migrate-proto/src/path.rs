//! Paths a peer sends: relative to the container's area, normalized, no `..`, no NUL, bounded.
//! A `RelPath` cannot be constructed (or decoded) otherwise, so nothing downstream can be
//! tricked into writing outside the area.

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_NAME, MAX_PATH};
use crate::DecodeError;

/// A validated relative path: components separated by single `/`, none empty, `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelPath(String);

impl RelPath {
    pub fn new(s: impl Into<String>) -> Result<Self, DecodeError> {
        let s = s.into();
        check(&s)?;
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

fn check(s: &str) -> Result<(), DecodeError> {
    let bad = |why: &'static str| Err(DecodeError::BadPath { why });
    if s.is_empty() {
        return bad("empty");
    }
    if s.len() > MAX_PATH {
        return bad("too long");
    }
    if s.starts_with('/') {
        return bad("absolute");
    }
    if s.contains('\0') {
        return bad("contains NUL");
    }
    for c in s.split('/') {
        match c {
            "" => return bad("empty component (// or trailing /)"),
            "." => return bad("'.' component"),
            ".." => return bad("'..' component"),
            _ if c.len() > MAX_NAME => return bad("component too long"),
            _ => {}
        }
    }
    Ok(())
}

impl TryFrom<String> for RelPath {
    type Error = DecodeError;
    fn try_from(s: String) -> Result<Self, DecodeError> {
        Self::new(s)
    }
}

impl From<RelPath> for String {
    fn from(p: RelPath) -> String {
        p.0
    }
}

impl std::fmt::Display for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_normal_relative_paths() {
        for ok in ["etc/passwd", "a", "var/lib/x.y", "...", "a/..b/c..", "dir with space/f"] {
            RelPath::new(ok).unwrap();
        }
    }

    #[test]
    fn refuses_escapes_and_oddities() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a/..",
            "./a",
            "a/./b",
            "a//b",
            "a/",
            "a\0b",
            &"x".repeat(256),
            &"a/".repeat(2049),
        ] {
            assert!(RelPath::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn decoding_enforces_the_rules() {
        let bytes = postcard::to_allocvec(&"../../etc/shadow".to_string()).unwrap();
        assert!(postcard::from_bytes::<RelPath>(&bytes).is_err());
        let bytes = postcard::to_allocvec(&"etc/shadow".to_string()).unwrap();
        assert_eq!(postcard::from_bytes::<RelPath>(&bytes).unwrap().as_str(), "etc/shadow");
    }
}
