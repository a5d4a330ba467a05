//! The [`Cleaner`]: parses each raw line (into the stream's fields only, strings borrowed from
//! the line: [`crate::sources::scalar`]), trims it, normalises enum values to their canonical
//! spelling, types it by the stream's schema and checks it against the stream's expectations.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray as _, BooleanBuilder, Float64Builder, Int64Array, Int64Builder,
    ListBuilder, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, SchemaRef};
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::physical_plan::PhysicalExpr;

use super::BrokenExpectation;
use super::expectations::{Action, Check, Expectation};
use super::schema::{LINEAGE, arrow_type, clean_schema, quarantine_schema};
use crate::clock::rfc3339_micros;
use crate::layers::batch::bronze::RAW_BYTES;
use crate::sources::scalar::{Scalar, parse_record};
use crate::sources::stream::{Kind, SqlRule, StreamSpec};

/// Counters of one pass over bronze.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    /// Bronze rows read.
    pub rows_in: u64,
    /// Rows that passed every `drop` rule.
    pub clean: u64,
    /// Rows sent to quarantine, by rule.
    pub quarantined: BTreeMap<String, u64>,
    /// Rows kept with a `warn` rule broken, by rule.
    pub warnings: BTreeMap<String, u64>,
}

/// A broken rule.
#[derive(Debug, Clone, PartialEq)]
struct Violation {
    rule: String,
    value: String,
    action: Action,
}

/// A row that passed: id, event time (µs) and the parsed slots, of which the fields' (from
/// [`FIELD_SLOTS`] on) hold the checked values, still borrowed from the raw line where they can
/// be (null for a field no rule checked).
type Row<'a> = (Cow<'a, str>, i64, Vec<Scalar<'a>>);

/// Cleans and checks raw lines of one stream for one batch run.
#[derive(Debug)]
pub struct Cleaner {
    spec: &'static StreamSpec,
    rules: Vec<Expectation>,
    /// The keys a line is parsed into: the id, `event_time`, then the stream's fields.
    names: Vec<&'static str>,
    /// The run's logical date, in µs: later events are in the future.
    run_micros: i64,
    /// The event date the run closes: earlier events are late.
    closed: chrono::NaiveDate,
    clean: SchemaRef,
    quarantine: SchemaRef,
    /// The stream's SQL expectations, compiled over [`clean_schema`] with the columns each
    /// reads; or why they do not compile (reported by [`Cleaner::apply`]).
    sql_rules: Result<Vec<CompiledRule>, String>,
}

/// A SQL expectation compiled for the typed rows.
#[derive(Debug)]
struct CompiledRule {
    rule: SqlRule,
    expr: Arc<dyn PhysicalExpr>,
    /// Indices of the columns it reads (the quarantine value shows them).
    reads: Vec<usize>,
}

/// Compiles `rules` over `schema`.
fn compile_rules(rules: &[SqlRule], schema: &SchemaRef) -> Result<Vec<CompiledRule>, String> {
    use deltalake::datafusion::common::DFSchema;
    use deltalake::datafusion::prelude::SessionContext;
    if rules.is_empty() {
        return Ok(Vec::new());
    }
    let ctx = SessionContext::new();
    let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| e.to_string())?;
    rules
        .iter()
        .map(|rule| {
            let why =
                |e: DataFusionError| format!("expectation `{}` ({}): {e}", rule.name, rule.sql);
            let logical = ctx.parse_sql_expr(rule.sql, &df_schema).map_err(why)?;
            let mut reads: Vec<usize> = logical
                .column_refs()
                .iter()
                .filter_map(|c| schema.index_of(&c.name).ok())
                .collect();
            reads.sort_unstable();
            let expr = ctx.create_physical_expr(logical, &df_schema).map_err(why)?;
            Ok(CompiledRule {
                rule: *rule,
                expr,
                reads,
            })
        })
        .collect()
}

/// The slots of the id and `event_time` in a parsed line; the fields follow.
const ID_SLOT: usize = 0;
const TIME_SLOT: usize = 1;
const FIELD_SLOTS: usize = 2;

/// What [`Cleaner::apply`] makes of a bronze batch: the typed rows, and the rows that broke a
/// `drop` rule with rule, value and lineage.
#[derive(Debug)]
pub struct Cleaned {
    /// Rows in [`clean_schema`].
    pub clean: RecordBatch,
    /// Rows in [`quarantine_schema`].
    pub quarantine: RecordBatch,
}

/// Where `line` stops being UTF-8 and the bytes there (`invalid UTF-8 at byte 17: ff fe`),
/// if it does.
fn utf8_error(line: &[u8]) -> Option<String> {
    let e = std::str::from_utf8(line).err()?;
    let at = e.valid_up_to();
    // `None`: the line ends inside a character.
    let len = e.error_len().unwrap_or(line.len() - at);
    let bad: Vec<String> = line[at..at + len]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(format!("invalid UTF-8 at byte {at}: {}", bad.join(" ")))
}

