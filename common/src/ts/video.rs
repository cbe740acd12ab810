//! H.264 and HEVC in TS: length-prefixed NAL units (as FLV/MP4 carry them) to an Annex B
//! access unit with an AUD first and, on keyframes, the parameter sets of the decoder
//! configuration record. Must not copy NAL data: it returns slices for the packetizer.

use crate::flv::VideoCodec;
use crate::hls::VideoTrack;

/// stream_type of H.264 video (ITU-T H.264 | ISO/IEC 14496-10).
pub const STREAM_TYPE_H264: u8 = 0x1b;
/// stream_type of HEVC video (ITU-T H.265 | ISO/IEC 23008-2).
pub const STREAM_TYPE_HEVC: u8 = 0x24;

/// Every NAL unit gets a 4-byte start code: decoders accept it anywhere, and it is required
/// before the first NAL of an access unit and before parameter sets.
pub(crate) const START_CODE: &[u8] = &[0, 0, 0, 1];
/// Access unit delimiters (start code included). H.264: nal_unit_type 9, primary_pic_type 7
/// (any slice type). HEVC: nal_unit_type 35, layer 0, temporal id 0, pic_type 2 (any). Both end
/// with the rbsp stop bit.
const AUD_AVC: &[u8] = &[0, 0, 0, 1, 0x09, 0xf0];
const AUD_HEVC: &[u8] = &[0, 0, 0, 1, 0x46, 0x01, 0x50];
/// Longest AUD above.
pub(crate) const MAX_AUD: usize = 7;

const AVC_AUD: u8 = 9;
const AVC_SPS: u8 = 7;
const AVC_PPS: u8 = 8;
const HEVC_VPS: u8 = 32;
const HEVC_SPS: u8 = 33;
const HEVC_PPS: u8 = 34;
const HEVC_AUD: u8 = 35;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Avc,
    Hevc,
}

impl Codec {
    fn nal_type(self, nal: &[u8]) -> Option<u8> {
        let b = *nal.first()?;
        Some(match self {
            Self::Avc => b & 0x1f,
            Self::Hevc => (b >> 1) & 0x3f,
        })
    }

    fn is_aud(self, t: u8) -> bool {
        t == match self {
            Self::Avc => AVC_AUD,
            Self::Hevc => HEVC_AUD,
        }
    }

    /// Bit of `t` in the set of parameter set types this codec needs (0 if `t` is none).
    fn param_bit(self, t: u8) -> u8 {
        match (self, t) {
            (Self::Avc, AVC_SPS) | (Self::Hevc, HEVC_SPS) => 1,
            (Self::Avc, AVC_PPS) | (Self::Hevc, HEVC_PPS) => 2,
            (Self::Hevc, HEVC_VPS) => 4,
            _ => 0,
        }
    }

    fn all_params(self) -> u8 {
        match self {
            Self::Avc => 1 | 2,
            Self::Hevc => 1 | 2 | 4,
        }
    }
}

/// A video track as the muxer packages it: codec, NAL length size and the record's parameter
/// sets (borrowed from the record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VideoStream<'a> {
    codec: Codec,
    length_size: usize,
    params: Vec<&'a [u8]>,
}

impl<'a> VideoStream<'a> {
    /// `None` for codecs TS does not carry here (AV1, VPx, ...). A record too short to read
    /// gives no parameter sets and the 4-byte NAL lengths every encoder uses.
    pub(crate) fn new(track: &'a VideoTrack) -> Option<Self> {
        let record = &track.record[..];
        let (codec, length_size, params) = match track.codec {
            VideoCodec::Avc => (Codec::Avc, record.get(4), avcc_params(record)),
            VideoCodec::Hevc => (Codec::Hevc, record.get(21), hvcc_params(record)),
            _ => return None,
        };
        Some(Self {
            codec,
            length_size: length_size.map_or(4, |b| usize::from(b & 3) + 1),
            params,
        })
    }

    pub(crate) fn stream_type(&self) -> u8 {
        match self.codec {
            Codec::Avc => STREAM_TYPE_H264,
            Codec::Hevc => STREAM_TYPE_HEVC,
        }
    }

