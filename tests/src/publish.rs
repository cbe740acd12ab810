//! An RTMP publisher of prepared tags on the project's own client session
//! (`common::rtmp::ClientSession`), for codecs ffmpeg cannot publish (HEVC over Enhanced RTMP):
//! connects, publishes `app/name`, sends the sequence headers, then the tags paced in real
//! time, looping them with continuing timestamps until stopped. Blocking I/O on its own thread;
//! every read and write has a timeout.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::rtmp::message::type_id;
use common::rtmp::{ClientConfig, ClientEvent, ClientSession};

use crate::hevc::HevcStream;

/// One RTMP audio or video message.
#[derive(Debug, Clone)]
pub struct Tag {
    /// `type_id::AUDIO` or `type_id::VIDEO`.
    pub type_id: u8,
    pub timestamp: u32,
    pub payload: Bytes,
}

/// Enhanced RTMP video packet types (veovera enhanced-rtmp v1).
pub const PT_SEQUENCE_START: u8 = 0;
pub const PT_CODED_FRAMES: u8 = 1;
pub const PT_CODED_FRAMES_X: u8 = 3;
/// Enhanced RTMP frame types.
const FRAME_KEY: u8 = 1;
const FRAME_INTER: u8 = 2;

/// Enhanced RTMP `hvc1` SequenceStart carrying the HEVCDecoderConfigurationRecord.
pub fn hevc_sequence_start(record: &[u8]) -> Tag {
    let mut b = BytesMut::with_capacity(5 + record.len());
    b.put_u8(0x80 | (FRAME_KEY << 4) | PT_SEQUENCE_START);
    b.put_slice(b"hvc1");
    b.put_slice(record);
    Tag {
        type_id: type_id::VIDEO,
        timestamp: 0,
        payload: b.freeze(),
    }
}

/// Enhanced RTMP `hvc1` coded frame: `CodedFrames` with a 24-bit composition time when
/// `cts` is given, else `CodedFramesX`. `data` is length-prefixed NAL units.
pub fn hevc_coded_frame(timestamp: u32, keyframe: bool, cts: Option<i32>, data: &[u8]) -> Tag {
    let frame_type = if keyframe { FRAME_KEY } else { FRAME_INTER };
    let packet_type = if cts.is_some() {
        PT_CODED_FRAMES
    } else {
        PT_CODED_FRAMES_X
    };
    let mut b = BytesMut::with_capacity(8 + data.len());
    b.put_u8(0x80 | (frame_type << 4) | packet_type);
    b.put_slice(b"hvc1");
    if let Some(cts) = cts {
        b.put_slice(&cts.to_be_bytes()[1..]);
    }
    b.put_slice(data);
    Tag {
        type_id: type_id::VIDEO,
        timestamp,
        payload: b.freeze(),
    }
}

/// The sequence start and one coded frame per sample of `stream`: keyframes as `CodedFrames`
/// (with their composition time), the other pictures as `CodedFramesX`, so both packet types
/// are exercised.
pub fn hevc_tags(stream: &HevcStream) -> (Tag, Vec<Tag>) {
    let frames = stream
        .samples
        .iter()
        .map(|s| {
            let cts = s.keyframe.then_some(s.cts);
            hevc_coded_frame(s.dts as u32, s.keyframe, cts, &s.data)
        })
        .collect();
    (hevc_sequence_start(&stream.track.record), frames)
}

/// Legacy FLV AAC tag byte: SoundFormat 10, 44 kHz, 16-bit, stereo (the flags are ignored
/// for AAC; the AudioSpecificConfig rules).
const AAC_TAG: u8 = 0xaf;

/// An AAC stream from an ADTS file (what `ffmpeg -c:a aac -f adts` writes): the sequence
/// header (AudioSpecificConfig) and one raw frame tag per ADTS frame, timed at 1024 samples.
/// `None` if the file does not start with an ADTS header.
pub fn aac_tags_from_adts(adts: &[u8]) -> Option<(Tag, Vec<Tag>)> {
    let mut frames = Vec::new();
    let mut asc = None;
    let mut rate = 0u32;
    let mut at = 0usize;
    while at + 7 <= adts.len() {
        let h = &adts[at..at + 7];
        if h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
            return None;
        }
        let protection_absent = h[1] & 1 == 1;
        let profile = h[2] >> 6; // object type - 1
        let rate_index = (h[2] >> 2) & 0x0f;
        let channels = ((h[2] & 1) << 2) | (h[3] >> 6);
        let len =
            (usize::from(h[3] & 0x03) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        let header = if protection_absent { 7 } else { 9 };
        if len < header || at + len > adts.len() {
            break;
        }
        if asc.is_none() {
            let object_type = profile + 1;
            asc = Some([
                (object_type << 3) | (rate_index >> 1),
                ((rate_index & 1) << 7) | (channels << 3),
            ]);
            rate = *[
                96000u32, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025,
                8000, 7350,
            ]
            .get(usize::from(rate_index))?;
        }
        let ts = (frames.len() as u64 * 1024 * 1000 / u64::from(rate)) as u32;
        let mut b = BytesMut::with_capacity(2 + len - header);
        b.put_slice(&[AAC_TAG, 1]);
        b.put_slice(&adts[at + header..at + len]);
        frames.push(Tag {
            type_id: type_id::AUDIO,
            timestamp: ts,
            payload: b.freeze(),
        });
        at += len;
    }
    let asc = asc?;
    let header = Tag {
        type_id: type_id::AUDIO,
        timestamp: 0,
        payload: Bytes::copy_from_slice(&[AAC_TAG, 0, asc[0], asc[1]]),
    };
    Some((header, frames))
}

