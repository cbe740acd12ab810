//! Bounds-checked byte and bit readers for codec headers (Exp-Golomb, leb128, RBSP unescaping).
//! Must never panic or loop without bound: every read returns `None` past the end.

/// Reads big-endian integers from a byte slice.
#[derive(Debug, Clone)]
pub(crate) struct ByteReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or(&[])
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }

    pub(crate) fn u24(&mut self) -> Option<u32> {
        self.take(3)
            .map(|s| u32::from_be_bytes([0, s[0], s[1], s[2]]))
    }

    /// Signed 24-bit (composition time offsets).
    pub(crate) fn i24(&mut self) -> Option<i32> {
        // Shift the sign bit into place, then arithmetic-shift back.
        self.u24().map(|v| ((v << 8) as i32) >> 8)
    }

    pub(crate) fn fourcc(&mut self) -> Option<[u8; 4]> {
        self.take(4).map(|s| [s[0], s[1], s[2], s[3]])
    }
}

/// Reads bits MSB first.
#[derive(Debug, Clone)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub(crate) fn bits_left(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    pub(crate) fn bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Some(bit == 1)
    }

    pub(crate) fn flag(&mut self) -> Option<bool> {
        self.bit()
    }

    /// Up to 64 bits as an unsigned value.
    pub(crate) fn bits(&mut self, n: u32) -> Option<u64> {
        if n > 64 || (n as usize) > self.bits_left() {
            return None;
        }
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Some(v)
    }

    pub(crate) fn u32_bits(&mut self, n: u32) -> Option<u32> {
        if n > 32 {
            return None;
        }
        self.bits(n).map(|v| v as u32)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        if n > self.bits_left() {
            return None;
        }
        self.pos += n;
        Some(())
    }

    /// Exp-Golomb ue(v). Values needing more than 32 leading zeros are rejected.
    pub(crate) fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0u32;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        u32::try_from((1u64 << zeros) - 1 + rest).ok()
    }

    /// Exp-Golomb se(v).
    pub(crate) fn se(&mut self) -> Option<i32> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        i32::try_from(v).ok()
    }

    /// AV1 uvlc().
    pub(crate) fn uvlc(&mut self) -> Option<u32> {
        let mut zeros = 0u32;
        while !self.bit()? {
            zeros += 1;
            if zeros >= 32 {
                return Some(u32::MAX);
            }
        }
        let rest = self.bits(zeros)?;
        u32::try_from(rest + (1u64 << zeros) - 1).ok()
    }
}

/// AV1 leb128(): at most 8 bytes, value must fit in 32 bits for our purposes.
pub(crate) fn leb128(r: &mut ByteReader<'_>) -> Option<u64> {
    let mut value: u64 = 0;
    for i in 0..8 {
        let b = r.u8()?;
        value |= u64::from(b & 0x7f) << (i * 7);
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Removes H.264/H.265 emulation prevention bytes (`00 00 03` -> `00 00`).
pub(crate) fn unescape_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0usize;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 -> ue 0,1,2,3,4
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data);
        assert_eq!(r.ue(), Some(0));
        assert_eq!(r.ue(), Some(1));
        assert_eq!(r.ue(), Some(2));
        assert_eq!(r.ue(), Some(3));
        assert_eq!(r.ue(), Some(4));
        let mut r = BitReader::new(&data);
        assert_eq!(r.se(), Some(0));
        assert_eq!(r.se(), Some(1));
        assert_eq!(r.se(), Some(-1));
        assert_eq!(r.se(), Some(2));
        assert_eq!(r.se(), Some(-2));
    }

    #[test]
    fn readers_stop_at_end() {
        let mut r = BitReader::new(&[0, 0, 0, 0, 0]);
        assert_eq!(r.ue(), None);
        let mut r = BitReader::new(&[]);
        assert_eq!(r.bit(), None);
        assert_eq!(r.bits(0), Some(0));
        let mut r = BitReader::new(&[0xff]);
        assert_eq!(r.bits(9), None);
        assert_eq!(r.bits(8), Some(0xff));
        let mut b = ByteReader::new(&[1, 2]);
        assert_eq!(b.u24(), None);
        assert_eq!(b.u16(), Some(0x0102));
        assert_eq!(b.take(usize::MAX), None);
        assert_eq!(ByteReader::new(&[0xff, 0xff, 0xfe]).i24(), Some(-2));
    }

    #[test]
    fn rbsp_and_leb128() {
        assert_eq!(
            unescape_rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 0]
        );
        assert_eq!(
            leb128(&mut ByteReader::new(&[0xe5, 0x8e, 0x26])),
            Some(624_485)
        );
        assert_eq!(leb128(&mut ByteReader::new(&[0x80; 9])), None);
    }
}
