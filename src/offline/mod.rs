//! `raft-injector inject` and `raft-injector validate`: the webhook's rules on files,
//! for CI pipelines and for reading what the webhook would do. Services are looked up
//! among the objects of all inputs together, as `kubectl apply -f a.yaml -f b.yaml` would
//! create them.

pub mod documents;
pub mod inputs;
pub mod namespace;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use serde_json::Value;

use crate::cluster::documents::Documents;
use crate::cluster::Lookup;
use crate::policy::admit::admit;
use crate::policy::names::is_raft_workload;
use crate::policy::validate::service_name;
use crate::policy::verdict::{clip, subject};
use crate::policy::{Context, Settings};
use documents::Document;
pub use inputs::Input;
pub use namespace::DefaultNamespace;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("{source_name}: document {document} is not valid YAML: {message}")]
    Yaml {
        source_name: String,
        document: usize,
        message: String,
    },
    #[error("{source_name}: document {document} ({kind}) does not match the Kubernetes schema: {message}")]
    Schema {
        source_name: String,
        document: usize,
        kind: String,
        message: String,
    },
    #[error("{source_name}: the injection patch does not apply: {message}")]
    Patch {
        source_name: String,
        message: String,
    },
    #[error("no Kubernetes objects in {0}; nothing was checked — name the manifests to check (-f FILE or DIR, -R for subdirectories)")]
    Empty(String),
    #[error(transparent)]
    Mutate(#[from] crate::policy::MutateError),
}

/// What an offline run found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The documents, injected where they are Raft StatefulSets.
    pub output: String,
    pub denials: Vec<String>,
    pub warnings: Vec<String>,
    /// How many Raft StatefulSets were checked (or injected).
    pub checked: usize,
    /// How many objects the inputs held.
    pub objects: usize,
}

fn is_kind(object: &Value, kind: &str) -> bool {
    let api_version = if kind == "Service" { "v1" } else { "apps/v1" };
    object["kind"] == kind && object["apiVersion"] == api_version
}

/// The items of a `kind: List` (or `ServiceList`, ...) document.
fn list_items(value: &Value) -> Option<&Vec<Value>> {
    let kind = value["kind"].as_str()?;
    if !kind.ends_with("List") {
        return None;
    }
    value["items"].as_array()
}

/// The objects of a document: its items when it is a List, else itself.
fn objects(doc: &Document) -> Vec<&Value> {
    match &doc.value {
        None => Vec::new(),
        Some(value) => match list_items(value) {
            Some(items) => items.iter().collect(),
            None => vec![value],
        },
    }
}

fn typed<T: serde::de::DeserializeOwned>(
    doc: &Document,
    kind: &str,
    value: &Value,
) -> Result<T, OfflineError> {
    T::deserialize(value).map_err(|e| OfflineError::Schema {
        source_name: doc.source.clone(),
        document: doc.index,
        kind: kind.to_owned(),
        message: e.to_string(),
    })
}

/// One offline run over all inputs.
struct Run<'a> {
    settings: &'a Settings,
    namespace: &'a DefaultNamespace,
    inject: bool,
    lookup: Documents,
    report: Report,
}

