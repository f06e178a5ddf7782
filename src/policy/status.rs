//! The bookkeeping annotation `raft-injector.io/status` (SPEC §4).

use k8s_openapi::api::apps::v1::StatefulSet;
use serde::{Deserialize, Serialize};

use super::flavor::Flavor;
use super::names::STATUS_ANNOTATION;

/// What the injector recorded the last time it injected a StatefulSet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The injector version that wrote this.
    pub version: String,
    /// Replica count the cluster was bootstrapped with; the peer list is frozen to it.
    pub bootstrap_size: i32,
    pub flavor: Flavor,
    /// Env vars the injector owns on the target container; any other name was set by the user.
    pub env: Vec<String>,
    /// SHA-256 over everything injected into the pod template, to spot drift.
    pub hash: String,
}

impl Status {
    /// The recorded status, if the object carries a readable one.
    pub fn of(sts: &StatefulSet) -> Option<Status> {
        let raw = sts.metadata.annotations.as_ref()?.get(STATUS_ANNOTATION)?;
        serde_json::from_str(raw).ok()
    }

    pub fn to_annotation(&self) -> String {
        // A struct of strings and integers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether the injector owns the env var `name`.
    pub fn owns_env(&self, name: &str) -> bool {
        self.env.iter().any(|owned| owned == name)
    }
}

/// The status annotations one admission reads: the object's, and the stored object's on
/// UPDATE. Read once and handed to every rule that needs them (each is a small JSON
/// document of its own).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub new: Option<Status>,
    /// The stored object's, read only when the object's own does not decide: it has none,
    /// or it records a bootstrap size of 0.
    pub old: Option<Status>,
}

impl Recorded {
    pub fn of(sts: &StatefulSet, old: Option<&StatefulSet>) -> Recorded {
        let new = Status::of(sts);
        let decided = new.as_ref().is_some_and(|s| s.bootstrap_size != 0);
        Recorded {
            old: if decided {
                None
            } else {
                old.and_then(Status::of)
            },
            new,
        }
    }

    /// The object's status, else the stored object's: a server-side apply that omits the
    /// annotation removes it from the new object.
    pub fn previous(&self) -> Option<&Status> {
        self.new.as_ref().or(self.old.as_ref())
    }

    /// The non-zero bootstrap size recorded, the object's first.
    pub fn bootstrap_size(&self) -> Option<i32> {
        [&self.new, &self.old]
            .into_iter()
            .flatten()
            .map(|status| status.bootstrap_size)
            .find(|&size| size != 0)
    }
}
