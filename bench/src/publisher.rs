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
}

/// Publishes until `stop` is set (then unpublishes) or the connection fails.
pub async fn publish(target: Target, spec: StreamSpec, st: &PubStats, stop: &AtomicBool) {
    if let Err(e) = run(target, spec, st, stop).await {
        let _ = st.error.set(e);
    }
}

async fn run(
    target: Target,
    spec: StreamSpec,
    st: &PubStats,
    stop: &AtomicBool,
) -> Result<(), String> {
    let Target::Rtmp {
        addr,
        app,
        name,
        tc_url,
    } = target
    else {
        return Err("publish_url_not_rtmp".into());
    };
    let sock = TcpStream::connect(addr)
        .await
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

    session.send_media(type_id::VIDEO, 0, AVC_SEQUENCE_HEADER);
    session.send_media(type_id::AUDIO, 0, AAC_SEQUENCE_HEADER);
    st.publishing.store(true, Ordering::Relaxed);
    let mut frames = FrameBuilder::new(spec);
    let t0 = Instant::now();
    let video_period = Duration::from_secs(1).as_secs_f64() / f64::from(spec.fps.max(1));
    let audio_period = 1.0 / AUDIO_FPS;
    let (mut vi, mut ai) = (0u64, 0u64);
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
        let next_v = t0 + Duration::from_secs_f64(vi as f64 * video_period);
        let next_a = t0 + Duration::from_secs_f64(ai as f64 * audio_period);
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
        while t0 + Duration::from_secs_f64(vi as f64 * video_period) <= now {
            let ts = (vi as f64 * video_period * 1000.0) as u32;
            let body = frames.video(vi, ns_since_epoch(std::time::Instant::now()));
            session.send_media(type_id::VIDEO, ts, body);
            st.video_frames.fetch_add(1, Ordering::Relaxed);
            vi += 1;
        }
        while t0 + Duration::from_secs_f64(ai as f64 * audio_period) <= now {
            let ts = (ai as f64 * audio_period * 1000.0) as u32;
            session.send_media(type_id::AUDIO, ts, frames.audio());
            ai += 1;
        }
    }
}
