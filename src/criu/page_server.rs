//! A page server for CRIU's dump: given a connected socket (`ps.fd` in the request, CRIU's
//! `--page-server --ps-socket FD`), CRIU sends every run of dumped pages over it instead of
//! writing pages images. ferry serves it itself so that a migration sees each page as CRIU
//! dumps it and sends it on at once (most as a reference to content the destination already
//! holds), instead of CRIU writing the container's whole memory to a file that is then read
//! back while the container is frozen.
//!
//! The protocol (CRIU's `criu/page-xfer.c`): a stream of fixed headers `{u32 cmd; u64
//! nr_pages; u64 vaddr; u64 dst_id}` (native byte order, C layout: 32 bytes with the padding
//! after `cmd`), the command's flags in the high 16 bits of `cmd`. `OPEN2` opens the pagemap
//! named by `dst_id` (type in the low 8 bits: 1 a process's, 2 shared memory's; the image id
//! above) and wants one byte back, whether a parent image exists (never, here); `ADD_F` adds an
//! entry with its flags, followed by its pages' data when the flags say `PE_PRESENT`;
//! `PARENT` wants an `int` back (0); `CLOSE` and `FORCE_CLOSE` end the session and want an
//! `int32` status back (0).
//!
//! The pagemap images are written here as CRIU writes them (the common and pagemap magics, then
//! length-prefixed protobuf entries: a `pagemap_head` naming the pages image, one
//! `pagemap_entry` per run); the pages go to a [`PageSink`], which names where each run lands in
//! its pages image (`pages-N.img`, pages back to back in pagemap order).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use prost::Message as _;
use thiserror::Error;

/// Pages are in the pages image (`PE_PRESENT`), in a parent's (`PE_PARENT`), or may be
/// restored lazily (`PE_LAZY`): CRIU's `pagemap.h`.
pub const PE_PARENT: u32 = 1 << 0;
pub const PE_LAZY: u32 = 1 << 1;
pub const PE_PRESENT: u32 = 1 << 2;

const PAGE_SIZE: usize = 4096;
/// Pages handed to the sink at once.
const RUN_PAGES: usize = 1024;
/// Largest run one header may announce (CRIU sends one pipe buffer's worth at most; this only
/// bounds what a broken stream could make us read).
const MAX_RUN_PAGES: u64 = 1 << 32;

const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
const PAGEMAP_MAGIC: u32 = 0x5608_4025;

const PS_IOV_ADD: u32 = 1;
const PS_IOV_HOLE: u32 = 2;
const PS_IOV_OPEN: u32 = 3;
const PS_IOV_OPEN2: u32 = 4;
const PS_IOV_PARENT: u32 = 5;
const PS_IOV_ADD_F: u32 = 6;
const PS_IOV_CLOSE: u32 = 0x1023;
const PS_IOV_FORCE_CLOSE: u32 = 0x1024;
const PS_TYPE_PID: u64 = 1;
const PS_TYPE_SHMEM: u64 = 2;
const HEADER: usize = 32;