/// Canonical spelling of `s` in `set` (trimmed, case-insensitive), if any.
fn canonical(set: &[&'static str], s: &str) -> Option<&'static str> {
    let t = s.trim();
    set.iter().copied().find(|c| c.eq_ignore_ascii_case(t))
}

/// `s` in its canonical spelling if it has one in `set`, else unchanged (the field check
/// rejects it then).
fn in_canonical_spelling<'a>(set: &[&'static str], s: Cow<'a, str>) -> Cow<'a, str> {
    canonical(set, &s).map_or(s, Cow::Borrowed)
}

/// `s` without surrounding white space, still borrowed if it was.
fn trimmed(s: Cow<'_, str>) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) if o.trim().len() == o.len() => Cow::Owned(o),
        Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
    }
}

impl Cleaner {
    /// A cleaner for `spec` in the batch run at `run`.
    pub fn new(spec: &'static StreamSpec, run: DateTime<Utc>, rules: Vec<Expectation>) -> Cleaner {
        let mut names = vec![spec.id_field, spec.event_time_field];
        names.extend(spec.fields.iter().map(|f| f.name));
        let clean = clean_schema(spec);
        Cleaner {
            spec,
            rules,
            names,
            run_micros: run.timestamp_micros(),
            closed: (run - Duration::days(1)).date_naive(),
            sql_rules: compile_rules(spec.rules, &clean),
            clean,
            quarantine: quarantine_schema(),
        }
    }

    /// The schema of the typed rows ([`clean_schema`]).
    pub fn clean_schema(&self) -> &SchemaRef {
        &self.clean
    }

    /// The schema of the quarantine rows ([`quarantine_schema`]).
    pub fn quarantine_schema(&self) -> &SchemaRef {
        &self.quarantine
    }