impl Run<'_> {
    /// Checks one object and, when injecting, returns its injected form if that differs.
    fn object(&mut self, doc: &Document, value: &Value) -> Result<Option<Value>, OfflineError> {
        if !is_kind(value, "StatefulSet") {
            return Ok(None);
        }
        let sts: StatefulSet = typed(doc, "StatefulSet", value)?;
        if !is_raft_workload(&sts.metadata) {
            return Ok(None);
        }
        self.report.checked += 1;
        let name = sts.metadata.name.as_deref().unwrap_or_default();
        let own = sts
            .metadata
            .namespace
            .as_deref()
            .filter(|ns| !ns.is_empty());
        if let (Some(own), DefaultNamespace::Flag(flag)) = (own, self.namespace) {
            if own != flag {
                self.report.denials.push(format!(
                    "{}: metadata.namespace is {} but --namespace is {}; kubectl refuses such an apply — drop one \
                     of them",
                    subject(own, name),
                    clip(own),
                    clip(flag)
                ));
                return Ok(None);
            }
        }
        let namespace = own.unwrap_or(self.namespace.name());
        if own.is_none() && *self.namespace == DefaultNamespace::Unknown {
            self.report.warnings.push(format!(
                "{}: no namespace is known (no metadata.namespace, no -n, none in the kubeconfig context), so the \
                 peer names assume namespace \"default\" — pass -n NAMESPACE for the namespace you will apply to",
                subject(namespace, name)
            ));
        }
        let service = service_name(&sts).and_then(|svc| self.lookup.service(namespace, svc));
        let ctx = Context {
            namespace,
            service: service.as_deref(),
            old: None,
            settings: self.settings,
            dry_run: false,
        };
        let admission = admit(&sts, &ctx, self.inject)?;
        self.report
            .warnings
            .extend(admission.verdict.warning_messages());
        if let Some(denial) = admission.verdict.denial() {
            self.report.denials.push(denial);
            return Ok(None);
        }
        let Some(patch) = admission.patch else {
            return Ok(None);
        };
        let patch: json_patch::Patch =
            serde_json::from_slice(&patch).map_err(|e| OfflineError::Patch {
                source_name: doc.source.clone(),
                message: e.to_string(),
            })?;
        let mut injected = value.clone();
        json_patch::patch(&mut injected, &patch.0).map_err(|e| OfflineError::Patch {
            source_name: doc.source.clone(),
            message: e.to_string(),
        })?;
        Ok(Some(injected))
    }

    /// The document's text for the output: as written, or re-rendered when injected.
    fn document(&mut self, doc: &Document) -> Result<String, OfflineError> {
        let Some(value) = &doc.value else {
            return Ok(doc.text.clone());
        };
        let render = |value: &Value| {
            documents::to_yaml(value).map_err(|message| OfflineError::Patch {
                source_name: doc.source.clone(),
                message,
            })
        };
        match list_items(value) {
            Some(items) => {
                let mut replaced = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if let Some(injected) = self.object(doc, item)? {
                        replaced.push((i, injected));
                    }
                }
                if replaced.is_empty() {
                    return Ok(doc.text.clone());
                }
                let mut list = value.clone();
                if let Some(items) = list["items"].as_array_mut() {
                    for (i, injected) in replaced {
                        items[i] = injected;
                    }
                }
                render(&list)
            }
            None => match self.object(doc, value)? {
                Some(injected) => render(&injected),
                None => Ok(doc.text.clone()),
            },
        }
    }
}

/// Checks and, with `inject`, injects every Raft StatefulSet of `inputs`.
pub fn run(
    inputs: &[Input],
    settings: &Settings,
    namespace: &DefaultNamespace,
    inject: bool,
) -> Result<Report, OfflineError> {
    let mut docs = Vec::new();
    for input in inputs {
        docs.extend(documents::parse(&input.name, &input.text)?);
    }
    let mut lookup = Documents {
        default_namespace: namespace.name().to_owned(),
        ..Documents::default()
    };
    let mut count = 0;
    for doc in &docs {
        for object in objects(doc) {
            count += 1;
            if is_kind(object, "Service") {
                lookup
                    .services
                    .push(Arc::new(typed::<Service>(doc, "Service", object)?));
            }
        }
    }
    if count == 0 {
        let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
        let names = if names.is_empty() {
            "the input".to_owned()
        } else {
            names.join(", ")
        };
        return Err(OfflineError::Empty(names));
    }

    let mut run = Run {
        settings,
        namespace,
        inject,
        lookup,
        report: Report {
            objects: count,
            ..Report::default()
        },
    };
    let mut texts = Vec::with_capacity(docs.len());
    for doc in &docs {
        texts.push(run.document(doc)?);
    }
    run.report.output = documents::render(&texts);
    Ok(run.report)
}
