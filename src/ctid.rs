//! Container ids (numeric, as in OpenVZ) and names (aliases usable wherever a CTID is).

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// A container id: a positive number. 0 is the host in OpenVZ and is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Ctid(u32);

/// The largest CTID accepted (OpenVZ's limit: a signed 32-bit id).
pub const MAX_CTID: u32 = i32::MAX as u32;
/// The longest container name accepted.
pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdError {
    #[error("invalid CTID {0:?}: a CTID is a number from 1 to {MAX_CTID}")]
    BadCtid(String),
    #[error("invalid container name {0:?}: use 1 to {MAX_NAME_LEN} letters, digits, '.', '-' or '_', not all digits, not starting with '-' or '.'")]
    BadName(String),
}

impl Ctid {
    pub fn new(n: u32) -> Result<Self, IdError> {
        if n == 0 || n > MAX_CTID {
            return Err(IdError::BadCtid(n.to_string()));
        }
        Ok(Self(n))
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Ctid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Ctid {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::BadCtid(s.to_string()));
        }
        let n: u64 = s.parse().map_err(|_| IdError::BadCtid(s.to_string()))?;
        if n == 0 || n > MAX_CTID as u64 {
            return Err(IdError::BadCtid(s.to_string()));
        }
        Ok(Self(n as u32))
    }
}

/// Checks a container name (the `NAME` key, `--name`).
pub fn validate_name(name: &str) -> Result<(), IdError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        && !name.bytes().all(|b| b.is_ascii_digit())
        && !name.starts_with('-')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(IdError::BadName(name.to_string()))
    }
}

/// What the user typed where a container is expected: a CTID or a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtRef {
    Id(Ctid),
    Name(String),
}

impl FromStr for CtRef {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(CtRef::Id(s.parse()?));
        }
        validate_name(s).map_err(|_| IdError::BadCtid(s.to_string()))?;
        Ok(CtRef::Name(s.to_string()))
    }
}

impl fmt::Display for CtRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtRef::Id(id) => write!(f, "{id}"),
            CtRef::Name(n) => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctid_parsing() {
        assert_eq!("101".parse::<Ctid>().unwrap().get(), 101);
        assert_eq!("2147483647".parse::<Ctid>().unwrap().get(), MAX_CTID);
        for bad in ["0", "", "-1", "+5", "2147483648", "99999999999", "1a", " 101", "1.5"] {
            assert!(bad.parse::<Ctid>().is_err(), "{bad:?} accepted");
        }
        assert!(Ctid::new(0).is_err());
    }

    #[test]
    fn names() {
        for ok in ["web", "web-01", "a.b_c", "x1"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "123", "-x", ".x", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ctref() {
        assert_eq!("101".parse::<CtRef>().unwrap(), CtRef::Id(Ctid::new(101).unwrap()));
        assert_eq!("web".parse::<CtRef>().unwrap(), CtRef::Name("web".into()));
        assert!("0".parse::<CtRef>().is_err());
        assert!("a/b".parse::<CtRef>().is_err());
    }
}
