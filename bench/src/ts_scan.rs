//! A lean MPEG-TS scanner for HLS load-generating clients: finds the video PES packets of a
//! segment as it streams in (the video PID is the one whose PES carry stream ids 0xE0-0xEF, so
//! no PAT/PMT is needed) and reports one frame per PES, with the send instant the synthetic
//! stream stamps in its NAL units. Keeps only the first bytes of each PES; no reassembly.
//! Sans-IO: the receive instant comes in with the bytes.

use crate::stream::{find_stamp, is_idr};

const PACKET: usize = 188;
/// Bytes kept of each video PES (header included): enough for the PES header, the AUD, the
/// parameter sets on keyframes and the stamp.
const KEEP: usize = 512;

/// One coded video frame (access unit) seen in the media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub keyframe: bool,
    /// Send instant embedded by the synthetic stream (ns since the epoch), if found.
    pub stamp: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TsError {
    /// A packet does not start with 0x47.
    Sync,
}

/// Incremental scanner over one or more TS segments; call [`TsScanner::finish`] at the end of
/// each response (a segment's last PES ends with it).
#[derive(Debug)]
pub struct TsScanner<T> {
    partial: [u8; PACKET],
    partial_len: usize,
    video_pid: Option<u16>,
    /// The video PES being received: its first bytes, its random access flag and the receive
    /// instant of its latest packet.
    pes: Option<(bool, T)>,
    keep: Vec<u8>,
    pub packets: u64,
}

impl<T: Copy> Default for TsScanner<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy> TsScanner<T> {
    pub fn new() -> Self {
        TsScanner {
            partial: [0; PACKET],
            partial_len: 0,
            video_pid: None,
            pes: None,
            keep: Vec::with_capacity(KEEP),
            packets: 0,
        }
    }

    /// Takes bytes received at `at`; `on_frame` gets each video frame once its PES ended
    /// (with the instant its last packet arrived).
    pub fn feed(
        &mut self,
        mut data: &[u8],
        at: T,
        on_frame: &mut impl FnMut(Frame, T),
    ) -> Result<(), TsError> {
        if self.partial_len > 0 {
            let k = (PACKET - self.partial_len).min(data.len());
            self.partial[self.partial_len..self.partial_len + k].copy_from_slice(&data[..k]);
            self.partial_len += k;
            data = &data[k..];
            if self.partial_len < PACKET {
                return Ok(());
            }
            self.partial_len = 0;
            let p = self.partial;
            self.packet(&p, at, on_frame)?;
        }
        let mut packets = data.chunks_exact(PACKET);
        for p in &mut packets {
            self.packet(p, at, on_frame)?;
        }
        let rest = packets.remainder();
        self.partial[..rest.len()].copy_from_slice(rest);
        self.partial_len = rest.len();
        Ok(())
    }

    /// The end of a segment: its last video PES is complete. A cut-off packet is dropped.
    pub fn finish(&mut self, on_frame: &mut impl FnMut(Frame, T)) {
        self.end_pes(on_frame);
        self.partial_len = 0;
    }

    fn packet(
        &mut self,
        p: &[u8],
        at: T,
        on_frame: &mut impl FnMut(Frame, T),
    ) -> Result<(), TsError> {
        if p[0] != 0x47 {
            return Err(TsError::Sync);
        }
        self.packets += 1;
        let pusi = p[1] & 0x40 != 0;
        let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
        let afc = (p[3] >> 4) & 3;
        if afc & 1 == 0 {
            return Ok(()); // no payload
        }
        let (mut start, mut rai) = (4, false);
        if afc & 2 != 0 {
            let len = usize::from(p[4]);
            rai = len > 0 && p[5] & 0x40 != 0;
            start = 5 + len;
        }
        let Some(payload) = p.get(start..) else {
            return Ok(());
        };
        if pusi && self.video_pid.is_none_or(|v| v == pid) {
            let video =
                payload.len() >= 4 && payload[..3] == [0, 0, 1] && payload[3] & 0xf0 == 0xe0;
            if video {
                self.video_pid = Some(pid);
                self.end_pes(on_frame);
                self.pes = Some((rai, at));
                self.keep.clear();
            }
        }
        if Some(pid) != self.video_pid {
            return Ok(());
        }
        if let Some((_, last)) = &mut self.pes {
            *last = at;
            let k = (KEEP - self.keep.len()).min(payload.len());
            self.keep.extend_from_slice(&payload[..k]);
        }
        Ok(())
    }

