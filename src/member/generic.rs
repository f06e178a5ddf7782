//! Membership changes for the generic flavor: one HTTP call each, described by the
//! StatefulSet's annotations `raft-injector.io/join-url` (init container `member join`, for
//! a pod beyond the bootstrap set) and `raft-injector.io/leave-url` (preStop `member leave`,
//! for a pod being scaled away). The application implements both with its Raft library's
//! own configuration change, so any library can be scaled without code in the helper.
//!
//! Format: `[METHOD ]URL` (method defaults to POST; the URL is http or https).
//! Placeholders: `{id}` (RAFT_ID), `{name}` (pod name), `{namespace}`, `{ordinal}`,
//! `{address}` (RAFT_ADDRESS) and `{peer}` (the host of another bootstrap member; each is
//! tried in turn). The request body is JSON `{"id", "name", "namespace", "ordinal",
//! "address"}`.
//!
//! Answers: any 2xx means done — for join, added or already a member (an application may
//! answer 202 and finish the addition once the new member runs); for leave, removed. Leave
//! also takes 404 or 410 as already gone. Anything else, or no answer, is retried against
//! each URL in turn until the deadline.

use std::time::Duration;

use tokio::time::Instant;

use serde_json::json;

use super::{MemberEnv, MemberError, Removal};

pub use crate::policy::hook_url::{Hook, HookUrl};

/// The URLs of `url` to try for this member, in order: its placeholders filled in, one URL
/// per other bootstrap member when it names `{peer}`.
pub fn urls(url: &HookUrl, env: &MemberEnv) -> Vec<String> {
    let base = fill(url, env);
    if base.contains("{peer}") {
        env.other_peer_hosts()
            .iter()
            .map(|host| base.replace("{peer}", host))
            .collect()
    } else {
        vec![base]
    }
}

/// `url` with every placeholder but `{peer}` filled in for this member.
pub fn fill(url: &HookUrl, env: &MemberEnv) -> String {
    url.template
        .replace("{id}", &env.id)
        .replace("{name}", &env.pod_name)
        .replace("{namespace}", &env.namespace)
        .replace("{ordinal}", &env.ordinal.to_string())
        .replace("{address}", &env.address)
}

/// An answer's body, refused once it grows beyond `limit` bytes.
pub async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Whether a leave answer says the member is already out of the configuration.
fn already_gone(status: u16) -> bool {
    matches!(status, 404 | 410)
}

/// Calls the hook's URLs in turn until one answers 2xx (or, for leave, 404/410), retrying
/// rounds until `budget` is spent. Returns the URL that answered and its status.
async fn call(
    env: &MemberEnv,
    hook: Hook,
    url: &HookUrl,
    budget: Duration,
) -> Result<(String, u16), MemberError> {
    // https:// hook URLs trust the TLS Secret's CA and get its certificate.
    let http = env.http_client(super::etcd::CALL_TIMEOUT)?;
    let body = json!({
        "id": env.id,
        "name": env.pod_name,
        "namespace": env.namespace,
        "ordinal": env.ordinal,
        "address": env.address,
    });
    let urls = urls(url, env);
    let what = format!("member {hook}");
    super::retry_until(Instant::now() + budget, budget, &what, || async {
        let mut last = String::from("no URL to call");
        for target in &urls {
            match http
                .request(url.method.clone(), target)
                .json(&body)
                .send()
                .await
            {
                Ok(response)
                    if response.status().is_success()
                        || (hook == Hook::Leave && already_gone(response.status().as_u16())) =>
                {
                    let status = response.status().as_u16();
                    tracing::info!(url = %target, status, "the {hook} URL answered");
                    return Ok((target.clone(), status));
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    last = MemberError::HookRefused {
                        hook,
                        url: target.clone(),
                        status,
                        body: body.trim().chars().take(512).collect(),
                    }
                    .to_string();
                }
                Err(error) => last = format!("{target}: {error}"),
            }
        }
        Err(MemberError::Unreachable {
            tried: urls.join(", "),
            last,
        })
    })
    .await
}

pub async fn remove_generic(
    env: &MemberEnv,
    leave: &HookUrl,
    budget: Duration,
) -> Result<Removal, MemberError> {
    let (_, status) = call(env, Hook::Leave, leave, budget).await?;
    Ok(if already_gone(status) {
        Removal::AlreadyGone
    } else {
        Removal::Removed
    })
}

/// Asks the running cluster to add this member; returns the URL that accepted and its
/// status code.
pub async fn add_generic(
    env: &MemberEnv,
    join: &HookUrl,
    budget: Duration,
) -> Result<(String, u16), MemberError> {
    call(env, Hook::Join, join, budget).await
}
