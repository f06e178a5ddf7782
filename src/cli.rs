//! Command-line flags, each also readable from an env var, and their conversion into the
//! typed configs the library runs on.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::certs::rotation::Lifetimes;
use crate::certs::CertRequest;
use crate::policy::{MissingService, Settings};
use crate::server::own_certs::OwnCertsConfig;
use crate::server::tls::CertPaths;
use crate::server::{CertSource, ServeConfig};

#[derive(Debug, Parser)]
#[command(
    name = "raft-injector",
    version,
    about = "Admission webhook that makes Raft clusters on StatefulSets safe and boring"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "RAFT_INJECTOR_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the admission webhook (HTTPS) and its health and metrics port.
    Serve(Box<ServeArgs>),
    /// Inject Raft StatefulSets in YAML offline, like `istioctl kube-inject`.
    Inject(InjectArgs),
    /// Check YAML offline against the Raft rules; exit 1 when any is denied.
    Validate(ValidateArgs),
    /// Write a CA and a serving certificate (ECDSA P-256) for the webhook Service.
    Certs(CertsArgs),
    /// Check the installation and every opted-in StatefulSet, like `linkerd check`;
    /// exit 1 on any failure.
    Check(CheckArgs),
    /// The in-pod helper the webhook injects: leave (preStop), join, exec and reconcile.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Copy this binary into a directory (what the injected init container runs).
    #[command(hide = true)]
    Install(InstallArgs),
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Remove this member from the Raft configuration if, and only if, the pod is being
    /// scaled away (its ordinal is at or beyond the StatefulSet's spec.replicas).
    Leave {
        /// Give up after this many seconds; keep it below terminationGracePeriodSeconds.
        #[arg(
            long,
            env = "RAFT_INJECTOR_LEAVE_TIMEOUT_SECONDS",
            default_value_t = 25
        )]
        timeout_seconds: u64,
    },
    /// Add a member beyond the bootstrap set to the running cluster before the application
    /// starts (etcd: through etcd's gateway; generic: through the join-url annotation;
    /// kraft: format the empty volume once, as a bootstrap voter or an observer).
    Join {
        /// The helper volume, where the join settings are written.
        #[arg(long, env = "RAFT_INJECTOR_HELPER_DIR", default_value = crate::policy::names::HELPER_MOUNT_PATH)]
        dir: PathBuf,
        /// Give up after this many seconds.
        #[arg(
            long,
            env = "RAFT_INJECTOR_JOIN_TIMEOUT_SECONDS",
            default_value_t = 120
        )]
        timeout_seconds: u64,
        /// etcd, kraft: how long a bootstrap member without data waits for a member restarting
        /// from its data (kraft: for a leader) before it takes the silence for a new
        /// cluster's first start.
        #[arg(
            long,
            env = "RAFT_INJECTOR_COLD_START_WAIT_SECONDS",
            default_value_t = 10
        )]
        cold_start_wait_seconds: u64,
    },
    /// The sidecar next to each member; the one next to the leader removes members whose
    /// ordinal is at or beyond spec.replicas and whose pod is gone (a missed leave); kraft:
    /// each one also adds its own controller to the voters once it has caught up.
    Reconcile {
        /// How often to look.
        #[arg(
            long,
            env = "RAFT_INJECTOR_RECONCILE_INTERVAL_SECONDS",
            default_value_t = 10,
            value_parser = clap::value_parser!(u64).range(1..=3600)
        )]
        interval_seconds: u64,
    },
    /// This member's view (for kubectl exec): its id, the member list, the leader, and
    /// whether it would leave on stop, and why. Exit code 1 when something could not be read.
    Status {
        #[arg(short = 'o', long, value_enum, default_value_t = StatusFormat::Text)]
        output: StatusFormat,
        /// Generic flavor: the members URL to read, as annotation raft-injector.io/members-url
        /// says (`check` passes it, so the list is read even when the pod cannot read its
        /// StatefulSet); by default read off the StatefulSet.
        #[arg(long, value_name = "URL")]
        members_url: Option<String>,
    },
    /// etcd: start COMMAND with the settings `member join` left, if any.
    Exec {
        /// The helper volume.
        #[arg(long, env = "RAFT_INJECTOR_HELPER_DIR", default_value = crate::policy::names::HELPER_MOUNT_PATH)]
        dir: PathBuf,
        #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
        command: Vec<std::ffi::OsString>,
    },
}

