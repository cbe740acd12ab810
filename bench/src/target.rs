//! Publish and play URLs: `rtmp://host[:port]/app/name[?query]`,
//! `http://host[:port]/path.flv` and `http://host[:port]/path.m3u8` (HLS), with `{n}` replaced
//! by the stream index; players also take `rtmps://` and `https://` (HTTP-FLV) over TLS.

use std::net::{SocketAddr, ToSocketAddrs};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Rtmp {
        addr: SocketAddr,
        app: String,
        /// Stream name with its `?query`, as sent in play/publish.
        name: String,
        tc_url: String,
        /// `rtmps://`: the TLS server name.
        tls: Option<String>,
    },
    Http {
        addr: SocketAddr,
        host: String,
        path: String,
        /// `https://`: the TLS server name.
        tls: Option<String>,
    },
    /// An HLS media playlist (`.m3u8`).
    Hls {
        addr: SocketAddr,
        host: String,
        path: String,
    },
}

impl Target {
    /// Parses `url` after replacing `{n}` with `stream`.
    pub fn parse(url: &str, stream: usize) -> Result<Target, String> {
        let url = url.replace("{n}", &stream.to_string());
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url}: not a URL"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let default_port = match scheme {
            "rtmp" => 1935,
            "http" => 80,
            "rtmps" | "https" => 443,
            _ => {
                return Err(format!(
                    "{url}: only rtmp://, rtmps://, http:// and https:// are supported"
                ));
            }
        };
        let tls = matches!(scheme, "rtmps" | "https").then(|| {
            match authority.rsplit_once(':') {
                Some((h, p)) if !p.contains(']') => h,
                _ => authority,
            }
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
        });
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.contains(']'))
        {
            authority.to_string()
        } else {
            format!("{authority}:{default_port}")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("{url}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: no address"))?;
        if scheme.starts_with("rtmp") {
            let (app, name) = path
                .split_once('/')
                .filter(|(a, n)| !a.is_empty() && !n.is_empty())
                .ok_or_else(|| format!("{url}: expected rtmp://host/app/name"))?;
            Ok(Target::Rtmp {
                addr,
                app: app.to_string(),
                name: name.to_string(),
                tc_url: format!("{scheme}://{authority}/{app}"),
                tls,
            })
        } else if path.split('?').next().is_some_and(|p| p.ends_with(".m3u8")) {
            if tls.is_some() {
                return Err(format!("{url}: HLS over https:// is not supported"));
            }
            Ok(Target::Hls {
                addr,
                host: authority.to_string(),
                path: format!("/{path}"),
            })
        } else {
            Ok(Target::Http {
                addr,
                host: authority.to_string(),
                path: format!("/{path}"),
                tls,
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = Target::parse("rtmp://127.0.0.1:1936/live/s{n}?k=v", 7).unwrap();
        assert_eq!(
            t,
            Target::Rtmp {
                addr: "127.0.0.1:1936".parse().unwrap(),
                app: "live".into(),
                name: "s7?k=v".into(),
                tc_url: "rtmp://127.0.0.1:1936/live".into(),
                tls: None,
            }
        );
        let t = Target::parse("rtmps://127.0.0.1:1937/live/s", 0).unwrap();
        assert!(
            matches!(&t, Target::Rtmp { tls: Some(h), tc_url, .. } if h == "127.0.0.1" && tc_url == "rtmps://127.0.0.1:1937/live"),
            "{t:?}"
        );
        let t = Target::parse("https://localhost:8443/live/s.flv", 0).unwrap();
        assert!(
            matches!(&t, Target::Http { tls: Some(h), path, .. } if h == "localhost" && path == "/live/s.flv"),
            "{t:?}"
        );
        assert!(Target::parse("https://127.0.0.1:8443/live/s.m3u8", 0).is_err());
        let t = Target::parse("http://127.0.0.1/live/a.flv", 0).unwrap();
        assert_eq!(
            t,
            Target::Http {
                addr: "127.0.0.1:80".parse().unwrap(),
                host: "127.0.0.1".into(),
                path: "/live/a.flv".into(),
                tls: None,
            }
        );
        let t = Target::parse("http://127.0.0.1:8080/live/s{n}.m3u8?k=1", 3).unwrap();
        assert_eq!(
            t,
            Target::Hls {
                addr: "127.0.0.1:8080".parse().unwrap(),
                host: "127.0.0.1:8080".into(),
                path: "/live/s3.m3u8?k=1".into(),
            }
        );
        assert!(Target::parse("rtmp://127.0.0.1/live", 0).is_err());
        assert!(Target::parse("srt://x/y/z", 0).is_err());
    }
}
