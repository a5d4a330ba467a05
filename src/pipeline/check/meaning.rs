//! The meaning pass (all but the SQL): names, duplicates, generators, allowed values and
//! bounds, stream references, windows and alert ids.

use std::collections::BTreeMap;

use toml::Spanned;
use toml::de::DeValue;

use super::Report;
use super::decode::{Doc, Elem, key_offset, sub};
use crate::pipeline::declaration::{FieldDecl, FieldType, ID_PLACEHOLDERS, StreamDecl, Values};
use crate::sources::stream::seed_streams;

/// Longest name.
pub(super) const MAX_NAME: usize = 64;

/// Most fields a stream may have (the cleaner keeps one bit per field).
pub(super) const MAX_FIELDS: usize = 128;

/// Longest alert window: a week.
pub(super) const MAX_WINDOW_MINUTES: i64 = 7 * 24 * 60;

/// Columns the layers add to a stream's own: the event time, the lineage columns, the date
/// partition, the serving layer's origin column and its de-duplication rank.
pub(super) const RESERVED: [&str; 8] = [
    "event_time",
    "date",
    "_source_key",
    "_line",
    "_ingest_run",
    "_batch_run",
    "_source",
    "_rn",
];

/// The built-in expectations (besides one `<field>_valid` per field).
pub(super) const BUILTIN_RULES: [&str; 6] = [
    "valid_utf8",
    "valid_json",
    "id_present",
    "event_time_parses",
    "event_time_not_future",
    "event_time_on_time",
];

/// Why `name` is not an acceptable name, if it is not.
pub(super) fn bad_identifier(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let ok = match chars.next() {
        Some(c) => {
            (c.is_ascii_lowercase() || c == '_')
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        }
        None => return Some("the name is empty".into()),
    };
    if !ok {
        return Some(format!(
            "`{name}` is not an identifier: use lower-case letters, digits and `_`, not starting with a digit (names become lake paths and SQL identifiers)"
        ));
    }
    if name.len() > MAX_NAME {
        return Some(format!("`{name}` is longer than {MAX_NAME} characters"));
    }
    None
}

struct Ctx<'r, 't> {
    report: &'r mut Report<'t>,
}

impl Ctx<'_, '_> {
    fn at(&mut self, offset: usize, key: String, message: impl Into<String>) {
        self.report.at(offset, key, message);
    }

    fn line(&self, offset: usize) -> usize {
        super::line_of(self.report.text, offset)
    }

    /// Checks the name under `key` of `raw`.
    fn identifier(&mut self, raw: &Spanned<DeValue<'_>>, base: &str, key: &str, name: &str) {
        if let Some(m) = bad_identifier(name) {
            self.at(key_offset(raw, key), format!("{base}.{key}"), m);
        }
    }

    /// Reports the elements whose name another one before already has.
    fn unique<T>(&mut self, what: &str, elems: &[Elem<'_, T>]) {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for e in elems {
            let Some(name) = e.name() else { continue };
            let offset = key_offset(&e.raw, "name");
            match seen.get(name) {
                Some(first) => {
                    let m = format!(
                        "duplicate {what} name `{name}` (first declared on line {})",
                        self.line(*first)
                    );
                    self.at(offset, format!("{}.name", e.key), m);
                }
                None => {
                    seen.insert(name, offset);
                }
            }
        }
    }

    /// Checks that `stream` (under the key `stream` of `e`) is declared.
    fn stream_ref<T>(&mut self, e: &Elem<'_, T>, stream: &str, declared: &[&str]) {
        if !declared.contains(&stream) {
            let m = format!(
                "`{stream}` is not a declared stream (declared: {})",
                if declared.is_empty() {
                    "none".to_string()
                } else {
                    declared.join(", ")
                }
            );
            self.at(key_offset(&e.raw, "stream"), format!("{}.stream", e.key), m);
        }
    }

    fn window(&mut self, raw: &Spanned<DeValue<'_>>, base: &str, minutes: i64) {
        if !(1..=MAX_WINDOW_MINUTES).contains(&minutes) {
            self.at(
                key_offset(raw, "window_minutes"),
                format!("{base}.window_minutes"),
                format!("{minutes} is not a window: it must be 1 to {MAX_WINDOW_MINUTES} minutes (a week)"),
            );
        }
    }
}