    fn end_pes(&mut self, on_frame: &mut impl FnMut(Frame, T)) {
        let Some((rai, at)) = self.pes.take() else {
            return;
        };
        // PES header: start code, stream id, length (6 bytes), flags (2), header length (1).
        let es = self
            .keep
            .get(8)
            .and_then(|&n| self.keep.get(9 + usize::from(n)..))
            .unwrap_or(&[]);
        let frame = match find_stamp(es) {
            Some((stamp, nal)) => Frame {
                keyframe: is_idr(nal),
                stamp: Some(stamp),
            },
            None => Frame {
                keyframe: rai,
                stamp: None,
            },
        };
        on_frame(frame, at);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use bytes::Bytes;
    use common::hls::{HlsConfig, Segmenter};
    use common::media::{FrameKind, MediaFrame};

    use super::*;
    use crate::stream::{AAC_SEQUENCE_HEADER, AVC_SEQUENCE_HEADER, FrameBuilder, StreamSpec};

    /// A segmenter fed `seconds` of the synthetic stream (25 fps, keyframe every `gop`
    /// frames; frame i stamped i + 1000) and the stamps in send order.
    pub(crate) fn segmenter(seconds: u32, gop: u32) -> (Segmenter, Vec<(u64, bool)>) {
        let spec = StreamSpec {
            bitrate: 1_000_000,
            fps: 25,
            gop,
        };
        let mut seg = Segmenter::new(HlsConfig::default());
        let frame = |kind, ts, key, hdr, body: &[u8]| {
            MediaFrame::new(kind, ts, key, hdr, Bytes::copy_from_slice(body))
        };
        seg.push(
            &frame(FrameKind::Video, 0, true, true, AVC_SEQUENCE_HEADER),
            0,
        );
        seg.push(
            &frame(FrameKind::Audio, 0, false, true, AAC_SEQUENCE_HEADER),
            0,
        );
        let mut b = FrameBuilder::new(spec);
        let mut sent = Vec::new();
        let mut audio_ms = 0.0;
        for i in 0..u64::from(seconds * 25) {
            let ts = (i * 40) as u32;
            while audio_ms <= f64::from(ts) {
                let a = b.audio().to_vec();
                seg.push(
                    &frame(FrameKind::Audio, audio_ms as u32, false, false, &a),
                    0,
                );
                audio_ms += 1024.0 / 44.1;
            }
            let key = i % u64::from(gop) == 0;
            let v = b.video(i, i + 1000).to_vec();
            seg.push(&frame(FrameKind::Video, ts, key, false, &v), 0);
            sent.push((i + 1000, key));
        }
        (seg, sent)
    }

    #[test]
    fn finds_every_video_frame_and_its_stamp_on_any_split() {
        let (seg, sent) = segmenter(7, 25);
        assert!(seg.segments().len() >= 2);
        let mut want = Vec::new();
        let mut wire = Vec::new();
        let mut bounds = Vec::new();
        let first = seg.segments()[0].start_ms / 40;
        for s in seg.segments() {
            let ts = s.ts().clone();
            wire.extend_from_slice(&ts);
            bounds.push(wire.len());
        }
        let last = seg.segments().back().unwrap();
        let n = ((last.start_ms + u64::from(last.duration_ms)) / 40 - first) as usize;
        want.extend(
            sent[first as usize..first as usize + n]
                .iter()
                .map(|&(s, k)| (Some(s), k)),
        );
        for step in [1usize, 7, 188, 1000, 65536] {
            let mut sc = TsScanner::<usize>::new();
            let mut got = Vec::new();
            let mut on = |f: Frame, _at: usize| got.push((f.stamp, f.keyframe));
            let mut from = 0;
            for &end in &bounds {
                for (i, c) in wire[from..end].chunks(step).enumerate() {
                    sc.feed(c, i, &mut on).unwrap();
                }
                sc.finish(&mut on);
                from = end;
            }
            assert_eq!(got, want, "step {step}");
        }
        let mut sc = TsScanner::new();
        assert_eq!(
            sc.feed(&[0x46; 188], 0, &mut |_, _: i32| {}),
            Err(TsError::Sync)
        );
    }
}
