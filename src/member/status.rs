//! `raft-injector member status`, for `kubectl exec`: this member's view of the cluster —
//! its id, the member list, the leader — and what `member leave` would do if the pod
//! stopped now, and why.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::cluster::Membership;
use super::flavors::{for_member, Flavor};
use super::generic::GenericCluster;
use super::leave::{decide, Decision};
use super::read_statefulset;
use super::MemberEnv;

/// One member as this member sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub id: String,
    pub name: String,
    pub started: bool,
    pub learner: bool,
    pub peer_urls: Vec<String>,
    /// Set when the member's ordinal is at or beyond `spec.replicas`: it should be gone.
    pub beyond_replicas: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OnStop {
    pub leaves: bool,
    pub why: String,
}

/// Everything `status` found; `problems` lists what it could not find out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub pod: String,
    pub statefulset: String,
    pub namespace: String,
    pub flavor: &'static str,
    pub id: Option<String>,
    pub leader: Option<String>,
    pub replicas: Option<i32>,
    pub members: Vec<MemberView>,
    pub on_stop: OnStop,
    pub problems: Vec<String>,
    /// What was not looked at, and why (not a problem).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Asks this member's own view of the cluster (etcd: its etcd; generic: the members URL on
/// this member) and the API server; every call is bounded.
/// `members_url`: the generic flavor's members URL as given on the command line, which
/// then wins over the StatefulSet's annotation.
pub async fn collect(env: &MemberEnv, members_url: Option<&str>) -> Status {
    let mut problems = Vec::new();
    let statefulset = read_statefulset(env, Duration::from_secs(5)).await;
    let cluster = match members_url.filter(|_| env.flavor() == "generic") {
        Some(raw) => GenericCluster::new(env, raw).map(|c| Some(Flavor::Generic(c))),
        None => for_member(env, statefulset.as_ref().ok().and_then(Option::as_ref)),
    };
    let range = statefulset
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
        .map(crate::policy::ordinals::Members::of);
    if let Err(error) = &statefulset {
        problems.push(format!("cannot read the StatefulSet: {error}"));
    }
    let on_stop = match decide(env.ordinal, statefulset) {
        Decision::Keep(why) => OnStop { leaves: false, why },
        Decision::Remove { members } => OnStop {
            leaves: true,
            why: format!(
                "ordinal {} >= {members}: scaled away, member leave removes this member",
                env.ordinal
            ),
        },
    };
    let mut status = Status {
        pod: env.pod_name.clone(),
        statefulset: env.statefulset.clone(),
        namespace: env.namespace.clone(),
        flavor: env.flavor(),
        id: None,
        leader: None,
        replicas: range.map(|r| r.replicas),
        members: Vec::new(),
        on_stop,
        problems,
        notes: Vec::new(),
    };
    let cluster = match cluster {
        Ok(Some(cluster)) => cluster,
        Ok(None) => {
            status.notes.push(format!(
                "the member list is not read: annotation {} is not set (README: the members URL)",
                crate::policy::names::MEMBERS_URL_ANNOTATION
            ));
            return status;
        }
        Err(error) => {
            status.problems.push(error.to_string());
            return status;
        }
    };
    // This member's own view, which needs no quorum.
    match cluster.view(true).await {
        Ok(view) => {
            status.id = view.me.clone();
            status.leader = view.leader_label();
            status.members = view
                .members
                .iter()
                .map(|m| MemberView {
                    id: m.id.clone(),
                    name: m.label(),
                    started: m.started,
                    learner: !m.voter,
                    peer_urls: m.addresses.clone(),
                    beyond_replicas: match (m.ordinal_in(&env.statefulset), range) {
                        (Some(o), Some(range)) => range.is_beyond(o),
                        _ => false,
                    },
                })
                .collect();
        }
        Err(error) => status.problems.push(format!("member list: {error}")),
    }
    if status.leader.is_none() && status.problems.is_empty() {
        status
            .problems
            .push("no leader known: the cluster has no quorum".to_owned());
    }
    status
}

