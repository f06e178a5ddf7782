//! Informer caches of Services and Raft StatefulSets, kept up to date by watches, so
//! admission never makes an API call per request (SPEC §2 rule 2).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};

use super::Lookup;

/// The caches; cheap to clone.
#[derive(Clone)]
pub struct Caches {
    services: Store<Service>,
    statefulsets: Store<StatefulSet>,
    synced: Arc<AtomicBool>,
}

/// Drops what the rules never read, to keep the cache small in large clusters.
fn slim<K: Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
    object
        .annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

impl Caches {
    /// Starts the watches on tokio tasks, cluster-wide since any namespace may opt in.
    /// All StatefulSets are cached, not only labelled ones, so that a miss on a
    /// `statefulsets/scale` request means "not seen yet" rather than "not Raft".
    pub fn start(client: Client, synced: Arc<AtomicBool>) -> Caches {
        let (services, services_writer) = reflector::store();
        let (statefulsets, statefulsets_writer) = reflector::store();

        let service_events = watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(slim);
        tokio::spawn(
            reflector::reflector(services_writer, service_events).for_each(|event| async move {
                if let Err(error) = event {
                    tracing::warn!(%error, "Service watch failed; retrying");
                }
            }),
        );

        let statefulset_events =
            watcher(Api::<StatefulSet>::all(client), watcher::Config::default())
                .default_backoff()
                .modify(slim);
        tokio::spawn(
            reflector::reflector(statefulsets_writer, statefulset_events).for_each(
                |event| async move {
                    if let Err(error) = event {
                        tracing::warn!(%error, "StatefulSet watch failed; retrying");
                    }
                },
            ),
        );

        let caches = Caches {
            services,
            statefulsets,
            synced,
        };
        let waiting = caches.clone();
        tokio::spawn(async move {
            let both = futures::future::try_join(
                waiting.services.wait_until_ready(),
                waiting.statefulsets.wait_until_ready(),
            );
            if both.await.is_ok() {
                waiting.synced.store(true, Ordering::Release);
                tracing::info!(
                    services = waiting.services.state().len(),
                    statefulsets = waiting.statefulsets.state().len(),
                    "caches synced"
                );
            }
        });
        caches
    }
}

impl Lookup for Caches {
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services.get(&ObjectRef::new(name).within(namespace))
    }

    fn statefulset(&self, namespace: &str, name: &str) -> Option<Arc<StatefulSet>> {
        self.statefulsets
            .get(&ObjectRef::new(name).within(namespace))
    }
}
