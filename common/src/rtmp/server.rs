//! Server side of an RTMP connection as a state machine: bytes in, events and bytes out.
//! Answers the protocol itself (handshake, control messages, acks, pings, createStream ...)
//! and leaves decisions (accept a publish or play) to its caller. No I/O, no clocks.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use super::amf0::Amf0Value;
use super::chunk::{ChunkDecoder, ChunkError, DecoderLimits, RawMessage};
use super::command::{
    CSID_COMMAND, Command, CommandError, metadata_body, split_stream_name, status_object,
    write_command, write_on_status,
};
use super::handshake::{HandshakeError, ServerHandshake};
use super::message::{AckTracker, ControlMessage, MessageError, UserControl, type_id};

/// Bounds on what a peer may send before its `connect` is accepted: nothing but control
/// messages and a connect command is useful then, and a 16 MiB "command" from an
/// unauthenticated peer must not be buffered, let alone decoded.
pub const PRE_CONNECT_LIMITS: DecoderLimits = DecoderLimits {
    max_message_size: 64 * 1024,
    max_command_size: 64 * 1024,
    max_chunk_streams: 8,
    max_buffered_bytes: 256 * 1024,
};

/// The message stream id every NetStream gets: media bytes are shared between players, so
/// they must all carry the same stream id.
pub const STREAM_ID: u32 = 1;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Outbound chunk size, announced right after connect.
    pub chunk_size: u32,
    /// Window Acknowledgement Size and Set Peer Bandwidth we announce.
    pub window_ack_size: u32,
    /// Decoder limits once connected (before: the tighter of these and `PRE_CONNECT_LIMITS`).
    pub limits: DecoderLimits,
    /// Seeds the handshake's random bytes.
    pub seed: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            limits: DecoderLimits::default(),
            seed: 0x1234_5678,
        }
    }
}

/// `limits`, no looser than `PRE_CONNECT_LIMITS`.
fn pre_connect(limits: DecoderLimits) -> DecoderLimits {
    let pre = PRE_CONNECT_LIMITS;
    DecoderLimits {
        max_message_size: limits.max_message_size.min(pre.max_message_size),
        max_command_size: limits.max_command_size.min(pre.max_command_size),
        max_chunk_streams: limits.max_chunk_streams.min(pre.max_chunk_streams),
        max_buffered_bytes: limits.max_buffered_bytes.min(pre.max_buffered_bytes),
    }
}

