//! The record that a Raft cluster formed, kept where no member's volume can take it along:
//! a ConfigMap `<statefulset>-raft-formed` in the StatefulSet's namespace, owned by the
//! StatefulSet.
//!
//! A member that starts with an empty volume cannot tell on its own whether it is one of a
//! new cluster's first members or a member whose volume was lost: with its peers down too
//! (a full outage, a stop and a start after the volume went) both look like silence. The
//! difference matters: a voter that forgot its log and starts under its old identity can
//! elect a leader that lacks committed entries. So once a member sees a leader, it records
//! that the cluster formed ([`ensure`]); the join of a member with an empty volume reads the
//! record ([`read`]) and, when the cluster formed, never starts a new one: it waits for a
//! quorum and is replaced as a new member.
//!
//! The record belongs to one StatefulSet, by UID, through its owner reference:
//! - deleting the StatefulSet (the default, cascading) lets the garbage collector delete the
//!   record, so a new StatefulSet of the same name starts a new cluster. Until the collector
//!   has done so, a record naming another StatefulSet's UID reads as [`Formation::Unknown`];
//! - `kubectl delete --cascade=orphan` (to change a field the API will not update) keeps the
//!   pods and volumes, and the collector strips the owner reference: a record that names no
//!   owner still counts as formed. Leaning that way is safe: the worst case is a member
//!   that waits, and says which ConfigMap to delete if the cluster really is new;
//! - reinstalling raft-injector touches neither.
//!
//! The helper only ever creates the record; it never updates or deletes one (the member
//! ServiceAccount gets `get` and `create` on ConfigMaps, nothing more).

use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::chrono::{DateTime, SecondsFormat, Utc};

use super::cluster::{Membership, View};
use super::{MemberEnv, MemberError};

/// The record's name for StatefulSet `statefulset`.
pub fn record_name(statefulset: &str) -> String {
    format!(
        "{statefulset}{}",
        crate::policy::names::FORMATION_RECORD_SUFFIX
    )
}

/// What the record says, as the join needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Formation {
    /// No record: the cluster never formed (or formed before raft-injector kept records;
    /// the join then falls back to asking the peers).
    NotRecorded,
    /// The cluster formed; `record` names the ConfigMap and says when and with whom.
    Formed {
        record: String,
        at: String,
        members: String,
    },
    /// It cannot be told now, and why.
    Unknown(String),
}

/// The StatefulSet's UID and the record as the API returned them → what they say.
pub fn judge(statefulset_uid: &str, record: Option<&ConfigMap>) -> Formation {
    let Some(record) = record else {
        return Formation::NotRecorded;
    };
    let name = record.metadata.name.clone().unwrap_or_default();
    let namespace = record.metadata.namespace.clone().unwrap_or_default();
    let owners: Vec<&OwnerReference> = record
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.kind == "StatefulSet")
        .collect();
    if !owners.is_empty() && !owners.iter().any(|o| o.uid == statefulset_uid) {
        let uids: Vec<&str> = owners.iter().map(|o| o.uid.as_str()).collect();
        return Formation::Unknown(format!(
            "ConfigMap {namespace}/{name} records a cluster of an earlier StatefulSet of this name (uid {}), not \
             of this one (uid {statefulset_uid}); the garbage collector deletes it shortly (if it stays, delete \
             it by hand once you are sure the old cluster's volumes are gone)",
            uids.join(", ")
        ));
    }
    let data = record.data.clone().unwrap_or_default();
    let at = data.get("formed-at").cloned().unwrap_or_default();
    let members = data.get("members").cloned().unwrap_or_default();
    let orphaned = if owners.is_empty() {
        " (it names no owner: the StatefulSet was deleted with --cascade=orphan and created again; delete \
         the ConfigMap only if this is a new cluster whose members all start with empty volumes)"
    } else {
        ""
    };
    Formation::Formed {
        record: format!("ConfigMap {namespace}/{name}{orphaned}"),
        at,
        members,
    }
}

