//! The publisher of the synthetic stream: `common::rtmp::ClientSession` over tokio, sending
//! video and audio tags in real time (the send instant stamped into every video frame).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::rtmp::message::type_id;
use common::rtmp::{ClientConfig, ClientEvent, ClientSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::stream::{
    AAC_SEQUENCE_HEADER, AUDIO_FPS, AVC_SEQUENCE_HEADER, FrameBuilder, StreamSpec, ns_since_epoch,
};
use crate::target::Target;

/// One publisher's figures.
#[derive(Debug, Default)]
pub struct PubStats {
    /// NetStream.Publish.Start received.
    pub publishing: AtomicBool,
    pub video_frames: AtomicU64,
    pub bytes: AtomicU64,
    pub error: OnceLock<String>,
    /// Publishes started again (on the backup URL, then the primary, ...) after a failure.
    pub reconnects: AtomicU64,
}

/// The stream's timeline: kept across reconnections, so timestamps stay monotonic when an
/// encoder with a backup URL moves to it.
struct Timeline {
    t0: Instant,
    /// Video and audio frames sent so far.
    video: u64,
    audio: u64,
}

/// How long a publisher with a backup waits before publishing again after a failure.
const REPUBLISH_DELAY: Duration = Duration::from_millis(100);

/// Publishes until `stop` is set (then unpublishes) or the connection fails. With more than
/// one target (a backup URL), a failure moves on to the next target (round robin) and the
/// stream continues where it was, as an encoder with a backup URL does; the first failure is
/// the reported error.
pub async fn publish(targets: Vec<Target>, spec: StreamSpec, st: &PubStats, stop: &AtomicBool) {
    let mut timeline = Timeline {
        t0: Instant::now(),
        video: 0,
        audio: 0,
    };
    let retry = targets.len() > 1;
    for (attempt, target) in targets.into_iter().cycle().enumerate() {
        if attempt > 0 {
            st.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        match run(target, spec, st, stop, &mut timeline).await {
            Ok(()) => return,
            Err(e) => {
                let _ = st.error.set(e);
            }
        }
        if !retry || stop.load(Ordering::Relaxed) {
            return;
        }
        tokio::time::sleep(REPUBLISH_DELAY).await;
    }
}

async fn run(
    target: Target,
    spec: StreamSpec,
    st: &PubStats,
    stop: &AtomicBool,
    timeline: &mut Timeline,
) -> Result<(), String> {
    let Target::Rtmp {
        addr,
        app,
        name,
        tc_url,
        tls: None,
    } = target
    else {
        return Err("publish_url_not_rtmp".into());
    };
    let sock = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| "connect: timeout".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = sock.set_nodelay(true);
    let (mut rd, mut wr) = sock.into_split();
    let mut session = ClientSession::new(ClientConfig::new(&app, &tc_url));
    session.publish(&name);
    let mut buf = vec![0u8; 16 * 1024];

    // Until NetStream.Publish.Start.
    let deadline = Instant::now() + Duration::from_secs(10);
    'start: loop {
        if let Some(out) = session.take_output() {
            wr.write_all(&out)
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
        let n = timeout_at(deadline, rd.read(&mut buf))
            .await
            .map_err(|_| "publish_timeout".to_string())?
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("publish_eof".into());
        }
        session
            .handle_input(&buf[..n])
            .map_err(|e| format!("protocol: {e}"))?;
        while let Some(ev) = session.poll_event().map_err(|e| format!("protocol: {e}"))? {
            match ev {
                ClientEvent::PublishStarted => break 'start,
                ClientEvent::Status { level, code, .. } if level == "error" => {
                    return Err(format!("refused:{code}"));
                }
                _ => {}
            }
        }
    }

    let t0 = timeline.t0;
    let video_period = Duration::from_secs(1).as_secs_f64() / f64::from(spec.fps.max(1));
    let audio_period = 1.0 / AUDIO_FPS;
    let (vi, ai) = (&mut timeline.video, &mut timeline.audio);
    // Sequence headers at the current point of the timeline (0 on the first publish).
    let now_ts = (*vi as f64 * video_period * 1000.0) as u32;
    session.send_media(type_id::VIDEO, now_ts, AVC_SEQUENCE_HEADER);
    session.send_media(type_id::AUDIO, now_ts, AAC_SEQUENCE_HEADER);
    st.publishing.store(true, Ordering::Relaxed);
    let mut frames = FrameBuilder::new(spec);
    loop {
        if let Some(out) = session.take_output() {
            st.bytes.fetch_add(out.len() as u64, Ordering::Relaxed);
            wr.write_all(&out)
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
        if stop.load(Ordering::Relaxed) {
            session.close_stream();
            if let Some(out) = session.take_output() {
                let _ = wr.write_all(&out).await;
            }
            return Ok(());
        }
        let next_v = t0 + Duration::from_secs_f64(*vi as f64 * video_period);
        let next_a = t0 + Duration::from_secs_f64(*ai as f64 * audio_period);
        tokio::select! {
            _ = sleep_until(next_v.min(next_a)) => {}
            r = rd.read(&mut buf) => {
                let n = r.map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    return Err("eof".into());
                }
                session.handle_input(&buf[..n]).map_err(|e| format!("protocol: {e}"))?;
                while let Some(ev) = session.poll_event().map_err(|e| format!("protocol: {e}"))? {
                    if let ClientEvent::Status { level, code, .. } = ev
                        && level == "error"
                    {
                        return Err(format!("refused:{code}"));
                    }
                }
                continue;
            }
        }
        let now = Instant::now();
        while t0 + Duration::from_secs_f64(*vi as f64 * video_period) <= now {
            let ts = (*vi as f64 * video_period * 1000.0) as u32;
            let body = frames.video(*vi, ns_since_epoch(std::time::Instant::now()));
            session.send_media(type_id::VIDEO, ts, body);
            st.video_frames.fetch_add(1, Ordering::Relaxed);
            *vi += 1;
        }
        while t0 + Duration::from_secs_f64(*ai as f64 * audio_period) <= now {
            let ts = (*ai as f64 * audio_period * 1000.0) as u32;
            session.send_media(type_id::AUDIO, ts, frames.audio());
            *ai += 1;
        }
    }
}
