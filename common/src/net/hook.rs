//! The origin's optional publish hooks (SRS / nginx-rtmp semantics): `on_publish` is asked on
//! every publish attempt after the key check and a 2xx answer allows it, anything else (or no
//! answer in time, or an error) refuses it with `NetStream.Publish.Unauthorized`;
//! `on_unpublish` is told, fire-and-forget, when an accepted publish ends.
//!
//! Both are `POST`s of an `application/x-www-form-urlencoded` body as nginx-rtmp sends it:
//! `call=publish&addr=IP&clientid=ID&app=APP&name=NAME&type=live&` followed by the publish
//! URL's query arguments (the app's then the stream name's), each key and value
//! form-encoded. `call=publish_done` for `on_unpublish`.
//!
//! Plain `http://` URLs only (a hook usually runs next to the origin). A hostile or broken hook
//! costs bounded time (`timeout` per call, connection included), bounded memory (the response
//! head is capped at 16 KiB, the body is never read) and bounded concurrency (at most
//! `MAX_IN_FLIGHT` calls at once; a publish beyond that is refused at once).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::{PublishRequest, Refusal};

/// Hook calls in flight at once (publish and unpublish together).
pub const MAX_IN_FLIGHT: usize = 64;
/// Response heads larger than this end the call (hyper's smallest read buffer is 8 KiB).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A hook's URL: `http://host[:port]/path[?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookUrl {
    host: String,
    port: u16,
    /// Path and query as sent in the request line.
    target: String,
    /// The URL as configured, for logs.
    text: String,
}

