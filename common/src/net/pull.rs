//! The RTMP pull client: plays a stream from an upstream server (an origin, nginx-rtmp, SRS)
//! with the sans-IO `ClientSession`, yielding frames. Cancel-safe: `next` may be dropped at
//! any await point without losing or corrupting anything.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

use crate::flv;
use crate::media::{FrameKind, MediaFrame};
use crate::rtmp::{ClientConfig, ClientEvent, ClientSession, SessionError};
use crate::telemetry::metric;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connect to {0} timed out")]
    ConnectTimeout(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("rtmp: {0}")]
    Session(#[from] SessionError),
    #[error("upstream refused: {code} ({description})")]
    Refused { code: String, description: String },
    #[error("upstream closed the connection")]
    Closed,
    #[error("nothing from upstream for {0:?}")]
    Timeout(Duration),
}

impl PullError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            PullError::Connect { .. } | PullError::ConnectTimeout(_) => "connect",
            PullError::Io(_) | PullError::Closed => "io",
            PullError::Session(_) => "protocol",
            PullError::Refused { code, .. } if code.ends_with("StreamNotFound") => "not_found",
            PullError::Refused { .. } => "refused",
            PullError::Timeout(_) => "timeout",
        }
    }
}

/// What the upstream sent.
#[derive(Debug)]
pub enum PullEvent {
    /// NetStream.Play.Start.
    Started,
    Frame(MediaFrame),
    /// The upstream ended the stream (StreamEOF, UnpublishNotify, Play.Stop).
    Ended,
}

/// One RTMP play connection to an upstream.
pub struct Pull {
    sock: TcpStream,
    session: ClientSession,
    out: Bytes,
    read_timeout: Duration,
    /// When the upstream last sent something: the silence deadline counts from here, not
    /// from the call to `next`, which a caller's `select!` may drop and restart at any time
    /// (the ingest's idle tick does, twice a second).
    last_rx: Instant,
    received: metrics::Counter,
}

impl Pull {
    /// Connects to `addr` (`host:port`) and asks to play `app/name` (`name` may carry a
    /// `?query`, e.g. the cluster credential).
    pub async fn connect(
        addr: &str,
        app: &str,
        name: &str,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Result<Pull, PullError> {
        let sock = timeout(connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| PullError::ConnectTimeout(addr.to_string()))?
            .map_err(|source| PullError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        sock.set_nodelay(true)?;
        let mut session =
            ClientSession::new(ClientConfig::new(app, &format!("rtmp://{addr}/{app}")));
        session.play(name);
        Ok(Pull {
            sock,
            session,
            out: Bytes::new(),
            read_timeout,
            last_rx: Instant::now(),
            received: metrics::counter!(metric::BYTES_RECEIVED, "protocol" => "rtmp"),
        })
    }

    /// The next event from upstream.
    pub async fn next(&mut self) -> Result<PullEvent, PullError> {
        loop {
            if let Some(ev) = self.session.poll_event()? {
                match ev {
                    ClientEvent::PlayStarted => return Ok(PullEvent::Started),
                    ClientEvent::StreamEof => return Ok(PullEvent::Ended),
                    ClientEvent::Media {
                        type_id,
                        timestamp,
                        payload,
                    } => {
                        if let Some(f) = flv::frame_from_message(type_id, timestamp, payload) {
                            return Ok(PullEvent::Frame(f));
                        }
                    }
                    ClientEvent::Metadata { timestamp, payload } => {
                        let f = MediaFrame::new(FrameKind::Data, timestamp, false, false, payload);
                        return Ok(PullEvent::Frame(f));
                    }
                    ClientEvent::Status {
                        level,
                        code,
                        description,
                    } => {
                        if code == "NetStream.Play.UnpublishNotify" || code == "NetStream.Play.Stop"
                        {
                            return Ok(PullEvent::Ended);
                        }
                        if level == "error" {
                            return Err(PullError::Refused { code, description });
                        }
                    }
                    ClientEvent::Connected | ClientEvent::PublishStarted => {}
                }
                continue;
            }
            if self.out.is_empty()
                && let Some(out) = self.session.take_output()
            {
                self.out = out;
            }
            if !self.out.is_empty() {
                // write_all_buf advances `out` as it goes, so cancelling loses nothing.
                self.sock.write_all_buf(&mut self.out).await?;
                continue;
            }
            let silent_until = self.last_rx + self.read_timeout;
            let data = timeout_at(silent_until, read_ready(&self.sock))
                .await
                .map_err(|_| PullError::Timeout(self.read_timeout))??;
            if data.is_empty() {
                return Err(PullError::Closed);
            }
            self.last_rx = Instant::now();
            self.received.increment(data.len() as u64);
            self.session.handle_input(&data)?;
        }
    }
}

/// Bytes asked of the socket per read: a 60000-byte chunk (the origin's) and its header fit.
const READ_SIZE: usize = 64 * 1024;

/// Waits until the socket has bytes, then reads them into a buffer made for this read (empty:
/// end of stream). The session copies what it keeps, so a pull waiting for its upstream holds
/// no read buffer (200 pulls held 64 KiB each). Cancel-safe: nothing is read before the
/// socket is ready, and then without waiting.
async fn read_ready(sock: &TcpStream) -> std::io::Result<BytesMut> {
    loop {
        sock.readable().await?;
        let mut buf = BytesMut::with_capacity(READ_SIZE);
        match sock.try_read_buf(&mut buf) {
            Ok(_) => return Ok(buf),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A black-holed upstream (connected, then silent) times out after `read_timeout` even
    /// when `next` is dropped and called again every 50 ms, as the ingest's `select!` does.
    #[tokio::test]
    async fn a_silent_upstream_times_out_although_next_is_restarted() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let silent = tokio::spawn(async move {
            let held = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(held);
        });
        let read_timeout = Duration::from_millis(300);
        let mut pull = Pull::connect(&addr, "live", "x", Duration::from_secs(2), read_timeout)
            .await
            .expect("connect");
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let err = loop {
            tokio::select! {
                r = pull.next() => break r.expect_err("a silent upstream is an error"),
                _ = tick.tick() => {}
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no timeout while next() keeps being restarted"
            );
        };
        assert!(matches!(err, PullError::Timeout(_)), "{err:?}");
        assert!(start.elapsed() >= read_timeout);
        silent.abort();
    }
}
