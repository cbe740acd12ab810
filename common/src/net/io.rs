//! Socket helpers: vectored writes of many shared `Bytes` in one syscall, a TCP stream its
//! task can share with the fan-out, the transports an RTMP connection runs over (TCP or TLS),
//! and stream wrappers whose writes fail when they make no progress for too long or that end
//! a connection idle for too long.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::media::DirectSink;

/// A TCP stream shared by its connection task and, while the player keeps up, the fan-out
/// (`media::DirectSink`). Both only ever try non-blocking calls through `&TcpStream`; the
/// subscriber queue decides which of them may write at any moment.
#[derive(Clone)]
pub struct SharedStream(Arc<Shared>);

/// The socket and what the fan-out wrote to it, in one allocation and one cache line: a
/// direct write reaches the descriptor in one hop (the fan-out touches thousands per frame).
#[repr(align(64))]
pub struct Shared {
    sock: TcpStream,
    /// Bytes written by the fan-out and not yet booked (`take_direct_sent`).
    direct_sent: AtomicU64,
}

// What a direct write reads stays in one cache line.
const _: () = assert!(std::mem::size_of::<Shared>() == 64);

impl SharedStream {
    pub fn new(sock: TcpStream) -> Self {
        Self(Arc::new(Shared {
            sock,
            direct_sent: AtomicU64::new(0),
        }))
    }

    pub fn get_ref(&self) -> &TcpStream {
        &self.0.sock
    }

    /// This socket as the fan-out's direct sink.
    pub fn direct_sink(&self) -> Arc<dyn DirectSink> {
        self.0.clone()
    }

    /// Bytes the fan-out wrote since the last call.
    pub fn take_direct_sent(&self) -> u64 {
        self.0.direct_sent.swap(0, Ordering::Relaxed)
    }

    /// Reads what is there into `buf`, waiting until something is (0 at end of stream). Room
    /// for `size` bytes is reserved only once the socket is readable, so a connection waiting
    /// for its peer holds no buffer.
    pub async fn read_buf(&self, buf: &mut BytesMut, size: usize) -> std::io::Result<usize> {
        std::future::poll_fn(|cx| {
            loop {
                ready!(self.0.sock.poll_read_ready(cx))?;
                buf.reserve(size);
                match self.0.sock.try_read_buf(buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        // The readiness was stale (tokio keeps it until a read would block):
                        // give the room back before waiting for real.
                        if buf.is_empty() {
                            *buf = BytesMut::new();
                        }
                        continue;
                    }
                    r => return Poll::Ready(r),
                }
            }
        })
        .await
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            ready!(self.0.sock.poll_write_ready(cx))?;
            match self.0.sock.try_write_vectored(bufs) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&self.0.sock).shutdown(std::net::Shutdown::Write))
    }
}

impl DirectSink for Shared {
    /// One `sendmsg` of `bufs` if the socket has room, else `WouldBlock`; never waits.
    /// Straight to the kernel, past tokio's readiness bookkeeping (a tenth of the edge's
    /// user time at 1000 players): a `WouldBlock` it did not see only costs the task's next
    /// write one more try.
    fn try_write(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        let n = socket2::SockRef::from(&self.sock).send_vectored(bufs)?;
        self.direct_sent.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn touch(&self) {
        std::hint::black_box(self.direct_sent.load(Ordering::Relaxed));
    }
}

/// The byte stream of an RTMP connection. A transport decides whether the fan-out may write
/// to it directly: plain TCP (`SharedStream`) can, TLS cannot (one writer must own its record
/// state), so TLS players take the queued path.
pub trait Transport: AsyncWrite + Unpin + Send + 'static {
    /// Reads what is there into `buf`, waiting until something is (0 at end of stream), with
    /// room for `size` more bytes reserved when the bytes are there, if the transport can
    /// tell (plain TCP), else before waiting. Cancel-safe: a dropped read loses no bytes.
    fn read_into<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
        size: usize,
    ) -> impl std::future::Future<Output = std::io::Result<usize>> + Send + 'a;
    /// The socket the fan-out may write to directly, if this transport allows it.
    fn shared(&self) -> Option<&SharedStream>;
    /// The TCP socket underneath (socket options).
    fn tcp(&self) -> &TcpStream;
}

