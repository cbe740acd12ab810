//! AMF0 value encoding and decoding (the RTMP command and metadata format); pure functions over
//! byte slices: no I/O, no tokio, no clocks, and no allocation sized by an untrusted count.

use bytes::{BufMut, BytesMut};

/// Containers nested deeper than this are rejected, so hostile input cannot overflow the stack.
pub const MAX_DEPTH: usize = 64;

/// Values (nested ones included) one `decode` or `decode_all` call may produce. A value costs
/// about 32 bytes in memory but can take 1 byte on the wire (a null): without this bound a
/// 16 MiB strict array of nulls became 512 MiB. Real commands and `onMetaData` have tens.
pub const MAX_VALUES: usize = 4096;

/// A container's first allocation is at most this many elements, whatever its count says: it
/// grows with what is actually decoded.
const PREALLOC_MAX: usize = 16;

const MARKER_NUMBER: u8 = 0x00;
const MARKER_BOOLEAN: u8 = 0x01;
const MARKER_STRING: u8 = 0x02;
const MARKER_OBJECT: u8 = 0x03;
const MARKER_MOVIECLIP: u8 = 0x04;
const MARKER_NULL: u8 = 0x05;
const MARKER_UNDEFINED: u8 = 0x06;
const MARKER_REFERENCE: u8 = 0x07;
const MARKER_ECMA_ARRAY: u8 = 0x08;
const MARKER_OBJECT_END: u8 = 0x09;
const MARKER_STRICT_ARRAY: u8 = 0x0A;
const MARKER_DATE: u8 = 0x0B;
const MARKER_LONG_STRING: u8 = 0x0C;
const MARKER_UNSUPPORTED: u8 = 0x0D;
const MARKER_RECORDSET: u8 = 0x0E;
const MARKER_XML_DOCUMENT: u8 = 0x0F;
const MARKER_TYPED_OBJECT: u8 = 0x10;
const MARKER_AVMPLUS: u8 = 0x11;

/// One AMF0 value. Long strings (marker 0x0C) decode to [`Amf0Value::String`]; strings longer
/// than 65535 bytes are encoded as long strings.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    Number(f64),
    Boolean(bool),
    String(String),
    /// Anonymous object: properties in wire order (duplicates are kept).
    Object(Vec<(String, Amf0Value)>),
    Null,
    Undefined,
    /// Associative array (e.g. `onMetaData`): properties in wire order.
    EcmaArray(Vec<(String, Amf0Value)>),
    StrictArray(Vec<Amf0Value>),
    Date {
        millis: f64,
        timezone: i16,
    },
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Amf0Error {
    #[error("amf0: input truncated")]
    Truncated,
    #[error("amf0: unknown type marker 0x{0:02x}")]
    UnknownMarker(u8),
    /// Markers that AMF0 defines but that RTMP peers do not send and this crate does not model
    /// (movieclip, reference, unsupported, recordset, xml document, typed object).
    #[error("amf0: unsupported type marker 0x{0:02x}")]
    UnsupportedMarker(u8),
    #[error("amf0: amf3 (avmplus marker 0x11) is not supported")]
    Amf3NotSupported,
    #[error("amf0: object end marker where a value was expected")]
    UnexpectedObjectEnd,
    #[error("amf0: nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("amf0: string is not valid utf-8")]
    InvalidUtf8,
    #[error("amf0: more than {MAX_VALUES} values")]
    TooManyValues,
}

