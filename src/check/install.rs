//! The installation checks: both webhook configurations, where they point, the Service's
//! ready endpoints, the version each webhook pod runs, and the certificate each pod serves
//! against every caBundle, with its expiry.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client};
use rustls::pki_types::UnixTime;

use super::certificate::{self, Served};
use super::{bounded, Check, Options, Report, INSTALLATION};
use crate::policy::{MissingService, Settings};

pub const INJECT_WEBHOOK: &str = "inject.raft-injector.io";
pub const VALIDATE_WEBHOOK: &str = "validate.raft-injector.io";
pub const SCALE_WEBHOOK: &str = "scale.raft-injector.io";

const INSTALL_HINT: &str = "install it: helm install raft-injector charts/raft-injector -n raft-injector \
                            --create-namespace (or kubectl apply -k manifests, then certs/install.sh)";

/// One webhook of a configuration, as registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// e.g. `MutatingWebhookConfiguration raft-injector`.
    pub configuration: String,
    pub webhook: String,
    pub target: Target,
    pub path: Option<String>,
    pub ca_bundle: Vec<u8>,
    pub failure_policy: String,
}

/// Where kube-apiserver sends a webhook's requests.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Service {
        namespace: String,
        name: String,
        port: i32,
    },
    Url(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Service {
                namespace,
                name,
                port,
            } => write!(f, "Service {namespace}/{name}:{port}"),
            Target::Url(url) => write!(f, "{url}"),
        }
    }
}

impl Registered {
    fn new(
        configuration: String,
        webhook: &str,
        client: &WebhookClientConfig,
        policy: Option<&String>,
    ) -> Registered {
        let (target, path) = match (&client.service, &client.url) {
            (Some(s), _) => (
                Target::Service {
                    namespace: s.namespace.clone(),
                    name: s.name.clone(),
                    port: s.port.unwrap_or(443),
                },
                s.path.clone(),
            ),
            (None, url) => (Target::Url(url.clone().unwrap_or_default()), None),
        };
        Registered {
            configuration,
            webhook: webhook.to_owned(),
            target,
            path,
            ca_bundle: client
                .ca_bundle
                .as_ref()
                .map(|b| b.0.clone())
                .unwrap_or_default(),
            failure_policy: policy.cloned().unwrap_or_else(|| "Fail".to_owned()),
        }
    }
}

/// A ready pod behind the webhook Service.
#[derive(Clone, Debug)]
pub struct WebhookPod {
    pub name: String,
    /// The HTTPS container port the Service sends to.
    pub port: u16,
    pub pod: Option<Pod>,
}

/// What the later checks need to know about the installation.
#[derive(Clone, Debug)]
pub struct Installation {
    /// The webhook's own namespace (never a dry-run target).
    pub namespace: Option<String>,
    /// The version the webhook pods run, when they agree and it could be read.
    pub version: Option<String>,
    /// The rule settings the webhook runs with, read from its pods' env.
    pub settings: Settings,
}

/// Runs the installation checks. `None` when no webhook configuration was found: nothing
/// else can be judged against an installation that is not there.
pub async fn check(
    client: &Client,
    options: &Options,
    report: &mut Report,
) -> Option<Installation> {
    let registered = registered(client, options, report).await?;
    let mut installation = Installation {
        namespace: None,
        version: None,
        settings: Settings::default(),
    };
    let targets: BTreeSet<&Target> = registered.iter().map(|r| &r.target).collect();
    let [target] = targets.into_iter().collect::<Vec<_>>()[..] else {
        let listed: Vec<String> = registered
            .iter()
            .map(|r| format!("{} → {}", r.webhook, r.target))
            .collect();
        report.push(
            Check::fail(INSTALLATION, "the webhooks point at one webhook Service", listed.join("\n"))
                .hint("two installations are registered at once; remove the stale one (helm list -A, kubectl get mutatingwebhookconfigurations)"),
        );
        return Some(installation);
    };
    check_ca_bundles_present(&registered, report);
    let Target::Service {
        namespace,
        name,
        port,
    } = target.clone()
    else {
        report.push(Check::skip(
            INSTALLATION,
            "webhook Service endpoints",
            format!("the webhooks are registered by URL ({target}); the Service, endpoint and per-pod certificate checks are for an in-cluster install"),
        ));
        return Some(installation);
    };
    installation.namespace = Some(namespace.clone());
    report.push(super::rights::check(client, options, &namespace).await);
    let pods = ready_pods(client, options, &namespace, &name, port, report).await;
    if pods.is_empty() {
        return Some(installation);
    }
    if let Some(pod) = pods.iter().find_map(|p| p.pod.as_ref()) {
        installation.settings = settings_of(pod);
    }
    installation.version = versions(client, options, &namespace, &pods, report).await;
    certificates(
        client,
        options,
        &namespace,
        &name,
        &pods,
        &registered,
        report,
    )
    .await;
    Some(installation)
}

