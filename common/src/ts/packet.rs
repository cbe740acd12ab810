//! Transport packetization: cuts one PES packet or PSI section into 188-byte TS packets with
//! per-PID continuity counters and adaptation fields (ISO/IEC 13818-1 2.4.3). Must not allocate
//! or buffer: it copies straight from the caller's slices into the output.

use bytes::{BufMut, BytesMut};

/// Bytes in a transport packet.
pub const PACKET_LEN: usize = 188;
/// The sync_byte every packet starts with.
pub const SYNC_BYTE: u8 = 0x47;
/// Bytes after the 4-byte packet header: adaptation field plus payload.
const BODY_LEN: usize = PACKET_LEN - 4;

const AF_DISCONTINUITY: u8 = 0x80;
const AF_RANDOM_ACCESS: u8 = 0x40;
const AF_PCR: u8 = 0x10;
const PCR_LEN: usize = 6;

/// What the first packet of a unit signals in its adaptation field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UnitStart {
    /// A decoder can start here (keyframe; every AAC frame).
    pub random_access: bool,
    /// program_clock_reference_base (90 kHz, 33 bits); the extension is always 0.
    pub pcr: Option<u64>,
}

/// The packets of one PID within one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PidWriter {
    pid: u16,
    /// continuity_counter of the next packet. Every segment starts at 0 so that segments are
    /// a pure function of their samples (two edges produce identical bytes).
    cc: u8,
    /// Whether this PID has written a packet in this segment yet.
    started: bool,
}

impl PidWriter {
    pub(crate) fn new(pid: u16) -> Self {
        Self {
            pid: pid & 0x1fff,
            cc: 0,
            started: false,
        }
    }

    /// Writes one unit (`head` then each of `body`) as packets: payload_unit_start on the
    /// first, adaptation-field stuffing on the last (never payload padding, which a PES would
    /// read as data). The first packet of the PID in the segment sets discontinuity_indicator:
    /// its counter restarts at 0, and a demuxer reading segments back to back must not take
    /// that for lost packets.
    pub(crate) fn write_unit(
        &mut self,
        out: &mut BytesMut,
        start: UnitStart,
        head: &[u8],
        body: &[&[u8]],
    ) {
        let total = body
            .iter()
            .fold(head.len(), |n, chunk| n.saturating_add(chunk.len()));
        if total == 0 {
            return;
        }
        let mut src = Gather::new(head, body);
        let mut remaining = total;
        let mut first = true;
        while remaining > 0 {
            let mut flags = 0;
            if !self.started {
                flags |= AF_DISCONTINUITY;
            }
            let mut pcr = None;
            if first {
                if start.random_access {
                    flags |= AF_RANDOM_ACCESS;
                }
                if let Some(base) = start.pcr {
                    flags |= AF_PCR;
                    pcr = Some(base);
                }
            }
            // Adaptation field bytes this packet needs anyway: length, flags, PCR.
            let needed = if flags == 0 {
                0
            } else {
                2 + if pcr.is_some() { PCR_LEN } else { 0 }
            };
            let payload = remaining.min(BODY_LEN - needed);
            let af_len = BODY_LEN - payload;

            let pusi = if first { 0x40 } else { 0 };
            let control = if af_len > 0 { 0x30 } else { 0x10 };
            out.put_u8(SYNC_BYTE);
            out.put_u8(pusi | (self.pid >> 8) as u8);
            out.put_u8(self.pid as u8);
            out.put_u8(control | self.cc);
            if af_len > 0 {
                // adaptation_field_length counts the bytes after itself. A single byte (length
                // 0) is the smallest field and stuffs exactly one byte.
                out.put_u8((af_len - 1) as u8);
                if af_len > 1 {
                    out.put_u8(flags);
                    let mut used = 2;
                    if let Some(base) = pcr {
                        out.put_slice(&pcr_bytes(base));
                        used += PCR_LEN;
                    }
                    out.put_bytes(0xff, af_len - used);
                }
            }
            src.copy_to(out, payload);

            self.cc = (self.cc + 1) & 0x0f;
            self.started = true;
            first = false;
            remaining -= payload;
        }
    }
}

/// The 6 PCR bytes: 33-bit base, 6 reserved bits, 9-bit extension (0).
fn pcr_bytes(base: u64) -> [u8; PCR_LEN] {
    let base = base & super::TIMESTAMP_MASK;
    [
        (base >> 25) as u8,
        (base >> 17) as u8,
        (base >> 9) as u8,
        (base >> 1) as u8,
        ((base & 1) << 7) as u8 | 0x7e,
        0,
    ]
}

/// Reads `head` then the `body` chunks in order, as one byte stream.
struct Gather<'s, 'a> {
    head: &'s [u8],
    body: &'s [&'a [u8]],
    /// Index of the current chunk in `body` (after `head` is used up).
    chunk: usize,
    /// Bytes of the current chunk already copied.
    offset: usize,
}

impl<'s, 'a> Gather<'s, 'a> {
    fn new(head: &'s [u8], body: &'s [&'a [u8]]) -> Self {
        Self {
            head,
            body,
            chunk: 0,
            offset: 0,
        }
    }

    /// Copies the next `n` bytes (fewer only if the stream ends first) into `out`.
    fn copy_to(&mut self, out: &mut BytesMut, mut n: usize) {
        if !self.head.is_empty() {
            let k = n.min(self.head.len());
            let (now, later) = self.head.split_at(k);
            out.put_slice(now);
            self.head = later;
            n -= k;
        }
        while n > 0 {
            let Some(chunk) = self.body.get(self.chunk) else {
                return;
            };
            let rest = chunk.get(self.offset..).unwrap_or_default();
            let k = n.min(rest.len());
            out.put_slice(&rest[..k]);
            n -= k;
            if k == rest.len() {
                self.chunk += 1;
                self.offset = 0;
            } else {
                self.offset += k;
            }
        }
    }
}
