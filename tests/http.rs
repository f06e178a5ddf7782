//! The webhook over HTTP: full AdmissionReview files through the real axum router, and
//! the same router behind a real rustls listener.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::{accepts, app, apply, lookup, patch_of, post, rejects, respond};
use raft_injector::server::app::MAX_BODY_BYTES;
use serde_json::Value;

fn review(name: &str) -> Value {
    serde_json::from_str(&common::read(&format!("tests/data/{name}.json")))
        .expect("fixture is JSON")
}

fn cluster() -> raft_injector::cluster::documents::Documents {
    lookup(&[
        "examples/etcd.yaml",
        "examples/ratis-app.yaml",
        "examples/denied-even-replicas.yaml",
    ])
}

#[tokio::test]
async fn create_is_injected_and_the_patch_applies() {
    let request = review("create-etcd");
    let response = respond(app(cluster()), "/mutate", &request).await;
    assert!(accepts(&response).is_empty());
    let injected = apply(&request["request"]["object"], &patch_of(&response));
    let env = injected["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = env.iter().map(|e| e["name"].as_str().unwrap()).collect();
    for wanted in ["POD_NAME", "RAFT_ID", "RAFT_PEERS", "ETCD_INITIAL_CLUSTER"] {
        assert!(names.contains(&wanted), "{wanted} missing: {names:?}");
    }
    assert!(injected["metadata"]["annotations"]["raft-injector.io/status"].is_string());

    // The validating webhook then sees the injected object and allows it, saying only that
    // etcd runs without TLS.
    let mut second = request.clone();
    second["request"]["object"] = injected;
    let warnings = accepts(&respond(app(cluster()), "/validate", &second).await);
    assert!(
        warnings.len() == 1 && warnings[0].contains("etcd runs without TLS"),
        "{warnings:?}"
    );
    // And a second mutation pass (reinvocation) changes nothing.
    assert!(patch_of(&respond(app(cluster()), "/mutate", &second).await)
        .0
        .is_empty());
}

#[tokio::test]
async fn uid_and_api_version_round_trip() {
    let request = review("create-etcd");
    let (status, body) = post(app(cluster()), "/validate", request.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(
        body["response"]["uid"],
        "11111111-0000-0000-0000-000000000001"
    );
}

#[tokio::test]
async fn even_replicas_are_denied_by_validate_and_left_alone_by_mutate() {
    let request = review("create-even-replicas");
    let response = respond(app(cluster()), "/validate", &request).await;
    assert_eq!(response["status"]["code"], 403);
    assert_eq!(response["status"]["reason"], "Forbidden");
    let message = rejects(&response);
    assert_eq!(
        message,
        "StatefulSet default/even-cluster: spec.replicas is 4; a Raft cluster of 4 tolerates no more failures \
         than 3 and needs a larger quorum — use 3 or 5"
    );
    let mutated = respond(app(cluster()), "/mutate", &request).await;
    accepts(&mutated);
    assert!(
        patch_of(&mutated).0.is_empty(),
        "a denied object is not injected"
    );
}

#[tokio::test]
async fn replicas_only_update_returns_no_patch() {
    let create = review("create-etcd");
    let injected = apply(
        &create["request"]["object"],
        &patch_of(&respond(app(cluster()), "/mutate", &create).await),
    );
    let mut scaled = injected.clone();
    scaled["spec"]["replicas"] = 5.into();
    let mut update = create.clone();
    update["request"]["operation"] = "UPDATE".into();
    update["request"]["object"] = scaled;
    update["request"]["oldObject"] = injected;
    let response = respond(app(cluster()), "/mutate", &update).await;
    accepts(&response);
    assert!(response.get("patch").is_none(), "{response}");
}

/// Garbage collection removes the orphan or foreground finalizer of a StatefulSet being
/// deleted with an UPDATE; by then its Service may be gone. No rule and no patch applies.
#[tokio::test]
async fn an_object_being_deleted_is_admitted_unchanged() {
    let create = review("create-etcd");
    let injected = apply(
        &create["request"]["object"],
        &patch_of(&respond(app(cluster()), "/mutate", &create).await),
    );
    let mut deleting = injected.clone();
    deleting["metadata"]["deletionTimestamp"] = "2026-12-05T20:00:00Z".into();
    deleting["metadata"]["finalizers"] = serde_json::json!([]);
    // Also even replicas, which the rules would deny.
    deleting["spec"]["replicas"] = 4.into();
    let mut update = create.clone();
    update["request"]["operation"] = "UPDATE".into();
    update["request"]["object"] = deleting;
    update["request"]["oldObject"] = injected;
    // No Service in the cluster at all.
    let empty = || lookup(&[]);
    let validated = respond(app(empty()), "/validate", &update).await;
    assert!(accepts(&validated).is_empty(), "{validated}");
    let mutated = respond(app(empty()), "/mutate", &update).await;
    accepts(&mutated);
    assert!(mutated.get("patch").is_none(), "{mutated}");

    // The same UPDATE without the deletion is denied: the exemption is what lets it pass.
    let mut edit = update.clone();
    edit["request"]["object"]["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("deletionTimestamp");
    let denied = respond(app(empty()), "/validate", &edit).await;
    assert!(rejects(&denied).contains("spec.replicas is 4"), "{denied}");
}

/// Through the webhook's own decoder of requests: a TLS StatefulSet admitted again gets no
/// patch (its Secret's volume is seen, not added a second time).
#[tokio::test]
async fn a_tls_statefulset_admitted_again_is_left_alone() {
    let mut create = review("create-etcd");
    create["request"]["object"]["metadata"]["annotations"]["raft-injector.io/tls-secret"] =
        "etcd-tls".into();
    let injected = apply(
        &create["request"]["object"],
        &patch_of(&respond(app(cluster()), "/mutate", &create).await),
    );
    let volumes = injected["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(volumes.contains("raft-injector-tls"), "{volumes}");
    let mut update = create.clone();
    update["request"]["operation"] = "UPDATE".into();
    update["request"]["object"] = injected.clone();
    update["request"]["oldObject"] = injected;
    let response = respond(app(cluster()), "/mutate", &update).await;
    accepts(&response);
    assert!(response.get("patch").is_none(), "{response}");
}

#[tokio::test]
async fn scale_subresource_rules() {
    let denied = rejects(&respond(app(cluster()), "/validate", &review("scale-3-to-4")).await);
    assert!(
        denied.starts_with("StatefulSet default/etcd: spec.replicas is 4"),
        "{denied}"
    );
    accepts(&respond(app(cluster()), "/validate", &review("scale-3-to-5")).await);
    let step = rejects(&respond(app(cluster()), "/validate", &review("scale-7-to-1")).await);
    assert!(
        step.contains("scale down by at most 2 at a time (7→5→3→1)"),
        "{step}"
    );
}

#[tokio::test]
async fn scale_of_a_statefulset_that_is_not_raft_is_allowed() {
    let mut request = review("scale-3-to-4");
    request["request"]["name"] = "web".into();
    accepts(&respond(app(cluster()), "/validate", &request).await);
}

#[tokio::test]
async fn requests_that_are_not_raft_statefulsets_pass_untouched() {
    for fixture in ["delete-etcd", "create-deployment", "create-unlabelled"] {
        for path in ["/mutate", "/validate"] {
            let response = respond(app(cluster()), path, &review(fixture)).await;
            assert!(accepts(&response).is_empty(), "{fixture} {path}");
            assert!(
                response.get("patch").is_none(),
                "{fixture} {path}: {response}"
            );
        }
    }
}

#[tokio::test]
async fn malformed_bodies_get_400_with_a_message() {
    for (body, expected) in [
        ("{not json", "request body is not an AdmissionReview"),
        (
            r#"{"apiVersion":"v1","kind":"Pod"}"#,
            "expected an admission.k8s.io/v1 AdmissionReview",
        ),
        (
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            "has no request",
        ),
        ("", "request body is not an AdmissionReview"),
    ] {
        let (status, message) = post(app(cluster()), "/validate", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            message.as_str().unwrap().contains(expected),
            "{body}: {message}"
        );
    }
    let (status, message) = post(
        app(cluster()),
        "/mutate",
        review("create-v1beta1").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message
            .as_str()
            .unwrap()
            .contains("admissionReviewVersions: [v1]"),
        "{message}"
    );
}

#[tokio::test]
async fn a_statefulset_that_does_not_match_the_schema_is_denied_not_dropped() {
    let mut request = review("create-etcd");
    request["request"]["object"]["spec"]["replicas"] = "three".into();
    let message = rejects(&respond(app(cluster()), "/mutate", &request).await);
    assert!(
        message.starts_with(
            "raft-injector: the StatefulSet in the admission request could not be read"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn bodies_over_three_mebibytes_get_413() {
    let mut request = review("create-etcd");
    request["request"]["object"]["metadata"]["annotations"]["padding"] =
        "x".repeat(MAX_BODY_BYTES).into();
    let (status, message) = post(app(cluster()), "/mutate", request.to_string()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        message.as_str().unwrap().contains("byte limit"),
        "{message}"
    );
}

mod tls {
    use super::*;
    use raft_injector::server::tls::{CertPaths, CertReloader, TlsError};

    fn issued(dir: &std::path::Path) -> CertPaths {
        common::tls::issued(dir)
    }

    fn client(ca: &[u8], http2: bool) -> reqwest::Client {
        let builder = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca).unwrap())
            .timeout(Duration::from_secs(10));
        let builder = if http2 { builder } else { builder.http1_only() };
        builder.build().unwrap()
    }

    async fn start(
        paths: CertPaths,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ) {
        let server = common::tls::start(paths, app(cluster()), Default::default()).await;
        (server.addr, server.stop, server.task)
    }

    #[tokio::test]
    async fn serves_admission_over_tls_with_h2_and_http1() {
        let dir = tempfile::tempdir().unwrap();
        let paths = issued(dir.path());
        let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
        let (addr, stop, task) = start(paths).await;
        let url = format!("https://127.0.0.1:{}/validate", addr.port());
        let body = review("create-even-replicas").to_string();

        for (http2, version) in [
            (true, reqwest::Version::HTTP_2),
            (false, reqwest::Version::HTTP_11),
        ] {
            let response = client(&ca, http2)
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("TLS request succeeds");
            assert_eq!(response.version(), version);
            assert_eq!(response.status(), 200);
            let review: Value = response.json().await.unwrap();
            assert_eq!(review["response"]["allowed"], false);
            assert_eq!(
                review["response"]["uid"],
                "11111111-0000-0000-0000-000000000002"
            );
        }

        // A client that does not trust the CA is refused at the handshake.
        let untrusted = reqwest::Client::builder().build().unwrap();
        assert!(untrusted.post(&url).body(body).send().await.is_err());

        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("drains promptly")
            .unwrap();
    }

    #[tokio::test]
    async fn shutdown_closes_idle_keep_alive_connections_and_returns() {
        let dir = tempfile::tempdir().unwrap();
        let paths = issued(dir.path());
        let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
        let (addr, stop, task) = start(paths).await;
        let http = client(&ca, false);
        let url = format!("https://127.0.0.1:{}/mutate", addr.port());
        let response = http
            .post(&url)
            .body(review("create-etcd").to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        // The client keeps the connection open; shutdown must still finish well before the grace period.
        stop.send(true).unwrap();
        let started = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("returns")
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited for the grace timeout instead of closing idle connections"
        );
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "stopped accepting"
        );
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (first, second) = (issued(a.path()), issued(b.path()));
        let mixed = CertPaths {
            cert: first.cert,
            key: second.key,
        };
        assert!(matches!(
            CertReloader::load(mixed),
            Err(TlsError::Mismatch(_))
        ));
    }

    #[test]
    fn garbage_files_are_refused_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let paths = issued(dir.path());
        std::fs::write(&paths.key, "not a key").unwrap();
        let error = CertReloader::load(paths.clone()).unwrap_err();
        assert!(matches!(error, TlsError::NoKey { .. }));
        assert!(error.to_string().contains("tls.key"), "{error}");
    }

    #[test]
    fn reload_takes_a_rotated_pair_and_keeps_the_old_one_when_the_new_is_bad() {
        let dir = tempfile::tempdir().unwrap();
        let paths = issued(dir.path());
        let reloader = CertReloader::load(paths.clone()).unwrap();
        assert!(
            !reloader.reload().unwrap(),
            "unchanged files are not reloaded"
        );

        let serving = |r: &CertReloader| r.current_certificate();
        let before = serving(&reloader);
        let rotated = tempfile::tempdir().unwrap();
        let new = issued(rotated.path());
        std::fs::copy(&new.cert, &paths.cert).unwrap();
        std::fs::copy(&new.key, &paths.key).unwrap();
        assert!(reloader.reload().unwrap(), "a rotated pair is taken");
        let after = serving(&reloader);
        assert_ne!(before, after);

        // Half a rotation: new certificate, old key. Refused; the rotated pair keeps serving.
        std::fs::copy(dir.path().join("ca.crt"), &paths.cert).unwrap();
        assert!(reloader.reload().is_err());
        assert_eq!(serving(&reloader), after);
    }
}

/// A cache that has not yet seen anything until `ready_at`.
struct Lagging {
    inner: raft_injector::cluster::documents::Documents,
    ready_at: std::time::Instant,
}

impl raft_injector::cluster::Lookup for Lagging {
    fn service(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<k8s_openapi::api::core::v1::Service>> {
        (std::time::Instant::now() >= self.ready_at)
            .then(|| self.inner.service(namespace, name))
            .flatten()
    }

    fn statefulset(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<k8s_openapi::api::apps::v1::StatefulSet>> {
        (std::time::Instant::now() >= self.ready_at)
            .then(|| self.inner.statefulset(namespace, name))
            .flatten()
    }
}

#[tokio::test]
async fn a_service_created_just_before_the_statefulset_is_waited_for() {
    use raft_injector::cluster::Lookup as _;
    let lagging = |ms| {
        Arc::new(Lagging {
            inner: cluster(),
            ready_at: std::time::Instant::now() + Duration::from_millis(ms),
        })
    };
    let request = review("create-etcd");
    let grace = Duration::from_millis(1500);
    // The Service's watch event arrives 200ms after the StatefulSet's admission starts.
    accepts(&respond(common::app_with(lagging(200), grace), "/validate", &request).await);
    let scale = review("scale-3-to-4");
    rejects(&respond(common::app_with(lagging(200), grace), "/validate", &scale).await);
    // Without the grace period the same lag is a false denial, which is what the wait prevents.
    let message = rejects(
        &respond(
            common::app_with(lagging(200), Duration::ZERO),
            "/validate",
            &request,
        )
        .await,
    );
    assert!(message.contains("does not exist"), "{message}");
    assert!(cluster().service("default", "etcd").is_some());
}

mod side_port {
    use std::sync::atomic::Ordering;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use raft_injector::server::health::{router, Readiness};
    use raft_injector::server::metrics::{Metrics, Outcome};
    use tower::ServiceExt;

    use super::*;

    async fn get(app: axum::Router, path: &str) -> (StatusCode, String, String) {
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn readyz_waits_for_certificates_and_caches_and_fails_while_shutting_down() {
        let readiness = Arc::new(Readiness::default());
        let app = || router(readiness.clone(), Arc::new(Metrics::default()));
        assert_eq!(get(app(), "/livez").await.0, StatusCode::OK);

        let (status, _, body) = get(app(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("serving certificate not loaded") && body.contains("caches not synced"),
            "{body}"
        );

        readiness.certs_loaded.store(true, Ordering::Release);
        let (status, _, body) = get(app(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            !body.contains("certificate") && body.contains("caches not synced"),
            "{body}"
        );

        readiness.caches_synced.store(true, Ordering::Release);
        assert_eq!(get(app(), "/readyz").await.0, StatusCode::OK);

        readiness.shutting_down.store(true, Ordering::Release);
        let (status, _, body) = get(app(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("shutting down"), "{body}");
    }

    #[tokio::test]
    async fn metrics_count_requests_by_outcome() {
        let metrics = Arc::new(Metrics::default());
        metrics.observe(
            "validate",
            "CREATE",
            Outcome::Denied,
            2,
            Duration::from_micros(80),
        );
        metrics.observe(
            "mutate",
            "CREATE",
            Outcome::Patched,
            0,
            Duration::from_micros(300),
        );
        metrics.cert_reload(false);
        let (status, content_type, body) =
            get(router(Arc::new(Readiness::default()), metrics), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        for line in [
            r#"raft_injector_admission_requests_total{webhook="validate",operation="CREATE",outcome="denied"} 1"#,
            r#"raft_injector_admission_requests_total{webhook="mutate",operation="CREATE",outcome="patched"} 1"#,
            r#"raft_injector_admission_warnings_total{webhook="validate"} 2"#,
            r#"raft_injector_certificate_reloads_total{result="failure"} 1"#,
            r#"raft_injector_admission_duration_seconds_count{webhook="mutate"} 1"#,
        ] {
            assert!(body.contains(line), "missing {line} in:\n{body}");
        }
    }
}
