//! Kubernetes Events for the helper's membership decisions, on the StatefulSet, so that
//! `kubectl describe statefulset` and `kubectl get events` tell what each pod decided
//! without anyone reading a node's files. Best effort: an Event that cannot be written is
//! logged and never changes the outcome of a join or a leave.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::chrono::{DateTime, Utc};

use super::MemberEnv;

/// The `source.component` of every Event the helper writes.
pub const COMPONENT: &str = "raft-injector-member";

/// Normal or Warning, as kubectl shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Normal,
    Warning,
}

/// The Event for `reason` and `message`, about this pod's StatefulSet.
pub fn event(
    env: &MemberEnv,
    kind: Kind,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> Event {
    let message = format!("{}: {message}", env.pod_name);
    Event {
        metadata: ObjectMeta {
            // Unique per pod and moment, like the names client-go's recorder makes.
            name: Some(format!(
                "{}.{:x}",
                env.pod_name,
                now.timestamp_nanos_opt().unwrap_or_default()
            )),
            namespace: Some(env.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("apps/v1".to_owned()),
            kind: Some("StatefulSet".to_owned()),
            name: Some(env.statefulset.clone()),
            namespace: Some(env.namespace.clone()),
            ..ObjectReference::default()
        },
        reason: Some(reason.to_owned()),
        // The API server caps an Event's message at 1 KiB.
        message: Some(message.chars().take(1000).collect()),
        type_: Some(format!("{kind:?}")),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        action: Some(reason.to_owned()),
        reporting_component: Some(COMPONENT.to_owned()),
        reporting_instance: Some(env.pod_name.clone()),
        source: Some(EventSource {
            component: Some(COMPONENT.to_owned()),
            host: None,
        }),
        ..Event::default()
    }
}

/// Writes the Event with the pod's credentials, within `timeout`; logs instead of failing.
pub async fn record(env: &MemberEnv, kind: Kind, reason: &str, message: &str, timeout: Duration) {
    let event = event(env, kind, reason, message, Utc::now());
    let write = async {
        let client = kube::Client::try_default().await?;
        kube::Api::<Event>::namespaced(client, &env.namespace)
            .create(&kube::api::PostParams::default(), &event)
            .await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::warn!(%error, reason, "could not record the Event"),
        Err(_) => tracing::warn!(?timeout, reason, "could not record the Event in time"),
    }
}
