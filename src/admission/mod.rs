//! From an AdmissionRequest to an AdmissionResponse: which requests concern Raft, which
//! rules apply, and how a verdict becomes a response. No HTTP here.

mod decide;

pub use decide::{decide, respond, AdmissionError, Webhook};
