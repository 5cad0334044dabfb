//! Decoding the few CRIU images ferry reads or edits (a user namespace's maps, the names of
//! `--link-remap` links in `files.img`). Images come from a migration peer or an archive, so
//! they are hostile input: every length is checked and anything unexpected is refused. Pure
//! functions over bytes (fuzzed: fuzz/fuzz_targets/criu_images.rs); reading the files and their
//! size bounds are the caller's.

use std::io;

use prost::Message;

const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
const USERNS_MAGIC: u32 = 0x5547_4906;

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

pub fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// The size-prefixed entries of an image whose second magic is `magic` (`what` names it in
/// errors): everything after the two magics must be whole entries.
pub fn entries<'a>(bytes: &'a [u8], magic: u32, what: &str) -> io::Result<Vec<&'a [u8]>> {
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

const FILES_MAGIC: u32 = 0x5630_3138;

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

/// The `link_remap.N` names a `files.img` holds.
pub fn link_remaps_in(bytes: &[u8]) -> io::Result<Vec<String>> {
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
