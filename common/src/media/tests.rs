//! In-memory tests of the hub, the GOP cache and the subscriber queue policy.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::{Arc, Barrier};

use bytes::Bytes;

use super::{CloseReason, FrameKind, Hub, HubConfig, HubError, MediaFrame, Subscriber};

pub(super) const KEY: &str = "live/cam";

pub(super) fn frame(kind: FrameKind, ts: u32, keyframe: bool, seq: bool, len: usize) -> MediaFrame {
    // The payload names the frame so that a mismatch shows up in assertion output.
    let mut p = format!("{kind:?}@{ts}").into_bytes();
    p.resize(len.max(p.len()), 0);
    MediaFrame::new(kind, ts, keyframe, seq, Bytes::from(p))
}

pub(super) fn key(ts: u32) -> MediaFrame {
    frame(FrameKind::Video, ts, true, false, 16)
}

pub(super) fn inter(ts: u32) -> MediaFrame {
    frame(FrameKind::Video, ts, false, false, 16)
}

pub(super) fn audio(ts: u32) -> MediaFrame {
    frame(FrameKind::Audio, ts, false, false, 16)
}

pub(super) fn vseq() -> MediaFrame {
    frame(FrameKind::Video, 0, true, true, 16)
}

pub(super) fn aseq() -> MediaFrame {
    frame(FrameKind::Audio, 0, false, true, 16)
}

pub(super) fn meta(ts: u32) -> MediaFrame {
    frame(FrameKind::Data, ts, false, false, 16)
}

/// (kind, timestamp, keyframe, sequence header) of a frame: what the tests compare.
pub(super) type Sig = (FrameKind, u32, bool, bool);

pub(super) fn sig(f: &MediaFrame) -> Sig {
    (f.kind, f.timestamp_ms, f.keyframe, f.sequence_header)
}

pub(super) const V_SEQ: Sig = (FrameKind::Video, 0, true, true);
pub(super) const A_SEQ: Sig = (FrameKind::Audio, 0, false, true);

pub(super) fn k(ts: u32) -> Sig {
    (FrameKind::Video, ts, true, false)
}
pub(super) fn p(ts: u32) -> Sig {
    (FrameKind::Video, ts, false, false)
}
pub(super) fn a(ts: u32) -> Sig {
    (FrameKind::Audio, ts, false, false)
}
pub(super) fn m(ts: u32) -> Sig {
    (FrameKind::Data, ts, false, false)
}

pub(super) fn sigs(frames: &[Arc<MediaFrame>]) -> Vec<Sig> {
    frames.iter().map(|f| sig(f)).collect()
}

pub(super) fn drain(sub: &mut Subscriber) -> Vec<Sig> {
    let mut out = Vec::new();
    sub.try_recv(&mut out, usize::MAX);
    sigs(&out)
}

pub(super) fn config() -> HubConfig {
    HubConfig {
        gop_cache: true,
        gop_max_frames: 100,
        gop_max_bytes: 1 << 20,
        queue_max_ms: 10_000,
        queue_max_bytes: 64 << 20,
        slow_max_overflows: 100,
        slow_window_ms: 60_000,
        fanout_min_subscribers: 128,
        fanout_shards: 0,
    }
}

#[test]
fn a_drained_queue_gives_back_the_room_its_primed_gop_took() {
    let hub = Hub::new(config());
    let publisher = hub.publish(KEY).unwrap();
    publisher.send(key(0));
    for i in 1..90 {
        publisher.send(inter(i * 40));
    }
    let mut sub = hub.subscribe(KEY);
    assert!(sub.queue_capacity() >= 90);
    assert_eq!(drain(&mut sub).len(), 90);
    assert!(sub.queue_capacity() <= 16, "{}", sub.queue_capacity());
}

#[test]
fn priming_order_is_metadata_headers_then_gop_from_a_keyframe() {
    let hub = Hub::new(config());
    let publisher = hub.publish(KEY).unwrap();
    // Headers arrive in an order different from the priming order; media before the first
    // keyframe is not worth caching.
    publisher.send(aseq());
    publisher.send(inter(0));
    publisher.send(audio(10));
    publisher.send(vseq());
    publisher.send(meta(0));
    publisher.send(key(40));
    publisher.send(audio(50));
    publisher.send(inter(80));
    let mut sub = hub.subscribe(KEY);
    assert_eq!(
        drain(&mut sub),
        vec![m(0), V_SEQ, A_SEQ, k(40), a(50), p(80)]
    );
    // Primed on a keyframe: the next inter frame goes straight through.
    publisher.send(inter(120));
    assert_eq!(drain(&mut sub), vec![p(120)]);
    assert_eq!(sub.dropped(), 0);
}

#[test]
fn newer_headers_replace_older_ones_in_the_cache() {
    let hub = Hub::new(config());
    let publisher = hub.publish(KEY).unwrap();
    publisher.send(meta(0));
    publisher.send(frame(FrameKind::Video, 0, true, true, 10));
    publisher.send(meta(500));
    publisher.send(frame(FrameKind::Video, 600, true, true, 20));
    let mut sub = hub.subscribe(KEY);
    assert_eq!(
        drain(&mut sub),
        vec![m(500), (FrameKind::Video, 600, true, true)]
    );
    let snap = sub.stream().snapshot();
    assert_eq!(snap.video_sequence_header.unwrap().timestamp_ms, 600);
    assert!(snap.audio_sequence_header.is_none());
    assert_eq!(snap.metadata.unwrap().timestamp_ms, 500);
}

