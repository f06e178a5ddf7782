//! The AdmissionReview as read off the wire. Nearly every review this webhook gets is about
//! a StatefulSet, so the body is read once with `object` and `oldObject` read as slim
//! StatefulSets (`object.rs`, `old.rs`) along with the rest. A review that does not read that
//! way (the scale subresource, another kind, a malformed object) is read again with the
//! objects left raw, borrowed from the body, for [`super::subject`] to decode by kind (and to
//! say precisely what is wrong with them).

use std::borrow::Cow;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::core::admission::Operation;
use kube::core::GroupVersionResource;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::object::Object;
use super::old::Old;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound(deserialize = "O: Deserialize<'de>, P: Deserialize<'de>"))]
struct Review<'a, O, P> {
    #[serde(default, borrow)]
    api_version: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
    request: Option<Wire<O, P>>,
}

/// One admission request; everything else in it (user info, options, ...) is skipped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound(deserialize = "O: Deserialize<'de>, P: Deserialize<'de>"))]
struct Wire<O, P> {
    uid: String,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    object: Option<O>,
    #[serde(default)]
    old_object: Option<P>,
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

/// The admission request, as the webhook reads it.
#[derive(Debug)]
pub struct Request<'a> {
    pub uid: String,
    pub resource: GroupVersionResource,
    pub sub_resource: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub operation: Operation,
    pub dry_run: bool,
    pub objects: Objects<'a>,
}

/// `object` and `oldObject`, read as StatefulSets or left raw.
#[derive(Debug)]
pub enum Objects<'a> {
    /// Read in the same pass as the review: slim StatefulSets.
    StatefulSets {
        object: Option<Box<StatefulSet>>,
        old: Option<Box<StatefulSet>>,
    },
    /// Raw JSON borrowed from the body, to be decoded by kind.
    Raw {
        object: Option<&'a RawValue>,
        old: Option<&'a RawValue>,
    },
}

impl Default for Objects<'_> {
    fn default() -> Self {
        Objects::Raw {
            object: None,
            old: None,
        }
    }
}

impl<O, P> Wire<O, P> {
    fn with<'a>(self, objects: impl FnOnce(Option<O>, Option<P>) -> Objects<'a>) -> Request<'a> {
        Request {
            uid: self.uid,
            resource: self.resource,
            sub_resource: self.sub_resource,
            name: self.name,
            namespace: self.namespace,
            operation: self.operation,
            dry_run: self.dry_run,
            objects: objects(self.object, self.old_object),
        }
    }
}

/// A review of a StatefulSet itself, read in one pass with its objects, if `body` is one.
fn statefulset_review(body: &[u8]) -> Option<Request<'_>> {
    let review: Review<Object, Old> = serde_json::from_slice(body).ok()?;
    let mut wire = review.request?;
    let is_statefulset = review.api_version == "admission.k8s.io/v1"
        && review.kind == "AdmissionReview"
        && wire.resource.group == "apps"
        && wire.resource.resource == "statefulsets"
        && wire.sub_resource.is_none();
    if !is_statefulset {
        return None;
    }
    let object = match wire.object.take() {
        Some(object) => Some(Box::new(object.into_statefulset().ok()?)),
        None => None,
    };
    Some(wire.with(|_, old| Objects::StatefulSets {
        object,
        old: old.map(|old| Box::new(old.into_statefulset())),
    }))
}

/// The longest request uid accepted. The API server sends a UUID (36 bytes); the uid is
/// echoed in every answer and log line, so a longer one is refused rather than copied.
pub const MAX_UID_BYTES: usize = 128;

/// The first `max` characters of a string the client sent, for a message.
fn clipped(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Parses an `admission.k8s.io/v1` AdmissionReview, or says in one line why `body` is not one.
pub fn parse(body: &[u8]) -> Result<Request<'_>, String> {
    let request = parse_review(body)?;
    if request.uid.len() > MAX_UID_BYTES {
        return Err(format!(
            "the request uid is {} bytes; an API server sends a UUID, and at most {MAX_UID_BYTES} bytes are accepted",
            request.uid.len()
        ));
    }
    Ok(request)
}

