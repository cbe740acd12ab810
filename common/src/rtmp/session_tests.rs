//! A `ClientSession` and a `ServerSession` driven against each other in memory.
#![allow(clippy::unwrap_used)]

use bytes::{BufMut, Bytes, BytesMut};

use super::amf0::{self, Amf0Value};
use super::chunk::{ChunkDecoder, RawMessage, encode_message};
use super::command::{CSID_COMMAND, Command, metadata_body, write_command};
use super::handshake::{ClientHandshake, HandshakeKind};
use super::message::{ControlMessage, UserControl, type_id};
use super::{
    CSID_DATA, CSID_VIDEO, ClientConfig, ClientEvent, ClientSession, STREAM_ID, ServerConfig,
    ServerEvent, ServerSession, SessionError,
};

/// Both ends plus everything they produced so far. Every message the server writes after the
/// handshake is also decoded by a tap, so tests can see what the client does not report
/// (`_error`, ping responses, acknowledgements).
struct Pair {
    client: ClientSession,
    server: ServerSession,
    client_events: Vec<ClientEvent>,
    server_events: Vec<ServerEvent>,
    server_tap: Tap,
    /// Set by `tap_client`: decodes what the client writes from then on.
    client_tap: Option<Tap>,
}

#[derive(Default)]
struct Tap {
    decoder: ChunkDecoder,
    buf: BytesMut,
    messages: Vec<RawMessage>,
}

impl Tap {
    fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        while let Some(m) = self.decoder.decode(&mut self.buf).unwrap() {
            self.messages.push(m);
        }
    }

    fn take(&mut self) -> Vec<RawMessage> {
        std::mem::take(&mut self.messages)
    }
}

fn control(m: &RawMessage) -> Option<ControlMessage> {
    ControlMessage::parse(m.type_id, &m.payload).unwrap()
}

fn commands(msgs: &[RawMessage]) -> Vec<Command> {
    msgs.iter()
        .filter(|m| m.type_id == type_id::COMMAND_AMF0)
        .map(|m| Command::parse(&m.payload).unwrap())
        .collect()
}

fn code(cmd: &Command) -> Option<&str> {
    cmd.args.first()?.get("code")?.as_str()
}

impl Pair {
    fn new(server: ServerConfig) -> Self {
        Pair {
            client: ClientSession::new(ClientConfig::new("live", "rtmp://127.0.0.1/live")),
            server: ServerSession::new(server),
            client_events: Vec::new(),
            server_events: Vec::new(),
            server_tap: Tap::default(),
            client_tap: None,
        }
    }

