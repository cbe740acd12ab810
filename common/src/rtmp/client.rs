//! Client side of an RTMP connection as a state machine (the edge's pull, test and bench
//! clients): handshake, connect, createStream, then play or publish. Bytes in, events and
//! bytes out; no I/O, no clocks.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use super::amf0::Amf0Value;
use super::chunk::{ChunkDecoder, DecoderLimits, RawMessage, encode_message};
use super::command::{CSID_COMMAND, Command, connect_command, metadata_body, write_command};
use super::handshake::{ClientHandshake, HandshakeKind};
use super::message::{AckTracker, ControlMessage, UserControl, type_id};
use super::server::SessionError;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Application, e.g. `live`.
    pub app: String,
    /// tcUrl sent in connect, e.g. `rtmp://host:1935/live`.
    pub tc_url: String,
    /// Outbound chunk size (announced when publishing).
    pub chunk_size: u32,
    pub handshake: HandshakeKind,
    pub limits: DecoderLimits,
    pub seed: u64,
    /// Buffer length announced to the server when playing.
    pub buffer_ms: u32,
}

impl ClientConfig {
    pub fn new(app: &str, tc_url: &str) -> Self {
        Self {
            app: app.to_string(),
            tc_url: tc_url.to_string(),
            chunk_size: 4096,
            handshake: HandshakeKind::Digest,
            limits: DecoderLimits::default(),
            seed: 0x9e37_79b9,
            buffer_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// connect succeeded.
    Connected,
    /// NetStream.Play.Start: media follows.
    PlayStarted,
    /// NetStream.Publish.Start: `send_media` may be used.
    PublishStarted,
    /// Any other onStatus or _error: `level` is "status", "warning" or "error".
    Status {
        level: String,
        code: String,
        description: String,
    },
    /// StreamEOF from the server: the stream ended.
    StreamEof,
    Media {
        type_id: u8,
        timestamp: u32,
        payload: Bytes,
    },
    Metadata {
        timestamp: u32,
        payload: Bytes,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Intent {
    Play(String),
    Publish(String),
}

/// The transaction id `connect_command` uses.
const TXN_CONNECT: f64 = 1.0;
const TXN_CREATE_STREAM: f64 = 2.0;

pub struct ClientSession {
    config: ClientConfig,
    /// Until the handshake is complete. Boxed and dropped then: its blocks are ~1.6 KiB that
    /// an edge's pull of each stream would otherwise carry for the stream's whole life.
    handshake: Option<Box<ClientHandshake>>,
    decoder: ChunkDecoder,
    input: BytesMut,
    output: BytesMut,
    out_chunk_size: u32,
    ack: AckTracker,
    events: VecDeque<ClientEvent>,
    intent: Option<Intent>,
    connected: bool,
    stream_id: Option<u32>,
}

impl ClientSession {
    /// Starts the handshake; the first output is C0C1.
    pub fn new(config: ClientConfig) -> Self {
        let mut handshake = Box::new(ClientHandshake::new(config.seed, config.handshake));
        let mut output = BytesMut::new();
        if let Some(c0c1) = handshake.take_output() {
            output.extend_from_slice(&c0c1);
        }
        Self {
            decoder: ChunkDecoder::new(config.limits),
            handshake: Some(handshake),
            input: BytesMut::new(),
            output,
            out_chunk_size: super::chunk::DEFAULT_CHUNK_SIZE,
            ack: AckTracker::new(),
            events: VecDeque::new(),
            intent: None,
            connected: false,
            stream_id: None,
            config,
        }
    }

    /// Plays `name` (with an optional `?query`) once connected.
    pub fn play(&mut self, name: &str) {
        self.intent = Some(Intent::Play(name.to_string()));
        self.create_stream_if_ready();
    }

    /// Publishes `name` once connected.
    pub fn publish(&mut self, name: &str) {
        self.intent = Some(Intent::Publish(name.to_string()));
        self.create_stream_if_ready();
    }

    /// Queues one audio/video/data message of the published stream.
    pub fn send_media(&mut self, type_id: u8, timestamp: u32, payload: &[u8]) {
        let sid = self.stream_id.unwrap_or(1);
        let csid = match type_id {
            type_id::AUDIO => 4,
            type_id::VIDEO => 6,
            _ => 5,
        };
        encode_message(
            self.out_chunk_size,
            csid,
            timestamp,
            type_id,
            sid,
            payload,
            &mut self.output,
        );
    }

    /// Sends FCUnpublish/deleteStream for a published stream.
    pub fn close_stream(&mut self) {
        if let Some(sid) = self.stream_id.take() {
            let values = [
                Amf0Value::string("deleteStream"),
                Amf0Value::Number(0.0),
                Amf0Value::Null,
                Amf0Value::Number(sid.into()),
            ];
            write_command(
                self.out_chunk_size,
                CSID_COMMAND,
                0,
                &values,
                &mut self.output,
            );
        }
    }

    pub fn bytes_received(&self) -> u64 {
        self.decoder.bytes_received()
    }

    pub fn take_output(&mut self) -> Option<Bytes> {
        if self.output.is_empty() {
            None
        } else {
            // Taken whole: a split would keep the rest of the allocation in the session.
            Some(std::mem::take(&mut self.output).freeze())
        }
    }

    /// Bytes allocated for input not decoded yet (a partial chunk between reads).
    pub fn input_capacity(&self) -> usize {
        self.input.capacity()
    }

    /// Number of output bytes waiting to be taken.
    pub fn pending_output(&self) -> usize {
        self.output.len()
    }

    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), SessionError> {
        self.input.extend_from_slice(data);
        if let Some(handshake) = &mut self.handshake {
            let used = handshake.feed(&self.input)?;
            self.input.advance(used);
            if let Some(c2) = handshake.take_output() {
                self.output.extend_from_slice(&c2);
            }
            if handshake.is_complete() {
                self.handshake = None;
                self.send_connect();
            }
        }
        Ok(())
    }

    pub fn poll_event(&mut self) -> Result<Option<ClientEvent>, SessionError> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
            if self.handshake.is_some() {
                return Ok(None);
            }
            let Some(msg) = self.decoder.decode(&mut self.input)? else {
                super::release_if_empty(&mut self.input);
                return Ok(None);
            };
            if let Some(seq) = self.ack.on_received(self.decoder.bytes_received()) {
                ControlMessage::Acknowledgement(seq).encode(self.out_chunk_size, &mut self.output);
            }
            self.handle_message(msg)?;
        }
    }

    fn send_connect(&mut self) {
        let values = connect_command(
            &self.config.app,
            &self.config.tc_url,
            "FMLE/3.0 (compatible; livecdn)",
        );
        write_command(
            self.out_chunk_size,
            CSID_COMMAND,
            0,
            &values,
            &mut self.output,
        );
    }

    fn create_stream_if_ready(&mut self) {
        if !self.connected || self.intent.is_none() || self.stream_id.is_some() {
            return;
        }
        if let Some(Intent::Publish(name)) = &self.intent {
            let name = name.clone();
            for cmd in ["releaseStream", "FCPublish"] {
                let values = [
                    Amf0Value::string(cmd),
                    Amf0Value::Number(0.0),
                    Amf0Value::Null,
                    Amf0Value::string(name.clone()),
                ];
                write_command(
                    self.out_chunk_size,
                    CSID_COMMAND,
                    0,
                    &values,
                    &mut self.output,
                );
            }
        }
        let values = [
            Amf0Value::string("createStream"),
            Amf0Value::Number(TXN_CREATE_STREAM),
            Amf0Value::Null,
        ];
        write_command(
            self.out_chunk_size,
            CSID_COMMAND,
            0,
            &values,
            &mut self.output,
        );
    }

    fn on_stream_created(&mut self, sid: u32) {
        self.stream_id = Some(sid);
        let cs = self.out_chunk_size;
        match self.intent.clone() {
            Some(Intent::Play(name)) => {
                ControlMessage::UserControl(UserControl::SetBufferLength {
                    stream_id: sid,
                    buffer_ms: self.config.buffer_ms,
                })
                .encode(cs, &mut self.output);
                let values = [
                    Amf0Value::string("play"),
                    Amf0Value::Number(0.0),
                    Amf0Value::Null,
                    Amf0Value::string(name),
                    Amf0Value::Number(-1000.0),
                ];
                write_command(cs, 8, sid, &values, &mut self.output);
            }
            Some(Intent::Publish(name)) => {
                ControlMessage::SetChunkSize(self.config.chunk_size).encode(cs, &mut self.output);
                self.out_chunk_size = self.config.chunk_size;
                let values = [
                    Amf0Value::string("publish"),
                    Amf0Value::Number(0.0),
                    Amf0Value::Null,
                    Amf0Value::string(name),
                    Amf0Value::string("live"),
                ];
                write_command(self.out_chunk_size, 8, sid, &values, &mut self.output);
            }
            None => {}
        }
    }

    fn handle_message(&mut self, msg: RawMessage) -> Result<(), SessionError> {
        if let Some(ctrl) = ControlMessage::parse(msg.type_id, &msg.payload)? {
            match ctrl {
                ControlMessage::WindowAckSize(size) => self.ack.set_window(size),
                ControlMessage::UserControl(UserControl::PingRequest(t)) => {
                    ControlMessage::UserControl(UserControl::PingResponse(t))
                        .encode(self.out_chunk_size, &mut self.output);
                }
                ControlMessage::UserControl(UserControl::StreamEof(_)) => {
                    self.events.push_back(ClientEvent::StreamEof);
                }
                _ => {}
            }
            return Ok(());
        }
        match msg.type_id {
            type_id::COMMAND_AMF0 | type_id::COMMAND_AMF3 => {
                let body = if msg.type_id == type_id::COMMAND_AMF3 {
                    msg.payload.get(1..).unwrap_or_default()
                } else {
                    &msg.payload[..]
                };
                self.handle_command(Command::parse(body)?);
            }
            type_id::AUDIO | type_id::VIDEO => self.events.push_back(ClientEvent::Media {
                type_id: msg.type_id,
                timestamp: msg.timestamp,
                payload: msg.payload,
            }),
            type_id::DATA_AMF0 => {
                if let Some(payload) = metadata_body(&msg.payload) {
                    self.events.push_back(ClientEvent::Metadata {
                        timestamp: msg.timestamp,
                        payload,
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_command(&mut self, cmd: Command) {
        match cmd.name.as_str() {
            "_result" if cmd.transaction_id == TXN_CONNECT && !self.connected => {
                self.connected = true;
                self.events.push_back(ClientEvent::Connected);
                self.create_stream_if_ready();
            }
            "_result" if cmd.transaction_id == TXN_CREATE_STREAM => {
                let sid = cmd.arg_f64(0).unwrap_or(1.0) as u32;
                self.on_stream_created(sid);
            }
            "onStatus" | "_error" => {
                let code = cmd.info("code");
                let level = if cmd.name == "_error" {
                    "error".to_string()
                } else {
                    cmd.info("level")
                };
                let event = match code.as_str() {
                    "NetStream.Play.Start" => ClientEvent::PlayStarted,
                    "NetStream.Publish.Start" => ClientEvent::PublishStarted,
                    _ => ClientEvent::Status {
                        level,
                        code,
                        description: cmd.info("description"),
                    },
                };
                self.events.push_back(event);
            }
            _ => {}
        }
    }
}
