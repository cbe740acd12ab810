//! Tests of the sharded fan-out (`shard`): on a current-thread runtime the shard tasks run only
//! when a test yields, so what is in flight between the publisher and the shards is exact.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::tests::{
    KEY, MemSink, Sig, V_SEQ, a, audio, config, drain, frame, inter, k, key, mem_wire, p, park,
    sig, vseq,
};
use super::{CloseReason, FrameKind, Hub, HubConfig, Stream, Subscriber};

/// Shards from the fourth subscriber on, three of them.
fn sharded() -> HubConfig {
    HubConfig {
        fanout_min_subscribers: 4,
        fanout_shards: 3,
        ..config()
    }
}

/// Lets the shard tasks run until they have handled everything handed to them.
async fn settle(stream: &Stream) {
    for _ in 0..10_000 {
        tokio::task::yield_now().await;
        if stream.fanout_shards().iter().all(|s| s.pending == 0) {
            return;
        }
    }
    panic!("shards never settled: {:?}", stream.fanout_shards());
}

/// The frame published `i`-th: a keyframe every 20, audio on odd indices, video on even.
fn nth(i: u32) -> super::MediaFrame {
    let ts = i * 20;
    match i {
        _ if i.is_multiple_of(20) => key(ts),
        _ if i % 2 == 1 => audio(ts),
        _ => inter(ts),
    }
}

#[tokio::test]
async fn a_hot_stream_is_fanned_out_by_its_shards_every_frame_in_order() {
    let hub = Hub::new(sharded());
    let publisher = hub.publish(KEY).unwrap();
    publisher.send(vseq());
    publisher.send(key(0));
    let mut subs: Vec<Subscriber> = (0..3).map(|_| hub.subscribe(KEY)).collect();
    let stream = subs[0].stream().clone();
    // Three subscribers: inline.
    assert!(stream.fanout_shards().is_empty());
    subs.extend((0..7).map(|_| hub.subscribe(KEY)));
    // Ten: the inline ones moved to the shards, which are balanced.
    let shards = stream.fanout_shards();
    assert_eq!(shards.len(), 3);
    assert_eq!(
        shards.iter().map(|s| s.members).collect::<Vec<_>>(),
        [4, 3, 3]
    );
    assert_eq!(stream.subscriber_count(), 10);
    assert_eq!(stream.snapshot().subscribers, 10);
    let mut got: Vec<Vec<Sig>> = subs.iter_mut().map(drain).collect();
    let mut expected = vec![V_SEQ, k(0)];
    for i in 1..=100 {
        let f = nth(i);
        expected.push(sig(&f));
        publisher.send(f);
        // Nothing goes out until the shards run: the publisher's thread only hands off.
        if i.is_multiple_of(7) {
            settle(&stream).await;
            for (g, sub) in got.iter_mut().zip(&mut subs) {
                g.extend(drain(sub));
            }
        }
    }
    settle(&stream).await;
    for (g, sub) in got.iter_mut().zip(&mut subs) {
        g.extend(drain(sub));
        assert_eq!(*g, expected);
        assert_eq!(sub.dropped(), 0);
    }
    // Every shard did its part (50 video frames, audio riding along, 5 audio-only wakes).
    for s in stream.fanout_shards() {
        assert!(s.delivered >= 50, "{s:?}");
    }
}

#[test]
fn outside_a_runtime_or_below_the_threshold_the_publisher_fans_out_inline() {
    let hub = Hub::new(sharded());
    let publisher = hub.publish(KEY).unwrap();
    let mut subs: Vec<Subscriber> = (0..10).map(|_| hub.subscribe(KEY)).collect();
    assert!(subs[0].stream().fanout_shards().is_empty());
    publisher.send(key(0));
    for sub in &mut subs {
        assert_eq!(drain(sub), vec![k(0)]);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let hub = Hub::new(HubConfig {
            fanout_min_subscribers: 20,
            ..sharded()
        });
        let _subs: Vec<Subscriber> = (0..19).map(|_| hub.subscribe(KEY)).collect();
        assert!(hub.get(KEY).unwrap().fanout_shards().is_empty());
        // One shard is no shard.
        let hub = Hub::new(HubConfig {
            fanout_shards: 1,
            ..sharded()
        });
        let _subs: Vec<Subscriber> = (0..10).map(|_| hub.subscribe(KEY)).collect();
        assert!(hub.get(KEY).unwrap().fanout_shards().is_empty());
        // 0 shards = one per worker: a current-thread runtime has one.
        let hub = Hub::new(HubConfig {
            fanout_shards: 0,
            ..sharded()
        });
        let _subs: Vec<Subscriber> = (0..10).map(|_| hub.subscribe(KEY)).collect();
        assert!(hub.get(KEY).unwrap().fanout_shards().is_empty());
    });
}

/// A subscriber and the frames it must get: the GOP it was primed with, then every frame.
struct Watcher {
    sub: Subscriber,
    got: Vec<Sig>,
    expected: Vec<Sig>,
}

