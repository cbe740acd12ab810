//! Whole RTMP conversations for cargo-fuzz: a `ServerSession` (or a `ClientSession`) is first
//! brought to a state by a real peer in memory (nothing, handshaken, connected, publishing or
//! playing), then fed the fuzzer's bytes in arbitrary splits while the driver answers every
//! event as the node would. It must never panic, never hand out a message beyond its limits,
//! and answer with output bounded by what it was sent. Must not touch the network or
//! filesystem.

#![allow(dead_code)]

use common::rtmp::chunk::DecoderLimits;
use common::rtmp::handshake::{ClientHandshake, HandshakeKind};
use common::rtmp::{
    ClientConfig, ClientEvent, ClientSession, ServerConfig, ServerEvent, ServerSession,
};

/// Events handled per input at most, so every run stays fast.
const MAX_EVENTS: usize = 20_000;

/// How far a real peer takes the session before the fuzzer's bytes arrive.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Fresh,
    Handshaken,
    Connected,
    Streaming,
}

/// Input header: stage (2 bits), play or publish (1 bit), reject connect (1 bit), split seed.
struct Header {
    stage: Stage,
    play: bool,
    reject_connect: bool,
    splits: Splits,
}

fn header(data: &[u8]) -> Option<(Header, &[u8])> {
    let (&[mode, seed], rest) = data.split_first_chunk::<2>()?;
    let stage = match mode & 3 {
        0 => Stage::Fresh,
        1 => Stage::Handshaken,
        2 => Stage::Connected,
        _ => Stage::Streaming,
    };
    Some((
        Header {
            stage,
            play: mode & 4 != 0,
            reject_connect: mode & 8 != 0,
            splits: Splits(u32::from(seed) << 8 | u32::from(mode) | 1),
        },
        rest,
    ))
}

/// Read sizes from a tiny xorshift: byte by byte, small, large or everything at once.
struct Splits(u32);

impl Splits {
    fn next(&mut self) -> usize {
        let s = &mut self.0;
        *s ^= *s << 13;
        *s ^= *s >> 17;
        *s ^= *s << 5;
        match *s % 4 {
            0 => 1,
            1 => (*s >> 8) as usize % 64 + 1,
            2 => (*s >> 8) as usize % 8192 + 1,
            _ => usize::MAX,
        }
    }
}

fn server_config() -> ServerConfig {
    ServerConfig {
        chunk_size: 4096,
        ..ServerConfig::default()
    }
}

fn client_config() -> ClientConfig {
    ClientConfig::new("live", "rtmp://fuzz/live")
}

/// Answers a server event as the node does (accept everything unless told to refuse connect).
fn answer(
    server: &mut ServerSession,
    ev: ServerEvent,
    reject_connect: bool,
    limits: DecoderLimits,
) {
    match ev {
        ServerEvent::Connect { .. } if reject_connect => server.reject_connect("refused"),
        ServerEvent::Connect { .. } => server.accept_connect(),
        ServerEvent::Publish {
            stream_id, name, ..
        } => server.accept_publish(stream_id, &name),
        ServerEvent::Play {
            stream_id, name, ..
        } => server.accept_play(stream_id, &name),
        ServerEvent::Media { payload, .. } | ServerEvent::Metadata { payload, .. } => {
            assert!(payload.len() <= limits.max_message_size as usize);
        }
        ServerEvent::CloseStream { .. } => {}
    }
}

/// Moves bytes both ways between two well-behaved sessions until neither has anything to say.
fn converse(client: &mut ClientSession, server: &mut ServerSession) -> Option<()> {
    for _ in 0..64 {
        let mut progressed = false;
        if let Some(b) = client.take_output() {
            server.handle_input(&b).ok()?;
            progressed = true;
        }
        while let Some(ev) = server.poll_event().ok()? {
            progressed = true;
            answer(server, ev, false, server_config().limits);
        }
        if let Some(b) = server.take_output() {
            client.handle_input(&b).ok()?;
            progressed = true;
        }
        while client.poll_event().ok()?.is_some() {
            progressed = true;
        }
        if !progressed {
            return Some(());
        }
    }
    Some(())
}

