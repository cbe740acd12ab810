//! The node's control plane, shared by origin and edge: views of streams and clients, kick,
//! drain and the cluster as the registry sees it, served as an HTTP JSON API (`http`) and a
//! gRPC service (`grpc`) from one implementation. Wires media, net and cluster together, so
//! nothing below it has to.

pub mod grpc;
pub mod http;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;

use crate::cluster::Registry;
use crate::flv::{AudioCodec, VideoCodec, parse_audio_config, parse_video_config};
use crate::media::{Hub, Stream};
use crate::net::clients::{ClientInfo, ClientRole};
use crate::net::{NetContext, Node};

/// How far back stream bitrates are measured.
const RATE_WINDOW: Duration = Duration::from_secs(30);

/// (when, bytes in, bytes out) of one stream.
type RateSample = (Instant, u64, u64);

/// Everything the control plane reads and steers.
pub struct Control<N: Node> {
    pub net: Arc<NetContext<N>>,
    pub hub: Arc<Hub>,
    pub registry: Arc<dyn Registry>,
    /// Wakes the node's registry refresh (after a change such as draining).
    pub refresh: Arc<Notify>,
    /// Bearer token of calls that change something; `None`: the API listener is loopback-only
    /// (checked at start) and anyone who can reach it may.
    api_token: Option<String>,
    rates: Mutex<HashMap<String, VecDeque<RateSample>>>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VideoView {
    pub codec: String,
    pub profile: String,
    pub level: String,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AudioView {
    pub codec: String,
    pub profile: String,
    pub sample_rate: u32,
    pub channels: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PublisherView {
    pub client_id: u64,
    pub peer: String,
}

/// One stream as the APIs show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StreamView {
    pub app: String,
    pub name: String,
    pub publishing: bool,
    pub publisher: Option<PublisherView>,
    /// The origin an edge pulls this stream from.
    pub upstream: Option<String>,
    /// Pulled ahead of any player (pre-warm) by this edge.
    pub prewarmed: bool,
    pub video: Option<VideoView>,
    pub audio: Option<AudioView>,
    pub bitrate_in_bps: u64,
    pub bitrate_out_bps: u64,
    pub players: BTreeMap<String, u64>,
    pub frames_in: u64,
    pub frames_dropped: u64,
}

/// One client as the APIs show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClientView {
    pub id: u64,
    pub role: &'static str,
    pub protocol: &'static str,
    pub stream: String,
    pub peer: String,
    pub connected_at: u64,
    pub bytes: u64,
}

impl From<&ClientInfo> for ClientView {
    fn from(c: &ClientInfo) -> Self {
        ClientView {
            id: c.id,
            role: c.role.as_str(),
            protocol: c.protocol,
            stream: c.stream.clone(),
            peer: c.peer.clone(),
            connected_at: c.connected_at,
            bytes: c.bytes.load(Ordering::Relaxed),
        }
    }
}

/// The outcome of a drain.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DrainView {
    pub remaining_clients: u64,
    pub deadline_reached: bool,
}

fn video_codec_name(c: VideoCodec) -> String {
    match c {
        VideoCodec::Avc => "H.264".into(),
        VideoCodec::Hevc => "H.265".into(),
        VideoCodec::Av1 => "AV1".into(),
        other => format!("{other:?}"),
    }
}

fn audio_codec_name(c: AudioCodec) -> String {
    match c {
        AudioCodec::Aac => "AAC".into(),
        AudioCodec::Mp3 => "MP3".into(),
        AudioCodec::Opus => "Opus".into(),
        other => format!("{other:?}"),
    }
}

