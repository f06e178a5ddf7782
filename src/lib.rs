//! raft-injector: a Kubernetes admission webhook that makes Raft clusters on StatefulSets
//! safe and boring. See SPEC.md for the contract and README.md for the tour.
#![forbid(unsafe_code)]

pub mod admission;
pub mod certs;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod install;
pub mod member;
pub mod offline;
pub mod policy;
pub mod server;

/// The injector's version, recorded in every status annotation.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The image the init container copies the helper binary from, unless `--helper-image` says otherwise.
pub const DEFAULT_HELPER_IMAGE: &str = concat!(
    "ghcr.io/raft-injector/raft-injector:",
    env!("CARGO_PKG_VERSION")
);
