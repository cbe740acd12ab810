//! cargo-fuzz target for the RTMP handshakes: arbitrary bytes fed in arbitrary splits to a
//! server (and a client) must never panic, never consume more than offered, never consume after
//! completion and never recover from an error. Must not touch the network or filesystem.

use common::rtmp::handshake::{
    ClientHandshake, HANDSHAKE_SIZE, HandshakeError, HandshakeKind, ServerHandshake,
};

/// Bytes either side reads before it is done: C0C1 + C2 for a server, S0S1S2 for a client.
const INPUT_LEN: usize = 1 + 2 * HANDSHAKE_SIZE;

/// Either side, behind one interface.
enum Side {
    Server(ServerHandshake),
    Client(Box<ClientHandshake>),
}

impl Side {
    fn feed(&mut self, input: &[u8]) -> Result<usize, HandshakeError> {
        match self {
            Side::Server(s) => s.feed(input),
            Side::Client(c) => c.feed(input),
        }
    }

    fn is_complete(&self) -> bool {
        match self {
            Side::Server(s) => s.is_complete(),
            Side::Client(c) => c.is_complete(),
        }
    }

    fn take_output_len(&mut self) -> Option<usize> {
        match self {
            Side::Server(s) => s.take_output().map(|b| b.len()),
            Side::Client(c) => c.take_output().map(|b| b.len()),
        }
    }
}

/// The target: any input must pass without a panic.
pub fn run(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let (header, rest) = data.split_at(2);
    let mode = header[0];
    // Split sizes come from a tiny generator seeded by the header, so the fuzzer explores
    // both byte-by-byte and large reads without spending input bytes on them.
    let mut state = u32::from(header[1]) | 1;
    let mut next_split = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        match state % 4 {
            0 => 1,
            1 => (state >> 8) as usize % 64 + 1,
            2 => (state >> 8) as usize % 4096 + 1,
            _ => usize::MAX,
        }
    };

    let mut side = match mode % 3 {
        0 | 1 => Side::Server(ServerHandshake::new(u64::from(mode))),
        _ => Side::Client(Box::new(ClientHandshake::new(
            u64::from(mode),
            if mode & 0x80 != 0 {
                HandshakeKind::Digest
            } else {
                HandshakeKind::Simple
            },
        ))),
    };
    // A client has its C0C1 ready at once; take it as the driver would.
    if let Side::Client(_) = side {
        assert_eq!(side.take_output_len(), Some(1 + HANDSHAKE_SIZE));
    }

    let mut total = 0usize;
    let mut remaining = rest;
    let mut failed: Option<HandshakeError> = None;
    while !remaining.is_empty() {
        let n = next_split().min(remaining.len());
        let (piece, tail) = remaining.split_at(n);
        remaining = tail;
        let was_complete = side.is_complete();
        match side.feed(piece) {
            Ok(consumed) => {
                assert!(failed.is_none(), "recovered from an error");
                assert!(consumed <= piece.len());
                if was_complete {
                    assert_eq!(consumed, 0, "consumed after completion");
                }
                total += consumed;
                assert!(total <= INPUT_LEN);
                if consumed < piece.len() {
                    assert!(
                        side.is_complete(),
                        "left bytes unconsumed before completion"
                    );
                }
            }
            Err(err) => {
                if let Some(prev) = &failed {
                    assert_eq!(prev, &err, "error changed");
                }
                failed = Some(err);
            }
        }
        if let Some(len) = side.take_output_len() {
            assert!(len == 1 + 2 * HANDSHAKE_SIZE || len == HANDSHAKE_SIZE);
        }
    }
    if side.is_complete() {
        assert_eq!(total, INPUT_LEN);
    }
}
