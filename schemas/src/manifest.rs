//! Manifest parsing: multi-document YAML or JSON into typed resources, with errors that name
//! the document, the field path, the line and the column.
//!
//! # How it works
//!
//! 1. The input is checked against [`ParseLimits::max_bytes`] and for UTF-8.
//! 2. serde-saphyr parses the stream under a budget (documents, nesting depth, nodes, aliases
//!    and alias replay) and refuses duplicate keys. Each document becomes a tree of
//!    [`Spanned`] nodes, so every value keeps the line and column it came from.
//! 3. Each document's tree becomes JSON plus a table from field path to location; the envelope
//!    (`apiVersion`, `kind`) is checked, then the document is read into the typed form of its
//!    kind with `serde_path_to_error`, which names the field any type error or unknown field is
//!    at. The table turns that path back into a line and column.
//! 4. [`parse_and_validate`] also runs [`crate::validate`] and locates its errors the same way.
//!
//! Every document is checked, so one call reports the errors of all documents. A JSON array of
//! resources, or a `{"kind": "List", "items": [...]}` object, counts as one document whose
//! items are resources (their errors are prefixed with `[i]` or `items[i]`).

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use serde_saphyr::{DuplicateKeyPolicy, Location, Spanned};

use crate::container::Container;
use crate::image::Image;
use crate::meta::{Kind, ResourceKey};
use crate::object::{API_VERSION, DynamicObject};
use crate::path::{FieldPath, Segment};
use crate::resource::Resource;
use crate::validate::validate_resource;

/// Limits that keep a hostile manifest from costing more than a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest accepted input, in bytes (default 1 MiB).
    pub max_bytes: usize,
    /// Most documents (resources) in one stream (default 1000).
    pub max_documents: usize,
    /// Deepest nesting of mappings and sequences (default 64).
    pub max_depth: usize,
    /// Most alias uses (`*name`) in one stream (default 100). Manifests rarely need any.
    pub max_aliases: usize,
    /// Most parser events that alias expansion may replay in one stream (default 10 000): what
    /// stops a "billion laughs" document after a few milliseconds.
    pub max_alias_expansion: usize,
    /// Most YAML nodes (scalars, mappings, sequences) in one stream (default 200 000).
    pub max_nodes: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            max_documents: 1000,
            max_depth: 64,
            max_aliases: 100,
            max_alias_expansion: 10_000,
            max_nodes: 200_000,
        }
    }
}

/// One problem in a manifest, located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {path}: {message}")]
pub struct ManifestError {
    /// The 0-based index of the document in the stream (documents are separated by `---`).
    pub doc: usize,
    /// The field concerned, from the document root (`spec.ports[1].hostPort`); `.` for the
    /// document as a whole.
    pub path: FieldPath,
    /// 1-based line in the input.
    pub line: u64,
    /// 1-based column in the input.
    pub column: u64,
    /// What is wrong, for people.
    pub message: String,
}

/// A resource read from a manifest, with where it came from.
#[derive(Debug, Clone)]
pub struct ParsedDocument {
    /// The 0-based index of the document in the stream.
    pub doc: usize,
    /// The path of the resource inside its document: `.` normally, `items[3]` or `[3]` for an
    /// item of a list.
    pub prefix: FieldPath,
    /// The line where the resource starts (1-based).
    pub line: u64,
    /// The column where the resource starts (1-based).
    pub column: u64,
    /// The resource, typed.
    pub resource: Resource,
    /// The location of every value and key, by path relative to the resource.
    locations: Locations,
}

impl ParsedDocument {
    /// The resource in the untyped form the store and API keep.
    pub fn to_dynamic(&self) -> DynamicObject {
        self.resource.to_dynamic()
    }

    /// The line and column of the value at `path` (relative to the resource), or of its
    /// nearest ancestor that appears in the manifest (for a field left out).
    pub fn locate(&self, path: &FieldPath) -> (u64, u64) {
        self.locations.value(path).unwrap_or((self.line, self.column))
    }

