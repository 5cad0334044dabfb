//! Editing CRIU's images where a restore on this host needs something else than the dump
//! recorded. Images can come from a peer (a migration) or an archive: every size is bounded
//! and anything unexpected is refused, never guessed at.

use std::io;
use std::path::Path;

use prost::Message;

const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
const USERNS_MAGIC: u32 = 0x5547_4906;
/// A user namespace image holds one entry of a few extents: a few dozen bytes.
const MAX_USERNS_IMAGE: u64 = 64 << 10;

/// images/userns.proto
#[derive(Clone, PartialEq, prost::Message)]
pub struct UidGidExtent {
    #[prost(uint32, required, tag = "1")]
    pub first: u32,
    #[prost(uint32, required, tag = "2")]
    pub lower_first: u32,
    #[prost(uint32, required, tag = "3")]
    pub count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UsernsEntry {
    #[prost(message, repeated, tag = "1")]
    pub uid_map: Vec<UidGidExtent>,
    #[prost(message, repeated, tag = "2")]
    pub gid_map: Vec<UidGidExtent>,
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// The size-prefixed entries of an image whose second magic is `magic` (`what` names it in
/// errors): everything after the two magics must be whole entries.
fn entries<'a>(bytes: &'a [u8], magic: u32, what: &str) -> io::Result<Vec<&'a [u8]>> {
    let word = |at: usize| -> io::Result<u32> {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .ok_or_else(|| bad(format!("the {what} image is truncated")))
    };
    if word(0)? != IMG_COMMON_MAGIC || word(4)? != magic {
        return Err(bad(format!("not a CRIU {what} image (magic)")));
    }
    let mut out = Vec::new();
    let mut at = 8;
    while at < bytes.len() {
        let len = word(at)? as usize;
        let body = bytes
            .get(at + 4..at + 4 + len)
            .ok_or_else(|| bad(format!("the {what} image is truncated")))?;
        out.push(body);
        at += 4 + len;
    }
    Ok(out)
}

/// Decodes a user namespace image: the two magics, then one size-prefixed entry.
pub fn decode_userns(bytes: &[u8]) -> io::Result<UsernsEntry> {
    match entries(bytes, USERNS_MAGIC, "user namespace")?.as_slice() {
        [body] => UsernsEntry::decode(*body).map_err(|e| bad(format!("the user namespace image: {e}"))),
        [] => Err(bad("the user namespace image is truncated")),
        _ => Err(bad("the user namespace image has more than one entry")),
    }
}

