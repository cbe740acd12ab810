//! The origin's `on_publish` / `on_unpublish` HTTP hooks end to end: a hook server in the test
//! (loopback, records every call, allows or refuses by stream name, or never answers), real
//! etcd, a real origin, ffmpeg publishers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::admission::sign_hmac;
use common::cluster::{EtcdConfig, EtcdRegistry, Registry};
use harness::etcd::Etcd;
use harness::rtmp::{Client, try_publish, wait_playable};
use harness::{FfmpegPublisher, NodeProc, Scratch, StreamSpec, binary, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// One request the hook server received.
#[derive(Debug, Clone)]
struct Call {
    path: String,
    content_type: String,
    fields: BTreeMap<String, String>,
}

/// A hook server: `denied*` names get 403, `hang*` names (or every call with `hang_all`) get
/// no answer at all, everything else 200.
struct Hook {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    /// Calls read and left unanswered, right now.
    hanging: Arc<Mutex<usize>>,
}

impl Hook {
    async fn start(hang_all: bool) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind hook");
        let addr = listener.local_addr().expect("addr");
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let hanging: Arc<Mutex<usize>> = Arc::default();
        let (c, h) = (calls.clone(), hanging.clone());
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (c, h) = (c.clone(), h.clone());
                tokio::spawn(serve(sock, c, h, hang_all));
            }
        });
        Hook {
            addr,
            calls,
            hanging,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }

    fn hanging(&self) -> usize {
        *self.hanging.lock().expect("lock")
    }
}

