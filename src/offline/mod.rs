//! `raft-injector inject` and `raft-injector validate`: the webhook's rules on files,
//! for CI pipelines and for reading what the webhook would do. Services are looked up
//! among the documents of the same input.

pub mod documents;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use serde_json::Value;

use crate::cluster::documents::Documents;
use crate::cluster::Lookup;
use crate::policy::names::is_raft_workload;
use crate::policy::validate::service_name;
use crate::policy::{mutate, validate, Context, Settings};
use documents::Document;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
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
    /// How many StatefulSets were checked (or injected).
    pub checked: usize,
}

/// One input: a name for messages and its text.
pub struct Input<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

fn is_kind(doc: &Document, kind: &str) -> bool {
    doc.kind() == Some(kind)
        && doc.api_version() == Some(if kind == "Service" { "v1" } else { "apps/v1" })
}

fn typed<T: serde::de::DeserializeOwned>(
    input: &Input,
    index: usize,
    kind: &str,
    value: &Value,
) -> Result<T, OfflineError> {
    serde_json::from_value(value.clone()).map_err(|e| OfflineError::Schema {
        source_name: input.name.to_owned(),
        document: index + 1,
        kind: kind.to_owned(),
        message: e.to_string(),
    })
}

/// Checks and, with `inject`, injects every Raft StatefulSet of `input`.
pub fn run(
    input: &Input,
    settings: &Settings,
    default_namespace: &str,
    inject: bool,
) -> Result<Report, OfflineError> {
    let docs = documents::parse(input.name, input.text)?;
    let mut lookup = Documents {
        default_namespace: default_namespace.to_owned(),
        ..Documents::default()
    };
    for (i, doc) in docs.iter().enumerate() {
        if let (true, Some(value)) = (is_kind(doc, "Service"), &doc.value) {
            lookup
                .services
                .push(Arc::new(typed::<Service>(input, i, "Service", value)?));
        }
    }

    let mut report = Report::default();
    let mut texts = Vec::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let value = match (&doc.value, is_kind(doc, "StatefulSet")) {
            (Some(value), true) => value,
            _ => {
                texts.push(doc.text.clone());
                continue;
            }
        };
        let sts: StatefulSet = typed(input, i, "StatefulSet", value)?;
        if !is_raft_workload(&sts.metadata) {
            texts.push(doc.text.clone());
            continue;
        }
        report.checked += 1;
        let namespace = sts
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(default_namespace);
        let service = service_name(&sts).and_then(|name| lookup.service(namespace, name));
        let ctx = Context {
            namespace,
            service: service.as_deref(),
            old: None,
            settings,
            dry_run: false,
        };
        let verdict = validate(&sts, &ctx);
        report.warnings.extend(verdict.warning_messages());
        if let Some(denial) = verdict.denial() {
            report.denials.push(denial);
            texts.push(doc.text.clone());
            continue;
        }
        if !inject {
            texts.push(doc.text.clone());
            continue;
        }
        let patch = mutate(&sts, &ctx)?;
        if patch.0.is_empty() {
            texts.push(doc.text.clone());
            continue;
        }
        let mut injected = value.clone();
        json_patch::patch(&mut injected, &patch.0).map_err(|e| OfflineError::Patch {
            source_name: input.name.to_owned(),
            message: e.to_string(),
        })?;
        texts.push(
            serde_yaml::to_string(&injected).map_err(|e| OfflineError::Patch {
                source_name: input.name.to_owned(),
                message: e.to_string(),
            })?,
        );
    }
    report.output = documents::render(&texts);
    Ok(report)
}
