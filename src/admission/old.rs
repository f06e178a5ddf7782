//! The stored object of an UPDATE (`oldObject`), decoded into only what the rules read of
//! it: the status annotation (bootstrap size, flavor, the env vars the injector owns),
//! `spec.replicas` and `spec.ordinals`, and whether the reconcile sidecar is among the init containers (kept as
//! a name-only container, the others left out: the rules ask nothing else of them). The
//! rest of a 7 KB StatefulSet (the other annotations, the containers, their env, probes and
//! volumes) is skipped by the parser instead of being built into k8s-openapi types and
//! dropped.
//!
//! The result is a `StatefulSet` with only those fields set, so the rules keep one type.
//! `tests/admission_slim.rs` checks that the UPDATEs built from the examples are decided
//! the same with the full stored object and with this one.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetOrdinals, StatefulSetSpec};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use super::object::{Named, Ours};
use crate::policy::names::RECONCILE_SIDECAR;

/// The stored object as read off the wire.
#[derive(Deserialize, Default)]
pub(super) struct Old {
    #[serde(default)]
    metadata: Meta,
    spec: Option<Spec>,
}

#[derive(Deserialize, Default)]
struct Meta {
    annotations: Option<Ours>,
}

#[derive(Deserialize)]
struct Spec {
    replicas: Option<i32>,
    ordinals: Option<StatefulSetOrdinals>,
    #[serde(default)]
    template: Template,
}

#[derive(Deserialize, Default)]
struct Template {
    spec: Option<Pod>,
}

#[derive(Deserialize)]
struct Pod {
    #[serde(rename = "initContainers")]
    init_containers: Option<Vec<Named>>,
}

/// Decodes `oldObject` into the fields the rules read.
pub fn decode(json: &str) -> Result<StatefulSet, serde_json::Error> {
    Ok(serde_json::from_str::<Old>(json)?.into_statefulset())
}

impl Old {
    pub(super) fn into_statefulset(self) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                annotations: self.metadata.annotations.map(|a| a.0),
                ..ObjectMeta::default()
            },
            spec: self.spec.map(|spec| StatefulSetSpec {
                replicas: spec.replicas,
                ordinals: spec.ordinals,
                template: PodTemplateSpec {
                    metadata: None,
                    spec: spec.template.spec.map(|pod| PodSpec {
                        // Only the sidecar, the one the rules look for (a Container is ~2 KB).
                        init_containers: pod.init_containers.map(|list| {
                            list.into_iter()
                                .filter(|c| c.name == RECONCILE_SIDECAR)
                                .map(Named::into_container)
                                .collect()
                        }),
                        ..PodSpec::default()
                    }),
                },
                ..StatefulSetSpec::default()
            }),
            status: None,
        }
    }
}
