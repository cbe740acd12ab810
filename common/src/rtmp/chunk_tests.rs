//! Tests of the chunk stream codec: round trips, byte-by-byte input, hand-built headers,
//! limits and hostile input.

#![allow(clippy::unwrap_used)]

use super::*;

const CHUNK_SIZES: [u32; 5] = [1, 128, 1000, 4096, 65536];
const TIMESTAMPS: [u32; 5] = [0, 0xFF_FFFE, 0xFF_FFFF, 0x100_0000, u32::MAX];
const CSIDS: [u32; 6] = [2, 63, 64, 319, 320, 65599];

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn lengths(cs: usize) -> Vec<usize> {
    vec![0, 1, cs - 1, cs, cs + 1, 3 * cs + 7]
}

fn decoder(chunk_size: u32) -> ChunkDecoder {
    let mut d = ChunkDecoder::default();
    d.set_chunk_size(chunk_size).unwrap();
    d
}

fn encode(cs: u32, csid: u32, ts: u32, type_id: u8, sid: u32, payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    encode_message(cs, csid, ts, type_id, sid, payload, &mut out);
    assert_eq!(out.len(), encoded_len(cs, csid, ts, payload.len()));
    out
}

/// Decodes everything in `buf`, asserting the decoder's bounds after every call.
fn drain(d: &mut ChunkDecoder, buf: &mut BytesMut) -> Vec<RawMessage> {
    let mut out = Vec::new();
    while let Some(m) = d.decode(buf).unwrap() {
        out.push(m);
    }
    assert!(buf.len() < d.input_bound());
    out
}

fn feed_bytewise(d: &mut ChunkDecoder, input: &[u8]) -> Vec<RawMessage> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for &b in input {
        buf.put_u8(b);
        out.extend(drain(d, &mut buf));
    }
    assert!(buf.is_empty());
    out
}

#[test]
fn round_trip_matrix() {
    for cs in CHUNK_SIZES {
        for ts in TIMESTAMPS {
            for csid in CSIDS {
                for len in lengths(cs as usize) {
                    let payload = pattern(len, csid as u8);
                    let mut buf = encode(cs, csid, ts, 9, 1, &payload);
                    let total = buf.len() as u64;
                    let mut d = decoder(cs);
                    let got = drain(&mut d, &mut buf);
                    let want = RawMessage {
                        csid,
                        timestamp: ts,
                        type_id: 9,
                        stream_id: 1,
                        payload: Bytes::from(payload),
                    };
                    assert_eq!(got, vec![want], "cs {cs} ts {ts} csid {csid} len {len}");
                    assert!(buf.is_empty());
                    assert_eq!(d.bytes_received(), total);
                    assert_eq!(d.buffered_bytes(), 0);
                }
            }
        }
    }
}

#[test]
fn byte_at_a_time_matches_whole_buffer() {
    for cs in [1, 128, 1000] {
        let mut input = BytesMut::new();
        let mut n = 0;
        for ts in TIMESTAMPS {
            for csid in CSIDS {
                for len in lengths(cs as usize) {
                    let p = pattern(len, n as u8);
                    encode_message(cs, csid, ts, 8, 7, &p, &mut input);
                    n += 1;
                }
            }
        }
        let whole = drain(&mut decoder(cs), &mut input.clone());
        assert_eq!(whole.len(), n);
        let bytewise = feed_bytewise(&mut decoder(cs), &input);
        assert_eq!(whole, bytewise);
    }
}

#[test]
fn interleaved_chunk_streams() {
    let a = pattern(300, 1);
    let b = pattern(300, 2);
    let ea = encode(128, 4, 1000, 9, 1, &a);
    let eb = encode(128, 6, 2000, 8, 1, &b);
    // Both: 12+128, 1+128, 1+44 bytes per chunk (1-byte basic headers, no extended ts).
    let cuts = [(0, 140), (140, 269), (269, 314)];
    let mut input = BytesMut::new();
    for (from, to) in cuts {
        input.extend_from_slice(&ea[from..to]);
        input.extend_from_slice(&eb[from..to]);
    }
    let mut d = ChunkDecoder::default();
    let got = drain(&mut d, &mut input);
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].csid, got[0].timestamp, &got[0].payload[..]),
        (4, 1000, &a[..])
    );
    assert_eq!(
        (got[1].csid, got[1].timestamp, &got[1].payload[..]),
        (6, 2000, &b[..])
    );
}

