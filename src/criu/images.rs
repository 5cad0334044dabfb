//! Editing CRIU's images where a restore on this host needs something else than the dump
//! recorded. Images can come from a peer (a migration) or an archive: every size is bounded
//! and anything unexpected is refused, never guessed at.

use std::io;
use std::path::Path;

/// A user namespace image holds one entry of a few extents: a few dozen bytes.
const MAX_USERNS_IMAGE: u64 = 64 << 10;

use migrate_proto::criu_images::{bad, link_remaps_in};
pub use migrate_proto::criu_images::{decode_userns, encode_userns, UidGidExtent, UsernsEntry};

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

/// A files image of a large container holds a few hundred bytes per open file.
const MAX_FILES_IMAGE: u64 = 256 << 20;

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
}