#[test]
fn gop_cache_restarts_on_every_keyframe() {
    let hub = Hub::new(config());
    let publisher = hub.publish(KEY).unwrap();
    publisher.send(vseq());
    publisher.send(key(0));
    publisher.send(inter(40));
    publisher.send(key(80));
    publisher.send(audio(90));
    publisher.send(inter(120));
    let mut sub = hub.subscribe(KEY);
    assert_eq!(drain(&mut sub), vec![V_SEQ, k(80), a(90), p(120)]);
}

#[test]
fn gop_cache_can_be_disabled() {
    let hub = Hub::new(HubConfig {
        gop_cache: false,
        ..config()
    });
    let publisher = hub.publish(KEY).unwrap();
    publisher.send(vseq());
    publisher.send(key(0));
    publisher.send(inter(40));
    let mut sub = hub.subscribe(KEY);
    assert_eq!(drain(&mut sub), vec![V_SEQ]);
    // Not primed with a keyframe: video waits for the next one.
    publisher.send(inter(80));
    publisher.send(key(120));
    assert_eq!(drain(&mut sub), vec![k(120)]);
}

#[test]
fn gop_over_the_frame_bound_is_not_cached_until_the_next_keyframe() {
    let hub = Hub::new(HubConfig {
        gop_max_frames: 3,
        ..config()
    });
    let publisher = hub.publish(KEY).unwrap();
    publisher.send(vseq());
    publisher.send(key(0));
    publisher.send(inter(40));
    publisher.send(inter(80));
    // Exactly at the bound: still cached.
    let mut at_bound = hub.subscribe(KEY);
    assert_eq!(drain(&mut at_bound), vec![V_SEQ, k(0), p(40), p(80)]);

    publisher.send(inter(120));
    let mut over = hub.subscribe(KEY);
    assert_eq!(drain(&mut over), vec![V_SEQ]);
    publisher.send(inter(160));
    publisher.send(audio(170));
    let mut still_over = hub.subscribe(KEY);
    assert_eq!(drain(&mut still_over), vec![V_SEQ]);

    publisher.send(key(200));
    publisher.send(inter(240));
    let mut next_gop = hub.subscribe(KEY);
    assert_eq!(drain(&mut next_gop), vec![V_SEQ, k(200), p(240)]);
    // A subscriber that joined while nothing was cached got no video until the keyframe.
    assert_eq!(drain(&mut over), vec![a(170), k(200), p(240)]);
}

#[test]
fn gop_over_the_byte_bound_is_not_cached_until_the_next_keyframe() {
    let hub = Hub::new(HubConfig {
        gop_max_bytes: 1000,
        ..config()
    });
    let publisher = hub.publish(KEY).unwrap();
    publisher.send(frame(FrameKind::Video, 0, true, false, 600));
    publisher.send(frame(FrameKind::Video, 40, false, false, 400));
    let mut at_bound = hub.subscribe(KEY);
    assert_eq!(drain(&mut at_bound), vec![k(0), p(40)]);

    publisher.send(frame(FrameKind::Video, 80, false, false, 1));
    let mut over = hub.subscribe(KEY);
    assert!(drain(&mut over).is_empty());
    publisher.send(inter(120));
    assert!(drain(&mut hub.subscribe(KEY)).is_empty());

    publisher.send(key(160));
    assert_eq!(drain(&mut hub.subscribe(KEY)), vec![k(160)]);
}

#[test]
fn subscriber_before_first_keyframe_gets_no_video_until_one() {
    let hub = Hub::new(config());
    // The player comes first and waits for the publisher.
    let mut sub = hub.subscribe(KEY);
    assert!(drain(&mut sub).is_empty());
    let publisher = hub.publish(KEY).unwrap();
    publisher.send(meta(0));
    publisher.send(vseq());
    publisher.send(aseq());
    publisher.send(inter(0));
    publisher.send(audio(10));
    publisher.send(inter(40));
    publisher.send(key(80));
    publisher.send(inter(120));
    assert_eq!(
        drain(&mut sub),
        vec![m(0), V_SEQ, A_SEQ, a(10), k(80), p(120)]
    );
    assert_eq!(sub.dropped(), 2);
}

/// Publishes headers and a keyframe, then subscribes a player that never reads.
fn slow_setup(cfg: HubConfig) -> (Arc<Hub>, super::Publisher, Subscriber) {
    let hub = Hub::new(cfg);
    let publisher = hub.publish(KEY).unwrap();
    publisher.send(meta(0));
    publisher.send(vseq());
    publisher.send(aseq());
    publisher.send(key(0));
    let sub = hub.subscribe(KEY);
    (hub, publisher, sub)
}

