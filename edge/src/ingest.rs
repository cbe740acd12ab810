//! The edge's ingest of one stream: an explicit state machine that finds the stream's owner,
//! pulls it over RTMP into the edge hub, follows owner changes, reconnects with backoff, keeps
//! timestamps monotonic across upstreams, and stops when its players are gone.

use std::sync::Arc;
use std::time::Duration;

use common::admission::{Secret, sign_cluster};
use common::cluster::{Registry, StreamEvent, StreamRecord};
use common::media::{FrameKind, Hub, MediaFrame, Publisher};
use common::net::pull::{Pull, PullEvent};
use common::telemetry::metric;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::Ingests;

/// Where an edge pulls from.
#[derive(Clone)]
pub enum Upstreams {
    /// The owner recorded in the registry.
    Registry(Arc<dyn Registry>),
    /// A fixed list of RTMP servers (`host:port`), tried in order.
    Static(Vec<String>),
}

/// Timing of ingests.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Keep the upstream this long after the last player left.
    pub idle_grace: Duration,
    /// Players stay connected this long while the upstream is being re-established.
    pub reconnect_window: Duration,
    /// After the upstream ends the stream, wait this long for the registry to name a new owner.
    pub moved_wait: Duration,
    pub connect_timeout: Duration,
    /// No bytes from the upstream for this long: it is dead.
    pub read_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Signs every pull (`--cluster-secret`), so origins that require play tokens admit it.
    pub cluster_secret: Option<Secret>,
    /// An edge of tier n > 1 pulls from the tier n-1 edges the locator picks for the stream.
    pub parents: Option<Parents>,
}

/// How an edge of tier n > 1 picks its parent for a stream: the locator's bounded-load
/// hashing among the edges of tier n-1 (nearest region first), so every tier-n edge of a
/// region picks the same parent while it has room and a stream enters each tier through as few
/// edges as its audience needs. The origin comes last.
#[derive(Debug, Clone)]
pub struct Parents {
    /// The parents' tier (this edge's tier - 1).
    pub tier: u32,
    pub region: String,
    pub config: common::locate::LocateConfig,
}

/// Parents tried for one stream, best first, before the origin.
const MAX_PARENTS: usize = 3;

/// How long an upstream credential is valid: only its connect is checked, so short.
const CREDENTIAL_TTL_S: u64 = 60;

impl IngestConfig {
    /// The stream name the pull asks for: with the cluster credential as its query if a
    /// secret is set.
    fn upstream_name(&self, app: &str, name: &str) -> String {
        let Some(secret) = &self.cluster_secret else {
            return name.to_string();
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let query = sign_cluster(&secret.0, app, name, now + CREDENTIAL_TTL_S);
        format!("{name}?{query}")
    }
}

/// Rewrites upstream timestamps so players see one monotonic timeline across re-pulls.
/// Timestamps are RTMP's 32-bit milliseconds, which wrap after 49.7 days (or seconds after a
/// publisher that starts near 2^32): steps are taken modulo 2^32 (serial-number arithmetic),
/// so a wrap of the input is a small step forward, and the output wraps the same way.
#[derive(Debug, Default)]
struct Rebase {
    /// The current upstream's latest media timestamp; `None` until its first media frame.
    last_in: Option<u32>,
    last_out: Option<u32>,
}

impl Rebase {
    /// A new upstream starts: its timeline is unrelated to the previous one.
    fn new_upstream(&mut self) {
        self.last_in = None;
    }

