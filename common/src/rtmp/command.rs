//! RTMP command messages (AMF0): parsing a command into name, transaction and arguments, and
//! building the responses both sides send. Pure functions over bytes; no session state.

use bytes::{Bytes, BytesMut};

use super::amf0::{self, Amf0Error, Amf0Value};
use super::chunk::encode_message;
use super::message::type_id;

/// Chunk stream for commands and data sent on the NetConnection / NetStream.
pub const CSID_COMMAND: u32 = 3;

/// A decoded command: `name`, transaction id, command object, then the optional arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub transaction_id: f64,
    pub object: Amf0Value,
    pub args: Vec<Amf0Value>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CommandError {
    #[error("malformed AMF0 in command: {0}")]
    Amf0(#[from] Amf0Error),
    #[error("command has no name")]
    NoName,
}

impl Command {
    /// Parses an AMF0 command body (message type 20). For type 17 strip the leading 0 first.
    pub fn parse(payload: &[u8]) -> Result<Command, CommandError> {
        let mut values = amf0::decode_all(payload)?.into_iter();
        let name = match values.next() {
            Some(Amf0Value::String(s)) => s,
            _ => return Err(CommandError::NoName),
        };
        let transaction_id = values.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
        let object = values.next().unwrap_or(Amf0Value::Null);
        Ok(Command {
            name,
            transaction_id,
            object,
            args: values.collect(),
        })
    }

    /// The first argument as a string (stream name of publish/play, releaseStream ...).
    pub fn arg_str(&self, i: usize) -> Option<&str> {
        self.args.get(i).and_then(|v| v.as_str())
    }

    pub fn arg_f64(&self, i: usize) -> Option<f64> {
        self.args.get(i).and_then(|v| v.as_f64())
    }

    /// A string field of the info object of an onStatus/_error (`code`, `level`,
    /// `description`); empty if absent.
    pub fn info(&self, key: &str) -> String {
        self.args
            .first()
            .and_then(|i| i.get(key))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    }
}

/// Encodes `values` as an AMF0 command message on `csid`/`stream_id` and appends it.
pub fn write_command(
    chunk_size: u32,
    csid: u32,
    stream_id: u32,
    values: &[Amf0Value],
    out: &mut BytesMut,
) {
    let mut body = BytesMut::new();
    amf0::encode_all(values, &mut body);
    encode_message(
        chunk_size,
        csid,
        0,
        type_id::COMMAND_AMF0,
        stream_id,
        &body,
        out,
    );
}

/// The `connect` command a client sends (transaction 1), with the capabilities ffmpeg and
/// OBS announce.
pub fn connect_command(app: &str, tc_url: &str, flash_ver: &str) -> [Amf0Value; 3] {
    let obj = Amf0Value::object([
        ("app", Amf0Value::string(app)),
        ("type", Amf0Value::string("nonprivate")),
        ("flashVer", Amf0Value::string(flash_ver)),
        ("tcUrl", Amf0Value::string(tc_url)),
        ("fpad", Amf0Value::Boolean(false)),
        ("capabilities", Amf0Value::Number(15.0)),
        ("audioCodecs", Amf0Value::Number(4071.0)),
        ("videoCodecs", Amf0Value::Number(252.0)),
        ("videoFunction", Amf0Value::Number(1.0)),
    ]);
    [Amf0Value::string("connect"), Amf0Value::Number(1.0), obj]
}

/// An onStatus info object: `{level, code, description}` plus extra fields.
pub fn status_object(level: &str, code: &str, description: &str) -> Amf0Value {
    Amf0Value::object([
        ("level", Amf0Value::string(level)),
        ("code", Amf0Value::string(code)),
        ("description", Amf0Value::string(description)),
    ])
}

/// Appends `onStatus(0, null, info)` on `stream_id`.
pub fn write_on_status(chunk_size: u32, stream_id: u32, info: Amf0Value, out: &mut BytesMut) {
    write_command(
        chunk_size,
        CSID_COMMAND,
        stream_id,
        &[
            Amf0Value::string("onStatus"),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            info,
        ],
        out,
    );
}

/// Splits `name?query` as publishers and players send it.
pub fn split_stream_name(raw: &str) -> (String, String) {
    match raw.split_once('?') {
        Some((n, q)) => (n.to_string(), q.to_string()),
        None => (raw.to_string(), String::new()),
    }
}

/// Turns `@setDataFrame("onMetaData", obj)` or `onMetaData(obj)` into the body players
/// expect, `onMetaData(obj)`. Other data messages yield `None`.
pub fn metadata_body(payload: &[u8]) -> Option<Bytes> {
    let values = amf0::decode_all(payload).ok()?;
    let mut it = values.iter().peekable();
    if it.peek().and_then(|v| v.as_str()) == Some("@setDataFrame") {
        it.next();
    }
    if it.next()?.as_str()? != "onMetaData" {
        return None;
    }
    let mut out = BytesMut::new();
    amf0::encode(&Amf0Value::string("onMetaData"), &mut out);
    for v in it {
        amf0::encode(v, &mut out);
    }
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_query() {
        assert_eq!(
            split_stream_name("cam?token=1&x=2"),
            ("cam".into(), "token=1&x=2".into())
        );
        assert_eq!(split_stream_name("cam"), ("cam".into(), String::new()));
    }

    #[test]
    fn set_data_frame_becomes_on_metadata() {
        let mut body = BytesMut::new();
        amf0::encode_all(
            &[
                Amf0Value::string("@setDataFrame"),
                Amf0Value::string("onMetaData"),
                Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(640.0))]),
            ],
            &mut body,
        );
        let out = metadata_body(&body).expect("metadata");
        let values = amf0::decode_all(&out).expect("decode");
        assert_eq!(values[0].as_str(), Some("onMetaData"));
        assert_eq!(values[1].get("width").and_then(|v| v.as_f64()), Some(640.0));
        assert!(metadata_body(&out).is_some());
    }

    #[test]
    fn command_round_trip() {
        let mut out = BytesMut::new();
        let mut body = BytesMut::new();
        amf0::encode_all(
            &[
                Amf0Value::string("play"),
                Amf0Value::Number(4.0),
                Amf0Value::Null,
                Amf0Value::string("stream?k=v"),
            ],
            &mut body,
        );
        let c = Command::parse(&body).expect("parse");
        assert_eq!(c.name, "play");
        assert_eq!(c.transaction_id, 4.0);
        assert_eq!(c.arg_str(0), Some("stream?k=v"));
        write_command(128, 3, 1, &[Amf0Value::string("x")], &mut out);
        assert!(!out.is_empty());
        assert!(Command::parse(&[0x02, 0x00]).is_err());
        assert_eq!(Command::parse(&[0x05]), Err(CommandError::NoName));
    }
}
