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

use super::{is_self, label, list_from_any, ordinal_in, remove_member, Gateway, Member};
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
    let bootstrap_member = env.is_bootstrap_member();

    let mut data_set_aside = None;
    let why;
    match etcd.data_state() {
        DataState::Present(found) => {
            // Still a member? Then etcd resumes. Removed earlier (a scale-down that kept the
            // volume)? Then its data would make etcd refuse to start: set it aside and join
            // anew. Asked of the leader (a linearizable read): a lagging member's list could
            // still miss a recent add. No quorum: start from the data, never wait for one.
            match list_from_any(gateway, &endpoints, true).await {
                Ok(members) if !members.iter().any(|m| is_self(m, env)) => {
                    let aside = set_stale_data_aside(etcd)?;
                    tracing::warn!(
                        member = %env.pod_name,
                        moved_to = %aside.display(),
                        "this member was removed from the cluster; its old data is set aside and it joins again"
                    );
                    data_set_aside = Some(aside);
                    why = "its data belongs to a member removed earlier".to_owned();
                }
                Ok(_) => return Ok(JoinOutcome::HasData),
                Err(error) => {
                    tracing::info!(%error, found = %found.display(), "no quorum answered; starting from the existing data");
                    return Ok(JoinOutcome::HasData);
                }
            }
        }
        data if bootstrap_member => {
            // First start of a bootstrap member, unless the cluster already knows it as
            // started: then this member lost its data and must be replaced, but only when
            // the helper is certain where etcd keeps its data.
            let me = find_started_self(env, etcd, gateway, &endpoints, deadline, cold_start_wait)
                .await?;
            let Some(me) = me else {
                return Ok(JoinOutcome::Bootstrap);
            };
            if let DataState::Unsure(unsure) = data {
                return Err(MemberError::DataUnsure {
                    member: format!("{:x} ({})", me.id, label(&me)),
                    looked_at: etcd.data_dir.display().to_string(),
                    why: unsure,
                });
            }
            tracing::warn!(member = %env.pod_name, "member lost its data; replacing it in the cluster");
            why = format!(
                "a bootstrap member without data at {}, which the cluster lists as started \
                 (member {:x}, name {}, peer URLs {})",
                etcd.data_dir.display(),
                me.id,
                me.name,
                me.peer_urls.join(" ")
            );
        }
        data => {
            // A scaled-up member without data joins; but one the cluster lists as started,
            // whose data may be where the helper did not look, is kept (removing and adding
            // it would start etcd on its real data under a removed ID).
            if let DataState::Unsure(unsure) = data {
                let listed = crate::member::retry_until(deadline, budget, "member list", || {
                    list_from_any(gateway, &endpoints, true)
                })
                .await?;
                if let Some(me) = listed.iter().find(|m| is_self(m, env) && m.is_started()) {
                    return Err(MemberError::DataUnsure {
                        member: format!("{:x} ({})", me.id, label(me)),
                        looked_at: etcd.data_dir.display().to_string(),
                        why: unsure,
                    });
                }
            }
            let from = match env.ordinal_start {
                0 => String::new(),
                start => format!(" from ordinal {start}"),
            };
            why = format!(
                "ordinal {} is beyond the bootstrap set of {}{from}",
                env.ordinal, env.bootstrap_size
            );
        }
    }

    let initial_cluster = crate::member::retry_until(deadline, budget, "join", || {
        join_once(env, etcd, gateway, &endpoints)
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

/// For a bootstrap member without data: this member as a quorum of the cluster lists it,
/// if the cluster lists it as started; `None` on a new cluster's first start.
///
/// With no quorum answering, a new cluster (every member still without data, waiting like
/// this one) cannot be told apart from a formed one that is down, except by the members
/// that restart from their data: etcd serves its cluster version on the peer port before
/// it has a quorum. So this waits: while any peer reports a formed cluster, for a quorum
/// (until the deadline; the pod then retries); otherwise for `cold_start_wait`, after which
/// no member restarting from data showed up and this is a first start.
async fn find_started_self(
    env: &MemberEnv,
    etcd: &EtcdEnv,
    gateway: &Gateway,
    endpoints: &[String],
    deadline: Instant,
    cold_start_wait: Duration,
) -> Result<Option<Member>, MemberError> {
    if endpoints.is_empty() {
        return Ok(None); // a cluster of one: nobody else could know this member
    }
    let cold_until = Instant::now() + cold_start_wait;
    let peer_urls: Vec<String> = env
        .other_peer_hosts()
        .into_iter()
        .map(|host| peer_url_of(etcd, &host))
        .collect();
    loop {
        if let Ok(members) = list_from_any(gateway, endpoints, true).await {
            return Ok(members
                .into_iter()
                .find(|m| is_self(m, env) && m.is_started()));
        }
        let mut formed = Vec::new();
        let mut version = String::new();
        for url in &peer_urls {
            if let Ok(Some(v)) = gateway.formed_cluster_version(url).await {
                formed.push(url.clone());
                version = v;
            }
        }
        let now = Instant::now();
        if !formed.is_empty() {
            let error = MemberError::FormedWithoutQuorum {
                formed: formed.join(", "),
                version,
            };
            if now + Duration::from_secs(1) >= deadline {
                return Err(error);
            }
            tracing::warn!(%error, "waiting");
        } else if now >= cold_until {
            tracing::info!(
                waited = ?cold_start_wait,
                "no member answered and none restarted from data; a new cluster's first start"
            );
            return Ok(None);
        } else {
            tracing::info!(
                "no member answers yet; waiting to tell a first start from a cluster that is down"
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
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