    fn map(&mut self, frame: &MediaFrame) -> u32 {
        let ts = frame.timestamp_ms;
        let header = frame.sequence_header || frame.kind == FrameKind::Data;
        let out = match (self.last_in, self.last_out) {
            // Headers re-sent by a new upstream carry stale timestamps: place them now.
            (None, last) if header => return last.unwrap_or(ts),
            (None, None) => {
                self.last_in = Some(ts);
                ts
            }
            // A new upstream's first media frame continues right after the last one sent.
            (None, Some(last)) => {
                self.last_in = Some(ts);
                last.wrapping_add(1)
            }
            (Some(prev), last) => {
                let last = last.unwrap_or(prev);
                // Forward by less than 2^31 (a wrap included) is forward; anything else is
                // out of order and holds the timeline where it is.
                let step = ts.wrapping_sub(prev);
                if step > 0 && step < 1 << 31 {
                    self.last_in = Some(ts);
                    last.wrapping_add(step)
                } else {
                    last
                }
            }
        };
        self.last_out = Some(out);
        out
    }
}

/// The states of an ingest.
#[derive(Debug)]
enum State {
    /// Waiting for an owner (registry) or picking the next static upstream.
    Resolving,
    /// Connecting to / playing from `addr`.
    Pulling {
        addr: String,
    },
    /// The upstream failed; retry at `until`.
    Backoff {
        until: Instant,
    },
    /// The upstream ended the stream; wait until `until` for a new owner, else end.
    Moving {
        until: Instant,
    },
    /// Nobody watches any more: end, unless a player attached meanwhile.
    Idle,
    Done,
}

pub struct Ingest {
    pub app: String,
    pub name: String,
    pub key: String,
    pub hub: Arc<Hub>,
    pub upstreams: Upstreams,
    pub config: IngestConfig,
    pub ingests: Arc<Ingests>,
    pub shutdown: CancellationToken,
    /// The upstream currently pulled from, for the APIs.
    pub upstream: Arc<std::sync::Mutex<Option<String>>>,
}

struct Run {
    ingest: Ingest,
    watch: Option<mpsc::Receiver<StreamEvent>>,
    /// The owner as last reported by the registry.
    owner: Option<Arc<StreamRecord>>,
    publisher: Option<Publisher>,
    /// Counts this stream in the pulled-streams gauge while it has a publisher.
    pulled: Option<metric::GaugeGuard>,
    rebase: Rebase,
    /// When the stream last flowed or players last waited with an upstream: bounds retries.
    lost_since: Option<Instant>,
    idle_since: Option<Instant>,
    attempt: u32,
    /// Which upstream of the list to try (static list; parents then origin): moves on at
    /// every failure.
    static_index: usize,
    /// The upstream pulled from is a parent edge (not the stream's origin).
    from_parent: bool,
    /// Already removed from the edge's table (idle, unwatched).
    detached: bool,
}

impl Ingest {
    /// Runs until the stream ends, its players are gone, or shutdown.
    pub async fn run(self) {
        let span = info_span!("ingest", stream = %self.key);
        let watch = match &self.upstreams {
            // From the node's cached view: no registry call per stream.
            Upstreams::Registry(r) => Some(r.view().watch(&self.app, &self.name)),
            Upstreams::Static(_) => None,
        };
        let mut run = Run {
            ingest: self,
            watch,
            owner: None,
            publisher: None,
            pulled: None,
            rebase: Rebase::default(),
            lost_since: None,
            idle_since: None,
            attempt: 0,
            static_index: 0,
            from_parent: false,
            detached: false,
        };
        async move {
            let mut state = State::Resolving;
            metrics::gauge!(metric::UPSTREAMS_ACTIVE).increment(1.0);
            loop {
                if run.ingest.shutdown.is_cancelled() {
                    break;
                }
                if matches!(state, State::Idle) || run.idle() {
                    if run.detach_if_unwatched() {
                        break;
                    }
                    // A player attached just now: carry on for it.
                    run.idle_since = None;
                    if matches!(state, State::Idle) {
                        state = State::Resolving;
                    }
                }
                state = match state {
                    State::Resolving | State::Idle => run.resolve().await,
                    State::Pulling { addr } => run.pull(&addr).await,
                    State::Backoff { until } => run.wait(until, false).await,
                    State::Moving { until } => run.wait(until, true).await,
                    State::Done => break,
                };
                debug!(?state, "ingest state");
            }
            metrics::gauge!(metric::UPSTREAMS_ACTIVE).decrement(1.0);
            run.finish();
        }
        .instrument(span)
        .await
    }
}

impl Run {
    fn has_players(&self) -> bool {
        self.ingest
            .hub
            .get(&self.ingest.key)
            .is_some_and(|s| s.subscriber_count() > 0)
    }