/// A server brought to `stage` by a real client.
fn server_at(h: &Header) -> Option<ServerSession> {
    let mut server = ServerSession::new(server_config());
    match h.stage {
        Stage::Fresh => {}
        Stage::Handshaken => {
            let mut hs = ClientHandshake::new(7, HandshakeKind::Digest);
            server.handle_input(&hs.take_output()?).ok()?;
            let s0s1s2 = server.take_output()?;
            hs.feed(&s0s1s2).ok()?;
            server.handle_input(&hs.take_output()?).ok()?;
            assert!(server.is_handshake_done());
        }
        Stage::Connected | Stage::Streaming => {
            let mut client = ClientSession::new(client_config());
            if h.stage == Stage::Streaming {
                if h.play {
                    client.play("fuzz");
                } else {
                    client.publish("fuzz");
                }
            }
            converse(&mut client, &mut server)?;
        }
    }
    Some(server)
}

/// A client brought to `stage` by a real server.
fn client_at(h: &Header) -> Option<ClientSession> {
    let mut client = ClientSession::new(client_config());
    if h.stage == Stage::Streaming {
        if h.play {
            client.play("fuzz");
        } else {
            client.publish("fuzz");
        }
    }
    match h.stage {
        Stage::Fresh => {
            client.take_output();
        }
        Stage::Handshaken => {
            let mut server = ServerSession::new(server_config());
            server.handle_input(&client.take_output()?).ok()?;
            client.handle_input(&server.take_output()?).ok()?;
            client.take_output();
        }
        Stage::Connected | Stage::Streaming => {
            let mut server = ServerSession::new(server_config());
            converse(&mut client, &mut server)?;
        }
    }
    Some(client)
}

/// The server target: the fuzzer's bytes are what a client sends.
pub fn server(data: &[u8]) {
    let Some((mut h, rest)) = header(data) else {
        return;
    };
    let Some(mut server) = server_at(&h) else {
        return;
    };
    let limits = server_config().limits;
    let (mut fed, mut out, mut events) = (0usize, 0usize, 0usize);
    let mut remaining = rest;
    while !remaining.is_empty() {
        let (piece, tail) = remaining.split_at(h.splits.next().min(remaining.len()));
        remaining = tail;
        fed += piece.len();
        if server.handle_input(piece).is_err() {
            return;
        }
        loop {
            match server.poll_event() {
                Ok(Some(ev)) => {
                    events += 1;
                    if events > MAX_EVENTS {
                        return;
                    }
                    answer(&mut server, ev, h.reject_connect, limits);
                }
                Ok(None) => break,
                Err(_) => {
                    // Its last words (an _error) may follow; then the connection closes.
                    out += server.take_output().map_or(0, |b| b.len());
                    assert_output_bounded(out, fed);
                    return;
                }
            }
        }
        out += server.take_output().map_or(0, |b| b.len());
        assert_output_bounded(out, fed);
    }
}

/// The client target: the fuzzer's bytes are what a server sends.
pub fn client(data: &[u8]) {
    let Some((mut h, rest)) = header(data) else {
        return;
    };
    let Some(mut client) = client_at(&h) else {
        return;
    };
    let limits = client_config().limits;
    let (mut fed, mut out, mut events) = (0usize, 0usize, 0usize);
    let mut remaining = rest;
    while !remaining.is_empty() {
        let (piece, tail) = remaining.split_at(h.splits.next().min(remaining.len()));
        remaining = tail;
        fed += piece.len();
        if client.handle_input(piece).is_err() {
            return;
        }
        loop {
            match client.poll_event() {
                Ok(Some(ev)) => {
                    events += 1;
                    if events > MAX_EVENTS {
                        return;
                    }
                    match ev {
                        ClientEvent::Media { payload, .. }
                        | ClientEvent::Metadata { payload, .. } => {
                            assert!(payload.len() <= limits.max_message_size as usize);
                        }
                        ClientEvent::PublishStarted => {
                            client.send_media(9, 0, &[0x17, 0, 0, 0, 0]);
                        }
                        _ => {}
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        out += client.take_output().map_or(0, |b| b.len());
        assert_output_bounded(out, fed);
    }
}

/// What a session writes in answer to `fed` bytes of a peer: handshake replies, a fixed
/// response per command, acknowledgements, pings; never more than a small multiple.
fn assert_output_bounded(out: usize, fed: usize) {
    assert!(
        out <= 64 * 1024 + 16 * fed,
        "{out} bytes out for {fed} bytes in"
    );
}
