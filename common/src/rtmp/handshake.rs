//! RTMP handshakes, server and client side, simple and digest (Flash/FMS "complex", HMAC-SHA256)
//! as sans-IO state machines: bytes in, bytes out; no tokio, no sockets, no clocks (time fields
//! are sent as zero) and no buffer beyond one handshake's fixed size.
//!
//! Digest layout (both directions): a 1536-byte block whose 32-byte digest sits at
//! `base + 4 + (sum of the 4 bytes at base) % 728`, with `base` 8 (scheme 0) or 772 (scheme 1).
//! The digest is HMAC-SHA256 over the block without those 32 bytes, keyed by the public part of
//! the sender's Genuine key. The reply block (S2, C2) is 1504 bytes of anything followed by
//! `HMAC(HMAC(full sender key, peer's digest), first 1504 bytes)`.

use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const HANDSHAKE_SIZE: usize = 1536;

const RTMP_VERSION: u8 = 3;
const DIGEST_LEN: usize = 32;
/// Bytes of S2/C2 that precede the signature in the digest handshake.
const REPLY_BODY_LEN: usize = HANDSHAKE_SIZE - DIGEST_LEN;

/// "Genuine Adobe Flash Player 001" followed by 32 secret bytes.
const GENUINE_FP_KEY: [u8; 62] = *b"Genuine Adobe Flash Player 001\
    \xF0\xEE\xC2\x4A\x80\x68\xBE\xE8\x2E\x00\xD0\xD1\x02\x9E\x7E\x57\
    \x6E\xEC\x5D\x2D\x29\x80\x6F\xAB\x93\xB8\xE6\x36\xCF\xEB\x31\xAE";
/// The part of [`GENUINE_FP_KEY`] that keys the digest inside C1.
const FP_KEY_PUBLIC_LEN: usize = 30;
/// "Genuine Adobe Flash Media Server 001" followed by the same 32 secret bytes.
const GENUINE_FMS_KEY: [u8; 68] = *b"Genuine Adobe Flash Media Server 001\
    \xF0\xEE\xC2\x4A\x80\x68\xBE\xE8\x2E\x00\xD0\xD1\x02\x9E\x7E\x57\
    \x6E\xEC\x5D\x2D\x29\x80\x6F\xAB\x93\xB8\xE6\x36\xCF\xEB\x31\xAE";
/// The part of [`GENUINE_FMS_KEY`] that keys the digest inside S1.
const FMS_KEY_PUBLIC_LEN: usize = 36;

/// Flash Player version ffmpeg claims in C1 (9.0.124.2); a non-zero version announces a digest.
const CLIENT_VERSION: [u8; 4] = [0x09, 0x00, 0x7c, 0x02];
/// Server version sent in a digest S1 (the value nginx-rtmp uses). Its first byte must be >= 3
/// or ffmpeg, when playing, skips checking the digest.
const SERVER_VERSION: [u8; 4] = [0x0d, 0x0e, 0x0a, 0x0d];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    Simple,
    Digest,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// C0 or S0 was not 3 (e.g. an HTTP request or RTMPE on the RTMP port).
    #[error("rtmp handshake: unsupported version byte 0x{0:02x}")]
    UnsupportedVersion(u8),
    /// The server's S1 carried a valid digest but S2 was not signed with our C1 digest.
    #[error("rtmp handshake: invalid digest in server response")]
    InvalidDigest,
}

/// Where the digest of a block sits: the offset bytes are at 8..12 (scheme 0) or 772..776
/// (scheme 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Zero,
    One,
}

impl Scheme {
    fn base(self) -> usize {
        match self {
            Scheme::Zero => 8,
            Scheme::One => 772,
        }
    }

