//! The AdmissionReview as read off the wire, in one pass: the fields of the request the
//! webhook reads, with `object` and `oldObject` left as raw JSON borrowed from the body
//! until the request's resource says what they are; then each is decoded once, straight
//! into its type (no intermediate `Value` tree, no copy).

use std::borrow::Cow;

use kube::core::admission::Operation;
use kube::core::GroupVersionResource;
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review<'a> {
    #[serde(default, borrow)]
    api_version: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    request: Option<Request<'a>>,
}

/// Only the version, to say why a review of another version was not read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Version<'a> {
    #[serde(default, borrow)]
    api_version: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
}

/// One admission request; everything else in it (user info, options, ...) is skipped.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    pub uid: String,
    pub resource: GroupVersionResource,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default, borrow)]
    pub object: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub old_object: Option<&'a RawValue>,
}

/// Parses an `admission.k8s.io/v1` AdmissionReview, or says in one line why `body` is not one.
pub fn parse(body: &[u8]) -> Result<Request<'_>, String> {
    // One pass over the body; the version is looked at alone only when that pass fails, so
    // a review of another version gets the message that names the fix.
    let review: Result<Review, _> = serde_json::from_slice(body);
    let version = match &review {
        Ok(review) => Version {
            api_version: review.api_version.clone(),
            kind: review.kind.clone(),
        },
        Err(_) => serde_json::from_slice(body).unwrap_or(Version {
            api_version: Cow::Borrowed("admission.k8s.io/v1"),
            kind: Cow::Borrowed("AdmissionReview"),
        }),
    };
    if version.api_version != "admission.k8s.io/v1" || version.kind != "AdmissionReview" {
        return Err(format!(
            "expected an admission.k8s.io/v1 AdmissionReview, got apiVersion {:?} kind {:?}; register the \
             webhook with admissionReviewVersions: [v1]",
            version.api_version, version.kind
        ));
    }
    review
        .map_err(|e| format!("request body is not an AdmissionReview: {e}"))?
        .request
        .ok_or_else(|| "the AdmissionReview has no request".to_owned())
}

impl Request<'_> {
    pub fn is_statefulsets(&self) -> bool {
        self.resource.group == "apps" && self.resource.resource == "statefulsets"
    }

    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    pub fn operation_name(&self) -> &'static str {
        match self.operation {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_objects_stay_raw_and_the_rest_is_read() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
            "uid":"u1","kind":{"group":"apps","version":"v1","kind":"StatefulSet"},
            "resource":{"group":"apps","version":"v1","resource":"statefulsets"},
            "name":"etcd","namespace":"demo","operation":"UPDATE","userInfo":{"username":"me"},
            "object":{"metadata":{"name":"etcd"}},"oldObject":null,"dryRun":true,"options":{}}}"#;
        let req = parse(body).unwrap();
        assert_eq!(req.uid, "u1");
        assert!(req.is_statefulsets());
        assert_eq!(req.operation_name(), "UPDATE");
        assert!(req.dry_run);
        assert_eq!(req.object.unwrap().get(), r#"{"metadata":{"name":"etcd"}}"#);
        assert!(req.old_object.is_none(), "null is no object");
    }

    #[test]
    fn escaped_strings_and_other_versions_are_handled() {
        let escaped = br#"{"apiVersion":"admission.k8s.io\/v1","kind":"AdmissionReview","request":{
            "uid":"u\u0031","resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE"}}"#;
        assert_eq!(parse(escaped).unwrap().uid, "u1");
        let old =
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#;
        assert!(parse(old)
            .unwrap_err()
            .contains("admissionReviewVersions: [v1]"));
        let empty = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#;
        assert_eq!(
            parse(empty).unwrap_err(),
            "the AdmissionReview has no request"
        );
    }
}