    /// True once nobody has watched for the idle grace. An ingest that never found an owner
    /// nor pulled anything has nothing to keep warm: it ends as soon as its players leave
    /// (so names nobody publishes do not hold an ingest slot for the grace).
    fn idle(&mut self) -> bool {
        if self.has_players() {
            self.idle_since = None;
            return false;
        }
        if self.publisher.is_none() && self.owner.is_none() {
            return true;
        }
        let since = *self.idle_since.get_or_insert_with(Instant::now);
        since.elapsed() >= self.ingest.config.idle_grace
    }

    /// Leaves the edge's table if no player watches, checked under the lock players attach
    /// under: a player either attached before (and the ingest goes on) or starts a new ingest.
    fn detach_if_unwatched(&mut self) -> bool {
        self.detached = self.ingest.ingests.remove_if_unwatched(
            &self.ingest.key,
            &self.ingest.hub,
            &mut self.publisher,
        );
        self.detached
    }

    /// Ends the ingest: removes it from the edge's table and ends the hub stream, atomically
    /// with respect to new players (who would otherwise attach to a dying ingest).
    fn finish(mut self) {
        self.pulled = None;
        let publisher = self.publisher.take();
        if !self.detached {
            self.ingest.ingests.remove(&self.ingest.key, publisher);
        }
        info!("ingest stopped");
    }

    fn on_watch(&mut self, ev: Option<StreamEvent>) {
        match ev {
            Some(StreamEvent::Put(rec)) => self.owner = Some(rec),
            Some(StreamEvent::Deleted) => self.owner = None,
            None => self.watch = None,
        }
    }

    async fn next_watch(watch: &mut Option<mpsc::Receiver<StreamEvent>>) -> Option<StreamEvent> {
        match watch {
            Some(w) => w.recv().await,
            None => std::future::pending().await,
        }
    }

    /// The retry window is over: players have waited long enough.
    fn window_over(&self) -> bool {
        self.lost_since
            .is_some_and(|t| t.elapsed() >= self.ingest.config.reconnect_window)
    }

    async fn resolve(&mut self) -> State {
        match self.ingest.upstreams.clone() {
            Upstreams::Static(list) => {
                if list.is_empty() {
                    return State::Done;
                }
                let addr = list[self.static_index % list.len()].clone();
                State::Pulling { addr }
            }
            Upstreams::Registry(_) => {
                // Wait for an owner while players wait (idle ends the ingest otherwise).
                let tick = Instant::now() + Duration::from_millis(250);
                if let Some(rec) = &self.owner {
                    let list = self.upstream_list(rec);
                    let i = self.static_index % list.len();
                    self.from_parent = i + 1 < list.len();
                    return State::Pulling {
                        addr: list[i].clone(),
                    };
                }
                if self.window_over() {
                    return State::Done;
                }
                tokio::select! {
                    ev = Self::next_watch(&mut self.watch) => self.on_watch(ev),
                    _ = sleep_until(tick) => {}
                    _ = self.ingest.shutdown.cancelled() => return State::Done,
                }
                State::Resolving
            }
        }
    }

    /// Where to pull `rec`'s stream from, in order: the parents (tier > 1), then its origin.
    fn upstream_list(&self, rec: &StreamRecord) -> Vec<String> {
        let mut list = Vec::new();
        if let (Some(parents), Upstreams::Registry(registry)) =
            (&self.ingest.config.parents, &self.ingest.upstreams)
        {
            let nodes = registry.view().nodes_shared();
            let filter = common::locate::Filter::tier(parents.tier);
            let key = &self.ingest.key;
            for c in common::locate::choose_in(
                filter,
                &parents.region,
                key,
                &nodes,
                &parents.config,
                MAX_PARENTS,
            ) {
                if let Some(n) = nodes.iter().find(|n| n.node_id == c.node_id) {
                    list.push(n.rtmp_address.clone());
                }
            }
        }
        list.push(rec.origin_rtmp_address.clone());
        list
    }

