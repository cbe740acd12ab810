//! Relay to other servers (`--forward APP=URL`): an origin publishes each stream of an app to
//! another RTMP server too; the destination plays it with ffmpeg; a destination that dies
//! does not disturb the publisher or the origin's players, and the forward comes back when the
//! destination does.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::rtmp::{Watcher, wait_playable};
use harness::{
    FfmpegPublisher, NodeProc, Proc, StreamSpec, binary, ffmpeg_play, free_port, wait_for,
};

/// A stand-alone origin (in-memory registry) on a fixed loopback RTMP port: the "other
/// server". Its HTTP and API ports are free ones; another test may take one between
/// `free_port` and the bind, so a start that lost that race is tried again on new ports.
fn destination(rtmp: SocketAddr) -> Proc {
    for _ in 0..5 {
        let http = format!("127.0.0.1:{}", free_port());
        let api = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(binary("origin"));
        cmd.args(["--rtmp-listen", &rtmp.to_string(), "--http-listen", &http])
            .args(["--api-listen", &api, "--node-id", "destination"]);
        let mut p = Proc::spawn("destination", &mut cmd);
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end {
            if TcpStream::connect(rtmp).is_ok() && p.is_running() {
                return p;
            }
            if !p.is_running() {
                let out = p.output();
                assert!(
                    out.contains("Address already in use"),
                    "destination exited: {out}"
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("the destination never listened on {rtmp}");
}

fn forwards(origin: &NodeProc) -> serde_json::Value {
    let (status, body) = origin.api_get("/api/v1/forwards");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).expect("JSON")["forwards"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_forwards_to_another_server_and_survives_its_death() {
    let dest_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut dest = destination(dest_addr);
    let rule = format!("live=rtmp://{dest_addr}/relay/{{name}}?k=secret");
    let origin = NodeProc::start(&["--forward", &rule]);
    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/fw"), StreamSpec::default());
    wait_playable(&origin, "live/fw").await;

    // The destination has the stream under its own name and ffmpeg decodes it.
    let url = format!("rtmp://{dest_addr}/relay/fw");
    let u = url.clone();
    let played = tokio::task::spawn_blocking(move || ffmpeg_play(&u, 3, Duration::from_secs(30)))
        .await
        .expect("join");
    assert!(
        played.ok && played.video_frames >= 60,
        "{url}: {}",
        played.stderr
    );
    let f = forwards(&origin);
    assert_eq!(f[0]["stream"], "live/fw");
    assert_eq!(f[0]["state"], "publishing");
    // The query (a destination key) is not shown.
    assert_eq!(f[0]["url"], format!("rtmp://{dest_addr}/relay/fw"));
    assert!(f[0]["bytes_sent"].as_u64().unwrap_or(0) > 0);
    assert_eq!(origin.metric("livecdn_origin_forwards_active", ""), 1.0);
    // Streams of other apps are not forwarded.
    let _other = FfmpegPublisher::start(&origin.rtmp_url("other/x"), StreamSpec::default());
    wait_playable(&origin, "other/x").await;
    assert_eq!(forwards(&origin).as_array().map(Vec::len), Some(1));

    // The destination dies: the origin's players do not notice; the forward backs off.
    let watcher = Watcher::start(origin.rtmp, "live/fw").await;
    assert!(watcher.wait_beyond(10, Duration::from_secs(10)).await);
    dest.signal_and_wait("KILL", Duration::from_secs(5));
    wait_for("the forward to back off", Duration::from_secs(15), || {
        let f = forwards(&origin);
        f[0]["state"] != "publishing" && f[0]["failures"].as_u64().unwrap_or(0) >= 1
    });
    assert!(origin.metric("livecdn_origin_forward_failures_total", "") >= 1.0);
    let frames = watcher.frames();
    assert!(
        watcher
            .wait_beyond(frames + 50, Duration::from_secs(10))
            .await
    );

    // It comes back on the same address: the forward publishes again.
    let _dest = destination(dest_addr);
    wait_for(
        "the forward to publish again",
        Duration::from_secs(20),
        || forwards(&origin)[0]["state"] == "publishing",
    );
    let u = url.clone();
    let played = tokio::task::spawn_blocking(move || ffmpeg_play(&u, 2, Duration::from_secs(30)))
        .await
        .expect("join");
    assert!(
        played.ok && played.video_frames >= 40,
        "{url}: {}",
        played.stderr
    );
    let (_, gap) = watcher.finish().await;
    assert!(gap < 1000, "the origin's player saw a {gap} ms gap");
}
