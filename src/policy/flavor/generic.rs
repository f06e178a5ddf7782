//! The generic flavor's rules: the shared `RAFT_*` env only, the join container when the
//! StatefulSet names a join URL, the reconcile sidecar when it names a members URL, and
//! warnings about URLs that only work together. The in-pod side (the URL calls, the member
//! list) is `member::generic`.

use k8s_openapi::api::apps::v1::StatefulSet;

use super::super::names::{JOIN_URL_ANNOTATION, LEAVE_URL_ANNOTATION, MEMBERS_URL_ANNOTATION};
use super::super::resolve::{annotation, Resolved};
use super::super::verdict::Verdict;
use super::rules::Injects;

pub fn injects(r: &Resolved) -> Injects {
    Injects {
        join_container: r.joins_by_url,
        reconcile_sidecar: r.reads_members,
        exec_wrapper: false,
        sidecar_reads_helper_volume: false,
    }
}

/// The URLs come in pairs: with only a leave URL, members added by a scale-up never join;
/// with a members URL but no leave URL, nothing can be removed.
pub fn warnings(sts: &StatefulSet, verdict: &mut Verdict) {
    let has = |key| annotation(sts, key).is_some();
    let (join, leave, members) = (
        has(JOIN_URL_ANNOTATION),
        has(LEAVE_URL_ANNOTATION),
        has(MEMBERS_URL_ANNOTATION),
    );
    if members && !leave {
        verdict.warnings.push(format!(
            "{MEMBERS_URL_ANNOTATION} is set but {LEAVE_URL_ANNOTATION} is not: the member list is read and \
             shown, but no member can be removed (neither on scale-down nor as a repair) — set {LEAVE_URL_ANNOTATION}"
        ));
    }
    if leave && !join {
        verdict.warnings.push(format!(
            "{LEAVE_URL_ANNOTATION} is set but {JOIN_URL_ANNOTATION} is not: members removed by a scale-down \
             are handled, but members added by a scale-up start outside the Raft group unless the \
             application adds them itself — set {JOIN_URL_ANNOTATION} (see the README's join and leave URLs)"
        ));
    }
}
