//! Admission: the one check every way in (RTMP publish and play, HTTP-FLV, HLS playlists,
//! segments, parts and init segments, the player page) passes before a node publishes or
//! plays anything. Signed, expiring tokens in the URL query, several keys per app (rotation),
//! and the cluster credential edges pull from origins with. Also the signing functions
//! (`livecdn-sign`, the edge's pull).
//! Pure: time comes in as Unix seconds; no sockets, no clocks, no protocol rendering (the net
//! layer turns a `Denial` into an RTMP onStatus or an HTTP status).
//!
//! Token forms (any one valid token admits):
//! - Tencent-compatible: `txSecret = hex(MD5(KEY + name + txTime))`, `txTime` = expiry as hex
//!   Unix seconds (as written in the URL, case kept), `name` the stream name without the app.
//! - HMAC: `expires=<Unix seconds>&sign=hex(HMAC-SHA256(KEY, "{app}/{name}:{expires}"))`.
//! - Cluster (play only): `cluster_expires=<Unix seconds>&cluster_sign=hex(HMAC-SHA256(SECRET,
//!   "cluster:{app}/{name}:{expires}"))`, added by an edge to the play it sends upstream.

use std::fmt;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// What a request asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish,
    Play,
}

/// A request as admission sees it.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub action: Action,
    /// `rtmp`, `http-flv`, `hls`, `page`: for logs.
    pub protocol: &'a str,
    pub app: &'a str,
    pub name: &'a str,
    /// The raw query (`a=1&b=2`, no `?`); RTMP joins the app's and the stream name's.
    pub query: &'a str,
    /// The peer's address: for logs.
    pub peer: &'a str,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// Auth is on for the app and the query carries no token.
    #[error("a signed token is required (txSecret/txTime or expires/sign)")]
    Missing,
    /// A token that cannot be read (only half of it, not hex, not a number, ambiguous).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// A genuine token past its expiry (plus the allowed clock skew).
    #[error("token expired")]
    Expired,
    /// No key of the app makes this signature for this stream: forged, or made for another
    /// stream, app or key.
    #[error("token signature does not match this stream")]
    Forged,
    /// Auth is on but no key applies to this app (no `APP=` and no `*=` key).
    #[error("no key is configured for app `{0}`")]
    NoKey(String),
}

impl Denial {
    /// 401 when the request did not authenticate at all, 403 when it did and was wrong.
    pub fn http_status(&self) -> u16 {
        match self {
            Denial::Missing | Denial::Malformed(_) => 401,
            Denial::Expired | Denial::Forged | Denial::NoKey(_) => 403,
        }
    }

    /// Metrics label.
    pub fn reason(&self) -> &'static str {
        if self.http_status() == 401 {
            "unauthorized"
        } else {
            "forbidden"
        }
    }

    /// Which of two failed tokens says more: an expired genuine one, then a forged one.
    fn rank(&self) -> u8 {
        match self {
            Denial::Expired => 3,
            Denial::Forged => 2,
            Denial::Malformed(_) => 1,
            Denial::Missing | Denial::NoKey(_) => 0,
        }
    }
}

/// Why a request was let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// No auth for this action on this node.
    Open,
    /// A valid viewer or publisher token.
    Token,
    /// A valid cluster credential (a node of the cluster pulling).
    Cluster,
}

/// A secret that never shows in `Debug` output (configs are logged).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// One `APP=KEY` (`*` as APP: every app).
#[derive(Clone, PartialEq, Eq)]
pub struct AppKey {
    pub app: String,
    pub key: Secret,
}

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}=***\"", self.app)
    }
}

/// Parses `APP=KEY` (clap value parser of `--publish-key` and `--play-key`).
pub fn parse_app_key(s: &str) -> Result<AppKey, String> {
    let (app, key) = s
        .split_once('=')
        .ok_or_else(|| "expected APP=KEY (`*=KEY` for every app)".to_string())?;
    let app = app.trim();
    if app.is_empty() || app.contains('/') {
        return Err("APP must be an app name or `*`".into());
    }
    if key.is_empty() {
        return Err(format!("the key of app `{app}` is empty"));
    }
    Ok(AppKey {
        app: app.to_string(),
        key: Secret(key.to_string()),
    })
}

