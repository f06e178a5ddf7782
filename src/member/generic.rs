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

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::json;

use k8s_openapi::api::apps::v1::StatefulSet;
use serde::Deserialize;

use super::cluster::host_of;
use super::cluster::{check_quorum, Membership, RaftMember, View};
use super::{JoinOutcome, MemberEnv, MemberError, Removal};

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

/// The StatefulSet's URL annotation of `hook`, parsed; `None` when it is not set.
pub fn hook_url(sts: &StatefulSet, hook: Hook) -> Result<Option<HookUrl>, MemberError> {
    sts.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(hook.annotation()))
        .map(|raw| {
            HookUrl::parse_as(hook, raw).map_err(|why| MemberError::BadHookUrl { hook, why })
        })
        .transpose()
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
    let http = env.http_client(super::cluster::CALL_TIMEOUT)?;
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
                    // Only the start of it is shown; a larger body is not read.
                    let body = super::body::read_bounded(response, super::body::MAX_ERROR_BYTES)
                        .await
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_else(|too_large| too_large);
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
/// The generic flavor's join: a member beyond the bootstrap set calls the join URL, read
/// fresh from the StatefulSet, until one answers 2xx or `budget` is spent. Bootstrap
/// members call nothing: the injected peer list already names them. A restarted member
/// calls again, which the URL's contract makes harmless (already a member is success).
///
/// When a join URL accepted this member, `dir/joined` (the helper volume, which the
/// application sees read-only at `/raft-injector`) says so: a bootstrap member that was
/// re-added must start as a joining member, not bootstrap a group from `RAFT_PEERS`.
pub async fn join_generic(
    env: &MemberEnv,
    dir: &Path,
    budget: Duration,
) -> Result<JoinOutcome, MemberError> {
    let outcome = if env.is_bootstrap_member() {
        rejoin_bootstrap_member(env, budget).await?
    } else {
        join_beyond_bootstrap(env, budget).await?
    };
    if let JoinOutcome::JoinedThroughUrl { url, status } = &outcome {
        let path = dir.join(JOINED_FILE);
        let partial = dir.join(format!(".{JOINED_FILE}.partial"));
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| MemberError::Io { path, source }
        };
        std::fs::write(&partial, format!("{url} answered {status}\n")).map_err(io(&partial))?;
        std::fs::rename(&partial, &path).map_err(io(&path))?;
    }
    Ok(outcome)
}

/// The file in the helper volume that says a join URL added this member.
pub const JOINED_FILE: &str = "joined";

async fn join_beyond_bootstrap(
    env: &MemberEnv,
    budget: Duration,
) -> Result<JoinOutcome, MemberError> {
    let deadline = Instant::now() + budget;
    let statefulset = super::retry_until(deadline, budget, "reading the StatefulSet", || async {
        let unreadable = |last: String| MemberError::Unreachable {
            tried: format!("the Kubernetes API (StatefulSet {})", env.statefulset),
            last,
        };
        match super::read_statefulset(env, Duration::from_secs(5)).await {
            Ok(Some(sts)) => Ok(sts),
            Ok(None) => Err(unreadable("not found".to_owned())),
            Err(error) => Err(unreadable(error)),
        }
    })
    .await?;
    let Some(url) = hook_url(&statefulset, Hook::Join)? else {
        return Ok(JoinOutcome::NoJoinUrl);
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    let (url, status) = add_generic(env, &url, remaining).await?;
    Ok(JoinOutcome::JoinedThroughUrl { url, status })
}

/// A bootstrap member of a generic app normally calls nothing. But one that a scale-down
/// below the bootstrap size removed (3→1 removes members 1 and 2) is no longer in the
/// group when it comes back, and would start outside it. With a members URL the helper can
/// tell: when a running member answers with a leader and a list without this member, it
/// joins through the join URL like any other new member. Whenever that cannot be told (no
/// members URL, nobody answers: a first start, or the group is down), it starts as a
/// bootstrap member, as before.
async fn rejoin_bootstrap_member(
    env: &MemberEnv,
    budget: Duration,
) -> Result<JoinOutcome, MemberError> {
    let started = Instant::now();
    let Ok(Some(sts)) = super::read_statefulset(env, Duration::from_secs(5)).await else {
        return Ok(JoinOutcome::BootstrapPeer);
    };
    let Some(cluster) = GenericCluster::from_statefulset(env, Some(&sts))? else {
        return Ok(JoinOutcome::BootstrapPeer);
    };
    let view = match cluster.view(false).await {
        Ok(view) if view.leader.is_some() && view.me.is_none() => view,
        _ => return Ok(JoinOutcome::BootstrapPeer),
    };
    let Some(url) = hook_url(&sts, Hook::Join)? else {
        return Ok(JoinOutcome::NoJoinUrl);
    };
    tracing::warn!(
        member = %env.pod_name,
        members = %view.members.iter().map(|m| m.label()).collect::<Vec<_>>().join(","),
        "a bootstrap member missing from the running group's member list (removed by an earlier scale-down); joining it"
    );
    let (url, status) = add_generic(env, &url, budget.saturating_sub(started.elapsed())).await?;
    Ok(JoinOutcome::JoinedThroughUrl { url, status })
}

// ---- the member list, for the shared machinery (`Membership`) ----

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
            http: env.http_client(super::cluster::CALL_TIMEOUT)?,
            members,
            leave: None,
        })
    }

    /// `None` without a members URL.
    pub fn from_statefulset(
        env: &MemberEnv,
        sts: Option<&StatefulSet>,
    ) -> Result<Option<GenericCluster>, MemberError> {
        let Some(sts) = sts else {
            return Ok(None);
        };
        let Some(members) = hook_url(sts, Hook::Members)? else {
            return Ok(None);
        };
        Ok(Some(GenericCluster {
            env: env.clone(),
            http: env.http_client(super::cluster::CALL_TIMEOUT)?,
            members,
            leave: hook_url(sts, Hook::Leave)?,
        }))
    }

    /// The members URL on the member at `host` (when the URL names `{peer}`).
    fn members_url_at(&self, host: &str) -> String {
        fill(&self.members, &self.env).replace("{peer}", host)
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
        let body = super::body::read_bounded(response, MAX_ANSWER_BYTES)
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
            return vec![fill(&self.members, &self.env)];
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
        remove_generic(&target, leave, budget).await
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
}