#[tokio::test]
async fn subscribing_and_unsubscribing_while_batches_are_in_flight_is_consistent() {
    let hub = Hub::new(sharded());
    let publisher = hub.publish(KEY).unwrap();
    publisher.send(key(0));
    let mut gop: Vec<Sig> = vec![k(0)];
    let mut watchers: Vec<Watcher> = Vec::new();
    let stream = hub.get(KEY).unwrap();
    for i in 1..=400u32 {
        let f = nth(i);
        if f.keyframe {
            gop.clear();
        }
        gop.push(sig(&f));
        let s = sig(&f);
        publisher.send(f);
        for w in &mut watchers {
            w.expected.push(s);
        }
        // Join with batches in flight to the shards: primed with the GOP, then exactly what
        // follows (riding audio included once).
        if i.is_multiple_of(3) {
            let sub = hub.subscribe(KEY);
            watchers.push(Watcher {
                sub,
                got: Vec::new(),
                expected: gop.clone(),
            });
        }
        // Leave with batches in flight.
        if i.is_multiple_of(5) && watchers.len() > 4 {
            let w = watchers.remove(i as usize % watchers.len());
            drop(w.sub);
        }
        if i.is_multiple_of(11) {
            settle(&stream).await;
        }
        if i.is_multiple_of(13) {
            for w in &mut watchers {
                w.got.extend(drain(&mut w.sub));
            }
        }
        let shards = stream.fanout_shards();
        assert_eq!(
            shards.iter().map(|s| s.members).sum::<usize>(),
            if watchers.len() >= 4 {
                watchers.len()
            } else {
                0
            }
        );
        assert_eq!(stream.subscriber_count(), watchers.len());
    }
    // Whatever is still in flight at the end: audio riding waits for the next video frame.
    publisher.send(inter(401 * 20));
    for w in &mut watchers {
        w.expected.push(p(401 * 20));
    }
    settle(&stream).await;
    assert!(watchers.len() > 40);
    for w in &mut watchers {
        w.got.extend(drain(&mut w.sub));
        // The GOP a watcher was primed with holds the riding audio: it may come from the
        // cache or ride along, never both.
        assert_eq!(w.got, w.expected, "watcher {}", w.sub.id());
    }
    assert!(stream.fanout_shards().iter().all(|s| s.delivered > 100));
    // The last one gone, the shards go; a new subscriber is served inline again.
    watchers.clear();
    assert!(stream.fanout_shards().is_empty());
    let mut again = hub.subscribe(KEY);
    assert!(stream.fanout_shards().is_empty());
    publisher.send(inter(402 * 20));
    assert_eq!(drain(&mut again).last(), Some(&p(402 * 20)));
}

#[tokio::test]
async fn a_shard_that_falls_behind_is_skipped_and_its_players_resume_at_a_keyframe() {
    let hub = Hub::new(HubConfig {
        queue_max_ms: u32::MAX,
        ..sharded()
    });
    let publisher = hub.publish(KEY).unwrap();
    publisher.send(vseq());
    publisher.send(key(0));
    let mut subs: Vec<Subscriber> = (0..6).map(|_| hub.subscribe(KEY)).collect();
    let stream = subs[0].stream().clone();
    // The shards never run meanwhile: the publisher goes on regardless.
    for i in 1..=400u32 {
        publisher.send(frame(
            FrameKind::Video,
            i * 40,
            i.is_multiple_of(50),
            false,
            16,
        ));
        if i == 300 {
            publisher.send(frame(FrameKind::Video, 0, true, true, 99));
        }
    }
    let shards = stream.fanout_shards();
    assert!(shards.iter().all(|s| s.pending <= 260), "{shards:?}");
    settle(&stream).await;
    // Caught up: the next batch brings the skipped header; video waits for a keyframe.
    publisher.send(inter(401 * 40));
    publisher.send(key(402 * 40));
    publisher.send(inter(403 * 40));
    settle(&stream).await;
    let mut expected = vec![V_SEQ, k(0)];
    expected.extend((1..=256u32).map(|i| (FrameKind::Video, i * 40, i.is_multiple_of(50), false)));
    expected.extend([V_SEQ, k(402 * 40), p(403 * 40)]);
    for sub in &mut subs {
        assert_eq!(drain(sub), expected);
        // 144 media frames and the header skipped, then one inter frame before the keyframe.
        assert_eq!(sub.dropped(), 146);
        assert_eq!(sub.close_reason(), None);
    }
    assert_eq!(stream.stats.frames_dropped.load(Ordering::Relaxed), 6 * 146);
}

#[tokio::test]
async fn a_slow_player_in_a_shard_is_dropped_and_closed_without_slowing_the_others() {
    let hub = Hub::new(HubConfig {
        queue_max_ms: 100,
        slow_max_overflows: 2,
        slow_window_ms: 10_000,
        ..sharded()
    });
    let publisher = hub.publish(KEY).unwrap();
    publisher.send(key(0));
    let slow = hub.subscribe(KEY);
    let mut fast: Vec<Subscriber> = (0..8).map(|_| hub.subscribe(KEY)).collect();
    let stream = slow.stream().clone();
    assert_eq!(stream.fanout_shards().len(), 3);
    let mut got: Vec<Vec<Sig>> = fast.iter_mut().map(drain).collect();
    let mut expected = vec![k(0)];
    for i in 1..=100u32 {
        let f = nth(i);
        expected.push(sig(&f));
        publisher.send(f);
        settle(&stream).await;
        for (g, sub) in got.iter_mut().zip(&mut fast) {
            g.extend(drain(sub));
        }
    }
    for g in &got {
        assert_eq!(*g, expected);
    }
    assert_eq!(slow.close_reason(), Some(CloseReason::TooSlow));
    assert!(slow.dropped() > 0);
    // Counted by the shard, on the stream.
    assert_eq!(
        stream.stats.frames_dropped.load(Ordering::Relaxed),
        slow.dropped()
    );
}

