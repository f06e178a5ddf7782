//! What the shared member machinery (the leave's quorum check, reconcile's repair, `member
//! status`) asks of a flavor: the member list and its leader, whether this member leads, and
//! the removal of one member. Each flavor answers through its own protocol: etcd through its
//! gateway, the generic flavor through the application's `members-url` and `leave-url`.
//! Adding a flavor means one more implementation of [`Membership`] and one arm in
//! [`for_member`].

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use serde::Deserialize;

use super::etcd::{self, host_of, ordinal_of, quorum, Gateway};
use super::generic::{self, Hook, HookUrl};
use super::leave::{is_self, list_from_any, remove_member};
use super::{MemberEnv, MemberError, Removal};

/// One member of the Raft configuration, as any flavor reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftMember {
    /// The flavor's own id (etcd: the member id in hex; generic: the application's id).
    pub id: String,
    /// What the member calls itself, when it says (etcd: its name once started).
    pub name: String,
    /// Its peer address (`host:port` or URLs), as the flavor reports it.
    pub addresses: Vec<String>,
    /// A voting member (not a learner or observer).
    pub voter: bool,
    /// Running and part of the cluster (etcd: false for a member added but not started).
    pub started: bool,
}

impl RaftMember {
    /// The ordinal of this member in StatefulSet `statefulset`: from its name, its id, or its
    /// address's first label (`<sts>-<ordinal>`); `None` when none of them is a pod's.
    pub fn ordinal_in(&self, statefulset: &str) -> Option<i32> {
        let first_label = |s: &str| s.split('.').next().unwrap_or_default().to_owned();
        [self.name.clone(), first_label(&self.id)]
            .into_iter()
            .chain(self.addresses.iter().map(|a| first_label(host_of(a))))
            .find_map(|candidate| ordinal_of(statefulset, &candidate))
    }

    /// The member as an operator knows it: its name, else its address's first label, else its id.
    pub fn label(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        self.addresses
            .first()
            .map(|a| host_of(a).split('.').next().unwrap_or_default().to_owned())
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| self.id.clone())
    }
}

/// The member list and what it says about leadership.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub members: Vec<RaftMember>,
    /// The leader's id, when one is known.
    pub leader: Option<String>,
    /// This member's id, when the list names it.
    pub me: Option<String>,
}

impl View {
    pub fn leader_label(&self) -> Option<String> {
        let leader = self.leader.as_ref()?;
        Some(
            self.members
                .iter()
                .find(|m| &m.id == leader)
                .map_or_else(|| leader.clone(), RaftMember::label),
        )
    }
}

/// What a flavor answers. Every call is bounded by the flavor's own timeouts.
#[allow(async_fn_in_trait)] // used by this crate's helper on one runtime; no Send bound needed
pub trait Membership {
    /// The flavor's name, as `member status` shows it.
    fn flavor(&self) -> &'static str;
    /// The member list. `local`: this member's own view (needs no quorum); else one a quorum
    /// agrees on, where the flavor can tell.
    async fn view(&self, local: bool) -> Result<View, MemberError>;
    /// Whether this member is the leader now.
    async fn leads(&self) -> bool;
    /// Removes `member` (this one or another) when the remaining voters keep a quorum.
    async fn remove(
        &self,
        member: &RaftMember,
        view: &View,
        budget: Duration,
    ) -> Result<Removal, MemberError>;
}

/// The flavors the helper can talk to.
pub enum Flavor {
    Etcd(EtcdCluster),
    Generic(GenericCluster),
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
    Ok(GenericCluster::from_statefulset(env, sts)?.map(Flavor::Generic))
}

