//! The `raft-injector.io/join-url`, `leave-url` and `members-url` annotations (generic
//! flavor) as the rules read them: `[METHOD ]URL`, the method defaulting to POST (GET for the
//! members URL), the URL http or https, with the
//! placeholders `{id}`, `{name}`, `{namespace}`, `{ordinal}`, `{address}` and `{peer}`. The
//! in-pod helper fills them in and makes the call (`member::generic`); here they are only
//! checked, so the rules need no HTTP client.

use http::Method;

/// Which hook a URL serves, for messages and for what its answers mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Join,
    Leave,
    /// Reads the member list; changes nothing.
    Members,
}

impl Hook {
    pub const ALL: [Hook; 3] = [Hook::Join, Hook::Leave, Hook::Members];

    pub fn annotation(self) -> &'static str {
        match self {
            Hook::Join => super::names::JOIN_URL_ANNOTATION,
            Hook::Leave => super::names::LEAVE_URL_ANNOTATION,
            Hook::Members => super::names::MEMBERS_URL_ANNOTATION,
        }
    }

    /// The method when the annotation names none.
    pub fn default_method(self) -> Method {
        match self {
            Hook::Join | Hook::Leave => Method::POST,
            Hook::Members => Method::GET,
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Hook::Join => "join",
            Hook::Leave => "leave",
            Hook::Members => "members",
        })
    }
}

/// A parsed `join-url` or `leave-url` annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookUrl {
    pub method: Method,
    pub template: String,
}

const PLACEHOLDERS: [&str; 6] = [
    "{id}",
    "{name}",
    "{namespace}",
    "{ordinal}",
    "{address}",
    "{peer}",
];

impl HookUrl {
    /// Parses a join or leave annotation, or says what is wrong with it.
    pub fn parse(annotation: &str) -> Result<HookUrl, String> {
        Self::parse_as(Hook::Join, annotation)
    }

    /// Parses the annotation of `hook`, or says what is wrong with it.
    pub fn parse_as(hook: Hook, annotation: &str) -> Result<HookUrl, String> {
        let annotation = annotation.trim();
        let (method, template) = match annotation.split_once(char::is_whitespace) {
            Some((method, url)) => {
                if method.is_empty() || !method.chars().all(|c| c.is_ascii_uppercase()) {
                    return Err(format!(
                        "{method:?} is not an HTTP method; the format is \"[METHOD ]URL\", e.g. \
                         \"POST http://{{peer}}:8080/raft/join?id={{name}}\""
                    ));
                }
                let method = Method::from_bytes(method.as_bytes())
                    .map_err(|_| format!("{method:?} is not an HTTP method"))?;
                (method, url.trim())
            }
            None => (hook.default_method(), annotation),
        };
        if !(template.starts_with("http://") || template.starts_with("https://")) {
            return Err(format!(
                "{template:?} is not an http:// or https:// URL; the format is \"[METHOD ]URL\""
            ));
        }
        // Anything in braces must be a known placeholder: a typo would otherwise reach the
        // application as literal text at the worst moment.
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            let end = rest[start..].find('}').map(|e| start + e + 1);
            let Some(end) = end else {
                return Err(format!("{template:?} has a {{ without a closing }}"));
            };
            let placeholder = &rest[start..end];
            if !PLACEHOLDERS.contains(&placeholder) {
                return Err(format!(
                    "{placeholder} is not a placeholder; known are {}",
                    PLACEHOLDERS.join(", ")
                ));
            }
            rest = &rest[end..];
        }
        let probe = PLACEHOLDERS
            .iter()
            .fold(template.to_owned(), |url, p| url.replace(p, "x"));
        url::Url::parse(&probe).map_err(|e| format!("{template:?} is not a URL: {e}"))?;
        Ok(HookUrl {
            method,
            template: template.to_owned(),
        })
    }
}
