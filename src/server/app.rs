//! The HTTP side of the webhook: `/mutate` and `/validate`, as an axum router that tests
//! drive without TLS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::metrics::{Metrics, Outcome};
use crate::admission::{decide, parse, respond, settle, subject, Webhook};
use crate::cluster::Lookup;
use crate::policy::Settings;

/// Largest AdmissionReview body accepted; larger ones get 413 (SPEC §6).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub lookup: Arc<dyn Lookup>,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    /// How long to wait for a cache to catch up (zero: decide on what is cached now).
    pub cache_grace: Duration,
    /// A request body must arrive within this.
    pub body_timeout: Duration,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .with_state(state)
}

async fn mutate(state: State<AppState>, body: Body) -> Response {
    handle(Webhook::Mutate, state, body).await
}

async fn validate(state: State<AppState>, body: Body) -> Response {
    handle(Webhook::Validate, state, body).await
}

/// Reads the whole body, at most [`MAX_BODY_BYTES`] of it and within `timeout`, so a client
/// that trickles or floods never holds a request open.
async fn read_body(body: Body, timeout: Duration) -> Result<Bytes, (StatusCode, String)> {
    let collect = Limited::new(body, MAX_BODY_BYTES).collect();
    match tokio::time::timeout(timeout, collect).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the {MAX_BODY_BYTES} byte limit for an AdmissionReview"),
        )),
        Ok(Err(error)) => Err((
            StatusCode::BAD_REQUEST,
            format!("cannot read request body: {error}"),
        )),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {timeout:?}"),
        )),
    }
}

fn reject(
    state: &AppState,
    webhook: Webhook,
    status: StatusCode,
    message: String,
    started: Instant,
) -> Response {
    tracing::warn!(webhook = webhook.as_str(), %status, %message, "rejected a request that is not a usable AdmissionReview");
    state.metrics.observe(
        webhook.as_str(),
        "",
        Outcome::Rejected,
        0,
        started.elapsed(),
    );
    (status, message).into_response()
}

async fn handle(webhook: Webhook, State(state): State<AppState>, body: Body) -> Response {
    let started = Instant::now();
    let body = match read_body(body, state.body_timeout).await {
        Ok(body) => body,
        Err((status, message)) => return reject(&state, webhook, status, message, started),
    };
    let mut req = match parse(&body) {
        Ok(req) => req,
        Err(message) => return reject(&state, webhook, StatusCode::BAD_REQUEST, message, started),
    };

    let operation = req.operation_name();
    // No span per request: creating one costs more than the rest of a small admission's
    // bookkeeping; the events that are logged carry the request's identity themselves.
    let objects = std::mem::take(&mut req.objects);
    let decision = match subject(webhook, &req, objects) {
        Ok(subject) => {
            settle(&req, &subject, state.lookup.as_ref(), state.cache_grace).await;
            decide(
                webhook,
                &req,
                &subject,
                state.lookup.as_ref(),
                &state.settings,
            )
        }
        Err(error) => Err(error),
    };
    let response = respond(&req, decision);
    let outcome = match (response.allowed, response.patch.is_some()) {
        (false, _) => Outcome::Denied,
        (true, true) => Outcome::Patched,
        (true, false) => Outcome::Allowed,
    };
    let warnings = response.warnings.len();
    if response.allowed {
        tracing::debug!(
            webhook = webhook.as_str(),
            uid = %req.uid,
            namespace = req.namespace(),
            name = %req.name,
            operation,
            ?outcome,
            warnings,
            "admitted"
        );
    } else {
        tracing::info!(
            webhook = webhook.as_str(),
            uid = %req.uid,
            namespace = req.namespace(),
            name = %req.name,
            operation,
            resource = %req.resource.resource,
            subresource = req.sub_resource.as_deref().unwrap_or_default(),
            reason = %response.result.message,
            "denied"
        );
    }
    state.metrics.observe(
        webhook.as_str(),
        operation,
        outcome,
        warnings,
        started.elapsed(),
    );
    let body = match crate::admission::wire::to_json(&response) {
        Ok(body) => body,
        Err(error) => {
            let message = format!("the AdmissionReview could not be serialized: {error}");
            return reject(
                &state,
                webhook,
                StatusCode::INTERNAL_SERVER_ERROR,
                message,
                started,
            );
        }
    };
    state.metrics.response_size(webhook.as_str(), body.len());
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