/// Checks everything but the SQL.
pub(super) fn check(report: &mut Report<'_>, doc: &Doc<'_>) {
    let mut c = Ctx { report };
    if doc.streams.is_empty() && !doc.stream_key {
        c.at(
            0,
            "stream".into(),
            "no [[stream]]: a pipeline declares at least one stream",
        );
    }
    c.unique("stream", &doc.streams);
    c.unique("fact", &doc.facts);
    c.unique("dashboard", &doc.dashboards);
    c.unique("alert", &doc.alerts);
    let mut declared: Vec<&str> = doc.streams.iter().filter_map(|e| e.name()).collect();
    let mut seen = std::collections::BTreeSet::new();
    declared.retain(|n| seen.insert(*n));
    for e in &doc.streams {
        if let Some(s) = &e.decl {
            stream(&mut c, e, s);
        }
    }
    for e in &doc.facts {
        if let Some(f) = &e.decl {
            c.identifier(&e.raw, &e.key, "name", &f.name);
            c.stream_ref(e, &f.stream, &declared);
        }
    }
    for e in &doc.dashboards {
        if let Some(d) = &e.decl {
            c.identifier(&e.raw, &e.key, "name", &d.name);
            c.stream_ref(e, &d.stream, &declared);
            c.window(&e.raw, &e.key, d.window_minutes);
        }
    }
    for e in &doc.alerts {
        let Some(a) = &e.decl else { continue };
        c.identifier(&e.raw, &e.key, "name", &a.name);
        c.stream_ref(e, &a.stream, &declared);
        c.window(&e.raw, &e.key, a.window_minutes);
        if !a.threshold.is_finite() {
            c.at(
                key_offset(&e.raw, "threshold"),
                format!("{}.threshold", e.key),
                "the threshold must be a finite number",
            );
        }
        if a.severity.trim().is_empty() {
            c.at(
                key_offset(&e.raw, "severity"),
                format!("{}.severity", e.key),
                "the severity is empty",
            );
        }
        for m in id_template(&a.id) {
            c.at(key_offset(&e.raw, "id"), format!("{}.id", e.key), m);
        }
    }
}

/// The mistakes of an alert id template.
pub(super) fn id_template(id: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut subject = false;
    let mut rest = id;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            out.push("unclosed `{` in the id template".to_string());
            break;
        };
        let name = &rest[open + 1..close];
        if name == "subject" {
            subject = true;
        }
        if !ID_PLACEHOLDERS.contains(&name) {
            out.push(format!(
                "unknown placeholder `{{{name}}}`: the id template may use {}",
                ID_PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
            ));
        }
        rest = &rest[close + 1..];
    }
    if !subject {
        out.push("the id template must contain `{subject}` (else every subject of a run shares one alert id)".to_string());
    }
    out
}

fn stream(c: &mut Ctx<'_, '_>, e: &Elem<'_, StreamDecl>, s: &StreamDecl) {
    let (raw, base) = (&e.raw, e.key.as_str());
    c.identifier(raw, base, "name", &s.name);
    c.identifier(raw, base, "id_field", &s.id_field);
    c.identifier(raw, base, "event_time_field", &s.event_time_field);
    if let Some(g) = &s.generator {
        let seeds = seed_streams().map(|s| s.name);
        if !seeds.contains(&g.as_str()) {
            c.at(
                key_offset(raw, "generator"),
                format!("{base}.generator"),
                format!(
                    "unknown generator `{g}` (the generators are: {})",
                    seeds.join(", ")
                ),
            );
        }
    }
    if s.fields.len() > MAX_FIELDS {
        c.at(
            key_offset(raw, "field"),
            format!("{base}.field"),
            format!(
                "{} fields: a stream has at most {MAX_FIELDS}",
                s.fields.len()
            ),
        );
    }
    // Every column name and JSON key of the stream, with where it was first declared.
    let mut names: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut claim = |c: &mut Ctx<'_, '_>, name: &str, offset: usize, key: String, what: &str| {
        if RESERVED.contains(&name) && what != "the event_time_field" {
            c.at(
                offset,
                key,
                format!(
                    "`{name}` is a column the pipeline adds (reserved: {})",
                    RESERVED.join(", ")
                ),
            );
        } else if let Some((first, other)) = names.get(name) {
            let m = format!(
                "duplicate name `{name}`: already {other} (line {})",
                c.line(*first)
            );
            c.at(offset, key, m);
        } else {
            names.insert(name.to_string(), (offset, what.to_string()));
        }
    };
    claim(
        c,
        &s.id_field,
        key_offset(raw, "id_field"),
        format!("{base}.id_field"),
        "the id_field",
    );
    claim(
        c,
        &s.event_time_field,
        key_offset(raw, "event_time_field"),
        format!("{base}.event_time_field"),
        "the event_time_field",
    );
    for (i, f) in s.fields.iter().enumerate() {
        let fraw = sub(raw, "field", i).unwrap_or(raw);
        let fbase = format!("{base}.field[{}]", f.name);
        c.identifier(fraw, &fbase, "name", &f.name);
        claim(
            c,
            &f.name,
            key_offset(fraw, "name"),
            format!("{fbase}.name"),
            "a field",
        );
        field(c, fraw, &fbase, f);
    }
    for (i, d) in s.derived.iter().enumerate() {
        let draw = sub(raw, "derived", i).unwrap_or(raw);
        let dbase = format!("{base}.derived[{}]", d.name);
        c.identifier(draw, &dbase, "name", &d.name);
        claim(
            c,
            &d.name,
            key_offset(draw, "name"),
            format!("{dbase}.name"),
            "a derived column",
        );
    }
    let mut rules: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, x) in s.expectations.iter().enumerate() {
        let xraw = sub(raw, "expect", i).unwrap_or(raw);
        let xbase = format!("{base}.expect[{}]", x.name);
        c.identifier(xraw, &xbase, "name", &x.name);
        let offset = key_offset(xraw, "name");
        let builtin = BUILTIN_RULES.contains(&x.name.as_str())
            || s.fields
                .iter()
                .any(|f| format!("{}_valid", f.name) == x.name);
        if builtin {
            c.at(
                offset,
                format!("{xbase}.name"),
                format!("`{}` is the name of a built-in expectation", x.name),
            );
        } else if let Some(first) = rules.get(x.name.as_str()) {
            let m = format!(
                "duplicate expectation name `{}` (first declared on line {})",
                x.name,
                c.line(*first)
            );
            c.at(offset, format!("{xbase}.name"), m);
        } else {
            rules.insert(&x.name, offset);
        }
    }
}

