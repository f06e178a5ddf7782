//! A [`Lookup`] over objects held in memory: the documents of an offline input file, or
//! fixtures in tests.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::Metadata;

use super::Lookup;

#[derive(Clone, Debug, Default)]
pub struct Documents {
    /// Namespace assumed for objects that name none.
    pub default_namespace: String,
    pub services: Vec<Arc<Service>>,
    pub statefulsets: Vec<Arc<StatefulSet>>,
}

fn find<T: Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>>(
    items: &[Arc<T>],
    default_namespace: &str,
    namespace: &str,
    name: &str,
) -> Option<Arc<T>> {
    items
        .iter()
        .find(|item| {
            let meta = item.metadata();
            meta.name.as_deref() == Some(name)
                && meta.namespace.as_deref().unwrap_or(default_namespace) == namespace
        })
        .cloned()
}

impl Lookup for Documents {
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        find(&self.services, &self.default_namespace, namespace, name)
    }

    fn statefulset(&self, namespace: &str, name: &str) -> Option<Arc<StatefulSet>> {
        find(&self.statefulsets, &self.default_namespace, namespace, name)
    }
}
