//! The StatefulSet of an admission request (`object`), decoded into only the fields the
//! rules read, as the k8s-openapi types the rules take. Strings are read in place from the
//! request body and copied only when kept.
//!
//! Kept: the name, the deletion timestamp; raft-injector's own labels and annotations (an empty map stays an empty
//! map: the patch adds into it instead of replacing it); the replica count, start ordinal, service name,
//! pod management policy, claim retention policy and how many claim templates there are;
//! the pod template's labels, and whether it has a volume list and the helper and TLS volumes in it
//! (name only); of every container what injection reads or builds on (name, image, pull
//! policy, command, args, working directory, whether it has a readiness probe, ports by name and number,
//! env, mounts, security context, lifecycle); of the init containers their names, and the
//! injector's join container whole while no member has run (the recorded bootstrap size is
//! 0, or the stored object's status decides): it is then compared with a fresh one.
//! Skipped by the parser without being built: the rest of the metadata (`managedFields`,
//! `kubectl.kubernetes.io/last-applied-configuration`), probes' contents, resources, the
//! other volumes, claim templates' contents, the status.
//!
//! `tests/admission_slim.rs` checks that UPDATEs and CREATEs built from the examples are
//! decided the same with the whole objects and with these.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvFromSource, EnvVar, Lifecycle, PersistentVolumeClaim, PodSpec,
    PodTemplateSpec, Probe, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::policy::names::{HELPER_VOLUME, JOIN_INIT_CONTAINER, STATUS_ANNOTATION, TLS_VOLUME};

/// The object as read off the wire; [`Object::into_statefulset`] makes the rules' type of it.
#[derive(Deserialize)]
pub(super) struct Object<'a> {
    #[serde(default)]
    metadata: Meta,
    #[serde(borrow)]
    spec: Option<Spec<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    deletion_timestamp: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    labels: Option<Ours>,
    annotations: Option<Ours>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec<'a> {
    replicas: Option<i32>,
    ordinals: Option<k8s_openapi::api::apps::v1::StatefulSetOrdinals>,
    service_name: Option<String>,
    pod_management_policy: Option<String>,
    persistent_volume_claim_retention_policy:
        Option<StatefulSetPersistentVolumeClaimRetentionPolicy>,
    volume_claim_templates: Option<Vec<IgnoredAny>>,
    #[serde(default, borrow)]
    template: Template<'a>,
}

#[derive(Deserialize, Default)]
struct Template<'a> {
    metadata: Option<TemplateMeta>,
    #[serde(borrow)]
    spec: Option<Pod<'a>>,
}

#[derive(Deserialize)]
struct TemplateMeta {
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pod<'a> {
    #[serde(default)]
    containers: Vec<Slim>,
    #[serde(borrow)]
    init_containers: Option<Vec<&'a RawValue>>,
    volumes: Option<Vec<Named>>,
}

/// Anything of which only the name is read (an init container, a volume).
#[derive(Deserialize)]
pub(super) struct Named {
    pub(super) name: String,
}

impl Named {
    pub(super) fn into_container(self) -> Container {
        Container {
            name: self.name,
            ..Container::default()
        }
    }
}

/// A container as the rules read it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Slim {
    name: String,
    image: Option<String>,
    image_pull_policy: Option<String>,
    command: Option<Vec<String>>,
    args: Option<Vec<String>>,
    working_dir: Option<String>,
    ports: Option<Vec<Port>>,
    env: Option<ExactEnv>,
    /// Copied to the join container, which must see the environment the application sees.
    env_from: Option<Vec<EnvFromSource>>,
    volume_mounts: Option<Vec<VolumeMount>>,
    security_context: Option<SecurityContext>,
    lifecycle: Option<Lifecycle>,
    readiness_probe: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Port {
    name: Option<String>,
    container_port: i32,
}

/// A container's env in a list of its exact length. Read the usual way the list would grow
/// by doubling as the vars arrive (serde_json cannot tell their number up front), and an
/// EnvVar is ~280 bytes: the 21 vars of an injected container would allocate ~17 KB for
/// ~6. They are read into a list kept by the thread instead, then moved into one of the
/// right size.
struct ExactEnv(Vec<EnvVar>);