fn field(c: &mut Ctx<'_, '_>, raw: &Spanned<DeValue<'_>>, base: &str, f: &FieldDecl) {
    let ty = match f.ty {
        FieldType::String => "string",
        FieldType::Int => "int",
        FieldType::Float => "float",
        FieldType::Bool => "bool",
        FieldType::Tags => "tags",
    };
    if let Some(values) = &f.values {
        let at = key_offset(raw, "values");
        let key = format!("{base}.values");
        let (len, strings) = match values {
            Values::Ints(v) => (v.len(), false),
            Values::Strings(v) => (v.len(), true),
        };
        if !matches!(f.ty, FieldType::String | FieldType::Int | FieldType::Tags) {
            c.at(
                at,
                key,
                format!("values are for string, int and tags fields, not a {ty} field"),
            );
        } else if len == 0 {
            c.at(at, key, "values is empty");
        } else if strings == (f.ty == FieldType::Int) {
            let want = if f.ty == FieldType::Int {
                "integers"
            } else {
                "strings"
            };
            c.at(at, key, format!("the values of a {ty} field are {want}"));
        } else {
            let mut seen = std::collections::BTreeSet::new();
            let keys: Vec<String> = match values {
                Values::Ints(v) => v.iter().map(i64::to_string).collect(),
                Values::Strings(v) => v.iter().map(|s| s.trim().to_lowercase()).collect(),
            };
            if let Some(d) = keys.iter().find(|k| !seen.insert(k.as_str())) {
                c.at(
                    at,
                    key,
                    format!("`{d}` is listed twice (values match trimmed and case-insensitively)"),
                );
            }
        }
    }
    let numeric = matches!(f.ty, FieldType::Int | FieldType::Float);
    for (name, bound) in [("min", f.min), ("max", f.max)] {
        let Some(n) = bound else { continue };
        let (at, key) = (key_offset(raw, name), format!("{base}.{name}"));
        if !numeric {
            c.at(
                at,
                key,
                format!("{name} is for int and float fields, not a {ty} field"),
            );
        } else if f.values.is_some() {
            c.at(
                at,
                key,
                format!("{name} does not apply to a field with values"),
            );
        } else if f.ty == FieldType::Int && n.as_i64().is_none() {
            c.at(
                at,
                key,
                format!("{name} of an int field must be an integer"),
            );
        } else if n.as_f64().is_nan() {
            c.at(at, key, format!("{name} is not a number"));
        }
    }
    if let (true, Some(min), Some(max)) = (numeric, f.min, f.max)
        && min.as_f64() > max.as_f64()
    {
        c.at(
            key_offset(raw, "min"),
            format!("{base}.min"),
            format!(
                "min ({}) is greater than max ({})",
                min.as_f64(),
                max.as_f64()
            ),
        );
    }
}