    /// Moves bytes both ways and collects events until neither side has anything to say.
    fn pump(&mut self) -> Result<(), SessionError> {
        loop {
            let mut progressed = false;
            if let Some(b) = self.client.take_output() {
                if let Some(tap) = &mut self.client_tap {
                    tap.feed(&b);
                }
                self.server.handle_input(&b)?;
                progressed = true;
            }
            while let Some(e) = self.server.poll_event()? {
                self.server_events.push(e);
                progressed = true;
            }
            // The first server output is S0S1S2, before the handshake completes.
            let tap = self.server.is_handshake_done();
            if let Some(b) = self.server.take_output() {
                if tap {
                    self.server_tap.feed(&b);
                }
                self.client.handle_input(&b)?;
                progressed = true;
            }
            while let Some(e) = self.client.poll_event()? {
                self.client_events.push(e);
                progressed = true;
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Bytes on the client-to-server direction that the client session did not write.
    fn inject_to_server(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        // Keep message boundaries: whatever the client queued goes first.
        if let Some(b) = self.client.take_output() {
            self.server.handle_input(&b)?;
        }
        self.server.handle_input(bytes)?;
        self.pump()
    }

    fn tap_client(&mut self) {
        self.client_tap = Some(Tap::default());
    }

    fn server_events(&mut self) -> Vec<ServerEvent> {
        std::mem::take(&mut self.server_events)
    }

    fn client_events(&mut self) -> Vec<ClientEvent> {
        std::mem::take(&mut self.client_events)
    }

    /// Handshake, connect, accept: both sides connected.
    fn connected(server: ServerConfig) -> Self {
        let mut p = Pair::new(server);
        p.pump().unwrap();
        assert!(p.server.is_handshake_done());
        assert_eq!(
            p.server_events(),
            vec![ServerEvent::Connect {
                app: "live".into(),
                app_query: String::new(),
                tc_url: "rtmp://127.0.0.1/live".into(),
            }]
        );
        assert!(p.client_events().is_empty(), "client ahead of accept");
        p.server.accept_connect();
        p.pump().unwrap();
        assert_eq!(p.client_events(), vec![ClientEvent::Connected]);
        assert_eq!(
            p.server.out_chunk_size(),
            ServerConfig::default().chunk_size
        );
        p
    }

    /// Connected, then an accepted publish of `cam`.
    fn publishing() -> Self {
        let mut p = Pair::connected(ServerConfig::default());
        p.client.publish("cam");
        p.pump().unwrap();
        let events = p.server_events();
        let Some(ServerEvent::Publish { stream_id, .. }) = events.last() else {
            panic!("no publish event: {events:?}");
        };
        p.server.accept_publish(*stream_id, "cam");
        p.pump().unwrap();
        assert!(p.client_events().contains(&ClientEvent::PublishStarted));
        p.server_tap.take();
        p
    }

    /// Connected, then an accepted play of `cam`.
    fn playing(server: ServerConfig) -> Self {
        let mut p = Pair::connected(server);
        p.client.play("cam");
        p.pump().unwrap();
        let events = p.server_events();
        let Some(ServerEvent::Play { stream_id, .. }) = events.last() else {
            panic!("no play event: {events:?}");
        };
        p.server.accept_play(*stream_id, "cam");
        p.pump().unwrap();
        assert!(p.client_events().contains(&ClientEvent::PlayStarted));
        p.server_tap.take();
        p
    }

    /// Media as the player path writes it (`net::rtmp::rtmp_wire`): one shared encoding at the
    /// server's outbound chunk size, fixed csid, `STREAM_ID`.
    fn server_sends(&mut self, csid: u32, ts: u32, type_id: u8, payload: &[u8]) {
        let mut out = BytesMut::new();
        encode_message(
            self.server.out_chunk_size(),
            csid,
            ts,
            type_id,
            STREAM_ID,
            payload,
            &mut out,
        );
        self.client.handle_input(&out).unwrap();
        while let Some(e) = self.client.poll_event().unwrap() {
            self.client_events.push(e);
        }
    }
}

fn body(values: &[Amf0Value]) -> BytesMut {
    let mut b = BytesMut::new();
    amf0::encode_all(values, &mut b);
    b
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[test]
fn connect_publish_and_media_reach_the_server() {
    let mut p = Pair::connected(ServerConfig::default());
    p.client.publish("cam?token=x");
    p.pump().unwrap();
    assert_eq!(
        p.server_events(),
        vec![ServerEvent::Publish {
            stream_id: STREAM_ID,
            name: "cam".into(),
            query: "token=x".into(),
            publish_type: "live".into(),
        }]
    );
    // Not started until the caller accepts.
    assert!(!p.client_events().contains(&ClientEvent::PublishStarted));
    p.server.accept_publish(STREAM_ID, "cam");
    p.pump().unwrap();
    assert!(p.client_events().contains(&ClientEvent::PublishStarted));

    // Timestamps around and above the 24-bit field, payloads spanning several chunks.
    let sends: Vec<(u8, u32, Vec<u8>)> = vec![
        (type_id::VIDEO, 0, payload(10_000, 1)),
        (type_id::AUDIO, 23, payload(7, 2)),
        (type_id::VIDEO, 0xFF_FFFE, payload(300, 3)),
        (type_id::VIDEO, 0xFF_FFFF, payload(5_000, 4)),
        (type_id::AUDIO, 0x100_0000, payload(9_000, 5)),
        (type_id::VIDEO, u32::MAX, payload(1, 6)),
    ];
    for (t, ts, data) in &sends {
        p.client.send_media(*t, *ts, data);
    }
    p.pump().unwrap();
    let expected: Vec<ServerEvent> = sends
        .into_iter()
        .map(|(type_id, timestamp, data)| ServerEvent::Media {
            type_id,
            timestamp,
            payload: Bytes::from(data),
        })
        .collect();
    assert_eq!(p.server_events(), expected);
}

#[test]
fn set_data_frame_arrives_as_on_metadata() {
    let mut p = Pair::publishing();
    let meta = Amf0Value::EcmaArray(vec![
        ("width".into(), Amf0Value::Number(1280.0)),
        ("height".into(), Amf0Value::Number(720.0)),
        ("encoder".into(), Amf0Value::string("obs")),
    ]);
    let data = body(&[
        Amf0Value::string("@setDataFrame"),
        Amf0Value::string("onMetaData"),
        meta.clone(),
    ]);
    p.client.send_media(type_id::DATA_AMF0, 0, &data);
    // Other data messages are not metadata.
    p.client.send_media(
        type_id::DATA_AMF0,
        5,
        &body(&[Amf0Value::string("onCuePoint")]),
    );
    p.pump().unwrap();
    let expected = body(&[Amf0Value::string("onMetaData"), meta]).freeze();
    assert_eq!(
        p.server_events(),
        vec![ServerEvent::Metadata {
            timestamp: 0,
            payload: expected
        }]
    );
}

#[test]
fn media_before_the_publish_is_accepted_is_ignored() {
    let mut p = Pair::connected(ServerConfig::default());
    p.client.publish("cam");
    p.pump().unwrap();
    assert!(matches!(
        p.server_events().as_slice(),
        [ServerEvent::Publish { .. }]
    ));
    p.client.send_media(type_id::VIDEO, 0, b"early");
    p.pump().unwrap();
    assert!(p.server_events().is_empty());
    p.server.accept_publish(STREAM_ID, "cam");
    p.client.send_media(type_id::VIDEO, 40, b"late");
    p.pump().unwrap();
    assert_eq!(
        p.server_events(),
        vec![ServerEvent::Media {
            type_id: type_id::VIDEO,
            timestamp: 40,
            payload: Bytes::from_static(b"late"),
        }]
    );
}

#[test]
fn rejected_publish_is_an_error_status() {
    let mut p = Pair::connected(ServerConfig::default());
    p.client.publish("taken");
    p.pump().unwrap();
    assert!(matches!(
        p.server_events().as_slice(),
        [ServerEvent::Publish { name, .. }] if name == "taken"
    ));
    p.server
        .reject_publish(STREAM_ID, "NetStream.Publish.BadName", "already publishing");
    p.pump().unwrap();
    let events = p.client_events();
    assert!(!events.contains(&ClientEvent::PublishStarted));
    assert_eq!(
        events.last(),
        Some(&ClientEvent::Status {
            level: "error".into(),
            code: "NetStream.Publish.BadName".into(),
            description: "already publishing".into(),
        })
    );
    // And media is still not taken from this connection.
    p.client.send_media(type_id::VIDEO, 0, b"x");
    p.pump().unwrap();
    assert!(p.server_events().is_empty());
}

#[test]
fn play_then_media_then_end_of_stream() {
    let mut p = Pair::connected(ServerConfig::default());
    p.client.play("cam?k=v");
    p.pump().unwrap();
    assert_eq!(
        p.server_events(),
        vec![ServerEvent::Play {
            stream_id: STREAM_ID,
            name: "cam".into(),
            query: "k=v".into(),
        }]
    );
    p.server.accept_play(STREAM_ID, "cam");
    p.pump().unwrap();
    let events = p.client_events();
    let start = events
        .iter()
        .position(|e| *e == ClientEvent::PlayStarted)
        .expect("PlayStarted");
    assert!(
        events[..start].iter().any(|e| matches!(
            e,
            ClientEvent::Status { code, .. } if code == "NetStream.Play.Reset"
        )),
        "{events:?}"
    );

    let meta = body(&[
        Amf0Value::string("onMetaData"),
        Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(640.0))]),
    ]);
    p.server_sends(CSID_DATA, 0, type_id::DATA_AMF0, &meta);
    let big = payload(20_000, 9);
    p.server_sends(CSID_VIDEO, 0x123_4567, type_id::VIDEO, &big);
    p.server_sends(CSID_VIDEO, 0x123_4568, type_id::VIDEO, b"small");
    assert_eq!(
        p.client_events(),
        vec![
            ClientEvent::Metadata {
                timestamp: 0,
                payload: meta.freeze()
            },
            ClientEvent::Media {
                type_id: type_id::VIDEO,
                timestamp: 0x123_4567,
                payload: Bytes::from(big),
            },
            ClientEvent::Media {
                type_id: type_id::VIDEO,
                timestamp: 0x123_4568,
                payload: Bytes::from_static(b"small"),
            },
        ]
    );

    p.server
        .end_play(STREAM_ID, "NetStream.Play.UnpublishNotify", "cam is over");
    p.pump().unwrap();
    assert_eq!(
        p.client_events(),
        vec![
            ClientEvent::StreamEof,
            ClientEvent::Status {
                level: "status".into(),
                code: "NetStream.Play.UnpublishNotify".into(),
                description: "cam is over".into(),
            }
        ]
    );
}

#[test]
fn rejected_play_is_an_error_status() {
    let mut p = Pair::connected(ServerConfig::default());
    p.client.play("nothing");
    p.pump().unwrap();
    assert!(matches!(
        p.server_events().as_slice(),
        [ServerEvent::Play { name, .. }] if name == "nothing"
    ));
    p.server
        .reject_play(STREAM_ID, "NetStream.Play.StreamNotFound", "no such stream");
    p.pump().unwrap();
    let events = p.client_events();
    assert!(!events.contains(&ClientEvent::PlayStarted));
    assert_eq!(
        events,
        vec![ClientEvent::Status {
            level: "error".into(),
            code: "NetStream.Play.StreamNotFound".into(),
            description: "no such stream".into(),
        }]
    );
}

#[test]
fn a_second_stream_on_one_connection_is_refused() {
    let mut p = Pair::playing(ServerConfig::default());
    let mut cmd = BytesMut::new();
    write_command(
        128,
        8,
        STREAM_ID,
        &[
            Amf0Value::string("publish"),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            Amf0Value::string("other"),
        ],
        &mut cmd,
    );
    p.inject_to_server(&cmd).unwrap();
    assert!(p.server_events().is_empty());
    assert!(p.client_events().iter().any(|e| matches!(
        e,
        ClientEvent::Status { level, code, .. }
            if level == "error" && code == "NetStream.Publish.BadName"
    )));
}

/// A server that completed a handshake with a bare `ClientHandshake`, so tests can write any
/// command they like.
fn handshaken_server() -> ServerSession {
    let mut server = ServerSession::new(ServerConfig::default());
    let mut hs = ClientHandshake::new(7, HandshakeKind::Simple);
    server.handle_input(&hs.take_output().unwrap()).unwrap();
    let s0s1s2 = server.take_output().unwrap();
    assert_eq!(hs.feed(&s0s1s2).unwrap(), s0s1s2.len());
    server.handle_input(&hs.take_output().unwrap()).unwrap();
    assert!(server.is_handshake_done());
    server
}

fn raw_command(values: &[Amf0Value]) -> BytesMut {
    let mut out = BytesMut::new();
    write_command(128, CSID_COMMAND, 0, values, &mut out);
    out
}

fn decode_all(bytes: &[u8]) -> Vec<RawMessage> {
    let mut tap = Tap::default();
    tap.feed(bytes);
    assert!(tap.buf.is_empty(), "partial message in output");
    tap.take()
}

#[test]
fn amf3_connect_is_refused_with_an_error() {
    let mut server = handshaken_server();
    let connect = raw_command(&[
        Amf0Value::string("connect"),
        Amf0Value::Number(1.0),
        Amf0Value::object([
            ("app", Amf0Value::string("live")),
            ("objectEncoding", Amf0Value::Number(3.0)),
        ]),
    ]);
    server.handle_input(&connect).unwrap();
    assert!(matches!(
        server.poll_event(),
        Err(SessionError::Amf3Refused)
    ));
    let out = server.take_output().expect("an _error before closing");
    let cmds = commands(&decode_all(&out));
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].name, "_error");
    assert_eq!(cmds[0].transaction_id, 1.0);
    assert_eq!(code(&cmds[0]), Some("NetConnection.Connect.Rejected"));
}