    /// Offset of the 32-byte digest in `block`; always within `block` (at most 1503).
    fn digest_pos(self, block: &[u8; HANDSHAKE_SIZE]) -> usize {
        let base = self.base();
        let sum: usize = block[base..base + 4].iter().map(|&b| usize::from(b)).sum();
        base + 4 + sum % 728
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        unreachable!("HMAC accepts keys of any length");
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The digest of `block` with the 32 bytes at `pos` left out.
fn block_digest(block: &[u8; HANDSHAKE_SIZE], pos: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    hmac_sha256(key, &[&block[..pos], &block[pos + DIGEST_LEN..]])
}

/// Finds a valid digest in `block`, trying scheme 0 then scheme 1; returns its offset.
fn find_digest(block: &[u8; HANDSHAKE_SIZE], key: &[u8]) -> Option<(Scheme, usize)> {
    [Scheme::Zero, Scheme::One].into_iter().find_map(|scheme| {
        let pos = scheme.digest_pos(block);
        let expected = block_digest(block, pos, key);
        (block[pos..pos + DIGEST_LEN] == expected).then_some((scheme, pos))
    })
}

/// Writes the digest into `block` at the place `scheme` dictates; returns its offset.
fn imprint_digest(block: &mut [u8; HANDSHAKE_SIZE], scheme: Scheme, key: &[u8]) -> usize {
    let pos = scheme.digest_pos(block);
    let digest = block_digest(block, pos, key);
    block[pos..pos + DIGEST_LEN].copy_from_slice(&digest);
    pos
}

/// The signature closing S2 or C2: keyed by the sender's full key and the peer's digest.
fn reply_signature(full_key: &[u8], peer_digest: &[u8], body: &[u8]) -> [u8; DIGEST_LEN] {
    let key = hmac_sha256(full_key, &[peer_digest]);
    hmac_sha256(&key, &[body])
}

/// Builds a digest-handshake reply block (S2 or C2): random body, then the signature.
fn signed_reply(rng: &mut SplitMix64, full_key: &[u8], peer_digest: &[u8]) -> [u8; HANDSHAKE_SIZE] {
    let mut block = [0u8; HANDSHAKE_SIZE];
    rng.fill(&mut block[..REPLY_BODY_LEN]);
    let sig = reply_signature(full_key, peer_digest, &block[..REPLY_BODY_LEN]);
    block[REPLY_BODY_LEN..].copy_from_slice(&sig);
    block
}

/// Fills handshake padding; not cryptographic (nothing here needs to be secret).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// Appends bytes from `input` to `buf` until it holds `want` bytes; returns how many it took.
/// The first byte of the block is checked against the RTMP version as soon as it arrives.
fn fill_block(buf: &mut Vec<u8>, want: usize, input: &[u8]) -> Result<usize, HandshakeError> {
    let take = (want - buf.len()).min(input.len());
    if buf.is_empty()
        && let Some(&version) = input.first()
        && take > 0
        && version != RTMP_VERSION
    {
        return Err(HandshakeError::UnsupportedVersion(version));
    }
    buf.extend_from_slice(&input[..take]);
    Ok(take)
}

fn block(bytes: &[u8]) -> [u8; HANDSHAKE_SIZE] {
    let mut out = [0u8; HANDSHAKE_SIZE];
    out.copy_from_slice(&bytes[..HANDSHAKE_SIZE]);
    out
}

#[derive(Debug)]
enum ServerState {
    AwaitC0C1,
    AwaitC2,
    Done,
    Failed(HandshakeError),
}

/// Server side: reads C0C1, answers S0S1S2, then reads (and does not check) C2.
pub struct ServerHandshake {
    rng: SplitMix64,
    state: ServerState,
    /// C0C1, then C2, as they arrive; never more than 1537 bytes.
    buf: Vec<u8>,
    output: Option<Bytes>,
    kind: Option<HandshakeKind>,
}

impl ServerHandshake {
    /// `seed` only feeds the random padding; give each connection a different one.
    pub fn new(seed: u64) -> Self {
        ServerHandshake {
            rng: SplitMix64(seed),
            state: ServerState::AwaitC0C1,
            buf: Vec::with_capacity(1 + HANDSHAKE_SIZE),
            output: None,
            kind: None,
        }
    }

    /// Feeds received bytes; returns how many were consumed. Bytes after C2 are NOT consumed
    /// (they are chunk stream data). After an error every call returns that error again.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, HandshakeError> {
        let mut consumed = 0;
        loop {
            let rest = &input[consumed..];
            match &self.state {
                ServerState::Failed(err) => return Err(err.clone()),
                ServerState::Done => return Ok(consumed),
                ServerState::AwaitC0C1 => {
                    consumed += self.fill(1 + HANDSHAKE_SIZE, rest)?;
                    if self.buf.len() < 1 + HANDSHAKE_SIZE {
                        return Ok(consumed);
                    }
                    let c1 = block(&self.buf[1..]);
                    self.respond(&c1);
                    self.buf.clear();
                    self.state = ServerState::AwaitC2;
                }
                ServerState::AwaitC2 => {
                    // Any first byte is fine in C2, so no version check: take it as a block.
                    let take = (HANDSHAKE_SIZE - self.buf.len()).min(rest.len());
                    self.buf.extend_from_slice(&rest[..take]);
                    consumed += take;
                    if self.buf.len() < HANDSHAKE_SIZE {
                        return Ok(consumed);
                    }
                    // C2 is not checked: clients differ in what they echo or sign.
                    self.buf = Vec::new();
                    self.state = ServerState::Done;
                }
            }
        }
    }

    fn fill(&mut self, want: usize, input: &[u8]) -> Result<usize, HandshakeError> {
        fill_block(&mut self.buf, want, input).inspect_err(|err| {
            self.state = ServerState::Failed(err.clone());
        })
    }

    fn respond(&mut self, c1: &[u8; HANDSHAKE_SIZE]) {
        let mut s1 = [0u8; HANDSHAKE_SIZE];
        self.rng.fill(&mut s1[8..]);
        // A zero version in C1 means a simple handshake; otherwise the client may have signed
        // C1, and if the signature does not check out we still answer simply, as FMS does.
        let digest = if c1[4..8] == [0; 4] {
            None
        } else {
            find_digest(c1, &GENUINE_FP_KEY[..FP_KEY_PUBLIC_LEN])
        };
        let s2 = match digest {
            Some((scheme, c1_pos)) => {
                self.kind = Some(HandshakeKind::Digest);
                s1[4..8].copy_from_slice(&SERVER_VERSION);
                imprint_digest(&mut s1, scheme, &GENUINE_FMS_KEY[..FMS_KEY_PUBLIC_LEN]);
                let c1_digest = &c1[c1_pos..c1_pos + DIGEST_LEN];
                signed_reply(&mut self.rng, &GENUINE_FMS_KEY, c1_digest)
            }
            None => {
                self.kind = Some(HandshakeKind::Simple);
                *c1
            }
        };
        let mut out = BytesMut::with_capacity(1 + 2 * HANDSHAKE_SIZE);
        out.put_u8(RTMP_VERSION);
        out.put_slice(&s1);
        out.put_slice(&s2);
        self.output = Some(out.freeze());
    }

    /// S0+S1+S2, once, as soon as C0C1 has been fed.
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.output.take()
    }