/// The rule settings shared by `serve`, `inject` and `validate`.
#[derive(Clone, Debug, Args)]
pub struct RuleArgs {
    /// Cluster DNS domain used in peer names, unless a StatefulSet's annotation says otherwise.
    #[arg(
        long,
        env = "RAFT_INJECTOR_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    pub cluster_domain: String,
    /// Image of the init container that provides the in-pod helper.
    #[arg(long, env = "RAFT_INJECTOR_HELPER_IMAGE", default_value = crate::DEFAULT_HELPER_IMAGE)]
    pub helper_image: String,
    /// What to do when spec.serviceName names no existing Service.
    #[arg(
        long,
        env = "RAFT_INJECTOR_MISSING_SERVICE",
        value_enum,
        default_value = "deny"
    )]
    pub missing_service: MissingService,
    /// Most members a Raft StatefulSet may have; larger and negative replica counts are denied.
    #[arg(
        long,
        env = "RAFT_INJECTOR_MAX_REPLICAS",
        default_value_t = crate::policy::replicas::DEFAULT_MAX_REPLICAS,
        value_parser = clap::value_parser!(i32).range(1..=999)
    )]
    pub max_replicas: i32,
}

impl RuleArgs {
    pub fn settings(&self) -> Settings {
        Settings {
            cluster_domain: self.cluster_domain.trim_matches('.').to_owned(),
            helper_image: self.helper_image.clone(),
            missing_service: self.missing_service,
            max_replicas: self.max_replicas,
        }
    }
}

