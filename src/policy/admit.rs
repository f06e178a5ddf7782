//! The one sequence every caller of the rules runs: validate, and only when the object is
//! allowed, inject. The webhook (`admission::decide`) and the offline `inject`/`validate`
//! commands both call it, so they cannot drift apart.

use k8s_openapi::api::apps::v1::StatefulSet;

use super::context::Context;
use super::mutate::{mutate_json_with, MutateError};
use super::status::Recorded;
use super::validate::validate_with;
use super::verdict::Verdict;

/// What the rules say of one StatefulSet.
pub struct Admission {
    pub verdict: Verdict,
    /// The injection patch (RFC 6902 JSON), when injection was asked for, the object is
    /// allowed, and it needs a change.
    pub patch: Option<Vec<u8>>,
}

/// Validates `sts` and, when `inject` and it is allowed, builds its injection patch. An
/// object the rules deny is never injected: the denial explains it instead.
pub fn admit(sts: &StatefulSet, ctx: &Context, inject: bool) -> Result<Admission, MutateError> {
    admit_with(sts, ctx, &Recorded::of(sts, ctx.old), inject)
}

/// [`admit`], with the status annotations of `sts` and `ctx.old` read already.
pub fn admit_with(
    sts: &StatefulSet,
    ctx: &Context,
    recorded: &Recorded,
    inject: bool,
) -> Result<Admission, MutateError> {
    let verdict = validate_with(sts, ctx, recorded);
    let patch = if inject && verdict.is_allowed() {
        mutate_json_with(sts, ctx, recorded)?
    } else {
        None
    };
    Ok(Admission { verdict, patch })
}