impl Amf0Value {
    /// The first property named `key` of an Object or EcmaArray.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        self.properties()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The properties of an Object or EcmaArray, in wire order.
    pub fn properties(&self) -> Option<&[(String, Amf0Value)]> {
        match self {
            Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => Some(p),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    pub fn object<'a>(pairs: impl IntoIterator<Item = (&'a str, Amf0Value)>) -> Self {
        Amf0Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    pub fn string(s: impl Into<String>) -> Self {
        Amf0Value::String(s.into())
    }
}

/// Decodes one value from the front of `buf` and advances `buf` past it. On error `buf` is left
/// unchanged.
pub fn decode(buf: &mut &[u8]) -> Result<Amf0Value, Amf0Error> {
    let mut budget = MAX_VALUES;
    decode_budgeted(buf, &mut budget)
}

fn decode_budgeted(buf: &mut &[u8], budget: &mut usize) -> Result<Amf0Value, Amf0Error> {
    let mut cursor = *buf;
    let value = decode_value(&mut cursor, 0, budget)?;
    *buf = cursor;
    Ok(value)
}

/// Decodes values until `buf` is empty; at most `MAX_VALUES` in all.
pub fn decode_all(mut buf: &[u8]) -> Result<Vec<Amf0Value>, Amf0Error> {
    let mut values = Vec::new();
    let mut budget = MAX_VALUES;
    while !buf.is_empty() {
        values.push(decode_budgeted(&mut buf, &mut budget)?);
    }
    Ok(values)
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], Amf0Error> {
    if buf.len() < n {
        return Err(Amf0Error::Truncated);
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

fn take_array<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N], Amf0Error> {
    let mut out = [0u8; N];
    out.copy_from_slice(take(buf, N)?);
    Ok(out)
}

fn read_u8(buf: &mut &[u8]) -> Result<u8, Amf0Error> {
    Ok(take_array::<1>(buf)?[0])
}

fn read_u16(buf: &mut &[u8]) -> Result<u16, Amf0Error> {
    Ok(u16::from_be_bytes(take_array(buf)?))
}

fn read_u32(buf: &mut &[u8]) -> Result<u32, Amf0Error> {
    Ok(u32::from_be_bytes(take_array(buf)?))
}

fn read_f64(buf: &mut &[u8]) -> Result<f64, Amf0Error> {
    Ok(f64::from_be_bytes(take_array(buf)?))
}

fn read_utf8(buf: &mut &[u8], len: usize) -> Result<String, Amf0Error> {
    // `take` checks the length against the bytes present before anything is allocated.
    let bytes = take(buf, len)?;
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| Amf0Error::InvalidUtf8)
}

fn decode_value(buf: &mut &[u8], depth: usize, budget: &mut usize) -> Result<Amf0Value, Amf0Error> {
    *budget = budget.checked_sub(1).ok_or(Amf0Error::TooManyValues)?;
    let marker = read_u8(buf)?;
    match marker {
        MARKER_NUMBER => Ok(Amf0Value::Number(read_f64(buf)?)),
        MARKER_BOOLEAN => Ok(Amf0Value::Boolean(read_u8(buf)? != 0)),
        MARKER_STRING => {
            let len = read_u16(buf)?;
            Ok(Amf0Value::String(read_utf8(buf, usize::from(len))?))
        }
        MARKER_LONG_STRING => {
            let len = read_u32(buf)?;
            let len = usize::try_from(len).map_err(|_| Amf0Error::Truncated)?;
            Ok(Amf0Value::String(read_utf8(buf, len)?))
        }
        MARKER_OBJECT => {
            let depth = enter(depth)?;
            Ok(Amf0Value::Object(decode_properties(buf, depth, budget)?))
        }
        MARKER_NULL => Ok(Amf0Value::Null),
        MARKER_UNDEFINED => Ok(Amf0Value::Undefined),
        MARKER_ECMA_ARRAY => {
            let depth = enter(depth)?;
            // The count is only a hint and some encoders get it wrong: the end marker decides.
            let _count = read_u32(buf)?;
            Ok(Amf0Value::EcmaArray(decode_properties(buf, depth, budget)?))
        }
        MARKER_OBJECT_END => Err(Amf0Error::UnexpectedObjectEnd),
        MARKER_STRICT_ARRAY => {
            let depth = enter(depth)?;
            let count = read_u32(buf)?;
            let count = usize::try_from(count).map_err(|_| Amf0Error::Truncated)?;
            // Every value takes at least one byte, so a count beyond what is left is a lie we can
            // reject before allocating or looping.
            if count > buf.len() {
                return Err(Amf0Error::Truncated);
            }
            if count > *budget {
                return Err(Amf0Error::TooManyValues);
            }
            let mut items = Vec::with_capacity(count.min(PREALLOC_MAX));
            for _ in 0..count {
                items.push(decode_value(buf, depth, budget)?);
            }
            Ok(Amf0Value::StrictArray(items))
        }
        MARKER_DATE => {
            let millis = read_f64(buf)?;
            let timezone = i16::from_be_bytes(take_array(buf)?);
            Ok(Amf0Value::Date { millis, timezone })
        }
        MARKER_AVMPLUS => Err(Amf0Error::Amf3NotSupported),
        MARKER_MOVIECLIP | MARKER_REFERENCE | MARKER_UNSUPPORTED | MARKER_RECORDSET
        | MARKER_XML_DOCUMENT | MARKER_TYPED_OBJECT => Err(Amf0Error::UnsupportedMarker(marker)),
        other => Err(Amf0Error::UnknownMarker(other)),
    }
}

fn enter(depth: usize) -> Result<usize, Amf0Error> {
    if depth >= MAX_DEPTH {
        return Err(Amf0Error::TooDeep);
    }
    Ok(depth + 1)
}

/// Reads `key, value` pairs up to and including the `00 00 09` end marker.
fn decode_properties(
    buf: &mut &[u8],
    depth: usize,
    budget: &mut usize,
) -> Result<Vec<(String, Amf0Value)>, Amf0Error> {
    let mut props = Vec::new();
    loop {
        let key_len = read_u16(buf)?;
        if key_len == 0 && buf.first() == Some(&MARKER_OBJECT_END) {
            *buf = &buf[1..];
            return Ok(props);
        }
        let key = read_utf8(buf, usize::from(key_len))?;
        let value = decode_value(buf, depth, budget)?;
        props.push((key, value));
    }
}

/// Appends the encoding of `value` to `out`.
///
/// Sizes AMF0 cannot represent are clamped rather than failing: an object key longer than
/// 65535 bytes is cut at a character boundary, and strings or arrays beyond `u32::MAX` are not
/// representable at all (nothing in RTMP comes near either).
pub fn encode(value: &Amf0Value, out: &mut BytesMut) {
    match value {
        Amf0Value::Number(n) => {
            out.put_u8(MARKER_NUMBER);
            out.put_f64(*n);
        }
        Amf0Value::Boolean(b) => {
            out.put_u8(MARKER_BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        Amf0Value::String(s) => match u16::try_from(s.len()) {
            Ok(len) => {
                out.put_u8(MARKER_STRING);
                out.put_u16(len);
                out.put_slice(s.as_bytes());
            }
            Err(_) => {
                let bytes = truncate_utf8(s, u32::MAX as usize);
                out.put_u8(MARKER_LONG_STRING);
                out.put_u32(bytes.len() as u32);
                out.put_slice(bytes);
            }
        },
        Amf0Value::Object(props) => {
            out.put_u8(MARKER_OBJECT);
            encode_properties(props, out);
        }
        Amf0Value::Null => out.put_u8(MARKER_NULL),
        Amf0Value::Undefined => out.put_u8(MARKER_UNDEFINED),
        Amf0Value::EcmaArray(props) => {
            out.put_u8(MARKER_ECMA_ARRAY);
            out.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
            encode_properties(props, out);
        }
        Amf0Value::StrictArray(items) => {
            out.put_u8(MARKER_STRICT_ARRAY);
            out.put_u32(u32::try_from(items.len()).unwrap_or(u32::MAX));
            for item in items {
                encode(item, out);
            }
        }
        Amf0Value::Date { millis, timezone } => {
            out.put_u8(MARKER_DATE);
            out.put_f64(*millis);
            out.put_i16(*timezone);
        }
    }
}

/// Appends the encodings of `values`, one after another (e.g. a command message body).
pub fn encode_all(values: &[Amf0Value], out: &mut BytesMut) {
    for value in values {
        encode(value, out);
    }
}

fn encode_properties(props: &[(String, Amf0Value)], out: &mut BytesMut) {
    for (key, value) in props {
        let key = truncate_utf8(key, usize::from(u16::MAX));
        out.put_u16(key.len() as u16);
        out.put_slice(key);
        encode(value, out);
    }
    out.put_slice(&[0x00, 0x00, MARKER_OBJECT_END]);
}

/// The bytes of `s`, cut to at most `max` bytes without splitting a character.
fn truncate_utf8(s: &str, max: usize) -> &[u8] {
    if s.len() <= max {
        return s.as_bytes();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(value: &Amf0Value) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(value, &mut out);
        out.to_vec()
    }

    fn round_trip(value: Amf0Value) {
        let bytes = enc(&value);
        let mut cursor = bytes.as_slice();
        let decoded = decode(&mut cursor).expect("decodes");
        assert!(cursor.is_empty(), "all bytes consumed for {value:?}");
        assert_eq!(decoded, value);
    }

    /// `connect` command body as sent by ffmpeg 5.1 (Lavf59.27.100) publishing to
    /// rtmp://127.0.0.1:19352/app/x, captured and de-chunked.
    const FFMPEG_CONNECT: &[u8] = &[
        0x02, 0x00, 0x07, 0x63, 0x6f, 0x6e, 0x6e, 0x65, 0x63, 0x74, 0x00, 0x3f, 0xf0, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x03, 0x61, 0x70, 0x70, 0x02, 0x00, 0x03, 0x61, 0x70,
        0x70, 0x00, 0x04, 0x74, 0x79, 0x70, 0x65, 0x02, 0x00, 0x0a, 0x6e, 0x6f, 0x6e, 0x70, 0x72,
        0x69, 0x76, 0x61, 0x74, 0x65, 0x00, 0x08, 0x66, 0x6c, 0x61, 0x73, 0x68, 0x56, 0x65, 0x72,
        0x02, 0x00, 0x24, 0x46, 0x4d, 0x4c, 0x45, 0x2f, 0x33, 0x2e, 0x30, 0x20, 0x28, 0x63, 0x6f,
        0x6d, 0x70, 0x61, 0x74, 0x69, 0x62, 0x6c, 0x65, 0x3b, 0x20, 0x4c, 0x61, 0x76, 0x66, 0x35,
        0x39, 0x2e, 0x32, 0x37, 0x2e, 0x31, 0x30, 0x30, 0x29, 0x00, 0x05, 0x74, 0x63, 0x55, 0x72,
        0x6c, 0x02, 0x00, 0x1a, 0x72, 0x74, 0x6d, 0x70, 0x3a, 0x2f, 0x2f, 0x31, 0x32, 0x37, 0x2e,
        0x30, 0x2e, 0x30, 0x2e, 0x31, 0x3a, 0x31, 0x39, 0x33, 0x35, 0x32, 0x2f, 0x61, 0x70, 0x70,
        0x00, 0x00, 0x09,
    ];

    fn sample_values() -> Vec<Amf0Value> {
        vec![
            Amf0Value::Number(0.0),
            Amf0Value::Number(-1.5),
            Amf0Value::Number(f64::MAX),
            Amf0Value::Number(f64::INFINITY),
            Amf0Value::Boolean(true),
            Amf0Value::Boolean(false),
            Amf0Value::string(""),
            Amf0Value::string("héllo wörld ✓"),
            Amf0Value::Null,
            Amf0Value::Undefined,
            Amf0Value::Date {
                millis: 1_700_000_000_123.0,
                timezone: -60,
            },
            Amf0Value::object([]),
            Amf0Value::object([
                ("app", Amf0Value::string("live")),
                ("fpad", Amf0Value::Boolean(false)),
                ("audioCodecs", Amf0Value::Number(3191.0)),
                (
                    "nested",
                    Amf0Value::object([
                        ("deeper", Amf0Value::object([("x", Amf0Value::Null)])),
                        (
                            "list",
                            Amf0Value::StrictArray(vec![
                                Amf0Value::Number(1.0),
                                Amf0Value::string("two"),
                                Amf0Value::Undefined,
                            ]),
                        ),
                    ]),
                ),
                ("", Amf0Value::string("empty key is a real key")),
            ]),
            Amf0Value::EcmaArray(vec![]),
            Amf0Value::EcmaArray(vec![
                ("duration".into(), Amf0Value::Number(0.0)),
                ("width".into(), Amf0Value::Number(1920.0)),
                ("encoder".into(), Amf0Value::string("Lavf59.27.100")),
                (
                    "inner".into(),
                    Amf0Value::EcmaArray(vec![("a".into(), Amf0Value::Boolean(true))]),
                ),
            ]),
            Amf0Value::StrictArray(vec![]),
            Amf0Value::StrictArray(vec![
                Amf0Value::StrictArray(vec![Amf0Value::Null]),
                Amf0Value::object([("k", Amf0Value::Number(2.0))]),
            ]),
        ]
    }

    #[test]
    fn round_trips_every_type() {
        for value in sample_values() {
            round_trip(value);
        }
    }

    #[test]
    fn scalar_encodings_are_exact() {
        assert_eq!(
            enc(&Amf0Value::Number(1.0)),
            [0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(enc(&Amf0Value::Boolean(true)), [0x01, 0x01]);
        assert_eq!(
            enc(&Amf0Value::string("ab")),
            [0x02, 0x00, 0x02, b'a', b'b']
        );
        assert_eq!(enc(&Amf0Value::Null), [0x05]);
        assert_eq!(enc(&Amf0Value::Undefined), [0x06]);
        assert_eq!(
            enc(&Amf0Value::object([("a", Amf0Value::Null)])),
            [0x03, 0x00, 0x01, b'a', 0x05, 0x00, 0x00, 0x09]
        );
        assert_eq!(
            enc(&Amf0Value::EcmaArray(vec![("a".into(), Amf0Value::Null)])),
            [0x08, 0, 0, 0, 1, 0x00, 0x01, b'a', 0x05, 0x00, 0x00, 0x09]
        );
        assert_eq!(
            enc(&Amf0Value::Date {
                millis: 0.0,
                timezone: -1
            }),
            [0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
        );
    }

    #[test]
    fn long_strings() {
        let short_max = "a".repeat(65535);
        let bytes = enc(&Amf0Value::string(short_max.clone()));
        assert_eq!(bytes[..3], [0x02, 0xff, 0xff]);
        round_trip(Amf0Value::String(short_max));

        let long = "é".repeat(40_000); // 80_000 bytes
        let bytes = enc(&Amf0Value::string(long.clone()));
        assert_eq!(bytes[..5], [0x0c, 0x00, 0x01, 0x38, 0x80]);
        assert_eq!(bytes.len(), 5 + 80_000);
        round_trip(Amf0Value::String(long));

        // A short text sent as a long string still decodes to a String.
        let mut cursor: &[u8] = &[0x0c, 0, 0, 0, 2, b'h', b'i'];
        assert_eq!(decode(&mut cursor), Ok(Amf0Value::string("hi")));
    }

    #[test]
    fn ffmpeg_connect_command() {
        let values = decode_all(FFMPEG_CONNECT).expect("decodes");
        assert_eq!(values.len(), 3);
        assert_eq!(values[0].as_str(), Some("connect"));
        assert_eq!(values[1].as_f64(), Some(1.0));
        let obj = &values[2];
        assert_eq!(obj.get("app").and_then(Amf0Value::as_str), Some("app"));
        assert_eq!(
            obj.get("type").and_then(Amf0Value::as_str),
            Some("nonprivate")
        );
        assert_eq!(
            obj.get("flashVer").and_then(Amf0Value::as_str),
            Some("FMLE/3.0 (compatible; Lavf59.27.100)")
        );
        assert_eq!(
            obj.get("tcUrl").and_then(Amf0Value::as_str),
            Some("rtmp://127.0.0.1:19352/app")
        );
        assert_eq!(obj.get("missing"), None);
        assert!(matches!(obj, Amf0Value::Object(p) if p.len() == 4));

        // Re-encoding reproduces ffmpeg's bytes exactly.
        let mut out = BytesMut::new();
        encode_all(&values, &mut out);
        assert_eq!(&out[..], FFMPEG_CONNECT);
    }

    #[test]
    fn decode_advances_only_past_one_value() {
        let mut cursor = FFMPEG_CONNECT;
        assert_eq!(decode(&mut cursor), Ok(Amf0Value::string("connect")));
        assert_eq!(cursor.len(), FFMPEG_CONNECT.len() - 10);
        assert_eq!(decode(&mut cursor), Ok(Amf0Value::Number(1.0)));

        // A failed decode leaves the cursor where it was.
        let mut cursor: &[u8] = &[0x02, 0x00, 0x05, b'a'];
        assert_eq!(decode(&mut cursor), Err(Amf0Error::Truncated));
        assert_eq!(cursor.len(), 4);
    }

    #[test]
    fn accessors() {
        let v = Amf0Value::EcmaArray(vec![
            ("w".into(), Amf0Value::Number(640.0)),
            ("w".into(), Amf0Value::Number(1.0)),
        ]);
        assert_eq!(v.get("w").and_then(Amf0Value::as_f64), Some(640.0));
        assert_eq!(Amf0Value::Null.get("w"), None);
        assert_eq!(Amf0Value::Boolean(true).as_bool(), Some(true));
        assert_eq!(Amf0Value::Null.as_bool(), None);
        assert_eq!(Amf0Value::Number(1.0).as_str(), None);
        assert_eq!(Amf0Value::string("x").as_f64(), None);
        assert_eq!(Amf0Value::Null.properties(), None);
    }

    #[test]
    fn ecma_array_with_lying_count() {
        for count in [0u32, 1, 7, u32::MAX] {
            let mut bytes = vec![0x08];
            bytes.extend_from_slice(&count.to_be_bytes());
            bytes.extend_from_slice(&[0x00, 0x01, b'a', 0x05, 0x00, 0x01, b'b', 0x06, 0, 0, 9]);
            assert_eq!(
                decode_all(&bytes),
                Ok(vec![Amf0Value::EcmaArray(vec![
                    ("a".into(), Amf0Value::Null),
                    ("b".into(), Amf0Value::Undefined),
                ])]),
                "count {count}"
            );
        }
    }

    #[test]
    fn truncation_at_every_prefix_errors() {
        let mut all = BytesMut::new();
        encode_all(&sample_values(), &mut all);
        for value in sample_values() {
            let bytes = enc(&value);
            for len in 0..bytes.len() {
                let mut cursor = &bytes[..len];
                if len == 0 {
                    assert_eq!(decode(&mut cursor), Err(Amf0Error::Truncated));
                    continue;
                }
                assert!(decode(&mut cursor).is_err(), "{value:?} cut at {len}");
                assert!(decode_all(&bytes[..len]).is_err(), "{value:?} cut at {len}");
            }
        }
        for len in 1..FFMPEG_CONNECT.len() {
            // A cut can land between two whole values; only the cut one may fail, but fail it must.
            if [10, 19].contains(&len) {
                assert!(decode_all(&FFMPEG_CONNECT[..len]).is_ok());
            } else {
                assert!(decode_all(&FFMPEG_CONNECT[..len]).is_err(), "cut at {len}");
            }
        }
    }

    #[test]
    fn null_array_amplification_is_bounded() {
        // A strict array of 1 MiB nulls: 32 bytes of value per input byte if decoded.
        let n = 1 << 20;
        let mut bytes = vec![0x0a];
        bytes.extend_from_slice(&(n as u32).to_be_bytes());
        bytes.resize(5 + n, 0x05);
        assert_eq!(decode_all(&bytes), Err(Amf0Error::TooManyValues));
        // Many small top-level values share one budget.
        assert_eq!(
            decode_all(&vec![0x05; MAX_VALUES + 1]),
            Err(Amf0Error::TooManyValues)
        );
        assert_eq!(
            decode_all(&vec![0x05; MAX_VALUES]).map(|v| v.len()),
            Ok(MAX_VALUES)
        );
        // Objects of nulls too (3 bytes a property).
        let mut obj = vec![0x03];
        for _ in 0..MAX_VALUES {
            obj.extend_from_slice(&[0, 1, b'k', 0x05]);
        }
        obj.extend_from_slice(&[0, 0, 0x09]);
        assert_eq!(decode_all(&obj), Err(Amf0Error::TooManyValues));
        // A count just within the budget allocates by what is decoded, not by the count.
        let mut small = vec![0x0a];
        small.extend_from_slice(&100u32.to_be_bytes());
        small.resize(5 + 100, 0x05);
        assert!(
            matches!(&decode_all(&small).expect("decode")[0], Amf0Value::StrictArray(v) if v.len() == 100)
        );
    }

    #[test]
    fn hostile_counts_fail_fast() {
        // Strict array claiming 4 billion items with 3 bytes behind it.
        let bytes = [0x0a, 0xff, 0xff, 0xff, 0xff, 0x05, 0x05, 0x05];
        assert_eq!(decode_all(&bytes), Err(Amf0Error::Truncated));
        // Long string claiming 4 GiB.
        assert_eq!(
            decode_all(&[0x0c, 0xff, 0xff, 0xff, 0xff, b'a']),
            Err(Amf0Error::Truncated)
        );
        // Short string claiming 64 KiB.
        assert_eq!(
            decode_all(&[0x02, 0xff, 0xff, b'a']),
            Err(Amf0Error::Truncated)
        );
        // Object key claiming 64 KiB.
        assert_eq!(
            decode_all(&[0x03, 0xff, 0xff, b'a']),
            Err(Amf0Error::Truncated)
        );
        // Object without an end marker.
        assert_eq!(
            decode_all(&[0x03, 0x00, 0x01, b'a', 0x05]),
            Err(Amf0Error::Truncated)
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize, open: &[u8], close: &[u8]| {
            let mut bytes = Vec::new();
            for _ in 0..depth {
                bytes.extend_from_slice(open);
            }
            bytes.push(0x05);
            for _ in 0..depth {
                bytes.extend_from_slice(close);
            }
            bytes
        };
        // Strict arrays of one element.
        let arr = |d| nested(d, &[0x0a, 0, 0, 0, 1], &[]);
        assert!(decode_all(&arr(MAX_DEPTH)).is_ok());
        assert_eq!(decode_all(&arr(MAX_DEPTH + 1)), Err(Amf0Error::TooDeep));
        // Objects with one property "k".
        let obj = |d| nested(d, &[0x03, 0x00, 0x01, b'k'], &[0x00, 0x00, 0x09]);
        assert!(decode_all(&obj(MAX_DEPTH)).is_ok());
        assert_eq!(decode_all(&obj(MAX_DEPTH + 1)), Err(Amf0Error::TooDeep));
        // Far deeper than the stack could take if recursion were unbounded.
        assert_eq!(decode_all(&arr(1_000_000)), Err(Amf0Error::TooDeep));
        let ecma = nested(100_000, &[0x08, 0, 0, 0, 1, 0x00, 0x01, b'k'], &[]);
        assert_eq!(decode_all(&ecma), Err(Amf0Error::TooDeep));
    }

    #[test]
    fn bad_markers_and_text() {
        assert_eq!(decode_all(&[0x11, 0x06]), Err(Amf0Error::Amf3NotSupported));
        assert_eq!(decode_all(&[0x12]), Err(Amf0Error::UnknownMarker(0x12)));
        assert_eq!(decode_all(&[0xff]), Err(Amf0Error::UnknownMarker(0xff)));
        assert_eq!(
            decode_all(&[0x07, 0x00, 0x01]),
            Err(Amf0Error::UnsupportedMarker(0x07))
        );
        for m in [0x04, 0x0d, 0x0e, 0x0f, 0x10] {
            assert_eq!(decode_all(&[m]), Err(Amf0Error::UnsupportedMarker(m)));
        }
        assert_eq!(decode_all(&[0x09]), Err(Amf0Error::UnexpectedObjectEnd));
        assert_eq!(
            decode_all(&[0x02, 0x00, 0x02, 0xc3, 0x28]),
            Err(Amf0Error::InvalidUtf8)
        );
        assert_eq!(
            decode_all(&[0x03, 0x00, 0x01, 0xff, 0x05, 0, 0, 9]),
            Err(Amf0Error::InvalidUtf8)
        );
        // A property whose value is the end marker but whose key is not empty is malformed.
        assert_eq!(
            decode_all(&[0x03, 0x00, 0x01, b'a', 0x09]),
            Err(Amf0Error::UnexpectedObjectEnd)
        );
    }

    #[test]
    fn oversized_object_key_is_cut_on_a_char_boundary() {
        let key = "é".repeat(40_000);
        let bytes = enc(&Amf0Value::Object(vec![(key, Amf0Value::Null)]));
        let decoded = decode_all(&bytes).expect("decodes");
        let Amf0Value::Object(props) = &decoded[0] else {
            panic!("not an object: {decoded:?}");
        };
        assert_eq!(props[0].0.len(), 65534);
        assert_eq!(props[0].1, Amf0Value::Null);
    }

    #[test]
    fn nan_survives_as_bits() {
        let bytes = enc(&Amf0Value::Number(f64::NAN));
        let decoded = decode_all(&bytes).expect("decodes");
        assert!(matches!(decoded[0], Amf0Value::Number(n) if n.is_nan()));
        let mut again = BytesMut::new();
        encode_all(&decoded, &mut again);
        assert_eq!(&again[..], &bytes[..]);
    }
}
