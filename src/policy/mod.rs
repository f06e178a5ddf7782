//! The Raft rules as pure functions over k8s-openapi types. The webhook, the offline
//! commands and the tests all call these same functions.

pub mod admit;
pub mod context;
pub mod dns;
pub mod env;
pub mod flavor;
pub mod hook_url;
pub mod mutate;
pub mod names;
pub mod ordinals;
pub mod patch;
pub mod peers;
pub mod pieces;
pub mod replicas;
pub mod resolve;
pub mod scale;
pub mod status;
pub mod validate;
pub mod verdict;

pub use context::{Context, MissingService, Settings};
pub use mutate::{mutate, mutate_json, mutate_json_with, MutateError, Patch};
pub use validate::{validate, validate_with};
pub use verdict::Verdict;
