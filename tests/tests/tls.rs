//! RTMPS and HTTPS: ffmpeg publishes over rtmps://, plays over rtmps:// and https:// (HTTP-FLV
//! and HLS), and a replaced certificate is served to new connections without a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::rtmp::wait_playable;
use harness::{FfmpegPublisher, NodeProc, StreamSpec, ffmpeg_play, free_port, wait_for};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// A self-signed certificate for 127.0.0.1 and localhost: (cert DER, cert PEM, key PEM).
fn self_signed() -> (Vec<u8>, String, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("rcgen");
    (
        ck.cert.der().to_vec(),
        ck.cert.pem(),
        ck.signing_key.serialize_pem(),
    )
}

/// Writes cert and key by rename, as certificate tools do (a reader never sees half a file).
fn install(dir: &Path, cert: &str, key: &str) -> (PathBuf, PathBuf) {
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    for (path, text) in [(&k, key), (&c, cert)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write pem");
        std::fs::rename(&tmp, path).expect("rename pem");
    }
    (c, k)
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "livecdn-tls-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&d).expect("dir");
    d
}

struct TlsNode {
    node: NodeProc,
    rtmps: SocketAddr,
    https: SocketAddr,
}

fn start_tls_origin(cert: &Path, key: &Path) -> TlsNode {
    let rtmps: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let node = NodeProc::start(&[
        "--tls-cert",
        &cert.to_string_lossy(),
        "--tls-key",
        &key.to_string_lossy(),
        "--rtmps-listen",
        &rtmps.to_string(),
        "--https-listen",
        &https.to_string(),
    ]);
    wait_for("tls listeners", Duration::from_secs(10), || {
        std::net::TcpStream::connect(rtmps).is_ok() && std::net::TcpStream::connect(https).is_ok()
    });
    TlsNode { node, rtmps, https }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_and_plays_over_rtmps_and_https() {
    let dir = temp_dir("play");
    let (_, cert, key) = self_signed();
    let (c, k) = install(&dir, &cert, &key);
    let n = start_tls_origin(&c, &k);
    let _publisher = FfmpegPublisher::start(
        &format!("rtmps://{}/live/secure", n.rtmps),
        StreamSpec::default(),
    );
    wait_playable(&n.node, "live/secure").await;

    let rtmps = format!("rtmps://{}/live/secure", n.rtmps);
    let flv = format!("https://{}/live/secure.flv", n.https);
    let hls = format!("https://{}/live/secure.m3u8", n.https);
    let (a, b, h) = tokio::join!(
        tokio::task::spawn_blocking(move || ffmpeg_play(&rtmps, 3, Duration::from_secs(30))),
        tokio::task::spawn_blocking(move || ffmpeg_play(&flv, 3, Duration::from_secs(30))),
        tokio::task::spawn_blocking(move || ffmpeg_play(&hls, 3, Duration::from_secs(40))),
    );
    for (what, played) in [("rtmps", a), ("https flv", b), ("https hls", h)] {
        let played = played.expect("join");
        assert!(played.ok, "{what}: ffmpeg failed: {}", played.stderr);
        assert!(
            played.video_frames >= 60 && played.audio_frames > 0,
            "{what}: decoded {} video, {} audio frames",
            played.video_frames,
            played.audio_frames
        );
    }
    // The TLS connections are counted under their own protocol.
    assert!(
        n.node
            .metric("livecdn_net_connections_accepted_total", "rtmps")
            >= 2.0
    );
    assert!(
        n.node
            .metric("livecdn_net_connections_accepted_total", "https")
            >= 2.0
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Accepts any certificate and records the end-entity one it was shown.
#[derive(Debug)]
struct Recorder {
    seen: Mutex<Option<Vec<u8>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().expect("lock") = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The certificate (DER) a new TLS connection to `addr` is shown.
async fn served_cert(addr: SocketAddr) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder {
        seen: Mutex::new(None),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let _tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake");
    recorder
        .seen
        .lock()
        .expect("lock")
        .clone()
        .expect("a certificate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_to_new_connections_without_restart() {
    let dir = temp_dir("reload");
    let (der1, cert1, key1) = self_signed();
    let (c, k) = install(&dir, &cert1, &key1);
    let mut n = start_tls_origin(&c, &k);
    assert_eq!(
        served_cert(n.https).await,
        der1,
        "https serves the first cert"
    );
    assert_eq!(
        served_cert(n.rtmps).await,
        der1,
        "rtmps serves the first cert"
    );

    // A broken pair (a key of another cert) is refused and the old cert stays.
    let (_, cert_x, _) = self_signed();
    install(&dir, &cert_x, &key1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        served_cert(n.https).await,
        der1,
        "a mismatched pair is not loaded"
    );

    let (der2, cert2, key2) = self_signed();
    install(&dir, &cert2, &key2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        if served_cert(n.https).await == der2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "new certificate not served within 8 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        served_cert(n.rtmps).await,
        der2,
        "rtmps serves the new cert"
    );
    assert!(n.node.proc.is_running(), "no restart");
    // SIGHUP reloads at once (and does not stop the node).
    let (der3, cert3, key3) = self_signed();
    install(&dir, &cert3, &key3);
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &n.node.proc.pid().to_string()])
        .status();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(served_cert(n.https).await, der3, "SIGHUP reloads");
    assert!(n.node.proc.is_running(), "SIGHUP does not stop the node");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_tls_listener_without_a_certificate_fails_at_start() {
    let port = free_port();
    let out = std::process::Command::new(harness::binary("origin"))
        .args(["--rtmp-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--http-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--api-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--https-listen", &format!("127.0.0.1:{port}")])
        .output()
        .expect("run origin");
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--tls-cert"), "{text}");
}