impl std::fmt::Display for HookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses a hook URL (clap value parser of `--on-publish` and `--on-unpublish`).
pub fn parse_hook_url(s: &str) -> Result<HookUrl, String> {
    let uri: Uri = s.parse().map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("`{s}`: hook URLs must be http://host[:port]/path"));
    }
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{s}` has no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let target = if target.is_empty() {
        "/".to_string()
    } else {
        target
    };
    Ok(HookUrl {
        host,
        port: uri.port_u16().unwrap_or(80),
        target,
        text: s.to_string(),
    })
}

/// The hooks of an origin and their shared bounds.
#[derive(Debug)]
pub struct PublishHooks {
    on_publish: Option<HookUrl>,
    on_unpublish: Option<HookUrl>,
    timeout: Duration,
    in_flight: Arc<Semaphore>,
}

/// What a hook call ended with.
#[derive(Debug)]
enum Outcome {
    Status(u16),
    Failed(String),
    TimedOut,
}

impl PublishHooks {
    /// `None` when neither hook is configured.
    pub fn new(
        on_publish: Option<HookUrl>,
        on_unpublish: Option<HookUrl>,
        timeout: Duration,
    ) -> Option<Arc<PublishHooks>> {
        if on_publish.is_none() && on_unpublish.is_none() {
            return None;
        }
        Some(Arc::new(PublishHooks {
            on_publish,
            on_unpublish,
            timeout,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }))
    }

    /// Asks `on_publish` (if configured) whether `req` may publish: a 2xx allows.
    pub async fn admit(&self, req: &PublishRequest) -> Result<(), Refusal> {
        let Some(url) = &self.on_publish else {
            return Ok(());
        };
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
            warn!(stream = %req.key(), "on_publish: {MAX_IN_FLIGHT} calls in flight, refusing");
            return Err(refused(
                "hook_busy",
                "the on_publish hook is overloaded: try again".into(),
            ));
        };
        let body = form_body("publish", req);
        match call(url, body, self.timeout).await {
            Outcome::Status(s) if (200..300).contains(&s) => Ok(()),
            Outcome::Status(s) => {
                debug!(stream = %req.key(), status = s, "on_publish refused");
                Err(refused(
                    "hook_denied",
                    format!("publish refused by the on_publish hook (HTTP {s})"),
                ))
            }
            Outcome::TimedOut => {
                warn!(stream = %req.key(), hook = %url, "on_publish did not answer in time");
                Err(refused(
                    "hook_failed",
                    format!(
                        "the on_publish hook did not answer within {} ms",
                        self.timeout.as_millis()
                    ),
                ))
            }
            Outcome::Failed(e) => {
                warn!(stream = %req.key(), hook = %url, error = %e, "on_publish failed");
                Err(refused(
                    "hook_failed",
                    "the on_publish hook could not be reached".into(),
                ))
            }
        }
    }

    /// Tells `on_unpublish` (if configured) that `req`'s publish ended; does not wait. Dropped
    /// (and logged) when `MAX_IN_FLIGHT` calls are already in flight.
    pub fn unpublished(&self, req: &PublishRequest) {
        let Some(url) = self.on_unpublish.clone() else {
            return;
        };
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            warn!(stream = %req.key(), "on_unpublish: {MAX_IN_FLIGHT} calls in flight, not sent");
            return;
        };
        let body = form_body("publish_done", req);
        let (timeout, key) = (self.timeout, req.key());
        tokio::spawn(async move {
            let _permit = permit;
            match call(&url, body, timeout).await {
                Outcome::Status(s) if (200..300).contains(&s) => {}
                other => debug!(stream = %key, hook = %url, outcome = ?other, "on_unpublish"),
            }
        });
    }
}

/// `NetStream.Publish.Unauthorized`; 403 when the hook said no, 503 when it could not say.
fn refused(reason: &'static str, description: String) -> Refusal {
    Refusal {
        rtmp_code: "NetStream.Publish.Unauthorized",
        http_status: if reason == "hook_denied" { 403 } else { 503 },
        reason,
        description,
    }
}

/// The nginx-rtmp form body of `call` for `req`.
pub fn form_body(call: &str, req: &PublishRequest) -> String {
    // The peer's address without the port, as nginx-rtmp sends it.
    let addr = req
        .peer
        .parse::<std::net::SocketAddr>()
        .map_or_else(|_| req.peer.clone(), |a| a.ip().to_string());
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("call", call)
        .append_pair("addr", &addr)
        .append_pair("clientid", &req.conn_id.to_string())
        .append_pair("app", &req.app)
        .append_pair("name", &req.name)
        .append_pair("type", "live");
    // The URL's own arguments, decoded then form-encoded again (so `%20`, `+` and raw bytes
    // all arrive as the hook's form parser expects).
    form.extend_pairs(form_urlencoded::parse(req.query.as_bytes()));
    form.finish()
}

/// One POST of `body` to `url`, all of it (connect, request, response head) within `timeout`.
async fn call(url: &HookUrl, body: String, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, post(url, body)).await {
        Ok(Ok(status)) => Outcome::Status(status),
        Ok(Err(e)) => Outcome::Failed(e),
        Err(_) => Outcome::TimedOut,
    }
}

async fn post(url: &HookUrl, body: String) -> Result<u16, String> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES)
        .handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let host = if url.port == 80 {
        url.host.clone()
    } else if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let req = hyper::Request::post(url.target.as_str())
        .header(hyper::header::HOST, host)
        .header(
            hyper::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(hyper::header::USER_AGENT, "livecdn")
        .header(hyper::header::CONNECTION, "close")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("request: {e}"))?;
    let mut conn = std::pin::pin!(conn);
    let mut answer = std::pin::pin!(sender.send_request(req));
    let status = |r: Result<hyper::Response<hyper::body::Incoming>, hyper::Error>| {
        r.map(|resp| resp.status().as_u16())
            .map_err(|e| e.to_string())
    };
    // The connection is driven alongside the request; the body of the answer is never read:
    // the status decides, and dropping both closes the connection. A hook that answers and
    // closes may end the connection first: its answer is then already waiting.
    tokio::select! {
        biased;
        r = &mut answer => status(r),
        r = &mut conn => match r {
            Ok(()) => status(answer.await),
            Err(e) => Err(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_hook_url("http://127.0.0.1:8085/hooks/publish?x=1").expect("url");
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("127.0.0.1", 8085, "/hooks/publish?x=1")
        );
        let u = parse_hook_url("http://auth.local").expect("url");
        assert_eq!((u.port, u.target.as_str()), (80, "/"));
        let u = parse_hook_url("http://[::1]:9/p").expect("url");
        assert_eq!(u.host, "::1");
        assert!(parse_hook_url("https://auth.local/p").is_err());
        assert!(parse_hook_url("auth.local/p").is_err());
        assert!(parse_hook_url("not a url").is_err());
    }

    #[test]
    fn body_is_nginx_rtmp_form() {
        let req = PublishRequest {
            app: "live".into(),
            name: "demo".into(),
            query: "token=a%20b&x=1+2&y=&raw=é".into(),
            peer: "10.1.2.3:50000".into(),
            conn_id: 7,
        };
        assert_eq!(
            form_body("publish", &req),
            "call=publish&addr=10.1.2.3&clientid=7&app=live&name=demo&type=live\
             &token=a+b&x=1+2&y=&raw=%C3%A9"
        );
    }
}
