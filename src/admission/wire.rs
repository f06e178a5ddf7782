//! The answer to one admission request, and the bytes sent back to kube-apiserver. The
//! patch goes out base64-encoded as the API specifies (Go's `[]byte`); kube-core's
//! AdmissionResponse would send a JSON array of numbers, about three times the size, and can
//! only be built from its own request type, which decodes the object through a `Value` tree.

use kube::core::Status;

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

/// The `admission.k8s.io/v1` AdmissionReview carrying `response`, as JSON. Written by hand
/// around serde for the parts that need escaping: the base64 patch (often most of the
/// bytes) goes straight into the output, where serde would scan every character of it for
/// escapes it cannot contain.
pub fn to_json(response: &Response) -> serde_json::Result<Vec<u8>> {
    let base64 = &base64_simd::STANDARD;
    let patch_len = response
        .patch
        .as_ref()
        .map_or(0, |p| base64.encoded_length(p.len()));
    let mut out = Vec::with_capacity(512 + patch_len);
    out.extend_from_slice(
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#,
    );
    serde_json::to_writer(&mut out, &response.uid)?;
    out.extend_from_slice(if response.allowed {
        br#","allowed":true,"status":"#
    } else {
        br#","allowed":false,"status":"#
    });
    serde_json::to_writer(&mut out, &response.result)?;
    if let Some(patch) = &response.patch {
        out.extend_from_slice(br#","patch":""#);
        base64.encode_append(patch, &mut out);
        out.extend_from_slice(br#"","patchType":"JSONPatch""#);
    }
    if !response.warnings.is_empty() {
        out.extend_from_slice(br#","warnings":"#);
        serde_json::to_writer(&mut out, &response.warnings)?;
    }
    out.extend_from_slice(b"}}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_review_is_json_with_the_patch_in_base64() {
        let mut response = Response::allow("u\"1");
        response.patch = Some(br#"[{"op":"add","path":"/a","value":1}]"#.to_vec());
        response.warnings = vec!["careful \"here\"".to_owned()];
        let json: serde_json::Value = serde_json::from_slice(&to_json(&response).unwrap()).unwrap();
        assert_eq!(json["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(json["kind"], "AdmissionReview");
        let out = &json["response"];
        assert_eq!(out["uid"], "u\"1");
        assert_eq!(out["allowed"], true);
        assert_eq!(out["patchType"], "JSONPatch");
        assert_eq!(
            out["patch"],
            "W3sib3AiOiJhZGQiLCJwYXRoIjoiL2EiLCJ2YWx1ZSI6MX1d"
        );
        assert_eq!(out["warnings"][0], "careful \"here\"");

        let denied = Response::allow("u2").forbid("no \\ way".to_owned());
        let json: serde_json::Value = serde_json::from_slice(&to_json(&denied).unwrap()).unwrap();
        assert_eq!(json["response"]["allowed"], false);
        assert_eq!(json["response"]["status"]["code"], 403);
        assert_eq!(json["response"]["status"]["message"], "no \\ way");
        assert!(json["response"].get("patch").is_none());
        assert!(json["response"].get("warnings").is_none());
    }
}
