//! Any bytes as a CRIU image a peer or an archive could hand ferry: nothing panics, a user
//! namespace image that decodes encodes back to the same maps, and only `link_remap.N` names come
//! out of a files image.
#![no_main]
use libfuzzer_sys::fuzz_target;
use migrate_proto::criu_images::{decode_userns, encode_userns, link_remaps_in};

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = decode_userns(data) {
        assert_eq!(decode_userns(&encode_userns(&e)).unwrap(), e);
    }
    if let Ok(names) = link_remaps_in(data) {
        for n in names {
            assert!(n.rsplit('/').next().unwrap_or_default().starts_with("link_remap."));
        }
    }
});
