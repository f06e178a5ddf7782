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

/// A CREATE review of a Raft StatefulSet whose etcd container carries `env_bytes` of env:
/// its answer's patch copies that env into the join container, so the answer is larger
/// than the request.
fn large_answer_review(env_bytes: usize) -> bytes::Bytes {
    let mut review: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::root().join("tests/data/create-etcd.json")).unwrap(),
    )
    .unwrap();
    let value = "v".repeat(1000);
    let env: Vec<serde_json::Value> = (0..env_bytes / 1000)
        .map(|i| serde_json::json!({"name": format!("PAD_{i}"), "value": value}))
        .collect();
    let container = &mut review["request"]["object"]["spec"]["template"]["spec"]["containers"][0];
    container["env"].as_array_mut().unwrap().extend(env);
    bytes::Bytes::from(serde_json::to_vec(&review).unwrap())
}

/// One HTTP/2 connection whose client never opens its receive window (0 for every stream):
/// `streams` reviews sent whole, their answers never read, all held for `hold`. Returns how
/// many answers started (headers received) and how many streams were reset by the server.
async fn unread_answers(
    target: Target,
    review: bytes::Bytes,
    streams: usize,
    hold: Duration,
) -> (usize, usize) {
    let Ok(stream) = tls(&target, b"h2").await else {
        return (0, 0);
    };
    let Ok((client, connection)) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, bytes::Bytes>(stream)
        .await
    else {
        return (0, 0);
    };
    tokio::spawn(connection);
    let mut pending = Vec::new();
    for _ in 0..streams {
        let Ok(Ok(mut client)) =
            tokio::time::timeout(Duration::from_secs(10), client.clone().ready()).await
        else {
            break;
        };
        let request = http::Request::post("https://raft-injector/mutate")
            .header("content-type", "application/json")
            .header("content-length", review.len().to_string())
            .body(())
            .unwrap();
        let Ok((response, mut body)) = client.send_request(request, false) else {
            break;
        };
        let mut rest = review.clone();
        while !rest.is_empty() {
            body.reserve_capacity(rest.len().min(64 * 1024));
            match std::future::poll_fn(|cx| body.poll_capacity(cx)).await {
                Some(Ok(n)) if n > 0 => {
                    let piece = rest.split_to(n.min(rest.len()));
                    if body.send_data(piece, rest.is_empty()).is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
        pending.push(response);
    }
    let (mut started, mut reset) = (0, 0);
    let mut held = Vec::new();
    for response in pending {
        match tokio::time::timeout(Duration::from_secs(20), response).await {
            Ok(Ok(answer)) => {
                started += 1;
                held.push(answer); // its body is never read
            }
            _ => reset += 1,
        }
    }
    tokio::time::sleep(hold).await;
    // A shed answer's stream was reset: its body ends in an error at once.
    for answer in held {
        let mut body = answer.into_body();
        if let Ok(Some(Err(_))) = tokio::time::timeout(Duration::from_millis(50), body.data()).await
        {
            reset += 1;
        }
    }
    (started, reset)
}

/// HTTP/2 clients that send whole reviews and never read the answers (receive window 0):
/// `serve` stays far under its limit and answers a normal review meanwhile. The answers are
/// small here (a patch copies the container's env with JSON Patch `copy` operations, so a
/// 1 MB review gets an 8 KB answer); that unread answers stay counted in the body budget and
/// are shed for newer requests is shown by the unit tests in `src/server/budget.rs`.
#[test]
fn answers_nobody_reads_cost_bounded_memory_and_reviews_still_pass() {
    const CONNECTIONS: usize = 8;
    // The server's limit of concurrent streams per connection.
    const STREAMS: usize = 32;
    let plane = control_plane();
    let (ok, _, err) = common::controlplane::run(
        plane,
        &["apply", "-n", "default", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: etcd\nspec:\n  clusterIP: None\n  publishNotReadyAddresses: true\n  selector:\n    app: etcd\n  ports:\n    - name: peer\n      port: 2380\n",
        ),
    );
    assert!(ok, "{err}");
    let mut webhook = Webhook::start(plane, "answer-flood");
    let pid = webhook.server_pid();
    let idle = peak_rss_kib(pid);
    let review = large_answer_review(1_000_000);
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
    let hold = Duration::from_secs(10);
    let sent = review.clone();
    let attack = runtime.spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..CONNECTIONS {
            tasks.push(tokio::spawn(unread_answers(
                target.clone(),
                sent.clone(),
                STREAMS,
                hold,
            )));
        }
        let (mut answered, mut reset) = (0, 0);
        for task in tasks {
            let (a, r) = task.await.unwrap_or_default();
            answered += a;
            reset += r;
        }
        (answered, reset)
    });
    // Once most answers are waiting unread: a normal review on a fresh connection.
    std::thread::sleep(Duration::from_secs(12));
    let normal = normal_review(&webhook);
    let (answered, reset) = runtime.block_on(attack).unwrap();
    let peak = peak_rss_kib(webhook.server_pid());
    let metrics = webhook.metrics();
    assert_eq!(webhook.server_pid(), pid, "serve was restarted or replaced");
    let answer_size: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("raft_injector_admission_response_bytes_sum{webhook=\"mutate\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        answered + reset > CONNECTIONS * STREAMS / 2,
        "the attack did not get its reviews answered ({answered} answers, {reset} resets)"
    );
    assert!(
        peak < LIMIT_KIB,
        "peak RSS {} MiB with {answered} unread answers of about {} KB is over the Deployment's 256 MiB limit",
        peak / 1024,
        review.len() / 1000
    );
    let normal = normal.unwrap_or_else(|e| panic!("the normal review failed: {e}"));
    assert!(
        normal < Duration::from_secs(2),
        "the normal review took {normal:?} under the flood"
    );
    webhook.stop();
    eprintln!(
        "\nanswer flood against serve: {CONNECTIONS} HTTP/2 connections with a receive window of 0, {STREAMS} \
         reviews of {} KB each; {answered} answers started, {reset} streams reset (answers shed), \
         {answer_size:.0} answer bytes produced in all: peak RSS {} MiB (idle {} MiB, limit 256), a \
         normal review answered in {normal:?}, flood ran {:?}",
        review.len() / 1000,
        peak / 1024,
        idle / 1024,
        started.elapsed()
    );
}
