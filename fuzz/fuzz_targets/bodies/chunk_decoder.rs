//! cargo-fuzz target for the RTMP chunk decoder: arbitrary bytes in arbitrary splits must never panic, never stall with a full chunk buffered, and never exceed the decoder's limits. Must not touch the network or filesystem.

use bytes::BytesMut;
use common::rtmp::chunk::{ChunkDecoder, DecoderLimits};

/// The target: any input must pass without a panic.
pub fn run(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    // Small limits so the fuzzer reaches the limit paths with short inputs.
    let limits = if split & 0x80 != 0 {
        DecoderLimits {
            max_message_size: 4096,
            max_command_size: 1024,
            max_chunk_streams: 4,
            max_buffered_bytes: 8192,
        }
    } else {
        DecoderLimits::default()
    };
    let split = usize::from(split & 0x7f).max(1);
    let mut decoder = ChunkDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut consumed = 0u64;
    for piece in rest.chunks(split) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            let result = decoder.decode(&mut buf);
            // Chunks that complete no message are consumed too, even when None is returned.
            consumed += (before - buf.len()) as u64;
            assert_eq!(decoder.bytes_received(), consumed);
            match result {
                Ok(Some(message)) => {
                    assert!(message.payload.len() <= limits.max_message_size as usize);
                    assert!(buf.len() < before || message.payload.is_empty());
                }
                Ok(None) => {
                    assert!(buf.len() < decoder.input_bound());
                    break;
                }
                Err(_) => return,
            }
            assert!(decoder.buffered_bytes() <= limits.max_buffered_bytes);
        }
        assert!(decoder.buffered_bytes() <= limits.max_buffered_bytes);
    }
}
