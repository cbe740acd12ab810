//! The README's first command: `deploy/local/cluster.sh` starts etcd, two origins and two
//! edges that an ffmpeg user can push to and play from, and Ctrl-C / SIGTERM stops them all.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use harness::{FfmpegPublisher, Proc, StreamSpec, ffmpeg_play, wait_for};

/// Ports BASE..BASE+380: below the ephemeral range the other tests' free ports come from.
const BASE: u16 = 26000;

/// Stops the script with SIGTERM (its trap then stops everything it started), even when the
/// test fails: a SIGKILL would leave etcd and the nodes running.
struct Cluster(Proc);

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.0.is_running() {
            self.0.signal_and_wait("TERM", Duration::from_secs(15));
        }
    }
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn readme_local_cluster_takes_a_push_and_plays_from_both_edges() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("deploy/local/cluster.sh"))
        .current_dir(&root)
        .env("BASE", BASE.to_string());
    let mut cluster = Cluster(Proc::spawn("cluster.sh", &mut cmd));
    // It builds the release binaries first (a no-op after tests/run.sh built them).
    wait_for("the cluster to be up", Duration::from_secs(900), || {
        assert!(
            cluster.0.is_running(),
            "cluster.sh exited:\n{}",
            cluster.0.output()
        );
        cluster
            .0
            .output()
            .contains("livecdn local cluster is running")
    });
    let out = cluster.0.output();
    let push = format!("rtmp://127.0.0.1:{}/live/demo", BASE + 1);
    assert!(out.contains(&push), "the printed push URL:\n{out}");

    let _publisher = FfmpegPublisher::start(&push, StreamSpec::default());
    for url in [
        format!("rtmp://127.0.0.1:{}/live/demo", BASE + 12),
        format!("http://127.0.0.1:{}/live/demo.flv", BASE + 91),
        format!("http://127.0.0.1:{}/live/demo/ts.m3u8", BASE + 92),
    ] {
        assert!(cluster.0.output().contains(&url), "{url} is printed");
        let played = ffmpeg_play(&url, 3, Duration::from_secs(30));
        assert!(played.ok, "{url}: {}", played.stderr);
        assert!(played.video_frames >= 60, "{url}: {played:?}");
        assert!(played.audio_frames > 0, "{url}: {played:?}");
    }

    // The printed player page of edge-2 names the stream's HLS playlist.
    let page = format!("http://127.0.0.1:{}/live/demo", BASE + 92);
    assert!(cluster.0.output().contains(&page), "{page} is printed");
    let (status, html) = harness::http_get(([127, 0, 0, 1], BASE + 92).into(), "/live/demo");
    assert_eq!(status, 200);
    assert!(html.contains("/live/demo.m3u8"), "{html}");

    // The printed locate URL sends a west player to edge-2 (region west), an east one (the
    // answering origin-1's region, no override) to edge-1.
    let locate = format!(
        "http://127.0.0.1:{}/locate/live/demo.flv?region=west",
        BASE + 81
    );
    assert!(cluster.0.output().contains(&locate), "{locate} is printed");
    let played = ffmpeg_play(&locate, 2, Duration::from_secs(30));
    assert!(
        played.ok && played.video_frames >= 40,
        "{locate}: {played:?}"
    );
    let (status, json) = harness::http_get(
        ([127, 0, 0, 1], BASE + 81).into(),
        "/api/v1/locate/live/demo",
    );
    assert_eq!(status, 200, "{json}");
    assert!(json.contains("\"edge\":\"edge-1\""), "{json}");

    // SIGTERM (what Ctrl-C amounts to) stops everything it started.
    cluster.0.signal_and_wait("TERM", Duration::from_secs(15));
    for port in [BASE + 379, BASE + 1, BASE + 2, BASE + 11, BASE + 12] {
        wait_for(
            &format!("port {port} to close"),
            Duration::from_secs(10),
            || !port_open(port),
        );
    }
}
