//! From an AdmissionRequest to an AdmissionResponse: which requests concern Raft, which
//! rules apply, and how a verdict becomes a response. No HTTP here.

mod decide;
pub mod object;
pub mod old;
pub mod request;
mod settle;
pub mod wire;

pub use decide::{decide, respond, subject, AdmissionError, Subject, Webhook};
pub use request::{parse, Request};
pub use settle::settle;
pub use wire::Response;

use std::time::Duration;

use crate::cluster::Lookup;
use crate::policy::Settings;

/// One AdmissionReview from its bytes to its answer: the one entry `serve` uses (the HTTP
/// handler only reads the body, writes the answer and counts). The rules themselves are
/// [`crate::policy::admit`], which the offline `inject`/`validate` call too. Bytes that are
/// not an AdmissionReview are `Err`, with the message for a 400.
pub async fn review<'b>(
    webhook: Webhook,
    body: &'b [u8],
    lookup: &dyn Lookup,
    cache_grace: Duration,
    settings: &Settings,
) -> Result<(Request<'b>, Response), String> {
    let mut req = parse(body)?;
    let objects = std::mem::take(&mut req.objects);
    let decision = match subject(webhook, &req, objects) {
        Ok(subject) => {
            settle(&req, &subject, lookup, cache_grace).await;
            decide(webhook, &req, &subject, lookup, settings)
        }
        Err(error) => Err(error),
    };
    let response = respond(&req, decision);
    Ok((req, response))
}
