//! Raft implementations the injector knows by name (annotation `raft-injector.io/flavor`),
//! and what each one's rules add to the shared ones: one module per flavor (`etcd`,
//! `generic`, `kraft`), asked through `rules`.
//!
//! Adding a flavor: a variant here, a module beside `etcd.rs` (its env, the pieces it wants,
//! its warnings), one arm in each function of `rules.rs`, and its in-pod side in `member/`
//! (an implementation of `member::cluster::Membership`, listed in `member::cluster::for_member`).

pub mod etcd;
pub mod etcd_data;
pub mod generic;
pub mod kraft;
pub mod rules;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Any Raft implementation that reads the `RAFT_*` env vars.
    #[default]
    Generic,
    /// The plain `etcd` binary, configured through its `ETCD_*` env vars.
    Etcd,
    /// Kafka KRaft controllers on the official `apache/kafka` image, configured through its
    /// `KAFKA_*` env vars, with a dynamic quorum (KIP-853).
    Kraft,
}

impl Flavor {
    pub const ALL: [Flavor; 3] = [Flavor::Generic, Flavor::Etcd, Flavor::Kraft];

    /// The flavor's well-known peer port, used when no annotation names one.
    pub fn default_peer_port(self) -> Option<u16> {
        match self {
            Flavor::Generic => None,
            Flavor::Etcd => Some(super::names::ETCD_DEFAULT_PEER_PORT),
            Flavor::Kraft => Some(kraft::DEFAULT_CONTROLLER_PORT),
        }
    }
}

impl FromStr for Flavor {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "generic" => Ok(Flavor::Generic),
            "etcd" => Ok(Flavor::Etcd),
            "kraft" => Ok(Flavor::Kraft),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Generic => "generic",
            Flavor::Etcd => "etcd",
            Flavor::Kraft => "kraft",
        })
    }
}