/// Parses a non-empty cluster secret (clap value parser of `--cluster-secret`).
pub fn parse_secret(s: &str) -> Result<Secret, String> {
    if s.is_empty() {
        return Err("the secret is empty".into());
    }
    Ok(Secret(s.to_string()))
}

/// The keys of one action, by app.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    keys: Vec<AppKey>,
}

impl Keys {
    pub fn new(keys: Vec<AppKey>) -> Keys {
        Keys { keys }
    }

    /// Auth is on for this action: some key is configured.
    pub fn is_on(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The keys that may sign for `app`: its own and the `*` ones.
    fn for_app<'a>(&'a self, app: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.app == app || k.app == "*")
            .map(|k| k.key.0.as_bytes())
    }
}

/// What a node admits: publish keys (origins), play keys, the cluster secret, the skew.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    pub publish: Keys,
    pub play: Keys,
    pub cluster_secret: Option<Secret>,
    /// A token is still valid this many seconds after its expiry (clocks differ).
    pub clock_skew_s: u64,
}

/// Admits everything (no keys): what a node without auth options uses.
pub static OPEN: Admission = Admission {
    publish: Keys { keys: Vec::new() },
    play: Keys { keys: Vec::new() },
    cluster_secret: None,
    clock_skew_s: 0,
};

impl Admission {
    /// Allows `ask` at `now` (Unix seconds), or says why not.
    pub fn check(&self, ask: &Ask<'_>, now: u64) -> Result<Grant, Denial> {
        let keys = match ask.action {
            Action::Publish => &self.publish,
            Action::Play => &self.play,
        };
        if !keys.is_on() {
            return Ok(Grant::Open);
        }
        let q = Query::parse(ask.query)?;
        let mut best: Option<Denial> = None;
        let mut note = |r: Result<(), Denial>, grant: Grant| match r {
            Ok(()) => Some(grant),
            Err(d) => {
                if best.as_ref().is_none_or(|b| d.rank() > b.rank()) {
                    best = Some(d);
                }
                None
            }
        };
        if ask.action == Action::Play
            && let Some(secret) = &self.cluster_secret
            && (q.cluster_sign.is_some() || q.cluster_expires.is_some())
        {
            let r = self.verify_cluster(secret, ask, &q, now);
            if let Some(g) = note(r, Grant::Cluster) {
                return Ok(g);
            }
        }
        if keys.for_app(ask.app).next().is_none() {
            return Err(Denial::NoKey(ask.app.to_string()));
        }
        if q.sign.is_some() || q.expires.is_some() {
            let r = self.verify_hmac(keys, ask, &q, now);
            if let Some(g) = note(r, Grant::Token) {
                return Ok(g);
            }
        }
        if q.tx_secret.is_some() || q.tx_time.is_some() {
            let r = self.verify_tencent(keys, ask, &q, now);
            if let Some(g) = note(r, Grant::Token) {
                return Ok(g);
            }
        }
        Err(best.unwrap_or(Denial::Missing))
    }

    fn fresh(&self, expires: u64, now: u64) -> Result<(), Denial> {
        if now > expires.saturating_add(self.clock_skew_s) {
            Err(Denial::Expired)
        } else {
            Ok(())
        }
    }

    fn verify_hmac(
        &self,
        keys: &Keys,
        ask: &Ask<'_>,
        q: &Query<'_>,
        now: u64,
    ) -> Result<(), Denial> {
        let msg = |expires: &str| hmac_message(ask.app, ask.name, expires);
        let names = [
            "expires and sign go together",
            "expires is not Unix seconds",
            "sign is not 64 hex digits",
        ];
        self.verify_signed(keys.for_app(ask.app), (q.expires, q.sign), msg, names, now)
    }