#[test]
fn amf0_connect_with_object_encoding_zero_is_accepted() {
    let mut server = handshaken_server();
    let connect = raw_command(&[
        Amf0Value::string("connect"),
        Amf0Value::Number(1.0),
        Amf0Value::object([
            ("app", Amf0Value::string("/live?sig=1")),
            ("tcUrl", Amf0Value::string("rtmp://h/live?sig=1")),
            ("objectEncoding", Amf0Value::Number(0.0)),
        ]),
    ]);
    server.handle_input(&connect).unwrap();
    assert_eq!(
        server.poll_event().unwrap(),
        Some(ServerEvent::Connect {
            app: "live".into(),
            app_query: "sig=1".into(),
            tc_url: "rtmp://h/live?sig=1".into(),
        })
    );
}

#[test]
fn a_command_before_connect_is_an_error() {
    let mut server = handshaken_server();
    server
        .handle_input(&raw_command(&[
            Amf0Value::string("createStream"),
            Amf0Value::Number(2.0),
            Amf0Value::Null,
        ]))
        .unwrap();
    match server.poll_event() {
        Err(SessionError::NotConnected(name)) => assert_eq!(name, "createStream"),
        other => panic!("expected NotConnected, got {other:?}"),
    }
}

#[test]
fn commands_wait_until_connect_is_answered() {
    let mut server = handshaken_server();
    let mut input = raw_command(&[
        Amf0Value::string("connect"),
        Amf0Value::Number(1.0),
        Amf0Value::object([("app", Amf0Value::string("live"))]),
    ]);
    input.extend_from_slice(&raw_command(&[
        Amf0Value::string("createStream"),
        Amf0Value::Number(2.0),
        Amf0Value::Null,
    ]));
    server.handle_input(&input).unwrap();
    assert!(matches!(
        server.poll_event().unwrap(),
        Some(ServerEvent::Connect { .. })
    ));
    // createStream is held back, not refused as "before connect".
    assert_eq!(server.poll_event().unwrap(), None);
    assert!(server.take_output().is_none());
    server.accept_connect();
    assert_eq!(server.poll_event().unwrap(), None);
    let cmds = commands(&decode_all(&server.take_output().unwrap()));
    let names: Vec<(&str, f64)> = cmds
        .iter()
        .map(|c| (c.name.as_str(), c.transaction_id))
        .collect();
    assert_eq!(names, vec![("_result", 1.0), ("_result", 2.0)]);
    assert_eq!(code(&cmds[0]), Some("NetConnection.Connect.Success"));
    assert_eq!(cmds[1].arg_f64(0), Some(f64::from(STREAM_ID)));
}

