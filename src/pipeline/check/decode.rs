//! The shape pass: TOML syntax, then each element deserialized on its own, every unknown key
//! and every value of the wrong type reported on its own line.

use serde::de::{DeserializeOwned, IntoDeserializer as _};
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::Report;
use crate::pipeline::declaration::{AlertDecl, DashboardDecl, Declaration, FactDecl, StreamDecl};

/// One `[[stream]]`, `[[fact]]`, `[[dashboard]]` or `[[alert]]`: as written, and as
/// deserialized if it has the right shape.
pub(super) struct Elem<'i, T> {
    /// The table as written (spans into the text), without the keys and tables the shape
    /// pass reported.
    pub raw: Spanned<DeValue<'i>>,
    /// Its key path: `stream[orders]` (by name, else by 0-based index).
    pub key: String,
    /// The deserialized element without what the shape pass reported (`None`: it has no
    /// such thing: a required key is missing or has the wrong type).
    pub decl: Option<T>,
}

impl<T> Elem<'_, T> {
    /// The name as written, if it is a string.
    pub fn name(&self) -> Option<&str> {
        name_of(&self.raw)
    }
}

/// The declaration, element by element.
pub(super) struct Doc<'i> {
    pub streams: Vec<Elem<'i, StreamDecl>>,
    pub facts: Vec<Elem<'i, FactDecl>>,
    pub dashboards: Vec<Elem<'i, DashboardDecl>>,
    pub alerts: Vec<Elem<'i, AlertDecl>>,
    /// Whether the file has a `stream` key at all (of any shape).
    pub stream_key: bool,
}

impl Doc<'_> {
    /// The elements of the right shape, as a declaration.
    pub fn declaration(&self) -> Declaration {
        fn decls<T: Clone>(v: &[Elem<'_, T>]) -> Vec<T> {
            v.iter().filter_map(|e| e.decl.clone()).collect()
        }
        Declaration {
            streams: decls(&self.streams),
            facts: decls(&self.facts),
            dashboards: decls(&self.dashboards),
            alerts: decls(&self.alerts),
        }
    }
}

/// First line of a message, trimmed.
pub(super) fn first_line(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Parses the text and deserializes its elements; `None` if the TOML does not parse.
pub(super) fn decode<'t>(report: &mut Report<'t>) -> Option<Doc<'t>> {
    let (root, errors) = DeTable::parse_recoverable(report.text);
    if !errors.is_empty() {
        for e in errors {
            let offset = e.span().map_or(0, |s| s.start);
            report.at(offset, "toml", first_line(e.message()));
        }
        return None;
    }
    let mut doc = Doc {
        streams: Vec::new(),
        facts: Vec::new(),
        dashboards: Vec::new(),
        alerts: Vec::new(),
        stream_key: root.get_ref().contains_key("stream"),
    };
    for (k, v) in root.get_ref().iter() {
        match k.get_ref().as_ref() {
            "stream" => doc.streams = elements(report, "stream", v),
            "fact" => doc.facts = elements(report, "fact", v),
            "dashboard" => doc.dashboards = elements(report, "dashboard", v),
            "alert" => doc.alerts = elements(report, "alert", v),
            other => report.at(
                k.span().start,
                other,
                format!(
                    "unknown key `{other}`: a declaration has [[stream]], [[fact]], [[dashboard]] and [[alert]] tables"
                ),
            ),
        }
    }
    Some(doc)
}

fn name_of<'a>(v: &'a Spanned<DeValue<'_>>) -> Option<&'a str> {
    v.get_ref().as_table()?.get("name")?.get_ref().as_str()
}

