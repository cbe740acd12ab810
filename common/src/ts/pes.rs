//! PES packet headers and 90 kHz timestamps (ISO/IEC 13818-1 2.4.3.6). Must not touch the
//! payload: the header is built on the stack and the payload is gathered by the packetizer.

use super::TIMESTAMP_MASK;

/// stream_id of the first video stream (ITU-T H.264/H.265 in 13818-1 terms).
pub const STREAM_ID_VIDEO: u8 = 0xe0;
/// stream_id of the first MPEG audio stream (AAC/ADTS).
pub const STREAM_ID_AUDIO: u8 = 0xc0;

/// Largest header: start code + stream_id (4), PES_packet_length (2), flags (3), PTS and DTS (10).
pub const MAX_PES_HEADER: usize = 19;

/// A 90 kHz timestamp for a time in milliseconds, wrapped to the 33 bits TS carries. Wrapping
/// (instead of failing) is what a 26.5-hour stream needs and keeps any input safe; because
/// 2^33 divides 2^64, a time that wrapped below zero (`dts + cts < 0`) still lands right.
pub fn timestamp_90k(ms: u64) -> u64 {
    ms.wrapping_mul(90) & TIMESTAMP_MASK
}

/// Writes a PES header into `buf` and returns its length. `dts` is left out when it equals
/// `pts` (a PTS alone means DTS = PTS). PES_packet_length is 0 ("unbounded", allowed for video
/// only) when the packet is longer than the 16-bit field can say.
pub fn pes_header(
    buf: &mut [u8; MAX_PES_HEADER],
    stream_id: u8,
    pts: u64,
    dts: Option<u64>,
    payload_len: usize,
) -> usize {
    let dts = dts.filter(|&d| d != pts);
    let ts_len = if dts.is_some() { 10 } else { 5 };
    // Bytes after PES_packet_length: the 3 flag/length bytes, timestamps, then the payload.
    let packet_len = u16::try_from(payload_len.saturating_add(3 + ts_len)).unwrap_or(0);
    buf[0..4].copy_from_slice(&[0, 0, 1, stream_id]);
    buf[4..6].copy_from_slice(&packet_len.to_be_bytes());
    // '10' marker, data_alignment_indicator: every PES starts with a whole access unit.
    buf[6] = 0x84;
    buf[7] = if dts.is_some() { 0xc0 } else { 0x80 };
    buf[8] = ts_len as u8;
    match dts {
        Some(dts) => {
            put_timestamp(&mut buf[9..14], 0x3, pts);
            put_timestamp(&mut buf[14..19], 0x1, dts);
        }
        None => put_timestamp(&mut buf[9..14], 0x2, pts),
    }
    9 + ts_len
}

/// The 5-byte PTS/DTS field: 4-bit prefix, then 3 + 15 + 15 bits, each group followed by a
/// marker bit.
fn put_timestamp(out: &mut [u8], prefix: u8, ts: u64) {
    let ts = ts & TIMESTAMP_MASK;
    let bytes = [
        (prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1,
        (ts >> 22) as u8,
        (((ts >> 15) as u8) << 1) | 1,
        (ts >> 7) as u8,
        ((ts as u8) << 1) | 1,
    ];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b;
    }
}

/// Reads a 5-byte PTS/DTS field back (for tests and tools); `None` if too short.
pub fn read_timestamp(field: &[u8]) -> Option<u64> {
    let b = field.get(..5)?;
    Some(
        (u64::from(b[0] >> 1) & 0x07) << 30
            | u64::from(b[1]) << 22
            | u64::from(b[2] >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4] >> 1),
    )
}
