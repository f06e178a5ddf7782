//! The plain-HTTP side port: `/livez`, `/readyz` and `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::metrics::Metrics;

/// What `/readyz` waits for.
#[derive(Debug, Default)]
pub struct Readiness {
    pub certs_loaded: AtomicBool,
    /// Shared with the caches, which set it after their first list.
    pub caches_synced: Arc<AtomicBool>,
    pub shutting_down: AtomicBool,
}

impl Readiness {
    fn problems(&self) -> Vec<&'static str> {
        let mut problems = Vec::new();
        if !self.certs_loaded.load(Ordering::Acquire) {
            problems.push("serving certificate not loaded");
        }
        if !self.caches_synced.load(Ordering::Acquire) {
            problems.push("Service and StatefulSet caches not synced");
        }
        if self.shutting_down.load(Ordering::Acquire) {
            problems.push("shutting down");
        }
        problems
    }
}

#[derive(Clone)]
struct HealthState {
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
}

pub fn router(readiness: Arc<Readiness>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(HealthState { readiness, metrics })
}

async fn readyz(State(state): State<HealthState>) -> impl IntoResponse {
    let problems = state.readiness.problems();
    if problems.is_empty() {
        (StatusCode::OK, "ok\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", problems.join(", ")),
        )
    }
}

async fn metrics_text(State(state): State<HealthState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