impl Membership for Flavor {
    fn flavor(&self) -> &'static str {
        match self {
            Flavor::Etcd(c) => c.flavor(),
            Flavor::Generic(c) => c.flavor(),
        }
    }

    async fn view(&self, local: bool) -> Result<View, MemberError> {
        match self {
            Flavor::Etcd(c) => c.view(local).await,
            Flavor::Generic(c) => c.view(local).await,
        }
    }

    async fn leads(&self) -> bool {
        match self {
            Flavor::Etcd(c) => c.leads().await,
            Flavor::Generic(c) => c.leads().await,
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
        }
    }
}

/// Checks that the voters left after removing `leaving` keep a quorum, counting the healthy
/// ones with `healthy`.
pub async fn check_quorum<F, Fut>(
    members: &[RaftMember],
    leaving: &RaftMember,
    healthy: F,
) -> Result<(), MemberError>
where
    F: Fn(RaftMember) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    if !leaving.voter {
        return Ok(());
    }
    let voters: Vec<&RaftMember> = members
        .iter()
        .filter(|m| m.voter && m.id != leaving.id)
        .collect();
    let mut alive = 0;
    for member in &voters {
        if healthy((*member).clone()).await {
            alive += 1;
        }
    }
    let needed = quorum(voters.len());
    if alive < needed {
        return Err(MemberError::QuorumAtRisk {
            healthy: alive,
            remaining: voters.len(),
            needed,
        });
    }
    Ok(())
}

// ---- etcd ---------------------------------------------------------------------------------

pub struct EtcdCluster {
    env: MemberEnv,
    gateway: Gateway,
    own: String,
    /// This member first, then the bootstrap members.
    endpoints: Vec<String>,
}

impl EtcdCluster {
    pub fn new(env: &MemberEnv) -> Result<EtcdCluster, MemberError> {
        let Some(etcd) = &env.etcd else {
            return Err(MemberError::MissingEnv("ETCD_ADVERTISE_CLIENT_URLS"));
        };
        let mut endpoints = vec![etcd.client_url.clone()];
        endpoints.extend(
            env.other_peer_hosts()
                .into_iter()
                .map(|host| etcd.client_url_of(&host)),
        );
        Ok(EtcdCluster {
            env: env.clone(),
            gateway: Gateway::for_member(env)?,
            own: etcd.client_url.clone(),
            endpoints,
        })
    }

    fn member(&self, m: &etcd::Member) -> RaftMember {
        RaftMember {
            id: format!("{:x}", m.id),
            name: m.name.clone(),
            addresses: m.peer_urls.clone(),
            voter: !m.is_learner,
            started: m.is_started(),
        }
    }
}

impl Membership for EtcdCluster {
    fn flavor(&self) -> &'static str {
        "etcd"
    }

    async fn view(&self, local: bool) -> Result<View, MemberError> {
        let members = if local {
            self.gateway
                .member_list(&self.own, false)
                .await
                .map_err(MemberError::from)?
        } else {
            list_from_any(&self.gateway, &self.endpoints, true).await?
        };
        let leader = match self.gateway.status(&self.own).await {
            Ok(s) if s.leader != 0 => Some(format!("{:x}", s.leader)),
            _ => None,
        };
        Ok(View {
            me: members
                .iter()
                .find(|m| is_self(m, &self.env))
                .map(|m| format!("{:x}", m.id)),
            members: members.iter().map(|m| self.member(m)).collect(),
            leader,
        })
    }

    async fn leads(&self) -> bool {
        matches!(self.gateway.status(&self.own).await, Ok(s) if s.member_id == s.leader && s.leader != 0)
    }

    async fn remove(
        &self,
        member: &RaftMember,
        _view: &View,
        _budget: Duration,
    ) -> Result<Removal, MemberError> {
        // etcd's own list, for the client URLs the quorum check and the removal go through.
        let members = list_from_any(&self.gateway, &self.endpoints, true).await?;
        let Some(target) = members.iter().find(|m| format!("{:x}", m.id) == member.id) else {
            return Ok(Removal::AlreadyGone);
        };
        remove_member(&self.gateway, target, &members, &self.endpoints).await
    }
}

// ---- generic ------------------------------------------------------------------------------

