//! Every fuzz target's body (fuzz/fuzz_targets/bodies/) replayed without cargo-fuzz or
//! nightly, so the normal `cargo test --workspace` runs them: the checked-in seeds
//! (fuzz/seeds/<target>/), structured inputs built here and mutations of them, and a few
//! thousand inputs from a deterministic xorshift generator. Bounded and fast (a few seconds);
//! longer, coverage-guided runs are in fuzz/README.md.

#![allow(clippy::unwrap_used)]

#[path = "../../fuzz/fuzz_targets/media_input/mod.rs"]
mod media_input;

#[path = "../../fuzz/fuzz_targets/bodies/amf0.rs"]
mod amf0_body;
#[path = "../../fuzz/fuzz_targets/bodies/chunk_decoder.rs"]
mod chunk_decoder_body;
#[path = "../../fuzz/fuzz_targets/bodies/flv.rs"]
mod flv_body;
#[path = "../../fuzz/fuzz_targets/bodies/handshake.rs"]
mod handshake_body;
#[path = "../../fuzz/fuzz_targets/bodies/hls_segmenter.rs"]
mod hls_segmenter_body;
#[path = "../../fuzz/fuzz_targets/bodies/locate.rs"]
mod locate_body;
#[path = "../../fuzz/fuzz_targets/bodies/rtmp_session.rs"]
mod rtmp_session_body;
#[path = "../../fuzz/fuzz_targets/bodies/ts_fmp4_mux.rs"]
mod ts_fmp4_mux_body;

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::BytesMut;
use common::rtmp::amf0::{self, Amf0Value};
use common::rtmp::chunk::encode_message;
use common::rtmp::message::{ControlMessage, UserControl, type_id};

type Target = fn(&[u8]);

/// Every target, by its cargo-fuzz name.
const TARGETS: &[(&str, Target)] = &[
    ("amf0", amf0_body::run),
    ("chunk_decoder", chunk_decoder_body::run),
    ("flv", flv_body::run),
    ("handshake", handshake_body::run),
    ("hls_segmenter", hls_segmenter_body::run),
    ("ts_fmp4_mux", ts_fmp4_mux_body::run),
    ("server_session", rtmp_session_body::server),
    ("client_session", rtmp_session_body::client),
    ("locate", locate_body::run),
];

/// Random inputs per target (and mutations per structured seed).
const RANDOM_INPUTS: usize = 2000;
const MUTATIONS: usize = 200;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target)
}

