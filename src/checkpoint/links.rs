//! Rolling a private area back in place.
//!
//! The restore extracts the checkpoint's tar archive over the private area with `--overwrite`,
//! which rewrites an existing regular file through its own inode (GNU tar's default unlinks
//! and recreates every file: a restored process then holds a new inode of a file that never
//! changed, and a hard-linked file, whose number the file system cannot hand back, visibly so).
//! Writing in place is only right where the names sharing an inode on disk are exactly the
//! names the archive links together: a file hard-linked after the checkpoint to another one
//! would otherwise take the other's content. Such names are unlinked first, and tar makes them
//! anew.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A regular file or hard link the archive holds (`tar -tv` output).
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: String,
    /// The member it is a hard link to.
    pub link_to: Option<String>,
}

/// The regular files and hard links of a `tar --quoting-style=c -tv` listing, their names
/// without the leading `./`.
pub fn parse_listing(text: &str) -> Vec<Member> {
    text.lines()
        .filter_map(|l| {
            let kind = l.chars().next()?;
            if kind != '-' && kind != 'h' {
                return None;
            }
            let (name, rest) = c_unquote(&l[l.find('"')?..])?;
            let link_to = if kind == 'h' {
                Some(c_unquote(rest.strip_prefix(" link to ")?)?.0)
            } else {
                None
            };
            Some(Member {
                name: strip_dot(name),
                link_to: link_to.map(strip_dot),
            })
        })
        .collect()
}

fn strip_dot(s: String) -> String {
    s.strip_prefix("./").map(str::to_string).unwrap_or(s)
}

/// A C-quoted string at the start of `s` (tar's `--quoting-style=c`) and what follows it.
fn c_unquote(s: &str) -> Option<(String, &str)> {
    let mut bytes = s.strip_prefix('"')?.bytes().enumerate();
    let mut out = Vec::new();
    while let Some((i, b)) = bytes.next() {
        match b {
            b'"' => {
                let rest = &s[i + 2..];
                return Some((String::from_utf8_lossy(&out).into_owned(), rest));
            }
            b'\\' => {
                let (_, e) = bytes.next()?;
                out.push(match e {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'a' => 7,
                    b'b' => 8,
                    b'f' => 12,
                    b'v' => 11,
                    b'0'..=b'7' => {
                        let mut v = u32::from(e - b'0');
                        for _ in 0..2 {
                            let (_, d) = bytes.next()?;
                            if !(b'0'..=b'7').contains(&d) {
                                return None;
                            }
                            v = v * 8 + u32::from(d - b'0');
                        }
                        u8::try_from(v).ok()?
                    }
                    b'\\' | b'"' | b'?' | b'\'' => e,
                    _ => return None,
                });
            }
            _ => out.push(b),
        }
    }
    None
}

/// Regular files below `root` with more than one name: each inode's names (relative), found
/// without following symlinks or leaving the file system.
pub fn linked_files(root: &Path) -> io::Result<Vec<(u64, Vec<String>)>> {
    let dev = std::fs::symlink_metadata(root)?.dev();
    let mut groups: HashMap<u64, (u64, Vec<String>)> = HashMap::new();
    let mut dirs = vec![String::new()];
    while let Some(rel) = dirs.pop() {
        for e in std::fs::read_dir(root.join(&rel))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let rel_e = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let md = e.metadata()?;
            if md.dev() != dev {
                continue;
            }
            if md.is_dir() {
                dirs.push(rel_e);
            } else if md.is_file() && md.nlink() > 1 {
                groups.entry(md.ino()).or_insert((md.nlink(), Vec::new())).1.push(rel_e);
            }
        }
    }
    Ok(groups.into_values().collect())
}

