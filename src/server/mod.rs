//! `raft-injector serve`: the webhook over HTTPS plus the health and metrics port.

pub mod app;
pub mod budget;
pub mod health;
pub mod listener;
pub mod metrics;
pub mod own_certs;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cluster::cache::Caches;
use crate::cluster::Lookup;
use crate::policy::Settings;
use app::AppState;
use health::Readiness;
use metrics::Metrics;
use own_certs::{OwnCerts, OwnCertsConfig};
use tls::{CertPaths, CertReloader};

/// Where the serving pair comes from.
#[derive(Clone, Debug)]
pub enum CertSource {
    /// PEM files (a mounted Secret), polled for changes.
    Files(CertPaths),
    /// A Secret the webhook keeps itself, with the caBundles ([`own_certs`]).
    Secret(OwnCertsConfig),
}

/// Everything `serve` needs, already checked.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub certs: CertSource,
    pub settings: Settings,
    pub cert_reload_interval: Duration,
    /// After SIGTERM: keep serving (not ready) this long, then drain for `shutdown_grace`.
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
    pub limits: listener::Limits,
    /// A request body must arrive within this.
    pub body_timeout: Duration,
    /// Bytes of request bodies buffered by all requests together (see [`budget`]).
    pub body_budget: usize,
}

/// File descriptors kept free of the connection cap: watches, certificate reads, the
/// metrics port.
const RESERVED_FDS: u64 = 128;

/// Memory the process uses besides connections and request bodies (caches, runtime,
/// certificates; about 26 MiB idle in a cluster), with room for growth.
const BASELINE_MEMORY: usize = 48 * 1024 * 1024;

/// The container's memory limit: cgroup v2's `memory.max`, else cgroup v1's limit; `None`
/// when unlimited or unknown.
fn memory_limit() -> Option<u64> {
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|path| std::fs::read_to_string(path).ok())
    .and_then(|text| text.trim().parse::<u64>().ok())
    // cgroup v1 reports "no limit" as a number near i64::MAX.
    .filter(|&bytes| bytes < 1 << 50)
}

/// The connection cap: `wanted`, lowered to what the open-file limit (raised to its hard
/// limit first) and the memory limit beside the body budget allow, so the cap (not EMFILE
/// or the OOM killer) decides which connections are turned away.
fn connection_cap(wanted: usize, body_budget: usize) -> usize {
    let fds = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let fits = usize::try_from(fds.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX);
    if fits < wanted {
        tracing::warn!(
            open_files = fds,
            max_connections = fits,
            "the open-file limit is below --max-connections; using a lower cap"
        );
    }
    let limit = memory_limit();
    let room = listener::memory_cap(limit, body_budget, BASELINE_MEMORY).unwrap_or(usize::MAX);
    if room < wanted.min(fits) {
        tracing::warn!(
            memory_limit = limit.unwrap_or_default(),
            body_budget,
            per_connection = listener::CONNECTION_BYTES,
            max_connections = room,
            "the memory limit holds fewer connections than --max-connections beside the body budget; using a lower cap"
        );
    }
    wanted.min(fits).min(room)
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("serving certificate: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG): {0}")]
    Kube(#[from] kube::Error),
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Resolves on SIGTERM or Ctrl-C.
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the webhook until SIGTERM, then drains in-flight requests.
pub async fn run(config: ServeConfig) -> Result<(), ServeError> {
    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::default());

    let client = kube::Client::try_default().await?;
    let caches = Caches::start(client.clone(), readiness.caches_synced.clone());

    // The side port first, so /livez answers while the certificate is being settled.
    let (stop, stopped) = watch::channel(false);
    let side = bind(config.metrics_addr).await?;
    let mut side_stopped = stopped.clone();
    let side_app = health::router(readiness.clone(), metrics.clone());
    let side_server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = side_stopped.changed().await;
        };
        if let Err(error) = axum::serve(side, side_app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "metrics server failed");
        }
    });

    let reloader = match config.certs.clone() {
        CertSource::Files(paths) => {
            let reloader = CertReloader::load(paths)?;
            tokio::spawn(
                reloader
                    .clone()
                    .watch(config.cert_reload_interval, metrics.clone()),
            );
            reloader
        }
        CertSource::Secret(own) => {
            let own = OwnCerts::new(client.clone(), own);
            let reloader = tokio::select! {
                reloader = own.first() => reloader,
                _ = termination() => return Ok(()),
            };
            tokio::spawn(own.keep(
                reloader.clone(),
                config.cert_reload_interval,
                metrics.clone(),
                readiness.clone(),
            ));
            reloader
        }
    };
    if let Some(der) = reloader.current_certificate() {
        metrics.serving_certificate(&der);
    }
    readiness.certs_loaded.store(true, Ordering::Release);
    let tls = Arc::new(tls::server_config(reloader.clone())?);

    let state = AppState {
        lookup: Arc::new(caches) as Arc<dyn Lookup>,
        settings: Arc::new(config.settings.clone()),
        metrics: metrics.clone(),
        cache_grace: crate::cluster::CACHE_GRACE,
        body_timeout: config.body_timeout,
        budget: metrics.body_budget(config.body_budget),
    };
    let limits = listener::Limits {
        max_connections: connection_cap(config.limits.max_connections, config.body_budget),
        ..config.limits
    };
    let https = bind(config.addr).await?;
    tracing::info!(addr = %config.addr, metrics_addr = %config.metrics_addr, "raft-injector serving");

    let webhook = tokio::spawn(listener::serve_tls(
        https,
        tls,
        app::router(state),
        limits,
        metrics,
        stopped,
        config.shutdown_grace,
    ));

    termination().await;
    readiness.shutting_down.store(true, Ordering::Release);
    if !config.shutdown_delay.is_zero() {
        tracing::info!(
            delay = ?config.shutdown_delay,
            "termination signal received; not ready, still serving while endpoints are updated"
        );
        tokio::select! {
            _ = tokio::time::sleep(config.shutdown_delay) => {}
            // A second signal means: now.
            _ = termination() => {}
        }
    }
    tracing::info!("finishing in-flight requests");
    let _ = stop.send(true);
    let _ = webhook.await;
    let _ = side_server.await;
    Ok(())
}
