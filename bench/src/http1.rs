//! A minimal HTTP/1.1 response parser for keep-alive clients (the HLS players): the head
//! (status, Content-Length, chunked transfer, Connection: close), then the body handed out as
//! slices of the input without copying, and where the response ends so the connection can be
//! reused. Sans-IO; no request pipelining (one response at a time).

/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    HeadTooLarge,
    BadStatusLine,
    BadContentLength,
    BadChunkSize,
    BadChunkFraming,
    /// Bytes after the end of a response we did not ask for.
    TrailingBytes,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Content-Length bytes left.
    Length(u64),
    /// Reading a chunk-size line (hex digits, then an extension up to CRLF).
    ChunkSize {
        value: u64,
        digits: u8,
        ext: bool,
    },
    ChunkSizeLf {
        value: u64,
    },
    ChunkData(u64),
    ChunkDataCr,
    ChunkDataLf,
    /// After the zero-size chunk: trailer lines until an empty one (`len` bytes of the
    /// current line so far, `cr` its CR seen).
    Trailer {
        len: usize,
        cr: bool,
    },
    /// No length: the body runs until the server closes the connection.
    UntilClose,
    Done,
}

/// One response being read.
#[derive(Debug)]
pub struct Response {
    head: Vec<u8>,
    body: Option<Body>,
    pub status: u16,
    /// The server will close the connection after this response.
    pub close: bool,
    pub content_length: Option<u64>,
}

impl Default for Response {
    fn default() -> Self {
        Self::new()
    }
}

impl Response {
    pub fn new() -> Self {
        Response {
            head: Vec::new(),
            body: None,
            status: 0,
            close: false,
            content_length: None,
        }
    }

    /// The head is complete.
    pub fn has_head(&self) -> bool {
        self.body.is_some()
    }

    /// The whole response was read.
    pub fn is_done(&self) -> bool {
        self.body == Some(Body::Done)
    }

    /// Nothing of the response arrived yet (a reused connection closed by the server while
    /// idle can be retried).
    pub fn is_untouched(&self) -> bool {
        self.head.is_empty() && self.body.is_none()
    }

    /// The connection ended: completes a body that runs until close.
    pub fn eof(&mut self) {
        if self.body == Some(Body::UntilClose) {
            self.body = Some(Body::Done);
        }
    }