#[test]
fn rejected_connect_is_an_error() {
    let mut p = Pair::new(ServerConfig::default());
    p.pump().unwrap();
    assert!(matches!(
        p.server_events().as_slice(),
        [ServerEvent::Connect { .. }]
    ));
    p.server.reject_connect("bad token");
    p.pump().unwrap();
    assert_eq!(
        p.client_events(),
        vec![ClientEvent::Status {
            level: "error".into(),
            code: "NetConnection.Connect.Rejected".into(),
            description: "bad token".into(),
        }]
    );
}

#[test]
fn ping_request_gets_a_ping_response() {
    // Server side.
    let mut p = Pair::connected(ServerConfig::default());
    p.server_tap.take();
    let mut ping = BytesMut::new();
    ControlMessage::UserControl(UserControl::PingRequest(0xABCD_1234)).encode(128, &mut ping);
    p.inject_to_server(&ping).unwrap();
    let controls: Vec<ControlMessage> = p.server_tap.take().iter().filter_map(control).collect();
    assert_eq!(
        controls,
        vec![ControlMessage::UserControl(UserControl::PingResponse(
            0xABCD_1234
        ))]
    );

    // Client side.
    p.tap_client();
    let mut ping = BytesMut::new();
    ControlMessage::UserControl(UserControl::PingRequest(77))
        .encode(p.server.out_chunk_size(), &mut ping);
    p.client.handle_input(&ping).unwrap();
    assert_eq!(p.client.poll_event().unwrap(), None);
    p.pump().unwrap();
    let tap = p.client_tap.as_mut().unwrap();
    let controls: Vec<ControlMessage> = tap.take().iter().filter_map(control).collect();
    assert_eq!(
        controls,
        vec![ControlMessage::UserControl(UserControl::PingResponse(77))]
    );
}

