//! The serving certificate: loaded from PEM files, and reloaded when they change.
//!
//! Kubernetes rotates a mounted Secret by swapping a `..data` symlink, so the files are
//! polled by content rather than watched by inode. A new pair that does not load (half
//! written, key not matching) is reported and the old pair keeps serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("{path} is not valid PEM: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("the private key in {path} is not usable: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the certificate and the private key do not belong together: {0}")]
    Mismatch(#[source] rustls::Error),
}

/// Where the serving pair lives.
#[derive(Clone, Debug)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Parses a PEM certificate chain and private key into a checked signing pair.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    paths: &CertPaths,
) -> Result<CertifiedKey, TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            path: paths.cert.clone(),
            message: error.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: paths.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: paths.key.clone(),
        },
        error => TlsError::Pem {
            path: paths.key.clone(),
            message: error.to_string(),
        },
    })?;
    let signer =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|source| TlsError::Key {
            path: paths.key.clone(),
            source,
        })?;
    let pair = CertifiedKey::new(certs, signer);
    pair.keys_match().map_err(TlsError::Mismatch)?;
    Ok(pair)
}

/// Serves whichever pair loaded last, and swaps in a new one when the files change.
#[derive(Debug)]
pub struct CertReloader {
    paths: CertPaths,
    current: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    pair: Arc<CertifiedKey>,
    /// The file contents the pair was built from, to notice changes cheaply.
    source: (Vec<u8>, Vec<u8>),
}

impl CertReloader {
    /// Loads the pair once; fails when it is not usable, so a bad start is loud.
    pub fn load(paths: CertPaths) -> Result<Arc<CertReloader>, TlsError> {
        let source = (read(&paths.cert)?, read(&paths.key)?);
        let pair = Arc::new(certified_key(&source.0, &source.1, &paths)?);
        Ok(Arc::new(CertReloader {
            paths,
            current: RwLock::new(Loaded { pair, source }),
        }))
    }

    /// A pair held in memory (`serve --cert-secret`); `paths` only names it in errors.
    pub fn from_pem(
        cert: &[u8],
        key: &[u8],
        paths: CertPaths,
    ) -> Result<Arc<CertReloader>, TlsError> {
        let source = (cert.to_vec(), key.to_vec());
        let pair = Arc::new(certified_key(&source.0, &source.1, &paths)?);
        Ok(Arc::new(CertReloader {
            paths,
            current: RwLock::new(Loaded { pair, source }),
        }))
    }

    /// Re-reads the files. `Ok(true)` when a new pair was taken, `Ok(false)` when nothing
    /// changed, `Err` when the files changed but the new pair is not usable (the old one stays).
    pub fn reload(&self) -> Result<bool, TlsError> {
        let source = (read(&self.paths.cert)?, read(&self.paths.key)?);
        self.replace(source)
    }

    /// Takes `(cert, key)` PEM if it differs from the pair served now; as [`Self::reload`].
    pub fn replace(&self, source: (Vec<u8>, Vec<u8>)) -> Result<bool, TlsError> {
        let unchanged = self
            .current
            .read()
            .map(|loaded| loaded.source == source)
            .unwrap_or(false);
        if unchanged {
            return Ok(false);
        }
        let pair = Arc::new(certified_key(&source.0, &source.1, &self.paths)?);
        if let Ok(mut loaded) = self.current.write() {
            *loaded = Loaded { pair, source };
        }
        Ok(true)
    }

    /// Polls the files every `every` until the task is dropped.
    pub async fn watch(self: Arc<Self>, every: Duration, metrics: Arc<super::metrics::Metrics>) {
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let reloader = self.clone();
            let result = tokio::task::spawn_blocking(move || reloader.reload()).await;
            match result {
                Ok(Ok(false)) => {}
                Ok(Ok(true)) => {
                    metrics.cert_reload(true);
                    if let Some(der) = self.current_certificate() {
                        metrics.serving_certificate(&der);
                    }
                    tracing::info!(cert = %self.paths.cert.display(), "serving certificate reloaded");
                }
                Ok(Err(error)) => {
                    metrics.cert_reload(false);
                    tracing::error!(%error, "new serving certificate rejected; still serving the previous one");
                }
                Err(error) => tracing::error!(%error, "certificate reload task failed"),
            }
        }
    }

    /// DER of the leaf certificate being served now.
    pub fn current_certificate(&self) -> Option<Vec<u8>> {
        self.pair()
            .and_then(|pair| pair.cert.first().map(|c| c.as_ref().to_vec()))
    }

    fn pair(&self) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|loaded| loaded.pair.clone())
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pair()
    }
}

/// TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`, certificate from the reloader.
pub fn server_config(reloader: Arc<CertReloader>) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(reloader);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
