//! The outcome of the Raft rules for one object: what is wrong and what is merely risky.

/// Violations deny the request; warnings are returned to the client and printed by kubectl.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Who the messages are about, e.g. `StatefulSet default/etcd`.
    pub subject: String,
    pub violations: Vec<String>,
    pub warnings: Vec<String>,
}

impl Verdict {
    pub fn new(subject: String) -> Self {
        Verdict {
            subject,
            ..Verdict::default()
        }
    }

    /// Drops repeated messages, keeping the first of each (two rules may see one problem).
    pub fn dedup(&mut self) {
        for list in [&mut self.violations, &mut self.warnings] {
            let mut seen = std::collections::HashSet::new();
            list.retain(|m| seen.insert(m.clone()));
        }
    }

    pub fn is_allowed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The one message that lists every violation, or `None` when the object is allowed.
    pub fn denial(&self) -> Option<String> {
        match self.violations.as_slice() {
            [] => None,
            [only] => Some(format!("{}: {only}", self.subject)),
            many => {
                let listed: Vec<String> = many
                    .iter()
                    .enumerate()
                    .map(|(i, v)| format!("({}) {v}", i + 1))
                    .collect();
                Some(format!(
                    "{}: {} problems: {}",
                    self.subject,
                    many.len(),
                    listed.join("; ")
                ))
            }
        }
    }

    /// Warnings as kubectl should print them, each naming the object.
    pub fn warning_messages(&self) -> Vec<String> {
        self.warnings
            .iter()
            .map(|w| format!("{}: {w}", self.subject))
            .collect()
    }
}

/// `StatefulSet <ns>/<name>`: how every message names its object.
pub fn subject(namespace: &str, name: &str) -> String {
    format!("StatefulSet {}/{}", clip(namespace), clip(name))
}

/// Longest piece of user input a message repeats.
const SHOWN_CHARS: usize = 80;

/// `value` cut to a length a message can carry, marked when cut.
pub fn clip(value: &str) -> String {
    match value.char_indices().nth(SHOWN_CHARS) {
        None => value.to_owned(),
        Some((end, _)) => format!("{}… ({} bytes)", &value[..end], value.len()),
    }
}

/// `value` quoted for a message, cut like [`clip`].
pub fn shown(value: &str) -> String {
    match value.char_indices().nth(SHOWN_CHARS) {
        None => format!("{value:?}"),
        Some((end, _)) => format!("{:?}… ({} bytes)", &value[..end], value.len()),
    }
}
