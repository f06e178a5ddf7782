//! DNS names of the members of a Raft StatefulSet behind its headless Service.

use super::resolve::Resolved;

impl Resolved {
    /// `<svc>.<ns>.svc.<domain>`: the suffix every member's name shares.
    pub fn service_domain(&self) -> String {
        format!(
            "{}.{}.svc.{}",
            self.service, self.namespace, self.cluster_domain
        )
    }

    /// Stable DNS name of the member with `ordinal`.
    pub fn host(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}.{}", self.name, self.service_domain())
    }

    /// `host:port` of every bootstrap member, in ordinal order.
    pub fn bootstrap_peers(&self) -> Vec<String> {
        (0..self.bootstrap_size.max(0))
            .map(|i| format!("{}:{}", self.host(i), self.peer_port))
            .collect()
    }

    /// A printf-style pattern of a member's peer address, `%d` standing for the ordinal.
    pub fn peer_pattern(&self) -> String {
        format!(
            "{}-%d.{}:{}",
            self.name,
            self.service_domain(),
            self.peer_port
        )
    }

    /// etcd's `--initial-cluster`: `name=http://host:port,...` over the bootstrap members.
    pub fn etcd_initial_cluster(&self) -> String {
        (0..self.bootstrap_size.max(0))
            .map(|i| {
                format!(
                    "{}-{i}=http://{}:{}",
                    self.name,
                    self.host(i),
                    self.peer_port
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}
