//! The kraft flavor in the pod: Kafka KRaft controllers with a dynamic quorum (KIP-853),
//! reached over the Kafka protocol on the controller listener (`wire`). A voter is a node
//! id with a directory id (the one in `meta.properties`); members are shown as
//! `<node id>@<directory id>`, voters by their pod's name.
//!
//! `join` formats a new member's volume once (in the join container, with Kafka's own
//! `kafka-storage.sh`) and, in the sidecar, adds it to the voters once it has caught up.
//! Leave and repair go through the shared machinery and [`KraftCluster`].

mod counts;
pub mod join;
pub mod launch;
pub mod wire;

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::select_ok;

use self::wire::{KraftError, Quorum};
use super::cluster::{check_quorum, Membership, RaftMember, View};
use super::{MemberEnv, MemberError, Removal};

/// Where the join container leaves the node id and directory id, in the helper volume.
pub const SETTINGS_FILE: &str = "kraft.env";
/// The setting `member exec` gives Kafka.
pub const NODE_ID_SETTING: &str = "KAFKA_NODE_ID";
/// The setting the sidecar and `member leave` read: this member's directory id.
pub const DIRECTORY_ID_SETTING: &str = "RAFT_KRAFT_DIRECTORY_ID";

/// What the injected env says about a KRaft controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KraftEnv {
    pub node_id_offset: i32,
    pub cluster_id: String,
    pub group_id: String,
    pub port: u16,
    /// Where the metadata log and `meta.properties` live.
    pub metadata_dir: PathBuf,
    /// The controller listener's name.
    pub listener: String,
    pub bootstrap_servers: String,
}

impl KraftEnv {
    /// Read off the env when `RAFT_KRAFT_NODE_ID_OFFSET` says this is a kraft member.
    pub fn from_lookup(
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<Option<KraftEnv>, MemberError> {
        let set = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let Some(offset) = set(crate::policy::flavor::kraft::NODE_ID_OFFSET_ENV) else {
            return Ok(None);
        };
        let node_id_offset = offset.trim().parse().map_err(|_| MemberError::BadEnv {
            name: "RAFT_KRAFT_NODE_ID_OFFSET",
            value: offset.clone(),
            why: "not a whole number",
        })?;
        let port_text = set("RAFT_PORT").ok_or(MemberError::MissingEnv("RAFT_PORT"))?;
        let port = port_text.parse().map_err(|_| MemberError::BadEnv {
            name: "RAFT_PORT",
            value: port_text.clone(),
            why: "not a port",
        })?;
        let metadata_dir = set("KAFKA_METADATA_LOG_DIR")
            .or_else(|| {
                set("KAFKA_LOG_DIRS").map(|d| d.split(',').next().unwrap_or_default().to_owned())
            })
            .unwrap_or_else(|| crate::policy::flavor::kraft::DEFAULT_LOG_DIR.to_owned());
        let listener = set("KAFKA_CONTROLLER_LISTENER_NAMES")
            .map(|l| l.split(',').next().unwrap_or_default().trim().to_owned())
            .unwrap_or_else(|| crate::policy::flavor::kraft::CONTROLLER_LISTENER.to_owned());
        Ok(Some(KraftEnv {
            node_id_offset,
            cluster_id: set("CLUSTER_ID").ok_or(MemberError::MissingEnv("CLUSTER_ID"))?,
            group_id: set("RAFT_GROUP_ID").unwrap_or_default(),
            port,
            metadata_dir: PathBuf::from(metadata_dir.trim()),
            listener,
            bootstrap_servers: set("KAFKA_CONTROLLER_QUORUM_BOOTSTRAP_SERVERS").unwrap_or_default(),
        }))
    }

    pub fn node_id(&self, ordinal: i32) -> i32 {
        ordinal.saturating_add(self.node_id_offset)
    }

    /// The ordinal of node `id`, when it is one of this StatefulSet's.
    pub fn ordinal(&self, id: i32) -> Option<i32> {
        id.checked_sub(self.node_id_offset).filter(|o| *o >= 0)
    }
}

/// `KEY=VALUE` settings the join container wrote, none when it has not.
pub fn read_settings(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join(SETTINGS_FILE))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// This member's directory id as the join container found it.
pub fn own_directory_id(dir: &Path) -> Option<String> {
    read_settings(dir)
        .into_iter()
        .find(|(k, _)| k == DIRECTORY_ID_SETTING)
        .map(|(_, v)| v)
}

/// A KRaft quorum as seen from one of its controllers.
pub struct KraftCluster {
    env: MemberEnv,
    kraft: KraftEnv,
    /// Where this member's directory id is found (the helper volume).
    helper_dir: PathBuf,
    /// How many ordinals to look through for the leader.
    replicas: i32,
}

impl KraftCluster {
    pub fn new(env: &MemberEnv, replicas: Option<i32>) -> Result<KraftCluster, MemberError> {
        let kraft = env
            .kraft
            .clone()
            .ok_or(MemberError::MissingEnv("RAFT_KRAFT_NODE_ID_OFFSET"))?;
        Ok(KraftCluster {
            env: env.clone(),
            kraft,
            helper_dir: PathBuf::from(crate::policy::names::HELPER_MOUNT_PATH),
            replicas: replicas.unwrap_or(0),
        })
    }