/// Both configurations, found by their webhooks' names (a chart may name the objects
/// after its release).
async fn registered(
    client: &Client,
    options: &Options,
    report: &mut Report,
) -> Option<Vec<Registered>> {
    let mutating = bounded(
        options.timeout,
        Api::<MutatingWebhookConfiguration>::all(client.clone()).list(&ListParams::default()),
    )
    .await;
    let validating = bounded(
        options.timeout,
        Api::<ValidatingWebhookConfiguration>::all(client.clone()).list(&ListParams::default()),
    )
    .await;
    let (mutating, validating) = match (mutating, validating) {
        (Ok(m), Ok(v)) => (m, v),
        (Err(e), _) | (_, Err(e)) => {
            report.push(
                Check::fail(INSTALLATION, "can read webhook configurations", e)
                    .hint("check the kubeconfig and that you may list mutating/validatingwebhookconfigurations"),
            );
            return None;
        }
    };
    let mut found = Vec::new();
    for config in &mutating.items {
        let name = format!(
            "MutatingWebhookConfiguration {}",
            config.metadata.name.as_deref().unwrap_or_default()
        );
        for webhook in config.webhooks.iter().flatten() {
            if webhook.name == INJECT_WEBHOOK {
                found.push(Registered::new(
                    name.clone(),
                    &webhook.name,
                    &webhook.client_config,
                    webhook.failure_policy.as_ref(),
                ));
            }
        }
    }
    for config in &validating.items {
        let name = format!(
            "ValidatingWebhookConfiguration {}",
            config.metadata.name.as_deref().unwrap_or_default()
        );
        for webhook in config.webhooks.iter().flatten() {
            if webhook.name == VALIDATE_WEBHOOK || webhook.name == SCALE_WEBHOOK {
                found.push(Registered::new(
                    name.clone(),
                    &webhook.name,
                    &webhook.client_config,
                    webhook.failure_policy.as_ref(),
                ));
            }
        }
    }
    let missing: Vec<&str> = [INJECT_WEBHOOK, VALIDATE_WEBHOOK, SCALE_WEBHOOK]
        .into_iter()
        .filter(|w| !found.iter().any(|r| r.webhook == *w))
        .collect();
    let what = |w: &str| {
        match w {
        INJECT_WEBHOOK => "a MutatingWebhookConfiguration with webhook inject.raft-injector.io (injection)",
        VALIDATE_WEBHOOK => "a ValidatingWebhookConfiguration with webhook validate.raft-injector.io (the Raft rules)",
        _ => "a ValidatingWebhookConfiguration with webhook scale.raft-injector.io (kubectl scale)",
    }
    };
    if found.is_empty() {
        report.push(
            Check::fail(
                INSTALLATION,
                "webhook configurations are registered",
                "no webhook configuration of raft-injector was found",
            )
            .hint(INSTALL_HINT),
        );
        return None;
    }
    if !missing.is_empty() {
        let listed: Vec<&str> = missing.iter().map(|w| what(w)).collect();
        report.push(
            Check::fail(
                INSTALLATION,
                "webhook configurations are registered",
                format!("missing: {}", listed.join("; ")),
            )
            .hint(format!(
                "reinstall so that all three webhooks are registered; {INSTALL_HINT}"
            )),
        );
    } else {
        let shown: Vec<String> = found
            .iter()
            .map(|r| {
                format!(
                    "{}: {} → {}{}, failurePolicy {}",
                    r.configuration,
                    r.webhook,
                    r.target,
                    r.path.as_deref().unwrap_or(""),
                    r.failure_policy
                )
            })
            .collect();
        report.push(
            Check::pass(INSTALLATION, "webhook configurations are registered")
                .detail(shown.join("\n")),
        );
    }
    let wrong_paths: Vec<String> = found
        .iter()
        .filter(|r| matches!(r.target, Target::Service { .. }))
        .filter_map(|r| {
            let expected = if r.webhook == INJECT_WEBHOOK {
                "/mutate"
            } else {
                "/validate"
            };
            (r.path.as_deref() != Some(expected)).then(|| {
                format!(
                    "{} sends to path {:?}, not {expected}",
                    r.webhook,
                    r.path.as_deref().unwrap_or("")
                )
            })
        })
        .collect();
    if !wrong_paths.is_empty() {
        report.push(
            Check::fail(INSTALLATION, "webhooks call the right paths", wrong_paths.join("\n"))
                .hint("inject.raft-injector.io must call /mutate, validate and scale /validate; reinstall from the chart or manifests"),
        );
    }
    Some(found)
}

