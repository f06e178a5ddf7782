//! The HTTPS accept loop. kube-apiserver is the only client that matters, and it must never
//! be locked out by clients that are slow, stalled or malicious, so every connection lives
//! under limits:
//!
//! - the TLS handshake and each request's headers must arrive within the header timeout;
//! - a connection with no request in flight is closed after the idle timeout, and one that
//!   never completed a request after the header timeout;
//! - at most `max_connections` are open. At the cap, a new connection evicts the stalled
//!   connection that has been quiet longest (one that never sent a whole request first), and
//!   is refused only when every open connection is serving a request.
//!
//! Protocol comes from ALPN (`h2`, else HTTP/1.1), so no byte sniffing can stall a
//! connection. On shutdown, connections finish their requests and close, for at most the
//! grace period.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::metrics::{Closed, Metrics};

/// Concurrent HTTP/2 streams per connection (kube-apiserver opens more connections when it
/// needs more).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 32;

/// The most a connection buffers of a request's head (request line and headers): hyper's
/// own default is about 400 KiB per HTTP/1.1 connection, which a thousand clients each
/// stalling inside one long header line turn into 400 MiB. The API server's heads are well
/// under 2 KiB; a longer one is answered 431.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// What one open connection may cost at most, for the cap the memory limit allows (see
/// [`memory_cap`]): TLS record buffers both ways (about 34 KiB), the head buffer, hyper's
/// write buffer and HTTP/2 state, with room to spare.
pub const CONNECTION_BYTES: usize = 128 * 1024;

/// Limits on every HTTPS connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// For the TLS handshake, and for the headers of each request.
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections at most; see the module docs for what happens at the cap.
    pub max_connections: usize,
}

/// The connections that fit in `memory_limit` bytes beside the request-body budget and the
/// process's own `baseline`; `None` when there is no limit to fit in.
pub fn memory_cap(memory_limit: Option<u64>, body_budget: usize, baseline: usize) -> Option<usize> {
    let limit = usize::try_from(memory_limit?).unwrap_or(usize::MAX);
    let room = limit.saturating_sub(body_budget).saturating_sub(baseline);
    Some((room / CONNECTION_BYTES).max(1))
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1000,
        }
    }
}

/// What one connection has been doing, shared by its task, its requests and the registry.
struct Activity {
    opened: Instant,
    last_active: Mutex<Instant>,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    evicting: AtomicBool,
    evict: Notify,
}