    /// An error about the field at `path` (relative to the resource), located in the input.
    pub fn error_at(&self, path: &FieldPath, message: impl Into<String>) -> ManifestError {
        let (line, column) = self.locate(path);
        ManifestError {
            doc: self.doc,
            path: self.prefix.join(path),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Where each value (and each mapping key) of a document sits in the input.
#[derive(Debug, Clone, Default)]
struct Locations {
    values: HashMap<FieldPath, (u64, u64)>,
    keys: HashMap<FieldPath, (u64, u64)>,
}

impl Locations {
    /// The location of `path`, or of its nearest recorded ancestor.
    fn value(&self, path: &FieldPath) -> Option<(u64, u64)> {
        let mut p = path.clone();
        loop {
            if let Some(l) = self.values.get(&p) {
                return Some(*l);
            }
            if p.is_root() {
                return None;
            }
            p = p.parent();
        }
    }

    /// The location of the key naming `path`, else of the value.
    fn key(&self, path: &FieldPath) -> Option<(u64, u64)> {
        self.keys.get(path).copied().or_else(|| self.value(path))
    }

    /// The part of this table under `prefix`, re-rooted there.
    fn subtree(&self, prefix: &FieldPath) -> Locations {
        let strip = |m: &HashMap<FieldPath, (u64, u64)>| {
            m.iter().filter_map(|(p, l)| p.strip_prefix(prefix).map(|rest| (rest, *l))).collect()
        };
        Locations { values: strip(&self.values), keys: strip(&self.keys) }
    }
}

/// A YAML node, with the location of every child.
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        i64::try_from(v).map(Node::Int).map_err(|_| E::custom("integer out of range"))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        u64::try_from(v).map(Node::UInt).map_err(|_| E::custom("integer out of range"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, _v: &[u8]) -> Result<Node, E> {
        Err(E::custom("binary values are not allowed in manifests"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<Spanned<Node>, Spanned<Node>>()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }
}

fn loc(l: &Location) -> (u64, u64) {
    (l.line().max(1), l.column().max(1))
}

/// Where the documents of a stream start, found by scanning for `---` and `...` markers at the
/// start of a line (YAML forbids them inside any scalar, so this is exact).
struct DocumentStarts(Vec<u64>);

impl DocumentStarts {
    fn scan(text: &str) -> Self {
        let mut starts = Vec::new();
        let mut content_in_current = false;
        let mut ended = true;
        for (i, line) in yaml_lines(text).enumerate() {
            let n = (i + 1) as u64;
            let is_marker = |m: &str| {
                line.strip_prefix(m)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
            };
            if is_marker("---") {
                if content_in_current || !ended || starts.is_empty() {
                    starts.push(n);
                } else if let Some(last) = starts.last_mut() {
                    // Directives or comments only since the previous end: this marker opens
                    // the document they belong to.
                    *last = n;
                }
                content_in_current = true;
                ended = false;
            } else if is_marker("...") {
                ended = true;
                content_in_current = false;
            } else {
                let trimmed = line.trim_start();
                let is_content =
                    !trimmed.is_empty() && !trimmed.starts_with('#') && !line.starts_with('%');
                if is_content && ended {
                    starts.push(n);
                    ended = false;
                }
                if is_content {
                    content_in_current = true;
                }
            }
        }
        if starts.is_empty() {
            starts.push(1);
        }
        DocumentStarts(starts)
    }

    /// The index of the document that holds `line`.
    fn doc_of(&self, line: u64) -> usize {
        self.0.partition_point(|&start| start <= line).saturating_sub(1)
    }
}

/// The lines of `text` as YAML counts them: `\r\n`, `\n` and a lone `\r` each end a line.
fn yaml_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let t = rest?;
        match t.find(['\n', '\r']) {
            Some(i) => {
                let skip = if t[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&t[i + skip..]);
                Some(&t[..i])
            }
            None => {
                rest = None;
                Some(t)
            }
        }
    })
}

/// Line and column (1-based) of byte `offset` in `bytes`, counting line breaks as YAML does.
fn line_col_of_offset(bytes: &[u8], offset: usize) -> (u64, u64) {
    let before = &bytes[..offset.min(bytes.len())];
    let mut line = 1u64;
    let mut line_start = 0usize;
    for (i, &b) in before.iter().enumerate() {
        let lone_cr = b == b'\r' && before.get(i + 1) != Some(&b'\n');
        if b == b'\n' || lone_cr {
            line += 1;
            line_start = i + 1;
        }
    }
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() as u64 + 1;
    (line, column)
}

fn whole_input_error(line: u64, column: u64, message: impl Into<String>) -> ManifestError {
    ManifestError { doc: 0, path: FieldPath::root(), line, column, message: message.into() }
}

/// Parses a manifest stream into typed resources.
///
/// # Errors
///
/// Every problem found, located: input too large, not UTF-8, YAML syntax, duplicate keys,
/// limits exceeded, no resources at all, a document that is not a mapping, a wrong
/// `apiVersion` or unknown `kind`, unknown fields and type errors (one per document: serde
/// stops at the first). Semantic validation is not run; see [`parse_and_validate`].
pub fn parse_manifests(
    input: &[u8],
    limits: &ParseLimits,
) -> Result<Vec<ParsedDocument>, Vec<ManifestError>> {
    if input.len() > limits.max_bytes {
        return Err(vec![whole_input_error(
            1,
            1,
            format!(
                "the manifest is {} bytes, more than the limit of {} bytes",
                input.len(),
                limits.max_bytes
            ),
        )]);
    }
    let text = match std::str::from_utf8(input) {
        Ok(t) => t,
        Err(e) => {
            let (line, column) = line_col_of_offset(input, e.valid_up_to());
            let doc = std::str::from_utf8(&input[..e.valid_up_to()])
                .map_or(0, |t| DocumentStarts::scan(t).doc_of(line));
            return Err(vec![ManifestError {
                doc,
                path: FieldPath::root(),
                line,
                column,
                message: "the manifest is not valid UTF-8".into(),
            }]);
        }
    };
    let starts = DocumentStarts::scan(text);

    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = limits.max_documents;
    budget.max_depth = limits.max_depth;
    budget.flow_nesting_limit = limits.max_depth;
    budget.max_aliases = limits.max_aliases;
    budget.max_anchors = limits.max_aliases.max(16);
    budget.max_nodes = limits.max_nodes;
    budget.max_events = limits.max_nodes.saturating_mul(4);
    budget.max_total_scalar_bytes = limits.max_bytes;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.duplicate_keys = DuplicateKeyPolicy::Error;
    // YAML 1.2 core booleans only: `yes`, `no`, `on`, `off`, `y`, `n` stay strings (a label
    // `country: no` is the text "no", not `false`).
    options.strict_booleans = true;
    options.with_snippet = false;
    options.alias_limits.max_total_replayed_events = limits.max_alias_expansion;
    options.alias_limits.max_alias_expansions_per_anchor = limits.max_aliases.max(1);

    let roots: Vec<Spanned<Node>> = match serde_saphyr::from_multiple_with_options(text, options) {
        Ok(r) => r,
        Err(e) => {
            let (line, column) = e.location().as_ref().map_or((1, 1), loc);
            return Err(vec![ManifestError {
                doc: starts.doc_of(line),
                path: FieldPath::root(),
                line,
                column,
                message: saphyr_message(&e, limits),
            }]);
        }
    };
    if roots.is_empty() {
        return Err(vec![whole_input_error(
            1,
            1,
            "the manifest holds no resources (it is empty, or only comments and empty documents)",
        )]);
    }

    let mut docs = Vec::new();
    let mut errors = Vec::new();
    let mut count = 0usize;
    for root in &roots {
        let (line, _) = loc(&root.referenced);
        let doc = starts.doc_of(line);
        let mut locations = Locations::default();
        let value = match to_json(root, &FieldPath::root(), &mut locations) {
            Ok(v) => v,
            Err((path, (line, column), message)) => {
                errors.push(ManifestError { doc, path, line, column, message });
                continue;
            }
        };
        for (prefix, item) in split_list(&value) {
            count += 1;
            if count > limits.max_documents {
                let (line, column) = locations.value(&prefix).unwrap_or((line, 1));
                errors.push(ManifestError {
                    doc,
                    path: prefix,
                    line,
                    column,
                    message: format!("more than {} resources in one stream", limits.max_documents),
                });
                return Err(errors);
            }
            match read_resource(doc, prefix, item, &locations) {
                Ok(d) => docs.push(d),
                Err(mut es) => errors.append(&mut es),
            }
        }
    }
    if errors.is_empty() { Ok(docs) } else { Err(errors) }
}

/// Parses a manifest stream like [`parse_manifests`], then validates every resource with
/// [`validate_resource`] and locates those errors too.
///
/// # Errors
///
/// Every parse and validation error, located; see [`parse_manifests`].
pub fn parse_and_validate(
    input: &[u8],
    limits: &ParseLimits,
) -> Result<Vec<ParsedDocument>, Vec<ManifestError>> {
    let docs = parse_manifests(input, limits)?;
    let mut errors = Vec::new();
    let mut seen: HashMap<ResourceKey, &ParsedDocument> = HashMap::new();
    for d in &docs {
        errors.extend(
            validate_resource(&d.resource).into_iter().map(|e| d.error_at(&e.path, e.message)),
        );
        if let Some(first) = seen.insert(d.resource.key(), d) {
            errors.push(d.error_at(
                &FieldPath::root().field("metadata").field("name"),
                format!(
                    "{} is defined twice in this stream (first at line {})",
                    d.resource.key(),
                    first.line
                ),
            ));
        }
    }
    if errors.is_empty() { Ok(docs) } else { Err(errors) }
}

/// The message of a serde-saphyr error, without its location (reported separately) and in
/// terms of [`ParseLimits`] when a limit was hit.
fn saphyr_message(e: &serde_saphyr::Error, limits: &ParseLimits) -> String {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let depth = || format!("nesting is deeper than the limit of {} levels", limits.max_depth);
    let bomb = || {
        format!(
            "aliases expand to more than {} values (limit on alias expansion; is this a \
             \"billion laughs\" document?)",
            limits.max_alias_expansion
        )
    };
    match e.without_snippet() {
        E::Budget { breach, .. } => match breach {
            B::Depth { .. } => depth(),
            B::Documents { .. } => {
                format!("more than {} documents in one stream", limits.max_documents)
            }
            B::Aliases { .. } | B::Anchors { .. } => {
                format!("more than {} aliases in one stream", limits.max_aliases)
            }
            B::Nodes { .. } | B::Events { .. } => format!(
                "more than {} values in one stream (an alias bomb, or split the manifest)",
                limits.max_nodes
            ),
            other => format!("the manifest exceeds a parser limit ({other:?})"),
        },
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => bomb(),
        E::DuplicateMappingKey { key: Some(k), .. } => format!("duplicate key {k:?}"),
        E::DuplicateMappingKey { key: None, .. } => "duplicate key".to_owned(),
        other => {
            let text = other.to_string();
            let text = text.lines().next().unwrap_or_default().trim();
            let text = text.find(" at line ").map_or(text, |i| &text[..i]);
            if text == "recursion limit exceeded" {
                depth()
            } else if text.starts_with("alias replay") || text.starts_with("alias expansion") {
                bomb()
            } else {
                text.to_owned()
            }
        }
    }
}

type Located = (FieldPath, (u64, u64), String);

/// Converts a located YAML tree to JSON, recording where each value and key sits.
fn to_json(
    node: &Spanned<Node>,
    path: &FieldPath,
    locations: &mut Locations,
) -> Result<Value, Located> {
    let here = loc(&node.referenced);
    locations.values.insert(path.clone(), here);
    Ok(match &node.value {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(*b),
        Node::Int(i) => Value::from(*i),
        Node::UInt(u) => Value::from(*u),
        Node::Float(f) => match serde_json::Number::from_f64(*f) {
            Some(n) => Value::Number(n),
            None => {
                return Err((path.clone(), here, "infinite or NaN numbers are not allowed".into()));
            }
        },
        Node::Str(s) => Value::String(s.clone()),
        Node::Seq(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &path.index(i), locations))
                .collect::<Result<_, _>>()?,
        ),
        Node::Map(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                let key = match &k.value {
                    Node::Str(s) => s.clone(),
                    Node::Bool(b) => b.to_string(),
                    Node::Int(i) => i.to_string(),
                    Node::UInt(u) => u.to_string(),
                    Node::Float(f) => f.to_string(),
                    Node::Null | Node::Seq(_) | Node::Map(_) => {
                        return Err((
                            path.clone(),
                            loc(&k.referenced),
                            "mapping keys must be strings".into(),
                        ));
                    }
                };
                let child = path.field(key.as_str());
                locations.keys.insert(child.clone(), loc(&k.referenced));
                let value = to_json(v, &child, locations)?;
                map.insert(key, value);
            }
            Value::Object(map)
        }
    })
}