#[test]
fn overflow_drops_to_the_next_keyframe_and_keeps_headers() {
    let (_hub, publisher, mut sub) = slow_setup(HubConfig {
        queue_max_ms: 100,
        ..config()
    });
    let stream = sub.stream().clone();
    publisher.send(audio(20));
    publisher.send(inter(40));
    publisher.send(inter(80));
    // 0..=100 ms queued: at the bound, nothing dropped yet.
    publisher.send(audio(100));
    assert_eq!(sub.dropped(), 0);
    // 120 ms of media queued: everything but headers goes (k0 a20 p40 p80 a100 p120).
    publisher.send(inter(120));
    assert_eq!(sub.dropped(), 6);
    assert_eq!(
        stream
            .stats
            .frames_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        6
    );
    assert_eq!(sub.close_reason(), None);
    // Until the next keyframe: video is dropped (and counted), audio and headers pass.
    publisher.send(inter(160));
    publisher.send(audio(170));
    publisher.send(frame(FrameKind::Video, 180, true, true, 16));
    publisher.send(meta(190));
    publisher.send(key(200));
    publisher.send(inter(240));
    assert_eq!(sub.dropped(), 7);
    assert_eq!(
        stream
            .stats
            .frames_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        7
    );
    assert_eq!(
        drain(&mut sub),
        vec![
            m(0),
            V_SEQ,
            A_SEQ,
            a(170),
            (FrameKind::Video, 180, true, true),
            m(190),
            k(200),
            p(240)
        ]
    );
}

#[test]
fn overflow_on_a_keyframe_resumes_from_that_keyframe() {
    let (_hub, publisher, mut sub) = slow_setup(HubConfig {
        queue_max_ms: 100,
        ..config()
    });
    publisher.send(inter(40));
    publisher.send(inter(80));
    publisher.send(key(120));
    assert_eq!(sub.dropped(), 3);
    publisher.send(inter(160));
    assert_eq!(sub.dropped(), 3);
    assert_eq!(drain(&mut sub), vec![m(0), V_SEQ, A_SEQ, k(120), p(160)]);
}

#[test]
fn out_of_order_timestamps_are_not_an_overflow() {
    let (_hub, publisher, mut sub) = slow_setup(HubConfig {
        queue_max_ms: 100,
        ..config()
    });
    assert_eq!(drain(&mut sub), vec![m(0), V_SEQ, A_SEQ, k(0)]);
    // Audio slightly behind video, and metadata and a sequence header re-sent with timestamp
    // 0: none of that is 4 billion milliseconds of queued media.
    publisher.send(inter(40));
    publisher.send(audio(30));
    publisher.send(meta(0));
    publisher.send(frame(FrameKind::Video, 0, true, true, 16));
    publisher.send(inter(80));
    assert_eq!(sub.dropped(), 0);
    assert_eq!(sub.close_reason(), None);
    // The bound still holds once real media time has passed (141 - 40 > 100).
    publisher.send(inter(141));
    assert_eq!(sub.dropped(), 4);
    assert_eq!(drain(&mut sub), vec![m(0), V_SEQ]);
}

#[test]
fn a_timestamp_jump_either_way_still_bounds_the_queue() {
    let (_hub, publisher, mut sub) = slow_setup(HubConfig {
        queue_max_ms: 100,
        ..config()
    });
    drain(&mut sub);
    // Backwards by 5 s (a publisher resetting its clock) is 5 s of queue, not 0.
    publisher.send(inter(5_000));
    publisher.send(inter(0));
    assert_eq!(sub.dropped(), 2);
    publisher.send(key(40));
    publisher.send(audio(1_000_000));
    assert_eq!(sub.dropped(), 4);
    assert!(drain(&mut sub).is_empty());
}

#[test]
fn queue_length_survives_timestamp_wraparound() {
    let hub = Hub::new(HubConfig {
        queue_max_ms: 100,
        ..config()
    });
    let publisher = hub.publish(KEY).unwrap();
    let mut sub = hub.subscribe(KEY);
    let start = u32::MAX - 40;
    publisher.send(key(start));
    publisher.send(inter(start.wrapping_add(40)));
    publisher.send(inter(start.wrapping_add(80)));
    assert_eq!(sub.dropped(), 0);
    publisher.send(inter(start.wrapping_add(120)));
    assert_eq!(sub.dropped(), 4);
    assert!(drain(&mut sub).is_empty());
}

#[tokio::test]
async fn too_many_overflows_close_the_subscriber_as_too_slow() {
    let (_hub, publisher, mut sub) = slow_setup(HubConfig {
        queue_max_ms: 100,
        slow_max_overflows: 3,
        slow_window_ms: 1_000,
        ..config()
    });
    let cancelled = sub.cancelled();
    // Overflow 1 at 120 ms (drops k0 p40 p80 p120).
    for ts in [40, 80, 120] {
        publisher.send(inter(ts));
    }
    assert_eq!(sub.dropped(), 4);
    // Overflow 2 at 320 ms (drops k200 .. p320).
    publisher.send(key(200));
    for ts in [240, 280, 320] {
        publisher.send(inter(ts));
    }
    assert_eq!(sub.dropped(), 8);
    assert_eq!(sub.close_reason(), None);
    assert!(!cancelled.is_cancelled());
    // Overflow 3 within the window: too slow.
    publisher.send(key(400));
    for ts in [440, 480, 520] {
        publisher.send(inter(ts));
    }
    assert_eq!(sub.close_reason(), Some(CloseReason::TooSlow));
    assert!(cancelled.is_cancelled());
    // Closed at once: the queue (headers included) is gone and nothing more is queued.
    publisher.send(key(600));
    let mut out = Vec::new();
    assert_eq!(sub.recv(&mut out, 16).await, Err(CloseReason::TooSlow));
    assert!(out.is_empty());
}

