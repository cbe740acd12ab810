//! Relay to other servers (nginx-rtmp `push`, SRS `forward`): an origin publishes each stream
//! of an app to RTMP(S) destinations from its `--forward APP=URL` rules, `{name}` in the URL
//! being the stream name. A forward is a hub subscriber like any player: a destination that is
//! slow or down only drops frames from its own queue (or gets disconnected and retried); the
//! publisher and the players never wait for it. Reconnects with exponential backoff while the
//! stream is published.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::media::{FrameKind, Hub, MediaFrame};
use crate::rtmp::{ClientConfig, ClientEvent, ClientSession};

/// Metric: gauge of forwards connected and publishing now.
pub const FORWARDS_ACTIVE: &str = "livecdn_origin_forwards_active";
/// Metric: counter {reason} of forward connections that failed or were dropped.
pub const FORWARD_FAILURES: &str = "livecdn_origin_forward_failures_total";
/// Metric: counter of bytes sent to forward destinations.
pub const FORWARD_BYTES: &str = "livecdn_origin_forward_sent_bytes_total";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// From connect to NetStream.Publish.Start.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// A write that makes no progress this long: the destination is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Frames taken from the hub per write.
const BATCH: usize = 64;

/// One `--forward APP=URL` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRule {
    /// The app whose streams are forwarded (`*`: every app).
    pub app: String,
    /// `rtmp://host[:port]/app/stream` or `rtmps://...`; `{name}` is the stream name.
    pub url: String,
}

/// Parses `APP=URL` (checks the URL with a sample name).
pub fn parse_rule(s: &str) -> Result<ForwardRule, String> {
    let (app, url) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected APP=rtmp://host/app/{{name}}"))?;
    let rule = ForwardRule {
        app: app.trim().to_string(),
        url: url.trim().to_string(),
    };
    if rule.app.is_empty() {
        return Err(format!("`{s}`: the app is empty"));
    }
    Destination::parse(&rule.url.replace("{name}", "x"))?;
    Ok(rule)
}

/// Where one forward publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub tls: bool,
    /// `host:port`.
    pub addr: String,
    pub host: String,
    pub app: String,
    /// The stream name, with its `?query` if any.
    pub stream: String,
    /// The URL without the stream name's query (what the API shows: no keys in it).
    pub shown: String,
}

impl Destination {
    /// `rtmp://host[:port]/app[/...]/stream[?query]`: the last path segment is the stream, the
    /// segments before it the app.
    pub fn parse(url: &str) -> Result<Destination, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("rtmps://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("rtmp://") {
            (false, r)
        } else {
            return Err(format!("`{url}`: forward URLs are rtmp:// or rtmps://"));
        };
        let (hostport, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("`{url}`: no app/stream path"))?;
        let (app, stream) = path
            .rsplit_once('/')
            .ok_or_else(|| format!("`{url}`: the path needs an app and a stream"))?;
        if hostport.is_empty() || app.is_empty() || stream.is_empty() {
            return Err(format!("`{url}`: host, app and stream must not be empty"));
        }
        let host = match hostport.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h.to_string(),
            _ => hostport.to_string(),
        };
        let addr = if hostport.len() > host.len() {
            hostport.to_string()
        } else {
            format!("{hostport}:{}", if tls { 443 } else { 1935 })
        };
        let scheme = if tls { "rtmps" } else { "rtmp" };
        let bare = stream.split('?').next().unwrap_or(stream);
        Ok(Destination {
            tls,
            addr,
            host: host.trim_matches(['[', ']']).to_string(),
            app: app.to_string(),
            stream: stream.to_string(),
            shown: format!("{scheme}://{hostport}/{app}/{bare}"),
        })
    }
}

/// One forward's state, as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ForwardView {
    /// `app/name` of the forwarded stream.
    pub stream: String,
    /// The destination (its query left out).
    pub url: String,
    /// `connecting`, `publishing` or `backoff`.
    pub state: &'static str,
    /// Connections that ended in failure so far.
    pub failures: u64,
    pub bytes_sent: u64,
    pub last_error: Option<String>,
}

