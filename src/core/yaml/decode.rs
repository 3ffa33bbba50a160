//! Typed reading of marked YAML nodes: every problem becomes a located diagnostic, and reading
//! goes on, so that one pass reports all the problems of a file.

use super::units;
use super::{Entry, Node, Pos, Value};
use crate::diag::{did_you_mean, Diagnostic};
use std::collections::{BTreeMap, BTreeSet};

/// The diagnostics of one file, and typed accessors that add to them.
#[derive(Debug)]
pub struct Ctx {
    /// File, relative to the repository.
    pub file: String,
    /// Problems found so far.
    pub diags: Vec<Diagnostic>,
    /// Positions of values already reported as broken: further errors there are dropped,
    /// so one mistake gives one error.
    pub quiet: BTreeSet<Pos>,
}

/// The entries of a mapping whose keys were checked.
#[derive(Clone, Copy, Debug)]
pub struct Fields<'n> {
    /// Where the mapping starts.
    pub pos: Pos,
    entries: &'n [Entry],
}

impl<'n> Fields<'n> {
    /// The value of `key`, unless absent or null.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entry(key)
            .map(|e| &e.value)
            .filter(|v| v.value != Value::Null)
    }

    /// The entry of `key`, null or not.
    pub fn entry(&self, key: &str) -> Option<&'n Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Where `key` is written, if present.
    pub fn key_pos(&self, key: &str) -> Option<Pos> {
        self.entry(key).map(|e| e.key_pos)
    }

    /// All entries.
    pub fn entries(&self) -> &'n [Entry] {
        self.entries
    }
}

/// `parent.key`, for messages.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// How a node is shown in "found ..." messages.
pub fn found(node: &Node) -> String {
    match &node.value {
        Value::Scalar(s) => format!("`{}`", s.text),
        _ => node.kind().to_string(),
    }
}

impl Ctx {
    /// An empty context for `file`.
    pub fn new(file: &str) -> Self {
        Ctx {
            file: file.to_string(),
            diags: Vec::new(),
            quiet: BTreeSet::new(),
        }
    }