    pub fn kraft(&self) -> &KraftEnv {
        &self.kraft
    }

    pub fn env(&self) -> &MemberEnv {
        &self.env
    }

    /// `host:port` of the controller at `ordinal`.
    pub fn address_of(&self, ordinal: i32) -> String {
        format!("{}:{}", self.env.sibling(ordinal).id, self.kraft.port)
    }

    /// Every controller that may lead: the bootstrap set, this member, and every ordinal up
    /// to `spec.replicas` when known.
    fn candidates(&self) -> Vec<String> {
        let start = self.env.ordinal_start;
        let count = self
            .env
            .bootstrap_size
            .max(self.replicas)
            .max(self.env.ordinal - start + 1)
            .clamp(1, 64);
        (start..start + count).map(|o| self.address_of(o)).collect()
    }

    /// The quorum as its leader describes it, asking every candidate at once.
    pub async fn quorum(&self) -> Result<Quorum, MemberError> {
        let candidates = self.candidates();
        let asks = candidates
            .iter()
            .map(|address| Box::pin(wire::describe(address)));
        let answer = select_ok(asks).await;
        match answer {
            Ok((quorum, _)) => Ok(quorum),
            Err(last) => Err(MemberError::Unreachable {
                tried: candidates.join(", "),
                last: format!("no leader answered; last: {last}"),
            }),
        }
    }

    fn member_of(&self, quorum: &Quorum, replica: &wire::Replica, voter: bool) -> RaftMember {
        // Voters are named by their pod; observers (brokers, members not yet voters) by id.
        let name = match (voter, self.kraft.ordinal(replica.id)) {
            (true, Some(ordinal)) => format!("{}-{ordinal}", self.env.statefulset),
            _ => String::new(),
        };
        RaftMember {
            id: format!("{}@{}", replica.id, replica.directory_id),
            name,
            addresses: quorum
                .endpoint(replica.id)
                .filter(|_| voter)
                .map(str::to_owned)
                .into_iter()
                .collect(),
            voter,
            started: true,
        }
    }