    /// True once C2 has been consumed; the next byte belongs to the chunk stream.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, ServerState::Done)
    }

    /// Which handshake the client asked for; known once C1 is in.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }
}

#[derive(Debug)]
enum ClientState {
    AwaitS0S1S2,
    Done,
    Failed(HandshakeError),
}

/// Client side: sends C0C1, reads S0S1S2, answers C2.
pub struct ClientHandshake {
    rng: SplitMix64,
    state: ClientState,
    requested: HandshakeKind,
    /// The C1 we sent, kept to check the server's S2 in a digest handshake.
    c1: [u8; HANDSHAKE_SIZE],
    /// Offset of our digest in `c1` (digest handshake only).
    c1_digest_pos: Option<usize>,
    /// S0S1S2 as it arrives; never more than 3073 bytes.
    buf: Vec<u8>,
    output: Option<Bytes>,
    kind: Option<HandshakeKind>,
}

impl ClientHandshake {
    /// `kind` is what we ask for: a digest client still completes against a server that answers
    /// with a simple handshake (nginx-rtmp and SRS may).
    pub fn new(seed: u64, kind: HandshakeKind) -> Self {
        let mut rng = SplitMix64(seed);
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        rng.fill(&mut c1[8..]);
        let c1_digest_pos = match kind {
            HandshakeKind::Simple => None,
            HandshakeKind::Digest => {
                c1[4..8].copy_from_slice(&CLIENT_VERSION);
                Some(imprint_digest(
                    &mut c1,
                    Scheme::Zero,
                    &GENUINE_FP_KEY[..FP_KEY_PUBLIC_LEN],
                ))
            }
        };
        let mut out = BytesMut::with_capacity(1 + HANDSHAKE_SIZE);
        out.put_u8(RTMP_VERSION);
        out.put_slice(&c1);
        ClientHandshake {
            rng,
            state: ClientState::AwaitS0S1S2,
            requested: kind,
            c1,
            c1_digest_pos,
            buf: Vec::with_capacity(1 + 2 * HANDSHAKE_SIZE),
            output: Some(out.freeze()),
            kind: None,
        }
    }

