//! From an AdmissionRequest to an AdmissionResponse: which requests concern Raft, which
//! rules apply, and how a verdict becomes a response. No HTTP here.

mod decide;
pub mod object;
pub mod old;
pub mod request;
mod settle;
pub mod wire;

pub use decide::{decide, respond, subject, AdmissionError, Subject, Webhook};
pub use request::{parse, Request};
pub use settle::settle;
pub use wire::Response;