#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// HTTPS address for /mutate and /validate.
    #[arg(long, env = "RAFT_INJECTOR_ADDR", default_value = "0.0.0.0:8443")]
    pub addr: SocketAddr,
    /// Plain-HTTP address for /livez, /readyz and /metrics.
    #[arg(
        long,
        env = "RAFT_INJECTOR_METRICS_ADDR",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_addr: SocketAddr,
    /// PEM certificate chain.
    #[arg(
        long,
        env = "RAFT_INJECTOR_TLS_CERT",
        default_value = "/etc/raft-injector/tls/tls.crt"
    )]
    pub tls_cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1; ECDSA or RSA).
    #[arg(
        long,
        env = "RAFT_INJECTOR_TLS_KEY",
        default_value = "/etc/raft-injector/tls/tls.key"
    )]
    pub tls_key: PathBuf,
    /// Keep the CA and serving certificate in this Secret of the webhook's namespace,
    /// making and rotating them, and set the webhook configurations' caBundle (instead of
    /// reading --tls-cert/--tls-key). Needs get/create/update on the Secret and get/update
    /// on the two webhook configurations.
    #[arg(long, env = "RAFT_INJECTOR_CERT_SECRET")]
    pub cert_secret: Option<String>,
    /// The webhook's namespace (with --cert-secret); default: the service account's.
    #[arg(long, env = "RAFT_INJECTOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// The webhook's Service (with --cert-secret): the certificate's names, and the
    /// Secret's owner.
    #[arg(long, env = "RAFT_INJECTOR_SERVICE", default_value = "raft-injector")]
    pub service: String,
    /// The Mutating- and ValidatingWebhookConfiguration whose caBundle --cert-secret sets.
    #[arg(
        long,
        env = "RAFT_INJECTOR_WEBHOOK_CONFIGURATION",
        default_value = "raft-injector"
    )]
    pub webhook_configuration: String,
    /// Validity of a CA made with --cert-secret, in days; a CA with less than a third of
    /// this left is replaced (both trusted during the change).
    #[arg(long, env = "RAFT_INJECTOR_CA_VALIDITY_DAYS", default_value_t = 3650)]
    pub ca_validity_days: u32,
    /// Validity of a serving certificate made with --cert-secret, in days; renewed when a
    /// third of it is left.
    #[arg(long, env = "RAFT_INJECTOR_CERT_VALIDITY_DAYS", default_value_t = 365)]
    pub cert_validity_days: u32,
    /// How often to look for a rotated certificate, in seconds.
    #[arg(long, env = "RAFT_INJECTOR_CERT_RELOAD_SECONDS", default_value_t = 10)]
    pub cert_reload_seconds: u64,
    /// Seconds to keep accepting requests after SIGTERM, reporting not ready meanwhile, so
    /// the API server stops choosing this pod before it stops listening (endpoint removal
    /// reaches kube-proxy a moment after the pod starts terminating).
    #[arg(
        long,
        env = "RAFT_INJECTOR_SHUTDOWN_DELAY_SECONDS",
        default_value_t = 5
    )]
    pub shutdown_delay_seconds: u64,
    /// How long to let in-flight requests finish after SIGTERM, in seconds.
    #[arg(
        long,
        env = "RAFT_INJECTOR_SHUTDOWN_GRACE_SECONDS",
        default_value_t = 20
    )]
    pub shutdown_grace_seconds: u64,
    /// Seconds a client has for the TLS handshake, and for each request's headers.
    #[arg(
        long,
        env = "RAFT_INJECTOR_HEADER_TIMEOUT_SECONDS",
        default_value_t = 10
    )]
    pub header_timeout_seconds: u64,
    /// Seconds a client has to send a request body.
    #[arg(long, env = "RAFT_INJECTOR_BODY_TIMEOUT_SECONDS", default_value_t = 10)]
    pub body_timeout_seconds: u64,
    /// Seconds a connection may stay open with no request in flight.
    #[arg(long, env = "RAFT_INJECTOR_IDLE_TIMEOUT_SECONDS", default_value_t = 60)]
    pub idle_timeout_seconds: u64,
    /// Most HTTPS connections open at once; at the cap, stalled connections are closed first.
    #[arg(long, env = "RAFT_INJECTOR_MAX_CONNECTIONS", default_value_t = 1000)]
    pub max_connections: usize,
    /// Bytes of request bodies held by all requests together; above it the body that has
    /// been arriving the longest is shed (503). At least 3 MiB (one whole review).
    #[arg(
        long,
        env = "RAFT_INJECTOR_MAX_BUFFERED_BODY_BYTES",
        default_value_t = crate::server::app::DEFAULT_BODY_BUDGET
    )]
    pub max_buffered_body_bytes: usize,
    #[command(flatten)]
    pub rules: RuleArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--addr and --metrics-addr are both {0}; the webhook and the metrics port need different ports")]
    SamePort(SocketAddr),
    #[error("--cert-reload-seconds must be at least 1")]
    ReloadInterval,
    #[error("--cluster-domain is {0:?}, which is not a DNS domain (e.g. cluster.local)")]
    ClusterDomain(String),
    #[error(
        "--cert-secret needs the webhook's namespace: pass --namespace (RAFT_INJECTOR_NAMESPACE)"
    )]
    Namespace,
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("--max-buffered-body-bytes is {0}; it must hold at least one whole review of {max} bytes", max = crate::server::app::MAX_BODY_BYTES)]
    BodyBudget(usize),
}

impl ServeArgs {
    pub fn config(&self) -> Result<ServeConfig, ConfigError> {
        if self.addr == self.metrics_addr {
            return Err(ConfigError::SamePort(self.addr));
        }
        if self.cert_reload_seconds == 0 {
            return Err(ConfigError::ReloadInterval);
        }
        let settings = self.rules.settings();
        if !crate::policy::dns::is_subdomain(&settings.cluster_domain) {
            return Err(ConfigError::ClusterDomain(settings.cluster_domain));
        }
        for (flag, value) in [
            ("--header-timeout-seconds", self.header_timeout_seconds),
            ("--body-timeout-seconds", self.body_timeout_seconds),
            ("--idle-timeout-seconds", self.idle_timeout_seconds),
            ("--max-connections", self.max_connections as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(flag));
            }
        }
        if self.max_buffered_body_bytes < crate::server::app::MAX_BODY_BYTES {
            return Err(ConfigError::BodyBudget(self.max_buffered_body_bytes));
        }
        Ok(ServeConfig {
            certs: self.cert_source(&settings.cluster_domain)?,
            addr: self.addr,
            metrics_addr: self.metrics_addr,
            settings,
            cert_reload_interval: Duration::from_secs(self.cert_reload_seconds),
            shutdown_delay: Duration::from_secs(self.shutdown_delay_seconds),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            limits: crate::server::listener::Limits {
                header_timeout: Duration::from_secs(self.header_timeout_seconds),
                idle_timeout: Duration::from_secs(self.idle_timeout_seconds),
                max_connections: self.max_connections,
            },
            body_timeout: Duration::from_secs(self.body_timeout_seconds),
            body_budget: self.max_buffered_body_bytes,
        })
    }
}

