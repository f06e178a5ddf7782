//! Multi-document YAML: split into documents, each kept as the exact text it came as so
//! that documents the injector does not change are printed back byte for byte.

use serde_json::Value;

use super::OfflineError;

/// One document of the input.
#[derive(Clone, Debug)]
pub struct Document {
    /// The text between separators, as written.
    pub text: String,
    /// The parsed object; `None` for a document that holds only comments or nothing.
    pub value: Option<Value>,
}

impl Document {
    pub fn kind(&self) -> Option<&str> {
        self.value.as_ref()?.get("kind")?.as_str()
    }

    pub fn api_version(&self) -> Option<&str> {
        self.value.as_ref()?.get("apiVersion")?.as_str()
    }
}

/// Whether a line is a document separator (`---`, optionally followed by a comment).
fn is_separator(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.trim().is_empty() || rest.trim_start().starts_with('#'))
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
            let yaml: serde_yaml::Value =
                serde_yaml::from_str(&text).map_err(|error| OfflineError::Yaml {
                    source_name: source.to_owned(),
                    document: index + 1,
                    message: error.to_string(),
                })?;
            let value = match yaml {
                serde_yaml::Value::Null => None,
                yaml => Some(
                    serde_json::to_value(yaml).map_err(|error| OfflineError::Yaml {
                        source_name: source.to_owned(),
                        document: index + 1,
                        message: error.to_string(),
                    })?,
                ),
            };
            Ok(Document { text, value })
        })
        .collect()
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
