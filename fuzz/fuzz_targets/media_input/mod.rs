//! Shared by the HLS fuzz targets: a byte cursor over the fuzzer's input and plausible codec
//! configuration shapes (real encoder records, and bytes from the input), so the H.264, HEVC,
//! AV1 and AAC paths are reached from short inputs. Must not touch the network or filesystem.

#![allow(dead_code)]

use bytes::{BufMut, Bytes, BytesMut};

/// An `avcC` from x264 (Constrained Baseline, 64x48).
pub const AVCC: &[u8] = &[
    0x01, 0x42, 0xc0, 0x0a, 0xff, 0xe1, 0x00, 0x15, 0x67, 0x42, 0xc0, 0x0a, 0xda, 0x11, 0xec, 0x04,
    0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0c, 0x83, 0xc4, 0x89, 0xa8, 0x01, 0x00, 0x04,
    0x68, 0xce, 0x0f, 0xc8,
];

/// An `hvcC` from x265 (Main, 64x48; VPS, SPS and PPS arrays).
pub const HVCC: &[u8] = &[
    0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1e, 0xf0, 0x00, 0xfc,
    0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x03, 0x20, 0x00, 0x01, 0x00, 0x18, 0x40, 0x01, 0x0c, 0x01,
    0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00,
    0x1e, 0x95, 0x98, 0x09, 0x21, 0x00, 0x01, 0x00, 0x29, 0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00,
    0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x1e, 0xa0, 0x20, 0x83, 0x16, 0x59,
    0x59, 0xae, 0x4c, 0xaf, 0x01, 0x68, 0x08, 0x00, 0x00, 0x03, 0x00, 0x08, 0x00, 0x00, 0x03, 0x00,
    0xc8, 0x40, 0x22, 0x00, 0x01, 0x00, 0x06, 0x44, 0x01, 0xc1, 0x73, 0xd0, 0x89,
];

/// An `av1C` from libaom (Main, 64x48) with its sequence header OBU.
pub const AV1C: &[u8] = &[
    0x81, 0x00, 0x0c, 0x00, 0x0a, 0x0a, 0x00, 0x00, 0x00, 0x02, 0xaf, 0xf7, 0x9b, 0x5f, 0x20, 0x08,
];

/// AudioSpecificConfigs: AAC-LC 44.1 kHz stereo, HE-AAC (explicit SBR) 48 kHz, AAC-LC 8 kHz
/// mono, and an escape-coded rate.
pub const ASCS: &[&[u8]] = &[
    &[0x12, 0x10],
    &[0x2b, 0x92, 0x08, 0x00],
    &[0x15, 0x88],
    &[0x17, 0x80, 0xbb, 0x80, 0x10],
];

/// Reads the fuzzer's input front to back; past the end every read yields zeros / empty.
pub struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// Up to `max` bytes, the count taken from the input.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = (usize::from(self.u8()) % (max + 1)).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// A decoder configuration record: the real one for `codec` (sometimes truncated or with
    /// a byte flipped) or bytes from the input.
    pub fn record(&mut self, template: &[u8]) -> Bytes {
        match self.u8() % 4 {
            0 | 1 => Bytes::copy_from_slice(template),
            2 => {
                let mut r = template.to_vec();
                let at = usize::from(self.u8()) % r.len().max(1);
                if let Some(b) = r.get_mut(at) {
                    *b ^= self.u8() | 1;
                }
                r.truncate(usize::from(self.u8()).max(at));
                Bytes::from(r)
            }
            _ => Bytes::copy_from_slice(self.bytes(64)),
        }
    }

    /// An AudioSpecificConfig: a real one or bytes from the input.
    pub fn asc(&mut self) -> Bytes {
        let pick = usize::from(self.u8());
        match ASCS.get(pick % (ASCS.len() + 1)) {
            Some(a) => Bytes::copy_from_slice(a),
            None => Bytes::copy_from_slice(self.bytes(8)),
        }
    }

    /// Coded video data: NAL units each with a 4-byte length prefix (sometimes a wrong one),
    /// or raw bytes.
    pub fn nal_units(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        let shape = self.u8();
        if shape & 0x80 != 0 {
            out.put_slice(self.bytes(96));
            return out.freeze();
        }
        for _ in 0..(shape % 4) + 1 {
            let nal = self.bytes(48);
            let len = if self.u8() == 0xff {
                self.u32()
            } else {
                nal.len() as u32
            };
            out.put_u32(len);
            out.put_slice(nal);
        }
        out.freeze()
    }
}