fn acks(msgs: &[RawMessage]) -> Vec<u32> {
    msgs.iter()
        .filter_map(control)
        .filter_map(|c| match c {
            ControlMessage::Acknowledgement(n) => Some(n),
            _ => None,
        })
        .collect()
}

#[test]
fn server_acknowledges_once_the_window_is_exceeded() {
    let mut p = Pair::publishing();
    // The client never announced a window: no acknowledgements, however much it sends.
    for i in 0..10u32 {
        p.client.send_media(type_id::AUDIO, i, &[1; 1_000]);
    }
    p.pump().unwrap();
    assert!(p.server.bytes_received() > 10_000);
    assert!(acks(&p.server_tap.take()).is_empty());

    let window = 5_000;
    let mut w = BytesMut::new();
    ControlMessage::WindowAckSize(window).encode(128, &mut w);
    p.inject_to_server(&w).unwrap();
    assert!(acks(&p.server_tap.take()).is_empty());
    // Each acknowledgement carries the byte total when a window's worth had come in since
    // the last one.
    let mut expected = Vec::new();
    let mut last_ack = 0u64;
    for i in 0..20u32 {
        p.client
            .send_media(type_id::AUDIO, 100 + i, &payload(900, i as u8));
        p.pump().unwrap();
        let total = p.server.bytes_received();
        if total - last_ack >= u64::from(window) {
            expected.push(total as u32);
            last_ack = total;
        }
    }
    let got = acks(&p.server_tap.take());
    assert!(got.len() >= 3, "{got:?}");
    assert_eq!(got, expected);
}

