//! The HTTP side of the webhook: `/mutate` and `/validate`, as an axum router that tests
//! drive without TLS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::HttpBody as _;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt;

use super::budget::{BodyBudget, Hold, Shed};
use super::metrics::{Metrics, Outcome};
use crate::admission::{review, Webhook};
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
    /// Bounds the bytes of all request bodies held at once.
    pub budget: BodyBudget,
}

/// The default body budget: a quarter of the shipped Deployment's 256 MiB limit. A body is
/// held once as it arrives and copied once into one buffer, and the rest of the server
/// (caches, TLS buffers of up to 1000 connections) needs the remainder.
pub const DEFAULT_BODY_BUDGET: usize = 64 * 1024 * 1024;

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
/// that trickles or floods never holds a request open; every byte is reserved from the
/// shared budget first (see [`super::budget`]).
async fn read_body(
    body: Body,
    timeout: Duration,
    hold: &Hold,
) -> Result<Bytes, (StatusCode, String)> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the {MAX_BODY_BYTES} byte limit for an AdmissionReview"),
        )
    };
    if body.size_hint().lower() > MAX_BODY_BYTES as u64 {
        return Err(too_large());
    }
    let read = async {
        let mut body = body;
        let mut chunks = Vec::new();
        let mut len = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("cannot read request body: {error}"),
                )
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            len += data.len();
            if len > MAX_BODY_BYTES {
                return Err(too_large());
            }
            hold.reserve(data.len()).await.map_err(shed_response)?;
            chunks.push(data);
        }
        Ok(match chunks.len() {
            1 => chunks.pop().unwrap_or_default(),
            _ => {
                let mut whole = Vec::with_capacity(len);
                for chunk in &chunks {
                    whole.extend_from_slice(chunk);
                }
                Bytes::from(whole)
            }
        })
    };
    tokio::select! {
        read = tokio::time::timeout(timeout, read) => read.unwrap_or_else(|_| Err((
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {timeout:?}"),
        ))),
        () = hold.evicted() => Err(shed_response(Shed::Evicted)),
    }
}

fn shed_response(shed: Shed) -> (StatusCode, String) {
    let why = match shed {
        Shed::Evicted => {
            "this body had been arriving the longest when newer requests needed the room"
        }
        Shed::NoRoom => "there is no room for it",
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("request bodies being read hold the whole body budget and {why}; retry"),
    )
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
    // Held until the answer is sent: first for the body's bytes, then for the answer's.
    let hold = state.budget.enter();
    let body = match read_body(body, state.body_timeout, &hold).await {
        Ok(body) => body,
        Err((status, message)) => {
            if status == StatusCode::SERVICE_UNAVAILABLE {
                state.metrics.shed(webhook.as_str());
            }
            return reject(&state, webhook, status, message, started);
        }
    };
    let (req, response) = match review(
        webhook,
        &body,
        state.lookup.as_ref(),
        state.cache_grace,
        &state.settings,
    )
    .await
    {
        Ok(reviewed) => reviewed,
        Err(message) => return reject(&state, webhook, StatusCode::BAD_REQUEST, message, started),
    };
    let operation = req.operation_name();
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
    // The answer's bytes stay counted in the body budget until they are sent (see
    // `budget::AnswerBody`): a client that never reads its answers cannot hold memory the
    // budget does not see.
    let answer = hold.answer(bytes::Bytes::from(body));
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        Body::new(answer),
    )
        .into_response()
}