#[test]
fn overflows_spread_beyond_the_window_do_not_close() {
    let (_hub, publisher, mut sub) = slow_setup(HubConfig {
        queue_max_ms: 100,
        slow_max_overflows: 2,
        slow_window_ms: 1_000,
        ..config()
    });
    // One overflow every 2 s of media (> window): never two within the window.
    for gop in 0..5u32 {
        let base = gop * 2_000;
        publisher.send(key(base));
        publisher.send(inter(base + 40));
        publisher.send(inter(base + 150));
        assert!(sub.dropped() > 0);
        assert_eq!(sub.close_reason(), None, "closed after gop {gop}");
    }
    // Two within the window do.
    publisher.send(key(10_000));
    publisher.send(inter(10_150));
    publisher.send(key(10_200));
    publisher.send(inter(10_350));
    assert_eq!(sub.close_reason(), Some(CloseReason::TooSlow));
    assert!(sub.cancelled().is_cancelled());
    assert!(drain(&mut sub).is_empty());
}

#[test]
fn a_slow_subscriber_does_not_affect_a_fast_one() {
    let (hub, publisher, slow) = slow_setup(HubConfig {
        queue_max_ms: 100,
        slow_max_overflows: 2,
        slow_window_ms: 10_000,
        ..config()
    });
    let mut fast = hub.subscribe(KEY);
    assert_eq!(drain(&mut fast), vec![m(0), V_SEQ, A_SEQ, k(0)]);
    let mut expected = Vec::new();
    let mut got = Vec::new();
    for i in 1..=100u32 {
        let ts = i * 20;
        let f = match i {
            _ if i % 25 == 0 => key(ts),
            _ if i % 2 == 0 => audio(ts),
            _ => inter(ts),
        };
        expected.push(sig(&f));
        publisher.send(f);
        got.extend(drain(&mut fast));
    }
    assert_eq!(got, expected);
    assert_eq!(fast.dropped(), 0);
    assert_eq!(fast.close_reason(), None);
    assert!(!fast.cancelled().is_cancelled());
    assert!(slow.dropped() > 0);
    assert_eq!(slow.close_reason(), Some(CloseReason::TooSlow));
}

#[test]
fn second_publisher_is_refused_while_the_first_continues() {
    let hub = Hub::new(config());
    let first = hub.publish(KEY).unwrap();
    let mut sub = hub.subscribe(KEY);
    match hub.publish(KEY) {
        Err(e) => assert_eq!(e, HubError::AlreadyPublishing(KEY.to_string())),
        Ok(_) => panic!("second publish accepted"),
    }
    assert!(!first.kicked().is_cancelled());
    first.send(key(0));
    assert_eq!(drain(&mut sub), vec![k(0)]);
    assert_eq!(sub.close_reason(), None);
    assert!(sub.stream().is_publishing());
    drop(first);
    // Once the first is gone the key is free again.
    assert!(hub.publish(KEY).is_ok());
}

#[tokio::test]
async fn publisher_drop_ends_subscribers_after_their_queue() {
    let hub = Hub::new(config());
    let publisher = hub.publish(KEY).unwrap();
    publisher.send(vseq());
    let mut sub = hub.subscribe(KEY);
    publisher.send(key(0));
    publisher.send(inter(40));
    drop(publisher);
    assert_eq!(sub.close_reason(), Some(CloseReason::Ended));
    assert!(!sub.cancelled().is_cancelled());
    assert!(!sub.stream().is_publishing());
    let mut out = Vec::new();
    assert_eq!(sub.recv(&mut out, 2).await, Ok(0));
    assert_eq!(sub.recv(&mut out, 2).await, Ok(0));
    assert_eq!(sub.recv(&mut out, 2).await, Err(CloseReason::Ended));
    assert_eq!(sigs(&out), vec![V_SEQ, k(0), p(40)]);
    // Caches went with the publisher.
    assert!(sub.stream().snapshot().video_sequence_header.is_none());
}

#[tokio::test]
async fn recv_waits_for_frames() {
    let hub = Hub::new(config());
    let mut sub = hub.subscribe(KEY);
    let publisher = hub.publish(KEY).unwrap();
    let mut out = Vec::new();
    {
        let recv = sub.recv(&mut out, 8);
        tokio::pin!(recv);
        assert!(futures::poll!(recv.as_mut()).is_pending());
        publisher.send(key(0));
        assert_eq!(recv.await, Ok(0));
    }
    assert_eq!(out.len(), 1);
    assert_eq!(sig(&out[0]), k(0));
}

#[test]
fn kick_publisher_cancels_its_token() {
    let hub = Hub::new(config());
    assert!(!hub.kick_publisher(KEY));
    let publisher = hub.publish(KEY).unwrap();
    assert!(!publisher.kicked().is_cancelled());
    assert!(hub.kick_publisher(KEY));
    assert!(publisher.kicked().is_cancelled());
    // A subscriber-only stream has no publisher to kick.
    let _sub = hub.subscribe("live/other");
    assert!(!hub.kick_publisher("live/other"));
}