    /// Records an error.
    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        if self.quiet.contains(&pos) {
            return;
        }
        self.diags
            .push(Diagnostic::error(&self.file, pos.line, pos.column, message));
    }

    /// Records an error with advice.
    pub fn error_help(&mut self, pos: Pos, message: impl Into<String>, help: impl Into<String>) {
        if self.quiet.contains(&pos) {
            return;
        }
        self.diags
            .push(Diagnostic::error(&self.file, pos.line, pos.column, message).with_help(help));
    }

    /// Records a warning.
    pub fn warn(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic::warning(
            &self.file, pos.line, pos.column, message,
        ));
    }

    /// Records a warning with advice.
    pub fn warn_help(&mut self, pos: Pos, message: impl Into<String>, help: impl Into<String>) {
        self.diags
            .push(Diagnostic::warning(&self.file, pos.line, pos.column, message).with_help(help));
    }

    /// Records "`path` must be `what`, found ...".
    pub fn expected(&mut self, node: &Node, path: &str, what: &str) {
        let message = format!("`{path}` must be {what}, found {}", found(node));
        self.error(node.pos, message);
    }

    /// The entries of a mapping (none for null), or an error.
    pub fn mapping<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Entry]> {
        match &node.value {
            Value::Map(entries) => Some(entries),
            Value::Null => Some(&[]),
            _ => {
                self.expected(node, path, "a mapping");
                None
            }
        }
    }

    /// The items of a sequence (none for null), or an error.
    pub fn list<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            Value::Null => Some(&[]),
            _ => {
                self.expected(node, path, "a list");
                None
            }
        }
    }

    /// The mapping's fields; each key not in `known` (nor `x-...` when `extensions`) is an error.
    pub fn fields<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        known: &[&str],
        extensions: bool,
    ) -> Option<Fields<'n>> {
        let entries = self.mapping(node, path)?;
        for entry in entries {
            if known.contains(&entry.key.as_str()) || extensions && entry.key.starts_with("x-") {
                continue;
            }
            self.unknown_key(entry, path, known);
        }
        Some(Fields {
            pos: node.pos,
            entries,
        })
    }

    /// Records an unknown key, suggesting the closest known one.
    pub fn unknown_key(&mut self, entry: &Entry, path: &str, known: &[&str]) {
        let message = if path.is_empty() {
            format!("unknown key `{}`", entry.key)
        } else {
            format!("unknown key `{}` in `{path}`", entry.key)
        };
        match did_you_mean(&entry.key, known.iter().copied()) {
            Some(close) => {
                self.error_help(entry.key_pos, message, format!("did you mean `{close}`?"))
            }
            None if known.len() <= 12 => self.error_help(
                entry.key_pos,
                message,
                format!("known keys: {}", known.join(", ")),
            ),
            None => self.error(entry.key_pos, message),
        }
    }

    /// A scalar as text (None for null).
    pub fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Scalar(s) => Some(s.text.clone()),
            Value::Null => None,
            _ => {
                self.expected(node, path, "a string");
                None
            }
        }
    }

    /// A scalar parsed by `parse`, reporting its message on failure.
    pub fn parsed<T>(
        &mut self,
        node: &Node,
        path: &str,
        parse: impl FnOnce(&str, bool) -> Result<T, String>,
    ) -> Option<T> {
        match &node.value {
            Value::Scalar(s) => match parse(&s.text, s.plain) {
                Ok(value) => Some(value),
                Err(message) => {
                    self.error(node.pos, format!("`{path}`: {message}"));
                    None
                }
            },
            Value::Null => None,
            _ => {
                self.expected(node, path, "a single value");
                None
            }
        }
    }

    /// A boolean.
    pub fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        self.parsed(node, path, |text, _| units::parse_bool(text))
    }

    /// A whole number ≥ 0.
    pub fn uint(&mut self, node: &Node, path: &str) -> Option<u64> {
        self.parsed(node, path, |text, plain| {
            let value = units::parse_int(text, plain)?;
            u64::try_from(value).map_err(|_| format!("`{text}` is negative"))
        })
    }

    /// A whole number.
    pub fn int(&mut self, node: &Node, path: &str) -> Option<i64> {
        self.parsed(node, path, units::parse_int)
    }

    /// A number.
    pub fn float(&mut self, node: &Node, path: &str) -> Option<f64> {
        self.parsed(node, path, |text, _| {
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| format!("`{text}` is not a number"))
        })
    }

    /// A Go duration, in nanoseconds.
    pub fn duration(&mut self, node: &Node, path: &str) -> Option<i64> {
        self.parsed(node, path, |text, _| units::parse_duration(text))
    }

    /// A byte size.
    pub fn size(&mut self, node: &Node, path: &str) -> Option<i64> {
        self.parsed(node, path, |text, _| units::parse_size(text))
    }

    /// A list of strings.
    pub fn strings(&mut self, node: &Node, path: &str) -> Vec<String> {
        let Some(items) = self.list(node, path) else {
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.string(item, &format!("{path}[{i}]")))
            .collect()
    }

    /// A string or a list of strings.
    pub fn string_or_list(&mut self, node: &Node, path: &str) -> Vec<String> {
        match &node.value {
            Value::Scalar(s) => vec![s.text.clone()],
            _ => self.strings(node, path),
        }
    }

    /// A mapping of scalars, or a list of `KEY<sep>VALUE` strings. A missing value (null, or a
    /// list item without `sep`) is `None`.
    pub fn list_or_dict(
        &mut self,
        node: &Node,
        path: &str,
        sep: char,
    ) -> BTreeMap<String, Option<String>> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Map(entries) => {
                for entry in entries {
                    let value = match &entry.value.value {
                        Value::Scalar(s) => Some(s.text.clone()),
                        Value::Null => None,
                        _ => {
                            self.expected(&entry.value, &join(path, &entry.key), "a single value");
                            continue;
                        }
                    };
                    out.insert(entry.key.clone(), value);
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let Some(text) = self.string(item, &format!("{path}[{i}]")) else {
                        continue;
                    };
                    match text.split_once(sep) {
                        Some((key, value)) => out.insert(key.to_string(), Some(value.to_string())),
                        None => out.insert(text, None),
                    };
                }
            }
            Value::Null => {}
            Value::Scalar(_) => self.expected(node, path, "a mapping or a list"),
        }
        out
    }

    /// A mapping or `KEY=VALUE` list of labels (a missing value is the empty string).
    pub fn labels(&mut self, node: &Node, path: &str) -> BTreeMap<String, String> {
        self.list_or_dict(node, path, '=')
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect()
    }

    /// A mapping of scalars (null values are the empty string).
    pub fn string_map(&mut self, node: &Node, path: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(entries) = self.mapping(node, path) else {
            return out;
        };
        for entry in entries {
            match &entry.value.value {
                Value::Scalar(s) => {
                    out.insert(entry.key.clone(), s.text.clone());
                }
                Value::Null => {
                    out.insert(entry.key.clone(), String::new());
                }
                _ => self.expected(&entry.value, &join(path, &entry.key), "a single value"),
            }
        }
        out
    }

    /// A string that must be one of `allowed`.
    pub fn one_of(&mut self, node: &Node, path: &str, allowed: &[&str]) -> Option<String> {
        let text = self.string(node, path)?;
        if allowed.contains(&text.as_str()) {
            return Some(text);
        }
        let message = format!(
            "`{path}` must be one of {}, found `{text}`",
            allowed
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        match did_you_mean(&text, allowed.iter().copied()) {
            Some(close) => self.error_help(node.pos, message, format!("did you mean `{close}`?")),
            None => self.error(node.pos, message),
        }
        None
    }
}