    /// The access unit delimiter (start code included) that opens every access unit.
    pub(crate) fn aud(&self) -> &'static [u8] {
        match self.codec {
            Codec::Avc => AUD_AVC,
            Codec::Hevc => AUD_HEVC,
        }
    }

    /// Bytes the record's parameter sets take in Annex B form.
    pub(crate) fn params_len(&self) -> usize {
        self.params.iter().map(|p| START_CODE.len() + p.len()).sum()
    }

    /// Appends to `body` the Annex B form of one sample (everything after the AUD): on a
    /// keyframe that lacks them, the record's parameter sets; then each NAL unit with a start
    /// code. The sample's own AUDs are dropped (the muxer writes one first) and so are empty
    /// NAL units; a length running past the end ends the sample there. Returns whether any
    /// NAL unit was found: a sample without one is not an access unit.
    pub(crate) fn annex_b(&self, data: &'a [u8], keyframe: bool, body: &mut Vec<&'a [u8]>) -> bool {
        if keyframe {
            let present = NalUnits::new(data, self.length_size)
                .filter_map(|nal| self.codec.nal_type(nal))
                .fold(0, |set, t| set | self.codec.param_bit(t));
            // Players join HLS at any segment, so every keyframe must be decodable on its own.
            if present != self.codec.all_params() {
                for p in &self.params {
                    body.push(START_CODE);
                    body.push(p);
                }
            }
        }
        let mut any = false;
        for nal in NalUnits::new(data, self.length_size) {
            match self.codec.nal_type(nal) {
                Some(t) if !self.codec.is_aud(t) => {
                    body.push(START_CODE);
                    body.push(nal);
                    any = true;
                }
                _ => {}
            }
        }
        any
    }
}

/// The NAL units of a length-prefixed sample, including empty ones; stops at the first length
/// that is cut short or runs past the end.
#[derive(Debug, Clone)]
pub(crate) struct NalUnits<'a> {
    data: &'a [u8],
    length_size: usize,
}

impl<'a> NalUnits<'a> {
    pub(crate) fn new(data: &'a [u8], length_size: usize) -> Self {
        Self {
            data,
            length_size: length_size.clamp(1, 4),
        }
    }
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (prefix, rest) = self.data.split_at_checked(self.length_size)?;
        let len = prefix
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        let Some((nal, rest)) = rest.split_at_checked(len) else {
            self.data = &[];
            return None;
        };
        self.data = rest;
        Some(nal)
    }
}

/// SPS then PPS NAL units of an AVCDecoderConfigurationRecord, as far as it can be read.
fn avcc_params(record: &[u8]) -> Vec<&[u8]> {
    let mut params = Vec::new();
    let _complete = read_avcc(record, &mut params);
    params.retain(|p| !p.is_empty());
    params
}

fn read_avcc<'a>(record: &'a [u8], params: &mut Vec<&'a [u8]>) -> Option<()> {
    let mut r = Reader(record.get(5..)?);
    let sps_count = r.u8()? & 0x1f;
    for _ in 0..sps_count {
        params.push(r.nal()?);
    }
    let pps_count = r.u8()?;
    for _ in 0..pps_count {
        params.push(r.nal()?);
    }
    Some(())
}

/// VPS, SPS then PPS NAL units of an HEVCDecoderConfigurationRecord (other arrays, such as SEI,
/// are left out), as far as it can be read.
fn hvcc_params(record: &[u8]) -> Vec<&[u8]> {
    let mut found: Vec<(u8, &[u8])> = Vec::new();
    let mut r = Reader(record.get(22..).unwrap_or_default());
    if let Some(arrays) = r.u8() {
        'arrays: for _ in 0..arrays {
            let (Some(t), Some(count)) = (r.u8(), r.u16()) else {
                break;
            };
            let t = t & 0x3f;
            for _ in 0..count {
                let Some(nal) = r.nal() else {
                    break 'arrays;
                };
                if matches!(t, HEVC_VPS | HEVC_SPS | HEVC_PPS) && !nal.is_empty() {
                    found.push((t, nal));
                }
            }
        }
    }
    // Decoders need VPS before SPS before PPS; records may list the arrays in any order.
    found.sort_by_key(|&(t, _)| t);
    found.into_iter().map(|(_, nal)| nal).collect()
}

/// Big-endian reads over a record; `None` past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A NAL unit with a 16-bit length, as records store them.
    fn nal(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }
}
