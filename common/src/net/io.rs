//! Socket helpers: vectored writes of many shared `Bytes` in one syscall, a TCP stream its
//! task can share with the fan-out, and a stream wrapper whose writes fail when they make no
//! progress for too long.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
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

    /// Reads what is there into `buf`, waiting until something is (0 at end of stream).
    pub async fn read_buf(&self, buf: &mut BytesMut) -> std::io::Result<usize> {
        std::future::poll_fn(|cx| {
            loop {
                ready!(self.0.sock.poll_read_ready(cx))?;
                match self.0.sock.try_read_buf(buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
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

/// Writes every buffer, several per `writev`, handling partial writes.
pub async fn write_all_vectored<W: AsyncWrite + Unpin>(
    w: &mut W,
    bufs: &[Bytes],
) -> std::io::Result<()> {
    const MAX_IOV: usize = 64;
    let mut idx = 0;
    let mut offset = 0;
    while idx < bufs.len() {
        if bufs[idx].len() == offset {
            idx += 1;
            offset = 0;
            continue;
        }
        // On the stack: this runs once per write to every player.
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
        let slices = &slices[..count];
        let mut n = w.write_vectored(slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
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
    Ok(())
}

/// An I/O stream whose writes fail with `TimedOut` once a write stays pending for longer
/// than the stall timeout: a peer that stops reading cannot hold a connection forever.
pub struct StallTimeout<T> {
    inner: T,
    timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> StallTimeout<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: None,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    fn poll_stall<R>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        if r.is_ready() {
            self.deadline = None;
            return r;
        }
        let timeout = self.timeout;
        let sleep = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "peer stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
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
        self.poll_stall(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.poll_stall(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.poll_stall(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

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
    async fn stalled_write_times_out() {
        let (a, _b) = tokio::io::duplex(4);
        let mut s = StallTimeout::new(a, Duration::from_secs(2));
        let err = s.write_all(&[0u8; 64]).await.expect_err("must time out");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }
}
