#![allow(unsafe_code)]
// memfd, mmap and sendfile: the one module that calls the kernel directly (SAFETY notes at each block).
//! Zero-copy serving of HLS media on Linux: the segmenter's parts and MPEG-TS segments are
//! moved once into a sealed-by-convention memfd mapping (`store`), and a plaintext HTTP/1
//! connection (`ZeroCopyTcp`) that is asked to write bytes lying in such a mapping sends them
//! with `sendfile(2)` from the memfd instead of copying them from user space, as nginx does
//! from tmpfs. Every other write (headers, playlists, FLV) goes through unchanged. hyper needs
//! no change: it hands the body's `Bytes` to the connection's vectored write as they are.
//!
//! A mapping lives as long as any `Bytes` of it (`Bytes::from_owner`); its address range is
//! registered while it lives, so a write can tell that a slice is one of ours (only slices of
//! at least `MIN_BYTES` are looked up: small writes cost nothing more).

use std::collections::BTreeMap;
use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Metric: counter of media bytes sent with `sendfile` (no copy from user space).
pub const SENDFILE_BYTES: &str = "livecdn_net_sendfile_bytes_total";

/// Buffers smaller than this stay on the heap, and slices smaller than this are never looked
/// up: a `sendfile` call only pays off for large writes.
pub const MIN_BYTES: usize = 16 * 1024;

/// One registered mapping: its length and its memfd.
struct Region {
    len: usize,
    fd: Arc<OwnedFd>,
}

/// Live mappings by start address.
fn regions() -> &'static RwLock<BTreeMap<usize, Region>> {
    static REGIONS: OnceLock<RwLock<BTreeMap<usize, Region>>> = OnceLock::new();
    REGIONS.get_or_init(RwLock::default)
}

/// A read-only shared mapping of a whole memfd; unmapped (and unregistered) when the last
/// `Bytes` of it goes.
struct Mapping {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the mapping is read-only and never changes while it exists; the pointer is only
// read through `as_ref`.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is a live PROT_READ mapping owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        regions()
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(self.ptr as usize));
        // SAFETY: mapped by `memfd_bytes` with this address and length; no `Bytes` of it is
        // left (this is its owner's drop).
        unsafe {
            libc::munmap(self.ptr as *mut libc::c_void, self.len);
        }
    }
}

/// The segmenter's `Store`: `data` in a memfd mapping when it is large enough and the kernel
/// allows, else `data` as it is.
pub fn store(data: Bytes) -> Bytes {
    if data.len() < MIN_BYTES {
        return data;
    }
    memfd_bytes(&data).unwrap_or(data)
}

/// A copy of `data` in a new memfd, mapped read-only and registered.
fn memfd_bytes(data: &[u8]) -> Option<Bytes> {
    // SAFETY: a constant NUL-terminated name and valid flags.
    let raw = unsafe { libc::memfd_create(c"livecdn-hls".as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return None;
    }
    // SAFETY: `raw` is a new descriptor this function owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut file = std::fs::File::from(fd);
    file.write_all(data).ok()?;
    let fd = Arc::new(OwnedFd::from(file));
    // SAFETY: maps the whole file just written, read-only and shared; checked below.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            data.len(),
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return None;
    }
    let ptr = ptr as *const u8;
    regions().write().unwrap_or_else(|e| e.into_inner()).insert(
        ptr as usize,
        Region {
            len: data.len(),
            fd,
        },
    );
    Some(Bytes::from_owner(Mapping {
        ptr,
        len: data.len(),
    }))
}

/// The memfd and offset of `slice` if it lies in one registered mapping.
fn lookup(slice: &[u8]) -> Option<(Arc<OwnedFd>, usize)> {
    if slice.len() < MIN_BYTES {
        return None;
    }
    let addr = slice.as_ptr() as usize;
    let map = regions().read().unwrap_or_else(|e| e.into_inner());
    let (start, region) = map.range(..=addr).next_back()?;
    let offset = addr - start;
    (offset + slice.len() <= region.len).then(|| (region.fd.clone(), offset))
}

/// A plaintext TCP connection whose writes of registered media go out with `sendfile`.
pub struct ZeroCopyTcp(pub TcpStream);

impl ZeroCopyTcp {
    fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        fd: &OwnedFd,
        offset: usize,
        len: usize,
    ) -> Poll<std::io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            let sent = self.0.try_io(Interest::WRITABLE, || {
                let mut off = offset as libc::off_t;
                // SAFETY: both descriptors are open for the call; `off` is a valid pointer.
                let n =
                    unsafe { libc::sendfile(self.0.as_raw_fd(), fd.as_raw_fd(), &mut off, len) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match sent {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Ok(n) => {
                    metrics::counter!(SENDFILE_BYTES).increment(n as u64);
                    return Poll::Ready(Ok(n));
                }
                r => return Poll::Ready(r),
            }
        }
    }
}

impl AsyncRead for ZeroCopyTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZeroCopyTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    /// Writes the slices before the first registered one as usual; a registered one first in
    /// line goes with `sendfile`. Either way a partial write, as the contract allows.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let first = bufs
            .iter()
            .enumerate()
            .find_map(|(i, b)| lookup(b).map(|found| (i, found)));
        match first {
            Some((0, (fd, offset))) => {
                let len = bufs[0].len();
                self.poll_sendfile(cx, &fd, offset, len)
            }
            Some((i, _)) => Pin::new(&mut self.0).poll_write_vectored(cx, &bufs[..i]),
            None => Pin::new(&mut self.0).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn large_buffers_move_to_a_registered_mapping_and_back_out() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let b = store(Bytes::from(data.clone()));
        assert_eq!(&b[..], &data[..]);
        let (_, off) = lookup(&b[1000..40_000]).expect("a slice of the mapping is found");
        assert_eq!(off, 1000);
        assert!(
            lookup(&b[..100]).is_none(),
            "small slices are not looked up"
        );
        let addr = b.as_ptr() as usize;
        drop(b);
        assert!(
            !regions().read().expect("lock").contains_key(&addr),
            "unregistered with its last Bytes"
        );
        // Small buffers stay where they are.
        let small = Bytes::from(vec![1u8; 100]);
        assert_eq!(store(small.clone()).as_ptr(), small.as_ptr());
    }

    #[tokio::test]
    async fn registered_slices_are_sent_whole_between_ordinary_writes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let media = store(Bytes::from(data.clone()));
        let head = b"HEAD".to_vec();
        let writer = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.expect("accept");
            let mut conn = ZeroCopyTcp(sock);
            // As hyper writes: a head, then body chunks, vectored.
            let mut sent = 0;
            let total = head.len() + media.len();
            while sent < total {
                let slices: Vec<IoSlice<'_>> = if sent < head.len() {
                    vec![IoSlice::new(&head[sent..]), IoSlice::new(&media[..])]
                } else {
                    vec![IoSlice::new(&media[sent - head.len()..])]
                };
                sent +=
                    std::future::poll_fn(|cx| Pin::new(&mut conn).poll_write_vectored(cx, &slices))
                        .await
                        .expect("write");
            }
            conn.shutdown().await.expect("shutdown");
        });
        let mut reader = TcpStream::connect(addr).await.expect("connect");
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.expect("read");
        writer.await.expect("writer");
        assert_eq!(&got[..4], b"HEAD");
        assert!(got[4..] == data[..], "the media arrives intact");
    }
}
