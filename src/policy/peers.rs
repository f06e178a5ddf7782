//! DNS names of the members of a Raft StatefulSet behind its headless Service.

use std::fmt::Write as _;

use super::resolve::Resolved;

impl Resolved {
    /// `<svc>.<ns>.svc.<domain>`: the suffix every member's name shares.
    pub fn service_domain(&self) -> String {
        format!(
            "{}.{}.svc.{}",
            self.service, self.namespace, self.cluster_domain
        )
    }

    /// `host:port` of every bootstrap member, in ordinal order, comma-separated.
    pub fn bootstrap_peers(&self) -> String {
        let domain = self.service_domain();
        self.join_members(|out, i| write!(out, "{}-{i}.{domain}:{}", self.name, self.peer_port))
    }

    /// One string of every bootstrap member written by `member`, comma-separated.
    fn join_members(&self, member: impl Fn(&mut String, i32) -> std::fmt::Result) -> String {
        let mut out = String::with_capacity(128 * self.bootstrap_size.clamp(0, 16) as usize);
        let first = self.ordinal_start;
        for i in first..first.saturating_add(self.bootstrap_size.max(0)) {
            if i > first {
                out.push(',');
            }
            // Writing into a String cannot fail.
            let _ = member(&mut out, i);
        }
        out
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

    /// `https` with a TLS Secret, else `http`: the scheme of every etcd URL.
    pub fn etcd_scheme(&self) -> &'static str {
        if self.tls_secret.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// etcd's `--initial-cluster`: `name=http://host:port,...` over the bootstrap members.
    pub fn etcd_initial_cluster(&self) -> String {
        let domain = self.service_domain();
        let scheme = self.etcd_scheme();
        self.join_members(|out, i| {
            write!(
                out,
                "{name}-{i}={scheme}://{name}-{i}.{domain}:{port}",
                name = self.name,
                port = self.peer_port
            )
        })
    }
}