#[tokio::test]
async fn wait_published_resolves_when_a_publisher_arrives() {
    let hub = Hub::new(config());
    let sub = hub.subscribe(KEY);
    let stream = sub.stream().clone();
    let wait = stream.wait_published();
    tokio::pin!(wait);
    assert!(futures::poll!(wait.as_mut()).is_pending());
    assert!(futures::poll!(wait.as_mut()).is_pending());
    let _publisher = hub.publish(KEY).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), wait)
        .await
        .expect("wait_published did not resolve");
    // Already published: resolves at once.
    assert!(futures::poll!(std::pin::pin!(stream.wait_published())).is_ready());
}

#[test]
fn hub_entries_vanish_when_unused() {
    let hub = Hub::new(config());
    let sub = hub.subscribe(KEY);
    assert!(hub.get(KEY).is_some());
    drop(sub);
    assert!(hub.get(KEY).is_none());

    let publisher = hub.publish(KEY).unwrap();
    assert!(hub.get(KEY).is_some());
    drop(publisher);
    assert!(hub.get(KEY).is_none());

    let publisher = hub.publish(KEY).unwrap();
    let sub = hub.subscribe(KEY);
    drop(publisher);
    assert!(hub.get(KEY).is_some(), "removed while a subscriber remains");
    assert_eq!(hub.get(KEY).unwrap().subscriber_count(), 1);
    drop(sub);
    assert!(hub.get(KEY).is_none());

    let sub = hub.subscribe(KEY);
    let publisher = hub.publish(KEY).unwrap();
    drop(sub);
    assert!(hub.get(KEY).is_some(), "removed while publishing");
    drop(publisher);
    assert!(hub.get(KEY).is_none());
    assert!(hub.streams().is_empty());
}

#[test]
fn payload_bytes_are_shared_not_copied() {
    let hub = Hub::new(config());
    let publisher = hub.publish(KEY).unwrap();
    let kf = key(0);
    let cached_ptr = kf.payload.as_ptr();
    publisher.send(kf);
    // Primed from the cache ...
    let mut primed = hub.subscribe(KEY);
    let mut live = hub.subscribe(KEY);
    live.try_recv(&mut Vec::new(), usize::MAX);
    // ... and live.
    let f = inter(40);
    let live_ptr = f.payload.as_ptr();
    publisher.send(f);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    primed.try_recv(&mut a, usize::MAX);
    live.try_recv(&mut b, usize::MAX);
    assert_eq!(a.len(), 2);
    assert_eq!(b.len(), 1);
    assert_eq!(a[0].payload.as_ptr(), cached_ptr);
    assert_eq!(a[1].payload.as_ptr(), live_ptr);
    assert_eq!(b[0].payload.as_ptr(), live_ptr);
    assert!(Arc::ptr_eq(&a[1], &b[0]));
}

/// Drops the only subscriber of a fresh hub's stream on one thread while `join` runs on
/// another, 2000 times, and hands each hub and `join`'s result to `check`.
fn race_the_last_unsubscribe<T: Send + 'static>(
    join: fn(&Arc<Hub>) -> T,
    check: impl Fn(&Arc<Hub>, T),
) {
    for _ in 0..2_000 {
        let hub = Hub::new(config());
        let old = hub.subscribe(KEY);
        let barrier = Arc::new(Barrier::new(2));
        let dropper = {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                drop(old);
            })
        };
        let joiner = {
            let (hub, barrier) = (hub.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                join(&hub)
            })
        };
        dropper.join().unwrap();
        check(&hub, joiner.join().unwrap());
    }
}

/// A subscribe racing with the last unsubscribe must end up on the stream the hub holds, or a
/// later publisher would feed a different stream and the player would wait forever.
#[test]
fn subscribe_racing_the_last_unsubscribe_stays_reachable() {
    race_the_last_unsubscribe(
        |hub| hub.subscribe(KEY),
        |hub, sub| {
            let held = hub.get(KEY).expect("stream with a subscriber was removed");
            assert!(Arc::ptr_eq(&held, sub.stream()));
        },
    );
}

/// Same for a publisher racing the last unsubscribe: players that come later must see it.
#[test]
fn publish_racing_the_last_unsubscribe_stays_reachable() {
    race_the_last_unsubscribe(
        |hub| hub.publish(KEY).unwrap(),
        |hub, publisher| {
            let held = hub.get(KEY).expect("published stream was removed");
            assert!(Arc::ptr_eq(&held, publisher.stream()));
        },
    );
}

#[tokio::test]
async fn audio_rides_with_the_next_video_frame() {
    let hub = Hub::new(config());
    let publisher = hub.publish("live/wake").expect("publish");
    let mut sub = hub.subscribe("live/wake");
    publisher.send(key(0));
    let mut out = Vec::new();
    sub.recv(&mut out, 64).await.expect("keyframe");
    out.clear();
    // A waiting player is not woken by audio 20 ms after the last wake...
    let waiting = tokio::spawn(async move {
        let mut out = Vec::new();
        sub.recv(&mut out, 64).await.map(|_| sigs(&out))
    });
    tokio::task::yield_now().await;
    publisher.send(audio(20));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "audio alone woke a player of a video stream"
    );
    // ...but the next video frame wakes it, and the audio comes first, in order.
    publisher.send(inter(40));
    let got = tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
        .await
        .expect("woken by video")
        .expect("join")
        .expect("frames");
    assert_eq!(got, vec![a(20), p(40)]);
}

