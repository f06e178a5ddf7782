//! The stored object of an UPDATE (`oldObject`), decoded into only what the rules read of
//! it: the status annotation (bootstrap size, flavor, the env vars the injector owns),
//! `spec.replicas`, and the names of the init containers (whether the reconcile sidecar was
//! there). The rest of a 7 KB StatefulSet — the containers, their env, probes and volumes —
//! is skipped by the parser instead of being built into k8s-openapi types and dropped.
//!
//! The result is a `StatefulSet` with only those fields set, so the rules keep one type.
//! `tests/admission_old.rs` checks that thirty UPDATEs built from the examples are decided
//! the same with the full stored object and with this one.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

#[derive(Deserialize, Default)]
struct Old {
    #[serde(default)]
    metadata: Meta,
    spec: Option<Spec>,
}

#[derive(Deserialize, Default)]
struct Meta {
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct Spec {
    replicas: Option<i32>,
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

#[derive(Deserialize)]
struct Named {
    name: String,
}

/// Decodes `oldObject` into the fields the rules read.
pub fn decode(json: &str) -> Result<StatefulSet, serde_json::Error> {
    let old: Old = serde_json::from_str(json)?;
    Ok(StatefulSet {
        metadata: ObjectMeta {
            annotations: old.metadata.annotations,
            ..ObjectMeta::default()
        },
        spec: old.spec.map(|spec| StatefulSetSpec {
            replicas: spec.replicas,
            template: PodTemplateSpec {
                metadata: None,
                spec: spec.template.spec.map(|pod| PodSpec {
                    init_containers: pod.init_containers.map(|list| {
                        list.into_iter()
                            .map(|c| Container {
                                name: c.name,
                                ..Container::default()
                            })
                            .collect()
                    }),
                    ..PodSpec::default()
                }),
            },
            ..StatefulSetSpec::default()
        }),
        status: None,
    })
}
