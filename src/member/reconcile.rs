//! `raft-injector member reconcile`, a native sidecar (etcd, and the generic flavor with a
//! `members-url`): repairs a missed leave, for any flavor through [`Membership`].
//!
//! `member leave` runs in the preStop hook of a pod that is scaled away. When that pod dies
//! before its hook finishes (a force delete, a grace period too short, the API server or
//! the cluster unreachable for the hook's whole budget), etcd keeps a member that never comes
//! back: a 3-member cluster silently becomes 3 of 4 and loses its failure tolerance. The
//! sidecar runs next to every member; the one next to the current leader looks every
//! `interval` for members outside the StatefulSet's replica range and removes them, one per
//! pass, under these rules (never on a guess):
//!
//! - only members whose name (or, not started yet, whose peer host) is `<sts>-<ordinal>`
//!   with the ordinal at or beyond `spec.replicas`; members it cannot place are never touched;
//! - only when that ordinal's pod is gone from the API (while it exists, its own preStop is
//!   responsible), and only when `spec.replicas` reads the same before and after that check;
//! - never while the StatefulSet is scaling up (`status.replicas` below `spec.replicas`),
//!   while the controller has not observed the latest spec, when `spec.replicas` is 0 (the
//!   cluster is stopped as a whole and comes back intact) or when the StatefulSet is gone or
//!   being deleted;
//! - only with a quorum of healthy voting members left after the removal (the same check
//!   `leave` makes), through the leader.
//!
//! Each sidecar also writes the record that the cluster formed (`member::formation`) at its
//! first pass that sees a leader, unless the record exists.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;

use super::cluster::{Membership, RaftMember};
use super::events::{record, Kind};
use super::flavors::for_member;
use super::formation::{self, Ensured};
use super::kraft::join::{ensure_voter, Step};
use super::Removal;
use super::{MemberEnv, MemberError};
use crate::policy::ordinals::Members;

/// What one look at the cluster calls for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Every member's ordinal is inside the replica range.
    Converged,
    /// Members outside the range, but nothing to do for now (and why); not worth an Event.
    Wait(String),
    /// A stale member that the rules forbid removing now, and why; told as an Event.
    Refuse { member: String, why: String },
    /// The highest stale member: removed once its pod is confirmed gone.
    Candidate {
        member: RaftMember,
        ordinal: i32,
        members: Members,
    },
}

/// Decides from the member list and the StatefulSet as the API server returned it.
pub fn plan(
    statefulset: &str,
    sts: Result<Option<&StatefulSet>, String>,
    members: &[RaftMember],
) -> Plan {
    let sts = match sts {
        Err(error) => return Plan::Wait(format!("cannot read the StatefulSet: {error}")),
        Ok(None) => return Plan::Wait("the StatefulSet is gone".to_owned()),
        Ok(Some(sts)) if sts.metadata.deletion_timestamp.is_some() => {
            return Plan::Wait("the StatefulSet is being deleted".to_owned())
        }
        Ok(Some(sts)) => sts,
    };
    let range = Members::of(sts);
    let replicas = range.replicas;
    let Some((ordinal, member)) = members
        .iter()
        .filter_map(|m| m.ordinal_in(statefulset).map(|o| (o, m)))
        .filter(|(o, _)| range.is_beyond(*o))
        .max_by_key(|(o, _)| *o)
    else {
        return Plan::Converged;
    };
    if replicas == 0 {
        return Plan::Wait(
            "spec.replicas is 0: the cluster is stopped as a whole and comes back intact"
                .to_owned(),
        );
    }
    let status = sts.status.as_ref();
    let observed = status.and_then(|s| s.observed_generation).unwrap_or(0);
    if sts.metadata.generation.is_some_and(|g| observed < g) {
        return Plan::Wait(format!(
            "the StatefulSet controller has not observed generation {} yet",
            sts.metadata.generation.unwrap_or_default()
        ));
    }
    let current = status.map_or(0, |s| s.replicas);
    if current < replicas {
        return Plan::Refuse {
            member: member.label(),
            why: format!(
                "the StatefulSet is scaling up (status.replicas {current} < spec.replicas {replicas}); \
                 no member is removed until it settles"
            ),
        };
    }
    Plan::Candidate {
        member: member.clone(),
        ordinal,
        members: range,
    }
}

/// What a pass did, for the log and the Events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pass {
    /// This member is not the leader (or its etcd does not answer): the leader's sidecar acts.
    NotLeader,
    Quiet(Plan),
    Repaired(String),
    Refused(String),
}