/// The forwards of one node, by stream key.
#[derive(Default)]
pub struct Forwards {
    rules: Vec<ForwardRule>,
    tls: Option<Arc<rustls::ClientConfig>>,
    running: Mutex<HashMap<String, Running>>,
}

struct Running {
    stop: CancellationToken,
    views: Vec<Arc<Mutex<ForwardView>>>,
}

impl Forwards {
    /// Forwards following `rules`; rtmps destinations are verified against `roots` (PEM
    /// files; empty: the system bundle).
    pub fn new(rules: Vec<ForwardRule>, roots: &[std::path::PathBuf]) -> Result<Self, String> {
        let needs_tls = rules.iter().any(|r| r.url.starts_with("rtmps://"));
        let tls = if needs_tls {
            Some(Arc::new(client_tls(roots)?))
        } else {
            None
        };
        Ok(Self {
            rules,
            tls,
            running: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the forwards of `app/name` (just published; earlier ones of the key stop).
    pub fn start(&self, hub: &Arc<Hub>, app: &str, name: &str) {
        let key = format!("{app}/{name}");
        let mut views = Vec::new();
        let stop = CancellationToken::new();
        for rule in self.rules.iter().filter(|r| r.app == app || r.app == "*") {
            let Ok(dest) = Destination::parse(&rule.url.replace("{name}", name)) else {
                continue;
            };
            let view = Arc::new(Mutex::new(ForwardView {
                stream: key.clone(),
                url: dest.shown.clone(),
                state: "connecting",
                failures: 0,
                bytes_sent: 0,
                last_error: None,
            }));
            views.push(view.clone());
            let task = Forward {
                hub: hub.clone(),
                key: key.clone(),
                dest,
                tls: self.tls.clone(),
                view,
                stop: stop.clone(),
            };
            tokio::spawn(task.run());
        }
        if views.is_empty() {
            return;
        }
        if let Some(old) = self.lock().insert(key, Running { stop, views }) {
            old.stop.cancel();
        }
    }

    /// Stops the forwards of `app/name` (its publish ended).
    pub fn stop(&self, app: &str, name: &str) {
        if let Some(old) = self.lock().remove(&format!("{app}/{name}")) {
            old.stop.cancel();
        }
    }

    /// Every forward running now.
    pub fn views(&self) -> Vec<ForwardView> {
        let mut out: Vec<ForwardView> = self
            .lock()
            .values()
            .flat_map(|r| r.views.iter())
            .map(|v| v.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        out.sort_by(|a, b| (&a.stream, &a.url).cmp(&(&b.stream, &b.url)));
        out
    }
}

fn client_tls(roots: &[std::path::PathBuf]) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let default_bundle = [std::path::PathBuf::from(
        "/etc/ssl/certs/ca-certificates.crt",
    )];
    let files = if roots.is_empty() {
        &default_bundle[..]
    } else {
        roots
    };
    let mut store = rustls::RootCertStore::empty();
    for f in files {
        let certs =
            CertificateDer::pem_file_iter(f).map_err(|e| format!("{}: {e}", f.display()))?;
        for c in certs.flatten() {
            let _ = store.add(c);
        }
    }
    if store.is_empty() {
        return Err("no CA certificate for rtmps forwards (--forward-ca)".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(store)
        .with_no_client_auth())
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Forward {
    hub: Arc<Hub>,
    key: String,
    dest: Destination,
    tls: Option<Arc<rustls::ClientConfig>>,
    view: Arc<Mutex<ForwardView>>,
    stop: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("rtmp: {0}")]
    Session(#[from] crate::rtmp::SessionError),
    #[error("refused: {0}")]
    Refused(String),
    #[error("timed out")]
    Timeout,
    #[error("too slow: dropped by the hub")]
    TooSlow,
}

impl ForwardError {
    fn reason(&self) -> &'static str {
        match self {
            ForwardError::Connect(_) => "connect",
            ForwardError::Io(_) => "io",
            ForwardError::Session(_) => "protocol",
            ForwardError::Refused(_) => "refused",
            ForwardError::Timeout => "timeout",
            ForwardError::TooSlow => "too_slow",
        }
    }
}

impl Forward {
    fn set(&self, f: impl FnOnce(&mut ForwardView)) {
        f(&mut self.view.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn published(&self) -> bool {
        self.hub.get(&self.key).is_some_and(|s| s.is_publishing())
    }

    async fn run(self) {
        let mut backoff = BACKOFF_MIN;
        // Started by the publish itself: the first attempt goes ahead; retries only while the
        // stream is still published here.
        loop {
            self.set(|v| v.state = "connecting");
            let started = Instant::now();
            let result = tokio::select! {
                r = self.session() => r,
                _ = self.stop.cancelled() => Ok(()),
            };
            match result {
                Ok(()) => break,
                Err(e) => {
                    metrics::counter!(FORWARD_FAILURES, "reason" => e.reason()).increment(1);
                    warn!(stream = %self.key, dest = %self.dest.shown, error = %e, "forward failed; retrying");
                    self.set(|v| {
                        v.state = "backoff";
                        v.failures += 1;
                        v.last_error = Some(e.to_string());
                    });
                }
            }
            // A connection that published for a while resets the backoff.
            if started.elapsed() > BACKOFF_MAX * 3 {
                backoff = BACKOFF_MIN;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.cancelled() => break,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            if self.stop.is_cancelled() || !self.published() {
                break;
            }
        }
    }

    async fn connect(&self) -> Result<Box<dyn Io>, ForwardError> {
        let sock = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.dest.addr))
            .await
            .map_err(|_| ForwardError::Timeout)?
            .map_err(|e| ForwardError::Connect(format!("{}: {e}", self.dest.addr)))?;
        sock.set_nodelay(true)?;
        let Some(tls) = &self.tls.as_ref().filter(|_| self.dest.tls) else {
            return Ok(Box::new(sock));
        };
        let name = rustls::pki_types::ServerName::try_from(self.dest.host.clone())
            .map_err(|e| ForwardError::Connect(format!("{}: {e}", self.dest.host)))?;
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_rustls::TlsConnector::from((*tls).clone()).connect(name, sock),
        )
        .await
        .map_err(|_| ForwardError::Timeout)?
        .map_err(|e| ForwardError::Connect(format!("tls: {e}")))?;
        Ok(Box::new(stream))
    }

    /// One connection: publish, then copy the stream until it ends (Ok) or fails.
    async fn session(&self) -> Result<(), ForwardError> {
        let mut io = self.connect().await?;
        let scheme = if self.dest.tls { "rtmps" } else { "rtmp" };
        let tc_url = format!("{scheme}://{}/{}", self.dest.addr, self.dest.app);
        let mut session = ClientSession::new(ClientConfig::new(&self.dest.app, &tc_url));
        session.publish(&self.dest.stream);
        let mut buf = BytesMut::with_capacity(16 * 1024);
        // Until NetStream.Publish.Start.
        tokio::time::timeout(PUBLISH_TIMEOUT, async {
            loop {
                // Events first: handling them queues the next commands, flushed before reading.
                while let Some(ev) = session.poll_event()? {
                    match ev {
                        ClientEvent::PublishStarted => return Ok(()),
                        ClientEvent::Status {
                            level,
                            code,
                            description,
                        } if level == "error" => {
                            return Err(ForwardError::Refused(format!("{code} ({description})")));
                        }
                        _ => {}
                    }
                }
                flush(&mut io, &mut session).await?;
                buf.clear();
                if io.read_buf(&mut buf).await? == 0 {
                    return Err(ForwardError::Refused("connection closed".into()));
                }
                session.handle_input(&buf)?;
            }
        })
        .await
        .map_err(|_| ForwardError::Timeout)??;
        info!(stream = %self.key, dest = %self.dest.shown, "forward publishing");
        self.set(|v| {
            v.state = "publishing";
            v.last_error = None;
        });
        let _active = crate::telemetry::metric::GaugeGuard::new(metrics::gauge!(FORWARDS_ACTIVE));
        let sent = metrics::counter!(FORWARD_BYTES);
        // Subscribed now: the destination starts from the sequence headers and the GOP cache.
        let mut sub = self.hub.subscribe(&self.key);
        let mut frames: Vec<Arc<MediaFrame>> = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                r = sub.recv(&mut frames, BATCH) => match r {
                    Ok(_) => {
                        for f in frames.drain(..) {
                            session.send_media(type_id(f.kind), f.timestamp_ms, &f.payload);
                        }
                        let n = flush(&mut io, &mut session).await?;
                        sent.increment(n as u64);
                        self.set(|v| v.bytes_sent += n as u64);
                    }
                    Err(crate::media::CloseReason::TooSlow) => return Err(ForwardError::TooSlow),
                    Err(_) => {
                        session.close_stream();
                        let _ = flush(&mut io, &mut session).await;
                        return Ok(());
                    }
                },
                // Drain what the destination says (acks, pings) so it never stalls on us.
                r = io.read_buf(&mut buf) => {
                    if r? == 0 {
                        return Err(ForwardError::Refused("connection closed".into()));
                    }
                    session.handle_input(&buf)?;
                    buf.clear();
                    while let Some(ev) = session.poll_event()? {
                        if let ClientEvent::Status { level, code, description } = ev
                            && level == "error"
                        {
                            return Err(ForwardError::Refused(format!("{code} ({description})")));
                        }
                    }
                    // Acknowledgements and pong answers.
                    flush(&mut io, &mut session).await?;
                }
            }
        }
    }
}

/// Writes what the session has queued, bounded by the write timeout; returns the bytes.
async fn flush(io: &mut Box<dyn Io>, session: &mut ClientSession) -> Result<usize, ForwardError> {
    let mut n = 0;
    while let Some(out) = session.take_output() {
        n += out.len();
        write(io, out).await?;
    }
    Ok(n)
}

async fn write(io: &mut Box<dyn Io>, out: Bytes) -> Result<(), ForwardError> {
    tokio::time::timeout(WRITE_TIMEOUT, async {
        io.write_all(&out).await?;
        io.flush().await
    })
    .await
    .map_err(|_| ForwardError::Timeout)?
    .map_err(ForwardError::Io)
}

fn type_id(kind: FrameKind) -> u8 {
    match kind {
        FrameKind::Audio => crate::rtmp::message::type_id::AUDIO,
        FrameKind::Video => crate::rtmp::message::type_id::VIDEO,
        FrameKind::Data => crate::rtmp::message::type_id::DATA_AMF0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse() {
        let d = Destination::parse("rtmp://a.example.com/live2/abc?k=1").expect("parse");
        assert_eq!(d.addr, "a.example.com:1935");
        assert_eq!(d.app, "live2");
        assert_eq!(d.stream, "abc?k=1");
        assert_eq!(d.shown, "rtmp://a.example.com/live2/abc");
        let d = Destination::parse("rtmps://h:4433/a/b/s").expect("parse");
        assert!(d.tls);
        assert_eq!((d.addr.as_str(), d.host.as_str()), ("h:4433", "h"));
        assert_eq!((d.app.as_str(), d.stream.as_str()), ("a/b", "s"));
        assert_eq!(
            Destination::parse("rtmps://h/a/s").expect("parse").addr,
            "h:443"
        );
        for bad in [
            "http://h/a/s",
            "rtmp://h",
            "rtmp://h/s",
            "rtmp:///a/s",
            "rtmp://h/a/",
        ] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_parse() {
        let r = parse_rule("live=rtmp://127.0.0.1:1936/relay/{name}").expect("rule");
        assert_eq!(r.app, "live");
        assert!(parse_rule("rtmp://x/a/b").is_err());
        assert!(parse_rule("=rtmp://x/a/b").is_err());
        assert!(parse_rule("live=ftp://x/a/b").is_err());
    }
}
