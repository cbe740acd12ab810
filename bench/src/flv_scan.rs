//! Lean HTTP-FLV parsing for load-generating players: the response head, chunked transfer
//! decoding and an FLV tag scanner that keeps only the first bytes of each tag body (no
//! reassembly, no copy of bodies). Sans-IO.

/// Bytes kept of each tag body.
pub const PREFIX: usize = 24;
const MAX_TAG: u32 = 16 * 1024 * 1024;
const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlvScanError {
    BadSignature,
    BadHeaderSize(u32),
    TagTooLarge(u32),
    BadChunkSize,
    BadChunkFraming,
    HeadTooLarge,
    BadStatusLine,
}

impl std::fmt::Display for FlvScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// The response head, once complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub chunked: bool,
    /// Bytes of the head (the body starts after them).
    pub len: usize,
}

/// Parses an HTTP/1.1 response head from the start of `buf`; `Ok(None)`: need more bytes.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, FlvScanError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(FlvScanError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or(FlvScanError::BadStatusLine)?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    Ok(Some(Head {
        status,
        chunked,
        len: end + 4,
    }))
}

#[derive(Debug, Clone, Copy)]
enum ChunkState {
    Size {
        value: u64,
        digits: u8,
        ext: bool,
    },
    SizeLf {
        value: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// After the last (zero) chunk: trailers, ignored.
    Done,
}

/// Decodes `Transfer-Encoding: chunked`, handing out data slices without copying.
#[derive(Debug)]
pub struct Dechunker {
    state: ChunkState,
}

impl Default for Dechunker {
    fn default() -> Self {
        Self::new()
    }
}

impl Dechunker {
    pub fn new() -> Self {
        Dechunker {
            state: ChunkState::Size {
                value: 0,
                digits: 0,
                ext: false,
            },
        }
    }

    /// True once the terminating zero-size chunk was seen.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ChunkState::Done)
    }

    pub fn feed(
        &mut self,
        mut data: &[u8],
        on_data: &mut impl FnMut(&[u8]) -> Result<(), FlvScanError>,
    ) -> Result<(), FlvScanError> {
        while let Some((&b, rest)) = data.split_first() {
            match self.state {
                ChunkState::Data { left } => {
                    let k = (left as usize).min(data.len());
                    on_data(&data[..k])?;
                    data = &data[k..];
                    let left = left - k as u64;
                    self.state = if left == 0 {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data { left }
                    };
                    continue;
                }
                ChunkState::Size { value, digits, ext } => {
                    self.state = match (b, ext) {
                        (b'\r', _) if digits > 0 => ChunkState::SizeLf { value },
                        (_, true) => ChunkState::Size { value, digits, ext },
                        (b';', false) if digits > 0 => ChunkState::Size {
                            value,
                            digits,
                            ext: true,
                        },
                        (b' ' | b'\t', false) => ChunkState::Size { value, digits, ext },
                        (_, false) => {
                            let d = (b as char).to_digit(16).ok_or(FlvScanError::BadChunkSize)?;
                            if digits >= 15 {
                                return Err(FlvScanError::BadChunkSize);
                            }
                            ChunkState::Size {
                                value: value * 16 + u64::from(d),
                                digits: digits + 1,
                                ext,
                            }
                        }
                    };
                }
                ChunkState::SizeLf { value } => {
                    if b != b'\n' {
                        return Err(FlvScanError::BadChunkFraming);
                    }
                    self.state = if value == 0 {
                        ChunkState::Done
                    } else {
                        ChunkState::Data { left: value }
                    };
                }
                ChunkState::DataCr => {
                    if b != b'\r' {
                        return Err(FlvScanError::BadChunkFraming);
                    }
                    self.state = ChunkState::DataLf;
                }
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Err(FlvScanError::BadChunkFraming);
                    }
                    self.state = ChunkState::Size {
                        value: 0,
                        digits: 0,
                        ext: false,
                    };
                }
                ChunkState::Done => return Ok(()),
            }
            data = rest;
        }
        Ok(())
    }
}

/// One FLV tag: its type, timestamp, body length and the first [`PREFIX`] body bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Tag<'a> {
    pub tag_type: u8,
    pub timestamp: u32,
    pub len: u32,
    pub prefix: &'a [u8],
}

#[derive(Debug, Clone, Copy)]
enum FlvState {
    /// The 9-byte file header (accumulated in `acc`).
    FileHeader,
    /// Skipping the rest of the file header and PreviousTagSize0 / a PreviousTagSize.
    Skip(u32),
    TagHeader,
    Body {
        left: u32,
    },
}

/// Incremental FLV scanner over the (de-chunked) body.
#[derive(Debug)]
pub struct FlvScanner {
    state: FlvState,
    acc: [u8; 11],
    acc_len: usize,
    tag_type: u8,
    timestamp: u32,
    len: u32,
    prefix: [u8; PREFIX],
    prefix_len: usize,
}

impl Default for FlvScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl FlvScanner {
    pub fn new() -> Self {
        FlvScanner {
            state: FlvState::FileHeader,
            acc: [0; 11],
            acc_len: 0,
            tag_type: 0,
            timestamp: 0,
            len: 0,
            prefix: [0; PREFIX],
            prefix_len: 0,
        }
    }

