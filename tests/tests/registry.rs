//! Integration tests of `EtcdRegistry` against a real etcd: claims, takeover, release, watch,
//! lease expiry and restore, and an etcd outage. Every wait polls a condition with a deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{
    Claim, EtcdConfig, EtcdRegistry, NodeRecord, Registry, Role, StreamEvent, StreamRecord,
};
use harness::etcd::Etcd;
use tokio::sync::mpsc;

const TTL: Duration = Duration::from_secs(2);

fn config(etcd: &Etcd, ttl: Duration) -> EtcdConfig {
    EtcdConfig {
        endpoints: vec![etcd.endpoint.clone()],
        prefix: "/livecdn-test/v1".to_string(),
        lease_ttl: ttl,
        op_timeout: Duration::from_secs(1),
    }
}

async fn connect(etcd: &Etcd, ttl: Duration) -> Arc<EtcdRegistry> {
    EtcdRegistry::connect(config(etcd, ttl))
        .await
        .expect("connect to etcd")
}

fn node(id: &str) -> NodeRecord {
    NodeRecord {
        node_id: id.into(),
        role: Role::Origin as i32,
        region: "test".into(),
        rtmp_address: format!("{id}:1935"),
        ..Default::default()
    }
}

fn rec(owner: &str) -> StreamRecord {
    StreamRecord {
        app: "live".into(),
        name: "cam".into(),
        origin_node_id: owner.into(),
        origin_rtmp_address: format!("{owner}:1935"),
        started_at: 1_700_000_000_000,
        codecs: vec!["h264".into(), "aac".into()],
        ..Default::default()
    }
}

fn start_etcd() -> Etcd {
    // RUST_LOG=common=debug shows the registry's view of a failing test.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
    tokio::task::block_in_place(Etcd::start)
}

