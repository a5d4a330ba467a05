//! The active pipeline: the declaration this process runs, compiled once into the stream
//! schemas, facts, dashboards and rules the layers read ([`active`]).
//!
//! A process runs one pipeline, chosen before any work starts (`--pipeline`,
//! `LAKEPIPE_PIPELINE`, `pipeline =` in the config, else the built-in one) and installed with
//! [`install`]; like a global `tracing` subscriber it is then fixed for the process's life, so
//! the layers keep their `&'static` schemas. Its strings are leaked once, a few kilobytes.

use std::path::PathBuf;
use std::sync::OnceLock;

use super::declaration::{Declaration, FieldDecl, FieldType, SpreadDecl, StreamDecl, Values};
use crate::layers::batch::gold::Fact;
use crate::layers::serving::alerts::Rule;
use crate::layers::serving::dashboards::Dashboard;
use crate::sources::stream::{Derived, Field, Kind, Spread, SqlRule, StreamSpec, seed_streams};

/// The compiled pipeline.
#[derive(Debug)]
pub struct Active {
    /// The declaration, as `pipeline show` prints it.
    pub declaration: Declaration,
    /// The file it came from (`None`: the built-in one).
    pub source: Option<PathBuf>,
    /// The streams, in DAG order.
    pub streams: &'static [&'static StreamSpec],
    /// The gold facts, in DAG order.
    pub facts: &'static [Fact],
    /// The dashboards.
    pub dashboards: &'static [Dashboard],
    /// The alert rules.
    pub rules: &'static [Rule],
}

static ACTIVE: OnceLock<Active> = OnceLock::new();

/// The active pipeline: the installed one, else the built-in one.
pub fn active() -> &'static Active {
    ACTIVE.get_or_init(|| compile(super::builtin(), None))
}

/// Installs `declaration` (already checked: [`super::check`]) as this process's pipeline.
/// Fails if another one is active already (something read the pipeline before).
pub fn install(
    declaration: Declaration,
    source: Option<PathBuf>,
) -> Result<&'static Active, super::Error> {
    let mut fresh = Some(compile(declaration, source));
    let got = ACTIVE.get_or_init(|| fresh.take().expect("initialised once"));
    match fresh {
        None => Ok(got),
        Some(_) => Err(super::Error::AlreadyActive),
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn leak_slice<T>(v: Vec<T>) -> &'static [T] {
    Box::leak(v.into_boxed_slice())
}

/// Compiles a checked declaration (what [`super::check`] accepts compiles; anything else is
/// compiled as best it can).
pub(crate) fn compile(declaration: Declaration, source: Option<PathBuf>) -> Active {
    let streams: Vec<&'static StreamSpec> = declaration
        .streams
        .iter()
        .map(|s| &*Box::leak(Box::new(stream(s))))
        .collect();
    let facts = declaration
        .facts
        .iter()
        .map(|f| Fact {
            name: leak(&f.name),
            stream: leak(&f.stream),
            sql: leak(&f.sql),
        })
        .collect();
    let dashboards = declaration
        .dashboards
        .iter()
        .map(|d| Dashboard {
            name: leak(&d.name),
            stream: leak(&d.stream),
            minutes: d.window_minutes,
            sql: leak(&d.sql),
        })
        .collect();
    let rules = declaration
        .alerts
        .iter()
        .map(|a| Rule {
            name: leak(&a.name),
            stream: leak(&a.stream),
            minutes: a.window_minutes,
            threshold: a.threshold,
            severity: leak(&a.severity),
            id: leak(&a.id),
            sql: leak(&a.sql),
        })
        .collect();
    Active {
        declaration,
        source,
        streams: leak_slice(streams),
        facts: leak_slice(facts),
        dashboards: leak_slice(dashboards),
        rules: leak_slice(rules),
    }
}

fn stream(s: &StreamDecl) -> StreamSpec {
    let generator = s
        .generator
        .as_deref()
        .and_then(|g| seed_streams().into_iter().find(|seed| seed.name == g));
    StreamSpec {
        name: leak(&s.name),
        id_field: leak(&s.id_field),
        per_run: generator.map_or(0, |g| g.per_run),
        fields: leak_slice(s.fields.iter().map(field).collect()),
        generate: generator.and_then(|g| g.generate),
        event_time_field: leak(&s.event_time_field),
        title: leak(s.title.as_deref().unwrap_or(&s.name)),
        derived: leak_slice(
            s.derived
                .iter()
                .map(|d| Derived {
                    name: leak(&d.name),
                    sql: leak(&d.sql),
                })
                .collect(),
        ),
        rules: leak_slice(
            s.expectations
                .iter()
                .map(|e| SqlRule {
                    name: leak(&e.name),
                    sql: leak(&e.sql),
                    action: e.action,
                })
                .collect(),
        ),
    }
}

fn strings(v: &Option<Values>) -> Option<&'static [&'static str]> {
    match v {
        Some(Values::Strings(s)) => Some(leak_slice(s.iter().map(|s| leak(s)).collect())),
        _ => None,
    }
}

/// The schema kind of a declared field.
pub(crate) fn kind(f: &FieldDecl) -> Kind {
    match f.ty {
        FieldType::String => strings(&f.values).map_or(Kind::Str, Kind::Enum),
        FieldType::Tags => Kind::Tags(strings(&f.values).unwrap_or(&[])),
        FieldType::Bool => Kind::Bool,
        FieldType::Int => match &f.values {
            Some(Values::Ints(set)) => Kind::IntEnum(leak_slice(set.clone())),
            _ => Kind::Int {
                min: f.min.and_then(|n| n.as_i64()).unwrap_or(i64::MIN),
                max: f.max.and_then(|n| n.as_i64()).unwrap_or(i64::MAX),
            },
        },
        FieldType::Float => Kind::Float {
            min: f.min.map_or(f64::NEG_INFINITY, |n| n.as_f64()),
            max: f.max.map_or(f64::INFINITY, |n| n.as_f64()),
        },
    }
}

fn field(f: &FieldDecl) -> Field {
    Field {
        name: leak(&f.name),
        kind: kind(f),
        nullable: f.nullable,
        spread: match f.spread {
            SpreadDecl::Repeated => Spread::Repeated,
            SpreadDecl::Distinct => Spread::Distinct,
            SpreadDecl::Random => Spread::Random,
        },
    }
}
