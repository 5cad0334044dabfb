//! OpenVZ-style configuration files: `KEY="value"` lines, comments and blank lines.
//!
//! A file is kept as its lines, so rewriting it preserves comments, unknown keys and their
//! order; only the lines of keys that changed are rewritten. Writes are atomic.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::fsutil::write_atomic;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}:{line}: {what}; expected KEY=\"value\"")]
    Malformed {
        path: PathBuf,
        line: usize,
        what: &'static str,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "value for {key} contains a double quote, a backslash or a line break, which a configuration file cannot hold"
    )]
    BadValue { key: String },
    #[error("{key} is not a valid configuration key (letters, digits and '_', not starting with a digit)")]
    BadKey { key: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// A comment, a blank line: kept as written.
    Other(String),
    /// `KEY="value"`; `raw` is the line as read, rewritten only when the value changes.
    Var { key: String, value: String, raw: String },
}

/// A parsed configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    lines: Vec<Line>,
}

fn valid_key(k: &str) -> bool {
    let mut b = k.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn valid_value(v: &str) -> bool {
    !v.contains(['"', '\\', '\n', '\r', '\0'])
}

impl Config {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses text; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let mut lines = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let bad = |what| ConfigError::Malformed {
                path: origin.to_path_buf(),
                line: i + 1,
                what,
            };
            let t = raw.trim();
            if t.is_empty() || t.starts_with('#') {
                lines.push(Line::Other(raw.to_string()));
                continue;
            }
            let (key, rest) = t.split_once('=').ok_or_else(|| bad("no '=' on this line"))?;
            let key = key.trim();
            if !valid_key(key) {
                return Err(bad("invalid key"));
            }
            let rest = rest.trim();
            let value = if let Some(r) = rest.strip_prefix('"') {
                let end = r.find('"').ok_or_else(|| bad("unterminated double quote"))?;
                let after = r[end + 1..].trim();
                if !(after.is_empty() || after.starts_with('#')) {
                    return Err(bad("text after the closing quote"));
                }
                r[..end].to_string()
            } else if let Some(r) = rest.strip_prefix('\'') {
                let end = r.find('\'').ok_or_else(|| bad("unterminated single quote"))?;
                let after = r[end + 1..].trim();
                if !(after.is_empty() || after.starts_with('#')) {
                    return Err(bad("text after the closing quote"));
                }
                r[..end].to_string()
            } else {
                let v = rest.split('#').next().unwrap_or("").trim();
                if v.contains(char::is_whitespace) {
                    return Err(bad("unquoted value with spaces"));
                }
                if v.contains(['"', '\'']) {
                    return Err(bad("stray quote"));
                }
                v.to_string()
            };
            lines.push(Line::Var {
                key: key.to_string(),
                value,
                raw: raw.to_string(),
            });
        }
        Ok(Self { lines })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Loads a file, or an empty configuration if it does not exist.
    pub fn load_or_default(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::new()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The value of a key (the last assignment wins, as in a shell).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines.iter().rev().find_map(|l| match l {
            Line::Var { key: k, value, .. } if k == key => Some(value.as_str()),
            _ => None,
        })
    }

    /// Sets a key: the last line that assigns it is rewritten in place, or a line is appended.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        if !valid_key(key) {
            return Err(ConfigError::BadKey { key: key.to_string() });
        }
        if !valid_value(value) {
            return Err(ConfigError::BadValue { key: key.to_string() });
        }
        let rendered = format!("{key}=\"{value}\"");
        let pos = self
            .lines
            .iter()
            .rposition(|l| matches!(l, Line::Var { key: k, .. } if k == key));
        match pos {
            Some(i) => {
                if let Line::Var { value: v, .. } = &self.lines[i] {
                    if v == value {
                        return Ok(());
                    }
                }
                self.lines[i] = Line::Var {
                    key: key.to_string(),
                    value: value.to_string(),
                    raw: rendered,
                };
            }
            None => self.lines.push(Line::Var {
                key: key.to_string(),
                value: value.to_string(),
                raw: rendered,
            }),
        }
        Ok(())
    }

    /// Removes every assignment of a key.
    pub fn unset(&mut self, key: &str) {
        self.lines
            .retain(|l| !matches!(l, Line::Var { key: k, .. } if k == key));
    }

    /// All keys with their effective values.
    pub fn vars(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for l in &self.lines {
            if let Line::Var { key, value, .. } = l {
                m.insert(key.clone(), value.clone());
            }
        }
        m
    }

    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        write_atomic(path, self.to_string().as_bytes(), 0o644).map_err(|source| ConfigError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            match l {
                Line::Other(s) => writeln!(f, "{s}")?,
                Line::Var { raw, .. } => writeln!(f, "{raw}")?,
            }
        }
        Ok(())
    }
}