    /// Checks one line — `raw`, and `landed`, the bytes of a line that was not valid UTF-8 as
    /// bronze keeps them (`raw` then has U+FFFD in their place); returns the typed row, or the
    /// first `drop`/`fail` violation, plus the `warn` rules it broke.
    fn check<'a>(
        &self,
        raw: &'a str,
        landed: Option<&[u8]>,
    ) -> (Result<Row<'a>, Violation>, Vec<String>) {
        let mut warned = Vec::new();
        let mut slots: Option<Vec<Scalar<'a>>> = None;
        let mut id = Cow::Borrowed("");
        let mut micros = 0i64;
        // The fields that passed their check, by bit: the others go out as nulls.
        let mut checked: u128 = 0;
        for e in &self.rules {
            let broken: Option<String> = match (e.check, slots.as_mut()) {
                (Check::ValidUtf8, _) => landed.and_then(utf8_error),
                (Check::ValidJson, _) => match parse_record(raw, &self.names) {
                    Ok(s) => {
                        slots = Some(s);
                        None
                    }
                    Err(_) => Some(raw.chars().take(200).collect()),
                },
                (_, None) => None, // only reachable if valid_json is not a drop rule
                (Check::IdPresent, Some(s)) => {
                    match std::mem::replace(&mut s[ID_SLOT], Scalar::Null) {
                        Scalar::Str(v) if !v.trim().is_empty() => {
                            id = trimmed(v);
                            None
                        }
                        other => {
                            let text = other.to_string();
                            s[ID_SLOT] = other;
                            Some(text)
                        }
                    }
                }
                (Check::EventTimeParses, Some(s)) => {
                    let v = &s[TIME_SLOT];
                    match v.as_str().and_then(|t| rfc3339_micros(t.trim())) {
                        Some(t) => {
                            micros = t;
                            None
                        }
                        None => Some(v.to_string()),
                    }
                }
                (Check::NotFuture, Some(s)) => {
                    (micros > self.run_micros).then(|| s[TIME_SLOT].to_string())
                }
                (Check::OnTime, _) => {
                    let day = DateTime::from_timestamp_micros(micros).map(|t| t.date_naive());
                    day.filter(|d| *d < self.closed).map(|d| d.to_string())
                }
                (Check::Field(i), Some(s)) => {
                    let f = &self.spec.fields[i];
                    let v = normalise(
                        f.kind,
                        std::mem::replace(&mut s[FIELD_SLOTS + i], Scalar::Null),
                    );
                    match f.check_scalar(&v) {
                        Ok(()) => {
                            s[FIELD_SLOTS + i] = v;
                            checked |= 1 << i;
                            None
                        }
                        Err(_) => Some(v.to_string()),
                    }
                }
            };
            if let Some(value) = broken {
                match e.action {
                    Action::Warn => warned.push(e.rule.clone()),
                    action => {
                        return (
                            Err(Violation {
                                rule: e.rule.clone(),
                                value,
                                action,
                            }),
                            warned,
                        );
                    }
                }
            }
        }
        let Some(mut slots) = slots else {
            return (
                Err(Violation {
                    rule: "valid_json".into(),
                    value: raw.chars().take(200).collect(),
                    action: Action::Drop,
                }),
                warned,
            );
        };
        for (i, v) in slots[FIELD_SLOTS..].iter_mut().enumerate() {
            if checked & (1 << i) == 0 {
                *v = Scalar::Null;
            }
        }
        (Ok((id, micros, slots)), warned)
    }

    /// Splits a bronze batch into typed rows and quarantine rows, counting both.
    pub fn apply(
        &self,
        b: &RecordBatch,
        counts: &Mutex<Counts>,
    ) -> Result<Cleaned, DataFusionError> {
        // Scans may hand out string views: cast to the types this cleaner writes.
        let col = |name: &str| -> Result<ArrayRef, DataFusionError> {
            let a = b
                .column_by_name(name)
                .ok_or_else(|| DataFusionError::Internal(format!("bronze has no column {name}")))?;
            let ty = if name == "_line" {
                DataType::Int64
            } else {
                DataType::Utf8
            };
            Ok(deltalake::arrow::compute::cast(a, &ty)?)
        };
        // The raw lines as string views (what the scan hands out): read in place, not copied.
        let raw_col = b
            .column_by_name("raw")
            .ok_or_else(|| DataFusionError::Internal("bronze has no column raw".into()))?;
        let raw_col = match raw_col.data_type() {
            DataType::Utf8View => Arc::clone(raw_col),
            _ => deltalake::arrow::compute::cast(raw_col, &DataType::Utf8View)?,
        };
        let raw = raw_col
            .as_string_view_opt()
            .ok_or_else(|| DataFusionError::Internal("raw is not a string column".into()))?;
        // The bytes of the lines that were not UTF-8, if any in this batch (a table made before
        // bronze kept them has no such column).
        let landed = match b.column_by_name(RAW_BYTES) {
            Some(a) if a.null_count() < a.len() => {
                Some(deltalake::arrow::compute::cast(a, &DataType::Binary)?)
            }
            _ => None,
        };
        let landed = match &landed {
            Some(a) => Some(a.as_binary_opt::<i32>().ok_or_else(|| {
                DataFusionError::Internal(format!("{} is not a binary column", RAW_BYTES))
            })?),
            None => None,
        };
        let lineage: Vec<ArrayRef> = LINEAGE.iter().map(|n| col(n)).collect::<Result<_, _>>()?;
        let n = b.num_rows();
        let mut keep: Vec<u32> = Vec::with_capacity(n);
        let mut id = StringBuilder::with_capacity(n, n * 36);
        let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut fields: Vec<Column> = self
            .spec
            .fields
            .iter()
            .map(|f| Column::new(f.kind, n))
            .collect();
        let mut bad: Vec<u32> = Vec::new();
        let (mut rule, mut value, mut raws) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let mut local = Counts::default();
        for i in 0..n {
            local.rows_in += 1;
            let line = raw.value(i);
            let bytes = landed.filter(|a| a.is_valid(i)).map(|a| a.value(i));
            let (verdict, warned) = self.check(line, bytes);
            for w in warned {
                *local.warnings.entry(w).or_default() += 1;
            }
            match verdict {
                Ok((row_id, micros, values)) => {
                    local.clean += 1;
                    keep.push(i as u32);
                    id.append_value(&row_id);
                    ts.append_value(micros);
                    for (c, v) in fields.iter_mut().zip(&values[FIELD_SLOTS..]) {
                        c.append(v);
                    }
                }
                Err(v) if v.action == Action::Fail => {
                    return Err(fail(&lineage, i, v.rule, v.value));
                }
                Err(v) => {
                    *local.quarantined.entry(v.rule.clone()).or_default() += 1;
                    bad.push(i as u32);
                    rule.append_value(&v.rule);
                    value.append_value(&v.value);
                    raws.append_value(line);
                }
            }
        }
        let mut clean: Vec<ArrayRef> = vec![Arc::new(id.finish()), Arc::new(ts.finish())];
        clean.extend(fields.into_iter().map(Column::finish));
        let lineage_of = |idx: &[u32]| -> Result<Vec<ArrayRef>, DataFusionError> {
            if idx.len() == n {
                return Ok(lineage.clone());
            }
            let idx = deltalake::arrow::array::UInt32Array::from(idx.to_vec());
            lineage
                .iter()
                .map(|a| {
                    deltalake::arrow::compute::take(a.as_ref(), &idx, None).map_err(Into::into)
                })
                .collect()
        };
        clean.extend(lineage_of(&keep)?);
        let mut clean = RecordBatch::try_new(self.clean.clone(), clean)?;
        // The SQL expectations, over the typed rows: a `drop` moves the row to quarantine.
        let rules = self
            .sql_rules
            .as_ref()
            .map_err(|e| DataFusionError::Plan(e.clone()))?;
        if !rules.is_empty() && clean.num_rows() > 0 {
            let options = FormatOptions::default().with_null("null");
            let mut kept = vec![true; clean.num_rows()];
            for r in rules {
                let verdict = r.expr.evaluate(&clean)?.into_array(clean.num_rows())?;
                let verdict = verdict.as_boolean_opt().ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "expectation `{}` ({}) is not a boolean expression",
                        r.rule.name, r.rule.sql
                    ))
                })?;
                // The columns the rule reads, formatted once its first row breaks it.
                let mut shown: Option<Shown<'_>> = None;
                let mut broken = 0u64;
                for (j, keep_row) in kept.iter_mut().enumerate() {
                    // False breaks the rule; null does not (as a SQL CHECK constraint).
                    if !*keep_row || !verdict.is_valid(j) || verdict.value(j) {
                        continue;
                    }
                    broken += 1;
                    if r.rule.action == Action::Warn {
                        continue;
                    }
                    if shown.is_none() {
                        shown = Some(Shown::new(&clean, &r.reads, &options)?);
                    }
                    let text = shown.as_ref().map(|s| s.row(j)).unwrap_or_default();
                    if r.rule.action == Action::Fail {
                        let i = keep[j] as usize;
                        return Err(fail(&lineage, i, r.rule.name.to_string(), text));
                    }
                    *keep_row = false;
                    bad.push(keep[j]);
                    rule.append_value(r.rule.name);
                    value.append_value(&text);
                    raws.append_value(raw.value(keep[j] as usize));
                }
                if broken > 0 {
                    let counter = match r.rule.action {
                        Action::Warn => &mut local.warnings,
                        _ => {
                            local.clean -= broken;
                            &mut local.quarantined
                        }
                    };
                    *counter.entry(r.rule.name.to_string()).or_default() += broken;
                }
            }
            if kept.iter().any(|k| !k) {
                let mask = deltalake::arrow::array::BooleanArray::from(kept);
                clean = deltalake::arrow::compute::filter_record_batch(&clean, &mask)?;
            }
        }
        {
            let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
            c.rows_in += local.rows_in;
            c.clean += local.clean;
            for (k, v) in local.quarantined {
                *c.quarantined.entry(k).or_default() += v;
            }
            for (k, v) in local.warnings {
                *c.warnings.entry(k).or_default() += v;
            }
        }
        let mut quarantine: Vec<ArrayRef> = vec![
            Arc::new(rule.finish()),
            Arc::new(value.finish()),
            Arc::new(raws.finish()),
        ];
        quarantine.extend(lineage_of(&bad)?);
        Ok(Cleaned {
            clean,
            quarantine: RecordBatch::try_new(self.quarantine.clone(), quarantine)?,
        })
    }
}