    /// Takes bytes from the connection, handing body bytes to `on_body` with the status.
    /// Bytes after the end of the response are an error (nothing was pipelined).
    pub fn feed<E>(
        &mut self,
        mut data: &[u8],
        on_body: &mut impl FnMut(u16, &[u8]) -> Result<(), E>,
    ) -> Result<(), FeedError<E>> {
        if self.body.is_none() {
            let searched_from = self.head.len().saturating_sub(3);
            self.head.extend_from_slice(data);
            let Some(end) = self.head[searched_from..]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| p + searched_from)
            else {
                if self.head.len() > MAX_HEAD {
                    return Err(FeedError::Http(HttpError::HeadTooLarge));
                }
                return Ok(());
            };
            let body_start = end + 4;
            let taken = data.len() - (self.head.len() - body_start);
            data = &data[taken..];
            self.parse_head(end).map_err(FeedError::Http)?;
            self.head = Vec::new();
        }
        self.body_bytes(data, on_body)
    }

    fn parse_head(&mut self, end: usize) -> Result<(), HttpError> {
        let text = String::from_utf8_lossy(&self.head[..end]);
        let mut lines = text.split("\r\n");
        let status_line = lines.next().ok_or(HttpError::BadStatusLine)?;
        let mut words = status_line.split_whitespace();
        let version = words.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(HttpError::BadStatusLine);
        }
        self.status = words
            .next()
            .and_then(|c| c.parse().ok())
            .ok_or(HttpError::BadStatusLine)?;
        self.close = version == "HTTP/1.0";
        let mut chunked = false;
        for line in lines {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-length") {
                self.content_length = Some(v.parse().map_err(|_| HttpError::BadContentLength)?);
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            } else if k.eq_ignore_ascii_case("connection") {
                let v = v.to_ascii_lowercase();
                if v.contains("close") {
                    self.close = true;
                } else if v.contains("keep-alive") {
                    self.close = false;
                }
            }
        }
        let no_body = self.status / 100 == 1 || self.status == 204 || self.status == 304;
        self.body = Some(if no_body {
            Body::Done
        } else if chunked {
            Body::ChunkSize {
                value: 0,
                digits: 0,
                ext: false,
            }
        } else {
            match self.content_length {
                Some(0) => Body::Done,
                Some(n) => Body::Length(n),
                None => {
                    self.close = true;
                    Body::UntilClose
                }
            }
        });
        Ok(())
    }

    fn body_bytes<E>(
        &mut self,
        mut data: &[u8],
        on_body: &mut impl FnMut(u16, &[u8]) -> Result<(), E>,
    ) -> Result<(), FeedError<E>> {
        let status = self.status;
        let framing = |e| Err(FeedError::Http(e));
        while let Some((&b, rest)) = data.split_first() {
            let Some(state) = self.body else {
                return Ok(());
            };
            match state {
                Body::Done => return framing(HttpError::TrailingBytes),
                Body::UntilClose => {
                    on_body(status, data).map_err(FeedError::Sink)?;
                    return Ok(());
                }
                Body::Length(left) | Body::ChunkData(left) => {
                    let k = (left as usize).min(data.len());
                    on_body(status, &data[..k]).map_err(FeedError::Sink)?;
                    data = &data[k..];
                    let left = left - k as u64;
                    self.body = Some(match (state, left) {
                        (Body::Length(_), 0) => Body::Done,
                        (Body::Length(_), n) => Body::Length(n),
                        (_, 0) => Body::ChunkDataCr,
                        (_, n) => Body::ChunkData(n),
                    });
                    continue;
                }
                Body::ChunkSize { value, digits, ext } => {
                    self.body = Some(match (b, ext) {
                        (b'\r', _) if digits > 0 => Body::ChunkSizeLf { value },
                        (_, true) => state,
                        (b';', false) if digits > 0 => Body::ChunkSize {
                            value,
                            digits,
                            ext: true,
                        },
                        (b' ' | b'\t', false) => state,
                        (_, false) => {
                            let Some(d) = (b as char).to_digit(16) else {
                                return framing(HttpError::BadChunkSize);
                            };
                            if digits >= 15 {
                                return framing(HttpError::BadChunkSize);
                            }
                            Body::ChunkSize {
                                value: value * 16 + u64::from(d),
                                digits: digits + 1,
                                ext,
                            }
                        }
                    });
                }
                Body::ChunkSizeLf { value } => {
                    if b != b'\n' {
                        return framing(HttpError::BadChunkFraming);
                    }
                    self.body = Some(if value == 0 {
                        Body::Trailer { len: 0, cr: false }
                    } else {
                        Body::ChunkData(value)
                    });
                }
                Body::ChunkDataCr | Body::ChunkDataLf => {
                    let want = if state == Body::ChunkDataCr {
                        b'\r'
                    } else {
                        b'\n'
                    };
                    if b != want {
                        return framing(HttpError::BadChunkFraming);
                    }
                    self.body = Some(if state == Body::ChunkDataCr {
                        Body::ChunkDataLf
                    } else {
                        Body::ChunkSize {
                            value: 0,
                            digits: 0,
                            ext: false,
                        }
                    });
                }
                Body::Trailer { len, cr } => {
                    self.body = Some(match b {
                        b'\n' if cr && len == 0 => Body::Done,
                        b'\n' if cr => Body::Trailer { len: 0, cr: false },
                        b'\r' => Body::Trailer { len, cr: true },
                        _ if len > MAX_HEAD => return framing(HttpError::HeadTooLarge),
                        _ => Body::Trailer {
                            len: len + 1,
                            cr: false,
                        },
                    });
                }
            }
            data = rest;
        }
        Ok(())
    }
}