    async fn wait(&mut self, until: Instant, moving: bool) -> State {
        let before = self.owner.as_ref().map(|o| o.origin_node_id.clone());
        loop {
            if Instant::now() >= until {
                return if moving {
                    State::Done
                } else {
                    State::Resolving
                };
            }
            if self.idle() {
                return State::Idle;
            }
            let tick = (Instant::now() + Duration::from_millis(250)).min(until);
            tokio::select! {
                ev = Self::next_watch(&mut self.watch) => {
                    let deleted = matches!(ev, Some(StreamEvent::Deleted));
                    self.on_watch(ev);
                    let now = self.owner.as_ref().map(|o| o.origin_node_id.clone());
                    if moving && deleted {
                        // The publisher stopped for good.
                        return State::Done;
                    }
                    if now.is_some() && now != before {
                        return State::Resolving;
                    }
                }
                _ = sleep_until(tick) => {}
                _ = self.ingest.shutdown.cancelled() => return State::Done,
            }
        }
    }

    fn backoff(&mut self) -> State {
        self.lost_since.get_or_insert_with(Instant::now);
        if self.window_over() {
            info!("upstream not back within the reconnect window");
            return State::Done;
        }
        self.attempt += 1;
        self.static_index += 1;
        let cfg = &self.ingest.config;
        let exp = cfg
            .backoff_min
            .saturating_mul(1 << self.attempt.min(8).saturating_sub(1));
        State::Backoff {
            until: Instant::now() + exp.min(cfg.backoff_max),
        }
    }