/// The resources in one document: the document itself, or the items of a JSON array or a
/// `kind: List`.
fn split_list(value: &Value) -> Vec<(FieldPath, &Value)> {
    match value {
        Value::Array(items) => {
            items.iter().enumerate().map(|(i, v)| (FieldPath::root().index(i), v)).collect()
        }
        Value::Object(map)
            if map.get("kind").and_then(Value::as_str) == Some("List")
                && map.get("items").is_some_and(Value::is_array) =>
        {
            let items = map.get("items").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            items
                .iter()
                .enumerate()
                .map(|(i, v)| (FieldPath::root().field("items").index(i), v))
                .collect()
        }
        other => vec![(FieldPath::root(), other)],
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Checks the envelope of one resource and reads it into its typed form.
fn read_resource(
    doc: usize,
    prefix: FieldPath,
    value: &Value,
    all: &Locations,
) -> Result<ParsedDocument, Vec<ManifestError>> {
    let locations = all.subtree(&prefix);
    let (line, column) = locations.value(&FieldPath::root()).unwrap_or((1, 1));
    let err = |path: FieldPath, at: (u64, u64), message: String| ManifestError {
        doc,
        path: prefix.join(&path),
        line: at.0,
        column: at.1,
        message,
    };
    let Value::Object(map) = value else {
        return Err(vec![err(
            FieldPath::root(),
            (line, column),
            format!(
                "a resource must be a mapping with apiVersion, kind, metadata and spec, not {}",
                describe(value)
            ),
        )]);
    };
    let mut errors = Vec::new();
    let at =
        |field: &str| locations.value(&FieldPath::root().field(field)).unwrap_or((line, column));
    match map.get("apiVersion") {
        None => errors.push(err(
            FieldPath::root(),
            (line, column),
            format!("missing apiVersion (expected {API_VERSION})"),
        )),
        Some(Value::String(v)) if v == API_VERSION => {}
        Some(v) => errors.push(err(
            FieldPath::root().field("apiVersion"),
            at("apiVersion"),
            format!("unsupported apiVersion {v} (expected {API_VERSION})"),
        )),
    }
    let kind = match map.get("kind") {
        None => {
            errors.push(err(
                FieldPath::root(),
                (line, column),
                "missing kind (expected one of: Container, Image)".into(),
            ));
            None
        }
        Some(Value::String(k)) => match k.parse::<Kind>() {
            Ok(kind) => Some(kind),
            Err(e) => {
                errors.push(err(FieldPath::root().field("kind"), at("kind"), e.to_string()));
                None
            }
        },
        Some(v) => {
            errors.push(err(
                FieldPath::root().field("kind"),
                at("kind"),
                format!("kind must be a string, not {}", describe(v)),
            ));
            None
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let typed = match kind {
        Some(Kind::Container) => {
            typed::<Container>(value, &locations).map(|c| Resource::Container(Box::new(c)))
        }
        Some(Kind::Image) => {
            typed::<Image>(value, &locations).map(|i| Resource::Image(Box::new(i)))
        }
        None => return Err(errors),
    };
    match typed {
        Ok(resource) => Ok(ParsedDocument { doc, prefix, line, column, resource, locations }),
        Err((path, at, message)) => Err(vec![err(path, at, message)]),
    }
}

/// Reads a JSON value into `T`, naming the field of the first error and locating it.
fn typed<T: DeserializeOwned>(value: &Value, locations: &Locations) -> Result<T, Located> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let mut path = convert_path(e.path());
        let message = e.inner().to_string();
        if let Some(field) = unknown_field_name(&message) {
            // serde_path_to_error stops at the mapping that holds the unknown key.
            if path.segments().last() != Some(&Segment::Field(field.to_owned())) {
                path = path.field(field);
            }
            let at = locations.key(&path).unwrap_or((1, 1));
            return (path, at, unknown_field_message(field, &message));
        }
        let at = locations.value(&path).unwrap_or((1, 1));
        (path, at, message)
    })
}

fn convert_path(p: &serde_path_to_error::Path) -> FieldPath {
    let mut out = FieldPath::root();
    for seg in p.iter() {
        out = match seg {
            serde_path_to_error::Segment::Seq { index } => out.index(*index),
            serde_path_to_error::Segment::Map { key } => out.field(key.as_str()),
            serde_path_to_error::Segment::Enum { variant } => out.field(variant.as_str()),
            serde_path_to_error::Segment::Unknown => out,
        };
    }
    out
}

/// The field name in serde's "unknown field `x`, expected ..." message.
fn unknown_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(name, _)| name)
}

