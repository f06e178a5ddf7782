//! The in-pod helper (SPEC §5): `member leave` (preStop) removes this member from the Raft
//! configuration only when the pod is being scaled away; `member join` (init container)
//! adds a member beyond the bootstrap set to the running cluster (etcd: through etcd's
//! gateway, `etcd::join`; generic: through the `join-url` annotation); `member exec`
//! starts etcd with what `join` decided; `member reconcile` (etcd sidecar) repairs a leave
//! that did not finish.

pub mod body;
pub mod cluster;
pub mod etcd;
pub mod events;
pub mod exec;
pub mod flavors;
pub mod formation;
pub mod generic;
pub mod kraft;
pub mod leave;
pub mod reconcile;
pub mod status;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use crate::policy::names::{DATA_DIR_ENV, WAL_DIR_ENV};

/// How a removal ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// Not in the configuration (an earlier attempt, or an operator, removed it).
    AlreadyGone,
}

/// What `join` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinOutcome {
    /// A bootstrap member on first start: the injected settings already describe it.
    Bootstrap,
    /// The data directory holds this member's data; etcd resumes from it.
    HasData,
    /// Added to the running cluster (or found already added); settings written.
    /// `why`: what made this member join rather than bootstrap or resume;
    /// `data_set_aside`: where the data of this member's removed identity was moved.
    Joined {
        why: String,
        initial_cluster: String,
        data_set_aside: Option<PathBuf>,
    },
    /// Generic flavor: a bootstrap member, named in `RAFT_PEERS`; nothing to call.
    BootstrapPeer,
    /// Generic flavor: the join URL accepted this member.
    JoinedThroughUrl { url: String, status: u16 },
    /// Generic flavor: the StatefulSet has no join URL (any more), so nothing was called.
    NoJoinUrl,
    /// Kraft flavor: the empty volume was formatted (why, and with which directory id).
    KraftFormatted { why: String, directory_id: String },
}

/// Where `join` leaves the etcd settings for `exec`, inside the helper volume.
pub const JOIN_ENV_FILE: &str = "etcd-join.env";