#[derive(Debug, Error)]
pub enum PageServerError {
    #[error("reading from CRIU's page-server connection")]
    Read(#[source] io::Error),
    #[error("answering CRIU on the page-server connection")]
    Answer(#[source] io::Error),
    #[error("CRIU closed the page-server connection before ending the session")]
    Eof,
    #[error("CRIU sent page-server command {cmd:#x}, which ferry does not serve")]
    Command { cmd: u32 },
    #[error("CRIU sent pages before opening a pagemap")]
    NotOpen,
    #[error("CRIU named pagemap {dst_id:#x}, of a type ferry does not know")]
    Type { dst_id: u64 },
    #[error("CRIU announced a run of {0} pages")]
    Run(u64),
    #[error("writing pagemap image {path}")]
    Image {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("passing pages on")]
    Sink(#[source] io::Error),
}

/// Where the dumped pages go.
pub trait PageSink {
    /// A pages image begins (it exists even if no page lands in it).
    fn open(&mut self, image: &str) -> io::Result<()>;
    /// `data` (whole pages) lands in `image` at `offset`.
    fn pages(&mut self, image: &str, offset: u64, data: &[u8]) -> io::Result<()>;
}

/// What a session wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Served {
    /// The pagemap images written into the images directory, and the pages images named.
    pub pagemaps: Vec<String>,
    pub pages_images: Vec<String>,
    /// Pages received.
    pub pages: u64,
}

/// `pagemap_head` of CRIU's `pagemap.proto`.
#[derive(Clone, PartialEq, prost::Message)]
struct PagemapHead {
    #[prost(uint32, required, tag = "1")]
    pages_id: u32,
}

/// `pagemap_entry`: CRIU >= 3.17 writes the page count as the 64-bit `nr_pages` and leaves the
/// old 32-bit field at 0.
#[derive(Clone, PartialEq, prost::Message)]
struct PagemapEntry {
    #[prost(uint64, required, tag = "1")]
    vaddr: u64,
    #[prost(uint32, required, tag = "2")]
    compat_nr_pages: u32,
    #[prost(bool, optional, tag = "3")]
    in_parent: Option<bool>,
    #[prost(uint32, optional, tag = "4")]
    flags: Option<u32>,
    #[prost(uint64, optional, tag = "5")]
    nr_pages: Option<u64>,
}

/// A pagemap image being written.
struct Pagemap {
    dst_id: u64,
    path: PathBuf,
    out: io::BufWriter<std::fs::File>,
    pages_image: String,
    /// Where the next present page lands in the pages image.
    offset: u64,
}

impl Pagemap {
    fn entry(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(&(bytes.len() as u32).to_le_bytes())?;
        self.out.write_all(bytes)
    }
}

/// The pagemap image's file name for a `dst_id`.
fn pagemap_name(dst_id: u64) -> Result<String, PageServerError> {
    let id = dst_id >> 8;
    match dst_id & 0xff {
        PS_TYPE_PID => Ok(format!("pagemap-{id}.img")),
        PS_TYPE_SHMEM => Ok(format!("pagemap-shmem-{id}.img")),
        _ => Err(PageServerError::Type { dst_id }),
    }
}

/// Serves one dump's session on `sock` until CRIU closes it, writing pagemap images into
/// `dir` and handing the pages to `sink`. A sink error ends the session with that error (the
/// caller then closes the socket, which fails the dump).
pub fn serve(sock: &mut (impl Read + Write), dir: &Path, sink: &mut dyn PageSink) -> Result<Served, PageServerError> {
    let mut served = Served::default();
    let mut cur: Option<Pagemap> = None;
    let mut next_pages_id = 1u32;
    let mut buf = vec![0u8; RUN_PAGES * PAGE_SIZE];
    let finish = |p: Option<Pagemap>| -> Result<(), PageServerError> {
        if let Some(mut p) = p {
            p.out
                .flush()
                .map_err(|source| PageServerError::Image { path: p.path, source })?;
        }
        Ok(())
    };
    loop {
        let mut h = [0u8; HEADER];
        read_exact(sock, &mut h)?;
        let raw = u32::from_ne_bytes(h[0..4].try_into().expect("4 bytes"));
        let nr_pages = u64::from_ne_bytes(h[8..16].try_into().expect("8 bytes"));
        let vaddr = u64::from_ne_bytes(h[16..24].try_into().expect("8 bytes"));
        let dst_id = u64::from_ne_bytes(h[24..32].try_into().expect("8 bytes"));
        if raw == PS_IOV_CLOSE || raw == PS_IOV_FORCE_CLOSE {
            finish(cur.take())?;
            sock.write_all(&0i32.to_ne_bytes()).map_err(PageServerError::Answer)?;
            return Ok(served);
        }
        let (cmd, flags) = (raw & 0xffff, raw >> 16);
        match cmd {
            PS_IOV_PARENT => {
                pagemap_name(dst_id)?;
                sock.write_all(&0i32.to_ne_bytes()).map_err(PageServerError::Answer)?;
            }
            PS_IOV_OPEN | PS_IOV_OPEN2 => {
                finish(cur.take())?;
                cur = Some(open(dir, dst_id, &mut next_pages_id, &mut served, sink)?);
                if cmd == PS_IOV_OPEN2 {
                    sock.write_all(&[0u8]).map_err(PageServerError::Answer)?;
                }
            }
            PS_IOV_ADD | PS_IOV_ADD_F | PS_IOV_HOLE => {
                let flags = match cmd {
                    PS_IOV_ADD_F => flags,
                    PS_IOV_ADD => PE_PRESENT,
                    _ => PE_PARENT,
                };
                // Old CRIUs add to a pagemap without opening it first.
                if cur.as_ref().is_none_or(|p| p.dst_id != dst_id) {
                    if cmd == PS_IOV_ADD_F && cur.is_none() {
                        return Err(PageServerError::NotOpen);
                    }
                    finish(cur.take())?;
                    cur = Some(open(dir, dst_id, &mut next_pages_id, &mut served, sink)?);
                }
                if nr_pages == 0 || nr_pages > MAX_RUN_PAGES {
                    return Err(PageServerError::Run(nr_pages));
                }
                let p = cur.as_mut().expect("opened above");
                let e = PagemapEntry {
                    vaddr,
                    compat_nr_pages: 0,
                    in_parent: None,
                    flags: Some(flags),
                    nr_pages: Some(nr_pages),
                };
                p.entry(&e.encode_to_vec()).map_err(|source| PageServerError::Image {
                    path: p.path.clone(),
                    source,
                })?;
                if flags & PE_PRESENT != 0 {
                    let mut left = nr_pages;
                    while left > 0 {
                        let n = left.min(RUN_PAGES as u64) as usize;
                        read_exact(sock, &mut buf[..n * PAGE_SIZE])?;
                        sink.pages(&p.pages_image, p.offset, &buf[..n * PAGE_SIZE])
                            .map_err(PageServerError::Sink)?;
                        p.offset += (n * PAGE_SIZE) as u64;
                        served.pages += n as u64;
                        left -= n as u64;
                    }
                }
            }
            _ => return Err(PageServerError::Command { cmd: raw }),
        }
    }
}

/// Why a dump through the page server failed.
#[derive(Debug, Error)]
pub enum DumpError {
    #[error(transparent)]
    Criu(#[from] super::CriuError),
    #[error("the page server")]
    Serve(#[source] PageServerError),
    #[error("creating the page server's socket")]
    Socket(#[source] io::Error),
}

/// Dumps with CRIU into `dir` (`opts` as for [`super::Criu::dump`]), its pages sent to a page
/// server on a thread of its own and handed to `sink` as they come; the pagemap images are
/// written into `dir` with CRIU's other images, and no pages image is. CRIU's failure is the
/// error unless the sink failed first (then the sink's error: the dump failed because the page
/// server stopped reading). `notify` answers CRIU's notifications as in [`super::Criu::dump`].
///
/// A dump that meets a file system being mounted ([`super::CriuError::is_fhandle_race`]) is
/// tried again as [`super::Criu::dump`] does, but only while `sink` has been handed nothing:
/// once a page has gone on, the failure is the caller's.
pub fn dump(
    criu: &super::Criu,
    dir: &Path,
    opts: super::rpc::Opts,
    sink: &mut (dyn PageSink + Send),
    notify: &mut dyn FnMut(&str) -> Result<(), String>,
) -> Result<Served, DumpError> {
    let touched = std::sync::atomic::AtomicBool::new(false);
    let mut watched = Watched {
        inner: sink,
        touched: &touched,
    };
    super::dump_attempts(
        dir,
        super::DUMP_ATTEMPTS,
        || dump_once(criu, dir, opts.clone(), &mut watched, notify),
        |e| {
            matches!(e, DumpError::Criu(c) if c.is_fhandle_race()) && !touched.load(std::sync::atomic::Ordering::SeqCst)
        },
    )
}

/// A sink that notes whether it was handed anything.
struct Watched<'a> {
    inner: &'a mut (dyn PageSink + Send),
    touched: &'a std::sync::atomic::AtomicBool,
}

impl PageSink for Watched<'_> {
    fn open(&mut self, image: &str) -> io::Result<()> {
        self.touched.store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.open(image)
    }
    fn pages(&mut self, image: &str, offset: u64, data: &[u8]) -> io::Result<()> {
        self.touched.store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.pages(image, offset, data)
    }
}

fn dump_once(
    criu: &super::Criu,
    dir: &Path,
    mut opts: super::rpc::Opts,
    sink: &mut (dyn PageSink + Send),
    notify: &mut dyn FnMut(&str) -> Result<(), String>,
) -> Result<Served, DumpError> {
    use std::os::fd::AsRawFd;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(DumpError::Socket)?;
    // Room for a few runs in flight: fewer wake-ups on both sides.
    for s in [&ours, &theirs] {
        let fd = s.as_raw_fd();
        let size: libc::c_int = 4 << 20;
        for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
            // SAFETY: setting an option on our own socket.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    &size as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
    }
    opts.ps = Some(super::rpc::PageServerInfo {
        fd: Some(theirs.as_raw_fd()),
    });
    let (dumped, served) = std::thread::scope(|scope| {
        let server = scope.spawn(move || {
            let mut ours = ours;
            let r = serve(&mut ours, dir, sink);
            // Whatever happened, CRIU's writes fail from here on rather than block.
            let _ = ours.shutdown(std::net::Shutdown::Both);
            r
        });
        let dumped = criu.dump_with_fds(dir, opts, &[theirs.as_raw_fd()], notify);
        // CRIU is gone; a server still waiting for it reads the end of the stream.
        let _ = theirs.shutdown(std::net::Shutdown::Both);
        (dumped, server.join())
    });
    let served = served.unwrap_or(Err(PageServerError::Eof));
    match (dumped, served) {
        (Ok(()), Ok(s)) => Ok(s),
        (_, Err(e @ PageServerError::Sink(_))) => Err(DumpError::Serve(e)),
        (Err(e), _) => Err(DumpError::Criu(e)),
        (Ok(()), Err(e)) => Err(DumpError::Serve(e)),
    }
}

fn open(
    dir: &Path,
    dst_id: u64,
    next_pages_id: &mut u32,
    served: &mut Served,
    sink: &mut dyn PageSink,
) -> Result<Pagemap, PageServerError> {
    let name = pagemap_name(dst_id)?;
    let path = dir.join(&name);
    let pages_id = *next_pages_id;
    *next_pages_id += 1;
    let pages_image = format!("pages-{pages_id}.img");
    let img = |source| PageServerError::Image {
        path: path.clone(),
        source,
    };
    let f = std::fs::File::create(&path).map_err(img)?;
    let mut p = Pagemap {
        dst_id,
        path: path.clone(),
        out: io::BufWriter::with_capacity(64 << 10, f),
        pages_image: pages_image.clone(),
        offset: 0,
    };
    p.out.write_all(&IMG_COMMON_MAGIC.to_le_bytes()).map_err(img)?;
    p.out.write_all(&PAGEMAP_MAGIC.to_le_bytes()).map_err(img)?;
    p.entry(&PagemapHead { pages_id }.encode_to_vec()).map_err(img)?;
    sink.open(&pages_image).map_err(PageServerError::Sink)?;
    served.pagemaps.push(name);
    served.pages_images.push(pages_image);
    Ok(p)
}

fn read_exact(sock: &mut impl Read, buf: &mut [u8]) -> Result<(), PageServerError> {
    let mut n = 0;
    while n < buf.len() {
        match sock.read(&mut buf[n..]) {
            Ok(0) => return Err(PageServerError::Eof),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(PageServerError::Read(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake CRIU on one end of a socket pair, the server on the other.
    struct Fake {
        out: Vec<u8>,
    }

    impl Fake {
        fn header(&mut self, cmd: u32, nr_pages: u64, vaddr: u64, dst_id: u64) {
            self.out.extend_from_slice(&cmd.to_ne_bytes());
            self.out.extend_from_slice(&[0; 4]);
            self.out.extend_from_slice(&nr_pages.to_ne_bytes());
            self.out.extend_from_slice(&vaddr.to_ne_bytes());
            self.out.extend_from_slice(&dst_id.to_ne_bytes());
        }
    }

    #[derive(Default)]
    struct Collect {
        opened: Vec<String>,
        runs: Vec<(String, u64, Vec<u8>)>,
    }

    impl PageSink for Collect {
        fn open(&mut self, image: &str) -> io::Result<()> {
            self.opened.push(image.into());
            Ok(())
        }
        fn pages(&mut self, image: &str, offset: u64, data: &[u8]) -> io::Result<()> {
            self.runs.push((image.into(), offset, data.to_vec()));
            Ok(())
        }
    }

    /// The stream CRIU sends for two processes (one with a present run and a lazy-only run,
    /// one with nothing) and the answers it expects.
    fn session() -> (Vec<u8>, usize) {
        let mut f = Fake { out: vec![] };
        f.header(PS_IOV_OPEN2, 0, 0, (1 << 8) | PS_TYPE_PID);
        f.header(PS_IOV_ADD_F | (PE_PRESENT << 16), 2, 0x401000, (1 << 8) | PS_TYPE_PID);
        f.out.extend(std::iter::repeat_n(7u8, PAGE_SIZE));
        f.out.extend(std::iter::repeat_n(8u8, PAGE_SIZE));
        f.header(
            PS_IOV_ADD_F | (PE_LAZY << 16),
            3,
            0x7f00_0000_0000,
            (1 << 8) | PS_TYPE_PID,
        );
        f.header(PS_IOV_PARENT, 0, 0, (9 << 8) | PS_TYPE_SHMEM);
        f.header(PS_IOV_OPEN2, 0, 0, (6 << 8) | PS_TYPE_PID);
        f.header(PS_IOV_FORCE_CLOSE, 0, 0, 0);
        // Answers: has_parent for each OPEN2 (1 byte), an int for PARENT and for the close.
        (f.out, 1 + 4 + 1 + 4)
    }

    #[test]
    fn a_session_writes_pagemaps_as_criu_does_and_hands_on_the_pages() {
        let (stream, answers) = session();
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let feeder = std::thread::spawn(move || {
            a.write_all(&stream).unwrap();
            let mut back = vec![0u8; answers];
            a.read_exact(&mut back).unwrap();
            back
        });
        let mut sink = Collect::default();
        let served = serve(&mut b, dir.path(), &mut sink).unwrap();
        let back = feeder.join().unwrap();
        assert_eq!(back, [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0], "no parent, status 0");
        assert_eq!(served.pages, 2);
        assert_eq!(served.pagemaps, ["pagemap-1.img", "pagemap-6.img"]);
        assert_eq!(sink.opened, ["pages-1.img", "pages-2.img"]);
        assert_eq!(sink.runs.len(), 1);
        let (img, off, data) = &sink.runs[0];
        assert_eq!((img.as_str(), *off, data.len()), ("pages-1.img", 0, 2 * PAGE_SIZE));
        assert!(data[..PAGE_SIZE].iter().all(|b| *b == 7) && data[PAGE_SIZE..].iter().all(|b| *b == 8));
        // The bytes CRIU 4.2.1 itself writes for such a pagemap (read off a real dump): the
        // two magics, the head naming pages-1.img, then an entry of one present page at
        // 0x401000 (vaddr, compat_nr_pages 0, flags, nr_pages).
        let pm = std::fs::read(dir.path().join("pagemap-1.img")).unwrap();
        let mut want = vec![0x19, 0x43, 0x56, 0x54, 0x25, 0x40, 0x08, 0x56, 2, 0, 0, 0, 0x08, 0x01];
        want.extend([
            0x0b, 0, 0, 0, 0x08, 0x80, 0xa0, 0x80, 0x02, 0x10, 0x00, 0x20, 0x04, 0x28, 0x02,
        ]);
        assert_eq!(&pm[..want.len()], &want[..]);
        // The lazy run: an entry without data.
        let rest = &pm[want.len()..];
        let e = PagemapEntry::decode(&rest[4..]).unwrap();
        assert_eq!(
            (e.vaddr, e.flags, e.nr_pages),
            (0x7f00_0000_0000, Some(PE_LAZY), Some(3))
        );
        let empty = std::fs::read(dir.path().join("pagemap-6.img")).unwrap();
        assert_eq!(&empty[8..14], &[2, 0, 0, 0, 0x08, 0x02], "pagemap-6 names pages-2.img");
    }

    #[test]
    fn a_broken_session_is_an_error_never_a_short_image() {
        let (stream, _) = session();
        // Cut in the middle of the first run's data.
        let cut = HEADER * 2 + PAGE_SIZE;
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let feeder = std::thread::spawn(move || {
            a.write_all(&stream[..cut]).unwrap();
            let mut one = [0u8; 1];
            a.read_exact(&mut one).unwrap();
            drop(a);
        });
        let r = serve(&mut b, dir.path(), &mut Collect::default());
        feeder.join().unwrap();
        assert!(matches!(r, Err(PageServerError::Eof)), "{r:?}");
        // An unknown command.
        let mut f = Fake { out: vec![] };
        f.header(PS_IOV_OPEN2, 0, 0, (1 << 8) | PS_TYPE_PID);
        f.header(7, 1, 0, (1 << 8) | PS_TYPE_PID);
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.write_all(&f.out).unwrap();
        assert!(matches!(
            serve(&mut b, dir.path(), &mut Collect::default()),
            Err(PageServerError::Command { cmd: 7 })
        ));
        // A pagemap type ferry does not know.
        let mut f = Fake { out: vec![] };
        f.header(PS_IOV_OPEN2, 0, 0, (1 << 8) | 3);
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.write_all(&f.out).unwrap();
        assert!(matches!(
            serve(&mut b, dir.path(), &mut Collect::default()),
            Err(PageServerError::Type { .. })
        ));
    }
}