/// The application's answer at its members URL (README: the members URL).
#[derive(Debug, Deserialize)]
struct MembersAnswer {
    members: Vec<AnsweredMember>,
    #[serde(default)]
    leader: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct AnsweredMember {
    id: serde_json::Value,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default = "yes")]
    voter: bool,
}

fn yes() -> bool {
    true
}

/// An id as the application wrote it: a string as is, a number in decimal.
fn id_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The most members an answer may list, and its largest size.
const MAX_MEMBERS: usize = 1000;
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Reads the members URL's answer into a [`View`], or says what is wrong with it.
pub fn parse_members(body: &[u8], env: &MemberEnv) -> Result<View, String> {
    if body.len() > MAX_ANSWER_BYTES {
        return Err(format!(
            "the answer is larger than {MAX_ANSWER_BYTES} bytes"
        ));
    }
    let answer: MembersAnswer = serde_json::from_slice(body).map_err(|e| {
        format!("not the documented JSON ({{\"members\": [{{\"id\", \"address\", \"voter\"}}], \"leader\"}}): {e}")
    })?;
    if answer.members.len() > MAX_MEMBERS {
        return Err(format!("more than {MAX_MEMBERS} members"));
    }
    let mut members = Vec::with_capacity(answer.members.len());
    for m in answer.members {
        let id = id_text(&m.id)
            .ok_or_else(|| format!("member id {} is not a string or a number", m.id))?;
        members.push(RaftMember {
            id,
            name: m.name.unwrap_or_default(),
            addresses: m.address.into_iter().collect(),
            voter: m.voter,
            started: true,
        });
    }
    let is_me = |m: &RaftMember| {
        m.id == env.pod_name
            || m.id == env.id
            || m.name == env.pod_name
            || m.addresses.iter().any(|a| host_of(a) == env.id)
    };
    Ok(View {
        me: members.iter().find(|m| is_me(m)).map(|m| m.id.clone()),
        leader: answer.leader.as_ref().and_then(id_text),
        members,
    })
}

pub struct GenericCluster {
    env: MemberEnv,
    http: reqwest::Client,
    members: HookUrl,
    leave: Option<HookUrl>,
}

impl GenericCluster {
    /// From a members URL alone (no leave URL: it can list, not remove).
    pub fn new(env: &MemberEnv, members_url: &str) -> Result<GenericCluster, MemberError> {
        let members = HookUrl::parse_as(Hook::Members, members_url).map_err(|why| {
            MemberError::BadHookUrl {
                hook: Hook::Members,
                why,
            }
        })?;
        Ok(GenericCluster {
            env: env.clone(),
            http: env.http_client(etcd::CALL_TIMEOUT)?,
            members,
            leave: None,
        })
    }

    /// `None` without a members URL.
    pub fn from_statefulset(
        env: &MemberEnv,
        sts: Option<&StatefulSet>,
    ) -> Result<Option<GenericCluster>, MemberError> {
        let annotation = |hook: Hook| {
            sts.and_then(|s| s.metadata.annotations.as_ref())
                .and_then(|a| a.get(hook.annotation()))
                .map(|raw| {
                    HookUrl::parse_as(hook, raw)
                        .map_err(|why| MemberError::BadHookUrl { hook, why })
                })
                .transpose()
        };
        let Some(members) = annotation(Hook::Members)? else {
            return Ok(None);
        };
        Ok(Some(GenericCluster {
            env: env.clone(),
            http: env.http_client(etcd::CALL_TIMEOUT)?,
            members,
            leave: annotation(Hook::Leave)?,
        }))
    }

    /// The members URL on the member at `host` (when the URL names `{peer}`).
    fn members_url_at(&self, host: &str) -> String {
        generic::fill(&self.members, &self.env).replace("{peer}", host)
    }