/// The names (of `groups`, from [`linked_files`]) that must not be written in place by an
/// extraction of `members`. An inode may keep the names of one of the archive's hard-link sets
/// when they are all there (the first such set, by name); its other archived names go. An
/// inode with a name the archive does not hold (or more links than the walk found) keeps none.
pub fn stale_links(groups: &[(u64, Vec<String>)], members: &[Member]) -> Vec<String> {
    let set_of: HashMap<&str, &str> = members
        .iter()
        .map(|m| (m.name.as_str(), m.link_to.as_deref().unwrap_or(m.name.as_str())))
        .collect();
    let mut set_size: HashMap<&str, usize> = HashMap::new();
    for s in set_of.values() {
        *set_size.entry(s).or_default() += 1;
    }
    let mut out = Vec::new();
    for (nlink, names) in groups {
        let mut archived: Vec<&String> = names.iter().filter(|n| set_of.contains_key(n.as_str())).collect();
        if archived.is_empty() {
            continue;
        }
        archived.sort();
        let mut keep = None;
        if archived.len() == names.len() && *nlink as usize == names.len() {
            let mut on_disk: HashMap<&str, usize> = HashMap::new();
            for n in &archived {
                *on_disk.entry(set_of[n.as_str()]).or_default() += 1;
            }
            keep = archived
                .iter()
                .map(|n| set_of[n.as_str()])
                .find(|s| on_disk[s] == set_size[s]);
        }
        out.extend(
            archived
                .into_iter()
                .filter(|n| Some(set_of[n.as_str()]) != keep)
                .cloned(),
        );
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_gives_files_and_hard_links() {
        let text = r#"drwxr-xr-x 0/0               0 2026-12-03 16:20 "./"
-rw-r--r-- 0/0               2 2026-12-03 16:20 "./d x/f"
hrw-r--r-- 0/0               0 2026-12-03 16:20 "./d x/g link to h" link to "./d x/f"
lrwxrwxrwx 0/0               0 2026-12-03 16:20 "./bin/sh" -> "busybox"
-rw-r--r-- 0/0               2 2026-12-03 16:20 "./odd\"name\\\n\303\251"
"#;
        assert_eq!(
            parse_listing(text),
            [
                Member {
                    name: "d x/f".into(),
                    link_to: None
                },
                Member {
                    name: "d x/g link to h".into(),
                    link_to: Some("d x/f".into())
                },
                Member {
                    name: "odd\"name\\\né".into(),
                    link_to: None
                },
            ]
        );
        // Garbage is skipped, never guessed at.
        assert!(parse_listing("-rw \"unterminated\n-rw \"bad \\9\"\nh \"a\" no link\n").is_empty());
    }

    #[test]
    fn only_names_linked_otherwise_than_in_the_archive_are_unlinked_first() {
        let m = |n: &str, l: Option<&str>| Member {
            name: n.into(),
            link_to: l.map(Into::into),
        };
        let members = [
            m("a", None),
            m("b", Some("a")),
            m("c", None),
            m("d", None),
            m("e", None),
            m("f", Some("e")),
            m("g", Some("e")),
        ];
        let g = |nlink: u64, names: &[&str]| (nlink, names.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        // a+b linked as archived: in place. d linked to c since: c stays, d anew. e+f on disk
        // but the archive links g too: anew. x+y, not archived: left alone.
        let groups = [
            g(2, &["a", "b"]),
            g(2, &["d", "c"]),
            g(2, &["e", "f"]),
            g(2, &["x", "y"]),
        ];
        assert_eq!(stale_links(&groups, &members), ["d", "e", "f"]);
        // A link outside the archive (an extra name the walk found, or a count that disagrees).
        assert_eq!(stale_links(&[g(3, &["a", "b", "z"])], &members), ["a", "b"]);
        assert_eq!(stale_links(&[g(3, &["a", "b"])], &members), ["a", "b"]);
        // c and a+b in one inode: a's set is whole, c goes.
        assert_eq!(stale_links(&[g(3, &["c", "a", "b"])], &members), ["c"]);
    }
}
