//! A small client for etcd's v3 JSON gateway (`/v3/...` on the client port), so member
//! changes need no `etcdctl` in the image. The gateway encodes 64-bit ids as strings.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cluster::{Membership, RaftMember, View};
use super::{MemberEnv, MemberError, Removal};

pub mod decide;
pub mod join;

pub use super::cluster::{host_of, ordinal_of, quorum, CALL_TIMEOUT};

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("{endpoint}: {source}")]
    Http {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{endpoint}: etcd answered {status}: {message}")]
    Refused {
        endpoint: String,
        status: u16,
        message: String,
    },
}

impl EtcdError {
    /// etcd's answer when the member is not (or no longer) in the cluster.
    pub fn is_member_not_found(&self) -> bool {
        matches!(self, EtcdError::Refused { message, .. } if message.contains("member not found"))
    }
}

/// One member as the gateway lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Member {
    #[serde(rename = "ID", with = "id_string")]
    pub id: u64,
    /// Empty for a member added with `member add` until it starts; set from the start for
    /// the members of the initial cluster.
    #[serde(default)]
    pub name: String,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    pub is_learner: bool,
}

impl Member {
    /// Whether the member has run: a started member publishes its client URLs. (Its name is
    /// not enough: members named in `--initial-cluster` are listed under their names by the
    /// members that formed the cluster before they themselves ever start.)
    pub fn is_started(&self) -> bool {
        !self.client_urls.is_empty()
    }
}

mod id_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(n),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// What `/v3/maintenance/status` says about the answering member.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "RawStatus")]
pub struct MemberStatus {
    pub member_id: u64,
    pub leader: u64,
}

#[derive(Deserialize)]
struct RawStatus {
    header: StatusHeader,
    #[serde(default, with = "id_string")]
    leader: u64,
}

#[derive(Deserialize)]
struct StatusHeader {
    #[serde(default, with = "id_string")]
    member_id: u64,
}

impl From<RawStatus> for MemberStatus {
    fn from(raw: RawStatus) -> Self {
        MemberStatus {
            member_id: raw.header.member_id,
            leader: raw.leader,
        }
    }
}

#[derive(Deserialize)]
struct MemberList {
    #[serde(default)]
    members: Vec<Member>,
}

#[derive(Deserialize)]
struct MemberAdd {
    member: Member,
    #[serde(default)]
    members: Vec<Member>,
}

/// The most of an answer the gateway reads: a member list of etcd's largest clusters is a
/// few KiB.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// An answer read as JSON, refused unread past [`MAX_ANSWER_BYTES`].
async fn json_bounded(endpoint: &str, response: reqwest::Response) -> Result<Value, EtcdError> {
    let refused = |status: u16, message: String| EtcdError::Refused {
        endpoint: endpoint.to_owned(),
        status,
        message,
    };
    let status = response.status().as_u16();
    let body = crate::member::body::read_bounded(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|why| refused(status, why))?;
    serde_json::from_slice(&body).map_err(|e| refused(status, format!("not JSON: {e}")))
}

/// Talks to one etcd client URL at a time.
#[derive(Clone)]
pub struct Gateway {
    http: reqwest::Client,
}

impl Gateway {
    /// The gateway this member uses: over TLS with its certificate when it has one.
    pub fn for_member(env: &super::MemberEnv) -> Result<Gateway, super::MemberError> {
        Ok(Gateway {
            http: env.http_client(CALL_TIMEOUT)?,
        })
    }
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway {
            http: reqwest::Client::builder()
                .timeout(CALL_TIMEOUT)
                .connect_timeout(CALL_TIMEOUT)
                .build()
                .unwrap_or_default(),
        }
    }
}

