//! The caches' storage: each cached object in a compact form holding exactly what
//! [`super::cache::slim_service`] and [`super::cache::slim_statefulset`] keep (a watched
//! object is compacted straight away, not slimmed first), indexed by namespace and name, and
//! turned back into that slim object when a request looks it up.
//!
//! A k8s-openapi `Service` is 800 bytes before any of its strings, a `StatefulSet` 2,488,
//! and a one-entry `BTreeMap` allocates a whole node: in a cluster of 10,000 Services and
//! 2,000 StatefulSets the typed objects were most of the webhook's memory. Here a Service
//! is a few hundred bytes. A lookup rebuilds one object (a handful of small allocations),
//! once per admission of a Raft StatefulSet or its scale subresource.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::watcher::Event;

/// raft-injector's own entries of a label or annotation map; none when it has none.
pub(super) fn ours_only(map: Option<BTreeMap<String, String>>) -> Option<BTreeMap<String, String>> {
    map.map(|m| {
        m.into_iter()
            .filter(|(k, _)| k.starts_with("raft-injector.io/"))
            .collect()
    })
    .filter(|m: &BTreeMap<String, String>| !m.is_empty())
}

type Text = Option<Box<str>>;
type Pairs = Option<Box<[(Box<str>, Box<str>)]>>;

fn text(s: Option<String>) -> Text {
    s.map(String::into_boxed_str)
}

fn string(s: &Text) -> Option<String> {
    s.as_deref().map(str::to_owned)
}

fn pairs(map: Option<BTreeMap<String, String>>) -> Pairs {
    map.map(|m| {
        m.into_iter()
            .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
            .collect()
    })
}