/// Where an env var the helper reads comes from, for messages when it is missing.
pub fn env_source(name: &str) -> &'static str {
    match name {
        "POD_NAME" => "the downward API field metadata.name",
        "POD_NAMESPACE" => "the downward API field metadata.namespace",
        "RAFT_ORDINAL" => {
            "the downward API field metadata.labels['apps.kubernetes.io/pod-index'], a label the StatefulSet \
             controller sets on its pods since Kubernetes 1.28"
        }
        _ => "a value raft-injector sets on the container",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error(
        "env var {0} is not set (it comes from {source}); is this running in a pod that raft-injector injected?",
        source = env_source(.0)
    )]
    MissingEnv(&'static str),
    #[error("env var {name} is {value:?} ({why}); it comes from {source}", source = env_source(.name))]
    BadEnv {
        name: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("no member answered ({tried}); last error: {last}")]
    Unreachable { tried: String, last: String },
    #[error(
        "removing this member would leave {healthy} healthy of the {remaining} remaining voting members, below \
         the quorum of {needed}; not removing — bring the other members back first"
    )]
    QuorumAtRisk {
        healthy: usize,
        remaining: usize,
        needed: usize,
    },
    #[error(
        "member {other} was added but has not started yet ({unstarted} of {members} members not \
         started); waiting for it before adding this one (one membership change at a time)"
    )]
    AnotherJoinPending {
        other: String,
        unstarted: usize,
        members: usize,
    },
    #[error(
        "the cluster lists this member ({member}) as started, but its data was not found at {looked_at} and \
         {why}; keeping the member rather than replacing it (it may hold data the helper cannot see) — \
         if the volume really lost its data, remove member {member} by hand (etcdctl member remove) and \
         delete this pod"
    )]
    DataUnsure {
        member: String,
        looked_at: String,
        why: String,
    },
    #[error(
        "this bootstrap member has no data and no member with a quorum answers, but {formed} report a cluster \
         that has formed before (version {version}); waiting for a quorum rather than starting a new cluster \
         under this member's old name"
    )]
    FormedWithoutQuorum { formed: String, version: String },
    #[error(
        "this member's volume is empty, but the cluster formed before ({record}, formed {at}); it is not started \
         as its old member with an empty log, nor as a new cluster. No quorum of the other members answers \
         ({tried}): waiting for them to come back, then this member is replaced as a new member. If every \
         member's volume is gone for good, delete the StatefulSet and the ConfigMap and create the cluster anew"
    )]
    VolumeLost {
        record: String,
        at: String,
        tried: String,
    },
    #[error(
        "this member's volume is empty and whether the cluster formed before cannot be told: {0}; not starting \
         (a new cluster under this member's old identity could lose committed data)"
    )]
    FormationUnknown(String),
    #[error("gave up after {0:?}: {1}")]
    Deadline(std::time::Duration, String),
    #[error("the {hook} URL {url} answered {status}: {body}")]
    HookRefused {
        hook: generic::Hook,
        url: String,
        status: u16,
        body: String,
    },
    #[error("annotation raft-injector.io/leave-url is not set, so a generic-flavor member cannot remove itself")]
    NoLeaveUrl,
    #[error("annotation {annotation} is not usable: {why}", annotation = .hook.annotation())]
    BadHookUrl { hook: generic::Hook, why: String },
    #[error("{0}")]
    Etcd(#[from] etcd::EtcdError),
    #[error("{0}")]
    Kraft(kraft::wire::KraftError),
    #[error("{0}")]
    KraftVolume(String),
    #[error("the TLS files at {path} cannot be used: {why}", path = .path.display())]
    Tls { path: PathBuf, why: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the injected env vars say about this member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberEnv {
    pub pod_name: String,
    pub namespace: String,
    pub statefulset: String,
    pub ordinal: i32,
    /// Stable DNS name of this member (`RAFT_ID`).
    pub id: String,
    pub address: String,
    pub bootstrap_size: i32,
    /// The first bootstrap member's ordinal (`spec.ordinals.start`), read off `RAFT_PEERS`.
    pub ordinal_start: i32,
    /// `host:port` of each bootstrap member.
    pub peers: Vec<String>,
    /// etcd flavor only.
    pub etcd: Option<EtcdEnv>,
    /// kraft flavor only.
    pub kraft: Option<kraft::KraftEnv>,
    /// The TLS Secret's files (`RAFT_TLS_*`), when the StatefulSet names one.
    pub tls: Option<TlsFiles>,
}

/// The files of the Secret named by `raft-injector.io/tls-secret`, as mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl MemberEnv {
    /// An HTTP client for calls to members and hook URLs: with TLS files, it trusts only
    /// their CA and presents their certificate.
    pub fn http_client(&self, timeout: Duration) -> Result<reqwest::Client, MemberError> {
        let builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout);
        let builder = match &self.tls {
            None => builder,
            Some(tls) => {
                let read = |path: &PathBuf| {
                    std::fs::read(path).map_err(|source| MemberError::Io {
                        path: path.clone(),
                        source,
                    })
                };
                let bad = |path: &PathBuf, error: reqwest::Error| MemberError::Tls {
                    path: path.clone(),
                    why: error.to_string(),
                };
                let ca =
                    reqwest::Certificate::from_pem(&read(&tls.ca)?).map_err(|e| bad(&tls.ca, e))?;
                let mut pair = read(&tls.cert)?;
                pair.push(b'\n');
                pair.extend(read(&tls.key)?);
                let identity = reqwest::Identity::from_pem(&pair).map_err(|e| bad(&tls.cert, e))?;
                builder
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(ca)
                    .identity(identity)
            }
        };
        builder.build().map_err(|error| MemberError::Tls {
            path: self
                .tls
                .as_ref()
                .map(|t| t.cert.clone())
                .unwrap_or_default(),
            why: error.to_string(),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdEnv {
    /// `http://<RAFT_ID>:<client port>`.
    pub client_url: String,
    pub peer_url: String,
    pub client_port: String,
    /// The name this member publishes: `ETCD_NAME` (the user's, if they set one), else the
    /// pod name.
    pub name: String,
    /// Where etcd keeps this member's data.
    pub data_dir: PathBuf,
    /// etcd's WAL directory when it is not `<data dir>/member/wal`.
    pub wal_dir: Option<PathBuf>,
    /// `None` when the injector read both directories off etcd's own command line and env
    /// (`RAFT_DATA_DIR`); otherwise why they are only a guess. A member whose data is not
    /// found at a guessed place is never taken for one that lost its data.
    pub data_dir_unsure: Option<String>,
}

/// What the member's volume holds, as far as the helper can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataState {
    /// etcd data (a WAL or a snapshot) at this path.
    Present(PathBuf),
    /// None where etcd keeps it, and that place is certain.
    Absent,
    /// None found, but the place was only a guess (why).
    Unsure(String),
}

impl EtcdEnv {
    /// `https` when etcd serves TLS (its advertised client URL says), else `http`.
    pub fn client_scheme(&self) -> &str {
        self.client_url.split_once("://").map_or("http", |(s, _)| s)
    }

    /// The client URL of the member on `host`.
    pub fn client_url_of(&self, host: &str) -> String {
        format!("{}://{host}:{}", self.client_scheme(), self.client_port)
    }

    /// Whether etcd would find data to start from, looking where etcd looks: the WAL
    /// directory, else `member/wal` and `member/snap` under the data directory.
    pub fn data_state(&self) -> DataState {
        let non_empty = |dir: &std::path::Path| {
            std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
        };
        let member = self.data_dir.join("member");
        let candidates = self
            .wal_dir
            .iter()
            .cloned()
            .chain([member.join("wal"), member.join("snap")]);
        for candidate in candidates {
            if non_empty(&candidate) {
                return DataState::Present(candidate);
            }
        }
        // A `member` directory etcd did not finish writing is still not nothing.
        if member.is_dir() {
            return DataState::Present(member);
        }
        match &self.data_dir_unsure {
            None => DataState::Absent,
            Some(why) => DataState::Unsure(why.clone()),
        }
    }
}

/// Reads the StatefulSet with the pod's credentials (in-cluster, or KUBECONFIG).
pub async fn read_statefulset(
    env: &MemberEnv,
    timeout: Duration,
) -> Result<Option<k8s_openapi::api::apps::v1::StatefulSet>, String> {
    let read = async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| e.to_string())?;
        kube::Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(client, &env.namespace)
            .get_opt(&env.statefulset)
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| format!("no answer from the Kubernetes API within {timeout:?}"))?
}

/// Runs `attempt` until it succeeds or `deadline` passes, cutting off an attempt that is
/// still running then, so the whole call ends by the deadline. `budget` is what the
/// caller was given, for the message.
pub(crate) async fn retry_until<T, Fut>(
    deadline: Instant,
    budget: Duration,
    what: &str,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, MemberError>
where
    Fut: Future<Output = Result<T, MemberError>>,
{
    let mut last = String::from("no answer from any member before the deadline");
    while Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, attempt()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => {
                tracing::warn!(%error, "{what} not done yet; retrying");
                last = error.to_string();
            }
            Err(_) => break,
        }
        let pause =
            Duration::from_millis(500).min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(pause).await;
    }
    Err(MemberError::Deadline(budget, last))
}

