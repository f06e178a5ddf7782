//! Informer caches of Services and Raft StatefulSets, kept up to date by watches, so
//! admission never makes an API call per request (SPEC §2 rule 2).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

use super::index::{ours_only, Compact, CompactService, CompactStatefulSet, Index, Writer};
use super::Lookup;

/// The caches; cheap to clone.
#[derive(Clone)]
pub struct Caches {
    services: Index<CompactService>,
    statefulsets: Index<CompactStatefulSet>,
    synced: Arc<AtomicBool>,
}

/// The metadata the rules read: identity, and raft-injector's own labels and annotations.
fn slim_meta(meta: &mut ObjectMeta) {
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        uid: meta.uid.take(),
        resource_version: meta.resource_version.take(),
        deletion_timestamp: meta.deletion_timestamp.take(),
        labels: ours_only(meta.labels.take()),
        annotations: ours_only(meta.annotations.take()),
        ..ObjectMeta::default()
    };
}

/// A Service as the rules read it (SPEC §2 rules 2–4, §4 peer port): the cache holds every
/// Service of the cluster, so everything else is dropped.
pub fn slim_service(service: &mut Service) {
    slim_meta(&mut service.metadata);
    service.status = None;
    service.spec = service.spec.take().map(|spec| ServiceSpec {
        cluster_ip: spec.cluster_ip,
        selector: spec.selector,
        publish_not_ready_addresses: spec.publish_not_ready_addresses,
        ports: spec.ports.map(|ports| {
            ports
                .into_iter()
                .map(|p| ServicePort {
                    name: p.name,
                    port: p.port,
                    target_port: p.target_port,
                    ..ServicePort::default()
                })
                .collect()
        }),
        ..ServiceSpec::default()
    });
}

/// A StatefulSet as the scale subresource's rules read it: the opt-in label, the status
/// annotation, the replica count, and whether scaling away deletes volumes (the retention
/// policy, and each claim template by name only). Pod templates are most of an object's size.
pub fn slim_statefulset(sts: &mut StatefulSet) {
    slim_meta(&mut sts.metadata);
    sts.status = None;
    sts.spec = sts.spec.take().map(|spec| StatefulSetSpec {
        replicas: spec.replicas,
        service_name: spec.service_name,
        persistent_volume_claim_retention_policy: spec.persistent_volume_claim_retention_policy,
        volume_claim_templates: spec.volume_claim_templates.map(|templates| {
            templates
                .into_iter()
                .map(|claim| PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: claim.metadata.name,
                        ..ObjectMeta::default()
                    },
                    ..PersistentVolumeClaim::default()
                })
                .collect()
        }),
        ..StatefulSetSpec::default()
    });
}

impl Caches {
    /// Starts the watches on tokio tasks, cluster-wide since any namespace may opt in.
    /// All StatefulSets are cached, not only labelled ones, so that a miss on a
    /// `statefulsets/scale` request means "not seen yet" rather than "not Raft".
    pub fn start(client: Client, synced: Arc<AtomicBool>) -> Caches {
        let caches = Caches {
            services: Index::new(),
            statefulsets: Index::new(),
            synced,
        };
        let listed = Arc::new(AtomicUsize::new(0));
        let services = watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff();
        tokio::spawn(caches.feed(
            caches.services.writer(),
            services,
            "Service",
            listed.clone(),
        ));
        let statefulsets =
            watcher(Api::<StatefulSet>::all(client), watcher::Config::default()).default_backoff();
        tokio::spawn(caches.feed(
            caches.statefulsets.writer(),
            statefulsets,
            "StatefulSet",
            listed,
        ));
        caches
    }

    /// Applies one watch's events to its index; once both kinds have been listed, the
    /// caches are synced (readiness).
    fn feed<T: Compact>(
        &self,
        mut writer: Writer<T>,
        events: impl Stream<Item = Result<watcher::Event<T::Object>, watcher::Error>> + Send + 'static,
        kind: &'static str,
        listed: Arc<AtomicUsize>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        T::Object: kube::Resource + Send,
    {
        let caches = self.clone();
        let mut first_list = true;
        events.for_each(move |event| {
            match event {
                Ok(event) => {
                    if writer.apply(event)
                        && std::mem::take(&mut first_list)
                        && listed.fetch_add(1, Ordering::AcqRel) == 1
                    {
                        caches.synced.store(true, Ordering::Release);
                        tracing::info!(
                            services = caches.services.len(),
                            statefulsets = caches.statefulsets.len(),
                            "caches synced"
                        );
                    }
                }
                Err(error) => tracing::warn!(%error, "{kind} watch failed; retrying"),
            }
            std::future::ready(())
        })
    }
}

impl Lookup for Caches {
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services.get(namespace, name).map(Arc::new)
    }

    fn statefulset(&self, namespace: &str, name: &str) -> Option<Arc<StatefulSet>> {
        self.statefulsets.get(namespace, name).map(Arc::new)
    }
}