/// The error of a row `i` (of a bronze batch with `lineage`) that broke a `fail` rule.
fn fail(lineage: &[ArrayRef], i: usize, rule: String, value: String) -> DataFusionError {
    let key = lineage[0]
        .as_any()
        .downcast_ref::<StringArray>()
        .map(|a| a.value(i).to_string());
    let line = lineage[1]
        .as_any()
        .downcast_ref::<Int64Array>()
        .map(|a| a.value(i));
    DataFusionError::External(Box::new(BrokenExpectation {
        rule,
        key: key.unwrap_or_default(),
        line: line.unwrap_or_default(),
        value,
    }))
}

/// The columns a SQL expectation reads, as its quarantine `value` shows them.
struct Shown<'a> {
    columns: Vec<(&'a str, ArrayFormatter<'a>)>,
}

impl<'a> Shown<'a> {
    /// Formatters of the columns `reads` of `b`.
    fn new(
        b: &'a RecordBatch,
        reads: &[usize],
        options: &'a FormatOptions<'a>,
    ) -> Result<Shown<'a>, DataFusionError> {
        let columns = reads
            .iter()
            .map(|&c| {
                let f = ArrayFormatter::try_new(b.column(c).as_ref(), options)?;
                Ok((b.schema_ref().field(c).name().as_str(), f))
            })
            .collect::<Result<_, DataFusionError>>()?;
        Ok(Shown { columns })
    }

    /// `name=value, …` of row `j`.
    fn row(&self, j: usize) -> String {
        let parts: Vec<String> = self
            .columns
            .iter()
            .map(|(name, f)| format!("{name}={}", f.value(j)))
            .collect();
        parts.join(", ")
    }
}