impl Transport for SharedStream {
    fn read_into<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
        size: usize,
    ) -> impl std::future::Future<Output = std::io::Result<usize>> + Send + 'a {
        self.read_buf(buf, size)
    }

    #[inline]
    fn shared(&self) -> Option<&SharedStream> {
        Some(self)
    }

    fn tcp(&self) -> &TcpStream {
        &self.0.sock
    }
}

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {
    fn read_into<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
        size: usize,
    ) -> impl std::future::Future<Output = std::io::Result<usize>> + Send + 'a {
        // Decrypted bytes may already wait inside the TLS stream: no readiness to wait for.
        buf.reserve(size);
        AsyncReadExt::read_buf(self, buf)
    }

    #[inline]
    fn shared(&self) -> Option<&SharedStream> {
        None
    }

    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Writes every buffer, several per `writev`, handling partial writes. The `IoSlice` array is
/// built on the stack of each poll, not kept in the future: a player's task waiting for room
/// (and every player task, which is as large as its largest await) would carry 1 KiB of it.
pub async fn write_all_vectored<W: AsyncWrite + Unpin>(
    w: &mut W,
    bufs: &[Bytes],
) -> std::io::Result<()> {
    const MAX_IOV: usize = 64;
    let mut idx = 0;
    let mut offset = 0;
    std::future::poll_fn(|cx| {
        loop {
            while idx < bufs.len() && bufs[idx].len() == offset {
                idx += 1;
                offset = 0;
            }
            if idx == bufs.len() {
                return Poll::Ready(Ok(()));
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            slices[0] = IoSlice::new(&bufs[idx][offset..]);
            let mut count = 1;
            for b in bufs[idx + 1..].iter().filter(|b| !b.is_empty()) {
                if count == MAX_IOV {
                    break;
                }
                slices[count] = IoSlice::new(b);
                count += 1;
            }
            let mut n = ready!(Pin::new(&mut *w).poll_write_vectored(cx, &slices[..count]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            while n > 0 && idx < bufs.len() {
                let left = bufs[idx].len() - offset;
                if n >= left {
                    n -= left;
                    idx += 1;
                    offset = 0;
                } else {
                    offset += n;
                    n = 0;
                }
            }
        }
    })
    .await
}

/// Slowest rate (bytes/s) that counts as progress while a peer's socket is full: a peer that
/// reads a trickle, enough to let each write move a little, still times out.
pub const MIN_WRITE_RATE: u64 = 4096;

/// An I/O stream whose writes fail with `TimedOut` once the socket has been full for longer
/// than the stall timeout without the peer reading at least `MIN_WRITE_RATE` on average since
/// it filled: a peer that stops reading, or reads a trickle, cannot hold a connection forever.
pub struct StallTimeout<T> {
    inner: T,
    timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
    /// When `deadline` was armed (the socket filled up), and bytes written since.
    armed_at: Instant,
    progress: u64,
}

impl<T> StallTimeout<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: None,
            armed_at: Instant::now(),
            progress: 0,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Whether the writes since the socket filled up average at least `MIN_WRITE_RATE`.
    fn kept_pace(&self, now: Instant) -> bool {
        let secs = now.saturating_duration_since(self.armed_at).as_secs_f64();
        self.progress as f64 >= MIN_WRITE_RATE as f64 * secs
    }

    /// `offered`: bytes the write was given (a write that takes them all found room).
    fn poll_stall<R>(
        &mut self,
        cx: &mut Context<'_>,
        offered: Option<usize>,
        r: Poll<std::io::Result<R>>,
        written: impl Fn(&R) -> usize,
    ) -> Poll<std::io::Result<R>> {
        match &r {
            Poll::Ready(Ok(v)) => {
                if self.deadline.is_some() {
                    let n = written(v);
                    self.progress = self.progress.saturating_add(n as u64);
                    // Room for everything, and the peer kept pace while the socket was full:
                    // no longer stalled. A trickle keeps the timer running.
                    if offered.is_none_or(|o| n >= o) && self.kept_pace(Instant::now()) {
                        self.deadline = None;
                    }
                }
                return r;
            }
            Poll::Ready(Err(_)) => {
                self.deadline = None;
                return r;
            }
            Poll::Pending => {}
        }
        let timeout = self.timeout;
        if self.deadline.is_none() {
            self.armed_at = Instant::now();
            self.progress = 0;
        }
        let armed_at = self.armed_at;
        let sleep = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(armed_at + timeout)));
        loop {
            match sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    let now = Instant::now();
                    let secs = now.saturating_duration_since(armed_at).as_secs_f64();
                    if (self.progress as f64) < MIN_WRITE_RATE as f64 * secs {
                        return Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "peer stopped reading",
                        )));
                    }
                    // Slow but steady: a new window starts.
                    self.armed_at = now;
                    self.progress = 0;
                    sleep.as_mut().reset(now + timeout);
                }
            }
        }
    }
}