/// One look at the cluster, and at most one removal.
pub async fn pass(
    env: &MemberEnv,
    cluster: &impl Membership,
    client: &kube::Client,
) -> Result<Pass, MemberError> {
    if !cluster.leads().await {
        return Ok(Pass::NotLeader);
    }
    let view = cluster.view(false).await?;
    let members = view.members.clone();
    let statefulsets = kube::Api::<StatefulSet>::namespaced(client.clone(), &env.namespace);
    let read = || async {
        statefulsets
            .get_opt(&env.statefulset)
            .await
            .map_err(|e| e.to_string())
    };
    let first = read().await;
    let (member, ordinal, range) = match plan(
        &env.statefulset,
        first.as_ref().map(Option::as_ref).map_err(Clone::clone),
        &members,
    ) {
        Plan::Candidate {
            member,
            ordinal,
            members: range,
        } => (member, ordinal, range),
        Plan::Refuse { member, why } => {
            return Ok(Pass::Refused(format!("stale member {member} kept: {why}")))
        }
        quiet => return Ok(Pass::Quiet(quiet)),
    };
    let pod = format!("{}-{ordinal}", env.statefulset);
    let pods = kube::Api::<Pod>::namespaced(client.clone(), &env.namespace);
    match pods.get_opt(&pod).await {
        Ok(None) => {}
        Ok(Some(_)) => {
            return Ok(Pass::Quiet(Plan::Wait(format!(
                "pod {pod} still exists; its own preStop hook removes member {}",
                member.label()
            ))))
        }
        Err(error) => {
            return Ok(Pass::Quiet(Plan::Wait(format!(
                "cannot read pod {pod}: {error}"
            ))))
        }
    }
    // The replica count must not have moved while the pod was looked up.
    let second = read().await;
    let again = plan(
        &env.statefulset,
        second.as_ref().map(Option::as_ref).map_err(Clone::clone),
        &members,
    );
    if !matches!(&again, Plan::Candidate { member: m, members: r, .. } if m.id == member.id && *r == range)
    {
        return Ok(Pass::Quiet(Plan::Wait(
            "the StatefulSet changed during the check; looking again next pass".to_owned(),
        )));
    }
    let name = member.label();
    match cluster.remove(&member, &view, Duration::from_secs(5)).await {
        Ok(Removal::Removed) => Ok(Pass::Repaired(format!(
            "removed stale member {name} (id {}): ordinal {ordinal} >= {range} and pod {pod} \
             is gone, so its own leave did not finish; {} members remain",
            member.id,
            members.len() - 1
        ))),
        Ok(Removal::AlreadyGone) => Ok(Pass::Quiet(Plan::Converged)),
        Err(error @ MemberError::QuorumAtRisk { .. }) => {
            Ok(Pass::Refused(format!("stale member {name} kept: {error}")))
        }
        Err(error) => Err(error),
    }
}