    pub fn feed(
        &mut self,
        mut data: &[u8],
        on_tag: &mut impl FnMut(Tag<'_>),
    ) -> Result<(), FlvScanError> {
        while !data.is_empty() {
            match self.state {
                FlvState::FileHeader | FlvState::TagHeader => {
                    let want = if matches!(self.state, FlvState::FileHeader) {
                        9
                    } else {
                        11
                    };
                    let k = (want - self.acc_len).min(data.len());
                    self.acc[self.acc_len..self.acc_len + k].copy_from_slice(&data[..k]);
                    self.acc_len += k;
                    data = &data[k..];
                    if self.acc_len < want {
                        continue;
                    }
                    self.acc_len = 0;
                    let a = self.acc;
                    if want == 9 {
                        if &a[..3] != b"FLV" {
                            return Err(FlvScanError::BadSignature);
                        }
                        let header_len = u32::from_be_bytes([a[5], a[6], a[7], a[8]]);
                        if !(9..=1024).contains(&header_len) {
                            return Err(FlvScanError::BadHeaderSize(header_len));
                        }
                        self.state = FlvState::Skip(header_len - 9 + 4);
                    } else {
                        self.tag_type = a[0] & 0x1f;
                        self.len = u32::from_be_bytes([0, a[1], a[2], a[3]]);
                        self.timestamp = u32::from_be_bytes([a[7], a[4], a[5], a[6]]);
                        if self.len > MAX_TAG {
                            return Err(FlvScanError::TagTooLarge(self.len));
                        }
                        self.prefix_len = 0;
                        if self.len == 0 {
                            self.emit(on_tag);
                        } else {
                            self.state = FlvState::Body { left: self.len };
                        }
                    }
                }
                FlvState::Skip(n) => {
                    let k = (n as usize).min(data.len());
                    data = &data[k..];
                    let n = n - k as u32;
                    self.state = if n == 0 {
                        FlvState::TagHeader
                    } else {
                        FlvState::Skip(n)
                    };
                }
                FlvState::Body { left } => {
                    let k = (left as usize).min(data.len());
                    if self.prefix_len < PREFIX {
                        let n = (PREFIX - self.prefix_len).min(k);
                        self.prefix[self.prefix_len..self.prefix_len + n]
                            .copy_from_slice(&data[..n]);
                        self.prefix_len += n;
                    }
                    data = &data[k..];
                    let left = left - k as u32;
                    if left == 0 {
                        self.emit(on_tag);
                    } else {
                        self.state = FlvState::Body { left };
                    }
                }
            }
        }
        Ok(())
    }

    fn emit(&mut self, on_tag: &mut impl FnMut(Tag<'_>)) {
        on_tag(Tag {
            tag_type: self.tag_type,
            timestamp: self.timestamp,
            len: self.len,
            prefix: &self.prefix[..self.prefix_len],
        });
        self.state = FlvState::Skip(4);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use common::flv::{FlvReader, file_header};

    fn flv_stream() -> Vec<u8> {
        let mut out = file_header(true, true).to_vec();
        for (i, len) in [0usize, 5, 24, 25, 10_000, 3].iter().enumerate() {
            let body: Vec<u8> = (0..*len).map(|j| (i * 7 + j) as u8).collect();
            let t = common::flv::FlvTag {
                tag_type: if i % 2 == 0 { 9 } else { 8 },
                timestamp_ms: 0x0100_0000 + i as u32 * 40,
                payload: body.into(),
            };
            let mut b = BytesMut::new();
            t.encode(&mut b);
            out.extend_from_slice(&b);
        }
        out
    }

    fn chunked(body: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for c in body.chunks(size) {
            out.extend_from_slice(format!("{:X};x=y\r\n", c.len()).as_bytes());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    #[test]
    fn scans_what_flv_reader_reads() {
        let flv = flv_stream();
        let mut reader = FlvReader::new(1 << 24);
        let mut buf = BytesMut::from(&flv[..]);
        let mut want = Vec::new();
        while let Some(t) = reader.decode(&mut buf).unwrap() {
            let n = PREFIX.min(t.payload.len());
            want.push((
                t.tag_type,
                t.timestamp_ms,
                t.payload.len() as u32,
                t.payload[..n].to_vec(),
            ));
        }
        assert_eq!(want.len(), 6);
        for (csize, split) in [(1, 1), (7, 3), (100, 1000), (4096, 11), (1 << 20, 1 << 20)] {
            let wire = chunked(&flv, csize);
            let mut d = Dechunker::new();
            let mut s = FlvScanner::new();
            let mut got = Vec::new();
            for part in wire.chunks(split) {
                d.feed(part, &mut |data| {
                    s.feed(data, &mut |t| {
                        got.push((t.tag_type, t.timestamp, t.len, t.prefix.to_vec()))
                    })
                })
                .unwrap();
            }
            assert!(d.is_done());
            assert_eq!(got, want, "chunk {csize} split {split}");
        }
    }

    #[test]
    fn parses_the_response_head() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: video/x-flv\r\nTransfer-Encoding: chunked\r\n\r\nFLV";
        let h = parse_head(head).unwrap().unwrap();
        assert_eq!((h.status, h.chunked, h.len), (200, true, head.len() - 3));
        assert_eq!(parse_head(b"HTTP/1.1 404 Not").unwrap(), None);
        let h = parse_head(b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.status, h.chunked), (404, false));
    }

    #[test]
    fn garbage_is_an_error() {
        let mut s = FlvScanner::new();
        assert_eq!(
            s.feed(b"GIF89a...", &mut |_| {}),
            Err(FlvScanError::BadSignature)
        );
        let mut d = Dechunker::new();
        assert_eq!(
            d.feed(b"zz\r\n", &mut |_| Ok(())),
            Err(FlvScanError::BadChunkSize)
        );
    }
}
