//! The pipeline declaration as a user writes it (`pipeline.toml`): streams with their fields,
//! expectations and derived columns, gold facts, dashboards and alert rules. Parsing is
//! strict (unknown keys are errors); [`super::check`] validates the meaning, and
//! [`super::active`] compiles a checked declaration into what the layers run.

use serde::{Deserialize, Serialize};

/// A whole pipeline: `[[stream]]`, `[[fact]]`, `[[dashboard]]` and `[[alert]]` tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declaration {
    /// The event streams, in DAG order.
    #[serde(default, rename = "stream", skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamDecl>,
    /// Gold facts: SQL over one stream's `silver`, recomputed by the daily batch.
    #[serde(default, rename = "fact", skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<FactDecl>,
    /// Dashboards: SQL over one stream's window `w` (and `today`), every serving run.
    #[serde(default, rename = "dashboard", skip_serializing_if = "Vec::is_empty")]
    pub dashboards: Vec<DashboardDecl>,
    /// Alert rules: SQL over one stream's window `w`, every serving run.
    #[serde(default, rename = "alert", skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertDecl>,
}

/// One stream (`[[stream]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamDecl {
    /// Name: `realtime/<name>/`, the tables `batch/*/<name>`, `POST /ingest/<name>`.
    pub name: String,
    /// Display name (the analytics domain) [default: the name].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Key of the unique event id (a non-empty string).
    pub id_field: String,
    /// Key of the event time (an RFC 3339 string): it decides partitions and windows.
    #[serde(default = "default_event_time", skip_serializing_if = "is_event_time")]
    pub event_time_field: String,
    /// A built-in generator of synthetic events (the seed streams' names); without one the
    /// stream has no synthetic ingest DAG and its events come from the ingest API and inboxes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    /// The fields besides the id and the event time, in column order.
    #[serde(default, rename = "field")]
    pub fields: Vec<FieldDecl>,
    /// Expectations in SQL, checked after the fields' own checks, in order.
    #[serde(default, rename = "expect", skip_serializing_if = "Vec::is_empty")]
    pub expectations: Vec<ExpectDecl>,
    /// Derived silver columns, SQL over the typed columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub derived: Vec<DerivedDecl>,
}

fn default_event_time() -> String {
    "event_time".into()
}

fn is_event_time(s: &str) -> bool {
    s == "event_time"
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_repeated(s: &SpreadDecl) -> bool {
    *s == SpreadDecl::Repeated
}

/// One field (`[[stream.field]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDecl {
    /// JSON key and column name.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Whether null (or an absent key) is valid.
    #[serde(default, skip_serializing_if = "is_false")]
    pub nullable: bool,
    /// The allowed values (string, int and tags fields): an enum set, matched trimmed and
    /// case-insensitively and stored in the spelling given here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Values>,
    /// Smallest allowed value (int and float fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Number>,
    /// Largest allowed value (int and float fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Number>,
    /// How the values spread, which decides the column's Parquet encoding.
    #[serde(default, skip_serializing_if = "is_repeated")]
    pub spread: SpreadDecl,
}

/// Field types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// A string (Utf8).
    String,
    /// A 64-bit integer.
    Int,
    /// A 64-bit float.
    Float,
    /// A boolean.
    Bool,
    /// A list of strings.
    Tags,
}

/// An enum set: strings or integers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Values {
    /// Integers (an int field).
    Ints(Vec<i64>),
    /// Strings (a string or tags field).
    Strings(Vec<String>),
}

/// A bound: an integer or a float as written.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Number {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
}

impl Number {
    /// As a float.
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
    /// As an integer, if it is one.
    pub fn as_i64(self) -> Option<i64> {
        match self {
            Number::Int(i) => Some(i),
            Number::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
            Number::Float(_) => None,
        }
    }
}

/// How a field's values spread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpreadDecl {
    /// Values repeat: dictionary-encoded.
    #[default]
    Repeated,
    /// Nearly every value differs: no dictionary.
    Distinct,
    /// Random identifiers: no dictionary, no compression.
    Random,
}

/// One expectation (`[[stream.expect]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectDecl {
    /// Rule name, as written to quarantine.
    pub name: String,
    /// Boolean SQL over the typed columns; false breaks the rule (null does not).
    pub sql: String,
    /// `warn` (keep, count), `drop` (to quarantine) or `fail` (fail the task).
    pub action: crate::sources::stream::Action,
}

/// One derived column (`[[stream.derived]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedDecl {
    /// Column name.
    pub name: String,
    /// SQL expression over the typed columns.
    pub sql: String,
}

/// One gold fact (`[[fact]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactDecl {
    /// Table name under `batch/gold/`.
    pub name: String,
    /// The stream whose silver table it reads.
    pub stream: String,
    /// SELECT over `silver` (restricted to the dates a run touched); must output `date`.
    pub sql: String,
}

/// One dashboard (`[[dashboard]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardDecl {
    /// Table and document name under `serving/dashboards/`.
    pub name: String,
    /// The stream it reads.
    pub stream: String,
    /// Window length in minutes: `w` holds the unified rows of [T − window, T).
    pub window_minutes: i64,
    /// SELECT over `w` (and `today`, the rows of T's date before T).
    pub sql: String,
}

/// One alert rule (`[[alert]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertDecl {
    /// Rule name.
    pub name: String,
    /// The stream it reads.
    pub stream: String,
    /// Window length in minutes.
    pub window_minutes: i64,
    /// The threshold, reported with each alert.
    pub threshold: f64,
    /// Severity of its alerts, unless the SQL outputs a `severity` column.
    pub severity: String,
    /// Alert id template over `{rule}`, `{subject}`, `{stream}` and `{run}` (the run's time,
    /// `20260201T1000`): an id already raised in the last day is not raised again, so
    /// `{rule}:{subject}` alerts once per subject and `{rule}:{subject}:{run}` once per run.
    #[serde(default = "default_alert_id")]
    pub id: String,
    /// SELECT over `w` giving `subject`, `value`, `triggering_ids` (a list of event ids) and
    /// `detail` (optionally `severity`), one row per alert.
    pub sql: String,
}

fn default_alert_id() -> String {
    "{rule}:{subject}:{run}".into()
}

/// The placeholders of an alert id template.
pub const ID_PLACEHOLDERS: [&str; 4] = ["rule", "subject", "stream", "run"];