    fn verify_tencent(
        &self,
        keys: &Keys,
        ask: &Ask<'_>,
        q: &Query<'_>,
        now: u64,
    ) -> Result<(), Denial> {
        let (Some(secret), Some(time)) = (q.tx_secret, q.tx_time) else {
            return Err(Denial::Malformed("txSecret and txTime go together"));
        };
        let exp =
            parse_hex_time(time).ok_or(Denial::Malformed("txTime is not hex Unix seconds"))?;
        let secret =
            decode_hex(secret, 16).ok_or(Denial::Malformed("txSecret is not 32 hex digits"))?;
        let ok = any_key(keys.for_app(ask.app), |k| {
            ct_eq(&tencent_digest(k, ask.name, time), &secret)
        });
        if !ok {
            return Err(Denial::Forged);
        }
        self.fresh(exp, now)
    }

    fn verify_cluster(
        &self,
        secret: &Secret,
        ask: &Ask<'_>,
        q: &Query<'_>,
        now: u64,
    ) -> Result<(), Denial> {
        let msg = |expires: &str| cluster_message(ask.app, ask.name, expires);
        let names = [
            "cluster_expires and cluster_sign go together",
            "cluster_expires is not Unix seconds",
            "cluster_sign is not 64 hex digits",
        ];
        let keys = std::iter::once(secret.0.as_bytes());
        self.verify_signed(keys, (q.cluster_expires, q.cluster_sign), msg, names, now)
    }

    /// The HMAC-SHA256 forms (viewer/publisher and cluster): `sign` = HMAC(key, message of
    /// `expires`) for one of `keys`, `expires` decimal Unix seconds. `malformed` names what is
    /// wrong: the pair incomplete, `expires` unreadable, `sign` unreadable.
    fn verify_signed<'a>(
        &self,
        keys: impl Iterator<Item = &'a [u8]>,
        (expires, sign): (Option<&str>, Option<&str>),
        message: impl Fn(&str) -> String,
        malformed: [&'static str; 3],
        now: u64,
    ) -> Result<(), Denial> {
        let (Some(expires), Some(sign)) = (expires, sign) else {
            return Err(Denial::Malformed(malformed[0]));
        };
        let exp = parse_decimal(expires).ok_or(Denial::Malformed(malformed[1]))?;
        let sign = decode_hex(sign, 32).ok_or(Denial::Malformed(malformed[2]))?;
        let msg = message(expires);
        if !any_key(keys, |k| ct_eq(&hmac_sha256(k, msg.as_bytes()), &sign)) {
            return Err(Denial::Forged);
        }
        self.fresh(exp, now)
    }
}

/// True if `matches` holds for any key; every key is tried (no early exit), so the time
/// taken does not tell which key matched.
fn any_key<'a>(
    keys: impl Iterator<Item = &'a [u8]>,
    mut matches: impl FnMut(&[u8]) -> bool,
) -> bool {
    keys.fold(false, |found, k| matches(k) | found)
}

#[cfg(test)]
thread_local! {
    /// Constant-time comparisons made on this thread (tests assert signatures go through it).
    static CT_COMPARES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Constant-time equality of two byte strings (the length is not secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    #[cfg(test)]
    CT_COMPARES.with(|c| c.set(c.get() + 1));
    a.ct_eq(b).into()
}

/// The token fields of a query. A field given twice with different values is malformed.
#[derive(Debug, Default)]
struct Query<'a> {
    tx_secret: Option<&'a str>,
    tx_time: Option<&'a str>,
    expires: Option<&'a str>,
    sign: Option<&'a str>,
    cluster_expires: Option<&'a str>,
    cluster_sign: Option<&'a str>,
}

impl<'a> Query<'a> {
    fn parse(query: &'a str) -> Result<Query<'a>, Denial> {
        let mut q = Query::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match k {
                "txSecret" => &mut q.tx_secret,
                "txTime" => &mut q.tx_time,
                "expires" => &mut q.expires,
                "sign" => &mut q.sign,
                "cluster_expires" => &mut q.cluster_expires,
                "cluster_sign" => &mut q.cluster_sign,
                _ => continue,
            };
            match slot {
                Some(old) if *old != v => {
                    return Err(Denial::Malformed("a token field is repeated"));
                }
                _ => *slot = Some(v),
            }
        }
        Ok(q)
    }
}

fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_hex_time(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// `s` as exactly `len` bytes of hex (either case).
fn decode_hex(s: &str, len: usize) -> Option<Vec<u8>> {
    if s.len() != 2 * len {
        return None;
    }
    hex::decode(s).ok()
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

fn tencent_digest(key: &[u8], name: &str, tx_time: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(key);
    h.update(name.as_bytes());
    h.update(tx_time.as_bytes());
    h.finalize().into()
}

fn hmac_message(app: &str, name: &str, expires: &str) -> String {
    format!("{app}/{name}:{expires}")
}

fn cluster_message(app: &str, name: &str, expires: &str) -> String {
    format!("cluster:{app}/{name}:{expires}")
}

/// The Tencent-form query for `name` (the stream name without the app) valid until
/// `expires`: `txSecret=...&txTime=...` (txTime in uppercase hex, as Tencent writes it).
pub fn sign_tencent(key: &str, name: &str, expires: u64) -> String {
    let time = format!("{expires:X}");
    let secret = hex::encode(tencent_digest(key.as_bytes(), name, &time));
    format!("txSecret={secret}&txTime={time}")
}

/// The HMAC-form query for `app/name` valid until `expires`: `expires=...&sign=...`.
pub fn sign_hmac(key: &str, app: &str, name: &str, expires: u64) -> String {
    let exp = expires.to_string();
    let sign = hex::encode(hmac_sha256(
        key.as_bytes(),
        hmac_message(app, name, &exp).as_bytes(),
    ));
    format!("expires={exp}&sign={sign}")
}

/// The cluster credential for pulling `app/name`, valid until `expires`:
/// `cluster_expires=...&cluster_sign=...`.
pub fn sign_cluster(secret: &str, app: &str, name: &str, expires: u64) -> String {
    let exp = expires.to_string();
    let sign = hex::encode(hmac_sha256(
        secret.as_bytes(),
        cluster_message(app, name, &exp).as_bytes(),
    ));
    format!("cluster_expires={exp}&cluster_sign={sign}")
}

/// Longest app, in bytes.
pub const MAX_APP_LEN: usize = 64;
/// Longest stream name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Why an app or a stream name is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadName {
    #[error("the {0} is empty")]
    Empty(&'static str),
    #[error("the {what} is longer than {max} bytes")]
    TooLong { what: &'static str, max: usize },
    #[error("the {0} may only hold ASCII letters, digits, `-`, `_`, `.` and `~`")]
    Charset(&'static str),
    #[error("the {0} may not start with `.`")]
    LeadingDot(&'static str),
}

/// Checks an app and a stream name before anything else looks at them: not empty, at most
/// `MAX_APP_LEN` / `MAX_NAME_LEN` bytes, only `A-Z a-z 0-9 - _ . ~` (the URL-unreserved
/// set: no `/`, no `%`, no control character, nothing a URL or an etcd key would treat
/// specially), and no leading `.` (so no `.` or `..`). Without `/` in either part, the key
/// `app/name` names exactly one (app, name) pair: `a` + `b/c` and `a/b` + `c` cannot meet.
pub fn validate_name(app: &str, name: &str) -> Result<(), BadName> {
    check_part("app", app, MAX_APP_LEN)?;
    check_part("stream name", name, MAX_NAME_LEN)
}

fn check_part(what: &'static str, s: &str, max: usize) -> Result<(), BadName> {
    if s.is_empty() {
        return Err(BadName::Empty(what));
    }
    if s.len() > max {
        return Err(BadName::TooLong { what, max });
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
    {
        return Err(BadName::Charset(what));
    }
    if s.starts_with('.') {
        return Err(BadName::LeadingDot(what));
    }
    Ok(())
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
