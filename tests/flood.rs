//! No client can exhaust the webhook's memory with request bodies (issue: a tenant reaching
//! the webhook's Service). The real `raft-injector serve`, with the shipped defaults, is
//! flooded with large bodies that never finish: over HTTP/1.1 from many connections, then
//! over one HTTP/2 connection with every stream it allows. Its peak RSS stays under the
//! Deployment's 256 MiB limit, it keeps running, it reports what it shed in `/metrics`, and
//! a normal review sent meanwhile on a fresh connection is answered.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::controlplane::{control_plane, Webhook};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The shipped Deployment's memory limit.
const LIMIT_KIB: u64 = 256 * 1024;
/// What each body declares, and how much of it is sent (it never finishes).
const DECLARED: usize = 3_000_000;
const SENT: usize = 2_900_000;
const HTTP1_CONNECTIONS: usize = 150;
/// More than the server allows at once; the excess is refused by HTTP/2 itself.
const HTTP2_STREAMS: usize = 64;
/// Connections each stalling inside one header line of this many bytes (the shipped
/// connection cap is 1,000).
const HEADER_CONNECTIONS: usize = 1000;
const HEADER_LINE: usize = 400_000;

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("serve runs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmHWM is reported")
}

/// Where the flood goes: the webhook's port and the CA that signed its certificate.
#[derive(Clone)]
struct Target {
    port: u16,
    ca: std::path::PathBuf,
}