    async fn pull(&mut self, addr: &str) -> State {
        let cfg = self.ingest.config.clone();
        metrics::counter!(metric::UPSTREAM_ATTEMPTS).increment(1);
        let attempt_span = info_span!("upstream", origin = %addr, attempt = self.attempt);
        let connected = Pull::connect(
            addr,
            &self.ingest.app,
            &cfg.upstream_name(&self.ingest.app, &self.ingest.name),
            cfg.connect_timeout,
            cfg.read_timeout,
        )
        .instrument(attempt_span.clone())
        .await;
        let mut pull = match connected {
            Ok(p) => p,
            Err(e) => {
                metrics::counter!(metric::UPSTREAM_FAILURES, "reason" => e.reason()).increment(1);
                warn!(parent: &attempt_span, error = %e, "upstream connect failed");
                return self.backoff();
            }
        };
        let pulling_from = self.owner.as_ref().map(|o| o.origin_node_id.clone());
        *self
            .ingest
            .upstream
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(addr.to_string());
        self.rebase.new_upstream();
        let mut idle_tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            // Biased, upstream first: while frames are buffered the other branches are not
            // even polled (they are, every time the upstream socket runs dry).
            tokio::select! {
                biased;
                ev = pull.next() => match ev {
                    Ok(PullEvent::Started) => {
                        info!(parent: &attempt_span, "upstream playing");
                        if self.publisher.is_none() {
                            match self.ingest.hub.publish(&self.ingest.key) {
                                Ok(p) => {
                                    self.publisher = Some(p);
                                    self.pulled = Some(metric::GaugeGuard::new(metrics::gauge!(
                                        metric::STREAMS_ACTIVE,
                                        "kind" => "pulled"
                                    )));
                                }
                                Err(e) => {
                                    warn!(error = %e, "edge hub refused the ingest");
                                    return State::Done;
                                }
                            }
                        }
                    }
                    Ok(PullEvent::Frame(frame)) => {
                        self.attempt = 0;
                        self.lost_since = None;
                        let ts = self.rebase.map(&frame);
                        let frame = if ts == frame.timestamp_ms { frame } else { frame.with_timestamp(ts) };
                        if let Some(p) = &self.publisher {
                            p.send(frame);
                        }
                    }
                    Ok(PullEvent::Ended) => {
                        info!(parent: &attempt_span, "upstream ended the stream");
                        if matches!(self.ingest.upstreams, Upstreams::Static(_)) {
                            return State::Done;
                        }
                        return State::Moving { until: Instant::now() + cfg.moved_wait };
                    }
                    Err(e) => {
                        metrics::counter!(metric::UPSTREAM_FAILURES, "reason" => e.reason())
                            .increment(1);
                        warn!(parent: &attempt_span, error = %e, "upstream failed");
                        return self.backoff();
                    }
                },
                ev = Self::next_watch(&mut self.watch) => {
                    self.on_watch(ev);
                    let now = self.owner.as_ref().map(|o| o.origin_node_id.clone());
                    // A parent edge follows the move itself: its children stay connected.
                    if now.is_some() && now != pulling_from && !self.from_parent {
                        info!(parent: &attempt_span, owner = ?now, "stream moved to another origin");
                        return State::Resolving;
                    }
                }
                _ = idle_tick.tick() => {
                    if self.idle() {
                        return State::Idle;
                    }
                }
                _ = self.ingest.shutdown.cancelled() => return State::Done,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(ts: u32, header: bool) -> MediaFrame {
        MediaFrame::new(FrameKind::Video, ts, !header, header, Bytes::new())
    }

    #[test]
    fn timestamps_stay_monotonic_across_upstreams() {
        let mut r = Rebase::default();
        assert_eq!(r.map(&frame(1000, true)), 1000);
        assert_eq!(r.map(&frame(1000, false)), 1000);
        assert_eq!(r.map(&frame(1040, false)), 1040);
        // A new upstream starting at 0, with stale headers first.
        r.new_upstream();
        assert_eq!(r.map(&frame(0, true)), 1040);
        assert_eq!(r.map(&frame(500, false)), 1041);
        assert_eq!(r.map(&frame(540, false)), 1081);
        // Another upstream far ahead in time still continues from where we were.
        r.new_upstream();
        assert_eq!(r.map(&frame(90_000, false)), 1082);
        // Out-of-order input never goes backwards.
        assert_eq!(r.map(&frame(89_000, false)), 1082);
        assert_eq!(r.map(&frame(90_040, false)), 1122);
    }

    #[test]
    fn timestamps_keep_moving_across_the_32_bit_wrap() {
        // A publisher that starts near 2^32 (or one that has run for 49.7 days).
        let start = u32::MAX - 100;
        let mut r = Rebase::default();
        assert_eq!(r.map(&frame(start, true)), start);
        let mut expected = start;
        for i in 0..10u32 {
            let ts = start.wrapping_add(40 * i);
            assert_eq!(r.map(&frame(ts, false)), expected, "frame {i}");
            expected = expected.wrapping_add(40);
        }
        // Past the wrap, every frame still advances by its own step (no frozen timeline).
        let a = r.map(&frame(start.wrapping_add(400), false));
        let b = r.map(&frame(start.wrapping_add(440), false));
        assert_eq!(b.wrapping_sub(a), 40);
        assert_eq!(a, start.wrapping_add(400));
        // Out of order across the wrap holds, then resumes.
        assert_eq!(r.map(&frame(u32::MAX - 5, false)), b);
        assert_eq!(
            r.map(&frame(start.wrapping_add(480), false)),
            b.wrapping_add(40)
        );

        // A re-pull from a new upstream while the output is near the wrap continues too.
        let mut r = Rebase::default();
        assert_eq!(r.map(&frame(u32::MAX - 1, false)), u32::MAX - 1);
        r.new_upstream();
        assert_eq!(r.map(&frame(7, true)), u32::MAX - 1);
        assert_eq!(r.map(&frame(1000, false)), u32::MAX);
        assert_eq!(r.map(&frame(1040, false)), 39);
        assert_eq!(r.map(&frame(1080, false)), 79);
    }
}