/// Expands `$VEID`, `${VEID}`, `$CTID` and `${CTID}` in a configured path.
pub fn expand_veid(value: &str, ctid: crate::ctid::Ctid) -> String {
    let id = ctid.to_string();
    value
        .replace("${VEID}", &id)
        .replace("${CTID}", &id)
        .replace("$VEID", &id)
        .replace("$CTID", &id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Global parameters\nVIRTUOZZO=yes\n\n# comment kept\nVE_ROOT=\"/vz/root/$VEID\"   # trailing comment\nHOSTNAME='ct101'\nUNKNOWN_KEY=\"keep me\"\n";

    #[test]
    fn parses_all_forms() {
        let c = Config::parse(SAMPLE, Path::new("t.conf")).unwrap();
        assert_eq!(c.get("VIRTUOZZO"), Some("yes"));
        assert_eq!(c.get("VE_ROOT"), Some("/vz/root/$VEID"));
        assert_eq!(c.get("HOSTNAME"), Some("ct101"));
        assert_eq!(c.get("UNKNOWN_KEY"), Some("keep me"));
        assert_eq!(c.get("MISSING"), None);
    }

    #[test]
    fn round_trip_is_byte_identical() {
        let c = Config::parse(SAMPLE, Path::new("t.conf")).unwrap();
        assert_eq!(c.to_string(), SAMPLE);
    }

    #[test]
    fn set_rewrites_in_place_and_keeps_the_rest() {
        let mut c = Config::parse(SAMPLE, Path::new("t.conf")).unwrap();
        c.set("HOSTNAME", "web").unwrap();
        c.set("NAME", "web1").unwrap();
        let out = c.to_string();
        assert!(out.contains("# comment kept\n"));
        assert!(out.contains("UNKNOWN_KEY=\"keep me\"\n"));
        assert!(out.contains("HOSTNAME=\"web\"\n"));
        assert!(out.ends_with("NAME=\"web1\"\n"));
        assert!(
            out.find("HOSTNAME").unwrap() < out.find("UNKNOWN_KEY").unwrap(),
            "order changed"
        );
        let again = Config::parse(&out, Path::new("t.conf")).unwrap();
        assert_eq!(again.get("HOSTNAME"), Some("web"));
    }

    #[test]
    fn setting_an_unchanged_value_keeps_the_line() {
        let mut c = Config::parse(SAMPLE, Path::new("t.conf")).unwrap();
        c.set("VE_ROOT", "/vz/root/$VEID").unwrap();
        assert_eq!(c.to_string(), SAMPLE);
    }

    #[test]
    fn last_assignment_wins_and_unset_removes_all() {
        let mut c = Config::parse("A=\"1\"\nA=\"2\"\n", Path::new("t")).unwrap();
        assert_eq!(c.get("A"), Some("2"));
        c.set("A", "3").unwrap();
        assert_eq!(c.to_string(), "A=\"1\"\nA=\"3\"\n");
        c.unset("A");
        assert_eq!(c.get("A"), None);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        for (text, line) in [
            ("A=\"1\"\nno equals here\n", 2),
            ("A=\"unterminated\n", 1),
            ("1A=\"x\"\n", 1),
            ("A=\"x\" junk\n", 1),
            ("\n\nA=two words\n", 3),
            ("B-C=1\n", 1),
        ] {
            match Config::parse(text, Path::new("/etc/vz/conf/101.conf")) {
                Err(e @ ConfigError::Malformed { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.starts_with(&format!("/etc/vz/conf/101.conf:{line}:")), "{msg}");
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn refuses_unstorable_values_and_keys() {
        let mut c = Config::new();
        assert!(matches!(c.set("A", "x\"y"), Err(ConfigError::BadValue { .. })));
        assert!(matches!(c.set("A", "x\ny"), Err(ConfigError::BadValue { .. })));
        assert!(matches!(c.set("a b", "x"), Err(ConfigError::BadKey { .. })));
        assert_eq!(c.to_string(), "");
    }

    #[test]
    fn save_and_load() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("101.conf");
        let mut c = Config::parse(SAMPLE, &p).unwrap();
        c.set("IP_ADDRESS", "198.18.0.10").unwrap();
        c.save(&p).unwrap();
        assert_eq!(Config::load(&p).unwrap(), c);
        assert!(Config::load(&d.path().join("missing.conf")).is_err());
        assert_eq!(
            Config::load_or_default(&d.path().join("missing.conf")).unwrap(),
            Config::new()
        );
    }

    #[test]
    fn veid_expansion() {
        let id = crate::ctid::Ctid::new(101).unwrap();
        assert_eq!(expand_veid("/vz/private/$VEID", id), "/vz/private/101");
        assert_eq!(expand_veid("/vz/root/${VEID}/x", id), "/vz/root/101/x");
    }
}