    async fn ask(&self, url: &str) -> Result<View, MemberError> {
        let refused = |status: u16, body: String| MemberError::HookRefused {
            hook: Hook::Members,
            url: url.to_owned(),
            status,
            body,
        };
        let response = self
            .http
            .request(self.members.method.clone(), url)
            .send()
            .await
            .map_err(|e| MemberError::Unreachable {
                tried: url.to_owned(),
                last: e.to_string(),
            })?;
        let status = response.status().as_u16();
        let body = generic::read_bounded(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| refused(status, e))?;
        if !(200..300).contains(&status) {
            return Err(refused(
                status,
                String::from_utf8_lossy(&body).chars().take(512).collect(),
            ));
        }
        parse_members(&body, &self.env).map_err(|why| refused(status, why))
    }

    /// Where to ask, in order: this member first when `local`, then the bootstrap members.
    fn urls(&self, local: bool) -> Vec<String> {
        if !self.members.template.contains("{peer}") {
            return vec![generic::fill(&self.members, &self.env)];
        }
        let mut hosts = Vec::new();
        if local {
            hosts.push(self.env.id.clone());
        }
        hosts.extend(self.env.other_peer_hosts());
        if !local {
            hosts.push(self.env.id.clone());
        }
        hosts.iter().map(|h| self.members_url_at(h)).collect()
    }

    /// The stable DNS name of the member at `ordinal` (this member's, with its first label
    /// changed).
    fn host_of_ordinal(&self, ordinal: i32) -> String {
        let rest = self.env.id.split_once('.').map_or("", |(_, rest)| rest);
        let label = format!("{}-{ordinal}", self.env.statefulset);
        if rest.is_empty() {
            label
        } else {
            format!("{label}.{rest}")
        }
    }
}

