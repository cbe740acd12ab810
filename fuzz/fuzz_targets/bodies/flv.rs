//! cargo-fuzz target for FLV: arbitrary bytes through FlvReader (whole stream and bare tags, in
//! chunks) and the codec inspectors/config parsers must never panic; tags read back must
//! re-encode to the same tag. The same bytes as the first request head of an HTTP connection
//! (`net::flv::takeover_request`): only a whole bodiless GET of an `.flv` path is taken over.
//! Must not touch the network or filesystem.

use bytes::BytesMut;
use common::flv::{self, FlvReader};

fn check_codec_parsers(data: &[u8]) {
    if let Some(info) = flv::inspect_video(data) {
        assert!(info.data_offset <= data.len());
        assert!(info.data_offset + info.data_len <= data.len());
    }
    if let Some(info) = flv::inspect_audio(data) {
        assert!(info.data_offset + info.data_len <= data.len());
    }
    let _ = flv::parse_video_config(data);
    let _ = flv::parse_audio_config(data);
}

/// The target: any input must pass without a panic.
pub fn run(data: &[u8]) {
    check_codec_parsers(data);
    if let Some((len, req)) = common::net::flv::takeover_request(data) {
        assert!(len <= data.len());
        assert_eq!(req.method(), "GET");
        assert!(req.uri().path().ends_with(".flv"));
    }

    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // Low bit: whole stream or bare tags; the rest: chunk size for feeding.
    let chunk = usize::from(mode >> 1) + 1;
    let mut reader = if mode & 1 == 0 {
        FlvReader::new(64 * 1024)
    } else {
        FlvReader::without_header(64 * 1024)
    };
    let mut buf = BytesMut::new();
    'feed: for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match reader.decode(&mut buf) {
                Ok(Some(tag)) => {
                    check_codec_parsers(&tag.payload);
                    let mut encoded = BytesMut::new();
                    tag.encode(&mut encoded);
                    let mut again = FlvReader::without_header(64 * 1024);
                    assert_eq!(again.decode(&mut encoded), Ok(Some(tag.clone())));
                    assert!(encoded.is_empty());
                    if let Some(frame) = tag.into_frame() {
                        let len: usize = flv::flv_wire(&frame).iter().map(|b| b.len()).sum();
                        assert_eq!(len, 15 + frame.payload.len());
                    }
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
}
