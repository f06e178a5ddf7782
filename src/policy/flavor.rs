//! Raft implementations the injector knows by name (annotation `raft-injector.io/flavor`).

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
}

impl Flavor {
    /// The flavor's well-known peer port, used when no annotation names one.
    pub fn default_peer_port(self) -> Option<u16> {
        match self {
            Flavor::Generic => None,
            Flavor::Etcd => Some(super::names::ETCD_DEFAULT_PEER_PORT),
        }
    }
}

impl FromStr for Flavor {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "generic" => Ok(Flavor::Generic),
            "etcd" => Ok(Flavor::Etcd),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Generic => "generic",
            Flavor::Etcd => "etcd",
        })
    }
}