#[tokio::test]
async fn audio_only_streams_wake_players_every_100ms_of_media() {
    let hub = Hub::new(config());
    let publisher = hub.publish("live/radio").expect("publish");
    let mut sub = hub.subscribe("live/radio");
    publisher.send(audio(0));
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(1), sub.recv(&mut out, 64))
        .await
        .expect("the first audio frame wakes")
        .expect("audio");
    let waiting = tokio::spawn(async move {
        let mut out = Vec::new();
        sub.recv(&mut out, 64).await.map(|_| sigs(&out))
    });
    tokio::task::yield_now().await;
    for ts in [23, 46, 69] {
        publisher.send(audio(ts));
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "woken before 100 ms of audio");
    publisher.send(audio(115));
    let got = tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
        .await
        .expect("woken after 100 ms of audio")
        .expect("join")
        .expect("frames");
    assert_eq!(got, vec![a(23), a(46), a(69), a(115)]);
}

/// A direct sink in memory: takes up to `room` bytes (then `WouldBlock`), counts its calls,
/// and uses the payload as the wire form.
#[derive(Default)]
pub(super) struct MemSink {
    got: std::sync::Mutex<Vec<u8>>,
    room: std::sync::atomic::AtomicUsize,
    calls: std::sync::atomic::AtomicUsize,
}

impl MemSink {
    pub(super) fn with_room(room: usize) -> Arc<Self> {
        let s = Self::default();
        s.room.store(room, std::sync::atomic::Ordering::SeqCst);
        Arc::new(s)
    }
    pub(super) fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
    pub(super) fn got(&self) -> Vec<u8> {
        self.got.lock().unwrap().clone()
    }
}

/// The wire form `MemSink` is lent with: the payload alone.
pub(super) fn mem_wire(frame: &MediaFrame) -> [&[u8]; 3] {
    [&frame.payload, &[], &[]]
}

impl super::DirectSink for MemSink {
    fn try_write(&self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        use std::sync::atomic::Ordering::SeqCst;
        self.calls.fetch_add(1, SeqCst);
        let room = self.room.load(SeqCst);
        if room == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let mut got = self.got.lock().unwrap();
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(room - n);
            got.extend_from_slice(&b[..take]);
            n += take;
        }
        self.room.store(room - n, SeqCst);
        Ok(n)
    }
}

fn payloads(frames: &[MediaFrame]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.payload.to_vec()).collect()
}

/// Subscribes, drains the priming, lends `sink` and parks the player in `recv` once, as the
/// play loop does: from then on the fan-out may write directly.
fn direct_setup(sink: Arc<MemSink>) -> (Arc<Hub>, super::Publisher, Subscriber) {
    direct_setup_with(config(), sink)
}

fn direct_setup_with(
    cfg: HubConfig,
    sink: Arc<MemSink>,
) -> (Arc<Hub>, super::Publisher, Subscriber) {
    let hub = Hub::new(cfg);
    let publisher = hub.publish(KEY).unwrap();
    publisher.send(key(0));
    let mut sub = hub.subscribe(KEY);
    assert_eq!(drain(&mut sub), vec![k(0)]);
    sub.set_direct_sink(sink, mem_wire);
    park(&mut sub);
    (hub, publisher, sub)
}

/// Polls `recv` once and asserts that it waits (nothing queued).
pub(super) fn park(sub: &mut Subscriber) {
    let mut out = Vec::new();
    let recv = std::pin::pin!(sub.recv(&mut out, 16));
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(recv.poll(&mut cx).is_pending());
}

#[test]
fn an_idle_player_gets_frames_written_directly_audio_riding_with_video() {
    let sink = MemSink::with_room(usize::MAX);
    let (_hub, publisher, mut sub) = direct_setup(sink.clone());
    let frames = [
        inter(10),
        audio(20),
        audio(30),
        inter(40),
        audio(50),
        inter(80),
    ];
    for f in &frames {
        publisher.send(frame(f.kind, f.timestamp_ms, f.keyframe, false, 16));
    }
    assert_eq!(sink.got(), payloads(&frames));
    // One write per video frame, the audio before it in the same write.
    assert_eq!(sink.calls(), 3);
    assert!(drain(&mut sub).is_empty());
}

#[test]
fn no_direct_write_until_the_player_parks_or_after_it_takes_the_socket_back() {
    let sink = MemSink::with_room(usize::MAX);
    let hub = Hub::new(config());
    let publisher = hub.publish(KEY).unwrap();
    let mut sub = hub.subscribe(KEY);
    sub.set_direct_sink(sink.clone(), mem_wire);
    // Lent but never parked in recv: the player's task may be writing.
    publisher.send(key(0));
    assert_eq!(sink.calls(), 0);
    assert_eq!(drain(&mut sub), vec![k(0)]);
    park(&mut sub);
    publisher.send(inter(40));
    assert_eq!(sink.calls(), 1);
    // try_recv takes the socket back (the player is about to write itself).
    assert!(drain(&mut sub).is_empty());
    publisher.send(inter(80));
    assert_eq!(sink.calls(), 1);
    assert_eq!(drain(&mut sub), vec![p(80)]);
}