/// What the peer asked for; the caller answers with `accept_*` / `reject_*`.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// connect: the caller must answer with `accept_connect` or `reject_connect`.
    Connect {
        app: String,
        /// Query string after the app name (`rtmp://host/app?k=v/name`), kept for auth.
        app_query: String,
        tc_url: String,
    },
    /// publish on `stream_id`: answer with `accept_publish` or `reject_publish`.
    Publish {
        stream_id: u32,
        name: String,
        query: String,
        publish_type: String,
    },
    /// play on `stream_id`: answer with `accept_play` or `reject_play`.
    Play {
        stream_id: u32,
        name: String,
        query: String,
    },
    /// FCUnpublish, closeStream or deleteStream: the stream on this connection is over.
    CloseStream { stream_id: u32 },
    /// Audio (8) or video (9) from the accepted publisher.
    Media {
        type_id: u8,
        timestamp: u32,
        payload: Bytes,
    },
    /// onMetaData from the accepted publisher, as `onMetaData(obj)` players expect.
    Metadata { timestamp: u32, payload: Bytes },
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    #[error("control message: {0}")]
    Message(#[from] MessageError),
    #[error("command: {0}")]
    Command(#[from] CommandError),
    #[error("AMF3 object encoding is not supported")]
    Amf3Refused,
    #[error("{0} before connect")]
    NotConnected(String),
    #[error("connection refused: {0}")]
    Refused(String),
}

impl SessionError {
    /// A short label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            SessionError::Handshake(_) => "handshake",
            SessionError::Chunk(_) => "chunk",
            SessionError::Message(_) => "control",
            SessionError::Command(_) => "command",
            SessionError::Amf3Refused => "amf3",
            SessionError::NotConnected(_) => "not_connected",
            SessionError::Refused(_) => "refused",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    AwaitConnect,
    /// connect event emitted, waiting for the caller's answer
    Connecting,
    Connected,
}

pub struct ServerSession {
    config: ServerConfig,
    phase: Phase,
    handshake: ServerHandshake,
    decoder: ChunkDecoder,
    input: BytesMut,
    output: BytesMut,
    out_chunk_size: u32,
    ack: AckTracker,
    events: VecDeque<ServerEvent>,
    connect_txn: f64,
    publishing: Option<u32>,
    playing: Option<u32>,
}

impl ServerSession {
    pub fn new(config: ServerConfig) -> Self {
        Self {
            handshake: ServerHandshake::new(config.seed),
            decoder: ChunkDecoder::new(pre_connect(config.limits)),
            phase: Phase::Handshake,
            input: BytesMut::new(),
            output: BytesMut::new(),
            out_chunk_size: super::chunk::DEFAULT_CHUNK_SIZE,
            ack: AckTracker::new(),
            events: VecDeque::new(),
            connect_txn: 1.0,
            publishing: None,
            playing: None,
            config,
        }
    }

    /// The chunk size our outbound messages use (after connect: `config.chunk_size`).
    pub fn out_chunk_size(&self) -> u32 {
        self.out_chunk_size
    }

    pub fn is_handshake_done(&self) -> bool {
        self.phase != Phase::Handshake
    }

    /// Total bytes received from the peer after the handshake.
    pub fn bytes_received(&self) -> u64 {
        self.decoder.bytes_received()
    }

    /// Feeds bytes read from the socket.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), SessionError> {
        self.input.extend_from_slice(data);
        if self.phase == Phase::Handshake {
            let used = self.handshake.feed(&self.input)?;
            self.input.advance(used);
            if let Some(out) = self.handshake.take_output() {
                self.output.extend_from_slice(&out);
            }
            if self.handshake.is_complete() {
                self.phase = Phase::AwaitConnect;
            }
        }
        Ok(())
    }

    /// Bytes to write to the socket, if any.
    pub fn take_output(&mut self) -> Option<Bytes> {
        if self.output.is_empty() {
            None
        } else {
            // Taken whole, not split: a split would leave the rest of the allocation to this
            // session, kept for as long as the connection lives.
            Some(std::mem::take(&mut self.output).freeze())
        }
    }

    /// Gives back the room negotiation took (its event queue): a player sends next to nothing
    /// for the rest of its life, and an edge holds thousands of them.
    pub fn release_negotiation(&mut self) {
        self.events.shrink_to_fit();
    }

    /// Bytes allocated for input not decoded yet (a partial chunk between reads).
    pub fn input_capacity(&self) -> usize {
        self.input.capacity()
    }

    /// The next event, decoding buffered input as needed. `Ok(None)`: feed more input.
    pub fn poll_event(&mut self) -> Result<Option<ServerEvent>, SessionError> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
            // Until the caller answers connect, nothing else is processed.
            if matches!(self.phase, Phase::Handshake | Phase::Connecting) {
                return Ok(None);
            }
            let msg = match self.decoder.decode(&mut self.input) {
                Ok(Some(msg)) => msg,
                Ok(None) => {
                    super::release_if_empty(&mut self.input);
                    return Ok(None);
                }
                Err(e) => {
                    if let ChunkError::CommandTooLarge { .. } | ChunkError::MessageTooLarge { .. } =
                        e
                    {
                        // The peer hears why before the connection closes.
                        let info = status_object(
                            "error",
                            "NetConnection.Call.Failed",
                            &format!("{e}; closing the connection"),
                        );
                        self.error(0.0, info);
                    }
                    return Err(e.into());
                }
            };
            if let Some(seq) = self.ack.on_received(self.decoder.bytes_received()) {
                ControlMessage::Acknowledgement(seq).encode(self.out_chunk_size, &mut self.output);
            }
            self.handle_message(msg)?;
        }
    }

    fn handle_message(&mut self, msg: RawMessage) -> Result<(), SessionError> {
        if let Some(ctrl) = ControlMessage::parse(msg.type_id, &msg.payload)? {
            self.handle_control(ctrl);
            return Ok(());
        }
        match msg.type_id {
            type_id::COMMAND_AMF0 => self.handle_command(&msg.payload, msg.stream_id),
            type_id::COMMAND_AMF3 => {
                // An AMF3 command is AMF0 behind a format byte 0.
                let body = msg.payload.get(1..).unwrap_or_default();
                self.handle_command(body, msg.stream_id)
            }
            type_id::AUDIO | type_id::VIDEO => {
                if self.publishing.is_some() {
                    self.events.push_back(ServerEvent::Media {
                        type_id: msg.type_id,
                        timestamp: msg.timestamp,
                        payload: msg.payload,
                    });
                }
                Ok(())
            }
            type_id::DATA_AMF0 | type_id::DATA_AMF3 => {
                let body = if msg.type_id == type_id::DATA_AMF3 {
                    msg.payload.slice(1.min(msg.payload.len())..)
                } else {
                    msg.payload
                };
                if self.publishing.is_some()
                    && let Some(payload) = metadata_body(&body)
                {
                    self.events.push_back(ServerEvent::Metadata {
                        timestamp: msg.timestamp,
                        payload,
                    });
                }
                Ok(())
            }
            type_id::AGGREGATE => {
                if self.publishing.is_some() {
                    self.split_aggregate(msg.timestamp, &msg.payload);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// An aggregate message is a run of FLV tags; their timestamps are relative to the first.
    fn split_aggregate(&mut self, base: u32, mut body: &[u8]) {
        let mut first_ts = None;
        while body.len() >= 11 {
            let tag_type = body[0];
            let size = u32::from_be_bytes([0, body[1], body[2], body[3]]) as usize;
            let ts = u32::from_be_bytes([body[7], body[4], body[5], body[6]]);
            let Some(data) = body.get(11..11 + size) else {
                return;
            };
            let first = *first_ts.get_or_insert(ts);
            let timestamp = base.wrapping_add(ts.wrapping_sub(first));
            let payload = Bytes::copy_from_slice(data);
            match tag_type {
                type_id::AUDIO | type_id::VIDEO => self.events.push_back(ServerEvent::Media {
                    type_id: tag_type,
                    timestamp,
                    payload,
                }),
                // Metadata inside an aggregate gets the bound a data message has.
                type_id::DATA_AMF0 if size <= self.decoder.limits().max_command_size as usize => {
                    if let Some(payload) = metadata_body(&payload) {
                        self.events
                            .push_back(ServerEvent::Metadata { timestamp, payload });
                    }
                }
                _ => {}
            }
            body = body.get(11 + size + 4..).unwrap_or_default();
        }
    }

    fn handle_control(&mut self, ctrl: ControlMessage) {
        match ctrl {
            ControlMessage::WindowAckSize(size) => self.ack.set_window(size),
            ControlMessage::UserControl(UserControl::PingRequest(t)) => {
                ControlMessage::UserControl(UserControl::PingResponse(t))
                    .encode(self.out_chunk_size, &mut self.output);
            }
            // Set Chunk Size and Abort are applied by the decoder; the rest needs no answer.
            _ => {}
        }
    }

    fn handle_command(&mut self, payload: &[u8], msg_stream_id: u32) -> Result<(), SessionError> {
        let cmd = Command::parse(payload)?;
        if self.phase != Phase::Connected && cmd.name != "connect" {
            return Err(SessionError::NotConnected(cmd.name));
        }
        let stream_id = if msg_stream_id == 0 {
            STREAM_ID
        } else {
            msg_stream_id
        };
        match cmd.name.as_str() {
            "connect" => self.on_connect(cmd),
            "createStream" => {
                self.result(
                    cmd.transaction_id,
                    Amf0Value::Null,
                    Amf0Value::Number(STREAM_ID.into()),
                );
                Ok(())
            }
            "releaseStream" | "getStreamLength" => {
                let value = if cmd.name == "getStreamLength" {
                    Amf0Value::Number(0.0)
                } else {
                    Amf0Value::Undefined
                };
                self.result(cmd.transaction_id, Amf0Value::Null, value);
                Ok(())
            }
            "FCPublish" => {
                let name = cmd.arg_str(0).unwrap_or_default().to_string();
                self.notify("onFCPublish", "NetStream.Publish.Start", &name);
                Ok(())
            }
            "FCUnpublish" => {
                let name = cmd.arg_str(0).unwrap_or_default().to_string();
                self.notify("onFCUnpublish", "NetStream.Unpublish.Success", &name);
                if let Some(id) = self.publishing.take() {
                    self.events
                        .push_back(ServerEvent::CloseStream { stream_id: id });
                }
                Ok(())
            }
            "publish" => {
                let raw = cmd.arg_str(0).unwrap_or_default();
                let (name, query) = split_stream_name(raw);
                let publish_type = cmd.arg_str(1).unwrap_or("live").to_string();
                if self.publishing.is_some() || self.playing.is_some() {
                    self.reject_publish(
                        stream_id,
                        "NetStream.Publish.BadName",
                        "this connection already has a stream",
                    );
                    return Ok(());
                }
                self.events.push_back(ServerEvent::Publish {
                    stream_id,
                    name,
                    query,
                    publish_type,
                });
                Ok(())
            }
            "play" => {
                let raw = cmd.arg_str(0).unwrap_or_default();
                let (name, query) = split_stream_name(raw);
                if self.publishing.is_some() || self.playing.is_some() {
                    self.reject_play(
                        stream_id,
                        "NetStream.Play.Failed",
                        "this connection already has a stream",
                    );
                    return Ok(());
                }
                self.events.push_back(ServerEvent::Play {
                    stream_id,
                    name,
                    query,
                });
                Ok(())
            }
            "deleteStream" | "closeStream" => {
                let id = self.publishing.take().or(self.playing.take());
                if let Some(stream_id) = id {
                    self.events
                        .push_back(ServerEvent::CloseStream { stream_id });
                }
                Ok(())
            }
            // Flow-control hints and replies to our own calls need no answer.
            "receiveAudio" | "receiveVideo" | "pause" | "_result" | "_error" | "onStatus"
            | "_checkbw" | "onBWDone" | "seek" => Ok(()),
            other => {
                if cmd.transaction_id > 0.0 {
                    let info = status_object(
                        "error",
                        "NetConnection.Call.Failed",
                        &format!("unknown command {other}"),
                    );
                    self.error(cmd.transaction_id, info);
                }
                Ok(())
            }
        }
    }

    fn on_connect(&mut self, cmd: Command) -> Result<(), SessionError> {
        if self.phase != Phase::AwaitConnect {
            // A second connect on one connection is refused without ending it.
            let info = status_object(
                "error",
                "NetConnection.Connect.Rejected",
                "already connected",
            );
            self.error(cmd.transaction_id, info);
            return Ok(());
        }
        self.connect_txn = cmd.transaction_id;
        if cmd.object.get("objectEncoding").and_then(|v| v.as_f64()) == Some(3.0) {
            let info = status_object(
                "error",
                "NetConnection.Connect.Rejected",
                "AMF3 object encoding is not supported; connect with objectEncoding 0",
            );
            self.error(cmd.transaction_id, info);
            return Err(SessionError::Amf3Refused);
        }
        let app_raw = cmd.object.get("app").and_then(|v| v.as_str()).unwrap_or("");
        let (app, app_query) = split_stream_name(app_raw.trim_matches('/'));
        let tc_url = cmd
            .object
            .get("tcUrl")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        self.phase = Phase::Connecting;
        self.events.push_back(ServerEvent::Connect {
            app,
            app_query,
            tc_url,
        });
        Ok(())
    }

    /// Accepts the pending connect: announces window, bandwidth and chunk size, then
    /// NetConnection.Connect.Success.
    pub fn accept_connect(&mut self) {
        if self.phase != Phase::Connecting {
            return;
        }
        self.phase = Phase::Connected;
        self.decoder.set_limits(self.config.limits);
        let cs = self.out_chunk_size;
        ControlMessage::WindowAckSize(self.config.window_ack_size).encode(cs, &mut self.output);
        ControlMessage::SetPeerBandwidth {
            size: self.config.window_ack_size,
            limit_type: 2,
        }
        .encode(cs, &mut self.output);
        ControlMessage::SetChunkSize(self.config.chunk_size).encode(cs, &mut self.output);
        self.out_chunk_size = self.config.chunk_size;
        let props = Amf0Value::object([
            ("fmsVer", Amf0Value::string("FMS/3,0,1,123")),
            ("capabilities", Amf0Value::Number(31.0)),
        ]);
        let info = Amf0Value::object([
            ("level", Amf0Value::string("status")),
            ("code", Amf0Value::string("NetConnection.Connect.Success")),
            ("description", Amf0Value::string("Connection succeeded.")),
            ("objectEncoding", Amf0Value::Number(0.0)),
        ]);
        self.result(self.connect_txn, props, info);
    }

    /// Refuses the pending connect with NetConnection.Connect.Rejected; the caller closes
    /// the connection after writing the output.
    pub fn reject_connect(&mut self, description: &str) {
        let info = status_object("error", "NetConnection.Connect.Rejected", description);
        self.error(self.connect_txn, info);
    }

    pub fn accept_publish(&mut self, stream_id: u32, name: &str) {
        self.publishing = Some(stream_id);
        ControlMessage::UserControl(UserControl::StreamBegin(stream_id))
            .encode(self.out_chunk_size, &mut self.output);
        let info = status_object(
            "status",
            "NetStream.Publish.Start",
            &format!("{name} is now published."),
        );
        write_on_status(self.out_chunk_size, stream_id, info, &mut self.output);
    }

    /// Refuses a publish with an onStatus error such as NetStream.Publish.BadName.
    pub fn reject_publish(&mut self, stream_id: u32, code: &str, description: &str) {
        let info = status_object("error", code, description);
        write_on_status(self.out_chunk_size, stream_id, info, &mut self.output);
    }

    /// Ends an accepted publish from our side (kicked, taken over).
    pub fn end_publish(&mut self, stream_id: u32, code: &str, description: &str) {
        self.publishing = None;
        let info = status_object("status", code, description);
        write_on_status(self.out_chunk_size, stream_id, info, &mut self.output);
    }

    /// Starts playback: StreamBegin, Play.Reset, Play.Start, |RtmpSampleAccess. Media follows
    /// on `STREAM_ID` from the caller.
    pub fn accept_play(&mut self, stream_id: u32, name: &str) {
        self.playing = Some(stream_id);
        let cs = self.out_chunk_size;
        ControlMessage::UserControl(UserControl::StreamBegin(stream_id))
            .encode(cs, &mut self.output);
        let reset = status_object(
            "status",
            "NetStream.Play.Reset",
            &format!("Playing and resetting {name}."),
        );
        write_on_status(cs, stream_id, reset, &mut self.output);
        let start = status_object(
            "status",
            "NetStream.Play.Start",
            &format!("Started playing {name}."),
        );
        write_on_status(cs, stream_id, start, &mut self.output);
        let mut body = BytesMut::new();
        super::amf0::encode_all(
            &[
                Amf0Value::string("|RtmpSampleAccess"),
                Amf0Value::Boolean(true),
                Amf0Value::Boolean(true),
            ],
            &mut body,
        );
        super::chunk::encode_message(
            cs,
            CSID_COMMAND,
            0,
            type_id::DATA_AMF0,
            stream_id,
            &body,
            &mut self.output,
        );
    }

    /// Refuses a play, e.g. NetStream.Play.StreamNotFound.
    pub fn reject_play(&mut self, stream_id: u32, code: &str, description: &str) {
        let info = status_object("error", code, description);
        write_on_status(self.out_chunk_size, stream_id, info, &mut self.output);
    }

    /// Ends playback from our side: StreamEOF then NetStream.Play.Stop (or UnpublishNotify).
    pub fn end_play(&mut self, stream_id: u32, code: &str, description: &str) {
        self.playing = None;
        let cs = self.out_chunk_size;
        ControlMessage::UserControl(UserControl::StreamEof(stream_id)).encode(cs, &mut self.output);
        let info = status_object("status", code, description);
        write_on_status(cs, stream_id, info, &mut self.output);
    }

    fn result(&mut self, txn: f64, props: Amf0Value, info: Amf0Value) {
        let values = [
            Amf0Value::string("_result"),
            Amf0Value::Number(txn),
            props,
            info,
        ];
        write_command(
            self.out_chunk_size,
            CSID_COMMAND,
            0,
            &values,
            &mut self.output,
        );
    }

    fn error(&mut self, txn: f64, info: Amf0Value) {
        let values = [
            Amf0Value::string("_error"),
            Amf0Value::Number(txn),
            Amf0Value::Null,
            info,
        ];
        write_command(
            self.out_chunk_size,
            CSID_COMMAND,
            0,
            &values,
            &mut self.output,
        );
    }

    fn notify(&mut self, name: &str, code: &str, description: &str) {
        let values = [
            Amf0Value::string(name),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            status_object("status", code, description),
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