fn check_ca_bundles_present(registered: &[Registered], report: &mut Report) {
    let empty: Vec<String> = registered
        .iter()
        .filter(|r| r.ca_bundle.is_empty())
        .map(|r| format!("{} ({})", r.webhook, r.configuration))
        .collect();
    if !empty.is_empty() {
        report.push(
            Check::fail(INSTALLATION, "caBundles are set", format!("empty caBundle: {}", empty.join(", ")))
                .hint("kube-apiserver cannot trust the webhook: run certs/install.sh, or check that cert-manager's CA injector runs (cert-manager.io/inject-ca-from)"),
        );
    }
}

/// The ready pods behind the Service, with the container port its webhook port sends to.
async fn ready_pods(
    client: &Client,
    options: &Options,
    namespace: &str,
    name: &str,
    port: i32,
    report: &mut Report,
) -> Vec<WebhookPod> {
    const CHECK: &str = "webhook Service has ready endpoints";
    let service = match bounded(
        options.timeout,
        Api::<Service>::namespaced(client.clone(), namespace).get_opt(name),
    )
    .await
    {
        Ok(Some(service)) => service,
        Ok(None) => {
            report.push(
                Check::fail(
                    INSTALLATION,
                    CHECK,
                    format!("the webhooks call Service {namespace}/{name}, which does not exist"),
                )
                .hint(INSTALL_HINT),
            );
            return Vec::new();
        }
        Err(e) => {
            report.push(Check::fail(
                INSTALLATION,
                CHECK,
                format!("cannot read Service {namespace}/{name}: {e}"),
            ));
            return Vec::new();
        }
    };
    let port_name = service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .find(|p| p.port == port)
        .map(|p| p.name.clone().unwrap_or_default());
    let Some(port_name) = port_name else {
        report.push(
            Check::fail(INSTALLATION, CHECK, format!("Service {namespace}/{name} has no port {port}, which the webhooks call"))
                .hint("the Service and the webhook configurations come from different installs; reinstall"),
        );
        return Vec::new();
    };
    let slices = bounded(
        options.timeout,
        Api::<EndpointSlice>::namespaced(client.clone(), namespace)
            .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}"))),
    )
    .await;
    let slices = match slices {
        Ok(slices) => slices.items,
        Err(e) => {
            report.push(Check::fail(
                INSTALLATION,
                CHECK,
                format!("cannot list the EndpointSlices of {namespace}/{name}: {e}"),
            ));
            return Vec::new();
        }
    };
    let mut ready = BTreeMap::new();
    let mut not_ready = BTreeSet::new();
    for slice in &slices {
        let target = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.clone().unwrap_or_default() == port_name)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok());
        for endpoint in &slice.endpoints {
            let Some(pod) = endpoint
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.clone())
            else {
                continue;
            };
            let is_ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(false);
            match (is_ready, target) {
                (true, Some(port)) => {
                    ready.insert(pod, port);
                }
                _ => {
                    not_ready.insert(pod);
                }
            }
        }
    }
    if ready.is_empty() {
        let seen = if not_ready.is_empty() {
            "no pod".to_owned()
        } else {
            format!(
                "pods not ready: {}",
                not_ready.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        };
        report.push(
            Check::fail(INSTALLATION, CHECK, format!("Service {namespace}/{name} has no ready endpoint ({seen}); every admission in opted-in namespaces fails meanwhile"))
                .hint(format!("kubectl -n {namespace} get pods,events; kubectl -n {namespace} logs deploy/{name}")),
        );
        return Vec::new();
    }
    let names: Vec<&str> = ready.keys().map(String::as_str).collect();
    let mut line = if not_ready.is_empty() {
        Check::pass(INSTALLATION, CHECK)
    } else {
        Check::warn(
            INSTALLATION,
            CHECK,
            format!(
                "not ready: {}",
                not_ready.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
        .hint(format!(
            "a rollout may be in progress; else kubectl -n {namespace} describe pods"
        ))
    };
    line.name = format!("{CHECK} ({} ready: {})", ready.len(), names.join(", "));
    if ready.len() == 1 && not_ready.is_empty() {
        line = Check::warn(INSTALLATION, line.name, "one ready replica: a node drain or a crash stops all admission in opted-in namespaces until it is back")
            .hint("run 2 replicas (replicaCount=2, the default)");
    }
    report.push(line);
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let mut found = Vec::new();
    for (name, port) in ready {
        let pod = bounded(options.timeout, pods.get_opt(&name))
            .await
            .ok()
            .flatten();
        found.push(WebhookPod { name, port, pod });
    }
    found
}

/// The rule settings a webhook pod runs with: the env vars its flags are read from.
pub fn settings_of(pod: &Pod) -> Settings {
    let env: BTreeMap<&str, &str> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter(|c| c.args.iter().flatten().any(|a| a == "serve"))
        .flat_map(|c| c.env.iter().flatten())
        .filter_map(|e| Some((e.name.as_str(), e.value.as_deref()?)))
        .collect();
    let mut settings = Settings::default();
    if let Some(domain) = env.get("RAFT_INJECTOR_CLUSTER_DOMAIN") {
        settings.cluster_domain = domain.trim_matches('.').to_owned();
    }
    if let Some(image) = env.get("RAFT_INJECTOR_HELPER_IMAGE") {
        settings.helper_image = (*image).to_owned();
    }
    if env.get("RAFT_INJECTOR_MISSING_SERVICE") == Some(&"warn") {
        settings.missing_service = MissingService::Warn;
    }
    if let Some(max) = env
        .get("RAFT_INJECTOR_MAX_REPLICAS")
        .and_then(|m| m.parse().ok())
    {
        settings.max_replicas = max;
    }
    settings
}

/// The version in a `/metrics` text, from `raft_injector_build_info{version="…"}`.
pub fn version_in_metrics(metrics: &str) -> Option<String> {
    let line = metrics
        .lines()
        .find(|l| l.starts_with("raft_injector_build_info{"))?;
    let rest = line.split_once("version=\"")?.1;
    Some(rest.split_once('"')?.0.to_owned())
}

async fn versions(
    client: &Client,
    options: &Options,
    namespace: &str,
    pods: &[WebhookPod],
    report: &mut Report,
) -> Option<String> {
    const CHECK: &str = "webhook pods run one raft-injector version";
    let mut seen: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut unread = Vec::new();
    for pod in pods {
        let port = pod
            .pod
            .as_ref()
            .and_then(|p| p.spec.as_ref())
            .into_iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some("metrics"))
            .map_or(9090, |p| p.container_port);
        let path = format!(
            "/api/v1/namespaces/{namespace}/pods/{}:{port}/proxy/metrics",
            pod.name
        );
        let request = match http::Request::get(&path).body(Vec::new()) {
            Ok(request) => request,
            Err(e) => {
                unread.push(format!("{}: {e}", pod.name));
                continue;
            }
        };
        match bounded(options.timeout, client.request_text(request)).await {
            Ok(text) => match version_in_metrics(&text) {
                Some(version) => seen.entry(version).or_default().push(&pod.name),
                None => unread.push(format!(
                    "{}: its /metrics has no raft_injector_build_info (a version before 0.1.0?)",
                    pod.name
                )),
            },
            Err(e) => unread.push(format!("{}: {e}", pod.name)),
        }
    }
    match (seen.len(), unread.is_empty()) {
        (1, true) => {
            let version = seen.keys().next().cloned();
            report.push(Check::pass(
                INSTALLATION,
                format!("{CHECK} ({})", version.as_deref().unwrap_or_default()),
            ));
            version
        }
        (0, _) => {
            report.push(
                Check::warn(INSTALLATION, CHECK, format!("could not read a version: {}", unread.join("; ")))
                    .hint("the injection-version checks below are skipped; reading /metrics needs pods/proxy get"),
            );
            None
        }
        _ => {
            let mut lines: Vec<String> = seen
                .iter()
                .map(|(v, p)| format!("{v}: {}", p.join(", ")))
                .collect();
            lines.extend(unread);
            report.push(
                Check::warn(INSTALLATION, CHECK, lines.join("\n"))
                    .hint("a rollout in progress shows two versions for a minute; if it lasts, kubectl -n raft-injector rollout status deploy/raft-injector"),
            );
            None
        }
    }
}

async fn certificates(
    client: &Client,
    options: &Options,
    namespace: &str,
    service: &str,
    pods: &[WebhookPod],
    registered: &[Registered],
    report: &mut Report,
) {
    let server_name = format!("{service}.{namespace}.svc");
    let trust =
        format!("every webhook pod serves a certificate the caBundles trust for {server_name}");
    let mut served: Vec<(&str, Served)> = Vec::new();
    let mut problems = Vec::new();
    for pod in pods {
        let fetched = bounded(options.timeout, async {
            certificate::served_by_pod(client, namespace, &pod.name, pod.port, &server_name).await
        })
        .await;
        match fetched {
            Ok(cert) => served.push((&pod.name, cert)),
            Err(e) => problems.push(format!("{}: {e}", pod.name)),
        }
    }
    // One caBundle per distinct bundle, named by the webhooks that carry it.
    let mut bundles: BTreeMap<&[u8], Vec<&str>> = BTreeMap::new();
    for r in registered.iter().filter(|r| !r.ca_bundle.is_empty()) {
        bundles.entry(&r.ca_bundle).or_default().push(&r.webhook);
    }
    let now = UnixTime::now();
    for (pod, cert) in &served {
        for (bundle, webhooks) in &bundles {
            if let Err(why) = certificate::verify(cert, bundle, &server_name, now) {
                problems.push(format!(
                    "{pod} serves {} that the caBundle of {} does not trust: {why}",
                    cert.subject(),
                    webhooks.join(", ")
                ));
            }
        }
    }
    if problems.is_empty() {
        report.push(Check::pass(
            INSTALLATION,
            format!("{trust} ({} pods)", served.len()),
        ));
    } else {
        report.push(
            Check::fail(INSTALLATION, trust, problems.join("\n")).hint(
                "the caBundle and the serving certificate are out of step: the default install (serve --cert-secret) puts its \
                 caBundle back within --cert-reload-seconds, else its log says why (often RBAC); manifests/external: rerun \
                 certs/install.sh; cert-manager: check its Certificate and CA injector; mounted Secrets reload within a minute",
            ),
        );
    }
    let earliest = served
        .iter()
        .filter_map(|(pod, c)| Some((c.not_after()?, *pod)))
        .min();
    if let Some((not_after, pod)) = earliest {
        report.push(expiry(
            not_after,
            pod,
            time::OffsetDateTime::now_utc().unix_timestamp(),
            options.expiry_warning,
        ));
    }
}

/// The expiry check: fail when expired, warn inside the warning window.
pub fn expiry(not_after: i64, pod: &str, now: i64, warn_within: std::time::Duration) -> Check {
    const CHECK: &str = "serving certificate is not about to expire";
    let date = time::OffsetDateTime::from_unix_timestamp(not_after)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| not_after.to_string());
    let left = not_after - now;
    let days = left / 86_400;
    let rotate = "rotate it: certs/install.sh (kustomize), helm upgrade --set certs.regenerate=true (generated), \
                  or check the cert-manager Certificate's renewal";
    if left <= 0 {
        Check::fail(INSTALLATION, CHECK, format!("the certificate {pod} serves expired at {date}; kube-apiserver refuses it, so every admission fails"))
            .hint(rotate)
    } else if left < warn_within.as_secs() as i64 {
        Check::warn(
            INSTALLATION,
            CHECK,
            format!("the certificate {pod} serves expires in {days} days ({date})"),
        )
        .hint(rotate)
    } else {
        Check::pass(
            INSTALLATION,
            format!("{CHECK} (valid {days} more days, until {date})"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Outcome;

    #[test]
    fn the_version_is_read_from_build_info() {
        let metrics = "# HELP raft_injector_build_info The running version\n# TYPE raft_injector_build_info gauge\nraft_injector_build_info{version=\"0.1.0\"} 1\n";
        assert_eq!(version_in_metrics(metrics).as_deref(), Some("0.1.0"));
        assert_eq!(
            version_in_metrics("raft_injector_https_connections 3\n"),
            None
        );
    }

    #[test]
    fn the_metrics_text_the_server_renders_carries_its_version() {
        let text = crate::server::metrics::Metrics::default().render();
        assert_eq!(
            version_in_metrics(&text).as_deref(),
            Some(crate::VERSION),
            "{text}"
        );
    }

    #[test]
    fn expiry_fails_when_past_warns_inside_the_window_and_passes_otherwise() {
        let day = 86_400;
        let window = std::time::Duration::from_secs(30 * day as u64);
        let now = 1_800_000_000;
        let past = expiry(now - 1, "p", now, window);
        assert_eq!(past.outcome, Outcome::Fail);
        assert!(past.detail.unwrap().contains("expired"));
        let soon = expiry(now + 12 * day + 5, "p", now, window);
        assert_eq!(soon.outcome, Outcome::Warn);
        assert!(soon.detail.unwrap().contains("expires in 12 days"));
        let fine = expiry(now + 300 * day, "p", now, window);
        assert_eq!(fine.outcome, Outcome::Pass);
        assert!(fine.name.contains("valid 300 more days"), "{}", fine.name);
    }

    #[test]
    fn settings_come_from_the_serve_container_env() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "raft-injector-1"},
            "spec": {"containers": [{
                "name": "raft-injector", "args": ["serve"],
                "env": [
                    {"name": "RAFT_INJECTOR_CLUSTER_DOMAIN", "value": "corp.example."},
                    {"name": "RAFT_INJECTOR_MISSING_SERVICE", "value": "warn"},
                    {"name": "RAFT_INJECTOR_MAX_REPLICAS", "value": "9"},
                    {"name": "RAFT_INJECTOR_HELPER_IMAGE", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "y"}}}
                ]
            }]}
        }))
        .unwrap();
        let settings = settings_of(&pod);
        assert_eq!(settings.cluster_domain, "corp.example");
        assert_eq!(settings.missing_service, MissingService::Warn);
        assert_eq!(settings.max_replicas, 9);
        assert_eq!(
            settings.helper_image,
            crate::DEFAULT_HELPER_IMAGE,
            "valueFrom is not guessed at"
        );
    }
}
