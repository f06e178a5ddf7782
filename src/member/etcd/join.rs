//! etcd's `member join`: the pod template is frozen to the bootstrap peer list, so a member
//! beyond it (scale-up) must add itself to the running cluster and start etcd with
//! `--initial-cluster-state existing` and the current member list. `join` does the member
//! add and writes those two settings to a file in the helper volume; `member exec` applies
//! them when etcd starts (after [`refresh_settings`] reads the list again).
//!
//! A plain voting `member add` is used rather than a learner: promotion needs a process that
//! watches the learner catch up, and the init container is gone before etcd starts. With
//! scale steps of at most two members, the added members never outnumber the quorum
//! margin, and etcd's strict reconfiguration check refuses an add that would lose quorum.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::decide::{decide, Action, Answer, Data, WaitFor};
use super::{is_self, label, list_from_any, ordinal_in, remove_member, Gateway, Member};
use crate::member::events;
use crate::member::formation::{self, Formation};
use crate::member::{DataState, EtcdEnv, JoinOutcome, MemberEnv, MemberError, JOIN_ENV_FILE};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MemberError + '_ {
    move |source| MemberError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Moves the data of a member that was removed from the cluster out of etcd's way,
/// keeping it for an operator rather than deleting it. A separate WAL directory (often a
/// mount point of its own, which cannot be renamed) has its files moved into a
/// subdirectory, where etcd does not look.
fn set_stale_data_aside(etcd: &EtcdEnv) -> Result<PathBuf, MemberError> {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let from = etcd.data_dir.join("member");
    let to = etcd.data_dir.join(format!("member.removed-{seconds}"));
    if from.exists() {
        std::fs::rename(&from, &to).map_err(io(&from))?;
    }
    if let Some(wal) = &etcd.wal_dir {
        let aside = wal.join(format!("removed-{seconds}"));
        let entries: Vec<PathBuf> = std::fs::read_dir(wal)
            .map_err(io(wal))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        std::fs::create_dir(&aside).map_err(io(&aside))?;
        for entry in entries {
            let target = aside.join(entry.file_name().unwrap_or_default());
            std::fs::rename(&entry, &target).map_err(io(&entry))?;
        }
    }
    Ok(to)
}

/// `name=peerURL,...` for etcd's `--initial-cluster`, naming members that have not
/// started yet after their host's first label (their pod name).
fn initial_cluster(members: &[Member], env: &MemberEnv) -> String {
    let mut entries: Vec<String> = members
        .iter()
        .flat_map(|m| {
            let name = if is_self(m, env) {
                env.member_name().to_owned()
            } else {
                label(m)
            };
            m.peer_urls.iter().map(move |u| format!("{name}={u}"))
        })
        .collect();
    entries.sort();
    entries.join(",")
}

fn write_settings(dir: &Path, initial_cluster: &str) -> Result<(), MemberError> {
    let path = dir.join(JOIN_ENV_FILE);
    let partial = dir.join(format!(".{JOIN_ENV_FILE}.partial"));
    let text =
        format!("ETCD_INITIAL_CLUSTER={initial_cluster}\nETCD_INITIAL_CLUSTER_STATE=existing\n");
    std::fs::write(&partial, text).map_err(io(&partial))?;
    std::fs::rename(&partial, &path).map_err(io(&path))
}

/// The join settings as etcd should start with them: `ETCD_INITIAL_CLUSTER` read again from
/// the running cluster, for a member that joined and has no data yet.
///
/// etcd compares a joining member's initial cluster with the running cluster's member list
/// and exits ("member count is unequal") when they differ. With `podManagementPolicy:
/// Parallel`, another member can be added after this member's join wrote its settings and
/// before etcd starts: the join's one-change-at-a-time check cannot see an add that had not
/// happened yet. Reading the list here, just before etcd starts, narrows that gap to
/// milliseconds, and a container restart reads it again, so such a member starts at its next
/// try instead of crash-looping on a stale file. Harmless otherwise: etcd ignores its initial
/// cluster once it has data. When no quorum answers within `limit`, or the list no longer
/// names this member, the settings are kept as `join` wrote them.
pub async fn refresh_settings(
    env: &MemberEnv,
    gateway: &Gateway,
    dir: &Path,
    mut settings: Vec<(String, String)>,
    limit: Duration,
) -> Vec<(String, String)> {
    let Some(etcd) = &env.etcd else {
        return settings;
    };
    let joined = settings
        .iter()
        .any(|(k, v)| k == "ETCD_INITIAL_CLUSTER_STATE" && v == "existing");
    if !joined || matches!(etcd.data_state(), DataState::Present(_)) {
        return settings;
    }
    let endpoints: Vec<String> = env
        .other_peer_hosts()
        .into_iter()
        .map(|host| etcd.client_url_of(&host))
        .collect();
    let members = match tokio::time::timeout(limit, list_from_any(gateway, &endpoints, true)).await
    {
        Ok(Ok(members)) => members,
        Ok(Err(error)) => {
            tracing::warn!(%error, "could not read the member list again; starting with the join's settings");
            return settings;
        }
        Err(_) => {
            tracing::warn!(
                ?limit,
                "no member answered in time; starting with the join's settings"
            );
            return settings;
        }
    };
    if !members.iter().any(|m| is_self(m, env)) {
        tracing::warn!(
            "the member list no longer names this member; starting with the join's settings"
        );
        return settings;
    }
    let current = initial_cluster(&members, env);
    for (key, value) in &mut settings {
        if key == "ETCD_INITIAL_CLUSTER" && *value != current {
            tracing::warn!(
                was = %value,
                now = %current,
                "the member list changed since this member joined (another member was added at the same time); starting with the current one"
            );
            *value = current.clone();
            if let Err(error) = write_settings(dir, &current) {
                tracing::warn!(%error, "could not record the current initial cluster");
            }
        }
    }
    settings
}