/// What to publish: sequence headers (sent first, once) and media tags in timestamp order,
/// lasting `period_ms` (one loop; the next loop's timestamps add this).
#[derive(Debug, Clone)]
pub struct Program {
    pub headers: Vec<Tag>,
    pub tags: Vec<Tag>,
    pub period_ms: u32,
}

impl Program {
    /// Interleaves tracks by timestamp (video first on ties) into one loop of `period_ms`;
    /// tags at or past the period are left out, so every loop lasts exactly that long.
    pub fn new(headers: Vec<Tag>, tracks: Vec<Vec<Tag>>, period_ms: u32) -> Program {
        let mut tags: Vec<Tag> = tracks
            .into_iter()
            .flatten()
            .filter(|t| t.timestamp < period_ms)
            .collect();
        tags.sort_by_key(|t| (t.timestamp, t.type_id != type_id::VIDEO));
        Program {
            headers,
            tags,
            period_ms,
        }
    }
}

/// Counters of a running publisher.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// NetStream.Publish.Start received.
    pub publishing: AtomicBool,
    pub video_tags: AtomicU64,
    pub audio_tags: AtomicU64,
}

/// A publisher thread; stops (unpublishing) when dropped.
pub struct Publisher {
    stop: Arc<AtomicBool>,
    pub stats: Arc<PublishStats>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Publisher {
    /// Publishes `program` to `rtmp://addr/app/name` in real time, looping it until stopped.
    pub fn start(addr: SocketAddr, app: &str, name: &str, program: Program) -> Publisher {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(PublishStats::default());
        let (app, name) = (app.to_string(), name.to_string());
        let (s, st) = (stop.clone(), stats.clone());
        let thread = std::thread::spawn(move || run(addr, &app, &name, &program, &s, &st));
        Publisher {
            stop,
            stats,
            thread: Some(thread),
        }
    }

    /// Waits until the server accepted the publish; panics with the publisher's error.
    pub fn wait_publishing(&mut self, deadline: Duration) {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if self.stats.publishing.load(Ordering::Relaxed) {
                return;
            }
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                let r = self.thread.take().map(|t| t.join());
                panic!("publisher ended before publishing: {r:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("publisher not publishing after {deadline:?}");
    }

    /// Stops and returns how the thread ended.
    pub fn stop(mut self) -> Result<(), String> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| "publisher panicked".to_string())?,
            None => Ok(()),
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Reads whatever the server sent within `wait` (at least 1 ms), feeds it to the session and
/// returns its events. A closed connection is an error.
fn pump(
    sock: &mut TcpStream,
    session: &mut ClientSession,
    buf: &mut [u8],
    wait: Duration,
) -> Result<Vec<ClientEvent>, String> {
    if let Some(out) = session.take_output() {
        sock.write_all(&out).map_err(|e| format!("write: {e}"))?;
    }
    sock.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
        .map_err(|e| format!("set timeout: {e}"))?;
    match sock.read(buf) {
        Ok(0) => return Err("connection closed by the server".into()),
        Ok(n) => session
            .handle_input(&buf[..n])
            .map_err(|e| format!("protocol: {e}"))?,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Err(e) => return Err(format!("read: {e}")),
    }
    let mut events = Vec::new();
    while let Some(ev) = session.poll_event().map_err(|e| format!("protocol: {e}"))? {
        if let ClientEvent::Status { level, code, .. } = &ev
            && level == "error"
        {
            return Err(format!("refused: {code}"));
        }
        events.push(ev);
    }
    if let Some(out) = session.take_output() {
        sock.write_all(&out).map_err(|e| format!("write: {e}"))?;
    }
    Ok(events)
}

fn run(
    addr: SocketAddr,
    app: &str,
    name: &str,
    program: &Program,
    stop: &AtomicBool,
    stats: &PublishStats,
) -> Result<(), String> {
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    let _ = sock.set_nodelay(true);
    sock.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| format!("set timeout: {e}"))?;
    let mut session = ClientSession::new(ClientConfig::new(app, &format!("rtmp://{addr}/{app}")));
    session.publish(name);
    let mut buf = vec![0u8; 64 * 1024];

    let deadline = Instant::now() + Duration::from_secs(10);
    'start: loop {
        if Instant::now() > deadline {
            return Err("no NetStream.Publish.Start within 10 s".into());
        }
        for ev in pump(
            &mut sock,
            &mut session,
            &mut buf,
            Duration::from_millis(100),
        )? {
            if ev == ClientEvent::PublishStarted {
                break 'start;
            }
        }
    }
    for h in &program.headers {
        session.send_media(h.type_id, h.timestamp, &h.payload);
    }
    stats.publishing.store(true, Ordering::Relaxed);

    let t0 = Instant::now();
    let period = u64::from(program.period_ms.max(1));
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && !program.tags.is_empty() {
        let len = program.tags.len() as u64;
        let tag = &program.tags[(n % len) as usize];
        let ts = (n / len) * period + u64::from(tag.timestamp);
        let due = t0 + Duration::from_millis(ts);
        let now = Instant::now();
        if due > now {
            // Sleep in the read: pings and acknowledgements are answered meanwhile.
            pump(
                &mut sock,
                &mut session,
                &mut buf,
                (due - now).min(Duration::from_millis(50)),
            )?;
            continue;
        }
        session.send_media(tag.type_id, ts as u32, &tag.payload);
        let counter = if tag.type_id == type_id::VIDEO {
            &stats.video_tags
        } else {
            &stats.audio_tags
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(out) = session.take_output() {
            sock.write_all(&out).map_err(|e| format!("write: {e}"))?;
        }
        n += 1;
    }
    session.close_stream();
    if let Some(out) = session.take_output() {
        let _ = sock.write_all(&out);
    }
    Ok(())
}
