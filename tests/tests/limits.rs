//! Connection limits of the public listeners: slowloris HTTP connections are closed after
//! the header timeout, one client address cannot take more than its share, one budget covers
//! RTMP and HTTP together, and an idle connection costs little memory. Real players keep
//! playing throughout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use harness::rtmp::wait_playable;
use harness::{FfmpegPublisher, NodeProc, Played, StreamSpec, ffmpeg_play, wait_for};

/// A connection from the loopback address `from` (127.0.0.x: another client address).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local: SocketAddr = format!("{from}:0").parse().expect("addr");
    sock.bind(&local.into()).expect("bind source");
    sock.connect(&to.into()).expect("connect");
    sock.into()
}

/// How the server ended `s`: `Some(bytes read)` once closed within `limit`, `None` if open.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100))).ok();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(got),
        }
    }
    None
}

/// Half a request head, then silence.
fn slowloris(from: &str, to: SocketAddr) -> TcpStream {
    let mut s = connect_from(from, to);
    s.write_all(b"GET /live/x.flv HTTP/1.1\r\nHost: x\r\nUser-Agent: slow")
        .expect("write");
    s
}

fn play_flv_in_background(url: String, seconds: u32) -> std::thread::JoinHandle<Played> {
    std::thread::spawn(move || ffmpeg_play(&url, seconds, Duration::from_secs(seconds as u64 + 20)))
}

