//! Rules on replica counts, shared by StatefulSet admission and the scale subresource
//! (SPEC §2 rules 5, 7 and 8).

/// Largest number of members one scale-down step may remove.
pub const MAX_SCALE_DOWN_STEP: i32 = 2;

/// Above this many members, every write waits on a large majority for little gain.
pub const LARGE_CLUSTER: i32 = 7;

/// An even, non-zero member count is denied.
pub fn count_problem(replicas: i32) -> Option<String> {
    (replicas != 0 && replicas % 2 == 0).then(|| {
        format!(
            "spec.replicas is {replicas}; a Raft cluster of {replicas} tolerates no more failures than {} and \
             needs a larger quorum — use {} or {}",
            replicas - 1,
            replicas - 1,
            replicas + 1
        )
    })
}

/// A scale-down that removes more than two members in one step is denied; stopping the
/// whole cluster (scaling to 0) is not a removal.
pub fn step_problem(old: i32, new: i32) -> Option<String> {
    let removed = old - new;
    (new != 0 && removed > MAX_SCALE_DOWN_STEP).then(|| {
        let steps: Vec<String> = std::iter::successors(Some(old), |n| {
            (n - MAX_SCALE_DOWN_STEP >= new).then_some(n - MAX_SCALE_DOWN_STEP)
        })
        .map(|n| n.to_string())
        .collect();
        format!(
            "spec.replicas goes from {old} to {new}, removing {removed} members in one step; members leave one \
             at a time and the cluster must keep a quorum after each removal — scale down by at most \
             {MAX_SCALE_DOWN_STEP} at a time ({}), or to 0 to stop the cluster",
            steps.join("→")
        )
    })
}

/// Scaling to 0 is allowed, but worth saying what it means.
pub fn stopped_warning(replicas: i32) -> Option<String> {
    (replicas == 0).then(|| {
        "spec.replicas is 0: the Raft cluster is stopped; members keep their membership and data — scale \
         back to the previous size to resume"
            .to_owned()
    })
}

pub fn large_cluster_warning(replicas: i32) -> Option<String> {
    (replicas > LARGE_CLUSTER).then(|| {
        format!(
            "spec.replicas is {replicas}; every write waits for a majority of {replicas} members, so clusters \
             above {LARGE_CLUSTER} get slower without a useful gain in fault tolerance — prefer 3, 5 or 7"
        )
    })
}