fn connector(target: &Target, alpn: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(&target.ca).unwrap();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

async fn tls(
    target: &Target,
    alpn: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", target.port)).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    connector(target, alpn).connect(name, tcp).await
}

/// One HTTP/1.1 connection sending most of a large body, then holding it open.
async fn http1_flood(target: Target, hold: Duration) {
    let Ok(mut stream) = tls(&target, b"http/1.1").await else {
        return;
    };
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: raft-injector\r\ncontent-type: application/json\r\ncontent-length: {DECLARED}\r\n\r\n{{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{{\"uid\":\""
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = head.len();
    while sent < SENT {
        if stream.write_all(&chunk).await.is_err() {
            return; // shed: the server answered and closed
        }
        sent += chunk.len();
    }
    tokio::time::sleep(hold).await;
}

/// One HTTP/1.1 connection stalling inside one long header line: the request line, then
/// `HEADER_LINE` bytes of a header that never ends, then nothing until `hold` is over.
async fn header_flood(target: Target, hold: Duration) -> bool {
    let Ok(mut stream) = tls(&target, b"http/1.1").await else {
        return false;
    };
    let mut head = b"POST /validate HTTP/1.1\r\nhost: raft-injector\r\nx-pad: ".to_vec();
    head.resize(head.len() + HEADER_LINE, b'a');
    let sent = stream.write_all(&head).await.is_ok();
    tokio::time::sleep(hold).await;
    sent
}

/// One HTTP/2 connection, as many streams as it will take, each sending most of a large
/// body without ending it.
async fn http2_flood(target: Target, hold: Duration) -> usize {
    let Ok(stream) = tls(&target, b"h2").await else {
        return 0;
    };
    let Ok((client, connection)) = h2::client::handshake(stream).await else {
        return 0;
    };
    tokio::spawn(connection);
    let mut senders = Vec::new();
    for _ in 0..HTTP2_STREAMS {
        let Ok(mut client) = client.clone().ready().await else {
            break;
        };
        let request = http::Request::post("https://raft-injector/validate")
            .header("content-type", "application/json")
            .header("content-length", DECLARED.to_string())
            .body(())
            .unwrap();
        let Ok((_response, mut body)) = client.send_request(request, false) else {
            break;
        };
        senders.push(tokio::spawn(async move {
            let chunk = bytes::Bytes::from(vec![b'a'; 16 * 1024]);
            let mut sent = 0;
            while sent < SENT {
                body.reserve_capacity(chunk.len());
                match std::future::poll_fn(|cx| body.poll_capacity(cx)).await {
                    Some(Ok(_)) => {}
                    _ => return,
                }
                if body.send_data(chunk.clone(), false).is_err() {
                    return;
                }
                sent += chunk.len();
            }
            tokio::time::sleep(hold).await;
            drop(body);
        }));
    }
    let streams = senders.len();
    for sender in senders {
        let _ = sender.await;
    }
    streams
}

/// A normal review on a fresh connection; how long it took, or what went wrong. (A review
/// of a StatefulSet that is not a Raft workload: one of a Raft StatefulSet whose Service is
/// missing would wait the caches' 1.5 s grace for it, which is not what is measured here.)
fn normal_review(webhook: &Webhook) -> Result<Duration, String> {
    let started = Instant::now();
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg("--cacert")
        .arg(webhook.certs.join("ca.crt"))
        .args(["-H", "content-type: application/json", "--data-binary"])
        .arg(format!(
            "@{}",
            common::root()
                .join("tests/data/create-unlabelled.json")
                .display()
        ))
        .arg(format!("https://127.0.0.1:{}/validate", webhook.port))
        .output()
        .map_err(|e| e.to_string())?;
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    if code == "200" {
        Ok(started.elapsed())
    } else {
        Err(format!("HTTP {code} after {:?}", started.elapsed()))
    }
}

fn shed_total(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("raft_injector_requests_shed_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_flood_of_large_bodies_costs_bounded_memory_and_reviews_still_pass() {
    let plane = control_plane();
    let mut webhook = Webhook::start(plane, "flood");
    let pid = webhook.server_pid();
    let before = peak_rss_kib(pid);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let hold = Duration::from_secs(6);
    let mut report = vec![format!("idle peak RSS {} MiB", before / 1024)];

    for (name, flood) in [("HTTP/1.1", 1), ("HTTP/2", 2)] {
        // Each flood's own peak: writing 5 to clear_refs resets VmHWM.
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        let target = Target {
            port: webhook.port,
            ca: webhook.certs.join("ca.crt"),
        };
        let started = Instant::now();
        let attack = runtime.spawn(async move {
            match flood {
                1 => {
                    let mut tasks = Vec::new();
                    for _ in 0..HTTP1_CONNECTIONS {
                        tasks.push(tokio::spawn(http1_flood(target.clone(), hold)));
                    }
                    for task in tasks {
                        let _ = task.await;
                    }
                    HTTP1_CONNECTIONS
                }
                _ => http2_flood(target, hold).await,
            }
        });
        // A normal review in the middle of it, on a fresh connection.
        std::thread::sleep(Duration::from_secs(2));
        let review = normal_review(&webhook);
        let attackers = runtime.block_on(attack).unwrap();
        let peak = peak_rss_kib(webhook.server_pid());
        let metrics = webhook.metrics();
        assert_eq!(
            webhook.server_pid(),
            pid,
            "{name}: serve was restarted or replaced"
        );
        assert!(
            peak < LIMIT_KIB,
            "{name}: peak RSS {} MiB is over the Deployment's 256 MiB limit",
            peak / 1024
        );
        let review = review.unwrap_or_else(|e| panic!("{name}: the normal review failed: {e}"));
        assert!(
            shed_total(&metrics) > 0.0,
            "{name}: nothing shed, so the flood did not reach the budget:\n{metrics}"
        );
        report.push(format!(
            "{name}: {attackers} {}, bodies of {SENT} of {DECLARED} bytes: peak RSS {} MiB (limit 256), \
             shed so far {}, a normal review answered in {review:?}, flood ran {:?}",
            if flood == 1 { "connections" } else { "streams requested on one connection" },
            peak / 1024,
            shed_total(&metrics),
            started.elapsed()
        ));
    }
    webhook.stop();
    eprintln!("\nbody flood against serve:\n  {}", report.join("\n  "));
}

#[test]
fn a_flood_of_endless_header_lines_costs_bounded_memory_and_reviews_still_pass() {
    let plane = control_plane();
    let mut webhook = Webhook::start(plane, "header-flood");
    let pid = webhook.server_pid();
    let idle = peak_rss_kib(pid);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let target = Target {
        port: webhook.port,
        ca: webhook.certs.join("ca.crt"),
    };
    let started = Instant::now();
    let hold = Duration::from_secs(8);
    let attack = runtime.spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..HEADER_CONNECTIONS {
            tasks.push(tokio::spawn(header_flood(target.clone(), hold)));
        }
        let mut sent = 0;
        for task in tasks {
            sent += usize::from(task.await.unwrap_or(false));
        }
        sent
    });
    // A normal review while the heads are held, on a fresh connection.
    std::thread::sleep(Duration::from_secs(4));
    let review = normal_review(&webhook);
    let sent = runtime.block_on(attack).unwrap();
    let peak = peak_rss_kib(webhook.server_pid());
    assert_eq!(webhook.server_pid(), pid, "serve was restarted or replaced");
    assert!(
        peak < LIMIT_KIB,
        "peak RSS {} MiB is over the Deployment's 256 MiB limit",
        peak / 1024
    );
    let review = review.unwrap_or_else(|e| panic!("the normal review failed: {e}"));
    assert!(
        review < Duration::from_secs(2),
        "the normal review took {review:?} under the flood"
    );
    webhook.stop();
    eprintln!(
        "\nheader flood against serve: {HEADER_CONNECTIONS} TLS connections ({sent} sent their head), each \
         stalling in a {HEADER_LINE}-byte header line: peak RSS {} MiB (idle {} MiB, limit 256), \
         a normal review answered in {review:?}, flood ran {:?}",
        peak / 1024,
        idle / 1024,
        started.elapsed()
    );
}
