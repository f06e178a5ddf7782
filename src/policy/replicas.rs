//! Rules on replica counts, shared by StatefulSet admission and the scale subresource
//! (SPEC §2 rules 5 and 7–10).
//!
//! Every count here comes from the user and may be anything an `int32` holds, so the
//! arithmetic is done in `i64` and no message grows with the count: a step list is spelled
//! out only while it is short.

/// Largest number of members one scale step may add or remove.
pub const MAX_STEP: i64 = 2;

/// Above this many members, every write waits on a large majority for little gain.
pub const LARGE_CLUSTER: i32 = 7;

/// Default of `--max-replicas`: the hard bound on a Raft StatefulSet's size.
pub const DEFAULT_MAX_REPLICAS: i32 = 99;

/// A step list longer than this is abbreviated.
const SHOWN_STEPS: usize = 6;

/// A count below 0 or above `max` is denied before any other rule looks at it; the
/// caller then skips every rule that would build something per member.
pub fn range_problem(field: &str, replicas: i32, max: i32) -> Option<String> {
    if replicas < 0 {
        return Some(format!(
            "{field} is {replicas}; a replica count cannot be negative — use an odd number from 1 to {max}, or 0 \
             to stop the cluster"
        ));
    }
    (replicas > max).then(|| {
        format!(
            "{field} is {replicas}, above the {max} members raft-injector allows (--max-replicas); every Raft \
             write waits for a majority of all members, and each member is a pod with its own volume — use an \
             odd number up to {max}, usually 3, 5 or 7"
        )
    })
}

/// Whether `replicas` passes [`range_problem`].
pub fn in_range(replicas: i32, max: i32) -> bool {
    (0..=max).contains(&replicas)
}

/// An even, non-zero member count is denied.
pub fn count_problem(field: &str, replicas: i32) -> Option<String> {
    let n = i64::from(replicas);
    (n != 0 && n % 2 == 0).then(|| {
        format!(
            "{field} is {n}; a Raft cluster of {n} tolerates no more failures than {} and needs a larger quorum \
             — use {} or {}",
            n - 1,
            n - 1,
            n + 1
        )
    })
}

/// `a→b→…→z` in steps of [`MAX_STEP`], abbreviated when long.
fn steps(from: i64, to: i64) -> String {
    let step = if to < from { -MAX_STEP } else { MAX_STEP };
    let count = (to - from).abs().div_euclid(MAX_STEP) + 1;
    let shown: Vec<String> = (0..count.min(SHOWN_STEPS as i64))
        .map(|i| (from + i * step).to_string())
        .collect();
    if count as usize <= SHOWN_STEPS {
        shown.join("→")
    } else {
        format!("{}→…→{to}", shown[..3].join("→"))
    }
}

/// A change of more than two members in one step is denied (SPEC §2 rules 8 and 9).
/// Stopping the whole cluster (to 0) and starting a stopped one (from 0) are not member
/// changes.
pub fn step_problem(old: i32, new: i32) -> Option<String> {
    let (old, new) = (i64::from(old), i64::from(new));
    if old == 0 || new == 0 || (old - new).abs() <= MAX_STEP {
        return None;
    }
    Some(if new < old {
        format!(
            "spec.replicas goes from {old} to {new}, removing {} members in one step; members leave one at a \
             time and the cluster must keep a quorum after each removal — scale down by at most {MAX_STEP} at a \
             time ({}), or to 0 to stop the cluster",
            old - new,
            steps(old, new)
        )
    } else {
        format!(
            "spec.replicas goes from {old} to {new}, adding {} members in one step; members join one at a time \
             and each new member must catch up before the next counts towards the quorum — scale up by at most \
             {MAX_STEP} at a time ({})",
            new - old,
            steps(old, new)
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

/// Every rule on a change of the replica count from `old` (None on CREATE) to `new`,
/// as (violations, warnings).
pub fn check(old: Option<i32>, new: i32, max: i32) -> (Vec<String>, Vec<String>) {
    if let Some(problem) = range_problem("spec.replicas", new, max) {
        return (vec![problem], Vec::new());
    }
    let mut violations: Vec<String> = count_problem("spec.replicas", new).into_iter().collect();
    violations.extend(old.and_then(|old| step_problem(old, new)));
    let warnings = stopped_warning(new)
        .into_iter()
        .chain(large_cluster_warning(new))
        .collect();
    (violations, warnings)
}
