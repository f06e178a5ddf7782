//! An AdmissionResponse as the bytes sent back to kube-apiserver. kube-core serializes the
//! patch as a JSON array of numbers; the API specifies base64 (Go's `[]byte`), which is
//! about a third of the size, so the review is written here.

use std::collections::HashMap;

use base64::Engine as _;
use kube::core::admission::AdmissionResponse;
use kube::core::Status;
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Review<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: Response<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Response<'a> {
    uid: &'a str,
    allowed: bool,
    status: &'a Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    audit_annotations: &'a HashMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<&'a Vec<String>>,
}

/// The `admission.k8s.io/v1` AdmissionReview carrying `response`, as JSON.
pub fn to_json(response: &AdmissionResponse) -> serde_json::Result<Vec<u8>> {
    let patch = response
        .patch
        .as_ref()
        .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes));
    serde_json::to_vec(&Review {
        api_version: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response: Response {
            uid: &response.uid,
            allowed: response.allowed,
            status: &response.result,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            audit_annotations: &response.audit_annotations,
            warnings: response.warnings.as_ref(),
        },
    })
}