/// "unknown field `imagePolicy` (did you mean `imagePullPolicy`?)", without serde's long list.
fn unknown_field_message(field: &str, serde_message: &str) -> String {
    let expected: Vec<&str> = serde_message
        .split_once("expected")
        .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    let best = expected
        .iter()
        .map(|cand| (edit_distance(&field.to_ascii_lowercase(), &cand.to_ascii_lowercase()), cand))
        .filter(|(d, cand)| *d <= 2.max(cand.len() / 3))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, cand)) => format!("unknown field `{field}` (did you mean `{cand}`?)"),
        None if expected.is_empty() => format!("unknown field `{field}`"),
        None => format!("unknown field `{field}` (known fields: {})", expected.join(", ")),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<ParsedDocument>, Vec<ManifestError>> {
        parse_and_validate(s.as_bytes(), &ParseLimits::default())
    }

    fn one_error(s: &str) -> ManifestError {
        let errs = parse(s).expect_err("the manifest should be refused");
        assert_eq!(errs.len(), 1, "{errs:#?}");
        errs.into_iter().next().unwrap()
    }

    const WEB: &str = "apiVersion: berth.dev/v1\nkind: Container\nmetadata:\n  name: web\nspec:\n  image: nginx:1.27\n";

    #[test]
    fn a_single_container_parses_with_its_location() {
        let docs = parse(WEB).unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!((docs[0].doc, docs[0].line, docs[0].column), (0, 1, 1));
        assert_eq!(docs[0].resource.key().to_string(), "Container/default/web");
        assert_eq!(docs[0].locate(&FieldPath::parse("spec.image")), (6, 10));
    }

    #[test]
    fn documents_are_numbered_and_located_in_a_stream() {
        let s = format!("# comment\n---\n{WEB}---\n---\n{}", WEB.replace("web", "api"));
        let docs = parse(&s).unwrap();
        assert_eq!(docs.iter().map(|d| (d.doc, d.line)).collect::<Vec<_>>(), [(0, 3), (2, 11)]);
    }

    #[test]
    fn unknown_fields_are_refused_at_their_key_with_a_suggestion() {
        let e = one_error(&format!("{WEB}  imagePolicy: Always\n"));
        assert_eq!(e.path.to_string(), "spec.imagePolicy");
        assert_eq!((e.line, e.column), (7, 3));
        assert!(e.message.contains("did you mean `imagePullPolicy`"), "{}", e.message);
    }

    #[test]
    fn type_errors_name_the_field_and_its_line() {
        let s = format!("{WEB}  ports:\n    - containerPort: 80\n    - containerPort: http\n");
        let e = one_error(&s);
        assert_eq!(e.path.to_string(), "spec.ports[1].containerPort");
        assert_eq!((e.line, e.column), (9, 22));
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_line() {
        let e = one_error(&format!("{WEB}  image: busybox\n"));
        assert_eq!(e.line, 7, "{e:?}");
        assert!(e.message.to_lowercase().contains("duplicate"), "{}", e.message);
    }

    #[test]
    fn validation_errors_are_located_too() {
        let s = WEB.replace("nginx:1.27", "Nginx");
        let e = one_error(&s);
        assert_eq!(e.path.to_string(), "spec.image");
        assert_eq!((e.line, e.column), (6, 10));
    }

    #[test]
    fn errors_of_every_document_are_reported() {
        let s = format!(
            "{}---\n{}",
            WEB.replace("berth.dev/v1", "v1"),
            WEB.replace("Container", "Pod")
        );
        let errs = parse(&s).unwrap_err();
        let got: Vec<(usize, String, u64)> =
            errs.iter().map(|e| (e.doc, e.path.to_string(), e.line)).collect();
        assert_eq!(got, [(0, "apiVersion".into(), 1), (1, "kind".into(), 9)]);
    }

    #[test]
    fn json_arrays_and_lists_hold_several_resources() {
        let item = r#"{"apiVersion":"berth.dev/v1","kind":"Image","metadata":{"name":"pg"},"spec":{"reference":"postgres:16"}}"#;
        let docs = parse(&format!("[{item}, {}]", item.replace("pg", "redis"))).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].prefix.to_string(), "[1]");
        let list = format!(
            r#"{{"kind":"List","items":[{item}, {}]}}"#,
            item.replace("pg", "pg2").replace("16", "-bad")
        );
        let errs = parse(&list).unwrap_err();
        assert_eq!(errs[0].path.to_string(), "items[1].spec.reference");
    }

    #[test]
    fn a_resource_defined_twice_in_one_stream_is_refused() {
        let e = one_error(&format!("{WEB}---\n{WEB}"));
        assert_eq!((e.doc, e.path.to_string(), e.line), (1, "metadata.name".into(), 11));
        assert!(e.message.contains("first at line 1"), "{}", e.message);
    }

    #[test]
    fn yaml_one_one_booleans_stay_strings() {
        let s = WEB.replace("  name: web\n", "  name: web\n  labels: {n: no, on: yes}\n");
        let docs = parse(&s).unwrap();
        let labels = &docs[0].resource.metadata().labels;
        assert_eq!(labels.get("n").map(String::as_str), Some("no"));
        assert_eq!(labels.get("on").map(String::as_str), Some("yes"));
        let e = one_error(&format!("{WEB}  init: yes\n"));
        assert_eq!((e.path.to_string(), e.line), ("spec.init".into(), 7));
    }

    #[test]
    fn an_empty_stream_is_refused() {
        for s in ["", "# just a comment\n", "---\n---\n"] {
            let e = one_error(s);
            assert!(e.message.contains("no resources"), "{}", e.message);
        }
    }

    #[test]
    fn carriage_returns_end_lines_as_yaml_says() {
        assert_eq!(yaml_lines("a\r\nb\rc\nd").collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        assert_eq!(line_col_of_offset(b"a\r\nb\rcd", 7), (3, 3));
        let s = DocumentStarts::scan("a: 1\r---\rb: 2\r");
        assert_eq!(s.0, [1, 2]);
    }

    #[test]
    fn document_starts_follow_markers() {
        let s = DocumentStarts::scan("a: 1\n---\nb: 2\n...\nc: 3\n--- \nd: 4\n");
        assert_eq!(s.0, [1, 2, 5, 6]);
        assert_eq!(s.doc_of(3), 1);
        let s = DocumentStarts::scan("%YAML 1.2\n---\na: 1\n");
        assert_eq!(s.0, [2]);
    }
}