/// Runs the join decision for this pod; the whole of it, cluster calls and retries
/// included, takes at most `budget`.
pub async fn join(
    env: &MemberEnv,
    gateway: &Gateway,
    dir: &Path,
    budget: Duration,
    cold_start_wait: Duration,
) -> Result<JoinOutcome, MemberError> {
    let deadline = Instant::now() + budget;
    let decided = decide_and_join(env, gateway, dir, deadline, budget, cold_start_wait);
    match tokio::time::timeout(budget, decided).await {
        Ok(outcome) => outcome,
        Err(_) => Err(MemberError::Deadline(
            budget,
            "the cluster did not answer in time".to_owned(),
        )),
    }
}

async fn decide_and_join(
    env: &MemberEnv,
    gateway: &Gateway,
    dir: &Path,
    deadline: Instant,
    budget: Duration,
    cold_start_wait: Duration,
) -> Result<JoinOutcome, MemberError> {
    let Some(etcd) = &env.etcd else {
        return Err(MemberError::MissingEnv("ETCD_ADVERTISE_CLIENT_URLS"));
    };
    let endpoints: Vec<String> = env
        .other_peer_hosts()
        .into_iter()
        .map(|host| etcd.client_url_of(&host))
        .collect();
    let bootstrap = env.is_bootstrap_member();
    let state = etcd.data_state();
    let data = match &state {
        DataState::Present(_) => Data::Found,
        DataState::Absent => Data::Empty,
        DataState::Unsure(_) => Data::Unsure,
    };
    if data != Data::Found && bootstrap && endpoints.is_empty() {
        return Ok(JoinOutcome::Bootstrap); // a cluster of one: nobody else could know this member
    }
    // Only a bootstrap member without data could start a new cluster, so only it needs the
    // record (and, without one, the peers' word) to tell a first start from a lost volume.
    let formation = if data != Data::Found && bootstrap {
        formation::read_until(env, deadline).await?
    } else {
        Formation::NotRecorded
    };
    let formed = matches!(formation, Formation::Formed { .. });
    let probe_peers = data != Data::Found && bootstrap && !formed;
    let peer_urls: Vec<String> = env
        .other_peer_hosts()
        .into_iter()
        .map(|host| peer_url_of(etcd, &host))
        .collect();
    let looked_at = etcd.data_dir.display().to_string();
    let first_ask = Instant::now();
    let mut told = None;
    loop {
        let asked = ask(
            env,
            gateway,
            &endpoints,
            probe_peers.then_some(&peer_urls[..]),
            first_ask.elapsed() >= cold_start_wait,
        )
        .await;
        let action = decide(data, bootstrap, formed, asked.answer);
        let why = match action {
            Action::Resume => {
                if let (Some(error), DataState::Present(found)) = (&asked.error, &state) {
                    tracing::info!(%error, found = %found.display(), "no quorum answered; starting from the existing data");
                }
                return Ok(JoinOutcome::HasData);
            }
            Action::Bootstrap => return Ok(JoinOutcome::Bootstrap),
            Action::Keep => {
                let me = asked.me.as_ref();
                return Err(MemberError::DataUnsure {
                    member: me
                        .map_or_else(String::new, |me| format!("{:x} ({})", me.id, label(me))),
                    looked_at,
                    why: match state {
                        DataState::Unsure(why) => why,
                        _ => String::new(),
                    },
                });
            }
            Action::SetAsideAndJoin => {
                let aside = set_stale_data_aside(etcd)?;
                tracing::warn!(
                    member = %env.pod_name,
                    moved_to = %aside.display(),
                    "this member was removed from the cluster; its old data is set aside and it joins again"
                );
                let why = "its data belongs to a member removed earlier".to_owned();
                return finish_join(
                    env,
                    etcd,
                    gateway,
                    dir,
                    &endpoints,
                    deadline,
                    budget,
                    why,
                    Some(aside),
                )
                .await;
            }
            Action::Replace => {
                tracing::warn!(member = %env.pod_name, "member lost its data; replacing it in the cluster");
                let me = asked.me.as_ref();
                format!(
                    "a {} member without data at {looked_at}, which the cluster lists as started \
                     (member {:x}, name {}, peer URLs {})",
                    if bootstrap { "bootstrap" } else { "scaled-up" },
                    me.map_or(0, |m| m.id),
                    me.map_or("", |m| m.name.as_str()),
                    me.map_or_else(String::new, |m| m.peer_urls.join(" "))
                )
            }
            Action::Join if bootstrap => {
                "a bootstrap member without data that its cluster's member list does \
                                          not name (it was removed earlier)"
                    .to_owned()
            }
            Action::Join => {
                let from = match env.ordinal_start {
                    0 => String::new(),
                    start => format!(" from ordinal {start}"),
                };
                format!(
                    "ordinal {} is beyond the bootstrap set of {}{from}",
                    env.ordinal, env.bootstrap_size
                )
            }
            Action::Wait(wait) => {
                let last = asked.error.clone().unwrap_or_default();
                if Instant::now() + Duration::from_secs(10) >= deadline {
                    return Err(match (wait, &formation) {
                        (WaitFor::VolumeLost, Formation::Formed { record, at, .. }) => {
                            MemberError::VolumeLost {
                                record: record.clone(),
                                at: at.clone(),
                                tried: last,
                            }
                        }
                        (WaitFor::FormedPeer, _) => MemberError::FormedWithoutQuorum {
                            formed: asked.formed_peers.join(", "),
                            version: asked.version.clone(),
                        },
                        _ => MemberError::Unreachable {
                            tried: endpoints.join(", "),
                            last,
                        },
                    });
                }
                if told != Some(wait) {
                    tell_wait(env, wait, &formation, &last).await;
                    told = Some(wait);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        return finish_join(
            env, etcd, gateway, dir, &endpoints, deadline, budget, why, None,
        )
        .await;
    }
}

/// Says once why the join waits: an Event for a lost volume, which an operator should see
/// at once; a log line otherwise.
async fn tell_wait(env: &MemberEnv, wait: WaitFor, formation: &Formation, error: &str) {
    match (wait, formation) {
        (WaitFor::VolumeLost, Formation::Formed { record, at, .. }) => {
            let message = format!(
                "its volume is empty, but the cluster formed before ({record}, formed {at}): waiting for a \
                 quorum of the other members to replace it as a new member; it does not start a new \
                 cluster under its old identity (no quorum answers yet: {error})"
            );
            tracing::warn!("{message}");
            events::record(
                env,
                events::Kind::Warning,
                "MemberVolumeLost",
                &message,
                Duration::from_secs(3),
            )
            .await;
        }
        (WaitFor::FormedPeer, _) => {
            tracing::warn!(%error, "no quorum answers, but a peer reports a cluster that formed before; waiting for a quorum")
        }
        (WaitFor::ColdStart, _) => tracing::info!(
            "no member answers yet; waiting to tell a first start from a cluster that is down"
        ),
        _ => tracing::info!(%error, "no quorum answers yet; waiting"),
    }
}

/// One look at the cluster, for [`decide`].
struct Asked {
    answer: Answer,
    /// This member as the quorum lists it.
    me: Option<Member>,
    /// Why no quorum answered.
    error: Option<String>,
    /// Peers that report a formed cluster, and its version.
    formed_peers: Vec<String>,
    version: String,
}

/// Asks a quorum for the member list (a linearizable read); when none answers and
/// `peer_urls` is given, asks each peer whether it restarted from a formed cluster's data
/// (etcd serves its cluster version on the peer port before it has a quorum).
async fn ask(
    env: &MemberEnv,
    gateway: &Gateway,
    endpoints: &[String],
    peer_urls: Option<&[String]>,
    cold_wait_over: bool,
) -> Asked {
    let error = match list_from_any(gateway, endpoints, true).await {
        Ok(members) => {
            let me = members.into_iter().find(|m| is_self(m, env));
            let answer = match &me {
                Some(me) if me.is_started() => Answer::ListsStarted,
                Some(_) => Answer::ListsNotStarted,
                None => Answer::DoesNotList,
            };
            return Asked {
                answer,
                me,
                error: None,
                formed_peers: Vec::new(),
                version: String::new(),
            };
        }
        Err(error) => error.to_string(),
    };
    let mut formed_peers = Vec::new();
    let mut version = String::new();
    for url in peer_urls.unwrap_or_default() {
        if let Ok(Some(v)) = gateway.formed_cluster_version(url).await {
            formed_peers.push(url.clone());
            version = v;
        }
    }
    Asked {
        answer: Answer::NoQuorum {
            formed_peer: !formed_peers.is_empty(),
            cold_wait_over,
        },
        me: None,
        error: Some(error),
        formed_peers,
        version,
    }
}

#[allow(clippy::too_many_arguments)]
async fn finish_join(
    env: &MemberEnv,
    etcd: &EtcdEnv,
    gateway: &Gateway,
    dir: &Path,
    endpoints: &[String],
    deadline: Instant,
    budget: Duration,
    why: String,
    data_set_aside: Option<PathBuf>,
) -> Result<JoinOutcome, MemberError> {
    let initial_cluster = crate::member::retry_until(deadline, budget, "join", || {
        join_once(env, etcd, gateway, endpoints)
    })
    .await?;
    write_settings(dir, &initial_cluster)?;
    tracing::info!(member = %env.pod_name, %initial_cluster, "joined the running cluster");
    Ok(JoinOutcome::Joined {
        why,
        initial_cluster,
        data_set_aside,
    })
}

/// The peer URL of the member on `host`, with this member's peer scheme and port.
fn peer_url_of(etcd: &EtcdEnv, host: &str) -> String {
    let (scheme, rest) = etcd
        .peer_url
        .split_once("://")
        .unwrap_or(("http", &etcd.peer_url));
    let port = rest.rsplit_once(':').map_or("2380", |(_, p)| p);
    format!("{scheme}://{host}:{port}")
}

async fn join_once(
    env: &MemberEnv,
    etcd: &EtcdEnv,
    gateway: &Gateway,
    endpoints: &[String],
) -> Result<String, MemberError> {
    let members = list_from_any(gateway, endpoints, true).await?;
    let me = match members.iter().find(|m| is_self(m, env)) {
        // Added by an earlier attempt that did not get to start etcd: reuse it.
        Some(me) if !me.is_started() => me.clone(),
        // Known as started, but this pod has no data: replace the old identity.
        Some(me) => {
            let removal = remove_member(gateway, me, &members, endpoints).await?;
            tracing::info!(
                id = me.id,
                ?removal,
                "replaced the stale identity of this member"
            );
            add_self(etcd, gateway, endpoints).await?
        }
        None => {
            if let Some(other) = members.iter().find(|m| !m.is_started()) {
                return Err(pending(other, &members));
            }
            add_self(etcd, gateway, endpoints).await?
        }
    };
    settle(env, gateway, endpoints, &me).await
}

/// One membership change at a time, as etcd advises: two members added together
/// (podManagementPolicy: Parallel) would leave the cluster without failure tolerance until
/// both start, and the first one's initial cluster would already be stale. When two adds
/// raced, the lower ordinal keeps its place and the other removes itself and retries.
async fn settle(
    env: &MemberEnv,
    gateway: &Gateway,
    endpoints: &[String],
    me: &Member,
) -> Result<String, MemberError> {
    let members = list_from_any(gateway, endpoints, true).await?;
    let Some(other) = members
        .iter()
        .filter(|m| !m.is_started() && m.id != me.id)
        .min_by_key(|m| ordinal_in(&env.statefulset, m))
    else {
        return Ok(initial_cluster(&members, env));
    };
    if ordinal_in(&env.statefulset, other) < Some(env.ordinal) {
        let mut last = String::new();
        for endpoint in endpoints {
            match gateway.member_remove(endpoint, me.id).await {
                Ok(()) => {
                    tracing::info!(
                        member = %env.pod_name,
                        other = %label(other),
                        "another member was added at the same time; withdrew this one to join after it"
                    );
                    return Err(pending(other, &members));
                }
                Err(error) if error.is_member_not_found() => return Err(pending(other, &members)),
                Err(error) => last = error.to_string(),
            }
        }
        return Err(MemberError::Unreachable {
            tried: endpoints.join(", "),
            last,
        });
    }
    // The other one has the higher ordinal: it withdraws itself; check again.
    Err(pending(other, &members))
}

fn pending(other: &Member, members: &[Member]) -> MemberError {
    MemberError::AnotherJoinPending {
        other: label(other),
        unstarted: members.iter().filter(|m| !m.is_started()).count(),
        members: members.len(),
    }
}

async fn add_self(
    etcd: &EtcdEnv,
    gateway: &Gateway,
    endpoints: &[String],
) -> Result<Member, MemberError> {
    let mut last = String::new();
    for endpoint in endpoints {
        match gateway
            .member_add(endpoint, std::slice::from_ref(&etcd.peer_url))
            .await
        {
            Ok((added, _)) => return Ok(added),
            Err(error) => last = error.to_string(),
        }
    }
    Err(MemberError::Unreachable {
        tried: endpoints.join(", "),
        last,
    })
}