#[test]
fn header_types_accumulate_deltas() {
    let mut v: Vec<u8> = Vec::new();
    // fmt 0, csid 3: ts 1000, len 3, type 8, stream 1
    v.extend([0x03, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x03, 0x08, 1, 0, 0, 0]);
    v.extend(b"abc");
    // fmt 1: delta 20, len 2, type 9
    v.extend([0x43, 0x00, 0x00, 0x14, 0x00, 0x00, 0x02, 0x09]);
    v.extend(b"de");
    // fmt 2: delta 30
    v.extend([0x83, 0x00, 0x00, 0x1E]);
    v.extend(b"fg");
    // fmt 3: new message, same delta
    v.extend([0xC3]);
    v.extend(b"hi");
    // fmt 1 with an extended delta, then fmt 3 reusing it (4 bytes read again)
    v.extend([
        0x43, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x01, 0x08, 0x01, 0x00, 0x00, 0x00,
    ]);
    v.extend(b"j");
    v.extend([0xC3, 0x01, 0x00, 0x00, 0x00]);
    v.extend(b"k");
    for split_bytewise in [false, true] {
        let mut d = ChunkDecoder::default();
        let got = if split_bytewise {
            feed_bytewise(&mut d, &v)
        } else {
            drain(&mut d, &mut BytesMut::from(&v[..]))
        };
        let summary: Vec<(u32, u8, u32, &[u8])> = got
            .iter()
            .map(|m| (m.timestamp, m.type_id, m.stream_id, &m.payload[..]))
            .collect();
        let j = 1080 + 0x100_0000;
        assert_eq!(
            summary,
            vec![
                (1000, 8, 1, &b"abc"[..]),
                (1020, 9, 1, &b"de"[..]),
                (1050, 9, 1, &b"fg"[..]),
                (1080, 9, 1, &b"hi"[..]),
                (j, 8, 1, &b"j"[..]),
                (j + 0x100_0000, 8, 1, &b"k"[..]),
            ]
        );
    }
}

#[test]
fn type3_after_type0_adds_the_absolute_timestamp_again() {
    let mut v = vec![
        0x03, 0x00, 0x00, 0x64, 0x00, 0x00, 0x01, 0x08, 0, 0, 0, 0, b'a',
    ];
    v.extend([0xC3, b'b']);
    let got = drain(&mut ChunkDecoder::default(), &mut BytesMut::from(&v[..]));
    assert_eq!(got[0].timestamp, 100);
    assert_eq!(got[1].timestamp, 200);
}

#[test]
fn timestamps_wrap() {
    let mut v = vec![0x03, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 0];
    v.extend(u32::MAX.to_be_bytes());
    v.extend([0x83, 0x00, 0x00, 0x05]);
    let got = drain(&mut ChunkDecoder::default(), &mut BytesMut::from(&v[..]));
    assert_eq!(got[0].timestamp, u32::MAX);
    assert_eq!(got[1].timestamp, 4);
    assert!(got[1].payload.is_empty());
}

#[test]
fn continuation_without_repeated_extended_timestamp() {
    // Some encoders omit the extended timestamp in type-3 continuations.
    let ts = 0x0123_4567u32;
    let payload = pattern(200, 9);
    let mut v = vec![0x04, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 200, 0x09, 1, 0, 0, 0];
    v.extend(ts.to_be_bytes());
    v.extend(&payload[..128]);
    v.push(0xC4);
    v.extend(&payload[128..]);
    let got = feed_bytewise(&mut ChunkDecoder::default(), &v);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].timestamp, ts);
    assert_eq!(&got[0].payload[..], &payload[..]);
}

#[test]
fn set_chunk_size_changes_how_following_chunks_are_read() {
    let mut input = encode(128, 2, 0, 1, 0, &4096u32.to_be_bytes());
    let big = pattern(10_000, 3);
    input.extend_from_slice(&encode(4096, 6, 40, 9, 1, &big));
    let mut d = ChunkDecoder::default();
    let got = drain(&mut d, &mut input);
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].type_id, &got[0].payload[..]),
        (1, &4096u32.to_be_bytes()[..])
    );
    assert_eq!(&got[1].payload[..], &big[..]);
    assert_eq!(d.chunk_size(), 4096);
}

#[test]
fn abort_drops_partial_message() {
    let mut input = encode(128, 5, 10, 9, 1, &pattern(300, 1));
    input.truncate(140); // first chunk only
    input.extend_from_slice(&encode(128, 2, 0, 2, 0, &5u32.to_be_bytes()));
    input.extend_from_slice(&[0xC5]); // type 3: now a new 300-byte message at ts 20
    input.extend_from_slice(&pattern(128, 2));
    let mut d = ChunkDecoder::default();
    let got = drain(&mut d, &mut input);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].type_id, 2);
    assert!(d.buffered_bytes() > 0);
    d.abort(5);
    assert_eq!(d.buffered_bytes(), 0);
}

