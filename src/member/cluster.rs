//! What the shared member machinery (the leave's quorum check, reconcile's repair, `member
//! status`) asks of a flavor: the member list and its leader, whether this member leads, and
//! the removal of one member. Each flavor answers through its own protocol: etcd through its
//! gateway, the generic flavor through the application's `members-url` and `leave-url`.
//! Adding a flavor means one more implementation of [`Membership`], listed in
//! `member::flavors`.

use std::time::Duration;

use super::{MemberError, Removal};

/// Every call to a member is bounded; a member that does not answer in time is skipped.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// The ordinal of pod `name` of StatefulSet `statefulset`, e.g. 2 for `etcd-2`.
pub fn ordinal_of(statefulset: &str, name: &str) -> Option<i32> {
    let ordinal = name.strip_prefix(statefulset)?.strip_prefix('-')?;
    // `01` or `+1` are not pod names.
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if ordinal.len() > 1 && ordinal.starts_with('0') {
        return None;
    }
    ordinal.parse().ok()
}

/// Votes needed for a quorum among `voters` members.
pub fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// The host of a URL like `http://host:port`.
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

/// One member of the Raft configuration, as any flavor reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftMember {
    /// The flavor's own id (etcd: the member id in hex; generic: the application's id).
    pub id: String,
    /// What the member calls itself, when it says (etcd: its name once started).
    pub name: String,
    /// Its peer address (`host:port` or URLs), as the flavor reports it.
    pub addresses: Vec<String>,
    /// A voting member (not a learner or observer).
    pub voter: bool,
    /// Running and part of the cluster (etcd: false for a member added but not started).
    pub started: bool,
}

impl RaftMember {
    /// The ordinal of this member in StatefulSet `statefulset`: from its name, its id, or its
    /// address's first label (`<sts>-<ordinal>`); `None` when none of them is a pod's.
    pub fn ordinal_in(&self, statefulset: &str) -> Option<i32> {
        let first_label = |s: &str| s.split('.').next().unwrap_or_default().to_owned();
        [self.name.clone(), first_label(&self.id)]
            .into_iter()
            .chain(self.addresses.iter().map(|a| first_label(host_of(a))))
            .find_map(|candidate| ordinal_of(statefulset, &candidate))
    }

    /// The member as an operator knows it: its name, else its address's first label, else its id.
    pub fn label(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        self.addresses
            .first()
            .map(|a| host_of(a).split('.').next().unwrap_or_default().to_owned())
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| self.id.clone())
    }
}

/// The member list and what it says about leadership.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub members: Vec<RaftMember>,
    /// The leader's id, when one is known.
    pub leader: Option<String>,
    /// This member's id, when the list names it.
    pub me: Option<String>,
}

impl View {
    pub fn leader_label(&self) -> Option<String> {
        let leader = self.leader.as_ref()?;
        Some(
            self.members
                .iter()
                .find(|m| &m.id == leader)
                .map_or_else(|| leader.clone(), RaftMember::label),
        )
    }
}

/// What a flavor answers. Every call is bounded by the flavor's own timeouts.
#[allow(async_fn_in_trait)] // used by this crate's helper on one runtime; no Send bound needed
pub trait Membership {
    /// The flavor's name, as `member status` shows it.
    fn flavor(&self) -> &'static str;
    /// The member list. `local`: this member's own view (needs no quorum); else one a quorum
    /// agrees on, where the flavor can tell.
    async fn view(&self, local: bool) -> Result<View, MemberError>;
    /// Whether this member is the leader now.
    async fn leads(&self) -> bool;
    /// Removes `member` (this one or another) when the remaining voters keep a quorum.
    async fn remove(
        &self,
        member: &RaftMember,
        view: &View,
        budget: Duration,
    ) -> Result<Removal, MemberError>;
}

/// Checks that the voters left after removing `leaving` keep a quorum, counting the healthy
/// ones with `healthy`.
pub async fn check_quorum<F, Fut>(
    members: &[RaftMember],
    leaving: &RaftMember,
    healthy: F,
) -> Result<(), MemberError>
where
    F: Fn(RaftMember) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    if !leaving.voter {
        return Ok(());
    }
    let voters: Vec<&RaftMember> = members
        .iter()
        .filter(|m| m.voter && m.id != leaving.id)
        .collect();
    let mut alive = 0;
    for member in &voters {
        if healthy((*member).clone()).await {
            alive += 1;
        }
    }
    let needed = quorum(voters.len());
    if alive < needed {
        return Err(MemberError::QuorumAtRisk {
            healthy: alive,
            remaining: voters.len(),
            needed,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, voter: bool) -> RaftMember {
        RaftMember {
            id: id.to_owned(),
            name: String::new(),
            addresses: vec![],
            voter,
            started: true,
        }
    }

    #[tokio::test]
    async fn a_removal_needs_a_quorum_of_the_remaining_voters_alive() {
        let five: Vec<RaftMember> = (0..5).map(|i| member(&format!("kv-{i}"), true)).collect();
        let alive = |names: &'static [&'static str]| {
            move |m: RaftMember| async move { names.contains(&m.id.as_str()) }
        };
        // Removing kv-4 leaves 4 voters, quorum 3.
        check_quorum(&five, &five[4], alive(&["kv-0", "kv-1", "kv-2"]))
            .await
            .unwrap();
        let refused = check_quorum(&five, &five[4], alive(&["kv-0", "kv-1"]))
            .await
            .unwrap_err();
        assert!(
            matches!(
                refused,
                MemberError::QuorumAtRisk {
                    healthy: 2,
                    remaining: 4,
                    needed: 3
                }
            ),
            "{refused}"
        );
        // A non-voter leaves without a check.
        let learner = member("kv-9", false);
        check_quorum(&five, &learner, alive(&[])).await.unwrap();
    }
}
