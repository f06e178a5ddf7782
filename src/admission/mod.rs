//! From an AdmissionRequest to an AdmissionResponse: which requests concern Raft, which
//! rules apply, and how a verdict becomes a response. No HTTP here.

mod decide;
mod settle;
pub mod wire;

pub use decide::{decide, respond, AdmissionError, Webhook};
pub use settle::settle;
