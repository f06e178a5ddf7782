//! Slow, stalled and greedy clients against the real rustls listener: none of them may hold
//! the webhook, and a well-behaved review must get through while they try.

mod common;

use std::time::{Duration, Instant};

use common::tls::{connect, connector, issued, start, Server};
use raft_injector::server::listener::Limits;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn review() -> String {
    common::read("tests/data/create-even-replicas.json")
}

fn cluster() -> raft_injector::cluster::documents::Documents {
    common::lookup(&["examples/denied-even-replicas.yaml"])
}

/// How long the test router waits for a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(2);

struct Setup {
    server: Server,
    ca: Vec<u8>,
    _dir: tempfile::TempDir,
}

async fn setup(limits: Limits) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let paths = issued(dir.path());
    let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let app = raft_injector::server::app::router(raft_injector::server::app::AppState {
        lookup: std::sync::Arc::new(cluster()),
        settings: std::sync::Arc::new(common::settings()),
        metrics: Default::default(),
        cache_grace: Duration::ZERO,
        body_timeout: BODY_TIMEOUT,
        budget: raft_injector::server::budget::BodyBudget::new(
            raft_injector::server::app::DEFAULT_BODY_BUDGET,
        ),
    });
    let server = start(paths, app, limits).await;
    Setup {
        server,
        ca,
        _dir: dir,
    }
}

/// An HTTP/1.1 client of its own (so its own connection) that trusts the test CA.
fn client(setup: &Setup) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&setup.ca).unwrap())
        .http1_only()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// One review over a fresh HTTP/1.1 connection; returns the response's `allowed`.
async fn one_review(setup: &Setup) -> Value {
    review_with(&client(setup), setup).await
}

async fn review_with(client: &reqwest::Client, setup: &Setup) -> Value {
    let response = client
        .post(format!(
            "https://127.0.0.1:{}/validate",
            setup.server.addr.port()
        ))
        .header("content-type", "application/json")
        .body(review())
        .send()
        .await
        .expect("the review is answered");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["response"]["allowed"].clone()
}

/// Waits until the server closes `stream` (EOF or reset), at most `within`; returns
/// whether it did.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // e.g. a 408 or an HTTP/2 GOAWAY before the close
        }
    }
}

fn metric(setup: &Setup, name: &str) -> f64 {
    setup
        .server
        .metrics
        .render()
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_half_headers_are_closed_within_the_header_timeout_and_a_review_gets_through()
{
    // The test holds both ends of every connection.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let header_timeout = Duration::from_secs(4);
    let setup = setup(Limits {
        header_timeout,
        idle_timeout: Duration::from_secs(60),
        max_connections: 4096,
    })
    .await;
    let tls = connector(&setup.ca, &[b"http/1.1"]);

    let mut attackers = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let mut stream = connect(&tls, setup.server.addr).await;
        stream
            .write_all(b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
            .await
            .unwrap();
        stream.flush().await.unwrap();
        attackers.push(stream);
    }
    let last_sent = Instant::now();

    // During the attack, a normal review is answered before any attacker has been let go.
    let started = Instant::now();
    assert_eq!(
        one_review(&setup).await,
        false,
        "the even-replica review is denied"
    );
    let took = started.elapsed();
    assert!(
        took < header_timeout,
        "the review waited {took:?}, as long as the stalled clients are allowed to stall"
    );

    // Every attacker is closed by the server within the header timeout (plus scheduling slack).
    let deadline = header_timeout + Duration::from_secs(5);
    let mut open = 0;
    for stream in &mut attackers {
        let left = deadline.saturating_sub(last_sent.elapsed());
        if !closed_within(stream, left).await {
            open += 1;
        }
    }
    assert_eq!(
        open, 0,
        "{open} of 2000 stalled connections are still open after {deadline:?}"
    );
    drop(attackers);
    assert_eq!(one_review(&setup).await, false, "still serving afterwards");
}

#[tokio::test]
async fn a_client_that_never_starts_tls_is_dropped_after_the_header_timeout() {
    let setup = setup(Limits {
        header_timeout: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let mut silent = TcpStream::connect(setup.server.addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    assert!(
        metric(
            &setup,
            "raft_injector_https_connections_closed_total{reason=\"handshake\"}"
        ) >= 1.0
    );
}

#[tokio::test]
async fn an_http2_connection_that_sends_no_request_is_closed() {
    let setup = setup(Limits {
        header_timeout: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let tls = connector(&setup.ca, &[b"h2"]);
    let mut stream = connect(&tls, setup.server.addr).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // The connection preface, then nothing.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
    assert!(
        metric(
            &setup,
            "raft_injector_https_connections_closed_total{reason=\"idle\"}"
        ) >= 1.0
    );
}

#[tokio::test]
async fn a_body_that_trickles_gets_408_within_the_body_timeout() {
    let setup = setup(Limits::default()).await;
    let tls = connector(&setup.ca, &[b"http/1.1"]);
    let mut stream = connect(&tls, setup.server.addr).await;
    // Send 10 of 1000 bytes, then stall.
    let started = Instant::now();
    stream
        .write_all(
            b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"apiVersi",
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf))
            .await
            .expect("answered before the test's own deadline")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        response.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let took = started.elapsed();
    assert!(
        took >= BODY_TIMEOUT,
        "answered after {took:?}, before the body timeout"
    );
}

#[tokio::test]
async fn at_the_cap_connections_that_never_sent_a_request_make_room_first() {
    let setup = setup(Limits {
        header_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        max_connections: 3,
    })
    .await;
    // Three connections that never finish a TLS handshake fill the cap...
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(TcpStream::connect(setup.server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...yet real clients get through, each new one evicting a stalled connection rather
    // than a client that was served.
    let clients: Vec<reqwest::Client> = (0..3).map(|_| client(&setup)).collect();
    for client in &clients {
        assert_eq!(review_with(client, &setup).await, false);
    }
    for (i, stream) in stalled.iter_mut().enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(2)).await,
            "stalled connection {i} was kept"
        );
    }
    assert_eq!(
        metric(
            &setup,
            "raft_injector_https_connections_closed_total{reason=\"evicted\"}"
        ),
        3.0
    );
    // The served clients' connections are all still usable.
    for client in &clients {
        assert_eq!(review_with(client, &setup).await, false);
    }
}
