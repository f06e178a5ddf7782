//! `serve --cert-secret NAME`: the webhook keeps its own CA and serving certificate, as
//! Kyverno and istiod do, so the default install needs no certificate tooling and renders
//! the same every time (nothing is generated at render time).
//!
//! Every replica runs the same pass, on start and then every `--cert-reload-seconds`:
//! read the Secret (in the webhook's namespace), let [`crate::certs::rotation::plan`] say
//! what it should hold, write that with the `resourceVersion` read (a replica that loses the
//! race reads again and agrees), make the `caBundle` of every webhook in the two webhook
//! configurations that calls its Service the current CA plus the previous one (a webhook
//! that calls a URL or another Service is left alone), and serve the Secret's pair from
//! memory. Nothing mounts the Secret, so a new pair is served within one pass, not after
//! kubelet's sync. The Secret is owned by the webhook's Service, so uninstalling removes it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;
use time::OffsetDateTime;

use super::health::Readiness;
use super::metrics::Metrics;
use super::tls::{CertPaths, CertReloader, TlsError};
use crate::certs::rotation::{bundle_holds, plan, Lifetimes, Stored, PREVIOUS_CA_FILE};
use crate::certs::{CertRequest, CertsError, CA_CERT_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE};

/// What `serve --cert-secret` manages.
#[derive(Clone, Debug)]
pub struct OwnCertsConfig {
    pub namespace: String,
    pub secret: String,
    /// The webhook's Service: its names go into the certificate, and it owns the Secret.
    pub service: String,
    /// The MutatingWebhookConfiguration and the ValidatingWebhookConfiguration (one name).
    pub webhook_configuration: String,
    pub cluster_domain: String,
    pub lifetimes: Lifetimes,
}