#[tokio::test]
async fn a_partial_direct_write_hands_the_rest_to_the_player() {
    let sink = MemSink::with_room(10);
    let (_hub, publisher, mut sub) = direct_setup(sink.clone());
    publisher.send(inter(40)); // 16 bytes: 10 go out directly
    publisher.send(inter(80)); // queued: the player owns the socket now
    assert_eq!(sink.calls(), 1);
    let mut out = Vec::new();
    assert_eq!(sub.recv(&mut out, 16).await, Ok(10));
    assert_eq!(sigs(&out), vec![p(40), p(80)]);
    assert_eq!(sink.got(), inter(40).payload[..10].to_vec());
}

#[test]
fn a_full_socket_queues_and_wakes_the_player() {
    let sink = MemSink::with_room(0);
    let (_hub, publisher, mut sub) = direct_setup(sink.clone());
    publisher.send(inter(40));
    publisher.send(inter(80));
    assert_eq!(sink.calls(), 1, "after WouldBlock the fan-out stops trying");
    assert_eq!(drain(&mut sub), vec![p(40), p(80)]);
}

#[tokio::test]
async fn overflow_keeps_a_frame_a_direct_write_started() {
    let sink = MemSink::with_room(10);
    let cfg = HubConfig {
        queue_max_ms: 100,
        ..config()
    };
    let (_hub, publisher, mut sub) = direct_setup_with(cfg, sink.clone());
    publisher.send(inter(40)); // partially written
    for ts in [80, 120, 160] {
        publisher.send(inter(ts)); // overflows: all but the started frame go
    }
    let mut out = Vec::new();
    assert_eq!(sub.recv(&mut out, 16).await, Ok(10));
    assert_eq!(sigs(&out), vec![p(40)]);
    assert!(sub.dropped() > 0);
}

#[test]
fn a_player_joining_while_audio_rides_gets_it_once_in_order() {
    let hub = Hub::new(config());
    let publisher = hub.publish(KEY).unwrap();
    let mut early = hub.subscribe(KEY);
    publisher.send(key(0));
    publisher.send(audio(20));
    publisher.send(audio(40));
    // The audio waits for the next video frame; it is in the GOP cache already.
    assert_eq!(drain(&mut early), vec![k(0)]);
    let mut late = hub.subscribe(KEY);
    assert_eq!(drain(&mut late), vec![k(0)]);
    publisher.send(inter(40));
    assert_eq!(drain(&mut early), vec![a(20), a(40), p(40)]);
    assert_eq!(drain(&mut late), vec![a(20), a(40), p(40)]);
    // And later joiners get it from the cache.
    let mut later = hub.subscribe(KEY);
    assert_eq!(drain(&mut later), vec![k(0), a(20), a(40), p(40)]);
}

#[test]
fn audio_sequence_headers_never_wait_to_ride() {
    let hub = Hub::new(config());
    let publisher = hub.publish(KEY).unwrap();
    let mut early = hub.subscribe(KEY);
    publisher.send(key(0));
    publisher.send(aseq());
    assert_eq!(drain(&mut early), vec![k(0), A_SEQ]);
    // A player joining now is primed with it once, not again with the next frame.
    let mut late = hub.subscribe(KEY);
    publisher.send(inter(40));
    assert_eq!(drain(&mut late), vec![A_SEQ, k(0), p(40)]);
}

#[test]
fn riding_audio_is_bounded_even_if_its_clock_stands_still() {
    let hub = Hub::new(config());
    let publisher = hub.publish(KEY).unwrap();
    let mut sub = hub.subscribe(KEY);
    publisher.send(audio(0));
    assert_eq!(drain(&mut sub), vec![a(0)]);
    for _ in 0..super::subscriber::BATCH_MAX - 1 {
        publisher.send(audio(0));
    }
    assert!(drain(&mut sub).is_empty());
    publisher.send(audio(0));
    assert_eq!(drain(&mut sub), vec![a(0); super::subscriber::BATCH_MAX]);
}

#[tokio::test]
async fn the_last_riding_audio_goes_out_before_the_end() {
    let hub = Hub::new(config());
    let publisher = hub.publish(KEY).unwrap();
    let mut sub = hub.subscribe(KEY);
    publisher.send(key(0));
    publisher.send(audio(20));
    drop(publisher);
    let mut out = Vec::new();
    assert_eq!(sub.recv(&mut out, 16).await, Ok(0));
    assert_eq!(sub.recv(&mut out, 16).await, Err(CloseReason::Ended));
    assert_eq!(sigs(&out), vec![k(0), a(20)]);
}

