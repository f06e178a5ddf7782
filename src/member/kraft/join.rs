//! How a KRaft controller becomes a voter.
//!
//! [`prepare`] runs in the join init container, inside the Kafka image with the member's
//! volume: a volume with `meta.properties` is left alone (Kafka resumes from it); an empty
//! one is formatted exactly once with Kafka's own `kafka-storage.sh`:
//! - a bootstrap member of a cluster that never formed: `--initial-controllers` naming every
//!   bootstrap member with the directory id derived for it (`policy::flavor::kraft`), the same
//!   list on every member;
//! - any other member, a bootstrap member whose cluster is recorded as formed
//!   (`member::formation`, leader or not), and one whose quorum already has a leader (its
//!   volume was lost): `--no-initial-controllers`, with a new random directory id. It starts as an
//!   observer; never as the old voter with an empty log, which could elect a leader that
//!   lacks committed records.
//!
//! [`ensure_voter`] runs in the sidecar: once this member is an observer and its ordinal is
//! inside `spec.replicas`, it asks the leader to add it (Kafka refuses until it has caught
//! up, and takes one change at a time); a voter of the same node id with another directory
//! id (the volume this one replaced) is removed first, under the quorum check.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use super::wire::{self, parse_uuid};
use super::{
    read_settings, KraftCluster, KraftEnv, DIRECTORY_ID_SETTING, NODE_ID_SETTING, SETTINGS_FILE,
};
use crate::member::cluster::{Membership, RaftMember};
use crate::member::formation::Formation;
use crate::member::{JoinOutcome, MemberEnv, MemberError, Removal};
use crate::policy::flavor::kraft::directory_id;

/// Kafka's storage tool in the official image.
pub const STORAGE_TOOL: &str = "/opt/kafka/bin/kafka-storage.sh";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MemberError + '_ {
    move |source| MemberError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What `meta.properties` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub node_id: Option<i32>,
    pub directory_id: Option<String>,
    pub cluster_id: Option<String>,
}

/// `meta.properties` in `dir`, `None` when there is none.
pub fn read_meta(dir: &Path) -> Result<Option<Meta>, MemberError> {
    let path = dir.join("meta.properties");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(MemberError::Io { path, source }),
    };
    Ok(Some(parse_meta(&text)))
}

pub fn parse_meta(text: &str) -> Meta {
    let get = |key: &str| {
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_owned())
    };
    Meta {
        node_id: get("node.id").and_then(|v| v.parse().ok()),
        directory_id: get("directory.id"),
        cluster_id: get("cluster.id"),
    }
}

fn write_settings(dir: &Path, node_id: i32, directory: &str) -> Result<(), MemberError> {
    let path = dir.join(SETTINGS_FILE);
    let partial = dir.join(format!(".{SETTINGS_FILE}.partial"));
    let text = format!("{NODE_ID_SETTING}={node_id}\n{DIRECTORY_ID_SETTING}={directory}\n");
    std::fs::write(&partial, text).map_err(io(&partial))?;
    std::fs::rename(&partial, &path).map_err(io(&path))
}

/// How the volume is formatted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// `--initial-controllers` with this list.
    Bootstrap(String),
    /// `--no-initial-controllers` (and why).
    Observer(String),
}