#[test]
fn client_acknowledges_the_servers_window() {
    let window = 5_000;
    let mut p = Pair::playing(ServerConfig {
        window_ack_size: window,
        ..ServerConfig::default()
    });
    p.tap_client();
    let before = p.client.bytes_received();
    assert!(before < u64::from(window));
    // Each message well under a window; acks come when the running total crosses one.
    let mut expected = Vec::new();
    let mut last_ack = 0u64;
    for i in 0..20u32 {
        p.server_sends(CSID_VIDEO, i * 40, type_id::VIDEO, &payload(900, i as u8));
        let total = p.client.bytes_received();
        if total - last_ack >= u64::from(window) {
            expected.push(total as u32);
            last_ack = total;
        }
    }
    p.pump().unwrap();
    assert!(expected.len() >= 3);
    let tap = p.client_tap.as_mut().unwrap();
    assert_eq!(acks(&tap.take()), expected);
}

/// One FLV tag as an aggregate message carries it: 11-byte header, data, PreviousTagSize.
fn put_tag(out: &mut BytesMut, tag_type: u8, ts: u32, data: &[u8]) {
    out.put_u8(tag_type);
    out.put_uint(data.len() as u64, 3);
    out.put_uint(u64::from(ts & 0xFF_FFFF), 3);
    out.put_u8((ts >> 24) as u8);
    out.put_uint(0, 3);
    out.put_slice(data);
    out.put_u32(11 + data.len() as u32);
}

#[test]
fn aggregate_messages_are_split_into_tags() {
    let mut p = Pair::publishing();
    let meta = body(&[
        Amf0Value::string("onMetaData"),
        Amf0Value::EcmaArray(vec![("fps".into(), Amf0Value::Number(25.0))]),
    ]);
    // Tag timestamps count relative to the first tag, across the extended byte.
    let first = 0xFF_FFF0;
    let mut agg = BytesMut::new();
    put_tag(&mut agg, type_id::VIDEO, first, b"video0");
    put_tag(&mut agg, type_id::AUDIO, first + 20, b"audio20");
    put_tag(&mut agg, type_id::DATA_AMF0, first + 30, &meta);
    put_tag(&mut agg, type_id::VIDEO, first + 40, &payload(6_000, 7));
    p.client.send_media(type_id::AGGREGATE, 5_000, &agg);
    p.pump().unwrap();
    assert_eq!(
        p.server_events(),
        vec![
            ServerEvent::Media {
                type_id: type_id::VIDEO,
                timestamp: 5_000,
                payload: Bytes::from_static(b"video0"),
            },
            ServerEvent::Media {
                type_id: type_id::AUDIO,
                timestamp: 5_020,
                payload: Bytes::from_static(b"audio20"),
            },
            ServerEvent::Metadata {
                timestamp: 5_030,
                payload: metadata_body(&meta).unwrap(),
            },
            ServerEvent::Media {
                type_id: type_id::VIDEO,
                timestamp: 5_040,
                payload: Bytes::from(payload(6_000, 7)),
            },
        ]
    );

    // A truncated last tag is dropped, the complete ones before it still count.
    let mut agg = BytesMut::new();
    put_tag(&mut agg, type_id::AUDIO, 0, b"ok");
    agg.extend_from_slice(&[type_id::VIDEO, 0, 0, 100, 0, 0, 40, 0, 0, 0, 0, 1, 2]);
    p.client.send_media(type_id::AGGREGATE, 9_000, &agg);
    p.pump().unwrap();
    assert_eq!(
        p.server_events(),
        vec![ServerEvent::Media {
            type_id: type_id::AUDIO,
            timestamp: 9_000,
            payload: Bytes::from_static(b"ok"),
        }]
    );
}