#[test]
fn invalid_chunk_sizes() {
    let mut d = ChunkDecoder::default();
    assert_eq!(d.set_chunk_size(0), Err(ChunkError::InvalidChunkSize(0)));
    assert_eq!(
        d.set_chunk_size(MAX_CHUNK_SIZE + 1),
        Err(ChunkError::InvalidChunkSize(MAX_CHUNK_SIZE + 1))
    );
    assert_eq!(d.set_chunk_size(MAX_CHUNK_SIZE), Ok(()));
    for bad in [0u32, MAX_CHUNK_SIZE + 1, 0x8000_0080] {
        let mut input = encode(128, 2, 0, 1, 0, &bad.to_be_bytes());
        let r = ChunkDecoder::default().decode(&mut input);
        assert_eq!(r, Err(ChunkError::InvalidChunkSize(bad)));
    }
    let mut input = encode(128, 2, 0, 1, 0, &[0, 1]);
    assert_eq!(
        ChunkDecoder::default().decode(&mut input),
        Err(ChunkError::MalformedControl { type_id: 1, len: 2 })
    );
}

#[test]
fn header_without_type0_is_rejected() {
    for first in [0xC3u8, 0x83, 0x43] {
        let mut input = BytesMut::from(&[first, 0, 0, 0, 0, 0, 0, 0][..]);
        assert_eq!(
            ChunkDecoder::default().decode(&mut input),
            Err(ChunkError::UnknownChunkStream(3))
        );
    }
}

#[test]
fn message_above_max_is_rejected() {
    let limits = DecoderLimits {
        max_message_size: 1000,
        ..DecoderLimits::default()
    };
    let mut input = encode(128, 3, 0, 9, 1, &pattern(1001, 0));
    input.truncate(12); // the header alone is enough to reject it
    assert_eq!(
        ChunkDecoder::new(limits).decode(&mut input),
        Err(ChunkError::MessageTooLarge {
            len: 1001,
            max: 1000
        })
    );
    let mut ok = encode(128, 3, 0, 9, 1, &pattern(1000, 0));
    assert_eq!(drain(&mut ChunkDecoder::new(limits), &mut ok).len(), 1);
}

#[test]
fn command_above_its_max_is_rejected_from_the_header() {
    let limits = DecoderLimits {
        max_command_size: 1000,
        ..DecoderLimits::default()
    };
    // Commands (20, 17), data (18, 15) and control messages are bounded by the command limit,
    // from the header alone (nothing of a 16 MiB command is buffered).
    for type_id in [20u8, 17, 18, 15, 19, 4] {
        let mut input = encode(128, 3, 0, type_id, 0, &pattern(0xFF_FFFF, 0));
        input.truncate(12);
        let mut d = ChunkDecoder::new(limits);
        assert_eq!(
            d.decode(&mut input),
            Err(ChunkError::CommandTooLarge {
                type_id,
                len: 0xFF_FFFF,
                max: 1000
            })
        );
        assert_eq!(d.buffered_bytes(), 0);
    }
    // Media is not.
    for type_id in [8u8, 9, 22] {
        let mut ok = encode(128, 3, 0, type_id, 1, &pattern(5000, 0));
        assert_eq!(drain(&mut ChunkDecoder::new(limits), &mut ok).len(), 1);
    }
    let mut ok = encode(128, 3, 0, 20, 0, &pattern(1000, 0));
    assert_eq!(drain(&mut ChunkDecoder::new(limits), &mut ok).len(), 1);
    // Widened limits apply to the next message.
    let mut d = ChunkDecoder::new(limits);
    d.set_limits(DecoderLimits::default());
    let mut big = encode(128, 3, 0, 20, 0, &pattern(5000, 0));
    assert_eq!(drain(&mut d, &mut big).len(), 1);
}

#[test]
fn too_many_chunk_streams() {
    let limits = DecoderLimits {
        max_chunk_streams: 2,
        ..DecoderLimits::default()
    };
    let mut d = ChunkDecoder::new(limits);
    let mut input = encode(128, 3, 0, 9, 1, b"x");
    input.extend_from_slice(&encode(128, 4, 0, 9, 1, b"y"));
    input.extend_from_slice(&encode(128, 3, 0, 9, 1, b"z"));
    assert_eq!(drain(&mut d, &mut input).len(), 3);
    let mut input = encode(128, 5, 0, 9, 1, b"w");
    assert_eq!(d.decode(&mut input), Err(ChunkError::TooManyChunkStreams));
}

#[test]
fn buffer_limit() {
    let limits = DecoderLimits {
        max_buffered_bytes: 1000,
        ..DecoderLimits::default()
    };
    let mut d = ChunkDecoder::new(limits);
    let mut input = BytesMut::new();
    for csid in 3..15 {
        let e = encode(128, csid, 0, 9, 1, &pattern(5000, 0));
        input.extend_from_slice(&e[..140]);
    }
    // One call consumes chunks until a message completes (none can here) or an error.
    assert_eq!(d.decode(&mut input), Err(ChunkError::BufferLimit));
    assert!(d.buffered_bytes() <= 1000);
}

