//! The JSON Patch writer: RFC 6902 operations written straight as JSON, each value
//! serialized once from its k8s-openapi type.

use serde::Serialize;

/// `prefix` followed by `rest`: the tokens of a JSON Pointer.
pub(crate) fn under<'a>(prefix: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    prefix.iter().chain(rest).copied().collect()
}

/// The patch as it is built: RFC 6902 operations written straight as JSON, each value
/// serialized once from its k8s-openapi type (no `serde_json::Value` in between).
pub(crate) struct Ops {
    json: Vec<u8>,
    count: usize,
    error: Option<serde_json::Error>,
}

impl Ops {
    pub(crate) fn new() -> Ops {
        Ops {
            // Allocated by the first operation: most UPDATEs need none.
            json: Vec::new(),
            count: 0,
            error: None,
        }
    }

    /// Appends `{"op":op,"path":<the pointer of path>,"value":value}`.
    pub(crate) fn push<'t>(
        &mut self,
        op: &str,
        path: impl IntoIterator<Item = &'t str>,
        value: &impl Serialize,
    ) {
        self.begin(op);
        self.json.extend_from_slice(b",\"path\":");
        let written = self.pointer(path).and_then(|()| {
            self.json.extend_from_slice(b",\"value\":");
            serde_json::to_writer(&mut self.json, value)
        });
        self.end(written);
    }

    /// Appends `{"op":"copy","from":<from>,"path":<path>}`: the value at `from`, as the
    /// operations before this one left it, copied to `path`.
    pub(crate) fn copy<'t, 'f>(
        &mut self,
        from: impl IntoIterator<Item = &'f str>,
        path: impl IntoIterator<Item = &'t str>,
    ) {
        self.begin("copy");
        self.json.extend_from_slice(b",\"from\":");
        let written = self.pointer(from).and_then(|()| {
            self.json.extend_from_slice(b",\"path\":");
            self.pointer(path)
        });
        self.end(written);
    }

    /// Writes `{"op":"<op>"` (the operation's other members follow).
    pub(crate) fn begin(&mut self, op: &str) {
        if self.count == 0 {
            self.json.reserve(4096);
            self.json.push(b'[');
        } else {
            self.json.push(b',');
        }
        self.json.extend_from_slice(b"{\"op\":\"");
        self.json.extend_from_slice(op.as_bytes());
        self.json.push(b'"');
    }

    pub(crate) fn end(&mut self, written: serde_json::Result<()>) {
        if let Err(error) = written {
            self.error.get_or_insert(error);
        }
        self.json.push(b'}');
        self.count += 1;
    }

    /// Writes `path` as a JSON string holding its JSON Pointer (RFC 6901), straight into the
    /// patch. Tokens are almost always plain (`spec`, `0`, `env`): those are copied whole.
    pub(crate) fn pointer<'t>(
        &mut self,
        path: impl IntoIterator<Item = &'t str>,
    ) -> serde_json::Result<()> {
        self.json.push(b'"');
        for token in path {
            self.json.push(b'/');
            if token
                .bytes()
                .all(|b| b >= 0x20 && !matches!(b, b'~' | b'/' | b'"' | b'\\'))
            {
                self.json.extend_from_slice(token.as_bytes());
                continue;
            }
            // `~` and `/` are escaped for the pointer, then the token for the JSON string.
            let escaped = token.replace('~', "~0").replace('/', "~1");
            let mut quoted = Vec::with_capacity(escaped.len() + 2);
            serde_json::to_writer(&mut quoted, &escaped)?;
            self.json.extend_from_slice(&quoted[1..quoted.len() - 1]);
        }
        self.json.push(b'"');
        Ok(())
    }

    pub(crate) fn add<'t>(
        &mut self,
        path: impl IntoIterator<Item = &'t str>,
        value: &impl Serialize,
    ) {
        self.push("add", path, value);
    }

    pub(crate) fn replace<'t>(
        &mut self,
        path: impl IntoIterator<Item = &'t str>,
        value: &impl Serialize,
    ) {
        self.push("replace", path, value);
    }

    /// Adds `item` to the list at `list_path` unless `present` finds it there, creating the
    /// list when the object has none. Returns whether it added.
    pub(crate) fn add_to_list<'t, T>(
        &mut self,
        list: Option<&Vec<T>>,
        list_path: impl IntoIterator<Item = &'t str>,
        present: impl Fn(&T) -> bool,
        item: &impl Serialize,
    ) -> bool {
        match list {
            None => self.add(list_path, &[item]),
            Some(items) if !items.iter().any(present) => {
                self.add(list_path.into_iter().chain(["-"]), item)
            }
            Some(_) => return false,
        }
        true
    }

    /// Adds each `(name, item)` whose name is not in `list` yet (creating the list when
    /// there is none); `name_of` reads an existing item's name.
    pub(crate) fn add_missing<'t, T, I: Serialize>(
        &mut self,
        list: Option<&Vec<T>>,
        list_path: impl IntoIterator<Item = &'t str> + Clone,
        name_of: impl Fn(&T) -> &str,
        items: &[(&str, I)],
    ) {
        let missing: Vec<&I> = items
            .iter()
            .filter(|(name, _)| !list.is_some_and(|l| l.iter().any(|t| name_of(t) == *name)))
            .map(|(_, item)| item)
            .collect();
        match list {
            None if !missing.is_empty() => self.add(list_path, &missing),
            None => {}
            Some(_) => {
                for item in missing {
                    self.add(list_path.clone().into_iter().chain(["-"]), item);
                }
            }
        }
    }

    /// The JSON Patch, or `None` when there is nothing to change.
    pub(crate) fn finish(mut self) -> Result<Option<Vec<u8>>, serde_json::Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.count == 0 {
            return Ok(None);
        }
        self.json.push(b']');
        Ok(Some(self.json))
    }
}

#[cfg(test)]
mod tests {
    use super::Ops;

    /// The pointer as the patch holds it, read back as the JSON string it must be.
    fn pointer(tokens: &[&str]) -> String {
        let mut ops = Ops::new();
        ops.pointer(tokens.iter().copied()).expect("written");
        serde_json::from_slice(&ops.json).expect("a JSON string")
    }

    #[test]
    fn pointer_tokens_are_escaped_for_the_pointer_and_for_json() {
        assert_eq!(
            pointer(&["spec", "template", "0", "env", "-"]),
            "/spec/template/0/env/-"
        );
        assert_eq!(
            pointer(&["metadata", "annotations", "raft-injector.io/status"]),
            "/metadata/annotations/raft-injector.io~1status"
        );
        assert_eq!(pointer(&["a~b/c"]), "/a~0b~1c");
        assert_eq!(pointer(&["say \"hi\" \\ bye"]), "/say \"hi\" \\ bye");
        assert_eq!(pointer(&["tab\there", "ünïcödé"]), "/tab\there/ünïcödé");
        assert_eq!(pointer(&[]), "");
    }
}