#[tokio::test]
async fn with_shards_the_end_comes_after_the_frames_in_flight_and_the_last_riders() {
    let hub = Hub::new(sharded());
    let publisher = hub.publish(KEY).unwrap();
    let mut subs: Vec<Subscriber> = (0..5).map(|_| hub.subscribe(KEY)).collect();
    let stream = subs[0].stream().clone();
    assert_eq!(stream.fanout_shards().len(), 3);
    publisher.send(key(0));
    publisher.send(inter(40));
    publisher.send(audio(50));
    drop(publisher);
    // Still in flight to the shards, the end with it.
    assert_eq!(subs[0].close_reason(), None);
    settle(&stream).await;
    for sub in &mut subs {
        let mut out = Vec::new();
        let end = loop {
            if let Err(reason) = sub.recv(&mut out, 16).await {
                break reason;
            }
        };
        assert_eq!(end, CloseReason::Ended);
        assert_eq!(super::tests::sigs(&out), vec![k(0), p(40), a(50)]);
    }
    // Shutdown likewise, after what is in flight.
    let publisher = hub.publish(KEY).unwrap();
    let mut subs: Vec<Subscriber> = (0..5).map(|_| hub.subscribe(KEY)).collect();
    publisher.send(key(0));
    hub.close_all(CloseReason::Shutdown);
    settle(&stream).await;
    for sub in &mut subs {
        assert_eq!(drain(sub), vec![k(0)]);
        assert_eq!(sub.close_reason(), Some(CloseReason::Shutdown));
    }
}

#[tokio::test]
async fn a_shard_writes_directly_to_idle_players_and_never_after_they_leave() {
    let hub = Hub::new(sharded());
    let publisher = hub.publish(KEY).unwrap();
    publisher.send(key(0));
    let sinks: Vec<Arc<MemSink>> = (0..6).map(|_| MemSink::with_room(usize::MAX)).collect();
    let mut subs: Vec<Subscriber> = Vec::new();
    for sink in &sinks {
        let mut sub = hub.subscribe(KEY);
        assert_eq!(drain(&mut sub), vec![k(0)]);
        sub.set_direct_sink(sink.clone(), mem_wire);
        park(&mut sub);
        subs.push(sub);
    }
    let stream = subs[0].stream().clone();
    assert_eq!(stream.fanout_shards().len(), 3);
    publisher.send(inter(40));
    assert_eq!(
        sinks[0].calls(),
        0,
        "written by the shards, not the publisher"
    );
    settle(&stream).await;
    for sink in &sinks {
        assert_eq!(sink.got(), inter(40).payload.to_vec());
    }
    // A player gone with a batch in flight: its socket is not written to again.
    publisher.send(inter(80));
    drop(subs.remove(0));
    settle(&stream).await;
    assert_eq!(sinks[0].calls(), 1);
    assert_eq!(sinks[1].calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_real_multi_thread_runtime_every_player_gets_every_frame_in_order() {
    // Shards on both workers, players joining and leaving from other tasks meanwhile: whatever
    // the interleaving, each player gets its priming and then every later frame, in order.
    let hub = Hub::new(HubConfig {
        fanout_min_subscribers: 8,
        fanout_shards: 0,
        ..config()
    });
    let publisher = hub.publish(KEY).unwrap();
    publisher.send(key(0));
    let mut stay: Vec<Subscriber> = (0..32).map(|_| hub.subscribe(KEY)).collect();
    let stream = stay[0].stream().clone();
    assert_eq!(stream.fanout_shards().len(), 2, "one shard per worker");
    let churn = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                let sub = hub.subscribe(KEY);
                tokio::task::yield_now().await;
                drop(sub);
            }
        })
    };
    let mut got: Vec<Vec<Sig>> = stay.iter_mut().map(drain).collect();
    let mut expected = vec![k(0)];
    for i in 1..=400 {
        let f = nth(i);
        expected.push(sig(&f));
        publisher.send(f);
        if i.is_multiple_of(50) {
            tokio::task::yield_now().await;
        }
    }
    churn.await.unwrap();
    for _ in 0..1000 {
        if stream.fanout_shards().iter().all(|s| s.pending == 0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    for (g, sub) in got.iter_mut().zip(&mut stay) {
        g.extend(drain(sub));
        assert_eq!(*g, expected);
    }
    assert_eq!(stream.subscriber_count(), 32);
    assert!(stream.fanout_shards().iter().all(|s| s.delivered > 0));
}
