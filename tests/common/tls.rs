//! The webhook's router behind the real rustls listener, with a fresh certificate, and a
//! raw TLS client for tests that must control every byte.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use raft_injector::certs::{issue, write_to, CertRequest};
use raft_injector::server::listener::{serve_tls, Limits};
use raft_injector::server::metrics::Metrics;
use raft_injector::server::tls::{server_config, CertPaths, CertReloader};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Writes a CA and a serving pair for 127.0.0.1 into `dir`.
pub fn issued(dir: &Path) -> CertPaths {
    let request = CertRequest {
        service: "raft-injector".to_owned(),
        namespace: "raft-injector".to_owned(),
        cluster_domain: "cluster.local".to_owned(),
        ips: vec!["127.0.0.1".parse().unwrap()],
        days: 1,
    };
    write_to(dir, &issue(&request, None).unwrap()).unwrap();
    CertPaths {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    }
}

/// A running HTTPS webhook.
pub struct Server {
    pub addr: SocketAddr,
    pub stop: watch::Sender<bool>,
    pub task: JoinHandle<()>,
    pub metrics: Arc<Metrics>,
}

/// Serves `app` on a free loopback port under `limits`.
pub async fn start(paths: CertPaths, app: axum::Router, limits: Limits) -> Server {
    let reloader = CertReloader::load(paths).expect("pair loads");
    let config = Arc::new(server_config(reloader).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let metrics = Arc::new(Metrics::default());
    let task = tokio::spawn(serve_tls(
        listener,
        config,
        app,
        limits,
        metrics.clone(),
        stopped,
        Duration::from_secs(5),
    ));
    Server {
        addr,
        stop,
        task,
        metrics,
    }
}

/// A TLS client that trusts the CA in `ca_pem` and offers `alpn`.
pub fn connector(ca_pem: &[u8], alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Opens a TLS connection to `addr`.
pub async fn connect(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await.unwrap()
}