async fn serve(
    mut sock: TcpStream,
    calls: Arc<Mutex<Vec<Call>>>,
    hanging: Arc<Mutex<usize>>,
    hang_all: bool,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    while buf.len() < head_end + length {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
    let call = Call {
        path: head.split(' ').nth(1).unwrap_or_default().to_string(),
        content_type: header("content-type"),
        fields: parse_form(&body),
    };
    let name = call.fields.get("name").cloned().unwrap_or_default();
    calls.lock().expect("lock").push(call);
    if hang_all || name.starts_with("hang") {
        *hanging.lock().expect("lock") += 1;
        // Never answer; notice when the origin gives up (closes the connection).
        let _ = sock.read(&mut chunk).await;
        *hanging.lock().expect("lock") -= 1;
        return;
    }
    let status = if name.starts_with("denied") {
        "403 Forbidden"
    } else {
        "200 OK"
    };
    let _ = sock
        .write_all(
            format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .as_bytes(),
        )
        .await;
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space, `%XX` a byte).
fn parse_form(body: &str) -> BTreeMap<String, String> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                    match u8::from_str_radix(hex, 16) {
                        Ok(v) => {
                            out.push(v);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).to_string()
    }
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

async fn inspect(etcd: &Etcd) -> Arc<EtcdRegistry> {
    let mut cfg = EtcdConfig::new(vec![etcd.endpoint.clone()]);
    cfg.lease_ttl = Duration::from_secs(2);
    EtcdRegistry::connect(cfg).await.expect("inspect registry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_publish_hook_allows_refuses_and_hears_the_nginx_rtmp_fields() {
    let hook = Hook::start(false).await;
    let etcd = Etcd::start();
    let on_publish = hook.url("/hooks/on_publish");
    let on_unpublish = hook.url("/hooks/on_unpublish");
    let origin = etcd.node(
        "origin",
        &[
            "--publish-key",
            "live=k",
            "--on-publish",
            &on_publish,
            "--on-unpublish",
            &on_unpublish,
        ],
    );

    // The key check comes first: without a token the hook is not even asked.
    let (code, description) = try_publish(origin.rtmp, "live", "allowed", Duration::from_secs(30))
        .await
        .err()
        .expect("no token: refused");
    assert_eq!(code, "NetStream.Publish.Unauthorized");
    assert!(description.contains("token"), "{description}");
    assert!(hook.calls().is_empty(), "asked before the key check");

    // A valid token and a hook that allows: ffmpeg publishes and the stream plays.
    let q = sign_hmac("k", "live", "allowed", now() + 600);
    let allowed = FfmpegPublisher::start(
        &origin.rtmp_url(&format!("live/allowed?{q}&extra=a%20b&who=enc+1")),
        StreamSpec::default(),
    );
    wait_playable(&origin, "live/allowed").await;
    let calls = hook.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let c = &calls[0];
    assert_eq!(c.path, "/hooks/on_publish");
    assert_eq!(c.content_type, "application/x-www-form-urlencoded");
    let f = |k: &str| c.fields.get(k).map(String::as_str);
    assert_eq!(f("call"), Some("publish"));
    assert_eq!(f("addr"), Some("127.0.0.1"));
    assert_eq!(f("app"), Some("live"));
    assert_eq!(f("name"), Some("allowed"));
    assert_eq!(f("type"), Some("live"));
    assert!(
        f("clientid").is_some_and(|id| id.parse::<u64>().is_ok()),
        "{c:?}"
    );
    // The URL's own arguments, decoded as the hook's form parser sees them.
    assert_eq!(f("extra"), Some("a b"));
    assert_eq!(f("who"), Some("enc 1"));
    let sign = q.split("sign=").nth(1).expect("sign");
    assert_eq!(f("sign"), Some(sign));
    assert!(f("expires").is_some());

    // A valid token but a hook that says 403: refused, with the RTMP code and a description,
    // and nothing is claimed in the cluster.
    let q = sign_hmac("k", "live", "denied", now() + 600);
    let (code, description) = try_publish(
        origin.rtmp,
        "live",
        &format!("denied?{q}"),
        Duration::from_secs(30),
    )
    .await
    .err()
    .expect("hook said no: refused");
    assert_eq!(code, "NetStream.Publish.Unauthorized");
    assert!(
        description.contains("on_publish") && description.contains("403"),
        "{description}"
    );
    let mut refused = FfmpegPublisher::start(
        &origin.rtmp_url(&format!("live/denied?{q}")),
        StreamSpec::default(),
    );
    wait_for("ffmpeg to be refused", Duration::from_secs(15), || {
        !refused.proc.is_running()
    });
    let status = refused.proc.child.wait().expect("status");
    assert!(!status.success(), "ffmpeg published past a 403 hook");
    let registry = inspect(&etcd).await;
    assert!(
        registry
            .lookup("live", "denied")
            .await
            .expect("lookup")
            .is_none(),
        "a refused publish was claimed"
    );
    assert!(
        registry
            .lookup("live", "allowed")
            .await
            .expect("lookup")
            .is_some()
    );
    assert_eq!(origin.metric("livecdn_media_publishers", ""), 1.0);
    assert!(
        origin.metric(
            "livecdn_media_publishes_refused_total",
            "reason=\"hook_denied\""
        ) >= 2.0
    );
    let denied_calls = hook
        .calls()
        .iter()
        .filter(|c| c.fields.get("name").map(String::as_str) == Some("denied"))
        .count();
    assert_eq!(denied_calls, 2);

    // The end of the allowed publish is told to on_unpublish.
    drop(allowed);
    wait_for("on_unpublish", Duration::from_secs(15), || {
        hook.calls().iter().any(|c| {
            c.path == "/hooks/on_unpublish"
                && c.fields.get("call").map(String::as_str) == Some("publish_done")
                && c.fields.get("name").map(String::as_str) == Some("allowed")
                && c.fields.get("app").map(String::as_str) == Some("live")
        })
    });
    // The refused publishes were never started, so they are never "done".
    assert!(!hook.calls().iter().any(|c| {
        c.path == "/hooks/on_unpublish"
            && c.fields.get("name").map(String::as_str) == Some("denied")
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_never_answers_or_is_down_refuses_in_bounded_time() {
    let hook = Hook::start(true).await;
    // Configured through the file's keys this time.
    let scratch = Scratch::new("hook-config");
    let config = scratch.path("origin.toml");
    std::fs::write(
        &config,
        format!(
            "on_publish = \"{}\"\non_publish_timeout = \"1s\"\n",
            hook.url("/on_publish")
        ),
    )
    .expect("write config");
    let origin = NodeProc::start(&["--config", config.to_str().expect("path")]);
    let asked = Instant::now();
    let (code, description) = try_publish(origin.rtmp, "live", "demo", Duration::from_secs(30))
        .await
        .err()
        .expect("a silent hook refuses");
    let took = asked.elapsed();
    assert_eq!(code, "NetStream.Publish.Unauthorized");
    assert!(description.contains("did not answer"), "{description}");
    assert_eq!(hook.calls().len(), 1);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "refused after {took:?} (timeout 1 s)"
    );
    // The origin gave up on the call: the hook's connection is closed.
    wait_for(
        "the hook connection to close",
        Duration::from_secs(5),
        || hook.hanging() == 0,
    );
    assert_eq!(origin.metric("livecdn_media_publishers", ""), 0.0);

    // A hook that is down refuses too, and fast.
    let down = format!("http://127.0.0.1:{}/on_publish", harness::free_port());
    let origin = NodeProc::start(&["--on-publish", &down]);
    let asked = Instant::now();
    let (code, description) = try_publish(origin.rtmp, "live", "demo", Duration::from_secs(30))
        .await
        .err()
        .expect("a hook that is down refuses");
    assert_eq!(code, "NetStream.Publish.Unauthorized");
    assert!(
        description.contains("could not be reached"),
        "{description}"
    );
    assert!(asked.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_calls_in_flight_are_bounded() {
    let hook = Hook::start(true).await;
    let origin = NodeProc::start(&[
        "--on-publish",
        &hook.url("/on_publish"),
        "--on-publish-timeout",
        "20s",
    ]);
    // 64 publishes wait on a hook that never answers...
    let mut waiting = Vec::new();
    for i in 0..64 {
        let addr = origin.rtmp;
        waiting.push(tokio::spawn(async move {
            let mut c = Client::connect(addr, "live").await.ok()?;
            let deadline = Instant::now() + Duration::from_secs(30);
            c.publish(&format!("hang{i}"), deadline).await.err()
        }));
    }
    let end = Instant::now() + Duration::from_secs(20);
    while hook.hanging() < 64 {
        assert!(Instant::now() < end, "only {} hook calls", hook.hanging());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...so the next one is refused at once, without a call.
    let asked = Instant::now();
    let (code, description) = try_publish(origin.rtmp, "live", "one-more", Duration::from_secs(30))
        .await
        .err()
        .expect("over the bound: refused");
    assert_eq!(code, "NetStream.Publish.Unauthorized");
    assert!(description.contains("overloaded"), "{description}");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(hook.calls().len(), 64);
    drop(origin);
    for w in waiting {
        let _ = w.await;
    }
}

#[test]
fn a_hook_url_that_is_not_http_fails_at_start_naming_the_option() {
    for url in ["https://auth.example/on_publish", "auth.example/on_publish"] {
        let out = std::process::Command::new(binary("origin"))
            .args(["--on-publish", url, "--rtmp-listen", "127.0.0.1:0"])
            .output()
            .expect("run origin");
        assert!(
            !out.status.success(),
            "origin started with --on-publish {url}"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--on-publish"), "{url}: {err}");
    }
}
