//! The pure layer under `config` and `compose`: YAML text → a tree of nodes that know their
//! line and column, with anchors, aliases and `<<` merge keys resolved, within limits that keep
//! hostile input from hurting the process; typed reading of that tree into located diagnostics
//! ([`decode`]), value syntaxes ([`units`]), `${VAR}` interpolation and env files ([`env`]), and
//! the [`files::FileSource`] through which every file's content arrives ([`files`]).
//!
//! Built on yaml-rust2's event parser. The limits: [`MAX_FILE_BYTES`] of input, no NUL bytes or
//! invalid UTF-8, at most [`MAX_ALIAS_NODES`] nodes produced by alias expansion (an "alias bomb"
//! is refused before it is expanded), and at most [`MAX_DEPTH`] levels of nesting. Duplicate keys
//! in one mapping are errors.

pub mod decode;
pub mod env;
pub mod files;
pub mod units;

use crate::diag::Diagnostic;
use std::collections::HashMap;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Largest file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Most nodes that alias expansion may produce in one file.
pub const MAX_ALIAS_NODES: usize = 100_000;
/// Deepest nesting of sequences and mappings accepted.
pub const MAX_DEPTH: usize = 64;

const YAML_TAG_PREFIX: &str = "tag:yaml.org,2002:";

/// A position in a file: 1-based line and column (0 when unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Pos {
    fn from_marker(marker: &Marker) -> Pos {
        Pos {
            line: marker.line(),
            column: marker.col() + 1,
        }
    }
}

/// A YAML node and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// What it holds.
    pub value: Value,
}

/// The content of a node.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// Any other scalar, as text.
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order, merge keys applied.
    Map(Vec<Entry>),
}

/// A scalar's text and whether it was written plain (unquoted, untagged), which decides
/// whether `0440` reads as an octal number and `true` as a boolean.
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    /// The scalar's text.
    pub text: String,
    /// Written without quotes or a `!!str` tag.
    pub plain: bool,
}

/// One key and value of a mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The key's text.
    pub key: String,
    /// Where the key was written.
    pub key_pos: Pos,
    /// The value.
    pub value: Node,
}

