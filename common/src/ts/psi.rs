//! Program-specific information: the PAT and PMT sections (ISO/IEC 13818-1 2.4.4) and their
//! MPEG-2 CRC. Must not know about samples: it describes which elementary streams exist.

use super::{PMT_PID, PROGRAM_NUMBER};

const CRC_LEN: usize = 4;
/// `table_id` of a program_association_section.
const TABLE_PAT: u8 = 0x00;
/// `table_id` of a TS_program_map_section.
const TABLE_PMT: u8 = 0x02;
/// Any transport_stream_id will do (a single-program stream); a fixed one keeps edges identical.
const TRANSPORT_STREAM_ID: u16 = 1;
/// Sections never change within a stream (the codecs are fixed per track), so version 0 always.
const VERSION_CURRENT: u8 = 0xc1; // reserved '11', version_number 0, current_next_indicator 1

/// One elementary stream of the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EsInfo {
    pub(crate) stream_type: u8,
    pub(crate) pid: u16,
}

/// Largest PSI we write: pointer_field, 8-byte section header, PCR_PID and program_info_length,
/// a video and an audio entry, CRC. This always fits one packet, so PSI never spans packets.
pub(crate) const MAX_SECTION: usize = 1 + 8 + 4 + 2 * 5 + CRC_LEN;

/// The PAT section (with a leading pointer_field 0) listing program 1 at [`PMT_PID`].
/// Returns the bytes used in `buf`.
pub(crate) fn pat(buf: &mut [u8; MAX_SECTION]) -> usize {
    let mut w = SectionWriter::new(buf, TABLE_PAT, TRANSPORT_STREAM_ID);
    w.put_u16(PROGRAM_NUMBER);
    w.put_u16(0xe000 | PMT_PID);
    w.finish()
}

/// The PMT section (with a leading pointer_field 0) of program 1: `pcr_pid` carries the PCR
/// (0x1fff when the program has no streams), then one entry per stream, no descriptors.
pub(crate) fn pmt(buf: &mut [u8; MAX_SECTION], pcr_pid: u16, streams: &[EsInfo]) -> usize {
    let mut w = SectionWriter::new(buf, TABLE_PMT, PROGRAM_NUMBER);
    w.put_u16(0xe000 | (pcr_pid & 0x1fff));
    w.put_u16(0xf000); // program_info_length 0
    // At most two streams fit MAX_SECTION; there never are more (one video, one audio).
    for es in streams.iter().take(2) {
        w.put_u8(es.stream_type);
        w.put_u16(0xe000 | (es.pid & 0x1fff));
        w.put_u16(0xf000); // ES_info_length 0
    }
    w.finish()
}

/// Writes a long-form section: pointer_field, the 8-byte header, the body, then the CRC once
/// the length is known.
struct SectionWriter<'a> {
    buf: &'a mut [u8; MAX_SECTION],
    len: usize,
}

impl<'a> SectionWriter<'a> {
    fn new(buf: &'a mut [u8; MAX_SECTION], table_id: u8, id: u16) -> Self {
        let mut w = Self { buf, len: 0 };
        w.put_u8(0); // pointer_field: the section starts right here
        w.put_u8(table_id);
        w.put_u16(0); // section_syntax_indicator + length, patched in finish()
        w.put_u16(id);
        w.put_u8(VERSION_CURRENT);
        w.put_u8(0); // section_number
        w.put_u8(0); // last_section_number
        w
    }

    fn put_u8(&mut self, v: u8) {
        if let Some(b) = self.buf.get_mut(self.len) {
            *b = v;
            self.len += 1;
        }
    }

    fn put_u16(&mut self, v: u16) {
        let [hi, lo] = v.to_be_bytes();
        self.put_u8(hi);
        self.put_u8(lo);
    }

    fn finish(mut self) -> usize {
        // section_length counts the bytes after the length field (pointer_field, table_id and
        // the length itself come before), CRC included.
        let section_length = (self.len - 4 + CRC_LEN) as u16;
        let [hi, lo] = (0xb000 | section_length).to_be_bytes(); // syntax 1, '0', reserved '11'
        self.buf[2] = hi;
        self.buf[3] = lo;
        let crc = crc32_mpeg2(&self.buf[1..self.len]);
        for b in crc.to_be_bytes() {
            self.put_u8(b);
        }
        self.len
    }
}

/// CRC-32/MPEG-2 (polynomial 0x04c11db7, initial value all ones, no reflection, no final xor):
/// the CRC_32 field of PSI sections. Running it over a whole section, CRC included, gives 0.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xffff_ffff, |crc, &b| {
        (crc << 8) ^ CRC_TABLE[usize::from(((crc >> 24) as u8) ^ b)]
    })
}

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04c1_1db7
            } else {
                c << 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}