fn assert_played(p: Played, seconds: u32, what: &str) {
    assert!(p.ok, "{what}: ffmpeg failed: {}", p.stderr);
    // 25 fps; the player must not have starved.
    assert!(
        p.video_frames as u32 >= seconds * 25 * 9 / 10,
        "{what}: decoded {} video frames in {seconds} s",
        p.video_frames
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_after_the_header_timeout() {
    let node = NodeProc::start(&[
        "--http-header-timeout",
        "2s",
        "--net-max-connections-per-ip",
        "0",
    ]);
    let _publisher = FfmpegPublisher::start(&node.rtmp_url("live/x"), StreamSpec::default());
    wait_playable(&node, "live/x").await;
    let player = play_flv_in_background(node.flv_url("live/x"), 8);
    std::thread::sleep(Duration::from_secs(1));
    let http = node.http;
    let mut socks: Vec<TcpStream> = (0..300).map(|_| slowloris("127.0.0.1", http)).collect();
    // Also: a connection that sends nothing at all, and one with 3 bytes of a request line.
    socks.push(connect_from("127.0.0.1", http));
    let mut three = connect_from("127.0.0.1", http);
    three.write_all(b"GET").expect("write");
    socks.push(three);
    let start = Instant::now();
    for s in socks.iter_mut() {
        assert!(
            closed_within(s, Duration::from_secs(6)).is_some(),
            "a slowloris connection is still open after {:?}",
            start.elapsed()
        );
    }
    let took = start.elapsed();
    assert!(took < Duration::from_secs(6), "closed after {took:?}");
    assert!(
        took >= Duration::from_millis(1500),
        "closed too early ({took:?})"
    );
    assert_played(player.join().expect("join"), 8, "http-flv player");
    assert!(
        node.metric("livecdn_net_connection_errors_total", "header_timeout") >= 300.0,
        "header timeouts are counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_more_than_its_share() {
    // Loopback is trusted by default (no per-address limit): trust nothing here.
    let node = NodeProc::start(&[
        "--net-max-connections-per-ip",
        "20",
        "--net-trusted-networks",
        "",
    ]);
    let _publisher = FfmpegPublisher::start(&node.rtmp_url("live/y"), StreamSpec::default());
    wait_playable(&node, "live/y").await;
    let player = play_flv_in_background(node.flv_url("live/y"), 6);
    std::thread::sleep(Duration::from_secs(1));
    // 127.0.0.2 opens 20 connections across HTTP and RTMP: all held open.
    let mut held: Vec<TcpStream> = (0..10)
        .map(|_| slowloris("127.0.0.2", node.http))
        .chain((0..10).map(|_| connect_from("127.0.0.2", node.rtmp)))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for s in held.iter_mut() {
        assert!(
            closed_within(s, Duration::from_millis(200)).is_none(),
            "a connection within the limit was closed"
        );
    }
    // The 21st, on either listener, is refused at once (HTTP with a 503).
    let mut http = slowloris("127.0.0.2", node.http);
    let answer = closed_within(&mut http, Duration::from_secs(2)).expect("refused http");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let mut rtmp = connect_from("127.0.0.2", node.rtmp);
    assert!(
        closed_within(&mut rtmp, Duration::from_secs(2)).is_some(),
        "refused rtmp"
    );
    // Another address is not affected.
    let (status, _) = node.http_get("/healthz");
    assert_eq!(status, 200);
    assert_played(player.join().expect("join"), 6, "http-flv player");
    assert!(node.metric("livecdn_net_connections_refused_total", "per_ip") >= 2.0);
    // Freed places can be used again.
    held.truncate(0);
    std::thread::sleep(Duration::from_millis(300));
    let mut again = connect_from("127.0.0.2", node.rtmp);
    assert!(closed_within(&mut again, Duration::from_millis(500)).is_none());
}

/// Sends C0+C1 and reads S0+S1: the RTMP listener answers a handshake.
fn rtmp_answers(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0u8; 1536]);
    if s.write_all(&c0c1).is_err() {
        return false;
    }
    let mut s0s1 = [0u8; 1537];
    s.read_exact(&mut s0s1).is_ok() && s0s1[0] == 3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_budget_covers_http_and_rtmp() {
    let node = NodeProc::start(&[
        "--net-max-connections",
        "50",
        "--net-max-connections-per-ip",
        "0",
        "--http-header-timeout",
        "60s",
    ]);
    assert!(rtmp_answers(node.rtmp), "rtmp works before");
    // The gauge of the budget in use, read on the API listener (outside the budget).
    let open = || node_metric_api(&node, "livecdn_net_connections_open");
    wait_for(
        "the probe's place given back",
        Duration::from_secs(10),
        || open() == 0.0,
    );
    let held: Vec<TcpStream> = (0..50).map(|_| slowloris("127.0.0.1", node.http)).collect();
    wait_for(
        "the 50 HTTP connections hold the budget",
        Duration::from_secs(10),
        || open() == 50.0,
    );
    assert!(
        !rtmp_answers(node.rtmp),
        "rtmp refused while HTTP holds the budget"
    );
    // The API listener is not part of the public budget: operators still get in.
    let (status, _) = node.api_get("/healthz");
    assert_eq!(status, 200, "api answers while the public budget is full");
    drop(held);
    wait_for("rtmp accepted again", Duration::from_secs(5), || {
        rtmp_answers(node.rtmp)
    });
    assert!(node.metric("livecdn_net_connections_refused_total", "limit") >= 1.0);
}

/// Sum of the samples of `name` on `node`'s API listener (outside the public budget).
fn node_metric_api(node: &NodeProc, name: &str) -> f64 {
    let (_, body) = node.api_get("/metrics");
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The node's RSS in bytes.
fn rss_bytes(pid: u32) -> u64 {
    harness::rss_kib(pid) * 1024
}

/// Accepts any server certificate (the memory test only needs the handshake done).
#[derive(Debug)]
struct AnyCert(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A node with long handshake and header timeouts, no per-address limit and an HTTPS
/// listener: (node, https address).
fn patient_node(cert: &std::path::Path, key: &std::path::Path) -> (NodeProc, SocketAddr) {
    let https: SocketAddr = format!("127.0.0.1:{}", harness::free_port())
        .parse()
        .expect("addr");
    let node = NodeProc::start(&[
        "--tls-cert",
        &cert.to_string_lossy(),
        "--tls-key",
        &key.to_string_lossy(),
        "--https-listen",
        &https.to_string(),
        "--net-max-connections",
        "30000",
        "--net-max-connections-per-ip",
        "0",
        "--http-header-timeout",
        "120s",
        "--rtmp-handshake-timeout",
        "120s",
    ]);
    wait_for("https listener", Duration::from_secs(10), || {
        TcpStream::connect(https).is_ok()
    });
    // Warm up (allocator arenas, first connection paths) before measuring.
    let warm: Vec<TcpStream> = (0..20).map(|_| slowloris("127.0.0.1", node.http)).collect();
    std::thread::sleep(Duration::from_millis(300));
    drop(warm);
    std::thread::sleep(Duration::from_millis(300));
    (node, https)
}

/// Each kind on a fresh node: memory a closed connection freed would hide the next kind's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cost_little_memory() {
    // 2,000 in CI; `LIVECDN_IDLE_CONNECTIONS=10000` for the figure (needs ulimit -n).
    let n: usize = std::env::var("LIVECDN_IDLE_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    const N_TLS: usize = 500;
    let dir = std::env::temp_dir().join(format!("livecdn-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).expect("cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("key");
    let mut figures = Vec::new();
    for what in ["http", "rtmp"] {
        let (node, _) = patient_node(&cert, &key);
        let pid = node.proc.pid();
        let before = rss_bytes(pid);
        let socks: Vec<TcpStream> = (0..n)
            .map(|_| match what {
                // Half a request head: hyper holds its read buffer.
                "http" => slowloris("127.0.0.1", node.http),
                // Connected, no handshake yet.
                _ => connect_from("127.0.0.1", node.rtmp),
            })
            .collect();
        std::thread::sleep(Duration::from_secs(1));
        let after = rss_bytes(pid);
        let per = after.saturating_sub(before) / n as u64;
        eprintln!("{what}: {n} idle connections: RSS {before} -> {after} bytes, {per} bytes each");
        figures.push((what, per));
        drop(socks);
    }
    // TLS: handshake done, then silence (hyper waits for a request head).
    let (node, https) = patient_node(&cert, &key);
    let pid = node.proc.pid();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let before = rss_bytes(pid);
    let mut tls = Vec::with_capacity(N_TLS);
    for _ in 0..N_TLS {
        let tcp = tokio::net::TcpStream::connect(https)
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        tls.push(connector.connect(name, tcp).await.expect("handshake"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_bytes(pid);
    let per = after.saturating_sub(before) / N_TLS as u64;
    eprintln!("https: {N_TLS} idle connections: RSS {before} -> {after} bytes, {per} bytes each");
    figures.push(("https", per));
    drop(tls);
    let _ = std::fs::remove_dir_all(dir);
    for (what, per) in figures {
        assert!(per < 64 * 1024, "{what}: {per} bytes per idle connection");
    }
}
