//! Any bytes in chunks of any size: the stream reader never panics and never buffers more than
//! one maximal frame plus one chunk.
#![no_main]
use libfuzzer_sys::fuzz_target;
use migrate_proto::frame::FrameReader;
use migrate_proto::limits::{HEADER_LEN, MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else { return };
    let step = step as usize % 64 + 1;
    let mut r = FrameReader::new();
    for chunk in rest.chunks(step) {
        r.push(chunk);
        loop {
            match r.next() {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(r.buffered() <= MAX_FRAME + HEADER_LEN + step);
    }
});
