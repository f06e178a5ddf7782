//! What the Raft rules need to know besides the StatefulSet itself.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;

/// How to treat a `spec.serviceName` that names no existing Service (SPEC §2 rule 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MissingService {
    /// Deny: the cluster could never form.
    #[default]
    Deny,
    /// Allow with a warning, for GitOps tools that apply the Service later.
    Warn,
}

/// Settings that come from the injector's own flags.
#[derive(Clone, Debug)]
pub struct Settings {
    pub cluster_domain: String,
    pub helper_image: String,
    pub missing_service: MissingService,
    /// The most members a Raft StatefulSet may have (SPEC §2 rule 10).
    pub max_replicas: i32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cluster_domain: "cluster.local".to_owned(),
            helper_image: crate::DEFAULT_HELPER_IMAGE.to_owned(),
            missing_service: MissingService::Deny,
            max_replicas: super::replicas::DEFAULT_MAX_REPLICAS,
        }
    }
}

/// One admission of one StatefulSet.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The namespace the StatefulSet lives in (the request's, when the object omits it).
    pub namespace: &'a str,
    /// The Service named by `spec.serviceName`, if it exists.
    pub service: Option<&'a Service>,
    /// The stored object on UPDATE.
    pub old: Option<&'a StatefulSet>,
    pub settings: &'a Settings,
    /// A server-side dry run: objects applied in the same dry run are not stored, so a
    /// missing Service may just be one that is part of the same apply.
    pub dry_run: bool,
}