pub fn encode_userns(e: &UsernsEntry) -> Vec<u8> {
    let body = e.encode_to_vec();
    let mut out = Vec::with_capacity(12 + body.len());
    out.extend_from_slice(&IMG_COMMON_MAGIC.to_le_bytes());
    out.extend_from_slice(&USERNS_MAGIC.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Points a dumped user namespace at this host's ids: the one extent of each map, container
/// ids 0..`count`, now starts at host id `uid` (`gid`). A container's user namespace is made by
/// ferry with exactly that shape; any other is refused. Returns whether the images had a user
/// namespace (a dump of a container without one has no such image).
pub fn remap_userns(images: &Path, uid: u32, gid: u32, count: u32) -> io::Result<bool> {
    let mut found = None;
    for e in std::fs::read_dir(images)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("userns-") && name.ends_with(".img") {
            if found.is_some() {
                return Err(bad("the images hold more than one user namespace"));
            }
            found = Some(images.join(name.as_ref()));
        }
    }
    let Some(path) = found else { return Ok(false) };
    if std::fs::symlink_metadata(&path)?.len() > MAX_USERNS_IMAGE {
        return Err(bad(format!(
            "{} is larger than a user namespace image can be",
            path.display()
        )));
    }
    let mut entry = decode_userns(&std::fs::read(&path)?)?;
    for (map, base) in [(&mut entry.uid_map, uid), (&mut entry.gid_map, gid)] {
        match map.as_mut_slice() {
            [ext] if ext.first == 0 && ext.count == count => ext.lower_first = base,
            _ => {
                return Err(bad(format!(
                    "the dumped user namespace maps {map:?}, not container ids 0..{count} as ferry makes them"
                )))
            }
        }
    }
    crate::fsutil::write_atomic(&path, &encode_userns(&entry), 0o600)?;
    Ok(true)
}

const FILES_MAGIC: u32 = 0x5630_3138;
/// A files image of a large container holds a few hundred bytes per open file.
const MAX_FILES_IMAGE: u64 = 256 << 20;

/// images/fdinfo.proto `file_entry`, only what is read here.
#[derive(Clone, PartialEq, prost::Message)]
struct FileEntryName {
    #[prost(message, optional, tag = "3")]
    reg: Option<RegFileName>,
}

/// images/regfile.proto `reg_file_entry`, only its name.
#[derive(Clone, PartialEq, prost::Message)]
struct RegFileName {
    #[prost(string, optional, tag = "6")]
    name: Option<String>,
}

/// The link remaps a dump made (`--link-remap`): the names, in the container's file system, of
/// the `link_remap.N` hard links CRIU made beside deleted files its processes hold, read from
/// the dump's `files.img`.
pub fn link_remaps(images: &Path) -> io::Result<Vec<String>> {
    let path = images.join("files.img");
    let bytes = match std::fs::metadata(&path) {
        Ok(m) if m.len() > MAX_FILES_IMAGE => {
            return Err(bad(format!(
                "{} is larger than {MAX_FILES_IMAGE} bytes",
                path.display()
            )))
        }
        Ok(_) => std::fs::read(&path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    link_remaps_in(&bytes)
}

fn link_remaps_in(bytes: &[u8]) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for body in entries(bytes, FILES_MAGIC, "files")? {
        let e = FileEntryName::decode(body).map_err(|e| bad(format!("the files image: {e}")))?;
        if let Some(name) = e.reg.and_then(|r| r.name) {
            let base = name.rsplit('/').next().unwrap_or_default();
            if base.starts_with("link_remap.") {
                out.push(name);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uid: u32, gid: u32) -> UsernsEntry {
        let ext = |lower_first| UidGidExtent {
            first: 0,
            lower_first,
            count: 65536,
        };
        UsernsEntry {
            uid_map: vec![ext(uid)],
            gid_map: vec![ext(gid)],
        }
    }

    #[test]
    fn remaps_the_one_extent_and_keeps_the_framing() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("userns-13.img"),
            encode_userns(&entry(1_000_000, 1_000_000)),
        )
        .unwrap();
        assert!(remap_userns(d.path(), 2_000_000, 3_000_000, 65536).unwrap());
        let got = decode_userns(&std::fs::read(d.path().join("userns-13.img")).unwrap()).unwrap();
        assert_eq!(got, entry(2_000_000, 3_000_000));
        // No user namespace image: nothing to do.
        let e = tempfile::tempdir().unwrap();
        assert!(!remap_userns(e.path(), 2_000_000, 2_000_000, 65536).unwrap());
    }

    /// The image comes from a migration's peer: whatever bytes arrive, decoding never panics,
    /// and what it accepts encodes back to the same entry. Mutations of a valid image
    /// (truncations, bit flips, random bytes), a deterministic generator, 20000 inputs.
    #[test]
    fn mutated_images_never_panic_and_what_decodes_round_trips() {
        let good = encode_userns(&entry(1_000_000, 2_000_000));
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..20_000 {
            let mut b = good.clone();
            match i % 4 {
                0 => b.truncate((next() as usize) % (good.len() + 1)),
                1 => {
                    for _ in 0..1 + next() % 4 {
                        let at = (next() as usize) % b.len();
                        b[at] ^= 1 << (next() % 8);
                    }
                }
                2 => b = (0..next() % 64).map(|_| next() as u8).collect(),
                _ => {
                    let at = 12 + (next() as usize) % (b.len() - 12);
                    b[at] = next() as u8;
                }
            }
            if let Ok(e) = decode_userns(&b) {
                assert_eq!(decode_userns(&encode_userns(&e)).unwrap(), e);
            }
        }
    }

    #[test]
    fn refuses_what_ferry_does_not_make() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("userns-1.img");
        let mut two = entry(1, 1);
        two.uid_map.push(UidGidExtent {
            first: 65536,
            lower_first: 0,
            count: 1,
        });
        for (what, bytes) in [
            ("two extents", encode_userns(&two)),
            ("bad magic", vec![0u8; 16]),
            ("truncated", encode_userns(&entry(1, 1))[..14].to_vec()),
            ("trailing", [encode_userns(&entry(1, 1)), vec![1, 2, 3]].concat()),
            ("huge", vec![0u8; (MAX_USERNS_IMAGE + 1) as usize]),
        ] {
            std::fs::write(&p, &bytes).unwrap();
            assert!(remap_userns(d.path(), 5, 5, 65536).is_err(), "{what} was accepted");
            assert_eq!(std::fs::read(&p).unwrap(), bytes, "{what}: the image was changed");
        }
        std::fs::write(&p, encode_userns(&entry(1, 1))).unwrap();
        std::fs::write(d.path().join("userns-2.img"), encode_userns(&entry(1, 1))).unwrap();
        assert!(remap_userns(d.path(), 5, 5, 65536).is_err());
    }

    #[test]
    fn link_remaps_are_read_from_the_files_image() {
        let entry = |name: &str| {
            FileEntryName {
                reg: Some(RegFileName {
                    name: Some(name.into()),
                }),
            }
            .encode_to_vec()
        };
        let mut img = Vec::new();
        img.extend_from_slice(&IMG_COMMON_MAGIC.to_le_bytes());
        img.extend_from_slice(&FILES_MAGIC.to_le_bytes());
        for e in [
            entry("/tmp/data"),
            entry("/tmp/link_remap.7"),
            FileEntryName { reg: None }.encode_to_vec(),
            entry("/var/link_remap.12"),
        ] {
            img.extend_from_slice(&(e.len() as u32).to_le_bytes());
            img.extend_from_slice(&e);
        }
        assert_eq!(
            link_remaps_in(&img).unwrap(),
            ["/tmp/link_remap.7", "/var/link_remap.12"]
        );
        // Truncated, or not a files image: refused.
        assert!(link_remaps_in(&img[..img.len() - 3]).is_err());
        assert!(link_remaps_in(&img[4..]).is_err());
        assert!(link_remaps_in(&[]).is_err());
    }
}