    /// First C0C1, later C2 (or both at once if the first was never taken).
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.output.take()
    }

    /// Feeds S0S1S2; returns how many bytes were consumed. Bytes beyond S2 are not consumed.
    /// After an error every call returns that error again.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, HandshakeError> {
        match &self.state {
            ClientState::Failed(err) => return Err(err.clone()),
            ClientState::Done => return Ok(0),
            ClientState::AwaitS0S1S2 => {}
        }
        let result = fill_block(&mut self.buf, 1 + 2 * HANDSHAKE_SIZE, input).and_then(|n| {
            if self.buf.len() == 1 + 2 * HANDSHAKE_SIZE {
                self.respond()?;
            }
            Ok(n)
        });
        if let Err(err) = &result {
            self.state = ClientState::Failed(err.clone());
        }
        result
    }

    fn respond(&mut self) -> Result<(), HandshakeError> {
        let s1 = block(&self.buf[1..]);
        let s2 = block(&self.buf[1 + HANDSHAKE_SIZE..]);
        let c1_digest = self
            .c1_digest_pos
            .map(|pos| &self.c1[pos..pos + DIGEST_LEN]);
        let c2 = match check_server_reply(c1_digest, &s1, &s2)? {
            Some(s1_pos) if self.requested == HandshakeKind::Digest => {
                self.kind = Some(HandshakeKind::Digest);
                signed_reply(
                    &mut self.rng,
                    &GENUINE_FP_KEY,
                    &s1[s1_pos..s1_pos + DIGEST_LEN],
                )
            }
            _ => {
                self.kind = Some(HandshakeKind::Simple);
                s1
            }
        };
        let mut out = BytesMut::with_capacity(1 + 2 * HANDSHAKE_SIZE);
        if let Some(c0c1) = self.output.take() {
            out.put_slice(&c0c1);
        }
        out.put_slice(&c2);
        self.output = Some(out.freeze());
        self.buf = Vec::new();
        self.state = ClientState::Done;
        Ok(())
    }

    /// True once S0S1S2 is in and C2 is ready in [`Self::take_output`].
    pub fn is_complete(&self) -> bool {
        matches!(self.state, ClientState::Done)
    }

    /// The handshake the server answered with; known once S0S1S2 is in.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }
}

