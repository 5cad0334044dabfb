//! Bounds enforced while decoding, so a hostile peer cannot make the receiver allocate without
//! bound. Every count and length a peer sends is checked against these before it is used.

/// Bytes of a frame's header: kind (u16), length (u32), CRC-32 (u32), all big-endian.
pub const HEADER_LEN: usize = 10;
/// Largest payload of one frame.
pub const MAX_FRAME: usize = 16 << 20;
/// Largest chunk of file, image or page data in one message.
pub const MAX_CHUNK: usize = 8 << 20;
/// Longest path, in bytes.
pub const MAX_PATH: usize = 4096;
/// Longest path component, in bytes.
pub const MAX_NAME: usize = 255;
/// Longest free-text string (reasons, versions, host names).
pub const MAX_STRING: usize = 4096;
/// Largest container configuration carried in a plan.
pub const MAX_CONFIG: usize = 256 << 10;
/// Largest CPU description (CRIU's `cpuinfo dump` image).
pub const MAX_CPU_DESC: usize = 64 << 10;
/// Entries in one manifest batch, paths in one deletion batch.
pub const MAX_ENTRIES: usize = 4096;
/// Extended attributes of one file, and the size of one value.
pub const MAX_XATTRS: usize = 128;
pub const MAX_XATTR_VALUE: usize = 64 << 10;
/// Pages in one batch (4 MiB of data at 4 KiB pages).
pub const MAX_PAGES: usize = 1024;
/// Size of one page (the only page size the protocol carries).
pub const PAGE_SIZE: usize = 4096;
/// Signature and delta blobs (fast_rsync's formats, opaque here).
pub const MAX_BLOB: usize = 8 << 20;
/// Capabilities: compression names offered.
pub const MAX_LIST: usize = 16;
/// Bulk streams beside the control stream (version 4).
pub const MAX_STREAMS: usize = 8;
/// Runs in one `ImageRuns` message, and the pages they describe (a run of held pages costs
/// the destination a copy, not bytes on the wire, so this bounds the work one frame asks for).
pub const MAX_RUNS: usize = 4096;
pub const MAX_RUN_PAGES: u64 = 1 << 16;
/// Largest CRIU image a peer may write (1 TiB: far beyond any container's memory).
pub const MAX_IMAGE_BYTES: u64 = 1 << 40;