/// `--initial-controllers`: `id@host:port:directory` for every bootstrap member.
pub fn initial_controllers(env: &MemberEnv, kraft: &KraftEnv) -> String {
    (env.ordinal_start..env.ordinal_start + env.bootstrap_size)
        .map(|ordinal| {
            let id = kraft.node_id(ordinal);
            format!(
                "{id}@{}:{}:{}",
                env.sibling(ordinal).id,
                kraft.port,
                directory_id(&kraft.group_id, id)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The join container's work; the whole of it takes at most `budget`.
pub async fn prepare(
    env: &MemberEnv,
    dir: &Path,
    budget: Duration,
    cold_start_wait: Duration,
) -> Result<JoinOutcome, MemberError> {
    let kraft = env
        .kraft
        .as_ref()
        .ok_or(MemberError::MissingEnv("RAFT_KRAFT_NODE_ID_OFFSET"))?;
    let node_id = kraft.node_id(env.ordinal);
    if let Some(meta) = read_meta(&kraft.metadata_dir)? {
        if meta.node_id != Some(node_id) {
            return Err(MemberError::KraftVolume(format!(
                "{} holds the metadata of node {} but this member is node {node_id}; not starting on another \
                 member's volume",
                kraft.metadata_dir.display(),
                meta.node_id
                    .map_or_else(|| "(none)".to_owned(), |n| n.to_string())
            )));
        }
        let directory = meta.directory_id.unwrap_or_default();
        write_settings(dir, node_id, &directory)?;
        return Ok(JoinOutcome::HasData);
    }
    let deadline = Instant::now() + budget;
    let format =
        match tokio::time::timeout(budget, decide(env, kraft, deadline, cold_start_wait)).await {
            Ok(format) => format?,
            Err(_) => {
                return Err(MemberError::Deadline(
                    budget,
                    "could not tell a new cluster from a running one".to_owned(),
                ))
            }
        };
    let left = deadline.saturating_duration_since(Instant::now());
    format_volume(env, kraft, dir, &format, left).await?;
    let meta = read_meta(&kraft.metadata_dir)?.ok_or_else(|| {
        MemberError::KraftVolume(format!(
            "{STORAGE_TOOL} format ran but wrote no meta.properties in {}",
            kraft.metadata_dir.display()
        ))
    })?;
    let directory = meta.directory_id.unwrap_or_default();
    write_settings(dir, node_id, &directory)?;
    Ok(match format {
        Format::Bootstrap(list) => JoinOutcome::KraftFormatted {
            why: format!("a bootstrap member of a new cluster; initial controllers {list}"),
            directory_id: directory,
        },
        Format::Observer(why) => JoinOutcome::KraftFormatted {
            why: format!("{why}; starts as an observer and is added to the voters once caught up"),
            directory_id: directory,
        },
    })
}

/// Bootstrap or observer, for a member whose volume is empty.
async fn decide(
    env: &MemberEnv,
    kraft: &KraftEnv,
    deadline: Instant,
    cold_start_wait: Duration,
) -> Result<Format, MemberError> {
    if !env.is_bootstrap_member() {
        let from = match env.ordinal_start {
            0 => String::new(),
            start => format!(" from ordinal {start}"),
        };
        return Ok(Format::Observer(format!(
            "ordinal {} is beyond the bootstrap set of {}{from}",
            env.ordinal, env.bootstrap_size
        )));
    }
    // The record says the cluster formed: this volume was lost. An observer needs no quorum
    // to start; it becomes a voter (the old one swapped out) once a leader takes it in.
    if let Formation::Formed { record, at, .. } =
        crate::member::formation::read_until(env, deadline).await?
    {
        return Ok(Format::Observer(format!(
            "a bootstrap member without data whose cluster formed before ({record}, formed {at})"
        )));
    }
    let others: Vec<String> = env
        .other_peer_hosts()
        .into_iter()
        .map(|host| format!("{host}:{}", kraft.port))
        .collect();
    // A leader means the cluster formed before, without this member's data. Silence means
    // a first start (every member is formatting, as this one), unless a member restarting
    // from its data shows up. A controller that answers without a leader is one of either:
    // wait longer for a leader then.
    let started = Instant::now();
    let mut answered_without_leader = false;
    loop {
        let asks = others.iter().map(|address| wire::describe(address));
        for answer in futures::future::join_all(asks).await {
            match answer {
                Ok(quorum) => {
                    return Ok(Format::Observer(format!(
                        "a bootstrap member without data whose cluster has formed (leader node {}, epoch {})",
                        quorum.leader_id, quorum.leader_epoch
                    )))
                }
                Err(error) if error.kafka_error().is_some() => answered_without_leader = true,
                Err(_) => {}
            }
        }
        let wait = if answered_without_leader {
            cold_start_wait * 6
        } else {
            cold_start_wait
        };
        if started.elapsed() >= wait {
            tracing::info!(
                waited = ?started.elapsed(),
                "no leader answered; a new cluster's first start"
            );
            return Ok(Format::Bootstrap(initial_controllers(env, kraft)));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs `kafka-storage.sh format` for this member.
async fn format_volume(
    env: &MemberEnv,
    kraft: &KraftEnv,
    dir: &Path,
    format: &Format,
    limit: Duration,
) -> Result<(), MemberError> {
    let node_id = kraft.node_id(env.ordinal);
    let config: PathBuf = dir.join("kraft-format.properties");
    let metadata_dir = kraft.metadata_dir.display();
    let properties = format!(
        "process.roles=controller\nnode.id={node_id}\ncontroller.listener.names={listener}\n\
         listeners={listener}://0.0.0.0:{port}\nadvertised.listeners={listener}://{id}:{port}\n\
         listener.security.protocol.map={listener}:PLAINTEXT\nlog.dirs={metadata_dir}\n\
         metadata.log.dir={metadata_dir}\ncontroller.quorum.bootstrap.servers={servers}\n",
        listener = kraft.listener,
        port = kraft.port,
        id = env.id,
        servers = kraft.bootstrap_servers,
    );
    std::fs::write(&config, properties).map_err(io(&config))?;
    let mut command = tokio::process::Command::new(STORAGE_TOOL);
    command
        .arg("format")
        .arg("--cluster-id")
        .arg(&kraft.cluster_id)
        .arg("--config")
        .arg(&config);
    match format {
        Format::Bootstrap(list) => command.arg("--initial-controllers").arg(list),
        Format::Observer(_) => command.arg("--no-initial-controllers"),
    };
    command.kill_on_drop(true);
    let output = tokio::time::timeout(limit, command.output())
        .await
        .map_err(|_| MemberError::Deadline(limit, format!("{STORAGE_TOOL} format did not finish")))?
        .map_err(io(Path::new(STORAGE_TOOL)))?;
    let said = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(MemberError::KraftVolume(format!(
            "{STORAGE_TOOL} format failed ({}): {}",
            output.status,
            said.trim()
        )));
    }
    tracing::info!(output = %said.trim(), "formatted the metadata directory");
    Ok(())
}

/// What the sidecar did about this member's place among the voters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A voter with its own directory id, or nothing to do now (and why).
    Nothing(String),
    /// Added to the voters.
    Added(String),
    /// The voter of this node id with another directory id was removed.
    Replaced(String),
}

/// One look at whether this member should be a voter, and at most one change.
/// `replicas`: `spec.replicas` as just read; `None` when it could not be read (then nothing
/// is added: a pod being scaled away must not add itself back).
pub async fn ensure_voter(
    cluster: &KraftCluster,
    dir: &Path,
    replicas: Option<(i32, i32)>,
) -> Result<Step, MemberError> {
    let env = cluster.env();
    let kraft = cluster.kraft();
    let Some((start, replicas)) = replicas else {
        return Ok(Step::Nothing(
            "spec.replicas is not known; not changing the voters".to_owned(),
        ));
    };
    if env.ordinal < start || env.ordinal >= start + replicas {
        return Ok(Step::Nothing(format!(
            "ordinal {} is outside the replica range; not a voter to be",
            env.ordinal
        )));
    }
    let settings = read_settings(dir);
    let Some(my_dir) = settings
        .iter()
        .find(|(k, _)| k == DIRECTORY_ID_SETTING)
        .map(|(_, v)| v.clone())
        .filter(|d| !d.is_empty())
    else {
        return Ok(Step::Nothing(
            "the join container has not recorded a directory id".to_owned(),
        ));
    };
    let directory = parse_uuid(&my_dir).ok_or_else(|| MemberError::BadEnv {
        name: "RAFT_KRAFT_DIRECTORY_ID",
        value: my_dir.clone(),
        why: "not a Kafka directory id",
    })?;
    let node_id = kraft.node_id(env.ordinal);
    let quorum = cluster.quorum().await?;
    if quorum
        .voters
        .iter()
        .any(|v| v.id == node_id && v.directory_id == my_dir)
    {
        return Ok(Step::Nothing("a voter".to_owned()));
    }
    let view = cluster.view_of(&quorum);
    if let Some(old) = quorum
        .voters
        .iter()
        .find(|v| v.id == node_id && v.directory_id != my_dir)
    {
        // This pod's volume replaced that voter's: only once this member has caught up,
        // so that the add follows the removal at once.
        if !caught_up(&quorum, node_id, &my_dir) {
            return Ok(Step::Nothing(format!(
                "voter {node_id}@{} holds this node id with another directory; replacing it once this member \
                 has caught up",
                old.directory_id
            )));
        }
        let stale = RaftMember {
            id: format!("{node_id}@{}", old.directory_id),
            name: format!("{}-{}", env.statefulset, env.ordinal),
            addresses: Vec::new(),
            voter: true,
            started: true,
        };
        let (Removal::Removed | Removal::AlreadyGone) = cluster
            .remove(&stale, &view, Duration::from_secs(25))
            .await?;
        let removed = format!(
            "removed voter {node_id}@{} (this member's earlier volume)",
            old.directory_id
        );
        // The add at once: until it lands the quorum has one voter fewer.
        let added = async {
            let quorum = cluster.quorum().await?;
            add_self(cluster, &quorum, &directory).await
        };
        return Ok(Step::Replaced(match added.await {
            Ok(()) => format!("{removed}; added {node_id}@{my_dir} in its place"),
            Err(error) => format!("{removed}; adding {node_id}@{my_dir} next ({error})"),
        }));
    }
    if !quorum
        .observers
        .iter()
        .any(|o| o.id == node_id && o.directory_id == my_dir)
    {
        return Ok(Step::Nothing(
            "not an observer of the leader yet (Kafka starting)".to_owned(),
        ));
    }
    add_self(cluster, &quorum, &directory).await?;
    Ok(Step::Added(format!(
        "added node {node_id} (directory {my_dir}, {}:{}) to the voters; {} voters now",
        env.id,
        kraft.port,
        quorum.voters.len() + 1
    )))
}

/// AddRaftVoter for this member, at the leader that described `quorum`.
async fn add_self(
    cluster: &KraftCluster,
    quorum: &wire::Quorum,
    directory: &uuid::Uuid,
) -> Result<(), MemberError> {
    let (env, kraft) = (cluster.env(), cluster.kraft());
    wire::add_voter(
        &quorum.address,
        &kraft.cluster_id,
        kraft.node_id(env.ordinal),
        directory,
        &kraft.listener,
        &env.id,
        kraft.port,
    )
    .await?;
    Ok(())
}

/// Whether the observer `(id, dir)` had all the leader had within the last 10 s (the
/// leader's own clock; the log keeps growing, so "equal right now" is rarely seen).
fn caught_up(quorum: &wire::Quorum, id: i32, dir: &str) -> bool {
    let Some(now) = quorum.leader_now_ms() else {
        return false;
    };
    quorum.observers.iter().any(|o| {
        o.id == id
            && o.directory_id == dir
            && o.last_caught_up_ms >= 0
            && now - o.last_caught_up_ms <= 10_000
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_properties_are_read_as_kafka_writes_them() {
        let meta = parse_meta(
            "#\n#Sat Dec 05 10:00:00 UTC 2026\nnode.id=3\ndirectory.id=J8bO0cF7QS2AH0Ap2a6qYw\nversion=1\n\
             cluster.id=4L6g3nShT-eMCtK--X86sw\n",
        );
        assert_eq!(meta.node_id, Some(3));
        assert_eq!(meta.directory_id.as_deref(), Some("J8bO0cF7QS2AH0Ap2a6qYw"));
        assert_eq!(meta.cluster_id.as_deref(), Some("4L6g3nShT-eMCtK--X86sw"));
    }
}