impl Node {
    /// A short name of the node's kind, for messages (`a string`, `a list`, ...).
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Scalar(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The mapping's entries, if this is a mapping.
    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value of `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }

    /// Number of nodes in this tree, and its depth.
    fn size_and_depth(&self) -> (usize, usize) {
        match &self.value {
            Value::Null | Value::Scalar(_) => (1, 0),
            Value::Seq(items) => items.iter().fold((1, 1), |(size, depth), item| {
                let (s, d) = item.size_and_depth();
                (size + s, depth.max(d + 1))
            }),
            Value::Map(entries) => entries.iter().fold((1, 1), |(size, depth), entry| {
                let (s, d) = entry.value.size_and_depth();
                (size + s + 1, depth.max(d + 1))
            }),
        }
    }
}

/// Why a file could not be read as YAML.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// Where the problem is.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl YamlError {
    fn new(pos: Pos, message: impl Into<String>) -> Self {
        YamlError {
            pos,
            message: message.into(),
            help: None,
        }
    }

    fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Checks that `bytes` are a reasonably sized UTF-8 text file and returns the text
/// (without a byte-order mark).
pub fn decode_text(bytes: &[u8]) -> Result<&str, YamlError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(YamlError::new(
            Pos::default(),
            format!(
                "file is too large ({} bytes; the limit is {} bytes)",
                bytes.len(),
                MAX_FILE_BYTES
            ),
        ));
    }
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(YamlError::new(
            position_of(bytes, at),
            "binary content (a NUL byte): this is not a text file",
        ));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        YamlError::new(
            position_of(bytes, e.valid_up_to()),
            "invalid UTF-8: this is not a text file",
        )
        .with_help("save the file as UTF-8")
    })
}

fn position_of(bytes: &[u8], at: usize) -> Pos {
    let before = &bytes[..at];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    Pos { line, column }
}

/// A parsed file.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    /// The document, `None` when the file holds none.
    pub root: Option<Node>,
    /// Errors that did not stop parsing: duplicate keys (the first entry is kept).
    pub errors: Vec<YamlError>,
}

/// Parses a YAML file into a marked tree. Errors that leave no usable tree are returned as
/// `Err`; duplicate keys are collected in [`Parsed::errors`].
pub fn parse(bytes: &[u8]) -> Result<Parsed, YamlError> {
    let text = decode_text(bytes)?;
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder::default();
    let mut documents = 0;
    loop {
        let (event, marker) = parser
            .next_token()
            .map_err(|e| scanner_error(text, Pos::from_marker(e.marker()), e.info()))?;
        let pos = Pos::from_marker(&marker);
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(
                        YamlError::new(pos, "more than one YAML document in the file")
                            .with_help("keep one document per file (remove the second `---`)"),
                    );
                }
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
            Event::Alias(id) => builder.alias(id, pos)?,
            Event::Scalar(text, style, anchor, tag) => {
                let value = scalar_value(text, style, tag.as_ref(), pos)?;
                builder.complete(Node { pos, value }, anchor)?;
            }
            Event::SequenceStart(anchor, tag) => {
                check_collection_tag(tag.as_ref(), "seq", pos)?;
                builder.open(Frame::Seq(Vec::new()), anchor, pos)?;
            }
            Event::MappingStart(anchor, tag) => {
                check_collection_tag(tag.as_ref(), "map", pos)?;
                builder.open(Frame::Map(Vec::new()), anchor, pos)?;
            }
            Event::SequenceEnd | Event::MappingEnd => builder.close()?,
        }
    }
    Ok(Parsed {
        root: builder.root,
        errors: builder.duplicates,
    })
}

/// Longest implicit key YAML allows (the spec's 1024-character limit on a simple key).
const MAX_KEY_CHARS: usize = 1024;

/// The scanner's error at `pos`, said in the user's terms where the scanner's own words are
/// about its internals: a key past YAML's length limit makes it report "mapping values are not
/// allowed in this context" at the key's `:`.
fn scanner_error(text: &str, pos: Pos, info: &str) -> YamlError {
    if info.contains("mapping values are not allowed") && pos.column > MAX_KEY_CHARS {
        let line = text.lines().nth(pos.line.saturating_sub(1)).unwrap_or("");
        let indent = line
            .chars()
            .take_while(|c| c.is_whitespace() || *c == '-')
            .count();
        return YamlError::new(
            Pos {
                line: pos.line,
                column: indent + 1,
            },
            format!(
                "a key of {} characters: YAML allows keys of at most {MAX_KEY_CHARS}",
                pos.column.saturating_sub(indent + 1)
            ),
        )
        .with_help("shorten the key (names are short: `DB_HOST`, `zone`)");
    }
    YamlError::new(pos, info.to_string())
}

fn scalar_value(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    pos: Pos,
) -> Result<Value, YamlError> {
    let mut plain = style == TScalarStyle::Plain;
    if let Some(tag) = tag {
        match core_tag(tag) {
            Some("str") => plain = false,
            Some("null") => return Ok(Value::Null),
            Some("int" | "float" | "bool") => {}
            _ => return Err(unsupported_tag(tag, pos)),
        }
    }
    if plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    Ok(Value::Scalar(Scalar { text, plain }))
}

fn core_tag(tag: &Tag) -> Option<&str> {
    (tag.handle == YAML_TAG_PREFIX || tag.handle == "!!").then_some(tag.suffix.as_str())
}

fn check_collection_tag(tag: Option<&Tag>, expected: &str, pos: Pos) -> Result<(), YamlError> {
    match tag {
        None => Ok(()),
        Some(tag) if core_tag(tag) == Some(expected) => Ok(()),
        Some(tag) => Err(unsupported_tag(tag, pos)),
    }
}

fn unsupported_tag(tag: &Tag, pos: Pos) -> YamlError {
    let shown = if tag.handle == YAML_TAG_PREFIX {
        format!("!!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    };
    YamlError::new(pos, format!("unsupported YAML tag `{shown}`"))
        .with_help("remove the tag; shoal reads plain YAML values")
}

enum Frame {
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

struct Open {
    frame: Frame,
    anchor: usize,
    pos: Pos,
    pending_key: Option<Node>,
}

struct Anchored {
    node: Node,
    size: usize,
    depth: usize,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: HashMap<usize, Anchored>,
    expanded: usize,
    root: Option<Node>,
    duplicates: Vec<YamlError>,
}

impl Builder {
    fn open(&mut self, frame: Frame, anchor: usize, pos: Pos) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(too_deep(pos));
        }
        self.stack.push(Open {
            frame,
            anchor,
            pos,
            pending_key: None,
        });
        Ok(())
    }

    fn close(&mut self) -> Result<(), YamlError> {
        let Some(open) = self.stack.pop() else {
            return Ok(());
        };
        let value = match open.frame {
            Frame::Seq(items) => Value::Seq(items),
            Frame::Map(pairs) => Value::Map(build_map(pairs, &mut self.duplicates)?),
        };
        self.complete(
            Node {
                pos: open.pos,
                value,
            },
            open.anchor,
        )
    }

    fn alias(&mut self, id: usize, pos: Pos) -> Result<(), YamlError> {
        let Some(anchored) = self.anchors.get(&id) else {
            return Err(YamlError::new(
                pos,
                "alias refers to an anchor that encloses it (a recursive alias)",
            ));
        };
        self.expanded += anchored.size;
        if self.expanded > MAX_ALIAS_NODES {
            return Err(
                YamlError::new(pos, "too many alias expansions (a YAML alias bomb?)").with_help(
                    format!("aliases may expand to at most {MAX_ALIAS_NODES} nodes in one file"),
                ),
            );
        }
        if self.stack.len() + anchored.depth > MAX_DEPTH {
            return Err(too_deep(pos));
        }
        let node = anchored.node.clone();
        self.attach(node)
    }

    fn complete(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        if anchor != 0 {
            let (size, depth) = node.size_and_depth();
            self.anchors.insert(
                anchor,
                Anchored {
                    node: node.clone(),
                    size,
                    depth,
                },
            );
        }
        self.attach(node)
    }

    fn attach(&mut self, node: Node) -> Result<(), YamlError> {
        let Some(open) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        match &mut open.frame {
            Frame::Seq(items) => items.push(node),
            Frame::Map(pairs) => match open.pending_key.take() {
                None => open.pending_key = Some(node),
                Some(key) => pairs.push((key, node)),
            },
        }
        Ok(())
    }
}

fn too_deep(pos: Pos) -> YamlError {
    YamlError::new(pos, format!("nesting is deeper than {MAX_DEPTH} levels"))
}

/// Turns key/value pairs into entries: keys must be scalars and unique (a repeated key is
/// recorded in `duplicates` and dropped); `<<` merges the entries of a mapping (or a list of
/// mappings) whose keys are not written explicitly.
fn build_map(
    pairs: Vec<(Node, Node)>,
    duplicates: &mut Vec<YamlError>,
) -> Result<Vec<Entry>, YamlError> {
    let mut entries: Vec<Entry> = Vec::with_capacity(pairs.len());
    let mut seen: HashMap<String, Pos> = HashMap::new();
    let mut merges = Vec::new();
    for (key, value) in pairs {
        let (text, plain) = match key.value {
            Value::Scalar(s) => (s.text, s.plain),
            Value::Null => (String::new(), true),
            Value::Seq(_) | Value::Map(_) => {
                return Err(YamlError::new(key.pos, "a mapping key must be a string")
                    .with_help("write the key as plain text"))
            }
        };
        if plain && text == "<<" {
            merges.push((key.pos, value));
            continue;
        }
        if let Some(first) = seen.get(&text) {
            duplicates.push(
                YamlError::new(
                    key.pos,
                    format!(
                        "duplicate key `{text}` (first written at line {})",
                        first.line
                    ),
                )
                .with_help("remove one of the two entries"),
            );
            continue;
        }
        seen.insert(text.clone(), key.pos);
        entries.push(Entry {
            key: text,
            key_pos: key.pos,
            value,
        });
    }
    for (pos, value) in merges {
        let sources = match value.value {
            Value::Map(source) => vec![source],
            Value::Seq(items) => items
                .into_iter()
                .map(|item| match item.value {
                    Value::Map(source) => Ok(source),
                    _ => Err(merge_error(item.pos)),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(merge_error(pos)),
        };
        for source in sources {
            for entry in source {
                if !seen.contains_key(&entry.key) {
                    seen.insert(entry.key.clone(), entry.key_pos);
                    entries.push(entry);
                }
            }
        }
    }
    Ok(entries)
}

fn merge_error(pos: Pos) -> YamlError {
    YamlError::new(pos, "`<<` must merge a mapping or a list of mappings")
        .with_help("write `<<: *anchor` where the anchor names a mapping")
}

/// The diagnostic for a file that could not be read as YAML.
pub fn yaml_diagnostic(file: &str, error: &YamlError) -> Diagnostic {
    let diagnostic = Diagnostic::error(file, error.pos.line, error.pos.column, &error.message);
    match &error.help {
        Some(help) => diagnostic.with_help(help),
        None => diagnostic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar<'a>(node: &'a Node, key: &str) -> &'a str {
        match &node.get(key).unwrap().value {
            Value::Scalar(s) => &s.text,
            other => panic!("{key} is {other:?}"),
        }
    }

    #[test]
    fn positions_are_one_based() {
        let root = parse(b"a: 1\nb:\n  c: x\n").unwrap().root.unwrap();
        let entries = root.entries().unwrap();
        assert_eq!(entries[0].key_pos, Pos { line: 1, column: 1 });
        let b = &entries[1].value;
        let c = &b.entries().unwrap()[0];
        assert_eq!(c.key_pos, Pos { line: 3, column: 3 });
        assert_eq!(c.value.pos, Pos { line: 3, column: 6 });
    }

    #[test]
    fn nulls_and_quoted_scalars() {
        let root = parse(b"a: ~\nb:\nc: 'null'\nd: !!str 12\ne: 12\n")
            .unwrap()
            .root
            .unwrap();
        assert_eq!(root.get("a").unwrap().value, Value::Null);
        assert_eq!(root.get("b").unwrap().value, Value::Null);
        assert_eq!(
            root.get("c").unwrap().value,
            Value::Scalar(Scalar {
                text: "null".into(),
                plain: false
            })
        );
        assert_eq!(
            root.get("d").unwrap().value,
            Value::Scalar(Scalar {
                text: "12".into(),
                plain: false
            })
        );
        assert_eq!(
            root.get("e").unwrap().value,
            Value::Scalar(Scalar {
                text: "12".into(),
                plain: true
            })
        );
    }

    #[test]
    fn merge_keys_explicit_keys_win() {
        let yaml = b"base: &base\n  a: 1\n  b: 2\nother: &other\n  b: 3\n  c: 4\nx:\n  <<: [*base, *other]\n  a: 10\n";
        let root = parse(yaml).unwrap().root.unwrap();
        let x = root.get("x").unwrap();
        assert_eq!(scalar(x, "a"), "10");
        assert_eq!(scalar(x, "b"), "2");
        assert_eq!(scalar(x, "c"), "4");
        assert_eq!(x.entries().unwrap().len(), 3);
    }

    #[test]
    fn merge_single_map() {
        let root = parse(b"d: &d {image: web, replicas: 2}\ns:\n  <<: *d\n  replicas: 3\n")
            .unwrap()
            .root
            .unwrap();
        let s = root.get("s").unwrap();
        assert_eq!(scalar(s, "image"), "web");
        assert_eq!(scalar(s, "replicas"), "3");
    }

    #[test]
    fn merge_of_a_scalar_is_an_error() {
        let err = parse(b"a: &a 1\nb:\n  <<: *a\n").unwrap_err();
        assert!(err.message.contains("`<<` must merge"), "{err:?}");
    }

    #[test]
    fn aliases_expand() {
        let root = parse(b"a: &x [1, 2]\nb: *x\n").unwrap().root.unwrap();
        assert_eq!(root.get("a"), root.get("b"));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let parsed = parse(b"a: 1\nb: 2\na: 3\nc:\n  d: 1\n  d: 2\n").unwrap();
        let found: Vec<_> = parsed
            .errors
            .iter()
            .map(|e| (e.pos.line, e.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (6, "duplicate key `d` (first written at line 5)"),
                (3, "duplicate key `a` (first written at line 1)"),
            ]
        );
        assert_eq!(scalar(parsed.root.as_ref().unwrap(), "a"), "1");
    }

    #[test]
    fn alias_bomb_is_refused_fast() {
        let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = format!("*a{}", i - 1);
            let items = [prev.as_str(); 10].join(", ");
            yaml.push_str(&format!("a{i}: &a{i} [{items}]\n"));
        }
        let started = std::time::Instant::now();
        let err = parse(yaml.as_bytes()).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{err:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn binary_and_non_utf8_are_refused() {
        let err = parse(b"a: 1\nb: \0\n").unwrap_err();
        assert!(err.message.contains("NUL"), "{err:?}");
        assert_eq!(err.pos, Pos { line: 2, column: 4 });
        let err = parse(b"a: \xff\xfe\n").unwrap_err();
        assert!(err.message.contains("UTF-8"), "{err:?}");
    }

    #[test]
    fn large_files_are_refused() {
        let big = vec![b'#'; MAX_FILE_BYTES + 1];
        let err = parse(&big).unwrap_err();
        assert!(err.message.contains("too large"), "{err:?}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let yaml = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let err = parse(yaml.as_bytes()).unwrap_err();
        assert!(err.message.contains("nesting"), "{err:?}");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse(b"a: 1\nb: [1, 2\n").unwrap_err();
        assert_eq!(err.pos.line, 3);
        let err = parse(b"a: *nope\n").unwrap_err();
        assert!(err.message.contains("unknown anchor"), "{err:?}");
    }

    #[test]
    fn recursive_alias_is_refused() {
        let err = parse(b"a: &a [1, *a]\n").unwrap_err();
        assert!(err.message.contains("recursive"), "{err:?}");
    }

    #[test]
    fn one_document_only_and_empty_is_none() {
        assert!(parse(b"a: 1\n---\nb: 2\n").is_err());
        assert_eq!(parse(b"# nothing\n").unwrap().root, None);
    }

    #[test]
    fn custom_tags_are_refused() {
        let err = parse(b"a: !reset []\n").unwrap_err();
        assert!(err.message.contains("`!reset`"), "{err:?}");
    }
}