/// `members` as the record keeps it: one line per member, `<label> id=<id> voter|non-voter`.
pub fn members_text(view: &View) -> String {
    let mut lines: Vec<String> = view
        .members
        .iter()
        .map(|m| {
            let role = if m.voter { "voter" } else { "non-voter" };
            format!("{} id={} {role}", m.label(), m.id)
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// The record for `sts` as formed with `view`, at `now`.
pub fn record_for(
    env: &MemberEnv,
    sts: &StatefulSet,
    view: &View,
    now: DateTime<Utc>,
) -> ConfigMap {
    let uid = sts.metadata.uid.clone().unwrap_or_default();
    let data = [
        ("flavor", env.flavor().to_owned()),
        ("formed-at", now.to_rfc3339_opts(SecondsFormat::Secs, true)),
        ("recorded-by", env.pod_name.clone()),
        ("statefulset-uid", uid.clone()),
        (
            "leader",
            view.leader_label().unwrap_or_else(|| "(none seen)".to_owned()),
        ),
        ("members", members_text(view)),
        (
            "about",
            "Written by raft-injector once this Raft cluster formed. A member that starts with an empty \
             volume reads it: the cluster formed, so the volume was lost, and the member is replaced as a new \
             member once a quorum answers instead of starting a new cluster under its old identity. Deleted \
             with the StatefulSet. Delete it by hand only when every member's volume is gone and the cluster \
             should start anew."
                .to_owned(),
        ),
    ];
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(record_name(&env.statefulset)),
            namespace: Some(env.namespace.clone()),
            labels: Some(
                [
                    ("app.kubernetes.io/managed-by", "raft-injector"),
                    ("raft-injector.io/statefulset", env.statefulset.as_str()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".to_owned(),
                kind: "StatefulSet".to_owned(),
                name: env.statefulset.clone(),
                uid,
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        data: Some(data.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
        ..ConfigMap::default()
    }
}

async fn statefulset(client: &kube::Client, env: &MemberEnv) -> Result<StatefulSet, String> {
    kube::Api::<StatefulSet>::namespaced(client.clone(), &env.namespace)
        .get_opt(&env.statefulset)
        .await
        .map_err(|e| format!("cannot read StatefulSet {}: {e}", env.statefulset))?
        .ok_or_else(|| format!("StatefulSet {} is gone", env.statefulset))
}

async fn read_with(client: &kube::Client, env: &MemberEnv) -> Formation {
    let sts = match statefulset(client, env).await {
        Ok(sts) => sts,
        Err(why) => return Formation::Unknown(why),
    };
    let name = record_name(&env.statefulset);
    match kube::Api::<ConfigMap>::namespaced(client.clone(), &env.namespace)
        .get_opt(&name)
        .await
    {
        Ok(record) => judge(
            sts.metadata.uid.as_deref().unwrap_or_default(),
            record.as_ref(),
        ),
        Err(error) => Formation::Unknown(format!(
            "cannot read ConfigMap {}/{name}, the record of whether this cluster formed: {error} (the pod's \
             ServiceAccount needs get and create on configmaps: bind the raft-injector-member ClusterRole)",
            env.namespace
        )),
    }
}

/// Reads the record with the pod's credentials, within `timeout`.
pub async fn read(env: &MemberEnv, timeout: Duration) -> Formation {
    let read = async {
        match kube::Client::try_default().await {
            Ok(client) => read_with(&client, env).await,
            Err(error) => Formation::Unknown(format!("no Kubernetes client: {error}")),
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| {
            Formation::Unknown(format!(
                "no answer from the Kubernetes API within {timeout:?}"
            ))
        })
}

/// The formation record, asked again (every 2 s, until shortly before `deadline`) while it
/// cannot be read; `Unknown` then fails the join, which never guesses towards a new cluster.
pub async fn read_until(env: &MemberEnv, deadline: Instant) -> Result<Formation, MemberError> {
    loop {
        match read(env, Duration::from_secs(5)).await {
            Formation::Unknown(why) => {
                if Instant::now() + Duration::from_secs(8) >= deadline {
                    return Err(MemberError::FormationUnknown(why));
                }
                tracing::warn!(%why, "cannot tell yet whether the cluster formed; asking again");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            known => return Ok(known),
        }
    }
}

/// What [`ensure`] found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ensured {
    /// This call wrote the record.
    Created(String),
    /// The record of this StatefulSet was there already.
    Present,
}

/// Records that the cluster formed, as `cluster` shows it once it has a leader, unless a
/// record of this StatefulSet exists. Creates only: an existing record is never changed.
pub async fn ensure(
    env: &MemberEnv,
    client: &kube::Client,
    cluster: &impl Membership,
) -> Result<Ensured, String> {
    let sts = statefulset(client, env).await?;
    let uid = sts.metadata.uid.clone().unwrap_or_default();
    let configmaps = kube::Api::<ConfigMap>::namespaced(client.clone(), &env.namespace);
    let name = record_name(&env.statefulset);
    let existing = configmaps
        .get_opt(&name)
        .await
        .map_err(|e| format!("cannot read ConfigMap {name}: {e}"))?;
    match judge(&uid, existing.as_ref()) {
        Formation::Formed { .. } => return Ok(Ensured::Present),
        Formation::Unknown(why) => return Err(why),
        Formation::NotRecorded => {}
    }
    let view = cluster
        .view(false)
        .await
        .map_err(|e| format!("cannot read the member list: {e}"))?;
    if view.leader.is_none() {
        return Err("no leader yet: the cluster has not formed".to_owned());
    }
    let record = record_for(env, &sts, &view, Utc::now());
    match configmaps
        .create(&kube::api::PostParams::default(), &record)
        .await
    {
        Ok(_) => Ok(Ensured::Created(format!(
            "recorded that the cluster formed in ConfigMap {}/{name} (leader {}; members: {})",
            env.namespace,
            view.leader_label().unwrap_or_default(),
            members_text(&view).replace('\n', ", ")
        ))),
        Err(kube::Error::Api(answer)) if answer.code == 409 => Ok(Ensured::Present),
        Err(error) => Err(format!("cannot create ConfigMap {name}: {error}")),
    }
}

/// [`ensure`] with a client of its own, within `timeout`; for the join, where a failure
/// is only logged (the sidecar keeps trying).
pub async fn ensure_quietly(env: &MemberEnv, cluster: &impl Membership, timeout: Duration) {
    let write = async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| e.to_string())?;
        ensure(env, &client, cluster).await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(Ensured::Created(message))) => tracing::info!("{message}"),
        Ok(Ok(Ensured::Present)) => {}
        Ok(Err(error)) => tracing::warn!(%error, "could not record that the cluster formed"),
        Err(_) => tracing::warn!(?timeout, "could not record that the cluster formed in time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::cluster::RaftMember;

    fn env() -> MemberEnv {
        let get = |name: &str| {
            Some(
                match name {
                    "POD_NAME" => "store-1",
                    "POD_NAMESPACE" => "kv",
                    "RAFT_ORDINAL" => "1",
                    "RAFT_ID" => "store-1.store-peers.kv.svc.cluster.local",
                    "RAFT_ADDRESS" => "store-1.store-peers.kv.svc.cluster.local:9000",
                    "RAFT_PEERS" => {
                        "store-0.store-peers.kv.svc.cluster.local:9000,store-1.store-peers.kv.svc.cluster.local:9000,\
                         store-2.store-peers.kv.svc.cluster.local:9000"
                    }
                    "RAFT_CLUSTER_SIZE" => "3",
                    _ => return None,
                }
                .to_owned(),
            )
        };
        MemberEnv::from_lookup(get).expect("a generic member's env")
    }

    fn sts(uid: &str) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("store".to_owned()),
                namespace: Some("kv".to_owned()),
                uid: Some(uid.to_owned()),
                ..ObjectMeta::default()
            },
            ..StatefulSet::default()
        }
    }

    fn view() -> View {
        let member = |id: &str, name: &str, voter| RaftMember {
            id: id.to_owned(),
            name: name.to_owned(),
            addresses: vec![],
            voter,
            started: true,
        };
        View {
            members: vec![
                member("b", "store-1", true),
                member("a", "store-0", true),
                member("c", "store-2", false),
            ],
            leader: Some("a".to_owned()),
            me: Some("b".to_owned()),
        }
    }

    #[test]
    fn the_record_is_owned_by_the_statefulset_and_says_who_formed_it() {
        let now = DateTime::parse_from_rfc3339("2026-12-08T01:02:03Z")
            .unwrap()
            .with_timezone(&Utc);
        let record = record_for(&env(), &sts("uid-1"), &view(), now);
        assert_eq!(record.metadata.name.as_deref(), Some("store-raft-formed"));
        assert_eq!(record.metadata.namespace.as_deref(), Some("kv"));
        let owner = &record.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("StatefulSet", "store", "uid-1")
        );
        // No blockOwnerDeletion: that would need delete rights on the StatefulSet.
        assert_eq!(owner.block_owner_deletion, None);
        let data = record.data.as_ref().unwrap();
        assert_eq!(data["formed-at"], "2026-12-08T01:02:03Z");
        assert_eq!(data["leader"], "store-0");
        assert_eq!(
            data["members"],
            "store-0 id=a voter\nstore-1 id=b voter\nstore-2 id=c non-voter"
        );
        assert_eq!(data["statefulset-uid"], "uid-1");
    }

    #[test]
    fn a_record_counts_for_its_own_statefulset_and_an_orphaned_one_still_counts() {
        let record = record_for(&env(), &sts("uid-1"), &view(), Utc::now());
        assert_eq!(judge("uid-1", None), Formation::NotRecorded);
        assert!(matches!(
            judge("uid-1", Some(&record)),
            Formation::Formed { ref members, .. } if members.contains("store-0 id=a")
        ));
        // A StatefulSet of the same name created after the old one was deleted: the old
        // record is about to be collected, and says nothing about the new cluster.
        match judge("uid-2", Some(&record)) {
            Formation::Unknown(why) => {
                assert!(why.contains("uid-1") && why.contains("uid-2"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        // Deleted with --cascade=orphan and created again: the owner reference is gone; the
        // pods and volumes stayed, so the cluster still counts as formed.
        let mut orphaned = record.clone();
        orphaned.metadata.owner_references = None;
        match judge("uid-2", Some(&orphaned)) {
            Formation::Formed { record, .. } => {
                assert!(record.contains("cascade=orphan"), "{record}")
            }
            other => panic!("{other:?}"),
        }
    }
}
