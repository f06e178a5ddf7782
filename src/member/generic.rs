//! Member removal for the generic flavor: one HTTP call described by the StatefulSet's
//! annotation `raft-injector.io/leave-url`.
//!
//! Format: `[METHOD ]URL` (method defaults to POST). Placeholders: `{id}` (RAFT_ID),
//! `{name}` (pod name), `{namespace}`, `{ordinal}`, `{address}` (RAFT_ADDRESS) and `{peer}`
//! (the host of another bootstrap member; each is tried in turn). The request body is JSON
//! `{"id", "name", "namespace", "ordinal", "address"}`. A 2xx answer means removed, 404 or
//! 410 means already gone; anything else is retried until the deadline.

use std::time::Duration;

use tokio::time::Instant;

use reqwest::Method;
use serde_json::json;

use super::leave::Removal;
use super::{MemberEnv, MemberError};

/// The parsed annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaveUrl {
    pub method: Method,
    pub template: String,
}

impl LeaveUrl {
    pub fn parse(annotation: &str) -> LeaveUrl {
        let annotation = annotation.trim();
        match annotation.split_once(char::is_whitespace) {
            Some((method, url)) if method.chars().all(|c| c.is_ascii_uppercase()) => LeaveUrl {
                method: Method::from_bytes(method.as_bytes()).unwrap_or(Method::POST),
                template: url.trim().to_owned(),
            },
            _ => LeaveUrl {
                method: Method::POST,
                template: annotation.to_owned(),
            },
        }
    }

    /// The URLs to try, in order.
    pub fn urls(&self, env: &MemberEnv) -> Vec<String> {
        let base = self
            .template
            .replace("{id}", &env.id)
            .replace("{name}", &env.pod_name)
            .replace("{namespace}", &env.namespace)
            .replace("{ordinal}", &env.ordinal.to_string())
            .replace("{address}", &env.address);
        if base.contains("{peer}") {
            env.other_peer_hosts()
                .iter()
                .map(|host| base.replace("{peer}", host))
                .collect()
        } else {
            vec![base]
        }
    }
}

pub async fn remove_generic(
    env: &MemberEnv,
    leave: &LeaveUrl,
    budget: Duration,
) -> Result<Removal, MemberError> {
    let http = reqwest::Client::builder()
        .timeout(super::etcd::CALL_TIMEOUT)
        .build()
        .unwrap_or_default();
    let body = json!({
        "id": env.id,
        "name": env.pod_name,
        "namespace": env.namespace,
        "ordinal": env.ordinal,
        "address": env.address,
    });
    let urls = leave.urls(env);
    super::retry_until(
        Instant::now() + budget,
        budget,
        "member removal",
        || async {
            let mut last = String::from("no URL to call");
            for url in &urls {
                match http
                    .request(leave.method.clone(), url)
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(response) if response.status().is_success() => {
                        tracing::info!(%url, "removed through the leave URL");
                        return Ok(Removal::Removed);
                    }
                    Ok(response) if matches!(response.status().as_u16(), 404 | 410) => {
                        return Ok(Removal::AlreadyGone)
                    }
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let body = response.text().await.unwrap_or_default();
                        last = MemberError::LeaveRefused { status, body }.to_string();
                    }
                    Err(error) => last = format!("{url}: {error}"),
                }
            }
            Err(MemberError::Unreachable {
                tried: urls.join(", "),
                last,
            })
        },
    )
    .await
}