fn elements<'i, T: DeserializeOwned>(
    report: &mut Report<'_>,
    section: &str,
    v: &Spanned<DeValue<'i>>,
) -> Vec<Elem<'i, T>> {
    let Some(array) = v.get_ref().as_array() else {
        report.at(
            v.span().start,
            section,
            format!(
                "expected an array of tables ([[{section}]]), found {}",
                v.get_ref().type_str()
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, e) in array.iter().enumerate() {
        let key = match name_of(e) {
            Some(n) => format!("{section}[{n}]"),
            None => format!("{section}[{i}]"),
        };
        if !e.get_ref().is_table() {
            report.at(
                e.span().start,
                &key,
                format!(
                    "expected a table ([[{section}]]), found {}",
                    e.get_ref().type_str()
                ),
            );
            continue;
        }
        let (decl, raw) = element(report, &key, e);
        out.push(Elem { raw, key, decl });
    }
    out
}

/// A step of a key path: a key, or an element of an array of tables.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn within(span: std::ops::Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

/// Whether `v` (or anything in it) was written at `offset`.
fn covers(v: &Spanned<DeValue<'_>>, offset: usize) -> bool {
    within(v.span(), offset)
        || match v.get_ref() {
            DeValue::Table(t) => t
                .iter()
                .any(|(k, x)| within(k.span(), offset) || covers(x, offset)),
            DeValue::Array(a) => a.iter().any(|x| covers(x, offset)),
            _ => false,
        }
}

/// The path of the deepest key whose key or value was written at `offset`.
fn locate(v: &Spanned<DeValue<'_>>, offset: usize) -> Vec<Seg> {
    let mut path = Vec::new();
    let mut cur = v;
    while let DeValue::Table(t) = cur.get_ref() {
        let mut next = None;
        for (k, x) in t.iter() {
            if within(k.span(), offset) {
                path.push(Seg::Key(k.get_ref().to_string()));
                return path;
            }
            if covers(x, offset) {
                path.push(Seg::Key(k.get_ref().to_string()));
                next = Some(x);
                break;
            }
        }
        let Some(x) = next else { break };
        match x.get_ref() {
            DeValue::Table(_) => cur = x,
            DeValue::Array(a) => {
                match a
                    .iter()
                    .position(|e| e.get_ref().is_table() && covers(e, offset))
                {
                    Some(i) => {
                        path.push(Seg::Index(i));
                        cur = &a[i];
                    }
                    None => break,
                }
            }
            _ => break,
        }
    }
    path
}

/// `base` followed by `path` (elements by name where they have one).
fn render(base: &str, v: &Spanned<DeValue<'_>>, path: &[Seg]) -> String {
    let mut out = base.to_string();
    let mut cur = Some(v);
    for seg in path {
        match seg {
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
                cur = cur
                    .and_then(|c| c.get_ref().as_table())
                    .and_then(|t| t.get(k.as_str()));
            }
            Seg::Index(i) => {
                let e = cur
                    .and_then(|c| c.get_ref().as_array())
                    .and_then(|a| a.get(*i));
                match e.and_then(name_of) {
                    Some(n) => out.push_str(&format!("[{n}]")),
                    None => out.push_str(&format!("[{i}]")),
                }
                cur = e;
            }
        }
    }
    out
}

/// Removes what `path` names from `v`.
fn remove(v: &mut Spanned<DeValue<'_>>, path: &[Seg]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for seg in parents {
        let next = match (seg, cur.get_mut()) {
            (Seg::Key(k), DeValue::Table(t)) => t.get_mut(k.as_str()),
            (Seg::Index(i), DeValue::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match (last, cur.get_mut()) {
        (Seg::Key(k), DeValue::Table(t)) => {
            t.remove(k.as_str());
        }
        (Seg::Index(i), DeValue::Array(a)) => {
            let kept: DeArray<'_> = std::mem::replace(a, DeArray::from_iter([]))
                .into_iter()
                .enumerate()
                .filter(|(j, _)| j != i)
                .map(|(_, e)| e)
                .collect();
            *a = kept;
        }
        _ => {}
    }
}

/// Serde's messages, where they do not say what was expected.
fn plain(message: &str) -> String {
    match message {
        "wanted string or table" => "expected a string".into(),
        m if m.contains("untagged enum Values") => {
            "expected a list of integers or a list of strings".into()
        }
        m if m.contains("untagged enum Number") => "expected a number".into(),
        m => m.to_string(),
    }
}

/// `missing field `x`` → `x`.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// Deserializes one element, reporting each key that stops it (the key, or the table missing
/// a key, is then dropped and the element tried again, so that every mistake in it is
/// reported): the element without them, and what is left of the table.
fn element<'i, T: DeserializeOwned>(
    report: &mut Report<'_>,
    base: &str,
    raw: &Spanned<DeValue<'i>>,
) -> (Option<T>, Spanned<DeValue<'i>>) {
    let mut v = raw.clone();
    let mut dropped: Vec<(Vec<Seg>, String)> = Vec::new();
    // Each round drops a key or a table: bounded by the size of the element.
    for _ in 0..1000 {
        let e = match T::deserialize(v.clone().into_deserializer()) {
            Ok(t) => return (Some(t), v),
            Err(e) => e,
        };
        let offset = e.span().map_or(raw.span().start, |s| s.start);
        let message = plain(&first_line(e.message()));
        let path = locate(&v, offset);
        if let Some(field) = missing_field(&message) {
            if !dropped.contains(&(path.clone(), field.to_string())) {
                let key = format!("{}.{field}", render(base, &v, &path));
                report.at(offset, key, message.clone());
            }
            if path.is_empty() {
                return (None, v);
            }
        } else {
            report.at(offset, render(base, &v, &path), message.clone());
            match path.split_last() {
                Some((Seg::Key(k), parent)) => dropped.push((parent.to_vec(), k.clone())),
                Some(_) => {}
                None => return (None, v),
            }
        }
        remove(&mut v, &path);
    }
    (None, v)
}

/// Byte offset of `key` in the table `raw` (of the table itself if the key is absent).
pub(super) fn key_offset(raw: &Spanned<DeValue<'_>>, key: &str) -> usize {
    raw.get_ref()
        .as_table()
        .and_then(|t| t.get_key_value(key))
        .map_or(raw.span().start, |(k, _)| k.span().start)
}

/// The `i`-th table of the array of tables `key` in `raw`.
pub(super) fn sub<'a, 'i>(
    raw: &'a Spanned<DeValue<'i>>,
    key: &str,
    i: usize,
) -> Option<&'a Spanned<DeValue<'i>>> {
    raw.get_ref()
        .as_table()?
        .get(key)?
        .get_ref()
        .as_array()?
        .get(i)
}