impl Gateway {
    async fn call(&self, endpoint: &str, path: &str, body: Value) -> Result<Value, EtcdError> {
        let url = format!("{}{path}", endpoint.trim_end_matches('/'));
        let http = |source| EtcdError::Http {
            endpoint: endpoint.to_owned(),
            source,
        };
        let response = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(http)?;
        let status = response.status();
        let value = json_bounded(endpoint, response).await?;
        if status.is_success() {
            Ok(value)
        } else {
            let message = value["message"]
                .as_str()
                .or_else(|| value["error"].as_str())
                .unwrap_or("no message")
                .to_owned();
            Err(EtcdError::Refused {
                endpoint: endpoint.to_owned(),
                status: status.as_u16(),
                message,
            })
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(
        endpoint: &str,
        value: Value,
    ) -> Result<T, EtcdError> {
        serde_json::from_value(value).map_err(|e| EtcdError::Refused {
            endpoint: endpoint.to_owned(),
            status: 200,
            message: format!("unexpected answer: {e}"),
        })
    }

    /// The member list; `linearizable` asks the leader (fails without a quorum) instead of
    /// the answering member's own view.
    pub async fn member_list(
        &self,
        endpoint: &str,
        linearizable: bool,
    ) -> Result<Vec<Member>, EtcdError> {
        let value = self
            .call(
                endpoint,
                "/v3/cluster/member/list",
                json!({"linearizable": linearizable}),
            )
            .await?;
        Ok(Self::decode::<MemberList>(endpoint, value)?.members)
    }

    pub async fn member_remove(&self, endpoint: &str, id: u64) -> Result<(), EtcdError> {
        self.call(
            endpoint,
            "/v3/cluster/member/remove",
            json!({"ID": id.to_string()}),
        )
        .await
        .map(drop)
    }

    /// Adds a voting member; returns it and the whole new member list.
    pub async fn member_add(
        &self,
        endpoint: &str,
        peer_urls: &[String],
    ) -> Result<(Member, Vec<Member>), EtcdError> {
        let value = self
            .call(
                endpoint,
                "/v3/cluster/member/add",
                json!({"peerURLs": peer_urls}),
            )
            .await?;
        let added: MemberAdd = Self::decode(endpoint, value)?;
        Ok((added.member, added.members))
    }

    /// The answering member's own id and the leader it knows (0: none).
    pub async fn status(&self, endpoint: &str) -> Result<MemberStatus, EtcdError> {
        let value = self
            .call(endpoint, "/v3/maintenance/status", json!({}))
            .await?;
        Self::decode(endpoint, value)
    }

    /// The cluster version a member reports on its peer port (`/version`), which etcd
    /// serves before it has a quorum: `Some` once the cluster has formed (a member restarted
    /// from its data knows it at once), `None` while a new cluster has not formed yet.
    pub async fn formed_cluster_version(
        &self,
        peer_url: &str,
    ) -> Result<Option<String>, EtcdError> {
        let endpoint = peer_url.trim_end_matches('/');
        let http = |source| EtcdError::Http {
            endpoint: endpoint.to_owned(),
            source,
        };
        let response = self
            .http
            .get(format!("{endpoint}/version"))
            .send()
            .await
            .map_err(http)?;
        let value = json_bounded(endpoint, response).await?;
        Ok(value["etcdcluster"]
            .as_str()
            .filter(|v| !v.is_empty() && *v != "not_decided")
            .map(str::to_owned))
    }

    /// Whether the member behind `endpoint` answers its status call.
    pub async fn is_healthy(&self, endpoint: &str) -> bool {
        self.call(endpoint, "/v3/maintenance/status", json!({}))
            .await
            .is_ok()
    }
}

/// The ordinal of a member of StatefulSet `statefulset`, from its name or, for a member
/// that has not started, from its peer URL's first label; `None` for anything else.
pub fn ordinal_in(statefulset: &str, member: &Member) -> Option<i32> {
    let name = if member.name.is_empty() {
        host_of(member.peer_urls.first()?).split('.').next()?
    } else {
        member.name.as_str()
    };
    ordinal_of(statefulset, name)
}

/// A member as an operator knows it: its name, or the pod name in its peer URL.
pub fn label(member: &Member) -> String {
    if !member.name.is_empty() {
        return member.name.clone();
    }
    member
        .peer_urls
        .first()
        .map(|u| host_of(u).split('.').next().unwrap_or_default().to_owned())
        .unwrap_or_else(|| format!("{:x}", member.id))
}

/// Whether `member` is this pod's: by its name or its peer host.
pub(crate) fn is_self(member: &Member, env: &MemberEnv) -> bool {
    member.name == env.member_name() || member.peer_urls.iter().any(|u| host_of(u) == env.id)
}

/// The member list from the first endpoint that answers.
pub(crate) async fn list_from_any(
    gateway: &Gateway,
    endpoints: &[String],
    linearizable: bool,
) -> Result<Vec<Member>, MemberError> {
    let mut last = String::new();
    for endpoint in endpoints {
        match gateway.member_list(endpoint, linearizable).await {
            Ok(members) => return Ok(members),
            Err(error) => last = error.to_string(),
        }
    }
    Err(MemberError::Unreachable {
        tried: endpoints.join(", "),
        last,
    })
}

/// Removes `me` from `members` through any member that answers, after checking that the
/// remaining voting members keep a quorum.
pub(crate) async fn remove_member(
    gateway: &Gateway,
    me: &Member,
    members: &[Member],
    fallback: &[String],
) -> Result<Removal, MemberError> {
    let others: Vec<&Member> = members.iter().filter(|m| m.id != me.id).collect();
    if !me.is_learner {
        let voters: Vec<&&Member> = others.iter().filter(|m| !m.is_learner).collect();
        let mut healthy = 0;
        for member in &voters {
            for url in &member.client_urls {
                if gateway.is_healthy(url).await {
                    healthy += 1;
                    break;
                }
            }
        }
        let needed = quorum(voters.len());
        if healthy < needed {
            return Err(MemberError::QuorumAtRisk {
                healthy,
                remaining: voters.len(),
                needed,
            });
        }
    }
    // Through another member first: a member asked to remove itself stops serving at once.
    let mut through: Vec<String> = others.iter().flat_map(|m| m.client_urls.clone()).collect();
    through.extend(fallback.iter().cloned());
    let mut last = String::new();
    for endpoint in &through {
        match gateway.member_remove(endpoint, me.id).await {
            Ok(()) => {
                tracing::info!(member = %me.name, id = me.id, via = %endpoint, "removed from the etcd cluster");
                return Ok(Removal::Removed);
            }
            Err(error) if error.is_member_not_found() => return Ok(Removal::AlreadyGone),
            Err(error) => last = error.to_string(),
        }
    }
    Err(MemberError::Unreachable {
        tried: through.join(", "),
        last,
    })
}

// ---- the shared machinery's view of etcd (`Membership`) ----

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

    fn member(&self, m: &Member) -> RaftMember {
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
        let mut leader = match self.gateway.status(&self.own).await {
            Ok(s) if s.leader != 0 => Some(format!("{:x}", s.leader)),
            _ => None,
        };
        // This member's etcd may not run (the join container runs before it): a quorum
        // answered the list, so the others know the leader.
        if !local && leader.is_none() {
            for endpoint in self.endpoints.iter().filter(|e| **e != self.own) {
                if let Ok(s) = self.gateway.status(endpoint).await {
                    if s.leader != 0 {
                        leader = Some(format!("{:x}", s.leader));
                        break;
                    }
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that answers every request with a 200 whose body never ends.
    async fn endless_peer() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = stream.read(&mut request).await;
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000000000\r\n\r\n[";
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = vec![b'1'; 64 * 1024];
                    // Bounded: 64 MiB at most, then the peer gives up.
                    for _ in 0..1024 {
                        if stream.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        format!("http://{address}")
    }

    #[tokio::test]
    async fn an_answer_larger_than_any_member_list_is_refused_unread() {
        let peer = endless_peer().await;
        let gateway = Gateway::default();
        let error = gateway
            .member_list(&peer, true)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("larger than 1048576 bytes"), "{error}");
        let error = gateway
            .formed_cluster_version(&peer)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("larger than"), "{error}");
    }

    #[test]
    fn status_reads_the_ids_the_gateway_sends_as_strings() {
        // As etcd 3.5's gateway answers /v3/maintenance/status.
        let answer = json!({
            "header": {"cluster_id": "14841639068965178418", "member_id": "10276657743932975437",
                       "revision": "7", "raft_term": "2"},
            "version": "3.5.16", "dbSize": "20480", "leader": "10276657743932975437",
            "raftIndex": "12", "raftTerm": "2", "raftAppliedIndex": "12", "dbSizeInUse": "20480"
        });
        let status: MemberStatus = serde_json::from_value(answer).unwrap();
        assert_eq!(status.member_id, 10276657743932975437);
        assert_eq!(status.leader, status.member_id);
        // A member that knows no leader leaves the field out.
        let status: MemberStatus =
            serde_json::from_value(json!({"header": {"member_id": "5"}})).unwrap();
        assert_eq!((status.member_id, status.leader), (5, 0));
    }
}