/// The checked-in seeds of `target`, in name order.
fn checked_in_seeds(target: &str) -> Vec<Vec<u8>> {
    let Ok(dir) = std::fs::read_dir(seeds_dir(target)) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn message(
    out: &mut BytesMut,
    chunk_size: u32,
    csid: u32,
    ts: u32,
    tid: u8,
    sid: u32,
    body: &[u8],
) {
    encode_message(chunk_size, csid, ts, tid, sid, body, out);
}

fn amf(values: &[Amf0Value]) -> Vec<u8> {
    let mut b = BytesMut::new();
    amf0::encode_all(values, &mut b);
    b.to_vec()
}

/// What a publisher sends after `publish`: metadata, sequence headers, frames, a ping, an
/// aggregate, commands, a chunk size change, at `chunk_size`.
fn publisher_traffic(chunk_size: u32) -> BytesMut {
    let mut out = BytesMut::new();
    let meta = amf(&[
        Amf0Value::string("@setDataFrame"),
        Amf0Value::string("onMetaData"),
        Amf0Value::EcmaArray(vec![
            ("width".into(), Amf0Value::Number(640.0)),
            ("height".into(), Amf0Value::Number(360.0)),
        ]),
    ]);
    message(&mut out, chunk_size, 5, 0, type_id::DATA_AMF0, 1, &meta);
    message(
        &mut out,
        chunk_size,
        6,
        0,
        type_id::VIDEO,
        1,
        &[0x17, 0, 0, 0, 0, 1, 0x42, 0xc0, 0x1e, 0xff],
    );
    message(
        &mut out,
        chunk_size,
        4,
        0,
        type_id::AUDIO,
        1,
        &[0xaf, 0, 0x12, 0x10],
    );
    for i in 0..6u32 {
        let key = i % 3 == 0;
        let mut frame = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        frame.extend((0..300 + i * 700).map(|j| j as u8));
        message(&mut out, chunk_size, 6, i * 40, type_id::VIDEO, 1, &frame);
        message(
            &mut out,
            chunk_size,
            4,
            i * 40 + 5,
            type_id::AUDIO,
            1,
            &[0xaf, 1, 1, 2, 3],
        );
    }
    ControlMessage::UserControl(UserControl::PingRequest(7)).encode(chunk_size, &mut out);
    ControlMessage::WindowAckSize(1000).encode(chunk_size, &mut out);
    let mut agg = Vec::new();
    for (t, ts) in [(9u8, 300u32), (8, 310)] {
        let data = [0x27, 1, 0, 0, 0, 9, 9];
        agg.push(t);
        agg.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        agg.extend_from_slice(&ts.to_be_bytes()[1..]);
        agg.push((ts >> 24) as u8);
        agg.extend_from_slice(&[0, 0, 0]);
        agg.extend_from_slice(&data);
        agg.extend_from_slice(&(11 + data.len() as u32).to_be_bytes());
    }
    message(&mut out, chunk_size, 6, 300, type_id::AGGREGATE, 1, &agg);
    let cmd = amf(&[
        Amf0Value::string("FCUnpublish"),
        Amf0Value::Number(5.0),
        Amf0Value::Null,
        Amf0Value::string("fuzz"),
    ]);
    message(&mut out, chunk_size, 3, 0, type_id::COMMAND_AMF0, 0, &cmd);
    let unknown = amf(&[
        Amf0Value::string("whatever"),
        Amf0Value::Number(6.0),
        Amf0Value::Null,
    ]);
    message(
        &mut out,
        chunk_size,
        3,
        0,
        type_id::COMMAND_AMF0,
        0,
        &unknown,
    );
    ControlMessage::SetChunkSize(64).encode(chunk_size, &mut out);
    message(&mut out, 64, 6, 400, type_id::VIDEO, 1, &[0x27; 200]);
    let delete = amf(&[
        Amf0Value::string("deleteStream"),
        Amf0Value::Number(0.0),
        Amf0Value::Null,
        Amf0Value::Number(1.0),
    ]);
    message(&mut out, 64, 3, 0, type_id::COMMAND_AMF0, 0, &delete);
    out
}

/// Structured inputs of `target`: header bytes the body reads, then plausible traffic.
fn structured(target: &str) -> Vec<Vec<u8>> {
    let with = |header: [u8; 2], body: &[u8]| {
        let mut v = header.to_vec();
        v.extend_from_slice(body);
        v
    };
    match target {
        // Stage 3, publish (4096 after the client's Set Chunk Size) or play (128).
        "server_session" => vec![
            with([3, 1], &publisher_traffic(4096)),
            with([3, 77], &publisher_traffic(4096)),
            with([2, 5], &publisher_traffic(128)),
            with([7, 9], &publisher_traffic(128)),
            with([1, 3], &publisher_traffic(128)),
        ],
        // A player's client hears the server's traffic at its chunk size (4096).
        "client_session" => vec![
            with([7, 1], &publisher_traffic(4096)),
            with([7, 200], &publisher_traffic(4096)),
            with([3, 2], &publisher_traffic(4096)),
            with([2, 8], &publisher_traffic(4096)),
        ],
        "chunk_decoder" => vec![
            with([0x40, 0], &publisher_traffic(128)),
            with([0xc0, 0], &publisher_traffic(128)),
        ],
        "locate" => vec![
            b"1.2.3.4, 10.0.0.1\0live/cam\0r1\0r0:r1=5,10.0.0.0/8=r2\0rtmp://h:1/a/s\x05".to_vec(),
            b"[::1]:80,garbage,127.0.0.1:9\0a/b\0\0\0rtmps://[::1]:443/x/y/z?k\x01".to_vec(),
        ],
        "amf0" => {
            let mut nulls = vec![0x0a, 0, 0, 0x20, 0];
            nulls.resize(5 + 0x2000, 0x05);
            vec![
                amf(&[
                    Amf0Value::string("connect"),
                    Amf0Value::Number(1.0),
                    Amf0Value::object([("app", Amf0Value::string("live"))]),
                ]),
                nulls,
            ]
        }
        _ => Vec::new(),
    }
}

/// Byte flips, truncations, duplicated and dropped ranges of `seed` (the header kept).
fn mutate(rng: &mut XorShift, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        if v.len() < 3 {
            break;
        }
        let at = 2 + rng.below(v.len() - 2);
        match rng.below(4) {
            0 => v[at] = rng.next() as u8,
            1 => v.truncate(at),
            2 => {
                let end = (at + rng.below(64)).min(v.len());
                let dup = v[at..end].to_vec();
                v.splice(at..at, dup);
            }
            _ => {
                let end = (at + rng.below(64)).min(v.len());
                v.drain(at..end);
            }
        }
    }
    v
}

#[test]
fn every_fuzz_target_survives_its_seeds_and_random_inputs() {
    for &(name, target) in TARGETS {
        let start = Instant::now();
        let mut runs = 0usize;
        for seed in checked_in_seeds(name).iter().chain(structured(name).iter()) {
            target(seed);
            runs += 1;
        }
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (name.len() as u64 * 0x1000_0001));
        for seed in structured(name) {
            for _ in 0..MUTATIONS {
                target(&mutate(&mut rng, &seed));
                runs += 1;
            }
        }
        for i in 0..RANDOM_INPUTS {
            // Mostly short inputs, some long enough to get through a handshake.
            let len = if i % 50 == 0 {
                3073 + rng.below(8192)
            } else {
                rng.below(600)
            };
            target(&rng.bytes(len));
            runs += 1;
        }
        eprintln!("{name}: {runs} inputs in {:?}", start.elapsed());
    }
}

/// Writes the structured inputs to fuzz/seeds/ (run by hand after changing them; cargo-fuzz
/// starts from there too: `cargo fuzz run server_session fuzz/seeds/server_session`).
#[test]
#[ignore]
fn write_seeds() {
    for &(name, _) in TARGETS {
        let inputs = structured(name);
        if inputs.is_empty() {
            continue;
        }
        let dir = seeds_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, input) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), input).unwrap();
        }
    }
}
