//! The answer to one admission request, and the bytes sent back to kube-apiserver. The
//! patch goes out base64-encoded as the API specifies (Go's `[]byte`); kube-core's
//! AdmissionResponse would send a JSON array of numbers, about three times the size, and can
//! only be built from its own request type, which decodes the object through a `Value` tree.

use base64::Engine as _;
use kube::core::Status;
use serde::Serialize;

/// What the webhook answers to one request (SPEC §6: the uid always echoed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Response {
    pub uid: String,
    pub allowed: bool,
    pub result: Status,
    /// An RFC 6902 JSON Patch, serialized.
    pub patch: Option<Vec<u8>>,
    pub warnings: Vec<String>,
}

impl Response {
    /// Allows the request with the given uid, changing nothing.
    pub fn allow(uid: &str) -> Response {
        Response {
            uid: uid.to_owned(),
            allowed: true,
            ..Response::default()
        }
    }

    /// A denial as kubectl shows it: `Error from server (Forbidden): ... denied the request: <message>`.
    pub fn forbid(mut self, message: String) -> Response {
        self.allowed = false;
        self.patch = None;
        self.result.message = message;
        self.result.code = 403;
        self.result.reason = "Forbidden".to_owned();
        self
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Review<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: Out<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Out<'a> {
    uid: &'a str,
    allowed: bool,
    status: &'a Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

/// The `admission.k8s.io/v1` AdmissionReview carrying `response`, as JSON.
pub fn to_json(response: &Response) -> serde_json::Result<Vec<u8>> {
    let patch = response
        .patch
        .as_ref()
        .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes));
    serde_json::to_vec(&Review {
        api_version: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response: Out {
            uid: &response.uid,
            allowed: response.allowed,
            status: &response.result,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            warnings: &response.warnings,
        },
    })
}
