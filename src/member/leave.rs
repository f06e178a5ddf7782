//! `raft-injector member leave`, the injected preStop hook.
//!
//! A pod stops for many reasons: rolling update, eviction, node drain, restart, scale-down.
//! Only the last one should change the Raft configuration. The StatefulSet's current
//! `spec.replicas` tells them apart: a pod whose ordinal is at or beyond it is going away
//! for good. Anything uncertain keeps the membership, because removing a member that comes
//! back costs a full re-sync, while keeping one that left costs a quorum slot until an
//! operator removes it.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;

use super::cluster::Membership;
use super::flavors::for_member;
use super::{read_statefulset, MemberEnv, MemberError, Removal};
use crate::policy::ordinals::Members;

/// What `leave` decided before touching the Raft configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Keep the membership, and why.
    Keep(String),
    /// This pod is being scaled away: its ordinal is at or beyond the end of `members`.
    Remove { members: Members },
}

/// Decides from the StatefulSet as the API server returned it (or failed to).
pub fn decide(ordinal: i32, statefulset: Result<Option<StatefulSet>, String>) -> Decision {
    let sts = match statefulset {
        Err(error) => {
            return Decision::Keep(format!(
                "cannot read the StatefulSet ({error}); keeping the membership, as a restart would"
            ))
        }
        Ok(None) => {
            return Decision::Keep("the StatefulSet is gone; keeping the membership".to_owned())
        }
        Ok(Some(sts)) => sts,
    };
    if sts.metadata.deletion_timestamp.is_some() {
        return Decision::Keep(
            "the StatefulSet is being deleted; keeping the membership".to_owned(),
        );
    }
    let members = Members::of(&sts);
    if members.replicas == 0 {
        return Decision::Keep(
            "spec.replicas is 0: the whole cluster is stopping and must come back intact; keeping the membership"
                .to_owned(),
        );
    }
    if !members.is_beyond(ordinal) {
        return Decision::Keep(format!(
            "ordinal {ordinal} is below {members}: a restart, update or eviction; keeping the membership"
        ));
    }
    Decision::Remove { members }
}

/// Removes this member through `cluster`, when it is still listed and the others keep a
/// quorum; retries for at most `budget`.
async fn remove_self(cluster: &impl Membership, budget: Duration) -> Result<Removal, MemberError> {
    let deadline = tokio::time::Instant::now() + budget;
    super::retry_until(deadline, budget, "member removal", || async {
        let view = cluster.view(false).await?;
        let me = view
            .me
            .as_ref()
            .and_then(|id| view.members.iter().find(|m| &m.id == id));
        let Some(me) = me else {
            tracing::info!("not in the member list; nothing to remove");
            return Ok(Removal::AlreadyGone);
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        cluster.remove(me, &view, left).await
    })
    .await
}

/// What a leave did, as an Event reason and a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub reason: &'static str,
    pub message: String,
}

/// Reads the StatefulSet, decides, and removes this member when it is being scaled away.
pub async fn run(env: &MemberEnv, budget: Duration) -> Result<Outcome, MemberError> {
    let started = Instant::now();
    let statefulset = read_statefulset(env, Duration::from_secs(5).min(budget)).await;
    let leave_url = statefulset
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
        .and_then(|sts| sts.metadata.annotations.as_ref())
        .and_then(|a| a.get(crate::policy::names::LEAVE_URL_ANNOTATION))
        .cloned();
    let cluster = match &statefulset {
        Ok(sts) => for_member(env, sts.as_ref()),
        Err(_) => Ok(None),
    };
    let members = match decide(env.ordinal, statefulset) {
        Decision::Keep(why) => {
            return Ok(Outcome {
                reason: "MemberKept",
                message: format!(
                    "leave skipped: {why} (decided in {:.1?})",
                    started.elapsed()
                ),
            })
        }
        Decision::Remove { members } => members,
    };
    tracing::info!(
        member = %env.pod_name,
        ordinal = env.ordinal,
        replicas = members.replicas,
        start = members.start,
        "scaled away: removing this member from the Raft configuration"
    );
    let remaining = budget.saturating_sub(started.elapsed());
    let removal = match (cluster?, leave_url) {
        // The flavor reads the member list: the quorum is checked before the removal.
        (Some(cluster), _) => remove_self(&cluster, remaining).await?,
        // A generic app without a members URL: its leave URL decides alone.
        (None, Some(url)) => {
            use super::generic::{remove_generic, Hook, HookUrl};
            let url = HookUrl::parse(&url).map_err(|why| MemberError::BadHookUrl {
                hook: Hook::Leave,
                why,
            })?;
            remove_generic(env, &url, remaining).await?
        }
        (None, None) => return Err(MemberError::NoLeaveUrl),
    };
    Ok(match removal {
        Removal::Removed => Outcome {
            reason: "MemberRemoved",
            message: format!(
                "removed from the Raft configuration (ordinal {} >= {members}) in {:.1?}",
                env.ordinal,
                started.elapsed()
            ),
        },
        Removal::AlreadyGone => Outcome {
            reason: "MemberAlreadyRemoved",
            message: format!(
                "scaled away (ordinal {} >= {members}) and already out of the Raft configuration",
                env.ordinal
            ),
        },
    })
}
