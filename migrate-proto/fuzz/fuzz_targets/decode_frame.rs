//! Any bytes: decoding never panics, and whatever decodes re-encodes to a frame that decodes to
//! the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use migrate_proto::frame::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((msg, used))) = decode(data) {
        assert!(used <= data.len());
        let again = encode(&msg).expect("a decoded message re-encodes");
        let (back, _) = decode(&again).unwrap().unwrap();
        assert_eq!(back, msg);
    }
});