    /// The view of `quorum`: voters, then observers.
    pub fn view_of(&self, quorum: &Quorum) -> View {
        let members: Vec<RaftMember> = quorum
            .voters
            .iter()
            .map(|r| self.member_of(quorum, r, true))
            .chain(
                quorum
                    .observers
                    .iter()
                    .map(|r| self.member_of(quorum, r, false)),
            )
            .collect();
        let my_id = self.kraft.node_id(self.env.ordinal);
        let my_dir = own_directory_id(&self.helper_dir);
        let is_me = |m: &&RaftMember| {
            let (id, dir) = split_id(&m.id);
            id == Some(my_id) && my_dir.as_deref().is_none_or(|d| d == dir)
        };
        let me = members
            .iter()
            .filter(|m| m.voter)
            .find(is_me)
            .or_else(|| members.iter().find(is_me))
            .map(|m| m.id.clone());
        let leader = quorum
            .voters
            .iter()
            .find(|r| r.id == quorum.leader_id)
            .map(|r| format!("{}@{}", r.id, r.directory_id));
        View {
            members,
            leader,
            me,
        }
    }
}

/// `(node id, directory id)` of a member id `<node>@<dir>`.
pub fn split_id(id: &str) -> (Option<i32>, &str) {
    match id.split_once('@') {
        Some((node, dir)) => (node.parse().ok(), dir),
        None => (id.parse().ok(), ""),
    }
}

/// How recently (leader's clock) a voter must have fetched to count as alive.
const ALIVE_WITHIN_MS: i64 = 10_000;

impl Membership for KraftCluster {
    fn flavor(&self) -> &'static str {
        "kraft"
    }

    /// Only the leader describes the quorum, so `local` makes no difference.
    async fn view(&self, _local: bool) -> Result<View, MemberError> {
        Ok(self.view_of(&self.quorum().await?))
    }

    async fn leads(&self) -> bool {
        let own = self.address_of(self.env.ordinal);
        wire::describe(&own)
            .await
            .is_ok_and(|q| q.leader_id == self.kraft.node_id(self.env.ordinal))
    }

    async fn remove(
        &self,
        member: &RaftMember,
        _view: &View,
        budget: Duration,
    ) -> Result<Removal, MemberError> {
        if !member.voter {
            return Ok(Removal::AlreadyGone);
        }
        let (Some(id), dir) = split_id(&member.id) else {
            return Ok(Removal::AlreadyGone);
        };
        let directory_id = wire::parse_uuid(dir).ok_or_else(|| MemberError::BadEnv {
            name: "RAFT_KRAFT_DIRECTORY_ID",
            value: dir.to_owned(),
            why: "not a Kafka directory id",
        })?;
        let work = async {
            // Fresh numbers for the quorum check: who fetched from the leader lately.
            let quorum = self.quorum().await?;
            let view = self.view_of(&quorum);
            if !view.members.iter().any(|m| m.voter && m.id == member.id) {
                return Ok(Removal::AlreadyGone);
            }
            // The leader reports its own entry at its clock's now; without it, no other
            // voter can be shown alive.
            let now = quorum.leader_now_ms();
            check_quorum(&view.members, member, |m| {
                let quorum = &quorum;
                async move {
                    let (id, dir) = split_id(&m.id);
                    quorum.voters.iter().any(|r| {
                        Some(r.id) == id
                            && r.directory_id == dir
                            && (r.id == quorum.leader_id
                                || now.is_some_and(|now| {
                                    r.last_fetch_ms >= 0 && now - r.last_fetch_ms <= ALIVE_WITHIN_MS
                                }))
                    })
                }
            })
            .await?;
            match wire::remove_voter(&quorum.address, &self.kraft.cluster_id, id, &directory_id)
                .await
            {
                Ok(()) => Ok(Removal::Removed),
                Err(error)
                    if error.kafka_error()
                        == Some(kafka_protocol::error::ResponseError::VoterNotFound) =>
                {
                    Ok(Removal::AlreadyGone)
                }
                Err(error) => Err(MemberError::from(error)),
            }
        };
        tokio::time::timeout(budget, work)
            .await
            .map_err(|_| MemberError::Deadline(budget, "the quorum did not answer".to_owned()))?
    }
}

impl From<KraftError> for MemberError {
    fn from(error: KraftError) -> Self {
        MemberError::Kraft(error)
    }
}

#[cfg(test)]
mod tests {
    use super::wire::{Quorum, Replica};
    use super::*;