#[derive(Debug, thiserror::Error)]
pub enum OwnCertsError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Certs(#[from] CertsError),
    #[error("the Secret's pair does not serve: {0}")]
    Tls(#[from] TlsError),
    #[error("the Secret kept changing under this replica; trying again next pass")]
    Contended,
}

/// The two kinds of webhook configuration, as far as the caBundle goes.
trait Webhooks: Clone + DeserializeOwned + Serialize + std::fmt::Debug {
    fn client_configs(&mut self) -> Vec<&mut WebhookClientConfig>;
}

impl Webhooks for MutatingWebhookConfiguration {
    fn client_configs(&mut self) -> Vec<&mut WebhookClientConfig> {
        let webhooks = self.webhooks.iter_mut().flatten();
        webhooks.map(|w| &mut w.client_config).collect()
    }
}

impl Webhooks for ValidatingWebhookConfiguration {
    fn client_configs(&mut self) -> Vec<&mut WebhookClientConfig> {
        let webhooks = self.webhooks.iter_mut().flatten();
        webhooks.map(|w| &mut w.client_config).collect()
    }
}

/// One replica's view of the Secret and the webhook configurations.
pub struct OwnCerts {
    config: OwnCertsConfig,
    secrets: Api<Secret>,
    services: Api<Service>,
    mutating: Api<MutatingWebhookConfiguration>,
    validating: Api<ValidatingWebhookConfiguration>,
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

fn stored_of(secret: &Secret) -> Stored {
    Stored {
        ca_cert: text(secret, CA_CERT_FILE),
        ca_key: text(secret, CA_KEY_FILE),
        previous_ca: text(secret, PREVIOUS_CA_FILE),
        tls_cert: text(secret, CERT_FILE),
        tls_key: text(secret, KEY_FILE),
    }
}

fn data_of(stored: &Stored) -> std::collections::BTreeMap<String, ByteString> {
    [
        (CA_CERT_FILE, &stored.ca_cert),
        (CA_KEY_FILE, &stored.ca_key),
        (PREVIOUS_CA_FILE, &stored.previous_ca),
        (CERT_FILE, &stored.tls_cert),
        (KEY_FILE, &stored.tls_key),
    ]
    .into_iter()
    .filter_map(|(key, value)| {
        let value = value.as_ref()?;
        Some((key.to_owned(), ByteString(value.clone().into_bytes())))
    })
    .collect()
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Whether a webhook calls this webhook's Service: only those get its caBundle. A webhook
/// that calls a URL or another Service is someone else's (another installation, a test's).
fn calls(config: &WebhookClientConfig, namespace: &str, service: &str) -> bool {
    config
        .service
        .as_ref()
        .is_some_and(|s| s.namespace == namespace && s.name == service)
}

/// Sets every client config's caBundle to `bundle`; whether anything changed.
fn set_bundles<'a>(
    configs: impl Iterator<Item = &'a mut WebhookClientConfig>,
    bundle: &str,
) -> bool {
    let mut changed = false;
    for config in configs {
        if config.ca_bundle.as_ref().map(|b| b.0.as_slice()) != Some(bundle.as_bytes()) {
            config.ca_bundle = Some(ByteString(bundle.as_bytes().to_vec()));
            changed = true;
        }
    }
    changed
}

/// Whether every client config's caBundle holds `ca`.
fn trusts<'a>(mut configs: impl Iterator<Item = &'a WebhookClientConfig>, ca: &str) -> bool {
    configs.all(|config| {
        config
            .ca_bundle
            .as_ref()
            .is_some_and(|bundle| bundle_holds(&bundle.0, ca))
    })
}

impl OwnCerts {
    pub fn new(client: Client, config: OwnCertsConfig) -> OwnCerts {
        OwnCerts {
            secrets: Api::namespaced(client.clone(), &config.namespace),
            services: Api::namespaced(client.clone(), &config.namespace),
            mutating: Api::all(client.clone()),
            validating: Api::all(client),
            config,
        }
    }

    fn request(&self) -> CertRequest {
        CertRequest {
            service: self.config.service.clone(),
            namespace: self.config.namespace.clone(),
            cluster_domain: self.config.cluster_domain.clone(),
            ips: Vec::new(),
            days: 0,
        }
    }

    /// Where the pair comes from, for error messages.
    fn label(&self) -> CertPaths {
        let at = format!("Secret {}/{}", self.config.namespace, self.config.secret);
        CertPaths {
            cert: format!("{at}: {CERT_FILE}").into(),
            key: format!("{at}: {KEY_FILE}").into(),
        }
    }

    /// Writes `object` back with `bundle` in the webhooks that call this Service, when that
    /// changes anything (a missing configuration is reported and skipped); whether it did.
    async fn put_bundle<K: Webhooks>(
        &self,
        api: &Api<K>,
        object: Option<K>,
        bundle: &str,
    ) -> Result<bool, kube::Error> {
        let name = &self.config.webhook_configuration;
        let Some(mut object) = object else {
            tracing::warn!(
                configuration = %name,
                "webhook configuration not found; its caBundle is set once it exists"
            );
            return Ok(false);
        };
        if !set_bundles(self.ours(&mut object), bundle) {
            return Ok(false);
        }
        // `replace` carries the resourceVersion read: a concurrent change is a 409, not lost.
        api.replace(name, &PostParams::default(), &object).await?;
        Ok(true)
    }

    /// The client configs of `object`'s webhooks that call this webhook's Service.
    fn ours<'a, K: Webhooks>(
        &self,
        object: &'a mut K,
    ) -> impl Iterator<Item = &'a mut WebhookClientConfig> {
        let (namespace, service) = (self.config.namespace.clone(), self.config.service.clone());
        object
            .client_configs()
            .into_iter()
            .filter(move |c| calls(c, &namespace, &service))
    }

    async fn owner(&self) -> Option<OwnerReference> {
        match self.services.get_opt(&self.config.service).await {
            Ok(Some(service)) => Some(OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name: self.config.service.clone(),
                uid: service.metadata.uid?,
                ..OwnerReference::default()
            }),
            Ok(None) => {
                tracing::warn!(service = %self.config.service, "the webhook's Service is missing; the certificate Secret gets no owner");
                None
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the webhook's Service; the certificate Secret gets no owner");
                None
            }
        }
    }

    /// Writes `stored` as the Secret: a create when `existing` is None, else a replace of it.
    async fn write(&self, existing: Option<Secret>, stored: &Stored) -> Result<(), kube::Error> {
        let data = Some(data_of(stored));
        match existing {
            Some(mut secret) => {
                secret.data = data;
                secret.string_data = None;
                self.secrets
                    .replace(&self.config.secret, &PostParams::default(), &secret)
                    .await?;
            }
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(self.config.secret.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        labels: Some(
                            [(
                                "app.kubernetes.io/managed-by".to_owned(),
                                "raft-injector".to_owned(),
                            )]
                            .into(),
                        ),
                        owner_references: self.owner().await.map(|o| vec![o]),
                        ..ObjectMeta::default()
                    },
                    type_: Some("kubernetes.io/tls".into()),
                    data,
                    ..Secret::default()
                };
                self.secrets.create(&PostParams::default(), &secret).await?;
            }
        }
        Ok(())
    }

    /// One pass: the Secret settled, the caBundles set; returns what the Secret holds.
    pub async fn pass(&self) -> Result<Stored, OwnCertsError> {
        let request = self.request();
        for _ in 0..6 {
            let secret = self.secrets.get_opt(&self.config.secret).await?;
            let stored = secret.as_ref().map(stored_of).unwrap_or_default();
            // Both configurations are read once per round: for the plan (do all our
            // webhooks trust the current CA? a missing configuration does not) and for the
            // caBundle written below.
            let name = &self.config.webhook_configuration;
            let mut mutating = self.mutating.get_opt(name).await?;
            let mut validating = self.validating.get_opt(name).await?;
            let trusted = match (&stored.ca_cert, &mut mutating, &mut validating) {
                (Some(ca), Some(m), Some(v)) => {
                    let m = self.ours(m).map(|c| &*c);
                    trusts(m, ca) && trusts(self.ours(v).map(|c| &*c), ca)
                }
                _ => false,
            };
            let now = OffsetDateTime::now_utc();
            if let Some(next) = plan(&stored, &request, self.config.lifetimes, now, trusted)? {
                match self.write(secret, &next.stored).await {
                    Ok(()) => {
                        for why in &next.why {
                            tracing::info!(secret = %self.config.secret, change = %why, "webhook certificate Secret updated");
                        }
                        continue;
                    }
                    // Another replica wrote first: read what it wrote.
                    Err(error) if is_conflict(&error) => continue,
                    Err(error) => return Err(error.into()),
                }
            }
            let bundle = stored.ca_bundle();
            let patched = async {
                let m = self.put_bundle(&self.mutating, mutating, &bundle).await?;
                let v = self
                    .put_bundle(&self.validating, validating, &bundle)
                    .await?;
                Ok::<_, kube::Error>(m || v)
            }
            .await;
            match patched {
                // The bundles changed: the plan may now take its next step (a new leaf).
                Ok(true) => {
                    tracing::info!(configuration = %self.config.webhook_configuration, "caBundle set to the current (and previous) CA");
                    continue;
                }
                Ok(false) => return Ok(stored),
                Err(error) if is_conflict(&error) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(OwnCertsError::Contended)
    }

    /// The first pair to serve: passes until one works, every 2 s, saying why not.
    pub async fn first(&self) -> Arc<CertReloader> {
        loop {
            let pair = match self.pass().await {
                Ok(stored) => CertReloader::from_pem(
                    stored.tls_cert.unwrap_or_default().as_bytes(),
                    stored.tls_key.unwrap_or_default().as_bytes(),
                    self.label(),
                )
                .map_err(OwnCertsError::from),
                Err(error) => Err(error),
            };
            match pair {
                Ok(reloader) => return reloader,
                Err(error) => {
                    tracing::error!(%error, secret = %self.config.secret, "no serving certificate yet (is the webhook allowed to get/create/update its Secret and update its webhook configurations?); retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }

    /// Passes every `every`, serving each new pair; until the task is dropped.
    pub async fn keep(
        self,
        reloader: Arc<CertReloader>,
        every: Duration,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
    ) {
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let stored = match self.pass().await {
                Ok(stored) => stored,
                Err(error) => {
                    tracing::warn!(%error, "webhook certificate pass failed; serving the current pair");
                    continue;
                }
            };
            let source = (
                stored.tls_cert.unwrap_or_default().into_bytes(),
                stored.tls_key.unwrap_or_default().into_bytes(),
            );
            match reloader.replace(source) {
                Ok(false) => {}
                Ok(true) => {
                    metrics.cert_reload(true);
                    if let Some(der) = reloader.current_certificate() {
                        metrics.serving_certificate(&der);
                    }
                    tracing::info!(secret = %self.config.secret, "serving the Secret's new certificate");
                }
                Err(error) => {
                    metrics.cert_reload(false);
                    tracing::error!(%error, "the Secret's new pair is not usable; still serving the previous one");
                }
            }
            readiness.certs_loaded.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::admissionregistration::v1::ServiceReference;

    fn service(namespace: &str, name: &str) -> WebhookClientConfig {
        WebhookClientConfig {
            service: Some(ServiceReference {
                namespace: namespace.into(),
                name: name.into(),
                ..ServiceReference::default()
            }),
            ..WebhookClientConfig::default()
        }
    }

    #[test]
    fn only_webhooks_that_call_its_service_get_its_ca_bundle() {
        let mut configs = [
            service("raft-injector", "raft-injector"),
            WebhookClientConfig {
                url: Some("https://127.0.0.1:8443/mutate".into()),
                ca_bundle: Some(ByteString(b"a test's CA".to_vec())),
                ..WebhookClientConfig::default()
            },
            service("other", "raft-injector"),
        ];
        let ours = configs
            .iter_mut()
            .filter(|c| calls(c, "raft-injector", "raft-injector"));
        assert!(set_bundles(ours, "PEM"));
        assert_eq!(configs[0].ca_bundle, Some(ByteString(b"PEM".to_vec())));
        assert_eq!(
            configs[1].ca_bundle,
            Some(ByteString(b"a test's CA".to_vec()))
        );
        assert_eq!(configs[2].ca_bundle, None);
        let again = configs
            .iter_mut()
            .filter(|c| calls(c, "raft-injector", "raft-injector"));
        assert!(!set_bundles(again, "PEM"), "nothing left to change");
    }
}
