//! Multi-document YAML: split into documents, each kept as the exact text it came as so
//! that documents the injector does not change are printed back byte for byte.
//!
//! Parsing is bounded (nesting depth, node and alias counts) so a hostile file is a quick
//! error, never a long stall or a large allocation.

use serde_json::Value;

use super::OfflineError;

/// Deepest nesting accepted; Kubernetes objects, CRD schemas included, stay well inside it.
pub const MAX_DEPTH: usize = 100;

/// One document of the input.
#[derive(Clone, Debug)]
pub struct Document {
    /// Where it came from, for messages: the file name and the document's 1-based position.
    pub source: String,
    pub index: usize,
    /// The text between separators, as written.
    pub text: String,
    /// The parsed object; `None` for a document that holds only comments or nothing.
    pub value: Option<Value>,
}

/// Whether a line is a document separator (`---`, optionally followed by a comment).
fn is_separator(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.trim().is_empty() || rest.trim_start().starts_with('#'))
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// The first line of a parser error (the rest is a source snippet).
fn first_line(error: impl std::fmt::Display) -> String {
    let text = error.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

/// Splits `input` at `---` lines and parses each part.
pub fn parse(source: &str, input: &str) -> Result<Vec<Document>, OfflineError> {
    let mut parts = vec![String::new()];
    for line in input.split_inclusive('\n') {
        if is_separator(line.trim_end_matches(['\n', '\r'])) {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push_str(line);
        }
    }
    parts
        .into_iter()
        .enumerate()
        .filter(|(_, text)| !text.trim().is_empty())
        .map(|(index, text)| {
            let value: Value =
                serde_saphyr::from_str_with_options(&text, options()).map_err(|error| {
                    OfflineError::Yaml {
                        source_name: source.to_owned(),
                        document: index + 1,
                        message: first_line(error),
                    }
                })?;
            Ok(Document {
                source: source.to_owned(),
                index: index + 1,
                text,
                value: (!value.is_null()).then_some(value),
            })
        })
        .collect()
}

/// An object as YAML, for a document the injector changed: long one-line values (peer
/// lists) stay on one line, multi-line ones (scripts) become literal blocks.
pub fn to_yaml(value: &Value) -> Result<String, String> {
    let mut options = serde_saphyr::SerializerOptions::default();
    options.folded_wrap_chars = usize::MAX;
    serde_saphyr::to_string_with_options(value, options).map_err(|e| e.to_string())
}

/// Joins documents back into one multi-document stream.
pub fn render(texts: &[String]) -> String {
    let mut out = String::new();
    for (i, text) in texts.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(text.trim_end_matches('\n'));
        out.push('\n');
    }
    out
}
