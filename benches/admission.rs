//! Prints how long admission takes and how much it allocates: the pure rules, and a full
//! AdmissionReview through the axum router (JSON in, JSON out). Run with `make bench`.
//! Numbers, not assertions: the machines these run on are shared and noisy.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::Request;
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use raft_injector::cluster::documents::Documents;
use raft_injector::policy::{mutate_json, validate, Context, Settings};
use raft_injector::server::app::{router, AppState};
use raft_injector::server::metrics::Metrics;
use tower::ServiceExt;

/// Counts bytes allocated, to report allocation per request, over the allocator the binary
/// ships with (mimalloc), or the platform's with `--features system-allocator`.
struct Counting;

#[cfg(not(feature = "system-allocator"))]
static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(feature = "system-allocator")]
static INNER: std::alloc::System = std::alloc::System;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwards to the system allocator with the caller's layout.
        unsafe { INNER.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with the same layout.
        unsafe { INNER.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn docs(path: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("example");
    raft_injector::offline::documents::parse(path, &text)
        .expect("parses")
        .into_iter()
        .filter_map(|d| d.value)
        .collect()
}

fn report(name: &str, iterations: u32, elapsed: Duration, allocated: usize, allocations: usize) {
    let per = elapsed / iterations;
    println!(
        "{name:<44} {:>9.1} µs/op {:>10.0} ops/s {:>9} bytes in {:>5} allocations/op",
        per.as_secs_f64() * 1e6,
        f64::from(iterations) / elapsed.as_secs_f64(),
        allocated / iterations as usize,
        allocations / iterations as usize
    );
}

fn measure(name: &str, iterations: u32, mut f: impl FnMut()) {
    // `cargo bench -- WORD` measures only the cases whose name contains WORD (for profiling).
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    if filter.is_some_and(|word| !name.contains(&word)) {
        return;
    }
    // `cargo bench` passes --bench; under `cargo test` one pass shows it still runs.
    let iterations = if std::env::args().any(|a| a == "--bench") {
        iterations
    } else {
        1
    };
    for _ in 0..iterations / 10 {
        f(); // warm-up
    }
    let before = ALLOCATED.load(Ordering::Relaxed);
    let count_before = ALLOCATIONS.load(Ordering::Relaxed);
    let started = Instant::now();
    for _ in 0..iterations {
        f();
    }
    report(
        name,
        iterations,
        started.elapsed(),
        ALLOCATED.load(Ordering::Relaxed) - before,
        ALLOCATIONS.load(Ordering::Relaxed) - count_before,
    );
}

fn main() {
    println!(
        "allocator: {}",
        if cfg!(feature = "system-allocator") {
            "system"
        } else {
            "mimalloc"
        }
    );
    let all = docs("examples/etcd.yaml");
    let sts: StatefulSet = serde_json::from_value(
        all.iter()
            .find(|d| d["kind"] == "StatefulSet")
            .unwrap()
            .clone(),
    )
    .unwrap();
    let svc: Service =
        serde_json::from_value(all.iter().find(|d| d["kind"] == "Service").unwrap().clone())
            .unwrap();
    let settings = Settings::default();
    let ctx = Context {
        namespace: "default",
        service: Some(&svc),
        old: None,
        settings: &settings,
        dry_run: false,
    };

    measure("validate (etcd example)", 20_000, || {
        std::hint::black_box(validate(&sts, &ctx));
    });
    measure("mutate (etcd example)", 20_000, || {
        std::hint::black_box(mutate_json(&sts, &ctx).unwrap());
    });

    let lookup = Documents {
        default_namespace: "default".into(),
        services: vec![Arc::new(svc.clone())],
        statefulsets: vec![Arc::new(sts.clone())],
    };
    let app = router(AppState {
        lookup: Arc::new(lookup),
        settings: Arc::new(settings.clone()),
        metrics: Arc::new(Metrics::default()),
        cache_grace: Duration::ZERO,
        body_timeout: Duration::from_secs(10),
        budget: raft_injector::server::budget::BodyBudget::new(
            raft_injector::server::app::DEFAULT_BODY_BUDGET,
        ),
    });
    let create = std::fs::read_to_string("tests/data/create-etcd.json").unwrap();
    // The review most writes to a running cluster send: an UPDATE re-applying the injected
    // object (object and oldObject injected), built here from /mutate's own answer.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    // The body is handed over as `Bytes` (a reference count), as hyper hands it to the
    // handler: what is measured is the handler's work, not a copy of the review per call.
    let post = |path: &str, body: Bytes| {
        runtime.block_on(async {
            let response = app
                .clone()
                .oneshot(Request::post(path).body(Body::from(body)).unwrap())
                .await
                .unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        })
    };
    let update = {
        let answer: serde_json::Value =
            serde_json::from_slice(&post("/mutate", Bytes::from(create.clone()))).unwrap();
        use base64::Engine;
        let patch = base64::engine::general_purpose::STANDARD
            .decode(answer["response"]["patch"].as_str().expect("a patch"))
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
        let mut review: serde_json::Value = serde_json::from_str(&create).unwrap();
        let mut object = review["request"]["object"].take();
        json_patch::patch(&mut object, &patch).unwrap();
        review["request"]["operation"] = "UPDATE".into();
        review["request"]["object"] = object.clone();
        review["request"]["oldObject"] = object;
        Bytes::from(review.to_string())
    };
    let create = Bytes::from(create);
    for (name, review) in [("create", &create), ("update", &update)] {
        for path in ["/mutate", "/validate"] {
            let answer = post(path, review.clone()).len();
            measure(
                &format!("HTTP {path} {name} ({} -> {answer} bytes)", review.len()),
                5_000,
                || {
                    std::hint::black_box(post(path, review.clone()));
                },
            );
        }
    }
}
