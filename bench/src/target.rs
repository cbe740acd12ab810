//! Publish and play URLs: `rtmp://host[:port]/app/name[?query]`,
//! `http://host[:port]/path.flv` and `http://host[:port]/path.m3u8` (HLS), with `{n}` replaced
//! by the stream index.

use std::net::{SocketAddr, ToSocketAddrs};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Rtmp {
        addr: SocketAddr,
        app: String,
        /// Stream name with its `?query`, as sent in play/publish.
        name: String,
        tc_url: String,
    },
    Http {
        addr: SocketAddr,
        host: String,
        path: String,
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
            _ => return Err(format!("{url}: only rtmp:// and http:// are supported")),
        };
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
        if scheme == "rtmp" {
            let (app, name) = path
                .split_once('/')
                .filter(|(a, n)| !a.is_empty() && !n.is_empty())
                .ok_or_else(|| format!("{url}: expected rtmp://host/app/name"))?;
            Ok(Target::Rtmp {
                addr,
                app: app.to_string(),
                name: name.to_string(),
                tc_url: format!("rtmp://{authority}/{app}"),
            })
        } else if path.split('?').next().is_some_and(|p| p.ends_with(".m3u8")) {
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
            }
        );
        let t = Target::parse("http://127.0.0.1/live/a.flv", 0).unwrap();
        assert_eq!(
            t,
            Target::Http {
                addr: "127.0.0.1:80".parse().unwrap(),
                host: "127.0.0.1".into(),
                path: "/live/a.flv".into(),
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