impl<N: Node> Control<N> {
    pub fn new(
        net: Arc<NetContext<N>>,
        hub: Arc<Hub>,
        registry: Arc<dyn Registry>,
        refresh: Arc<Notify>,
        api_token: Option<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            net,
            hub,
            registry,
            refresh,
            api_token,
            rates: Mutex::new(HashMap::new()),
        })
    }

    /// Whether a call that changes something may proceed, given its `Authorization` header
    /// (or gRPC metadata) value. The token is compared in constant time.
    pub fn may_change(&self, authorization: Option<&str>) -> bool {
        let Some(token) = &self.api_token else {
            return true;
        };
        let given = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or_default()
            .trim();
        given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// The registry's cached view of nodes and streams, once it holds a first snapshot
    /// (waited for a moment at start): the cluster APIs read it, never etcd.
    pub async fn cluster_view(&self) -> Result<Arc<crate::cluster::ClusterView>, String> {
        let view = self.registry.view();
        if view.wait_synced(Duration::from_secs(2)).await {
            Ok(view)
        } else {
            Err("registry unavailable: the cluster view has not been read yet".to_string())
        }
    }

    /// Ends a drain: new publishers and players are accepted again, and the registry hears of
    /// it at once.
    pub fn undrain(&self) {
        self.net.set_draining(false);
        self.refresh.notify_one();
    }

    /// Samples every stream's byte counters once a second (for bitrates) until shutdown.
    pub async fn sample_rates(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.net.shutdown.cancelled() => return,
            }
            let now = Instant::now();
            let streams = self.hub.streams();
            let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
            rates.retain(|k, _| streams.iter().any(|s| s.key() == k));
            for s in streams {
                let samples = rates.entry(s.key().to_string()).or_default();
                samples.push_back((
                    now,
                    s.stats.bytes_in.load(Ordering::Relaxed),
                    s.stats.bytes_out.load(Ordering::Relaxed),
                ));
                while samples
                    .front()
                    .is_some_and(|(t, _, _)| now.duration_since(*t) > RATE_WINDOW)
                {
                    samples.pop_front();
                }
            }
        }
    }

    fn bitrates(&self, key: &str) -> (u64, u64) {
        let rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        let Some(samples) = rates.get(key) else {
            return (0, 0);
        };
        rates_of(samples)
    }

    fn view(&self, stream: &Stream, clients: &[Arc<ClientInfo>]) -> StreamView {
        let snap = stream.snapshot();
        let (app, name) = snap
            .key
            .split_once('/')
            .map(|(a, n)| (a.to_string(), n.to_string()))
            .unwrap_or_else(|| (String::new(), snap.key.clone()));
        let video = snap
            .video_sequence_header
            .as_ref()
            .and_then(|f| parse_video_config(&f.payload))
            .map(|c| VideoView {
                codec: c.codec.map(video_codec_name).unwrap_or_default(),
                profile: c.profile.unwrap_or_default(),
                level: c.level.unwrap_or_default(),
                width: c.width,
                height: c.height,
            });
        let audio = snap
            .audio_sequence_header
            .as_ref()
            .and_then(|f| parse_audio_config(&f.payload))
            .map(|c| AudioView {
                codec: c.codec.map(audio_codec_name).unwrap_or_default(),
                profile: c.profile.unwrap_or_default(),
                sample_rate: c.sample_rate,
                channels: c.channels.into(),
            });
        let mut players = BTreeMap::new();
        let mut publisher = None;
        for c in clients.iter().filter(|c| c.stream == snap.key) {
            match c.role {
                ClientRole::Player => *players.entry(c.protocol.to_string()).or_insert(0) += 1,
                ClientRole::Publisher => {
                    publisher = Some(PublisherView {
                        client_id: c.id,
                        peer: c.peer.clone(),
                    })
                }
            }
        }
        // HLS has no connection per player: its viewers are estimated by the packager.
        if let Some(n) = self.net.hls.viewers_of(&snap.key) {
            players.insert("hls".to_string(), n as u64);
        }
        let (bitrate_in_bps, bitrate_out_bps) = self.bitrates(&snap.key);
        StreamView {
            upstream: self.net.node.upstream(&snap.key),
            prewarmed: self.net.node.prewarmed().contains(&snap.key),
            app,
            name,
            publishing: snap.publishing,
            publisher,
            video,
            audio,
            bitrate_in_bps,
            bitrate_out_bps,
            players,
            frames_in: stream.stats.frames_in.load(Ordering::Relaxed),
            frames_dropped: stream.stats.frames_dropped.load(Ordering::Relaxed),
        }
    }

    /// Streams this node publishes or pulls (not those only awaited by players).
    pub fn streams(&self) -> Vec<StreamView> {
        let clients = self.net.clients.list();
        let mut v: Vec<_> = self
            .hub
            .streams()
            .iter()
            .filter(|s| s.is_publishing())
            .map(|s| self.view(s, &clients))
            .collect();
        v.sort_by(|a, b| (&a.app, &a.name).cmp(&(&b.app, &b.name)));
        v
    }

    pub fn stream(&self, app: &str, name: &str) -> Option<StreamView> {
        let s = self.hub.get(&format!("{app}/{name}"))?;
        if !s.is_publishing() {
            return None;
        }
        Some(self.view(&s, &self.net.clients.list()))
    }

    pub fn clients(&self) -> Vec<ClientView> {
        self.net
            .clients
            .list()
            .iter()
            .map(|c| ClientView::from(c.as_ref()))
            .collect()
    }

    pub fn kick(&self, id: u64) -> bool {
        self.net.clients.kick(id)
    }

    /// Refuses new publishers and players, tells the registry, waits for clients to leave
    /// until `deadline`, then closes those left.
    pub async fn drain(&self, deadline: Duration) -> DrainView {
        self.net.set_draining(true);
        self.refresh.notify_one();
        // A deadline too far to represent (`?deadline=<u64::MAX>`) is no deadline.
        let end = drain_end(Instant::now(), deadline);
        loop {
            let left = self.net.clients.len() as u64;
            if left == 0 {
                return DrainView {
                    remaining_clients: 0,
                    deadline_reached: false,
                };
            }
            if end.is_some_and(|end| Instant::now() >= end) {
                self.net.clients.kick_all();
                return DrainView {
                    remaining_clients: left,
                    deadline_reached: true,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// When a drain of `deadline` started at `now` ends; `None` (never) for a deadline too far to
/// represent, such as `?deadline=<u64::MAX>` (`Instant + Duration` would panic).
fn drain_end(now: Instant, deadline: Duration) -> Option<Instant> {
    now.checked_add(deadline)
}

/// Bits per second in and out over `samples`. Counters that went backwards (a stream of the
/// same key replaced by a new one between two samples) count as no bytes, not as a wrap.
fn rates_of(samples: &VecDeque<RateSample>) -> (u64, u64) {
    match (samples.front(), samples.back()) {
        (Some((t0, i0, o0)), Some((t1, i1, o1))) if t1 > t0 => {
            let secs = t1.duration_since(*t0).as_secs_f64();
            (
                (i1.saturating_sub(*i0) as f64 * 8.0 / secs) as u64,
                (o1.saturating_sub(*o0) as f64 * 8.0 / secs) as u64,
            )
        }
        _ => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_deadline_of_u64_max_seconds_does_not_panic() {
        let now = Instant::now();
        assert_eq!(drain_end(now, Duration::from_secs(u64::MAX)), None);
        assert_eq!(
            drain_end(now, Duration::from_secs(30)),
            Some(now + Duration::from_secs(30))
        );
    }

    #[test]
    fn bitrates_of_counters_that_went_backwards_do_not_wrap() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let samples: VecDeque<RateSample> = [(t0, 1_000_000, 500), (t1, 10, 0)].into();
        assert_eq!(rates_of(&samples), (0, 0));
        let samples: VecDeque<RateSample> = [(t0, 0, 0), (t1, 1000, 250)].into();
        assert_eq!(rates_of(&samples), (4000, 1000));
    }

    #[test]
    fn codec_names_are_readable() {
        assert_eq!(video_codec_name(VideoCodec::Avc), "H.264");
        assert_eq!(video_codec_name(VideoCodec::Hevc), "H.265");
        assert_eq!(audio_codec_name(AudioCodec::Aac), "AAC");
    }
}
