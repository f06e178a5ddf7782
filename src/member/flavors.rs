//! The flavors the helper can talk to: the one place the in-pod side lists them (the rules
//! list them in `policy::flavor::rules`).

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;

use super::cluster::{Membership, RaftMember, View};
use super::etcd::EtcdCluster;
use super::generic::GenericCluster;
use super::kraft::KraftCluster;
use super::{MemberEnv, MemberError, Removal};

/// The flavors the helper can talk to.
pub enum Flavor {
    Etcd(EtcdCluster),
    Generic(GenericCluster),
    Kraft(KraftCluster),
}

/// This member's cluster, by its env and its StatefulSet's annotations; `None` for a generic
/// member whose StatefulSet has no `members-url` (the application's list cannot be read).
pub fn for_member(
    env: &MemberEnv,
    sts: Option<&StatefulSet>,
) -> Result<Option<Flavor>, MemberError> {
    if env.etcd.is_some() {
        return Ok(Some(Flavor::Etcd(EtcdCluster::new(env)?)));
    }
    if env.kraft.is_some() {
        // Every ordinal the StatefulSet has or had may lead.
        let replicas = sts.and_then(|s| {
            let spec = s.spec.as_ref().and_then(|s| s.replicas);
            let status = s.status.as_ref().map(|s| s.replicas);
            spec.max(status)
        });
        return Ok(Some(Flavor::Kraft(KraftCluster::new(env, replicas)?)));
    }
    Ok(GenericCluster::from_statefulset(env, sts)?.map(Flavor::Generic))
}

impl Membership for Flavor {
    fn flavor(&self) -> &'static str {
        match self {
            Flavor::Etcd(c) => c.flavor(),
            Flavor::Generic(c) => c.flavor(),
            Flavor::Kraft(c) => c.flavor(),
        }
    }

    async fn view(&self, local: bool) -> Result<View, MemberError> {
        match self {
            Flavor::Etcd(c) => c.view(local).await,
            Flavor::Generic(c) => c.view(local).await,
            Flavor::Kraft(c) => c.view(local).await,
        }
    }

    async fn leads(&self) -> bool {
        match self {
            Flavor::Etcd(c) => c.leads().await,
            Flavor::Generic(c) => c.leads().await,
            Flavor::Kraft(c) => c.leads().await,
        }
    }

    async fn remove(
        &self,
        member: &RaftMember,
        view: &View,
        budget: Duration,
    ) -> Result<Removal, MemberError> {
        match self {
            Flavor::Etcd(c) => c.remove(member, view, budget).await,
            Flavor::Generic(c) => c.remove(member, view, budget).await,
            Flavor::Kraft(c) => c.remove(member, view, budget).await,
        }
    }
}