/// Where etcd keeps its data: `(data dir, WAL dir, why unsure)`, from `set` (this
/// container's env with empty values as unset). With `RAFT_DATA_FROM` the injector read
/// etcd's command line: its flags (`RAFT_DATA_DIR`, `RAFT_WAL_DIR`, `RAFT_ETCD_NAME`) win,
/// and the rest comes from this container's own env, which is etcd's (same image, env and
/// envFrom), as etcd reads it: `ETCD_DATA_DIR`, else `<name>.etcd`. Anything the helper
/// cannot resolve as etcd would is unsure.
fn etcd_data_location(
    set: &impl Fn(&str) -> Option<String>,
    name: &str,
) -> (String, Option<String>, Option<String>) {
    use crate::policy::names::{DATA_FROM_ENV, DATA_FROM_FLAGS_THEN_ENV, ETCD_NAME_FLAG_ENV};
    let from_env = || {
        let name = set(ETCD_NAME_FLAG_ENV).unwrap_or_else(|| name.to_owned());
        set("ETCD_DATA_DIR").unwrap_or_else(|| format!("{name}.etcd"))
    };
    if set(DATA_FROM_ENV).as_deref() == Some(DATA_FROM_FLAGS_THEN_ENV) {
        let data_dir = set(DATA_DIR_ENV).unwrap_or_else(from_env);
        let wal_dir = set(WAL_DIR_ENV).or_else(|| set("ETCD_WAL_DIR"));
        let unexpanded = [Some(&data_dir), wal_dir.as_ref()]
            .into_iter()
            .flatten()
            .find(|dir| dir.contains("$("));
        let unsure = match (set("ETCD_CONFIG_FILE"), unexpanded) {
            (Some(file), _) => Some(format!(
                "etcd reads the config file {file} (ETCD_CONFIG_FILE in its environment), which overrides its flags and env"
            )),
            (None, Some(dir)) => Some(format!(
                "{dir} holds a $(VAR) reference that kubelet did not expand (the variable is not defined for the container)"
            )),
            (None, None) => None,
        };
        return (data_dir, wal_dir, unsure);
    }
    match set(DATA_DIR_ENV) {
        // Injected by an older injector, which read only `env`: certain unless this
        // container's env (envFrom, the image) says otherwise.
        Some(dir) => {
            let unsure = set("ETCD_DATA_DIR").filter(|env| *env != dir).map(|env| {
                format!(
                    "{DATA_DIR_ENV} ({dir}) and ETCD_DATA_DIR ({env}) disagree: the injection predates \
                     envFrom support (recreate the StatefulSet to inject it anew)"
                )
            });
            (dir, set(WAL_DIR_ENV), unsure)
        }
        // The command line did not say (see the admission warning).
        None => (
            from_env(),
            set("ETCD_WAL_DIR"),
            Some(format!(
                "{DATA_FROM_ENV} is not set, so etcd's command line could not be read at admission \
                 (see the StatefulSet's admission warnings)"
            )),
        ),
    }
}