use std::future::Future;

impl<T: AsyncRead + Unpin> AsyncRead for StallTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.poll_stall(cx, Some(buf.len()), r, |n| *n)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        let offered = bufs.iter().map(|b| b.len()).sum();
        self.poll_stall(cx, Some(offered), r, |n| *n)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.poll_stall(cx, None, r, |_| 0)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An I/O stream that fails reads with `TimedOut` once it has moved no byte either way for
/// the idle timeout (between one and two timeouts after the last byte: progress is a counter,
/// not a clock read per call). Only a pending read arms the timer: HTTP servers keep one
/// pending on every connection they wait on.
pub struct IdleTimeout<T> {
    inner: T,
    timeout: Duration,
    progress: u64,
    seen: u64,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<T> IdleTimeout<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            progress: 0,
            seen: 0,
            timer: None,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let timeout = self.timeout;
        loop {
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
            ready!(timer.as_mut().poll(cx));
            if self.progress == self.seen {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection idle",
                )));
            }
            self.seen = self.progress;
            timer.as_mut().reset(Instant::now() + timeout);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                self.progress += (buf.filled().len() - before) as u64 + 1;
                Poll::Ready(r)
            }
            Poll::Pending => {
                ready!(self.poll_idle(cx))?;
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = ready!(Pin::new(&mut self.inner).poll_write(cx, buf));
        self.progress += 1;
        Poll::Ready(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs));
        self.progress += 1;
        Poll::Ready(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn vectored_write_delivers_everything_in_order() {
        let (mut a, mut b) = tokio::io::duplex(7);
        let bufs: Vec<Bytes> = (0..50u8)
            .map(|i| Bytes::from(vec![i; (i as usize * 13) % 97]))
            .collect();
        let expected: Vec<u8> = bufs.iter().flat_map(|b| b.to_vec()).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.map(|_| got)
        });
        write_all_vectored(&mut a, &bufs).await.expect("write");
        a.shutdown().await.expect("shutdown");
        drop(a);
        assert_eq!(reader.await.expect("join").expect("read"), expected);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connection_times_out_but_active_one_does_not() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut s = IdleTimeout::new(a, Duration::from_secs(10));
        let mut buf = [0u8; 8];
        // Bytes every 6 s keep it open past two timeouts.
        for _ in 0..4 {
            let (r, _) = tokio::join!(s.read(&mut buf), async {
                tokio::time::sleep(Duration::from_secs(6)).await;
                b.write_all(b"x").await
            });
            assert_eq!(r.expect("read"), 1);
        }
        let start = Instant::now();
        let err = s.read(&mut buf).await.expect_err("idle");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(start.elapsed() <= Duration::from_secs(20));
    }

    /// A peer that reads a few bytes now and then lets every write move, but not at
    /// `MIN_WRITE_RATE`: the stall timeout is not reset by it.
    #[tokio::test(start_paused = true)]
    async fn trickle_reading_peer_times_out() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut s = StallTimeout::new(a, Duration::from_secs(2));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if b.read(&mut buf).await.map_or(true, |n| n == 0) {
                    return;
                }
            }
        });
        let start = Instant::now();
        let err = s
            .write_all(&[0u8; 1 << 20])
            .await
            .expect_err("must time out");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(
            start.elapsed() <= Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        drop(s);
        reader.abort();
    }

    /// A peer reading steadily above the minimum rate, with the socket always full, is fine.
    #[tokio::test(start_paused = true)]
    async fn slow_but_steady_peer_does_not_time_out() {
        let (a, mut b) = tokio::io::duplex(4096);
        let mut s = StallTimeout::new(a, Duration::from_secs(2));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let mut got = 0;
            while got < 64 * 1024 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                got += b.read(&mut buf).await.expect("read");
            }
            got
        });
        // 64 KiB at 10 KiB/s: 6.4 s of a full socket, three stall timeouts.
        s.write_all(&[0u8; 64 * 1024]).await.expect("steady reader");
        assert_eq!(reader.await.expect("join"), 64 * 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_write_times_out() {
        let (a, _b) = tokio::io::duplex(4);
        let mut s = StallTimeout::new(a, Duration::from_secs(2));
        let err = s.write_all(&[0u8; 64]).await.expect_err("must time out");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }
}