/// A malformed response, or an error from the body consumer.
#[derive(Debug, PartialEq, Eq)]
pub enum FeedError<E> {
    Http(HttpError),
    Sink(E),
}

/// A GET request for `path` on `host`, keep-alive, into `out` (cleared first).
pub fn get_request(out: &mut Vec<u8>, host: &str, path: &str) {
    out.clear();
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nUser-Agent: livecdn-loadgen\r\nAccept: */*\r\n\r\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Feeds `wire` split at every position (and byte by byte); returns (status, body, close).
    fn parse_all(wire: &[u8]) -> (u16, Vec<u8>, bool) {
        let mut first = None;
        for split in 0..=wire.len() {
            for pieces in [
                vec![&wire[..split], &wire[split..]],
                wire.chunks(1).collect::<Vec<_>>(),
            ] {
                let mut r = Response::new();
                let mut body = Vec::new();
                for p in pieces {
                    r.feed(p, &mut |_, b: &[u8]| {
                        body.extend_from_slice(b);
                        Ok::<(), ()>(())
                    })
                    .unwrap();
                }
                assert!(r.is_done(), "incomplete at split {split}");
                let got = (r.status, body, r.close);
                match &first {
                    None => first = Some(got),
                    Some(f) => assert_eq!(f, &got, "split {split}"),
                }
            }
        }
        first.unwrap()
    }

    #[test]
    fn content_length_and_chunked_bodies() {
        let (s, b, c) =
            parse_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: x\r\n\r\nhello");
        assert_eq!((s, b.as_slice(), c), (200, &b"hello"[..], false));
        let (s, b, c) = parse_all(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n3\r\n, w\r\n0\r\nX-T: 1\r\n\r\n",
        );
        assert_eq!((s, b.as_slice(), c), (200, &b"hello, w"[..], false));
        let (s, b, c) =
            parse_all(b"HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
        assert_eq!((s, b.len(), c), (404, 0, true));
        let (s, _, c) = parse_all(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx");
        assert_eq!((s, c), (200, true));
    }

    #[test]
    fn until_close_and_errors() {
        let mut r = Response::new();
        let mut n = 0;
        r.feed(b"HTTP/1.1 200 OK\r\n\r\nabc", &mut |s, b: &[u8]| {
            assert_eq!(s, 200);
            n += b.len();
            Ok::<(), ()>(())
        })
        .unwrap();
        assert!(!r.is_done() && r.close);
        r.eof();
        assert!(r.is_done());
        assert_eq!(n, 3);
        let mut sink = |_, _: &[u8]| Ok::<(), ()>(());
        let mut r = Response::new();
        assert_eq!(
            r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy", &mut sink),
            Err(FeedError::Http(HttpError::TrailingBytes))
        );
        let mut r = Response::new();
        assert_eq!(
            r.feed(b"SSH-2.0\r\n\r\n", &mut sink),
            Err(FeedError::Http(HttpError::BadStatusLine))
        );
        let mut r = Response::new();
        assert!(r.is_untouched());
        assert_eq!(
            r.feed(&vec![b'a'; MAX_HEAD + 10], &mut sink),
            Err(FeedError::Http(HttpError::HeadTooLarge))
        );
        let mut r = Response::new();
        let mut failing = |_, _: &[u8]| Err("stop");
        assert_eq!(
            r.feed(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
                &mut failing
            ),
            Err(FeedError::Sink("stop"))
        );
    }

    #[test]
    fn request() {
        let mut v = vec![1, 2];
        get_request(&mut v, "h:1", "/a/b.m3u8?_HLS_msn=3");
        assert_eq!(
            v,
            b"GET /a/b.m3u8?_HLS_msn=3 HTTP/1.1\r\nHost: h:1\r\nUser-Agent: livecdn-loadgen\r\nAccept: */*\r\n\r\n"
        );
    }
}