impl Membership for GenericCluster {
    fn flavor(&self) -> &'static str {
        "generic"
    }

    async fn view(&self, local: bool) -> Result<View, MemberError> {
        let urls = self.urls(local);
        let mut last = String::new();
        for url in &urls {
            match self.ask(url).await {
                Ok(view) => return Ok(view),
                Err(error) => last = error.to_string(),
            }
        }
        Err(MemberError::Unreachable {
            tried: urls.join(", "),
            last,
        })
    }

    async fn leads(&self) -> bool {
        let Some(url) = self.urls(true).into_iter().next() else {
            return false;
        };
        match self.ask(&url).await {
            Ok(view) => view.leader.is_some() && view.leader == view.me,
            Err(_) => false,
        }
    }

    async fn remove(
        &self,
        member: &RaftMember,
        view: &View,
        budget: Duration,
    ) -> Result<Removal, MemberError> {
        let Some(leave) = &self.leave else {
            return Err(MemberError::NoLeaveUrl);
        };
        let ordinal = member.ordinal_in(&self.env.statefulset);
        let target = match ordinal {
            Some(o) if o != self.env.ordinal => self.env.sibling(o),
            Some(_) => self.env.clone(),
            None if view.me.as_deref() == Some(member.id.as_str()) => self.env.clone(),
            None => {
                return Err(MemberError::BadHookUrl {
                    hook: Hook::Leave,
                    why: format!(
                        "member {} is not a pod of StatefulSet {}, so the leave URL's placeholders cannot be filled for it",
                        member.label(),
                        self.env.statefulset
                    ),
                })
            }
        };
        // Alive: the member answers its own members URL. Without `{peer}` in the URL, no
        // single member can be asked: a known leader stands for a quorum.
        let per_member = self.members.template.contains("{peer}");
        check_quorum(&view.members, member, |m| async move {
            if !per_member {
                return view.leader.is_some();
            }
            let host = match m.ordinal_in(&self.env.statefulset) {
                Some(o) => self.host_of_ordinal(o),
                None => match m.addresses.first() {
                    Some(a) => host_of(a).to_owned(),
                    None => return false,
                },
            };
            self.ask(&self.members_url_at(&host)).await.is_ok()
        })
        .await?;
        generic::remove_generic(&target, leave, budget).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> MemberEnv {
        MemberEnv::from_lookup(|name| {
            Some(
                match name {
                    "POD_NAME" => "kv-1",
                    "POD_NAMESPACE" => "ns",
                    "RAFT_ID" => "kv-1.kv.ns.svc.cluster.local",
                    "RAFT_ADDRESS" => "kv-1.kv.ns.svc.cluster.local:9872",
                    "RAFT_CLUSTER_SIZE" => "3",
                    "RAFT_PEERS" => "kv-0.kv.ns.svc.cluster.local:9872,kv-1.kv.ns.svc.cluster.local:9872,kv-2.kv.ns.svc.cluster.local:9872",
                    "RAFT_ORDINAL" => "1",
                    _ => return None,
                }
                .to_owned(),
            )
        })
        .unwrap()
    }

    #[test]
    fn the_documented_answer_is_read_with_its_leader_and_this_member() {
        let body = br#"{"members": [
            {"id": "kv-0", "address": "kv-0.kv.ns.svc.cluster.local:9872"},
            {"id": "kv-1", "address": "kv-1.kv.ns.svc.cluster.local:9872", "voter": true},
            {"id": 7, "address": "kv-4.kv.ns.svc.cluster.local:9872", "voter": false}
        ], "leader": "kv-0"}"#;
        let view = parse_members(body, &env()).unwrap();
        assert_eq!(view.leader.as_deref(), Some("kv-0"));
        assert_eq!(view.me.as_deref(), Some("kv-1"));
        assert_eq!(view.members[2].id, "7");
        assert!(!view.members[2].voter);
        assert_eq!(
            view.members[2].ordinal_in("kv"),
            Some(4),
            "from the address"
        );
        assert_eq!(view.members[0].ordinal_in("kv"), Some(0), "from the id");
        assert_eq!(view.members[0].ordinal_in("other"), None);
        assert_eq!(view.leader_label().as_deref(), Some("kv-0"));
    }

    #[test]
    fn a_wrong_answer_says_what_was_expected() {
        for body in [
            &b"[]"[..],
            br#"{"peers": []}"#,
            br#"{"members": [{"id": null}]}"#,
            br#"{"members": [{"id": ""}]}"#,
        ] {
            let why = parse_members(body, &env()).unwrap_err();
            assert!(
                why.contains("members") || why.contains("member id"),
                "{why}"
            );
        }
        let many = format!(
            r#"{{"members": [{}]}}"#,
            vec![r#"{"id": "x"}"#; MAX_MEMBERS + 1].join(",")
        );
        assert!(parse_members(many.as_bytes(), &env()).is_err());
    }

    fn member(id: &str, voter: bool) -> RaftMember {
        RaftMember {
            id: id.to_owned(),
            name: String::new(),
            addresses: vec![],
            voter,
            started: true,
        }
    }

    #[tokio::test]
    async fn a_removal_needs_a_quorum_of_the_remaining_voters_alive() {
        let five: Vec<RaftMember> = (0..5).map(|i| member(&format!("kv-{i}"), true)).collect();
        let alive = |names: &'static [&'static str]| {
            move |m: RaftMember| async move { names.contains(&m.id.as_str()) }
        };
        // Removing kv-4 leaves 4 voters, quorum 3.
        check_quorum(&five, &five[4], alive(&["kv-0", "kv-1", "kv-2"]))
            .await
            .unwrap();
        let refused = check_quorum(&five, &five[4], alive(&["kv-0", "kv-1"]))
            .await
            .unwrap_err();
        assert!(
            matches!(
                refused,
                MemberError::QuorumAtRisk {
                    healthy: 2,
                    remaining: 4,
                    needed: 3
                }
            ),
            "{refused}"
        );
        // A non-voter leaves without a check.
        let learner = member("kv-9", false);
        check_quorum(&five, &learner, alive(&[])).await.unwrap();
    }
}