#[test]
fn unknown_command_with_a_transaction_gets_an_error() {
    let mut p = Pair::connected(ServerConfig::default());
    p.server_tap.take();
    let mut input = raw_command(&[
        Amf0Value::string("fancyThing"),
        Amf0Value::Number(7.0),
        Amf0Value::Null,
    ]);
    // Without a transaction id nobody waits for an answer.
    input.extend_from_slice(&raw_command(&[
        Amf0Value::string("fireAndForget"),
        Amf0Value::Number(0.0),
        Amf0Value::Null,
    ]));
    p.inject_to_server(&input).unwrap();
    let cmds = commands(&p.server_tap.take());
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert_eq!(cmds[0].name, "_error");
    assert_eq!(cmds[0].transaction_id, 7.0);
    assert_eq!(code(&cmds[0]), Some("NetConnection.Call.Failed"));
    assert!(p.client_events().iter().any(|e| matches!(
        e,
        ClientEvent::Status { level, code, .. }
            if level == "error" && code == "NetConnection.Call.Failed"
    )));
    // The connection carries on.
    p.client.play("cam");
    p.pump().unwrap();
    assert!(matches!(
        p.server_events().as_slice(),
        [ServerEvent::Play { .. }]
    ));
}

#[test]
fn delete_stream_closes_the_published_stream() {
    let mut p = Pair::publishing();
    p.client.close_stream();
    p.pump().unwrap();
    assert_eq!(
        p.server_events(),
        vec![ServerEvent::CloseStream {
            stream_id: STREAM_ID
        }]
    );
    // Media after the close is no longer the publisher's.
    p.client.send_media(type_id::VIDEO, 0, b"x");
    p.pump().unwrap();
    assert!(p.server_events().is_empty());
}

#[test]
fn amf3_wrapped_commands_and_data_are_read_as_amf0() {
    // Type 17 is an AMF0 command behind a format byte.
    let mut server = handshaken_server();
    let mut cmd = BytesMut::from(&[0u8][..]);
    cmd.extend_from_slice(&body(&[
        Amf0Value::string("connect"),
        Amf0Value::Number(1.0),
        Amf0Value::object([("app", Amf0Value::string("live"))]),
    ]));
    let mut input = BytesMut::new();
    encode_message(
        128,
        CSID_COMMAND,
        0,
        type_id::COMMAND_AMF3,
        0,
        &cmd,
        &mut input,
    );
    server.handle_input(&input).unwrap();
    assert!(matches!(
        server.poll_event().unwrap(),
        Some(ServerEvent::Connect { app, .. }) if app == "live"
    ));

    // Type 15 data from a publisher, likewise.
    let mut p = Pair::publishing();
    let on_meta = body(&[
        Amf0Value::string("onMetaData"),
        Amf0Value::EcmaArray(vec![("fps".into(), Amf0Value::Number(30.0))]),
    ]);
    let mut data = BytesMut::from(&[0u8][..]);
    data.extend_from_slice(&on_meta);
    p.client.send_media(type_id::DATA_AMF3, 66, &data);
    p.pump().unwrap();
    assert_eq!(
        p.server_events(),
        vec![ServerEvent::Metadata {
            timestamp: 66,
            payload: on_meta.freeze()
        }]
    );
}

/// A command message of `len` bytes: a string name then a strict array of nulls.
fn null_array_command(chunk_size: u32, name: &str, len: usize) -> BytesMut {
    let mut body = BytesMut::new();
    amf0::encode(&Amf0Value::string(name), &mut body);
    let count = len - body.len() - 5;
    body.put_u8(0x0a);
    body.put_u32(count as u32);
    body.resize(len, 0x05);
    let mut out = BytesMut::new();
    encode_message(
        chunk_size,
        CSID_COMMAND,
        0,
        type_id::COMMAND_AMF0,
        0,
        &body,
        &mut out,
    );
    out
}

fn connected_server() -> ServerSession {
    let mut server = handshaken_server();
    server
        .handle_input(&raw_command(&[
            Amf0Value::string("connect"),
            Amf0Value::Number(1.0),
            Amf0Value::object([("app", Amf0Value::string("live"))]),
        ]))
        .unwrap();
    assert!(matches!(
        server.poll_event().unwrap(),
        Some(ServerEvent::Connect { .. })
    ));
    server.accept_connect();
    server.take_output();
    // The client's chunk size, so that big commands take few chunks.
    let mut out = BytesMut::new();
    ControlMessage::SetChunkSize(4096).encode(128, &mut out);
    server.handle_input(&out).unwrap();
    assert_eq!(server.poll_event().unwrap(), None);
    server
}