fn parse_review(body: &[u8]) -> Result<Request<'_>, String> {
    if let Some(request) = statefulset_review(body) {
        return Ok(request);
    }
    // Read with the objects raw; the version is looked at alone only when that fails, so a
    // review of another version gets the message that names the fix.
    let review: Result<Review<&RawValue, &RawValue>, _> = serde_json::from_slice(body);
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
            clipped(&version.api_version, 64),
            clipped(&version.kind, 64)
        ));
    }
    Ok(review
        .map_err(|e| format!("request body is not an AdmissionReview: {e}"))?
        .request
        .ok_or_else(|| "the AdmissionReview has no request".to_owned())?
        .with(|object, old| Objects::Raw { object, old }))
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
    fn a_uid_longer_than_any_api_server_sends_is_refused_and_never_echoed() {
        let body = review("statefulsets", "", "null");
        let long = String::from_utf8(body)
            .unwrap()
            .replace(r#""uid":"u1""#, &format!(r#""uid":"{}""#, "x".repeat(3000)));
        let error = parse(long.as_bytes()).unwrap_err();
        assert!(
            error.contains("3000 bytes") && !error.contains("xxx"),
            "{error}"
        );
        let uuid = review("statefulsets", "", "null");
        let uuid = String::from_utf8(uuid)
            .unwrap()
            .replace("u1", "0f2d4c5e-7a1b-4c3d-9e8f-001122334455");
        assert!(parse(uuid.as_bytes()).is_ok());
        // A long apiVersion is clipped in the message.
        let other = format!(
            r#"{{"apiVersion":"{}","kind":"AdmissionReview"}}"#,
            "v".repeat(5000)
        );
        let error = parse(other.as_bytes()).unwrap_err();
        assert!(error.len() < 400, "{error}");
    }

    fn review(resource: &str, sub_resource: &str, object: &str) -> Vec<u8> {
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{
            "uid":"u1","kind":{{"group":"apps","version":"v1","kind":"StatefulSet"}},
            "resource":{{"group":"apps","version":"v1","resource":"{resource}"}},{sub_resource}
            "name":"etcd","namespace":"demo","operation":"UPDATE","userInfo":{{"username":"me"}},
            "object":{object},"oldObject":null,"dryRun":true,"options":{{}}}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn a_statefulset_review_is_read_in_one_pass_with_its_objects() {
        let body = review("statefulsets", "", r#"{"metadata":{"name":"etcd"}}"#);
        let req = parse(&body).unwrap();
        assert_eq!(req.uid, "u1");
        assert!(req.is_statefulsets());
        assert_eq!(req.operation_name(), "UPDATE");
        assert!(req.dry_run);
        let Objects::StatefulSets { object, old } = req.objects else {
            panic!("read as StatefulSets: {:?}", req.objects);
        };
        assert_eq!(object.unwrap().metadata.name.as_deref(), Some("etcd"));
        assert!(old.is_none(), "null is no object");
    }

    #[test]
    fn other_reviews_keep_their_objects_raw() {
        let object = r#"{"metadata":{"name":"etcd"},"spec":{"replicas":3}}"#;
        let scale = review("statefulsets", r#""subResource":"scale","#, object);
        let pods = review("pods", "", object);
        let unreadable = r#"{"metadata":{"name":"etcd"},"spec":{"replicas":"three"}}"#;
        let unreadable = review("statefulsets", "", unreadable);
        for (what, body, raw) in [
            ("the scale subresource", &scale, object),
            ("another kind", &pods, object),
            (
                "an object that is no StatefulSet",
                &unreadable,
                r#"{"metadata":{"name":"etcd"},"spec":{"replicas":"three"}}"#,
            ),
        ] {
            let req = parse(body).unwrap();
            let Objects::Raw { object, old } = req.objects else {
                panic!("{what}: left raw, got {:?}", req.objects);
            };
            assert_eq!(object.map(RawValue::get), Some(raw), "{what}");
            assert!(old.is_none(), "{what}");
            assert_eq!(req.uid, "u1", "{what}");
        }
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