    fn env() -> MemberEnv {
        let vars: std::collections::HashMap<&str, &str> = [
            ("POD_NAME", "quorum-2"),
            ("POD_NAMESPACE", "kq"),
            ("RAFT_ORDINAL", "2"),
            ("RAFT_ID", "quorum-2.kq.kq.svc.cluster.local"),
            ("RAFT_PORT", "19093"),
            ("RAFT_CLUSTER_SIZE", "3"),
            (
                "RAFT_PEERS",
                "quorum-1.kq.kq.svc.cluster.local:19093,quorum-2.kq.kq.svc.cluster.local:19093,quorum-3.kq.kq.svc.cluster.local:19093",
            ),
            ("RAFT_GROUP_ID", "g"),
            ("RAFT_KRAFT_NODE_ID_OFFSET", "3000"),
            ("CLUSTER_ID", "qpz-ig-mV024r96lq-ETkw"),
            ("KAFKA_LOG_DIRS", "/data/kraft,/data/other"),
        ]
        .into_iter()
        .collect();
        MemberEnv::from_lookup(|name| vars.get(name).map(|v| (*v).to_owned())).unwrap()
    }

    fn replica(id: i32, dir: &str) -> Replica {
        Replica {
            id,
            directory_id: dir.to_owned(),
            log_end_offset: 10,
            last_fetch_ms: 1_000,
            last_caught_up_ms: 1_000,
        }
    }

    #[test]
    fn the_env_says_node_ids_ports_and_where_the_metadata_lives() {
        let env = env();
        let kraft = env.kraft.clone().expect("a kraft member");
        assert_eq!(env.flavor(), "kraft");
        assert_eq!(kraft.node_id(env.ordinal), 3002);
        assert_eq!(kraft.ordinal(3004), Some(4));
        assert_eq!(kraft.ordinal(100), None, "a broker's id is no ordinal");
        assert_eq!(kraft.port, 19093);
        assert_eq!(kraft.metadata_dir, PathBuf::from("/data/kraft"));
        assert_eq!(env.ordinal_start, 1);
        // The bootstrap list: start ordinal 1, ids offset by 3000, directory ids derived.
        let list = join::initial_controllers(&env, &kraft);
        assert!(
            list.starts_with("3001@quorum-1.kq.kq.svc.cluster.local:19093:"),
            "{list}"
        );
        assert_eq!(list.split(',').count(), 3, "{list}");
        assert!(list.contains(&crate::policy::flavor::kraft::directory_id("g", 3003)));
    }

    #[test]
    fn voters_are_named_by_their_pods_and_observers_by_their_ids() {
        let cluster = KraftCluster::new(&env(), Some(5)).unwrap();
        let quorum = Quorum {
            address: "quorum-1.kq.kq.svc.cluster.local:19093".into(),
            leader_id: 3001,
            leader_epoch: 4,
            high_watermark: 10,
            voters: vec![
                replica(3001, "AAA"),
                replica(3002, "BBB"),
                replica(3004, "DDD"),
            ],
            observers: vec![replica(100, "BRK"), replica(3003, "CCC")],
            endpoints: vec![(3001, "quorum-1.kq.kq.svc.cluster.local:19093".into())],
        };
        let view = cluster.view_of(&quorum);
        let names: Vec<&str> = view.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["quorum-1", "quorum-2", "quorum-4", "", ""]);
        assert_eq!(view.leader.as_deref(), Some("3001@AAA"));
        assert_eq!(view.leader_label().as_deref(), Some("quorum-1"));
        assert_eq!(view.me.as_deref(), Some("3002@BBB"));
        // The stale voter is placed by its pod's ordinal; observers never are.
        assert_eq!(view.members[2].ordinal_in("quorum"), Some(4));
        assert_eq!(view.members[3].ordinal_in("quorum"), None);
        assert_eq!(view.members[4].ordinal_in("quorum"), None);
        assert_eq!(split_id("3004@DDD"), (Some(3004), "DDD"));
        // Candidates for the leader: every ordinal up to spec.replicas from the start.
        assert_eq!(cluster.candidates().len(), 5);
        assert_eq!(
            cluster.candidates()[0],
            "quorum-1.kq.kq.svc.cluster.local:19093"
        );
    }
}