thread_local! {
    static ENV_SCRATCH: std::cell::RefCell<Vec<EnvVar>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The most vars the thread's list keeps room for between requests.
const ENV_SCRATCH_KEPT: usize = 64;

impl<'de> Deserialize<'de> for ExactEnv {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnvVisitor;
        impl<'de> Visitor<'de> for EnvVisitor {
            type Value = ExactEnv;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of env vars")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ExactEnv, A::Error> {
                ENV_SCRATCH.with_borrow_mut(|scratch| {
                    scratch.clear();
                    let mut read = || {
                        while let Some(var) = seq.next_element()? {
                            scratch.push(var);
                        }
                        Ok(())
                    };
                    let result = read().map(|()| {
                        let mut env = Vec::with_capacity(scratch.len());
                        env.append(scratch);
                        ExactEnv(env)
                    });
                    scratch.clear();
                    if scratch.capacity() > ENV_SCRATCH_KEPT {
                        *scratch = Vec::new();
                    }
                    result
                })
            }
        }
        deserializer.deserialize_seq(EnvVisitor)
    }
}

/// A label or annotation map of which only raft-injector's own entries are kept.
pub(super) struct Ours(pub(super) BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Ours {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OursVisitor;
        impl<'de> Visitor<'de> for OursVisitor {
            type Value = Ours;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ours, A::Error> {
                let mut ours = BTreeMap::new();
                while let Some(Key(key)) = map.next_key()? {
                    if key.starts_with("raft-injector.io/") {
                        ours.insert(key.into_owned(), map.next_value()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Ours(ours))
            }
        }
        deserializer.deserialize_map(OursVisitor)
    }
}

/// A map key, borrowed from the body unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl Slim {
    fn into_container(self) -> Container {
        Container {
            name: self.name,
            image: self.image,
            image_pull_policy: self.image_pull_policy,
            command: self.command,
            // etcd's flags (where it keeps its data) are read from them.
            args: self.args,
            working_dir: self.working_dir,
            ports: self.ports.map(|ports| {
                ports
                    .into_iter()
                    .map(|p| ContainerPort {
                        name: p.name,
                        container_port: p.container_port,
                        ..ContainerPort::default()
                    })
                    .collect()
            }),
            env: self.env.map(|env| env.0),
            env_from: self.env_from,
            volume_mounts: self.volume_mounts,
            security_context: self.security_context,
            lifecycle: self.lifecycle,
            readiness_probe: self.readiness_probe.map(|_| Probe::default()),
            ..Container::default()
        }
    }
}

/// An init container: its name, or all of it for the injector's join container when
/// `whole_join`.
fn init_container(raw: &RawValue, whole_join: bool) -> Result<Container, serde_json::Error> {
    let name = match leading_name(raw.get()) {
        Some(name) => name.to_owned(),
        None => serde_json::from_str::<Named>(raw.get())?.name,
    };
    if whole_join && name == JOIN_INIT_CONTAINER {
        return serde_json::from_str(raw.get());
    }
    Ok(Named { name }.into_container())
}

/// The name of a container whose JSON starts with it, as kube-apiserver writes every
/// container (Go's field order puts `name` first): read off the front instead of scanning
/// the whole container (its env, probes, mounts) a second time. `None` for any other shape
/// (another first key, an escape in the name), which is then decoded.
fn leading_name(json: &str) -> Option<&str> {
    let rest = json.strip_prefix(r#"{"name":""#)?;
    let end = rest.find(['"', '\\'])?;
    rest[end..].starts_with('"').then(|| &rest[..end])
}

/// Decodes `object` into the fields the rules read.
pub fn decode(json: &str) -> Result<StatefulSet, serde_json::Error> {
    serde_json::from_str::<Object>(json)?.into_statefulset()
}

/// Of the status annotation, what decides whether the injection is frozen (read again
/// whole by the rules). An annotation edited by hand so that only this much of it reads
/// leaves the join container name-only; the rules then see no status of the object's own,
/// and at worst rewrite a join container no member has run yet.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BootstrapSize {
    bootstrap_size: i32,
}

impl Object<'_> {
    pub(super) fn into_statefulset(self) -> Result<StatefulSet, serde_json::Error> {
        let annotations = self.metadata.annotations.map(|a| a.0);
        // Injected pieces are frozen once members have run (the mutation compares the join
        // container only before that).
        let frozen = annotations
            .as_ref()
            .and_then(|a| a.get(STATUS_ANNOTATION))
            .and_then(|raw| serde_json::from_str::<BootstrapSize>(raw).ok())
            .is_some_and(|status| status.bootstrap_size != 0);
        let spec = match self.spec {
            None => None,
            Some(spec) => Some(StatefulSetSpec {
                replicas: spec.replicas,
                ordinals: spec.ordinals,
                service_name: spec.service_name,
                pod_management_policy: spec.pod_management_policy,
                persistent_volume_claim_retention_policy: spec
                    .persistent_volume_claim_retention_policy,
                volume_claim_templates: spec
                    .volume_claim_templates
                    .map(|t| vec![PersistentVolumeClaim::default(); t.len()]),
                template: PodTemplateSpec {
                    metadata: spec.template.metadata.map(|m| ObjectMeta {
                        labels: m.labels,
                        ..ObjectMeta::default()
                    }),
                    spec: spec
                        .template
                        .spec
                        .map(|pod| pod_spec(pod, !frozen))
                        .transpose()?,
                },
                ..StatefulSetSpec::default()
            }),
        };
        Ok(StatefulSet {
            metadata: ObjectMeta {
                name: self.metadata.name,
                deletion_timestamp: self.metadata.deletion_timestamp,
                labels: self.metadata.labels.map(|l| l.0),
                annotations,
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        })
    }
}

fn pod_spec(pod: Pod, whole_join: bool) -> Result<PodSpec, serde_json::Error> {
    Ok(PodSpec {
        containers: pod
            .containers
            .into_iter()
            .map(Slim::into_container)
            .collect(),
        init_containers: match pod.init_containers {
            None => None,
            // Filled in place: collected through a `Result`, the list would not know its
            // length and grow by doubling (a Container is ~2 KB).
            Some(list) => {
                let mut containers = Vec::with_capacity(list.len());
                for raw in list {
                    containers.push(init_container(raw, whole_join)?);
                }
                Some(containers)
            }
        },
        // Whether there is a list, and the helper and TLS volumes in it: the rules read no other
        // volume (a Volume is ~1 KB).
        volumes: pod.volumes.map(|list| {
            list.into_iter()
                .filter(|v| v.name == HELPER_VOLUME || v.name == TLS_VOLUME)
                .map(|v| Volume {
                    name: v.name,
                    ..Volume::default()
                })
                .collect()
        }),
        ..PodSpec::default()
    })
}

#[cfg(test)]
mod tests {
    use super::{init_container, leading_name, ExactEnv};

    #[test]
    fn env_is_read_into_a_list_of_its_length_and_a_bad_list_leaves_nothing_behind() {
        let vars: Vec<String> = (0..21)
            .map(|i| format!(r#"{{"name":"V{i}","value":"{i}"}}"#))
            .collect();
        let json = format!("[{}]", vars.join(","));
        let env = serde_json::from_str::<ExactEnv>(&json).unwrap().0;
        assert_eq!(env.len(), 21);
        assert_eq!(env.capacity(), 21);
        assert_eq!(env[20].name, "V20");
        assert_eq!(env[20].value.as_deref(), Some("20"));

        let bad = r#"[{"name":"A","value":"1"},{"name":5}]"#;
        assert!(serde_json::from_str::<ExactEnv>(bad).is_err());
        // The list read next holds only its own vars.
        let env = serde_json::from_str::<ExactEnv>(r#"[{"name":"B"}]"#)
            .unwrap()
            .0;
        assert_eq!(
            env.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
            ["B"]
        );
        assert!(serde_json::from_str::<ExactEnv>("[]").unwrap().0.is_empty());
    }

    #[test]
    fn a_leading_name_is_read_off_the_front_and_anything_else_is_decoded() {
        assert_eq!(leading_name(r#"{"name":"join","image":"x"}"#), Some("join"));
        assert_eq!(leading_name(r#"{"name":"","image":"x"}"#), Some(""));
        // Not this shape: the caller decodes.
        assert_eq!(leading_name(r#"{"image":"x","name":"join"}"#), None);
        assert_eq!(leading_name(r#"{ "name": "join" }"#), None);
        assert_eq!(leading_name(r#"{"name":"jo\"in"}"#), None);
        assert_eq!(leading_name(r#"{"name":"jo\u0069n"}"#), None);

        let decoded = |json: &str| {
            let raw = serde_json::value::RawValue::from_string(json.to_owned()).unwrap();
            init_container(&raw, false).map(|c| c.name)
        };
        assert_eq!(decoded(r#"{"image":"x","name":"setup"}"#).unwrap(), "setup");
        assert_eq!(decoded(r#"{"name":"jo\u0069n"}"#).unwrap(), "join");
        assert_eq!(decoded(r#"{"name":"sh\"ell"}"#).unwrap(), "sh\"ell");
        assert!(
            decoded(r#"{"image":"x"}"#).is_err(),
            "a container without a name"
        );
    }
}