impl ServeArgs {
    fn cert_source(&self, cluster_domain: &str) -> Result<CertSource, ConfigError> {
        let Some(secret) = &self.cert_secret else {
            return Ok(CertSource::Files(CertPaths {
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
            }));
        };
        if self.ca_validity_days == 0 || self.cert_validity_days == 0 {
            return Err(ConfigError::Zero(
                "--ca-validity-days and --cert-validity-days",
            ));
        }
        let namespace = match &self.namespace {
            Some(namespace) => namespace.clone(),
            None => std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
                .map(|ns| ns.trim().to_owned())
                .map_err(|_| ConfigError::Namespace)?,
        };
        Ok(CertSource::Secret(OwnCertsConfig {
            namespace,
            secret: secret.clone(),
            service: self.service.clone(),
            webhook_configuration: self.webhook_configuration.clone(),
            cluster_domain: cluster_domain.to_owned(),
            lifetimes: Lifetimes {
                ca: time::Duration::days(i64::from(self.ca_validity_days)),
                leaf: time::Duration::days(i64::from(self.cert_validity_days)),
            },
        }))
    }
}

/// Where a pod finds its own namespace.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Which manifests the offline commands read, like kubectl's `-f`, `-R` and `-n`.
#[derive(Clone, Debug, Args)]
pub struct InputArgs {
    /// A YAML or JSON file, a directory of them, or `-` for stdin; repeatable.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Also read the subdirectories of directories given with -f.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Namespace of objects that name none; else the kubeconfig context's namespace.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Args)]
pub struct InjectArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub rules: RuleArgs,
}

#[derive(Clone, Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub rules: RuleArgs,
}

#[derive(Clone, Debug, Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(long, default_value = "raft-injector")]
    pub service: String,
    /// Namespace of the webhook's Service.
    #[arg(long, default_value = "raft-injector")]
    pub namespace: String,
    /// Directory to write ca.crt, ca.key, tls.crt and tls.key into. A CA already there
    /// (ca.crt and ca.key) signs the new serving certificate.
    #[arg(long)]
    pub out: PathBuf,
    /// Make a new CA even when --out holds one (the webhooks' caBundle must then change).
    #[arg(long)]
    pub new_ca: bool,
    /// An IP address to add as a SAN (repeatable), e.g. 127.0.0.1 for a local webhook.
    #[arg(long = "ip")]
    pub ips: Vec<IpAddr>,
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Validity of the serving certificate in days (the CA gets three times as long).
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

impl CertsArgs {
    pub fn request(&self) -> CertRequest {
        CertRequest {
            service: self.service.clone(),
            namespace: self.namespace.clone(),
            cluster_domain: self.cluster_domain.clone(),
            ips: self.ips.clone(),
            days: self.days,
        }
    }
}

#[derive(Clone, Debug, Args)]
pub struct CheckArgs {
    /// The kubeconfig to use (else $KUBECONFIG, ~/.kube/config, or the pod's service account).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,
    /// Check only the StatefulSets of this namespace (and run the dry runs there).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value_t = StatusFormat::Text)]
    pub output: StatusFormat,
    /// Budget of each call to the cluster, in seconds.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout_seconds: u64,
    /// Warn when the serving certificate expires within this many days.
    #[arg(long, default_value_t = 30)]
    pub expiry_warning_days: u64,
}

impl CheckArgs {
    pub fn options(&self) -> crate::check::Options {
        crate::check::Options {
            namespace: self.namespace.clone(),
            timeout: Duration::from_secs(self.timeout_seconds),
            expiry_warning: Duration::from_secs(self.expiry_warning_days * 86_400),
        }
    }
}

#[derive(Clone, Debug, Args)]
pub struct InstallArgs {
    /// Directory to copy the binary into (as `raft-injector`).
    #[arg(long)]
    pub to: PathBuf,
}