/// Polls `cond` every 50 ms until it holds; panics after `deadline`. Returns the time taken.
async fn eventually<F, Fut>(what: &str, deadline: Duration, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn next_event(rx: &mut mpsc::Receiver<StreamEvent>, deadline: Duration) -> StreamEvent {
    tokio::time::timeout(deadline, rx.recv())
        .await
        .expect("watch event within the deadline")
        .expect("watch still open")
}

async fn has_node(r: &EtcdRegistry, id: &str) -> bool {
    r.nodes()
        .await
        .is_ok_and(|ns| ns.iter().any(|n| n.node_id == id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_refuse_takeover_release_lookup() {
    let etcd = start_etcd();
    let a = connect(&etcd, TTL).await;
    let b = connect(&etcd, TTL).await;
    a.register(node("a")).await.expect("register a");
    b.register(node("b")).await.expect("register b");
    let mut ids: Vec<String> = a
        .nodes()
        .await
        .expect("nodes")
        .into_iter()
        .map(|n| n.node_id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);

    let mut lost_a = a.lost_claims();
    let mut lost_b = b.lost_claims();
    assert_eq!(a.claim(rec("a"), false).await, Ok(Claim::Owned));
    // Idempotent for the owner.
    assert_eq!(a.claim(rec("a"), false).await, Ok(Claim::Owned));
    assert_eq!(b.claim(rec("b"), false).await, Ok(Claim::OwnedBy(rec("a"))));
    assert_eq!(b.lookup("live", "cam").await, Ok(Some(rec("a"))));
    assert_eq!(b.lookup("live", "nope").await, Ok(None));

    // b is not the owner: its release leaves a's claim alone.
    b.release("live", "cam").await.expect("release by b");
    assert_eq!(b.lookup("live", "cam").await, Ok(Some(rec("a"))));

    let start = Instant::now();
    assert_eq!(b.claim(rec("b"), true).await, Ok(Claim::Owned));
    let lost = tokio::time::timeout(Duration::from_secs(3), lost_a.recv())
        .await
        .expect("a learns it lost the claim")
        .expect("lost_claims open");
    assert_eq!(lost, "live/cam");
    eprintln!("takeover noticed by the old owner in {:?}", start.elapsed());
    assert!(lost_b.try_recv().is_err());
    assert_eq!(a.lookup("live", "cam").await, Ok(Some(rec("b"))));

    // a lost it: its release is a no-op; b's release deletes.
    a.release("live", "cam").await.expect("release by a");
    assert_eq!(a.lookup("live", "cam").await, Ok(Some(rec("b"))));
    b.release("live", "cam").await.expect("release by b");
    assert_eq!(a.lookup("live", "cam").await, Ok(None));
    assert_eq!(a.streams().await, Ok(vec![]));

    // Freed: a can claim it again.
    assert_eq!(a.claim(rec("a"), false).await, Ok(Claim::Owned));
    assert_eq!(a.streams().await, Ok(vec![rec("a")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_put_deleted_put_in_order() {
    let etcd = start_etcd();
    let a = connect(&etcd, TTL).await;
    let b = connect(&etcd, TTL).await;
    let edge = connect(&etcd, TTL).await;
    let d = Duration::from_secs(3);

    let mut w = edge.watch("live", "cam");
    assert_eq!(next_event(&mut w, d).await, StreamEvent::Deleted);
    a.claim(rec("a"), false).await.expect("claim a");
    assert_eq!(
        next_event(&mut w, d).await,
        StreamEvent::Put(rec("a").into())
    );
    a.release("live", "cam").await.expect("release a");
    assert_eq!(next_event(&mut w, d).await, StreamEvent::Deleted);
    b.claim(rec("b"), false).await.expect("claim b");
    assert_eq!(
        next_event(&mut w, d).await,
        StreamEvent::Put(rec("b").into())
    );

    // A watch started now begins with the current state.
    let mut late = edge.watch("live", "cam");
    assert_eq!(
        next_event(&mut late, d).await,
        StreamEvent::Put(rec("b").into())
    );

    // Dropping the registry ends its watches.
    drop(edge);
    let end = tokio::time::timeout(d, w.recv()).await.expect("watch ends");
    assert_eq!(end, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_registry_loses_its_keys_within_ttl() {
    let etcd = start_etcd();
    let ttl = Duration::from_secs(1);
    let a = connect(&etcd, ttl).await;
    let observer = connect(&etcd, TTL).await;
    a.register(node("a")).await.expect("register");
    assert_eq!(a.claim(rec("a"), false).await, Ok(Claim::Owned));

    // The keys outlive several keep-alive periods while the registry lives.
    let lived = Instant::now();
    while lived.elapsed() < ttl * 2 {
        assert_eq!(observer.lookup("live", "cam").await, Ok(Some(rec("a"))));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Like a crash: no revoke, the keep-alive just stops.
    drop(a);
    let took = eventually(
        "a's keys to expire",
        ttl + Duration::from_secs(2),
        || async {
            observer.lookup("live", "cam").await == Ok(None) && !has_node(&observer, "a").await
        },
    )
    .await;
    eprintln!("keys of a dropped registry gone after {took:?} (ttl {ttl:?})");
    assert_eq!(
        observer.claim(rec("b"), false).await,
        Ok(Claim::Owned),
        "the stream can be claimed elsewhere"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_removes_keys_at_once() {
    let etcd = start_etcd();
    let a = connect(&etcd, Duration::from_secs(30)).await;
    let observer = connect(&etcd, TTL).await;
    a.register(node("a")).await.expect("register");
    a.claim(rec("a"), false).await.expect("claim");
    a.close().await.expect("close");
    assert_eq!(observer.lookup("live", "cam").await, Ok(None));
    assert!(!has_node(&observer, "a").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_is_replaced_and_keys_restored() {
    let etcd = start_etcd();
    let a = connect(&etcd, TTL).await;
    let observer = connect(&etcd, TTL).await;
    a.register(node("a")).await.expect("register");
    a.claim(rec("a"), false).await.expect("claim");
    let mut lost = a.lost_claims();

    // Expire the lease behind the registry's back, as etcd does after a long partition.
    let old = a.lease_id();
    let mut direct = etcd_client::Client::connect([etcd.endpoint.as_str()], None)
        .await
        .expect("direct client");
    direct.lease_revoke(old).await.expect("revoke");
    assert_eq!(observer.lookup("live", "cam").await, Ok(None));

    let took = eventually(
        "keys restored on a new lease",
        Duration::from_secs(4),
        || async {
            a.lease_id() != old
                && observer.lookup("live", "cam").await == Ok(Some(rec("a")))
                && has_node(&observer, "a").await
        },
    )
    .await;
    eprintln!("keys restored {took:?} after the lease was revoked");
    let new = a.lease_id();
    for key in [
        "/livecdn-test/v1/nodes/a",
        "/livecdn-test/v1/streams/live/cam",
    ] {
        let resp = direct.get(key, None).await.expect("get");
        let kv = resp.kvs().first().expect("key present");
        assert_eq!(kv.lease(), new, "{key} is bound to the new lease");
    }
    let ttl = direct
        .lease_time_to_live(new, None)
        .await
        .expect("time to live");
    assert!(ttl.ttl() > 0, "the new lease is alive");
    assert!(lost.try_recv().is_err(), "nothing was lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_then_keys_and_watch_come_back() {
    let mut etcd = start_etcd();
    let a = connect(&etcd, TTL).await;
    let edge = connect(&etcd, TTL).await;
    a.register(node("a")).await.expect("register");
    a.claim(rec("a"), false).await.expect("claim");
    let mut lost = a.lost_claims();
    let mut w = edge.watch("live", "cam");
    let d = Duration::from_secs(3);
    assert_eq!(
        next_event(&mut w, d).await,
        StreamEvent::Put(rec("a").into())
    );

    tokio::task::block_in_place(|| etcd.stop());
    let outage = Instant::now();
    // Calls fail within their bound instead of hanging.
    let t = Instant::now();
    assert!(edge.lookup("live", "cam").await.is_err());
    let bounded = t.elapsed();
    assert!(bounded < Duration::from_secs(2), "lookup took {bounded:?}");
    eprintln!("lookup during the outage failed after {bounded:?}");
    // Longer than the lease TTL: etcd being away must not lose our registrations.
    while outage.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::task::block_in_place(|| etcd.restart());
    let back = Instant::now();

    let took = eventually(
        "node and stream keys after restart",
        Duration::from_secs(10),
        || async {
            edge.lookup("live", "cam").await == Ok(Some(rec("a"))) && has_node(&edge, "a").await
        },
    )
    .await;
    eprintln!("keys readable {took:?} after etcd came back");

    // The watch is re-established and re-sends the current state.
    let event = next_event(&mut w, Duration::from_secs(10)).await;
    assert_eq!(event, StreamEvent::Put(rec("a").into()));
    eprintln!(
        "watch re-sent the state {:?} after etcd came back",
        back.elapsed()
    );

    // The keys stay for well over a TTL: keep-alives flow again on the reconnected client.
    let kept = Instant::now();
    while kept.elapsed() < TTL * 2 {
        assert_eq!(edge.lookup("live", "cam").await, Ok(Some(rec("a"))));
        assert!(has_node(&edge, "a").await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(lost.try_recv().is_err(), "nothing was lost");

    // The watch still follows changes after the outage.
    a.release("live", "cam").await.expect("release");
    loop {
        match next_event(&mut w, d).await {
            StreamEvent::Deleted => break,
            StreamEvent::Put(r) => assert_eq!(*r, rec("a")),
        }
    }
}

/// A TCP proxy that can cut every connection and refuse new ones: a network partition between
/// one registry and etcd while etcd itself stays up.
struct Partition {
    endpoint: String,
    open: tokio::sync::watch::Sender<bool>,
}

impl Partition {
    async fn start(upstream: &str) -> Partition {
        let upstream: std::net::SocketAddr = upstream
            .trim_start_matches("http://")
            .parse()
            .expect("upstream addr");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy addr"));
        let (open, _) = tokio::sync::watch::channel(true);
        let gate = open.clone();
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let mut rx = gate.subscribe();
                if !*rx.borrow() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = rx.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Partition { endpoint, open }
    }

    fn cut(&self) {
        self.open.send_replace(false);
    }

    fn heal(&self) {
        self.open.send_replace(true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_longer_than_ttl_restores_node_and_reports_lost_claim() {
    let etcd = start_etcd();
    let proxy = Partition::start(&etcd.endpoint).await;
    let ttl = Duration::from_secs(1);
    let a = EtcdRegistry::connect(EtcdConfig {
        endpoints: vec![proxy.endpoint.clone()],
        ..config(&etcd, ttl)
    })
    .await
    .expect("connect through the proxy");
    let b = connect(&etcd, TTL).await;
    a.register(node("a")).await.expect("register");
    assert_eq!(a.claim(rec("a"), false).await, Ok(Claim::Owned));
    let mut lost = a.lost_claims();
    let old = a.lease_id();

    proxy.cut();
    let cut = Instant::now();
    // a's lease expires in etcd; b claims the freed stream.
    eventually(
        "b to win the stream",
        ttl + Duration::from_secs(3),
        || async { b.claim(rec("b"), false).await == Ok(Claim::Owned) },
    )
    .await;
    eprintln!("a's lease expired, b claimed after {:?}", cut.elapsed());
    assert!(!has_node(&b, "a").await);

    proxy.heal();
    let healed = Instant::now();
    let key = tokio::time::timeout(Duration::from_secs(5), lost.recv())
        .await
        .expect("a reports the lost claim")
        .expect("lost_claims open");
    assert_eq!(key, "live/cam");
    eprintln!(
        "lost claim reported {:?} after the partition healed",
        healed.elapsed()
    );
    eventually(
        "a's node record restored on a new lease",
        Duration::from_secs(5),
        || async { a.lease_id() != old && has_node(&b, "a").await },
    )
    .await;
    assert_eq!(b.lookup("live", "cam").await, Ok(Some(rec("b"))));
    // a no longer holds the claim: its release must not delete b's stream.
    a.release("live", "cam").await.expect("release");
    assert_eq!(b.lookup("live", "cam").await, Ok(Some(rec("b"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_view_keeps_its_state_through_a_partition_and_resyncs() {
    let etcd = start_etcd();
    let proxy = Partition::start(&etcd.endpoint).await;
    let a = connect(&etcd, TTL).await;
    let edge = EtcdRegistry::connect(EtcdConfig {
        endpoints: vec![proxy.endpoint.clone()],
        ..config(&etcd, TTL)
    })
    .await
    .expect("connect through the proxy");
    let view = edge.view();
    assert!(view.wait_synced(Duration::from_secs(3)).await);
    a.register(node("a")).await.expect("register");
    a.claim(rec("a"), false).await.expect("claim");
    let d = Duration::from_secs(3);
    let mut w = view.watch("live", "cam");
    loop {
        if next_event(&mut w, d).await == StreamEvent::Put(rec("a").into()) {
            break;
        }
    }
    eventually("a's node in the view", d, || async {
        view.nodes().iter().any(|n| n.node_id == "a")
    })
    .await;

    // Cut from etcd: the view keeps its last state (streams that flow keep flowing)...
    proxy.cut();
    let b = connect(&etcd, TTL).await;
    assert_eq!(b.claim(rec("b"), true).await, Ok(Claim::Owned));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(view.lookup("live/cam"), Some(rec("a")));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), w.recv())
            .await
            .is_err(),
        "no news during the partition"
    );
    // ...and after the heal it resyncs: the watcher hears the change made meanwhile.
    proxy.heal();
    let healed = Instant::now();
    assert_eq!(
        next_event(&mut w, Duration::from_secs(10)).await,
        StreamEvent::Put(rec("b").into())
    );
    eprintln!("view resynced {:?} after the heal", healed.elapsed());
    b.release("live", "cam").await.expect("release");
    assert_eq!(next_event(&mut w, d).await, StreamEvent::Deleted);
    assert_eq!(view.lookup("live/cam"), None);
}

/// The view's initial list comes in pages: 5,000 streams of about 1 KiB (5 MiB: past the gRPC
/// client's 4 MiB message limit for one response) all reach a node that starts after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_lists_many_streams_in_pages() {
    use prost::Message;
    let etcd = start_etcd();
    let mut raw = etcd_client::Client::connect([etcd.endpoint.clone()], None)
        .await
        .expect("etcd client");
    const N: usize = 5000;
    for chunk in (0..N).collect::<Vec<_>>().chunks(100) {
        let ops: Vec<etcd_client::TxnOp> = chunk
            .iter()
            .map(|i| {
                let mut r = rec("o");
                r.name = format!("s{i:05}");
                // 5,000 x ~1 KiB: one response would pass the client's 4 MiB limit.
                r.codecs = vec!["x".repeat(1000)];
                etcd_client::TxnOp::put(
                    format!("/livecdn-test/v1/streams/live/s{i:05}"),
                    r.encode_to_vec(),
                    None,
                )
            })
            .collect();
        raw.txn(etcd_client::Txn::new().and_then(ops))
            .await
            .expect("put streams");
    }
    let r = connect(&etcd, TTL).await;
    let view = r.view();
    eventually("every stream in the view", Duration::from_secs(20), || {
        let n = view.streams().len();
        async move { n == N }
    })
    .await;
    assert!(view.lookup("live/s00000").is_some() && view.lookup("live/s04999").is_some());
}