#[test]
fn big_frames_a_millisecond_apart_overflow_the_byte_bound_and_close_the_player() {
    // A publisher controls timestamps: 1 ms of media per frame is no bound at all.
    let (_hub, publisher, sub) = slow_setup(HubConfig {
        queue_max_bytes: 10_000,
        slow_max_overflows: 3,
        ..config()
    });
    let mut ts = 1;
    for _ in 0..4 {
        publisher.send(frame(FrameKind::Video, ts, false, false, 3000));
        ts += 1;
        assert!(sub.queued_bytes() <= 10_000, "{}", sub.queued_bytes());
    }
    assert!(sub.dropped() > 0);
    assert_eq!(sub.close_reason(), None);
    for _ in 0..20 {
        publisher.send(frame(FrameKind::Video, ts, true, false, 3000));
        ts += 1;
        assert!(sub.queued_bytes() <= 10_000, "{}", sub.queued_bytes());
    }
    assert_eq!(sub.close_reason(), Some(super::CloseReason::TooSlow));
    assert_eq!(sub.queued_bytes(), 0);
}

#[test]
fn a_sequence_header_flood_is_counted_and_compacted() {
    // Headers are never dropped for a slow player, but only the latest of each kind matters
    // once the media between them is gone.
    let (_hub, publisher, mut sub) = slow_setup(HubConfig {
        queue_max_bytes: 10_000,
        slow_max_overflows: u32::MAX,
        ..config()
    });
    for i in 0..1000 {
        publisher.send(frame(FrameKind::Video, 0, true, true, 3000 + i));
        publisher.send(frame(FrameKind::Data, 0, false, false, 3000));
        assert!(sub.queued_bytes() <= 10_000, "{}", sub.queued_bytes());
    }
    assert_eq!(sub.close_reason(), None);
    let mut out = Vec::new();
    sub.try_recv(&mut out, usize::MAX);
    assert!(out.len() <= 4, "{}", out.len());
    // The latest video sequence header survived.
    assert!(
        out.iter()
            .any(|f| f.sequence_header && f.payload.len() == 3999)
    );
    // With the default overflow policy the flooding stream closes the player.
    let (_hub, publisher, sub) = slow_setup(HubConfig {
        queue_max_bytes: 10_000,
        slow_max_overflows: 3,
        ..config()
    });
    for _ in 0..100 {
        publisher.send(frame(FrameKind::Audio, 0, false, true, 3000));
    }
    assert_eq!(sub.close_reason(), Some(super::CloseReason::TooSlow));
}

#[test]
fn headers_alone_beyond_the_byte_bound_close_the_player() {
    let (_hub, publisher, sub) = slow_setup(HubConfig {
        queue_max_bytes: 10_000,
        slow_max_overflows: u32::MAX,
        ..config()
    });
    publisher.send(frame(FrameKind::Video, 0, true, true, 6000));
    publisher.send(frame(FrameKind::Data, 0, false, false, 6000));
    assert_eq!(sub.close_reason(), Some(super::CloseReason::TooSlow));
}

#[tokio::test]
async fn overflow_on_a_keyframe_a_direct_write_started_does_not_wrap_the_drop_count() {
    // The keyframe that overflows is pinned by a partial direct write: nothing was dropped,
    // so there is nothing to take back (this used to be `0 - 1`).
    let sink = MemSink::with_room(10);
    let cfg = HubConfig {
        queue_max_bytes: 10_000,
        slow_max_overflows: u32::MAX,
        ..config()
    };
    let (_hub, publisher, sub) = direct_setup_with(cfg, sink.clone());
    publisher.send(frame(FrameKind::Video, 40, true, false, 20_000));
    assert!(sub.dropped() < 1000, "{}", sub.dropped());
    assert_eq!(sub.close_reason(), Some(super::CloseReason::TooSlow));
}

#[test]
fn a_player_takes_at_most_about_a_megabyte_at_once() {
    let (_hub, publisher, mut sub) = slow_setup(config());
    assert_eq!(drain(&mut sub).len(), 4);
    for ts in 1..=8 {
        publisher.send(frame(FrameKind::Video, ts, false, false, 600_000));
    }
    let mut out = Vec::new();
    sub.try_recv(&mut out, 16);
    assert_eq!(out.len(), 2);
    assert_eq!(sub.queued_bytes(), 6 * 600_000);
}

/// The hub books its GOP caches' payload bytes across streams, and their high-water mark:
/// a keyframe starts a new GOP, headers are not GOP bytes, an ended stream holds none.
#[test]
fn gop_cache_bytes_are_summed_over_streams_with_their_peak() {
    let hub = Hub::new(config());
    let a = hub.publish("live/a").unwrap();
    let b = hub.publish("live/b").unwrap();
    a.send(vseq());
    a.send(frame(FrameKind::Video, 0, true, false, 1000));
    a.send(frame(FrameKind::Video, 40, false, false, 200));
    b.send(frame(FrameKind::Video, 0, true, false, 3000));
    assert_eq!(hub.gop_cache_bytes(), (4200, 4200));
    // a's next GOP starts smaller: the total falls, the peak stays.
    a.send(frame(FrameKind::Video, 80, true, false, 500));
    assert_eq!(hub.gop_cache_bytes(), (3500, 4200));
    drop(b);
    assert_eq!(hub.gop_cache_bytes(), (500, 4200));
    drop(a);
    assert_eq!(hub.gop_cache_bytes(), (0, 4200));
}