impl MemberEnv {
    /// Reads the env vars the webhook injected (and kubelet expanded).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<MemberEnv, MemberError> {
        let need = |name: &'static str| {
            get(name)
                .filter(|v| !v.is_empty())
                .ok_or(MemberError::MissingEnv(name))
        };
        let pod_name = need("POD_NAME")?;
        // The pod-index label is set since Kubernetes 1.28; before that, the pod name says.
        let ordinal: i32 = match get("RAFT_ORDINAL").filter(|v| !v.is_empty()) {
            Some(text) => text.parse().map_err(|_| MemberError::BadEnv {
                name: "RAFT_ORDINAL",
                value: text.clone(),
                why: "not a pod ordinal",
            })?,
            None => pod_name
                .rsplit_once('-')
                .and_then(|(_, o)| o.parse().ok())
                .ok_or(MemberError::MissingEnv("RAFT_ORDINAL"))?,
        };
        let statefulset = pod_name
            .strip_suffix(&format!("-{ordinal}"))
            .ok_or(MemberError::BadEnv {
                name: "POD_NAME",
                value: pod_name.clone(),
                why: "does not end in -<ordinal> like a StatefulSet pod",
            })?
            .to_owned();
        let size_text = need("RAFT_CLUSTER_SIZE")?;
        let bootstrap_size = size_text.parse().map_err(|_| MemberError::BadEnv {
            name: "RAFT_CLUSTER_SIZE",
            value: size_text.clone(),
            why: "not a number",
        })?;
        let peers: Vec<String> = need("RAFT_PEERS")?
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        // `<sts>-<ordinal>.<service>...:<port>`: the first one's ordinal is the start.
        let ordinal_start = peers
            .first()
            .and_then(|p| p.split('.').next())
            .and_then(|host| {
                host.strip_prefix(&statefulset)?
                    .strip_prefix('-')?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        let etcd = match get("ETCD_ADVERTISE_CLIENT_URLS").filter(|v| !v.is_empty()) {
            None => None,
            Some(urls) => {
                let client_url = urls.split(',').next().unwrap_or_default().to_owned();
                let client_port = client_url
                    .rsplit_once(':')
                    .map(|(_, p)| p.to_owned())
                    .unwrap_or_default();
                let peer_url = need("ETCD_INITIAL_ADVERTISE_PEER_URLS")?
                    .split(',')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let set = |name: &str| get(name).filter(|v| !v.is_empty());
                let name = set("ETCD_NAME").unwrap_or_else(|| pod_name.clone());
                let (data_dir, wal_dir, data_dir_unsure) = etcd_data_location(&set, &name);
                Some(EtcdEnv {
                    client_url,
                    peer_url,
                    client_port,
                    name,
                    data_dir: data_dir.into(),
                    wal_dir: wal_dir.map(PathBuf::from),
                    data_dir_unsure,
                })
            }
        };
        let tls = match (
            get("RAFT_TLS_CA_FILE").filter(|v| !v.is_empty()),
            get("RAFT_TLS_CERT_FILE").filter(|v| !v.is_empty()),
            get("RAFT_TLS_KEY_FILE").filter(|v| !v.is_empty()),
        ) {
            (Some(ca), Some(cert), Some(key)) => Some(TlsFiles {
                ca: ca.into(),
                cert: cert.into(),
                key: key.into(),
            }),
            _ => None,
        };
        let kraft = kraft::KraftEnv::from_lookup(&get)?;
        Ok(MemberEnv {
            kraft,
            tls,
            namespace: need("POD_NAMESPACE")?,
            id: need("RAFT_ID")?,
            address: get("RAFT_ADDRESS").unwrap_or_default(),
            pod_name,
            statefulset,
            ordinal,
            bootstrap_size,
            ordinal_start,
            peers,
            etcd,
        })
    }

    pub fn from_process_env() -> Result<MemberEnv, MemberError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The name this member publishes in the member list: etcd's `ETCD_NAME` (the user's,
    /// if they set one), else the pod name.
    pub fn member_name(&self) -> &str {
        self.etcd.as_ref().map_or(&self.pod_name, |etcd| &etcd.name)
    }

    /// The env of the member at `ordinal` of the same StatefulSet, as its own pod has it
    /// (its name, ordinal, stable DNS name and address), for calls made on its behalf.
    pub fn sibling(&self, ordinal: i32) -> MemberEnv {
        let pod_name = format!("{}-{ordinal}", self.statefulset);
        let swap = |text: &str| match text.split_once('.') {
            Some((_, rest)) => format!("{pod_name}.{rest}"),
            None => pod_name.clone(),
        };
        let id = swap(&self.id);
        let address = match self.address.rsplit_once(':') {
            Some((_, port)) => format!("{id}:{port}"),
            None => self.address.clone(),
        };
        MemberEnv {
            id,
            address,
            ordinal,
            pod_name: pod_name.clone(),
            etcd: None,
            ..self.clone()
        }
    }

    /// The flavor's name, as the env says.
    pub fn flavor(&self) -> &'static str {
        match (&self.etcd, &self.kraft) {
            (Some(_), _) => "etcd",
            (None, Some(_)) => "kraft",
            (None, None) => "generic",
        }
    }

    /// Whether this member is one of the bootstrap set that `RAFT_PEERS` names.
    pub fn is_bootstrap_member(&self) -> bool {
        (self.ordinal_start..self.ordinal_start.saturating_add(self.bootstrap_size))
            .contains(&self.ordinal)
    }

    /// Hosts of the bootstrap members other than this one.
    pub fn other_peer_hosts(&self) -> Vec<String> {
        self.peers
            .iter()
            .map(|p| {
                p.rsplit_once(':')
                    .map_or(p.as_str(), |(host, _)| host)
                    .to_owned()
            })
            .filter(|host| *host != self.id)
            .collect()
    }
}