/// An Arrow column being built from checked values of one field.
enum Column {
    Str(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Tags(ListBuilder<StringBuilder>),
}

impl Column {
    fn new(kind: Kind, rows: usize) -> Column {
        match arrow_type(kind) {
            DataType::Utf8 => Column::Str(StringBuilder::with_capacity(rows, rows * 8)),
            DataType::Int64 => Column::Int(Int64Builder::with_capacity(rows)),
            DataType::Float64 => Column::Float(Float64Builder::with_capacity(rows)),
            DataType::Boolean => Column::Bool(BooleanBuilder::with_capacity(rows)),
            _ => Column::Tags(ListBuilder::new(StringBuilder::new())),
        }
    }

    /// Appends a value that passed its field's check (so of the column's type, or null).
    fn append(&mut self, v: &Scalar<'_>) {
        match self {
            Column::Str(b) => b.append_option(v.as_str()),
            Column::Int(b) => b.append_option(v.as_i64()),
            Column::Float(b) => b.append_option(v.as_f64()),
            Column::Bool(b) => b.append_option(v.as_bool()),
            Column::Tags(b) => match v {
                Scalar::List(tags) => {
                    for t in tags {
                        if let Some(s) = t.as_str() {
                            b.values().append_value(s);
                        }
                    }
                    b.append(true);
                }
                _ => b.append(false),
            },
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Column::Str(mut b) => Arc::new(b.finish()),
            Column::Int(mut b) => Arc::new(b.finish()),
            Column::Float(mut b) => Arc::new(b.finish()),
            Column::Bool(mut b) => Arc::new(b.finish()),
            Column::Tags(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Fixes cosmetic noise: trims strings, maps enum values to their canonical spelling.
fn normalise(kind: Kind, v: Scalar<'_>) -> Scalar<'_> {
    match (kind, v) {
        (Kind::Enum(set), Scalar::Str(s)) => Scalar::Str(in_canonical_spelling(set, s)),
        (Kind::Str, Scalar::Str(s)) => Scalar::Str(trimmed(s)),
        (Kind::Tags(set), Scalar::List(a)) => Scalar::List(
            a.into_iter()
                .map(|t| match t {
                    Scalar::Str(s) => Scalar::Str(in_canonical_spelling(set, s)),
                    other => other,
                })
                .collect(),
        ),
        (_, v) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;
    use crate::layers::batch::{bronze, lineage};
    use crate::layers::clean::expectations;
    use crate::sources::stream::stream_by_name;
    use serde_json::Value;

    fn cleaner(stream: &str) -> Cleaner {
        let spec = stream_by_name(stream).unwrap();
        Cleaner::new(
            spec,
            parse_utc("2026-02-02T02:00:00Z").unwrap(),
            expectations(spec),
        )
    }

    fn api_line(overrides: &[(&str, Value)]) -> String {
        let mut v = serde_json::json!({
            "log_id": "a1", "event_time": "2026-02-01T10:00:00Z", "request_id": "r",
            "method": "GET", "endpoint": "/api/v1/users", "status_code": 200,
            "response_time_ms": 12.5, "client_ip": "10.0.0.1", "user_agent": "ua",
            "region": "us-east-1", "api_key_id": "k", "bytes_sent": 10, "bytes_received": 5
        });
        for (k, x) in overrides {
            v[*k] = x.clone();
        }
        v.to_string()
    }

    fn rule_of(c: &Cleaner, line: &str) -> Option<String> {
        c.check(line, None).0.err().map(|v| v.rule)
    }

    #[test]
    fn each_rule_catches_its_fault_and_noise_is_normalised() {
        let c = cleaner("api_logs");
        let endpoint = crate::sources::api_logs::SPEC
            .fields
            .iter()
            .find(|f| f.name == "endpoint")
            .map(|f| match f.kind {
                Kind::Enum(set) => set[0],
                _ => unreachable!(),
            })
            .unwrap();
        let ok = api_line(&[("endpoint", Value::from(endpoint))]);
        assert_eq!(rule_of(&c, &ok), None, "{ok}");
        assert_eq!(rule_of(&c, "{\"log_id\": \"a"), Some("valid_json".into()));
        assert_eq!(
            rule_of(&c, &api_line(&[("log_id", Value::Null)])),
            Some("id_present".into())
        );
        assert_eq!(
            rule_of(&c, &api_line(&[("event_time", Value::from("yesterday"))])),
            Some("event_time_parses".into())
        );
        assert_eq!(
            rule_of(
                &c,
                &api_line(&[("event_time", Value::from("2026-02-03T00:00:00Z"))])
            ),
            Some("event_time_not_future".into())
        );
        let with = |k: &str, v: Value| {
            let mut o = vec![("endpoint", Value::from(endpoint))];
            o.push((k, v));
            api_line(&o.iter().map(|(a, b)| (*a, b.clone())).collect::<Vec<_>>())
        };
        assert_eq!(
            rule_of(&c, &with("status_code", Value::from(299))),
            Some("status_code_valid".into())
        );
        assert_eq!(
            rule_of(&c, &with("status_code", Value::from("200x"))),
            Some("status_code_valid".into())
        );
        assert_eq!(
            rule_of(&c, &with("method", Value::from("unknown_value"))),
            Some("method_valid".into())
        );
        // Cosmetic noise is fixed, not rejected.
        let line = with("method", Value::from(" Get "));
        let (row, _) = c.check(&line, None);
        let row = row.unwrap();
        assert_eq!(
            row.2[FIELD_SLOTS + 1],
            Scalar::Str("GET".into()),
            "method is the second field"
        );
        // Late rows are kept with a warning.
        let line = with("event_time", Value::from("2026-01-30T00:00:00Z"));
        let (row, warned) = c.check(&line, None);
        assert!(row.is_ok());
        assert_eq!(warned, ["event_time_on_time"]);
    }

    #[test]
    fn every_stream_fits_the_bits_that_mark_checked_fields() {
        for spec in crate::sources::stream::all_streams() {
            assert!(spec.fields.len() <= 128, "{}", spec.name);
        }
    }

    #[test]
    fn actions_warn_drop_and_fail_do_what_they_say() {
        let spec = stream_by_name("api_logs").unwrap();
        let mut rules = expectations(spec);
        for r in &mut rules {
            if r.rule == "id_present" {
                r.action = Action::Warn;
            }
            if r.rule == "status_code_valid" {
                r.action = Action::Fail;
            }
        }
        let c = Cleaner::new(spec, parse_utc("2026-02-02T02:00:00Z").unwrap(), rules);
        let line = api_line(&[("log_id", Value::Null), ("endpoint", Value::from("/x"))]);
        let (v, warned) = c.check(&line, None);
        assert_eq!(warned, ["id_present"]);
        assert_eq!(
            v.unwrap_err().rule,
            "endpoint_valid",
            "drop still applies after a warning"
        );
        let line = api_line(&[("status_code", Value::from(299))]);
        let (v, _) = c.check(&line, None);
        assert_eq!(v.unwrap_err().action, Action::Fail);
        // Bytes that are not UTF-8 break `valid_utf8` first, under its action.
        let line = api_line(&[("log_id", Value::from("x"))]);
        let (v, _) = c.check(&line, Some(b"\xff"));
        let v = v.unwrap_err();
        assert_eq!((v.rule.as_str(), v.action), ("valid_utf8", Action::Drop));
        let mut rules = expectations(spec);
        for r in rules.iter_mut().filter(|r| r.rule == "valid_utf8") {
            r.action = Action::Warn;
        }
        let c = Cleaner::new(spec, parse_utc("2026-02-02T02:00:00Z").unwrap(), rules);
        let line = api_line(&[("endpoint", Value::from("/api/v1/users"))]);
        let (v, warned) = c.check(&line, Some(b"\xff"));
        assert!(v.is_ok());
        assert_eq!(warned, ["valid_utf8"]);
    }

    #[test]
    fn country_code_na_and_the_string_none_are_values_not_nulls() {
        assert_eq!(
            normalise(Kind::Str, Scalar::Str(" NA ".into())),
            Scalar::Str("NA".into())
        );
        let c = cleaner("api_logs");
        let (batch, _) = apply_lines(&c, &[&api_line(&[("user_agent", Value::from("None"))])]);
        let ua = batch.clean.column_by_name("user_agent").unwrap();
        let ua = ua.as_any().downcast_ref::<StringArray>().unwrap();
        assert!(ua.is_valid(0));
        assert_eq!(ua.value(0), "None");
    }

    /// Runs `lines` (as one landed file) through the cleaner.
    fn apply_lines(c: &Cleaner, lines: &[&str]) -> (Cleaned, Counts) {
        apply_body(c, lines.join("\n").as_bytes())
    }

    /// Runs `body` (as one landed file) through the cleaner.
    fn apply_body(c: &Cleaner, body: &[u8]) -> (Cleaned, Counts) {
        let f = lineage::ConsumedFile {
            key: "realtime/api_logs/date=2026-02-01/hour=10/f.jsonl".into(),
            date: "2026-02-01".into(),
            ingest_run: "2026-02-01T10:05:00Z".into(),
            bytes: 0,
        };
        let b = bronze::file_batch(&f, body, "2026-02-02T02:00:00Z").unwrap();
        let counts = Mutex::new(Counts::default());
        let out = c.apply(&b, &counts).unwrap();
        (out, counts.into_inner().unwrap())
    }

    #[test]
    fn a_line_landed_as_invalid_utf8_is_quarantined_with_its_rule_and_offset() {
        let c = cleaner("api_logs");
        let ok = api_line(&[("endpoint", Value::from("/api/v1/users"))]);
        // The same event but for bytes that are not UTF-8 inside a string: its text, with
        // U+FFFD in their place, is valid JSON and would pass every other rule.
        let marked = api_line(&[
            ("endpoint", Value::from("/api/v1/users")),
            ("log_id", Value::from("b")),
            ("user_agent", Value::from("x@@y")),
        ]);
        let at = marked.find("@@").unwrap();
        let mut bad = marked.as_bytes()[..at].to_vec();
        bad.extend_from_slice(b"\xff\xfe\xc3\x28");
        bad.extend_from_slice(&marked.as_bytes()[at + 2..]);
        let mut body = ok.clone().into_bytes();
        body.push(b'\n');
        body.extend_from_slice(&bad);
        body.push(b'\n');
        let lossy = String::from_utf8_lossy(&bad).into_owned();
        assert_eq!(rule_of(&c, &lossy), None, "the text alone passes");

        let (out, counts) = apply_body(&c, &body);
        assert_eq!(strings(&out.clean, "log_id"), ["a1"]);
        assert_eq!(strings(&out.quarantine, "rule"), ["valid_utf8"]);
        assert_eq!(
            strings(&out.quarantine, "value"),
            [format!("invalid UTF-8 at byte {at}: ff")]
        );
        assert_eq!(strings(&out.quarantine, "raw"), [lossy]);
        assert_eq!(strings(&out.quarantine, "_line"), ["2"]);
        assert_eq!(
            strings(&out.quarantine, "_source_key"),
            ["realtime/api_logs/date=2026-02-01/hour=10/f.jsonl"]
        );
        assert_eq!(counts.rows_in, 2);
        assert_eq!(counts.clean, 1);
        assert_eq!(
            counts.quarantined,
            BTreeMap::from([("valid_utf8".to_string(), 1)])
        );
        // A line cut inside a character: the offset of its first byte.
        assert_eq!(
            utf8_error(b"ab\xc3").as_deref(),
            Some("invalid UTF-8 at byte 2: c3")
        );
        assert_eq!(utf8_error("é".as_bytes()), None);
    }

    fn strings(b: &RecordBatch, col: &str) -> Vec<String> {
        let a = b.column_by_name(col).unwrap();
        let a = deltalake::arrow::compute::cast(a, &DataType::Utf8).unwrap();
        let a = a.as_any().downcast_ref::<StringArray>().unwrap();
        (0..a.len()).map(|i| a.value(i).to_string()).collect()
    }

    #[test]
    fn apply_types_clean_rows_and_quarantines_the_rest_with_rule_value_and_lineage() {
        let c = cleaner("api_logs");
        let ok = api_line(&[
            ("endpoint", Value::from("/api/v1/users")),
            ("method", Value::from(" post ")),
            ("log_id", Value::from(" a1 ")),
        ]);
        let bad_status = api_line(&[
            ("endpoint", Value::from("/api/v1/users")),
            ("status_code", Value::from(299)),
        ]);
        let (out, counts) = apply_lines(&c, &[&ok, "{\"log_id\": 1", &bad_status]);
        assert_eq!(out.clean.num_rows(), 1);
        assert_eq!(strings(&out.clean, "log_id"), ["a1"]);
        assert_eq!(strings(&out.clean, "method"), ["POST"]);
        assert_eq!(strings(&out.clean, "_line"), ["1"]);
        let rt = out.clean.column_by_name("response_time_ms").unwrap();
        let rt = rt
            .as_any()
            .downcast_ref::<deltalake::arrow::array::Float64Array>()
            .unwrap();
        assert_eq!(rt.value(0), 12.5);
        assert_eq!(
            strings(&out.quarantine, "rule"),
            ["valid_json", "status_code_valid"]
        );
        assert_eq!(strings(&out.quarantine, "value"), ["{\"log_id\": 1", "299"]);
        assert_eq!(strings(&out.quarantine, "raw")[1], bad_status);
        assert_eq!(strings(&out.quarantine, "_line"), ["2", "3"]);
        assert_eq!(counts.rows_in, 3);
        assert_eq!(counts.clean, 1);
        assert_eq!(counts.quarantined.values().sum::<u64>(), 2);
    }

    /// A declared stream `orders` with SQL expectations of each action.
    fn orders(rules: &'static [SqlRule]) -> Cleaner {
        use crate::sources::stream::{Field, Spread};
        static FIELDS: [Field; 2] = [
            Field {
                name: "amount",
                kind: Kind::Float {
                    min: f64::NEG_INFINITY,
                    max: f64::INFINITY,
                },
                nullable: true,
                spread: Spread::Repeated,
            },
            Field {
                name: "country",
                kind: Kind::Str,
                nullable: true,
                spread: Spread::Repeated,
            },
        ];
        let spec: &'static StreamSpec = Box::leak(Box::new(StreamSpec {
            name: "orders",
            id_field: "order_id",
            per_run: 0,
            fields: &FIELDS,
            generate: None,
            event_time_field: "ts",
            title: "Orders",
            derived: &[],
            rules,
        }));
        Cleaner::new(
            spec,
            parse_utc("2026-02-02T02:00:00Z").unwrap(),
            expectations(spec),
        )
    }

    #[test]
    fn sql_expectations_warn_drop_and_fail_over_the_typed_rows() {
        use crate::sources::stream::Action;
        static RULES: [SqlRule; 2] = [
            SqlRule {
                name: "country_known",
                sql: "country <> 'XX'",
                action: Action::Warn,
            },
            SqlRule {
                name: "positive_amount",
                sql: "amount > 0",
                action: Action::Drop,
            },
        ];
        let c = orders(&RULES);
        let lines = [
            r#"{"order_id":"o1","ts":"2026-02-01T10:00:00Z","amount":5.5,"country":"FR"}"#,
            r#"{"order_id":"o2","ts":"2026-02-01T10:00:01Z","amount":-1,"country":"XX"}"#,
            r#"{"order_id":"o3","ts":"2026-02-01T10:00:02Z","amount":null,"country":"XX"}"#,
            r#"{"order_id":"o4","event_time":"2026-02-01T10:00:02Z","amount":3}"#,
        ];
        let (out, counts) = apply_lines(&c, &lines);
        // o1 passes; o2 is warned then dropped; o3's null amount does not break `amount > 0`
        // (SQL CHECK semantics) but is warned; o4 has no `ts`, the declared event-time key.
        assert_eq!(out.clean.num_rows(), 2);
        let ids = out.clean.column(0).as_string::<i32>();
        assert_eq!((ids.value(0), ids.value(1)), ("o1", "o3"));
        assert_eq!(counts.clean, 2);
        assert_eq!(counts.warnings["country_known"], 2);
        assert_eq!(counts.quarantined["positive_amount"], 1);
        assert_eq!(counts.quarantined["event_time_parses"], 1);
        let q = &out.quarantine;
        let col = |n: &str| q.column_by_name(n).unwrap().as_string::<i32>().clone();
        let (rule, value, raw) = (col("rule"), col("value"), col("raw"));
        let dropped = (0..q.num_rows())
            .find(|&i| rule.value(i) == "positive_amount")
            .unwrap();
        assert_eq!(value.value(dropped), "amount=-1.0");
        assert_eq!(raw.value(dropped), lines[1]);
        assert_eq!(
            q.column_by_name("_line")
                .unwrap()
                .as_primitive::<deltalake::arrow::datatypes::Int64Type>()
                .value(dropped),
            2
        );

        static FAIL: [SqlRule; 1] = [SqlRule {
            name: "no_big_orders",
            sql: "amount < 1000",
            action: Action::Fail,
        }];
        let c = orders(&FAIL);
        let f = lineage::ConsumedFile {
            key: "realtime/orders/date=2026-02-01/hour=10/f.jsonl".into(),
            date: "2026-02-01".into(),
            ingest_run: "2026-02-01T10:05:00Z".into(),
            bytes: 0,
        };
        let body = r#"{"order_id":"o9","ts":"2026-02-01T10:00:00Z","amount":5000}"#;
        let b = bronze::file_batch(&f, body.as_bytes(), "2026-02-02T02:00:00Z").unwrap();
        let e = c.apply(&b, &Mutex::new(Counts::default())).unwrap_err();
        let broken = crate::layers::clean::find_in_chain::<BrokenExpectation>(&e).unwrap();
        assert_eq!(
            (broken.rule.as_str(), broken.line, broken.value.as_str()),
            ("no_big_orders", 1, "amount=5000.0")
        );

        static BAD: [SqlRule; 1] = [SqlRule {
            name: "typo",
            sql: "amount >",
            action: Action::Drop,
        }];
        let e = orders(&BAD)
            .apply(&b, &Mutex::new(Counts::default()))
            .unwrap_err();
        assert!(e.to_string().contains("expectation `typo`"), "{e}");
    }
}