/// For a digest client (`c1_digest` is our C1 digest): finds the server's digest in S1 and, if
/// there is one, requires S2 to be signed with our digest. Returns the S1 digest offset, or
/// `None` when the server answered with a simple handshake.
fn check_server_reply(
    c1_digest: Option<&[u8]>,
    s1: &[u8; HANDSHAKE_SIZE],
    s2: &[u8; HANDSHAKE_SIZE],
) -> Result<Option<usize>, HandshakeError> {
    let Some(c1_digest) = c1_digest else {
        return Ok(None);
    };
    if s1[4..8] == [0; 4] {
        return Ok(None);
    }
    let Some((_, s1_pos)) = find_digest(s1, &GENUINE_FMS_KEY[..FMS_KEY_PUBLIC_LEN]) else {
        return Ok(None);
    };
    let expected = reply_signature(&GENUINE_FMS_KEY, c1_digest, &s2[..REPLY_BODY_LEN]);
    if s2[REPLY_BODY_LEN..] != expected {
        return Err(HandshakeError::InvalidDigest);
    }
    Ok(Some(s1_pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// C0+C1 sent by ffmpeg 5.1 (`-f flv rtmp://127.0.0.1:19351/app/x`).
    const FFMPEG_C0C1: &[u8; 1 + HANDSHAKE_SIZE] =
        include_bytes!("../../tests/data/ffmpeg_c0c1.bin");

    // Written out again, from ffmpeg's rtmpproto.c, so the tests do not trust the module's copy.
    const FP_KEY: &[u8] = &[
        b'G', b'e', b'n', b'u', b'i', b'n', b'e', b' ', b'A', b'd', b'o', b'b', b'e', b' ', b'F',
        b'l', b'a', b's', b'h', b' ', b'P', b'l', b'a', b'y', b'e', b'r', b' ', b'0', b'0', b'1',
        0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E,
        0x57, 0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB,
        0x31, 0xAE,
    ];
    const FMS_KEY: &[u8] = &[
        b'G', b'e', b'n', b'u', b'i', b'n', b'e', b' ', b'A', b'd', b'o', b'b', b'e', b' ', b'F',
        b'l', b'a', b's', b'h', b' ', b'M', b'e', b'd', b'i', b'a', b' ', b'S', b'e', b'r', b'v',
        b'e', b'r', b' ', b'0', b'0', b'1', 0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E,
        0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57, 0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB,
        0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
    ];

    fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }

    /// ffmpeg's `ff_rtmp_calc_digest_pos(buf, off, 728, off + 4)`.
    fn ffmpeg_digest_pos(block: &[u8], off: usize) -> usize {
        block[off..off + 4]
            .iter()
            .map(|&b| b as usize)
            .sum::<usize>()
            % 728
            + off
            + 4
    }

    /// ffmpeg's `rtmp_validate_digest`: the digest offset if `block` carries a valid one.
    fn ffmpeg_validate(block: &[u8], off: usize, key: &[u8]) -> Option<usize> {
        let pos = ffmpeg_digest_pos(block, off);
        let d = mac(key, &[&block[..pos], &block[pos + 32..]]);
        (block[pos..pos + 32] == d[..]).then_some(pos)
    }

    fn assert_key_copies_match() {
        assert_eq!(&GENUINE_FP_KEY[..], FP_KEY);
        assert_eq!(&GENUINE_FMS_KEY[..], FMS_KEY);
        assert_eq!(
            &FP_KEY[..FP_KEY_PUBLIC_LEN],
            b"Genuine Adobe Flash Player 001"
        );
        assert_eq!(
            &FMS_KEY[..FMS_KEY_PUBLIC_LEN],
            b"Genuine Adobe Flash Media Server 001"
        );
    }

    /// Runs a client and a server against each other, delivering bytes in pieces of `step`.
    fn run_pair(seed: u64, kind: HandshakeKind, step: usize) -> (ServerHandshake, ClientHandshake) {
        let mut server = ServerHandshake::new(seed);
        let mut client = ClientHandshake::new(seed.wrapping_add(1), kind);
        let c0c1 = client.take_output().expect("c0c1");
        assert_eq!(c0c1.len(), 1 + HANDSHAKE_SIZE);
        for piece in c0c1.chunks(step) {
            assert!(server.take_output().is_none());
            assert_eq!(server.feed(piece), Ok(piece.len()));
        }
        let s012 = server.take_output().expect("s0s1s2");
        assert_eq!(s012.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert!(server.take_output().is_none());
        for piece in s012.chunks(step) {
            assert!(!client.is_complete());
            assert_eq!(client.feed(piece), Ok(piece.len()));
        }
        assert!(client.is_complete());
        let c2 = client.take_output().expect("c2");
        assert_eq!(c2.len(), HANDSHAKE_SIZE);
        for piece in c2.chunks(step) {
            assert!(!server.is_complete());
            assert_eq!(server.feed(piece), Ok(piece.len()));
        }
        assert!(server.is_complete());
        (server, client)
    }

    #[test]
    fn keys_are_the_genuine_ones() {
        assert_key_copies_match();
    }

    #[test]
    fn server_and_client_agree_on_both_kinds() {
        for kind in [HandshakeKind::Simple, HandshakeKind::Digest] {
            for step in [usize::MAX, 1537, 1000, 7, 1] {
                for seed in [0, 1, 42, u64::MAX] {
                    let (server, client) = run_pair(seed, kind, step.min(4000));
                    assert_eq!(server.kind(), Some(kind), "{kind:?} step {step}");
                    assert_eq!(client.kind(), Some(kind), "{kind:?} step {step}");
                }
            }
        }
    }

    #[test]
    fn client_output_is_well_formed() {
        let mut simple = ClientHandshake::new(7, HandshakeKind::Simple);
        let c0c1 = simple.take_output().expect("c0c1");
        assert_eq!(c0c1[0], 3);
        assert_eq!(c0c1[1..9], [0; 8]);

        let mut digest = ClientHandshake::new(7, HandshakeKind::Digest);
        let c0c1 = digest.take_output().expect("c0c1");
        assert_eq!(c0c1[..9], [3, 0, 0, 0, 0, 0x09, 0x00, 0x7c, 0x02]);
        // Scheme 0, 30-byte key, exactly as ffmpeg's server-side check would find it.
        let pos = ffmpeg_validate(&c0c1[1..], 8, &FP_KEY[..30]).expect("scheme 0 digest");
        assert_eq!(digest.c1_digest_pos, Some(pos));
        assert!(digest.take_output().is_none());
    }

    #[test]
    fn ffmpeg_c0c1_gets_a_digest_answer_ffmpeg_accepts() {
        assert_key_copies_match();
        let c1 = &FFMPEG_C0C1[1..];
        assert_eq!(FFMPEG_C0C1[0], 3);
        assert_eq!(c1[4..8], [0x09, 0x00, 0x7c, 0x02]);
        // ffmpeg signs C1 with scheme 0 (offset from bytes 8..12) and the 30-byte key.
        let c1_pos = ffmpeg_validate(c1, 8, &FP_KEY[..30]).expect("ffmpeg c1 digest");

        let mut server = ServerHandshake::new(0xdead_beef);
        assert_eq!(server.feed(FFMPEG_C0C1), Ok(FFMPEG_C0C1.len()));
        assert_eq!(server.kind(), Some(HandshakeKind::Digest));
        let out = server.take_output().expect("s0s1s2");
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(out[0], 3);
        let s1 = &out[1..1 + HANDSHAKE_SIZE];
        let s2 = &out[1 + HANDSHAKE_SIZE..];

        // What ffmpeg's client does (rtmp_handshake in rtmpproto.c): S1[4] >= 3, then the S1
        // digest validates at offset 772 or 8 with the 36-byte key ...
        assert!(s1[4] >= 3);
        let s1_pos = ffmpeg_validate(s1, 772, &FMS_KEY[..36])
            .or_else(|| ffmpeg_validate(s1, 8, &FMS_KEY[..36]))
            .expect("s1 digest");
        // ... at the scheme ffmpeg used for C1 ...
        assert_eq!(s1_pos, ffmpeg_digest_pos(s1, 8));
        // ... and S2 ends with HMAC(HMAC(full FMS key, C1 digest), S2[..1504]).
        let key = mac(FMS_KEY, &[&c1[c1_pos..c1_pos + 32]]);
        let sig = mac(&key, &[&s2[..1504]]);
        assert_eq!(
            &s2[1504..],
            &sig[..],
            "signature mismatch as ffmpeg would see it"
        );

        // The client's own check agrees, given ffmpeg's C1.
        let s1 = block(s1);
        let s2 = block(s2);
        assert_eq!(
            check_server_reply(Some(&c1[c1_pos..c1_pos + 32]), &s1, &s2),
            Ok(Some(s1_pos))
        );
        let mut client = ClientHandshake::new(1, HandshakeKind::Digest);
        client.c1 = block(c1);
        client.c1_digest_pos = Some(c1_pos);
        let _ = client.take_output();
        assert_eq!(client.feed(&out), Ok(out.len()));
        assert_eq!(client.kind(), Some(HandshakeKind::Digest));
        let c2 = client.take_output().expect("c2");
        // C2 as ffmpeg builds it: HMAC(HMAC(full FP key, S1 digest), C2[..1504]).
        let key = mac(FP_KEY, &[&s1[s1_pos..s1_pos + 32]]);
        assert_eq!(&c2[1504..], &mac(&key, &[&c2[..1504]])[..]);

        // A tampered S2 is caught.
        let mut bad = out.to_vec();
        bad[1 + HANDSHAKE_SIZE + 100] ^= 1;
        let mut client = ClientHandshake::new(1, HandshakeKind::Digest);
        client.c1 = block(c1);
        client.c1_digest_pos = Some(c1_pos);
        assert_eq!(client.feed(&bad), Err(HandshakeError::InvalidDigest));
        assert_eq!(client.feed(&[]), Err(HandshakeError::InvalidDigest));
        assert!(!client.is_complete());
    }

    #[test]
    fn scheme_one_c1_gets_a_scheme_one_s1() {
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        SplitMix64(99).fill(&mut c1);
        c1[..8].copy_from_slice(&[0, 0, 0, 0, 0x0a, 0x00, 0x00, 0x01]);
        let pos = imprint_digest(&mut c1, Scheme::One, &FP_KEY[..30]);
        assert_eq!(ffmpeg_validate(&c1, 772, &FP_KEY[..30]), Some(pos));
        assert_eq!(find_digest(&c1, &FP_KEY[..30]), Some((Scheme::One, pos)));

        let mut server = ServerHandshake::new(5);
        let mut input = vec![3];
        input.extend_from_slice(&c1);
        assert_eq!(server.feed(&input), Ok(input.len()));
        assert_eq!(server.kind(), Some(HandshakeKind::Digest));
        let out = server.take_output().expect("s0s1s2");
        let s1 = &out[1..1 + HANDSHAKE_SIZE];
        let s1_pos = ffmpeg_validate(s1, 772, &FMS_KEY[..36]).expect("scheme 1 s1 digest");
        assert!(s1_pos >= 776);
        let key = mac(FMS_KEY, &[&c1[pos..pos + 32]]);
        let s2 = &out[1 + HANDSHAKE_SIZE..];
        assert_eq!(&s2[1504..], &mac(&key, &[&s2[..1504]])[..]);
    }

    #[test]
    fn versioned_c1_without_valid_digest_gets_a_simple_answer() {
        let mut server = ServerHandshake::new(3);
        let mut input = FFMPEG_C0C1.to_vec();
        input[200] ^= 0x55; // breaks the digest; the version field stays non-zero
        assert_eq!(server.feed(&input), Ok(input.len()));
        assert_eq!(server.kind(), Some(HandshakeKind::Simple));
        let out = server.take_output().expect("s0s1s2");
        assert_eq!(out[0], 3);
        assert_eq!(out[1..9], [0; 8], "s1: zero time and version");
        assert_eq!(&out[1 + HANDSHAKE_SIZE..], &input[1..], "s2 echoes c1");
    }

    #[test]
    fn digest_client_accepts_a_simple_server() {
        // A server that answers simply (zero S1 version, S2 = C1), like nginx-rtmp may.
        let mut client = ClientHandshake::new(11, HandshakeKind::Digest);
        let c0c1 = client.take_output().expect("c0c1");
        let mut reply = vec![3];
        let mut s1 = [0u8; HANDSHAKE_SIZE];
        SplitMix64(12).fill(&mut s1[8..]);
        reply.extend_from_slice(&s1);
        reply.extend_from_slice(&c0c1[1..]);
        assert_eq!(client.feed(&reply), Ok(reply.len()));
        assert_eq!(client.kind(), Some(HandshakeKind::Simple));
        assert_eq!(&client.take_output().expect("c2")[..], &s1[..]);

        // Also when S1 has a version but no digest we can validate.
        let mut client = ClientHandshake::new(11, HandshakeKind::Digest);
        s1[4..8].copy_from_slice(&[1, 2, 3, 4]);
        reply[1..1 + HANDSHAKE_SIZE].copy_from_slice(&s1);
        assert_eq!(client.feed(&reply), Ok(reply.len()));
        assert_eq!(client.kind(), Some(HandshakeKind::Simple));
        // The C0C1 was never taken, so it comes out together with C2.
        let out = client.take_output().expect("c0c1c2");
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(&out[1 + HANDSHAKE_SIZE..], &s1[..]);
    }

    #[test]
    fn simple_client_against_digest_capable_server() {
        let (server, client) = run_pair(8, HandshakeKind::Simple, 100);
        assert_eq!(server.kind(), Some(HandshakeKind::Simple));
        assert_eq!(client.kind(), Some(HandshakeKind::Simple));
    }

    #[test]
    fn garbage_c0_is_rejected() {
        let mut server = ServerHandshake::new(1);
        assert_eq!(
            server.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(HandshakeError::UnsupportedVersion(b'G'))
        );
        assert_eq!(
            server.feed(FFMPEG_C0C1),
            Err(HandshakeError::UnsupportedVersion(b'G'))
        );
        assert!(server.take_output().is_none());
        assert!(!server.is_complete());

        for version in [0u8, 6, 8, 0xff] {
            let mut server = ServerHandshake::new(1);
            assert_eq!(
                server.feed(&[version]),
                Err(HandshakeError::UnsupportedVersion(version))
            );
        }

        let mut client = ClientHandshake::new(1, HandshakeKind::Digest);
        assert_eq!(
            client.feed(b"HTTP/1.1 400"),
            Err(HandshakeError::UnsupportedVersion(b'H'))
        );
    }

    #[test]
    fn truncated_input_waits_for_more() {
        let mut server = ServerHandshake::new(1);
        assert_eq!(server.feed(&[]), Ok(0));
        assert_eq!(server.feed(&FFMPEG_C0C1[..1000]), Ok(1000));
        assert!(server.take_output().is_none());
        assert!(!server.is_complete());
        assert_eq!(server.kind(), None);
        assert_eq!(server.feed(&FFMPEG_C0C1[1000..]), Ok(537));
        assert!(server.take_output().is_some());
        assert_eq!(server.feed(&[0; 1535]), Ok(1535));
        assert!(!server.is_complete());
        assert_eq!(server.feed(&[0]), Ok(1));
        assert!(server.is_complete());

        let mut client = ClientHandshake::new(1, HandshakeKind::Simple);
        assert_eq!(client.feed(&[3; 3072]), Ok(3072));
        assert!(!client.is_complete());
        assert_eq!(client.kind(), None);
    }

    #[test]
    fn bytes_after_c2_are_not_consumed() {
        let mut client = ClientHandshake::new(9, HandshakeKind::Digest);
        let mut server = ServerHandshake::new(10);
        let c0c1 = client.take_output().expect("c0c1");
        assert_eq!(server.feed(&c0c1), Ok(c0c1.len()));
        let mut s012 = server.take_output().expect("s0s1s2").to_vec();
        s012.extend_from_slice(b"\x02\x00\x00\x00server chunk data");
        assert_eq!(client.feed(&s012), Ok(1 + 2 * HANDSHAKE_SIZE));
        assert_eq!(client.feed(b"more"), Ok(0));
        let mut c2 = client.take_output().expect("c2").to_vec();
        c2.extend_from_slice(b"\x03\x00\x00\x00connect...");
        assert_eq!(server.feed(&c2), Ok(HANDSHAKE_SIZE));
        assert!(server.is_complete());
        assert_eq!(server.feed(b"\x03more"), Ok(0));

        // Everything in one read: C0C1, C2 and the start of the chunk stream.
        let mut server = ServerHandshake::new(10);
        let mut all = FFMPEG_C0C1.to_vec();
        all.extend_from_slice(&[0xaa; HANDSHAKE_SIZE]);
        all.extend_from_slice(b"\x03chunks");
        assert_eq!(server.feed(&all), Ok(1 + 2 * HANDSHAKE_SIZE));
        assert!(server.is_complete());
        assert!(server.take_output().is_some());
    }

    #[test]
    fn seeds_change_the_padding() {
        let a = ClientHandshake::new(1, HandshakeKind::Simple).take_output();
        let b = ClientHandshake::new(2, HandshakeKind::Simple).take_output();
        assert_ne!(a, b);
        let mut server = ServerHandshake::new(1);
        assert_eq!(server.feed(FFMPEG_C0C1), Ok(FFMPEG_C0C1.len()));
        let out = server.take_output().expect("s0s1s2");
        assert!(out[9..1 + HANDSHAKE_SIZE].iter().any(|&b| b != 0));
    }
}
