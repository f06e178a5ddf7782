//! `raft-injector check`, like `linkerd check`: asks the cluster whether the installation
//! works (webhook configurations, the certificate the pods serve, endpoints, a dry-run
//! admission through kube-apiserver) and whether every opted-in StatefulSet is sound (the
//! rules as they hold now, the injection, the Raft member list against `spec.replicas`).
//! One line per check, a hint for each problem, `-o json`, exit code 1 on any failure.

pub mod certificate;
pub mod dry_run;
pub mod install;
pub mod membership;
pub mod report;
pub mod rights;
pub mod workloads;

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;

pub use report::{Check, Outcome, Report};

/// What `check` looks at, from its flags.
#[derive(Clone, Debug)]
pub struct Options {
    /// Only the StatefulSets of this namespace (all opted-in ones when unset); the dry runs
    /// also go here when it is opted in.
    pub namespace: Option<String>,
    /// Budget of each call to the cluster.
    pub timeout: Duration,
    /// Warn when the serving certificate expires sooner than this.
    pub expiry_warning: Duration,
}

/// The group every installation check belongs to.
pub const INSTALLATION: &str = "raft-injector installation";

/// Runs every check. Problems talking to the cluster become failed checks, never an error,
/// so the report always says how far it got.
pub async fn run(client: Client, options: &Options) -> Report {
    let mut report = Report::default();
    let installation = install::check(&client, options, &mut report).await;
    let opted_in = opted_in(&client, options).await;
    dry_run::check(
        &client,
        options,
        installation.as_ref(),
        &opted_in,
        &mut report,
    )
    .await;
    workloads::check(
        &client,
        options,
        installation.as_ref(),
        &opted_in,
        &mut report,
    )
    .await;
    report
}

/// The namespaces labelled for injection, listed once for the checks that need them.
async fn opted_in(client: &Client, options: &Options) -> Result<Vec<Namespace>, String> {
    let selector = format!("{}=enabled", crate::policy::names::INJECTION_LABEL);
    let list = bounded(
        options.timeout,
        kube::Api::<Namespace>::all(client.clone())
            .list(&kube::api::ListParams::default().labels(&selector)),
    )
    .await?;
    Ok(list.items)
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read the kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("no cluster to talk to: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("cannot make a Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client the way kubectl finds its cluster: `--kubeconfig`, else `$KUBECONFIG` or
/// `~/.kube/config`, else the pod's service account; `--context` picks a context.
pub async fn client(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<Client, ClientError> {
    use kube::config::{Config, KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let config = match (kubeconfig, context) {
        (Some(path), _) => {
            Config::from_custom_kubeconfig(Kubeconfig::read_from(path)?, &options).await?
        }
        (None, Some(_)) => Config::from_kubeconfig(&options).await?,
        (None, None) => Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// An error as a person should read it: for an API error, the API server's own message.
pub(crate) trait Said {
    fn said(self) -> String;
}

impl Said for kube::Error {
    fn said(self) -> String {
        match self {
            kube::Error::Api(response) => response.message,
            other => other.to_string(),
        }
    }
}

impl Said for String {
    fn said(self) -> String {
        self
    }
}

/// Bounds one call to the cluster; a timeout reads like any other error.
pub(crate) async fn bounded<T, E: Said>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(Said::said),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}