#[test]
fn partial_buffer_never_exceeds_the_message_length() {
    let payload = pattern(100_000, 5);
    let input = encode(4096, 6, 0, 9, 1, &payload);
    let mut d = decoder(4096);
    let mut buf = BytesMut::new();
    let mut peak = 0;
    let mut got = Vec::new();
    for piece in input.chunks(1000) {
        buf.extend_from_slice(piece);
        got.extend(drain(&mut d, &mut buf));
        peak = peak.max(d.buffered_bytes());
    }
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], &payload[..]);
    assert!(peak > 50_000 && peak <= 100_000, "peak {peak}");
    assert_eq!(d.buffered_bytes(), 0);
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn hostile(input: &[u8], rng: &mut XorShift, limits: DecoderLimits) -> usize {
    let mut d = ChunkDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut pos = 0;
    let mut messages = 0;
    while pos < input.len() {
        let take = (rng.next() % 64 + 1) as usize;
        let end = (pos + take).min(input.len());
        buf.extend_from_slice(&input[pos..end]);
        pos = end;
        loop {
            match d.decode(&mut buf) {
                Ok(Some(m)) => {
                    messages += 1;
                    assert!(m.payload.len() <= limits.max_message_size as usize);
                }
                Ok(None) => {
                    assert!(buf.len() < d.input_bound());
                    break;
                }
                Err(_) => {
                    // The connection would close; start over on the rest of the input.
                    d = ChunkDecoder::new(limits);
                    buf.clear();
                    break;
                }
            }
            assert!(d.buffered_bytes() <= limits.max_buffered_bytes);
            assert!(d.streams.len() <= limits.max_chunk_streams);
        }
    }
    messages
}

#[test]
fn hostile_input_never_panics_and_stays_bounded() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let random: Vec<u8> = (0..100_000).map(|_| rng.next() as u8).collect();
    let small = DecoderLimits {
        max_message_size: 70_000,
        max_command_size: 20_000,
        max_chunk_streams: 8,
        max_buffered_bytes: 100_000,
    };
    hostile(&random, &mut rng, DecoderLimits::default());
    hostile(&random, &mut rng, small);

    // Valid traffic with random corruption reaches deeper states than pure noise.
    let mut valid = BytesMut::new();
    for i in 0..200u32 {
        let len = (rng.next() % 3000) as usize;
        let ts = if i % 7 == 0 { 0xFF_FFFF + i } else { i * 40 };
        encode_message(128, 3 + i % 5, ts, 9, 1, &pattern(len, i as u8), &mut valid);
    }
    let mut total = 0;
    for _ in 0..50 {
        let mut v = valid.to_vec();
        for _ in 0..(rng.next() % 8) {
            let at = (rng.next() as usize) % v.len();
            v[at] = rng.next() as u8;
        }
        total += hostile(&v, &mut rng, small);
        total += hostile(&v, &mut rng, DecoderLimits::default());
    }
    assert!(total > 0);
}

#[test]
fn encoder_clamps_out_of_range_arguments() {
    let mut out = BytesMut::new();
    encode_message(0, 0, 5, 9, 1, b"abc", &mut out);
    assert_eq!(out.len(), encoded_len(0, 0, 5, 3));
    let got = drain(&mut decoder(1), &mut out);
    assert_eq!((got[0].csid, &got[0].payload[..]), (2, &b"abc"[..]));
}

/// A decoded payload owns exactly its bytes: not a slice of the input buffer (which would keep
/// the whole read buffer alive for as long as a GOP cache holds the frame), and no spare
/// capacity, whether the message came in one chunk or in several.
#[test]
fn decoded_payloads_own_exactly_their_bytes() {
    for (chunk_size, len) in [(60_000, 9_000), (4096, 45_000), (128, 300)] {
        let mut d = decoder(chunk_size);
        let data = pattern(len, 5);
        let mut input = encode(chunk_size, 6, 0, 9, 1, &data);
        // A following message still in the buffer: the input stays alive after the decode.
        input.extend_from_slice(&encode(chunk_size, 6, 40, 9, 1, b"next"));
        let m = d.decode(&mut input).unwrap().expect("message");
        assert!(!input.is_empty());
        let payload = m.payload.try_into_mut().unwrap_or_else(|_| {
            panic!("chunk size {chunk_size}, {len} bytes: payload shares its allocation")
        });
        assert_eq!(payload.capacity(), len, "chunk size {chunk_size}");
        assert_eq!(&payload[..], &data[..]);
    }
}