#[test]
fn a_huge_command_before_connect_is_refused_from_its_header() {
    let mut server = handshaken_server();
    // 16 MiB announced: only the first chunk is sent; the header alone is refused.
    let mut big = null_array_command(128, "connect", 0xFF_FFFF);
    big.truncate(200);
    server.handle_input(&big).unwrap();
    match server.poll_event() {
        Err(SessionError::Chunk(
            super::chunk::ChunkError::CommandTooLarge { len, max, .. }
            | super::chunk::ChunkError::MessageTooLarge { len, max },
        )) => {
            assert_eq!((len, max), (0xFF_FFFF, 64 * 1024));
        }
        other => panic!("expected CommandTooLarge, got {other:?}"),
    }
    let cmds = commands(&decode_all(&server.take_output().expect("an _error")));
    assert_eq!(cmds[0].name, "_error");
    assert_eq!(code(&cmds[0]), Some("NetConnection.Call.Failed"));
    // Media is no way around it before connect.
    let mut server = handshaken_server();
    let mut video = BytesMut::new();
    encode_message(
        128,
        CSID_VIDEO,
        0,
        type_id::VIDEO,
        1,
        &payload(100_000, 1),
        &mut video,
    );
    video.truncate(200);
    server.handle_input(&video).unwrap();
    assert!(matches!(
        server.poll_event(),
        Err(SessionError::Chunk(
            super::chunk::ChunkError::MessageTooLarge { .. }
        ))
    ));
}

#[test]
fn null_array_commands_are_refused_before_and_after_connect() {
    // Before connect: 60 KiB of nulls fits the size bound but not the value budget.
    let mut server = handshaken_server();
    server
        .handle_input(&null_array_command(128, "connect", 60_000))
        .unwrap();
    assert!(matches!(
        server.poll_event(),
        Err(SessionError::Command(super::command::CommandError::Amf0(
            amf0::Amf0Error::TooManyValues
        )))
    ));
    // After connect a command may be bigger, but not unbounded.
    let mut server = connected_server();
    server
        .handle_input(&null_array_command(4096, "FCPublish", 200_000))
        .unwrap();
    assert!(matches!(server.poll_event(), Err(SessionError::Command(_))));
    let mut server = connected_server();
    let mut big = null_array_command(4096, "FCPublish", 300 * 1024);
    big.truncate(5000);
    server.handle_input(&big).unwrap();
    assert!(matches!(
        server.poll_event(),
        Err(SessionError::Chunk(
            super::chunk::ChunkError::CommandTooLarge { .. }
        ))
    ));
    // Large media after connect is still fine (a publisher's keyframes).
    let mut server = connected_server();
    let mut video = BytesMut::new();
    encode_message(
        4096,
        CSID_VIDEO,
        0,
        type_id::VIDEO,
        1,
        &payload(1_000_000, 1),
        &mut video,
    );
    server.handle_input(&video).unwrap();
    assert_eq!(server.poll_event().unwrap(), None);
}

/// A pull or a player between reads holds no input buffer: once everything fed is decoded,
/// the session's input allocation is given back (it used to stay at its largest read, ~100
/// KiB per pull); a partial chunk keeps only what it needs.
#[test]
fn decoded_input_is_released_between_reads() {
    let mut p = Pair::playing(ServerConfig::default());
    assert_eq!(p.server.input_capacity(), 0, "server after the play");
    let big = payload(50_000, 3);
    p.server_sends(CSID_VIDEO, 40, type_id::VIDEO, &big);
    assert!(matches!(
        p.client_events().last(),
        Some(ClientEvent::Media { payload, .. }) if payload.len() == big.len()
    ));
    assert_eq!(p.client.input_capacity(), 0, "client after a whole message");

    // Half a chunk: kept (it is all there is to decode), then released with its message.
    let mut out = BytesMut::new();
    encode_message(
        p.server.out_chunk_size(),
        CSID_VIDEO,
        80,
        type_id::VIDEO,
        STREAM_ID,
        &big,
        &mut out,
    );
    let half = out.len() / 2;
    p.client.handle_input(&out[..half]).unwrap();
    assert!(p.client.poll_event().unwrap().is_none());
    assert!(p.client.input_capacity() >= half);
    p.client.handle_input(&out[half..]).unwrap();
    assert!(matches!(
        p.client.poll_event().unwrap(),
        Some(ClientEvent::Media { timestamp: 80, .. })
    ));
    assert!(p.client.poll_event().unwrap().is_none());
    assert_eq!(p.client.input_capacity(), 0, "client after the rest");
}

/// `take_output` hands over the whole buffer: the session keeps no part of its allocation.
#[test]
fn taken_output_leaves_no_allocation_behind() {
    let mut p = Pair::playing(ServerConfig::default());
    p.server.end_play(STREAM_ID, "NetStream.Play.Stop", "bye");
    let out = p.server.take_output().expect("onStatus");
    assert!(
        out.is_unique(),
        "the session still shares the output's allocation"
    );
}