impl Activity {
    fn new() -> Activity {
        let now = Instant::now();
        Activity {
            opened: now,
            last_active: Mutex::new(now),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            evicting: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }

    fn touch(&self) {
        if let Ok(mut last) = self.last_active.lock() {
            *last = Instant::now();
        }
    }

    fn last_active(&self) -> Instant {
        self.last_active.lock().map_or(self.opened, |last| *last)
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(self.clone())
    }

    fn is_busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// When this connection, idle now, is to be closed.
    fn idle_deadline(&self, limits: &Limits) -> Instant {
        if self.requests.load(Ordering::Acquire) == 0 {
            self.opened + limits.header_timeout
        } else {
            self.last_active() + limits.idle_timeout
        }
    }
}

/// One request in flight; ending it (even by the client going away) counts as activity.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

/// The open connections.
struct Registry {
    max: usize,
    metrics: Arc<Metrics>,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Registry {
    fn new(max: usize, metrics: Arc<Metrics>) -> Arc<Registry> {
        Arc::new(Registry {
            max: max.max(1),
            metrics,
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        })
    }

    fn len(&self) -> usize {
        self.open.lock().map_or(0, |open| open.len())
    }

    /// Makes room for a new connection and registers it, or returns `None` when every open
    /// connection is serving a request (the new one is then refused).
    fn admit(self: &Arc<Self>) -> Option<Registered> {
        let metrics = &self.metrics;
        let mut open = self.open.lock().ok()?;
        let live = open
            .values()
            .filter(|a| !a.evicting.load(Ordering::Acquire))
            .count();
        if live >= self.max {
            // Never-used connections first, then the one quiet for longest.
            let victim = open
                .values()
                .filter(|a| !a.evicting.load(Ordering::Acquire) && !a.is_busy())
                .min_by_key(|a| (a.requests.load(Ordering::Acquire) > 0, a.last_active()))?
                .clone();
            victim.evicting.store(true, Ordering::Release);
            victim.evict.notify_one();
            metrics.connection_closed(Closed::Evicted);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new());
        open.insert(id, activity.clone());
        metrics.connections_open(open.len());
        Some(Registered {
            id,
            activity,
            registry: self.clone(),
        })
    }

    fn evict_all(&self) {
        if let Ok(open) = self.open.lock() {
            for activity in open.values() {
                activity.evict.notify_one();
            }
        }
    }
}

/// A connection's place in the registry, given up when its task ends.
struct Registered {
    id: u64,
    activity: Arc<Activity>,
    registry: Arc<Registry>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut open) = self.registry.open.lock() {
            open.remove(&self.id);
            self.registry.metrics.connections_open(open.len());
        }
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` flips, then drains for at most `grace`.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let acceptor = TlsAcceptor::from(tls);
    let registry = Registry::new(limits.max_connections, metrics.clone());

    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors despite the cap; back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // Admission answers are small; Nagle's algorithm would hold them for a delayed ACK.
        let _ = tcp.set_nodelay(true);
        let Some(registered) = registry.admit() else {
            tracing::warn!(%peer, max = limits.max_connections, "every connection is busy; refusing a new one");
            metrics.connection_closed(Closed::Refused);
            continue;
        };
        let connection = Connection {
            peer,
            app: app.clone(),
            limits,
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            registered,
        };
        tokio::spawn(connection.serve(acceptor.clone(), tcp));
    }

    drop(listener);
    tracing::info!(connections = registry.len(), "draining HTTPS connections");
    let deadline = Instant::now() + grace;
    while registry.len() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if registry.len() > 0 {
        tracing::warn!(?grace, "drain timed out; closing remaining connections");
        registry.evict_all();
    } else {
        tracing::info!("all HTTPS connections closed");
    }
}

/// Both HTTP versions' connections can be asked to finish and close.
trait GracefulShutdown {
    fn shut_down(self: Pin<&mut Self>);
}

impl<I, S> GracefulShutdown for http1::Connection<I, S>
where
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E> GracefulShutdown for http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

struct Connection {
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    registered: Registered,
}

impl Connection {
    async fn serve(mut self, acceptor: TlsAcceptor, tcp: TcpStream) {
        let activity = self.registered.activity.clone();
        let peer = self.peer;
        let handshake = tokio::time::timeout(self.limits.header_timeout, acceptor.accept(tcp));
        let stream = tokio::select! {
            result = handshake => match result {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    self.metrics.connection_closed(Closed::Handshake);
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    self.metrics.connection_closed(Closed::Handshake);
                    return;
                }
            },
            () = activity.evict.notified() => return,
            _ = self.shutdown.wait_for(|stop| *stop) => return,
        };
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let app = self.app.clone();
        let counted = activity.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = counted.begin();
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await;
                drop(in_flight);
                response
            }
        });
        let io = TokioIo::new(stream);
        if h2 {
            let connection = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(Duration::from_secs(20)))
                .keep_alive_timeout(self.limits.header_timeout)
                // Each stream may buffer a body of up to 3 MiB; few streams per connection
                // keep one client from claiming the whole body budget at once. Windows
                // bound what the connection holds unread.
                .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
                .initial_stream_window_size(256 * 1024)
                .initial_connection_window_size(1024 * 1024)
                // hyper's default lets one stream's headers grow to 16 MiB.
                .max_header_list_size(MAX_HEAD_BYTES as u32)
                .serve_connection(io, service);
            self.drive(connection).await;
        } else {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(self.limits.header_timeout)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(io, service);
            self.drive(connection).await;
        }
    }

    /// Runs the connection until it ends, closing it gracefully when it idles too long or
    /// the server shuts down, and at once when it is evicted.
    async fn drive<C>(&mut self, connection: C)
    where
        C: Future<Output = hyper::Result<()>> + GracefulShutdown,
    {
        let activity = self.registered.activity.clone();
        let peer = self.peer;
        let mut connection = std::pin::pin!(connection);
        let mut closing = *self.shutdown.borrow();
        if closing {
            connection.as_mut().shut_down();
        }
        // A connection closed for idling has nothing in flight; one that ignores the close
        // (say, an HTTP/2 client that never finished its preface) is dropped after this.
        let mut give_up_at: Option<Instant> = None;
        loop {
            // A request in flight postpones the idle check; its end is activity.
            let idle_at = if activity.is_busy() {
                Instant::now() + self.limits.idle_timeout
            } else {
                activity.idle_deadline(&self.limits)
            };
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                    return;
                }
                () = tokio::time::sleep_until(give_up_at.unwrap_or(idle_at)), if give_up_at.is_some() => {
                    tracing::debug!(%peer, "the client did not close an idle connection; dropping it");
                    return;
                }
                () = activity.evict.notified() => {
                    tracing::debug!(%peer, "connection evicted");
                    return;
                }
                _ = self.shutdown.wait_for(|stop| *stop), if !closing => {
                    closing = true;
                    connection.as_mut().shut_down();
                }
                () = tokio::time::sleep_until(idle_at), if !closing => {
                    // Still idle at the deadline (not merely past an older one)?
                    if !activity.is_busy() && Instant::now() >= activity.idle_deadline(&self.limits) {
                        tracing::debug!(%peer, "closing an idle connection");
                        self.metrics.connection_closed(Closed::Idle);
                        closing = true;
                        give_up_at = Some(Instant::now() + self.limits.header_timeout);
                        connection.as_mut().shut_down();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_limit_bounds_the_connections_beside_the_body_budget() {
        const MIB: u64 = 1024 * 1024;
        // The shipped Deployment: 256 MiB, a 64 MiB body budget, 48 MiB for the rest.
        let shipped = memory_cap(Some(256 * MIB), 64 << 20, 48 << 20).unwrap();
        assert_eq!(shipped, 1152);
        assert!(
            shipped >= Limits::default().max_connections,
            "the default cap fits"
        );
        // A tighter limit lowers the cap; one below the budget still leaves one.
        assert_eq!(memory_cap(Some(128 * MIB), 64 << 20, 48 << 20), Some(128));
        assert_eq!(memory_cap(Some(32 * MIB), 64 << 20, 48 << 20), Some(1));
        assert_eq!(memory_cap(None, 64 << 20, 48 << 20), None);
    }
}