/// Runs passes every `interval` until SIGTERM or SIGINT. Each repair and each new refusal
/// is an Event on the StatefulSet; a refusal repeated pass after pass is told once.
pub async fn run(env: &MemberEnv, interval: Duration) -> Result<(), MemberError> {
    const EVENT_TIMEOUT: Duration = Duration::from_secs(3);
    let mut client: Option<kube::Client> = None;
    // etcd's is known from the env; the generic flavor's URLs are read off the StatefulSet
    // on every pass, so a changed annotation takes effect without a restart.
    let etcd = match env.etcd {
        Some(_) => for_member(env, None)?,
        None => None,
    };
    let mut told_no_url = false;
    // Whether the record that the cluster formed is known to exist (`member::formation`).
    let mut recorded = false;
    let mut last_told: Option<String> = None;
    let mut stop = std::pin::pin!(shutdown());
    tracing::info!(member = %env.pod_name, ?interval, "watching for members outside the replica range");
    loop {
        if client.is_none() {
            match kube::Client::try_default().await {
                Ok(c) => client = Some(c),
                Err(error) => tracing::warn!(%error, "no Kubernetes client yet"),
            }
        }
        if let Some(client) = &client {
            let budget = interval.max(Duration::from_secs(10));
            let generic;
            let cluster = match &etcd {
                Some(cluster) => Some(cluster),
                None => {
                    generic = generic_cluster(env, client).await;
                    match &generic {
                        Ok(Some(cluster)) => Some(cluster),
                        Ok(None) => {
                            if !told_no_url {
                                tracing::info!("annotation raft-injector.io/members-url is not set; nothing to repair");
                                told_no_url = true;
                            }
                            None
                        }
                        Err(error) => {
                            tracing::warn!(%error, "member reconcile: cannot read the StatefulSet's URLs");
                            None
                        }
                    }
                }
            };
            if let (false, Some(cluster)) = (recorded, cluster) {
                let ensured =
                    tokio::time::timeout(budget, formation::ensure(env, client, cluster)).await;
                match ensured {
                    Ok(Ok(Ensured::Created(message))) => {
                        tracing::info!("member reconcile: {message}");
                        record(env, Kind::Normal, "ClusterFormed", &message, EVENT_TIMEOUT).await;
                        recorded = true;
                    }
                    Ok(Ok(Ensured::Present)) => recorded = true,
                    Ok(Err(why)) => {
                        tracing::info!(%why, "member reconcile: formation not recorded yet")
                    }
                    Err(_) => tracing::warn!(
                        ?budget,
                        "member reconcile: recording the formation did not finish in time"
                    ),
                }
            }
            if let Some(super::flavors::Flavor::Kraft(kraft)) = cluster {
                let step = tokio::time::timeout(budget, kraft_step(env, kraft, client)).await;
                match step {
                    Ok(Ok(Step::Added(message))) => {
                        tracing::info!("member reconcile: {message}");
                        record(env, Kind::Normal, "MemberJoined", &message, EVENT_TIMEOUT).await;
                    }
                    Ok(Ok(Step::Replaced(message))) => {
                        tracing::warn!("member reconcile: {message}");
                        record(env, Kind::Normal, "MemberReplaced", &message, EVENT_TIMEOUT).await;
                    }
                    Ok(Ok(Step::Nothing(why))) => tracing::debug!(%why, "member reconcile: voter"),
                    Ok(Err(error)) => tracing::info!(%error, "member reconcile: not a voter yet"),
                    Err(_) => tracing::warn!(
                        ?budget,
                        "member reconcile: the voter step did not finish in time"
                    ),
                }
            }
            let outcome = match cluster {
                Some(cluster) => tokio::time::timeout(budget, pass(env, cluster, client)).await,
                None => Ok(Ok(Pass::NotLeader)),
            };
            match outcome {
                Ok(Ok(Pass::Repaired(message))) => {
                    tracing::info!("member reconcile: {message}");
                    record(env, Kind::Normal, "MemberRepaired", &message, EVENT_TIMEOUT).await;
                    last_told = None;
                    // Look again soon: there may be a second stale member.
                    tokio::select! {
                        _ = &mut stop => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
                Ok(Ok(Pass::Refused(message))) => {
                    if last_told.as_deref() != Some(message.as_str()) {
                        tracing::warn!("member reconcile: {message}");
                        record(
                            env,
                            Kind::Warning,
                            "MemberRepairRefused",
                            &message,
                            EVENT_TIMEOUT,
                        )
                        .await;
                        last_told = Some(message);
                    }
                }
                Ok(Ok(Pass::Quiet(Plan::Converged))) | Ok(Ok(Pass::NotLeader)) => last_told = None,
                Ok(Ok(Pass::Quiet(plan))) => tracing::debug!(?plan, "member reconcile: waiting"),
                Ok(Err(error)) => tracing::warn!(%error, "member reconcile: pass failed"),
                Err(_) => tracing::warn!(?budget, "member reconcile: pass did not finish in time"),
            }
        }
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// The kraft flavor's own step: this member into the voters once it may be one.
async fn kraft_step(
    env: &MemberEnv,
    cluster: &super::kraft::KraftCluster,
    client: &kube::Client,
) -> Result<Step, MemberError> {
    let sts = kube::Api::<StatefulSet>::namespaced(client.clone(), &env.namespace)
        .get_opt(&env.statefulset)
        .await;
    let range = match sts {
        Ok(Some(sts)) if sts.metadata.deletion_timestamp.is_none() => {
            let range = Members::of(&sts);
            Some((range.start, range.replicas))
        }
        _ => None,
    };
    ensure_voter(
        cluster,
        std::path::Path::new(crate::policy::names::HELPER_MOUNT_PATH),
        range,
    )
    .await
}

/// The generic flavor's cluster as the StatefulSet's annotations describe it now.
async fn generic_cluster(
    env: &MemberEnv,
    client: &kube::Client,
) -> Result<Option<super::flavors::Flavor>, MemberError> {
    let sts = kube::Api::<StatefulSet>::namespaced(client.clone(), &env.namespace)
        .get_opt(&env.statefulset)
        .await
        .map_err(|e| MemberError::Unreachable {
            tried: "the Kubernetes API".to_owned(),
            last: e.to_string(),
        })?;
    for_member(env, sts.as_ref())
}

/// Resolves on SIGTERM or SIGINT. As a container's PID 1 the process would otherwise
/// ignore SIGTERM and hold the pod's shutdown for the whole grace period.
async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn member(id: u64, name: &str, host: &str) -> RaftMember {
        RaftMember {
            id: format!("{id:x}"),
            name: name.to_owned(),
            addresses: vec![format!("http://{host}.etcd.ns.svc.cluster.local:2380")],
            voter: true,
            started: !name.is_empty(),
        }
    }

    fn ordinal_in(statefulset: &str, member: &RaftMember) -> Option<i32> {
        member.ordinal_in(statefulset)
    }

    fn started(n: usize) -> Vec<RaftMember> {
        (0..n)
            .map(|i| member(i as u64 + 1, &format!("etcd-{i}"), &format!("etcd-{i}")))
            .collect()
    }

    fn sts(spec: i32, status: i32) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("etcd".to_owned()),
                generation: Some(4),
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(spec),
                ..StatefulSetSpec::default()
            }),
            status: Some(StatefulSetStatus {
                replicas: status,
                observed_generation: Some(4),
                ..StatefulSetStatus::default()
            }),
        }
    }

    #[test]
    fn ordinals_come_from_names_or_unstarted_peer_hosts_of_this_statefulset_only() {
        assert_eq!(ordinal_in("etcd", &member(1, "etcd-4", "etcd-4")), Some(4));
        assert_eq!(ordinal_in("etcd", &member(1, "", "etcd-3")), Some(3));
        for foreign in [
            "etcd-main-4",
            "other-4",
            "etcd-",
            "etcd-01",
            "etcd-+1",
            "etcd4",
        ] {
            assert_eq!(
                ordinal_in("etcd", &member(1, foreign, foreign)),
                None,
                "{foreign}"
            );
        }
        // `etcd-main` members are not `etcd`'s, and the other way round.
        assert_eq!(
            ordinal_in("etcd-main", &member(1, "etcd-main-2", "x")),
            Some(2)
        );
    }

    #[test]
    fn the_highest_member_outside_the_range_is_the_candidate() {
        let members = started(5);
        let set = sts(3, 3);
        match plan("etcd", Ok(Some(&set)), &members) {
            Plan::Candidate {
                member,
                ordinal,
                members,
            } => {
                assert_eq!(
                    (member.name.as_str(), ordinal, members.replicas),
                    ("etcd-4", 4, 3)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn with_start_ordinals_only_members_past_start_plus_replicas_are_stale() {
        let members = started(5);
        let mut set = sts(3, 3);
        if let Some(spec) = set.spec.as_mut() {
            spec.ordinals =
                Some(k8s_openapi::api::apps::v1::StatefulSetOrdinals { start: Some(1) });
        }
        // Members 0..4; the StatefulSet wants 1..3: only etcd-4 is past the end (etcd-0 is
        // below the start, which is not a scale-down and is left to the operator).
        match plan("etcd", Ok(Some(&set)), &members) {
            Plan::Candidate { member, .. } => assert_eq!(member.name, "etcd-4"),
            other => panic!("{other:?}"),
        }
        let four: Vec<RaftMember> = started(5).into_iter().skip(1).collect();
        match plan("etcd", Ok(Some(&set)), &four[..3]) {
            Plan::Converged => {}
            other => panic!("members 1..3 are exactly the range: {other:?}"),
        }
    }

    #[test]
    fn a_member_added_but_never_started_outside_the_range_is_stale_too() {
        let mut members = started(3);
        members.push(member(9, "", "etcd-3"));
        let set = sts(3, 3);
        assert!(matches!(
            plan("etcd", Ok(Some(&set)), &members),
            Plan::Candidate { ordinal: 3, .. }
        ));
    }

    #[test]
    fn members_inside_the_range_and_foreign_members_mean_converged() {
        let mut members = started(3);
        members.push(member(7, "backup-9", "backup-9"));
        let set = sts(3, 3);
        assert_eq!(plan("etcd", Ok(Some(&set)), &members), Plan::Converged);
        // Scaled up with joins still pending: nothing is outside the range.
        let set = sts(5, 4);
        assert_eq!(plan("etcd", Ok(Some(&set)), &started(4)), Plan::Converged);
    }

    #[test]
    fn no_repair_while_scaling_up() {
        // 5→3 left etcd-4 behind, then a scale-up to 4 began before the repair.
        let set = sts(4, 3);
        match plan("etcd", Ok(Some(&set)), &started(5)) {
            Plan::Refuse { member, why } => {
                assert_eq!(member, "etcd-4");
                assert!(why.contains("scaling up"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_repair_on_an_unread_stopped_deleted_or_unobserved_statefulset() {
        let members = started(5);
        let waits = |p: Plan| matches!(p, Plan::Wait(_));
        assert!(waits(plan("etcd", Err("forbidden".to_owned()), &members)));
        assert!(waits(plan("etcd", Ok(None), &members)));
        assert!(waits(plan("etcd", Ok(Some(&sts(0, 0))), &members)));
        let mut deleting = sts(3, 3);
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::chrono::Utc::now()));
        assert!(waits(plan("etcd", Ok(Some(&deleting)), &members)));
        let mut unobserved = sts(3, 3);
        unobserved.metadata.generation = Some(5);
        assert!(waits(plan("etcd", Ok(Some(&unobserved)), &members)));
    }
}