/// A node turned into JSON: plain scalars typed by the YAML 1.2 core schema, others as strings.
pub fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Scalar(s) if s.plain => {
            if let Ok(b) = s.text.parse::<bool>() {
                J::Bool(b)
            } else if let Ok(i) = s.text.parse::<i64>() {
                J::from(i)
            } else if let Some(f) = s.text.parse::<f64>().ok().filter(|f| f.is_finite()) {
                J::from(f)
            } else {
                J::String(s.text.clone())
            }
        }
        Value::Scalar(s) => J::String(s.text.clone()),
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|e| (e.key.clone(), to_json(&e.value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    #[test]
    fn unknown_keys_are_all_reported_with_suggestions() {
        let root = parse(b"imgae: x\nreplicsa: 2\nzzz: 1\nx-ok: 1\n")
            .unwrap()
            .root
            .unwrap();
        let mut ctx = Ctx::new("f.yml");
        ctx.fields(&root, "services.web", &["image", "replicas"], true);
        assert_eq!(ctx.diags.len(), 3);
        assert_eq!(ctx.diags[0].help.as_deref(), Some("did you mean `image`?"));
        assert_eq!((ctx.diags[1].line, ctx.diags[1].column), (2, 1));
        assert_eq!(
            ctx.diags[1].help.as_deref(),
            Some("did you mean `replicas`?")
        );
        assert_eq!(
            ctx.diags[2].help.as_deref(),
            Some("known keys: image, replicas")
        );
    }

    #[test]
    fn typed_values() {
        let root = parse(b"a: 'yes'\nb: 0440\nc: five\nd: [x, y]\ne: [K=V, B]\n")
            .unwrap()
            .root
            .unwrap();
        let mut ctx = Ctx::new("f.yml");
        let f = ctx
            .fields(&root, "", &["a", "b", "c", "d", "e"], false)
            .unwrap();
        assert_eq!(ctx.bool(f.get("a").unwrap(), "a"), Some(true));
        assert_eq!(ctx.uint(f.get("b").unwrap(), "b"), Some(0o440));
        assert_eq!(ctx.uint(f.get("c").unwrap(), "c"), None);
        assert_eq!(ctx.string_or_list(f.get("d").unwrap(), "d"), ["x", "y"]);
        let env = ctx.list_or_dict(f.get("e").unwrap(), "e", '=');
        assert_eq!(env.get("K"), Some(&Some("V".to_string())));
        assert_eq!(env.get("B"), Some(&None));
        assert_eq!(ctx.diags.len(), 1);
        assert_eq!(ctx.diags[0].message, "`c`: `five` is not a whole number");
    }
}