/// The text `kubectl exec ... member status` prints.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let id = status.id.as_deref().unwrap_or("unknown");
    let _ = writeln!(
        out,
        "member    {} (id {id}) of StatefulSet {}/{}, flavor {}",
        status.pod, status.namespace, status.statefulset, status.flavor
    );
    if !status.members.is_empty() {
        let replicas = status
            .replicas
            .map_or_else(|| "unknown".to_owned(), |r| r.to_string());
        let _ = writeln!(
            out,
            "cluster   {} members, leader {}, spec.replicas {replicas}",
            status.members.len(),
            status.leader.as_deref().unwrap_or("none")
        );
        let _ = writeln!(out, "members");
        let width = status
            .members
            .iter()
            .map(|m| m.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let id_width = status
            .members
            .iter()
            .map(|m| m.id.len())
            .max()
            .unwrap_or(16)
            .max(16);
        let _ = writeln!(
            out,
            "  {:<id_width$}  {:<width$}  {:<9}  PEER URL",
            "ID", "NAME", "STATE"
        );
        // Kafka's words for them: voters and observers (brokers, controllers not yet added).
        let (non_voter, voter) = match status.flavor {
            "kraft" => ("observer", "voter"),
            _ => ("learner", "started"),
        };
        for m in &status.members {
            let state = match (m.started, m.learner) {
                (false, _) => "unstarted",
                (true, true) => non_voter,
                (true, false) => voter,
            };
            let note = if m.beyond_replicas {
                "   <- beyond spec.replicas: stale unless its pod is still stopping"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {:<id_width$}  {:<width$}  {state:<9}  {}{note}",
                m.id,
                m.name,
                m.peer_urls.join(",")
            );
        }
    }
    let verb = if status.on_stop.leaves {
        "leaves the Raft configuration"
    } else {
        "keeps its membership"
    };
    let _ = writeln!(out, "on stop   {verb}: {}", status.on_stop.why);
    for note in &status.notes {
        let _ = writeln!(out, "note      {note}");
    }
    for problem in &status.problems {
        let _ = writeln!(out, "problem   {problem}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Status {
        Status {
            pod: "etcd-1".to_owned(),
            statefulset: "etcd".to_owned(),
            namespace: "demo".to_owned(),
            flavor: "etcd",
            id: Some("e91f".to_owned()),
            leader: Some("etcd-0".to_owned()),
            replicas: Some(3),
            members: vec![
                MemberView {
                    id: "823f".to_owned(),
                    name: "etcd-0".to_owned(),
                    started: true,
                    learner: false,
                    peer_urls: vec!["http://etcd-0.etcd.demo.svc.cluster.local:2380".to_owned()],
                    beyond_replicas: false,
                },
                MemberView {
                    id: "77aa".to_owned(),
                    name: "etcd-4".to_owned(),
                    started: true,
                    learner: false,
                    peer_urls: vec!["http://etcd-4.etcd.demo.svc.cluster.local:2380".to_owned()],
                    beyond_replicas: true,
                },
            ],
            on_stop: OnStop {
                leaves: false,
                why: "ordinal 1 is below spec.replicas 3".to_owned(),
            },
            problems: vec![],
            notes: vec![],
        }
    }

    #[test]
    fn the_text_names_the_member_the_leader_a_stale_member_and_the_stop_decision() {
        let text = render(&status());
        assert!(
            text.contains("member    etcd-1 (id e91f) of StatefulSet demo/etcd"),
            "{text}"
        );
        assert!(
            text.contains("2 members, leader etcd-0, spec.replicas 3"),
            "{text}"
        );
        let stale = text.lines().find(|l| l.contains("etcd-4")).unwrap();
        assert!(stale.contains("beyond spec.replicas"), "{text}");
        let fine = text.lines().find(|l| l.contains("823f")).unwrap();
        assert!(!fine.contains("beyond"), "{text}");
        assert!(
            text.contains("on stop   keeps its membership: ordinal 1 is below"),
            "{text}"
        );
    }

    #[test]
    fn json_has_every_field() {
        let value = serde_json::to_value(status()).unwrap();
        for key in [
            "pod", "id", "leader", "replicas", "members", "onStop", "problems",
        ] {
            assert!(value.get(key).is_some(), "{key}: {value}");
        }
        assert_eq!(value["members"][1]["beyondReplicas"], true);
    }
}
