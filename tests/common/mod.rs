//! Helpers shared by the integration tests: fixtures, the webhook router over in-memory
//! objects, and one-line admission assertions.
#![allow(dead_code)] // each test binary uses its own subset

pub mod controlplane;
pub mod node;
pub mod tls;

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use raft_injector::cluster::documents::Documents;
use raft_injector::policy::{Context, Settings, Verdict};
use raft_injector::server::app::{router, AppState};
use raft_injector::server::metrics::Metrics;
use serde_json::Value;
use tower::ServiceExt;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The path of the helm binary, built and cached by `scripts/helm.sh` (once per test binary).
pub fn helm() -> &'static str {
    static HELM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HELM.get_or_init(|| {
        let out = std::process::Command::new(root().join("scripts/helm.sh"))
            .output()
            .expect("scripts/helm.sh runs");
        assert!(
            out.status.success(),
            "building helm failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
}

pub fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The parsed documents of a YAML file, as JSON values.
pub fn yaml_docs(relative: &str) -> Vec<Value> {
    raft_injector::offline::documents::parse(relative, &read(relative))
        .expect("fixture parses")
        .into_iter()
        .filter_map(|d| d.value)
        .collect()
}

fn of_kind<T: serde::de::DeserializeOwned>(relative: &str, kind: &str) -> Vec<T> {
    yaml_docs(relative)
        .into_iter()
        .filter(|d| d["kind"] == kind)
        .map(|d| serde_json::from_value(d).expect("fixture matches the schema"))
        .collect()
}

pub fn statefulset(relative: &str) -> StatefulSet {
    of_kind(relative, "StatefulSet").remove(0)
}

pub fn services(relative: &str) -> Vec<Service> {
    of_kind(relative, "Service")
}

/// An in-memory lookup holding the Services and StatefulSets of `files`.
pub fn lookup(files: &[&str]) -> Documents {
    let mut docs = Documents {
        default_namespace: "default".to_owned(),
        ..Documents::default()
    };
    for file in files {
        docs.services
            .extend(services(file).into_iter().map(Arc::new));
        docs.statefulsets.extend(
            of_kind::<StatefulSet>(file, "StatefulSet")
                .into_iter()
                .map(Arc::new),
        );
    }
    docs
}

/// `inject` over one text, objects without a namespace landing in `default`.
pub fn inject_text(name: &str, text: &str) -> raft_injector::offline::Report {
    raft_injector::offline::run(
        &[raft_injector::offline::Input {
            name: name.to_owned(),
            text: text.to_owned(),
        }],
        &settings(),
        &raft_injector::offline::DefaultNamespace::Flag("default".to_owned()),
        true,
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Sets annotation `key` on `sts`.
pub fn annotate(sts: &mut StatefulSet, key: &str, value: &str) {
    sts.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.to_owned(), value.to_owned());
}

/// The first container of a StatefulSet's pod template, to edit in a test.
pub fn first_container(sts: &mut StatefulSet) -> &mut k8s_openapi::api::core::v1::Container {
    &mut sts
        .spec
        .as_mut()
        .expect("a spec")
        .template
        .spec
        .as_mut()
        .expect("a pod spec")
        .containers[0]
}

pub fn settings() -> Settings {
    Settings {
        helper_image: "registry.example/raft-injector:test".to_owned(),
        ..Settings::default()
    }
}

/// Validates `sts` against `service` in namespace `default`.
pub fn check(sts: &StatefulSet, service: Option<&Service>, old: Option<&StatefulSet>) -> Verdict {
    check_with(sts, service, old, &settings(), false)
}

/// [`check`] with explicit settings and dry-run flag.
pub fn check_with(
    sts: &StatefulSet,
    service: Option<&Service>,
    old: Option<&StatefulSet>,
    settings: &Settings,
    dry_run: bool,
) -> Verdict {
    raft_injector::policy::validate(
        sts,
        &Context {
            namespace: "default",
            service,
            old,
            settings,
            dry_run,
        },
    )
}

pub fn app(lookup: Documents) -> axum::Router {
    app_with(Arc::new(lookup), std::time::Duration::ZERO)
}

pub fn app_with(
    lookup: Arc<dyn raft_injector::cluster::Lookup>,
    cache_grace: std::time::Duration,
) -> axum::Router {
    router(AppState {
        lookup,
        settings: Arc::new(settings()),
        metrics: Arc::new(Metrics::default()),
        cache_grace,
        body_timeout: std::time::Duration::from_secs(10),
        budget: raft_injector::server::budget::BodyBudget::new(
            raft_injector::server::app::DEFAULT_BODY_BUDGET,
        ),
    })
}

/// POSTs `body` to `path` and returns the status and the body (JSON when it is JSON).
pub async fn post(app: axum::Router, path: &str, body: impl Into<Body>) -> (StatusCode, Value) {
    let response = app
        .oneshot(
            Request::post(path)
                .header("content-type", "application/json")
                .body(body.into())
                .expect("request builds"),
        )
        .await
        .expect("router answers");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body reads")
        .to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

/// The AdmissionResponse of a review sent to `path`; asserts HTTP 200.
pub async fn respond(app: axum::Router, path: &str, review: &Value) -> Value {
    let (status, body) = post(app, path, review.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(
        body["response"]["uid"], review["request"]["uid"],
        "uid echoed"
    );
    body["response"].clone()
}

/// The decoded JSONPatch of a response (empty when there is none): base64 of the JSON, as
/// the API specifies.
pub fn patch_of(response: &Value) -> json_patch::Patch {
    use base64::Engine as _;
    match response["patch"].as_str() {
        None => {
            assert!(response["patch"].is_null(), "patch is base64: {response}");
            json_patch::Patch(Vec::new())
        }
        Some(encoded) => {
            assert_eq!(response["patchType"], "JSONPatch");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .expect("patch is base64");
            serde_json::from_slice(&bytes).expect("patch is JSONPatch")
        }
    }
}

/// Applies a webhook's patch to `object`, as the API server would.
pub fn apply(object: &Value, patch: &json_patch::Patch) -> Value {
    let mut out = object.clone();
    json_patch::patch(&mut out, &patch.0).expect("patch applies to the object it was made for");
    out
}

/// Asserts `response` allows, and returns its warnings.
pub fn accepts(response: &Value) -> Vec<String> {
    assert_eq!(response["allowed"], true, "expected allowed: {response}");
    warnings(response)
}

/// Asserts `response` denies, and returns the message.
pub fn rejects(response: &Value) -> String {
    assert_eq!(response["allowed"], false, "expected denied: {response}");
    response["status"]["message"]
        .as_str()
        .expect("a denial has a message")
        .to_owned()
}

pub fn warnings(response: &Value) -> Vec<String> {
    response["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
