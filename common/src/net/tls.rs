//! TLS for the RTMPS and HTTPS listeners: a PEM certificate chain and key read from files and
//! re-read when either file changes (checked every few seconds) or on SIGHUP, so that a
//! renewed certificate is served to new connections without a restart. rustls with the ring
//! provider only. Must not know about RTMP or HTTP: listeners wrap their sockets with it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often the certificate and key files are checked for changes.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls certificate {path}: {message}")]
    Cert { path: PathBuf, message: String },
    #[error("tls key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificate in use, swapped whole when the files change.
#[derive(Debug)]
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// Modification times of (cert, key) when last loaded.
    loaded: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Reads a PEM chain and key into a signing `CertifiedKey`.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_err = |message: String| TlsError::Cert {
        path: cert.to_path_buf(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE block".into()));
    }
    let key_err = |message: String| TlsError::Key {
        path: key.to_path_buf(),
        message,
    };
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| key_err(e.to_string()))?;
    let signing = ring::sign::any_supported_type(&der).map_err(|e| key_err(e.to_string()))?;
    let ck = CertifiedKey::new(chain, signing);
    // A key that does not match the certificate fails here, at start or reload, not in a
    // client's handshake.
    ck.keys_match().map_err(|e| key_err(e.to_string()))?;
    Ok(ck)
}

impl CertStore {
    /// Loads the files once; an error here fails the node's start naming the file.
    pub fn load(cert_path: PathBuf, key_path: PathBuf) -> Result<Arc<Self>, TlsError> {
        let times = (mtime(&cert_path), mtime(&key_path));
        let ck = load_certified_key(&cert_path, &key_path)?;
        Ok(Arc::new(Self {
            cert_path,
            key_path,
            current: RwLock::new(Arc::new(ck)),
            loaded: RwLock::new(times),
        }))
    }

    /// Re-reads the files if either changed since the last load (`force`: in any case).
    /// A broken new pair is logged and the previous certificate stays in use.
    pub fn reload_if_changed(&self, force: bool) -> bool {
        let times = (mtime(&self.cert_path), mtime(&self.key_path));
        let last = *self.loaded.read().unwrap_or_else(|e| e.into_inner());
        if !force && times == last {
            return false;
        }
        match load_certified_key(&self.cert_path, &self.key_path) {
            Ok(ck) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ck);
                *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = times;
                info!(cert = %self.cert_path.display(), "tls certificate reloaded");
                true
            }
            Err(e) => {
                // Kept as "seen" only once the pair loads: a cert written before its key is
                // retried at the next check.
                warn!(error = %e, "tls certificate reload failed; keeping the previous one");
                false
            }
        }
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Checks the files every `RELOAD_CHECK` and on SIGHUP, until `shutdown`.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(RELOAD_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<Option<()>>();
            let force = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => false,
                _ = hangup => true,
            };
            self.reload_if_changed(force);
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Acceptors of a node's TLS listeners, sharing one certificate store.
#[derive(Clone)]
pub struct Tls {
    pub store: Arc<CertStore>,
    /// RTMPS: no ALPN.
    pub rtmps: tokio_rustls::TlsAcceptor,
    /// HTTPS: ALPN h2 and http/1.1.
    pub https: tokio_rustls::TlsAcceptor,
}

impl Tls {
    pub fn new(cert: PathBuf, key: PathBuf) -> Result<Self, TlsError> {
        let store = CertStore::load(cert, key)?;
        let config = |alpn: &[&[u8]]| -> Result<_, TlsError> {
            // Never `ServerConfig::builder()`: it panics if a second provider is in the tree.
            let mut c =
                rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
                    .with_safe_default_protocol_versions()?
                    .with_no_client_auth()
                    .with_cert_resolver(store.clone());
            c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(tokio_rustls::TlsAcceptor::from(Arc::new(c)))
        };
        Ok(Self {
            rtmps: config(&[])?,
            https: config(&[b"h2", b"http/1.1"])?,
            store,
        })
    }
}
