//! cargo-fuzz target for AMF0: arbitrary bytes must decode or fail without panicking, and what
//! decodes must re-encode to bytes that decode to the same encoding. Must not touch the network
//! or filesystem.

use bytes::BytesMut;
use common::rtmp::amf0;

/// The target: any input must pass without a panic.
pub fn run(data: &[u8]) {
    // One value at a time must agree with decode_all and always make progress.
    let mut cursor = data;
    let mut one_by_one = Vec::new();
    while !cursor.is_empty() {
        let before = cursor.len();
        match amf0::decode(&mut cursor) {
            Ok(value) => {
                assert!(cursor.len() < before, "decode made no progress");
                one_by_one.push(value);
            }
            Err(_) => {
                assert_eq!(cursor.len(), before, "failed decode moved the cursor");
                break;
            }
        }
    }

    let Ok(values) = amf0::decode_all(data) else {
        // decode_all shares one value budget across its values; one at a time, each has its own.
        assert!(
            !cursor.is_empty() || amf0::decode_all(data) == Err(amf0::Amf0Error::TooManyValues)
        );
        return;
    };
    assert!(cursor.is_empty());
    assert_eq!(values.len(), one_by_one.len());

    // Values may hold NaN (NaN != NaN), so compare encodings rather than values.
    let mut first = BytesMut::new();
    amf0::encode_all(&values, &mut first);
    let again = match amf0::decode_all(&first) {
        Ok(again) => again,
        Err(err) => panic!("re-encoded values fail to decode: {err}"),
    };
    assert_eq!(again.len(), values.len());
    let mut second = BytesMut::new();
    amf0::encode_all(&again, &mut second);
    assert_eq!(first, second);
}