fn map(pairs: &Pairs) -> Option<BTreeMap<String, String>> {
    pairs.as_ref().map(|p| {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

/// Metadata as `slim_meta` keeps it; name and namespace are the index's keys.
struct Meta {
    uid: Text,
    resource_version: Text,
    deletion_timestamp: Option<Time>,
    labels: Pairs,
    annotations: Pairs,
}

impl Meta {
    /// Namespace, name and the rest; none for an object without both.
    fn split(meta: ObjectMeta) -> Option<(String, String, Meta)> {
        let kept = Meta {
            uid: text(meta.uid),
            resource_version: text(meta.resource_version),
            deletion_timestamp: meta.deletion_timestamp,
            labels: pairs(ours_only(meta.labels)),
            annotations: pairs(ours_only(meta.annotations)),
        };
        Some((meta.namespace?, meta.name?, kept))
    }

    fn object_meta(&self, namespace: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            uid: string(&self.uid),
            resource_version: string(&self.resource_version),
            deletion_timestamp: self.deletion_timestamp.clone(),
            labels: map(&self.labels),
            annotations: map(&self.annotations),
            ..ObjectMeta::default()
        }
    }
}

/// One cached kind: its compact form, made from a watched object and turned back into the
/// slim one.
pub trait Compact: Sized + Send + Sync + 'static {
    type Object;
    /// The namespace, name and compact form of an object.
    fn compact(object: Self::Object) -> Option<(String, String, Self)>;
    fn object(&self, namespace: &str, name: &str) -> Self::Object;
}

struct Port {
    name: Text,
    port: i32,
    target_port: Option<IntOrString>,
}

struct ServiceFields {
    cluster_ip: Text,
    selector: Pairs,
    publish_not_ready_addresses: Option<bool>,
    ports: Option<Box<[Port]>>,
}

pub struct CompactService {
    meta: Meta,
    spec: Option<ServiceFields>,
}

impl Compact for CompactService {
    type Object = Service;

    fn compact(service: Service) -> Option<(String, String, Self)> {
        let (namespace, name, meta) = Meta::split(service.metadata)?;
        let spec = service.spec.map(|s| {
            let ports = s.ports.map(|ports| {
                ports
                    .into_iter()
                    .map(|p| Port {
                        name: text(p.name),
                        port: p.port,
                        target_port: p.target_port,
                    })
                    .collect()
            });
            ServiceFields {
                cluster_ip: text(s.cluster_ip),
                selector: pairs(s.selector),
                publish_not_ready_addresses: s.publish_not_ready_addresses,
                ports,
            }
        });
        Some((namespace, name, CompactService { meta, spec }))
    }

    fn object(&self, namespace: &str, name: &str) -> Service {
        Service {
            metadata: self.meta.object_meta(namespace, name),
            spec: self.spec.as_ref().map(|s| ServiceSpec {
                cluster_ip: string(&s.cluster_ip),
                selector: map(&s.selector),
                publish_not_ready_addresses: s.publish_not_ready_addresses,
                ports: s.ports.as_ref().map(|ports| {
                    ports
                        .iter()
                        .map(|p| ServicePort {
                            name: string(&p.name),
                            port: p.port,
                            target_port: p.target_port.clone(),
                            ..ServicePort::default()
                        })
                        .collect()
                }),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }
}

struct StatefulSetFields {
    replicas: Option<i32>,
    service_name: Text,
    retention: Option<StatefulSetPersistentVolumeClaimRetentionPolicy>,
    claims: Option<Box<[Text]>>,
}

pub struct CompactStatefulSet {
    meta: Meta,
    spec: Option<StatefulSetFields>,
}

impl Compact for CompactStatefulSet {
    type Object = StatefulSet;

    fn compact(sts: StatefulSet) -> Option<(String, String, Self)> {
        let (namespace, name, meta) = Meta::split(sts.metadata)?;
        let spec = sts.spec.map(|s| StatefulSetFields {
            replicas: s.replicas,
            service_name: text(s.service_name),
            retention: s.persistent_volume_claim_retention_policy,
            claims: s.volume_claim_templates.map(|claims| {
                claims
                    .into_iter()
                    .map(|claim| text(claim.metadata.name))
                    .collect()
            }),
        });
        Some((namespace, name, CompactStatefulSet { meta, spec }))
    }

    fn object(&self, namespace: &str, name: &str) -> StatefulSet {
        StatefulSet {
            metadata: self.meta.object_meta(namespace, name),
            spec: self.spec.as_ref().map(|s| StatefulSetSpec {
                replicas: s.replicas,
                service_name: string(&s.service_name),
                persistent_volume_claim_retention_policy: s.retention.clone(),
                volume_claim_templates: s.claims.as_ref().map(|claims| {
                    claims
                        .iter()
                        .map(|name| PersistentVolumeClaim {
                            metadata: ObjectMeta {
                                name: string(name),
                                ..ObjectMeta::default()
                            },
                            ..PersistentVolumeClaim::default()
                        })
                        .collect()
                }),
                ..StatefulSetSpec::default()
            }),
            status: None,
        }
    }
}

type Namespaces<T> = HashMap<Box<str>, HashMap<Box<str>, T>>;

/// Objects of one kind by namespace and name; cheap to clone.
pub struct Index<T> {
    live: Arc<RwLock<Namespaces<T>>>,
}

impl<T> Clone for Index<T> {
    fn clone(&self) -> Self {
        Index {
            live: self.live.clone(),
        }
    }
}

impl<T: Compact> Index<T> {
    pub fn new() -> Index<T> {
        Index {
            live: Arc::default(),
        }
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<T::Object> {
        let live = self
            .live
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        live.get(namespace)?
            .get(name)
            .map(|entry| entry.object(namespace, name))
    }

    pub fn len(&self) -> usize {
        let live = self
            .live
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        live.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The writer a watch feeds; it holds the buffer of a relist until the list is complete,
    /// so lookups see the old contents, then the new ones, never a half-listed cluster.
    pub fn writer(&self) -> Writer<T> {
        Writer {
            index: self.clone(),
            relist: None,
        }
    }
}

impl<T: Compact> Default for Index<T> {
    fn default() -> Self {
        Index::new()
    }
}

fn insert<T: Compact>(into: &mut Namespaces<T>, object: T::Object) {
    if let Some((namespace, name, entry)) = T::compact(object) {
        into.entry(namespace.into_boxed_str())
            .or_default()
            .insert(name.into_boxed_str(), entry);
    }
}

pub struct Writer<T: Compact> {
    index: Index<T>,
    relist: Option<Namespaces<T>>,
}

impl<T: Compact> Writer<T>
where
    T::Object: kube::Resource,
{
    /// Applies one watch event; true when a (re)list has just completed.
    pub fn apply(&mut self, event: Event<T::Object>) -> bool {
        let live = || {
            self.index
                .live
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        match event {
            Event::Init => self.relist = Some(Namespaces::default()),
            Event::InitApply(object) => {
                insert(self.relist.get_or_insert_with(Default::default), object)
            }
            Event::InitDone => {
                let listed = self.relist.take().unwrap_or_default();
                // The old contents are dropped after the lock is released.
                let old = std::mem::replace(&mut *live(), listed);
                drop(old);
                return true;
            }
            Event::Apply(object) => insert(&mut live(), object),
            Event::Delete(object) => {
                let meta = kube::Resource::meta(&object);
                if let (Some(namespace), Some(name)) = (&meta.namespace, &meta.name) {
                    let mut live = live();
                    if let Some(names) = live.get_mut(namespace.as_str()) {
                        names.remove(name.as_str());
                        if names.is_empty() {
                            live.remove(namespace.as_str());
                        }
                    }
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::cache::{slim_service, slim_statefulset};

    fn service(name: &str, port_name: &str) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "demo", "uid": "u-1", "resourceVersion": "42",
                "labels": {"app": "etcd", "raft-injector.io/x": "y"},
                "annotations": {"raft-injector.io/flavor": "etcd", "other": "z"},
                "managedFields": [{"manager": "kubectl"}]},
            "spec": {"clusterIP": "None", "selector": {"app": "etcd"}, "publishNotReadyAddresses": true,
                "type": "ClusterIP", "sessionAffinity": "None",
                "ports": [{"name": port_name, "port": 2380, "targetPort": "peer", "protocol": "TCP"},
                          {"port": 2379, "targetPort": 2379}]},
            "status": {"loadBalancer": {}}
        }))
        .unwrap()
    }

    #[test]
    fn a_compact_service_is_the_slim_service() {
        let whole = service("etcd", "peer");
        let mut slim = whole.clone();
        slim_service(&mut slim);
        let (namespace, name, compact) = CompactService::compact(whole).unwrap();
        assert_eq!((namespace.as_str(), name.as_str()), ("demo", "etcd"));
        assert_eq!(compact.object("demo", "etcd"), slim);
        let bare = Service {
            metadata: ObjectMeta {
                name: Some("bare".into()),
                namespace: Some("demo".into()),
                ..ObjectMeta::default()
            },
            ..Service::default()
        };
        let (_, _, compact) = CompactService::compact(bare.clone()).unwrap();
        assert_eq!(compact.object("demo", "bare"), bare);
    }

    #[test]
    fn a_compact_statefulset_is_the_slim_statefulset() {
        let whole: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "etcd", "namespace": "demo", "uid": "u-2", "resourceVersion": "7",
                "deletionTimestamp": "2026-12-02T10:00:00Z",
                "labels": {"raft-injector.io/raft": "true", "app": "etcd"},
                "annotations": {"raft-injector.io/status": "{}"}},
            "spec": {"replicas": 3, "serviceName": "etcd", "selector": {"matchLabels": {"app": "etcd"}},
                "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete", "whenDeleted": "Retain"},
                "template": {"metadata": {"labels": {"app": "etcd"}},
                    "spec": {"containers": [{"name": "etcd", "image": "etcd"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"]}}]},
            "status": {"replicas": 3}
        }))
        .unwrap();
        let mut slim = whole.clone();
        slim_statefulset(&mut slim);
        let (_, _, compact) = CompactStatefulSet::compact(whole).unwrap();
        assert_eq!(compact.object("demo", "etcd"), slim);
    }

    #[test]
    fn a_relist_replaces_the_contents_only_when_complete() {
        let index = Index::<CompactService>::new();
        let mut writer = index.writer();
        assert!(!writer.apply(Event::Apply(service("a", "peer"))));
        assert!(!writer.apply(Event::Apply(service("gone", "peer"))));
        assert_eq!(index.len(), 2);
        // A relist: until it is done, lookups see the old contents.
        writer.apply(Event::Init);
        writer.apply(Event::InitApply(service("a", "renamed")));
        writer.apply(Event::InitApply(service("b", "peer")));
        assert!(index.get("demo", "gone").is_some());
        assert!(index.get("demo", "b").is_none());
        assert!(writer.apply(Event::InitDone));
        assert!(
            index.get("demo", "gone").is_none(),
            "not listed again: deleted"
        );
        let a = index.get("demo", "a").unwrap();
        assert_eq!(
            a.spec.unwrap().ports.unwrap()[0].name.as_deref(),
            Some("renamed")
        );
        writer.apply(Event::Delete(service("b", "peer")));
        assert!(index.get("demo", "b").is_none());
        assert_eq!(index.len(), 1);
        assert!(index.get("other", "a").is_none());
    }
}
