//! Machinery shared by the five Lambda event streams: schemas as data ([`StreamSpec`],
//! [`Field`], [`Kind`]), the generation context ([`Ctx`]), and fault injection.
//!
//! A stream file declares its fields and a `generate` function that fills values; this module
//! adds the id and `event_time`, orders fields as declared, serialises JSON lines, and mixes in
//! faults (each kind counted) from the schema alone.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use rand::Rng as _;
use rand_distr::{Distribution, LogNormal, Normal};
use serde::Serialize;
use serde_json::Value;

use super::scalar::Scalar;
use super::{Rng, rng_for, round_to, scaled, stable_hash, uuid_from};
use crate::clock::rfc3339_millis;

/// Type and allowed values of a field: the generator honours them, silver checks them.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Free text or an entity id.
    Str,
    /// One of a fixed set of exact, lower-case-or-canonical strings.
    Enum(&'static [&'static str]),
    /// One of a fixed set of integers (HTTP status codes).
    IntEnum(&'static [i64]),
    /// An integer in `[min, max]`.
    Int { min: i64, max: i64 },
    /// A number in `[min, max]`.
    Float { min: f64, max: f64 },
    /// A JSON boolean.
    Bool,
    /// A list of strings drawn from a set (any strings if the set is empty).
    Tags(&'static [&'static str]),
}

/// How a field's values spread over the rows, which decides how the batch layer stores its
/// column (not what is valid: that is [`Kind`]). Ordered from the least to the most distinct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Spread {
    /// Values repeat (names, codes, pooled ids): a Parquet dictionary, Snappy.
    Repeated,
    /// Nearly every value differs (IP addresses): no dictionary, which would only hash every
    /// value until it overflows; Snappy.
    Distinct,
    /// Random identifiers (UUIDs): every value differs, and Snappy gains about a tenth on
    /// their hex digits for three quarters of the column's write time: no dictionary, no
    /// compression.
    Random,
}

/// One field of a stream's events.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// JSON key.
    pub name: &'static str,
    /// Type and allowed values.
    pub kind: Kind,
    /// Whether JSON null is a valid value.
    pub nullable: bool,
    /// How its values spread (for storage).
    pub spread: Spread,
}

impl Field {
    /// A required field.
    pub const fn new(name: &'static str, kind: Kind) -> Field {
        Field {
            name,
            kind,
            nullable: false,
            spread: Spread::Repeated,
        }
    }
    /// A field that may be null.
    pub const fn nullable(name: &'static str, kind: Kind) -> Field {
        Field {
            nullable: true,
            ..Field::new(name, kind)
        }
    }
    /// This field with nearly every value different ([`Spread::Distinct`]).
    pub const fn distinct(self) -> Field {
        Field {
            spread: Spread::Distinct,
            ..self
        }
    }
    /// This field holding random identifiers ([`Spread::Random`]).
    pub const fn random(self) -> Field {
        Field {
            spread: Spread::Random,
            ..self
        }
    }

    /// Checks a value against this field's type and allowed values.
    pub fn check(&self, v: &Value) -> Result<(), String> {
        self.check_scalar(&Scalar::of_value(v))
    }

    /// [`Field::check`] on a borrowed value (silver's hot path).
    pub fn check_scalar(&self, v: &Scalar<'_>) -> Result<(), String> {
        if v.is_null() {
            return if self.nullable {
                Ok(())
            } else {
                Err(format!("{} is null", self.name))
            };
        }
        let ok = match self.kind {
            Kind::Str => v.as_str().is_some(),
            Kind::Enum(set) => v.as_str().is_some_and(|s| set.contains(&s)),
            Kind::IntEnum(set) => v.as_i64().is_some_and(|x| set.contains(&x)),
            Kind::Int { min, max } => v.as_i64().is_some_and(|x| (min..=max).contains(&x)),
            Kind::Float { min, max } => v.as_f64().is_some_and(|x| (min..=max).contains(&x)),
            Kind::Bool => v.as_bool().is_some(),
            Kind::Tags(set) => match v {
                Scalar::List(a) => a.iter().all(|t| {
                    t.as_str()
                        .is_some_and(|s| set.is_empty() || set.contains(&s))
                }),
                _ => false,
            },
        };
        if ok {
            Ok(())
        } else {
            Err(format!("{} = {v} violates {:?}", self.name, self.kind))
        }
    }
}

/// A Lambda event stream: its schema as data and how to fill it.
#[derive(Debug)]
pub struct StreamSpec {
    /// Stream name, as in `realtime/<name>/` and the DAG ids.
    pub name: &'static str,
    /// Name of the unique event id field (a UUID: [`Spread::Random`]).
    pub id_field: &'static str,
    /// Events per 5-minute run at scale 1.
    pub per_run: usize,
    /// Fields besides the id and `event_time`, in output order.
    pub fields: &'static [Field],
    /// Pushes about `n` records into the context (a stream may emit whole sessions); `None`
    /// for a declared stream whose events only come in (ingest API, inboxes).
    pub generate: Option<fn(&mut Ctx<'_>, usize)>,
    /// Key of the event time in a record; silver's column is `event_time` whatever the key.
    pub event_time_field: &'static str,
    /// Display name (the analytics domain).
    pub title: &'static str,
    /// Derived silver columns, SQL over the typed columns.
    pub derived: &'static [Derived],
    /// Expectations in SQL, checked after the field checks.
    pub rules: &'static [SqlRule],
}

/// A derived silver column: name and SQL expression over the typed columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Derived {
    /// Column name.
    pub name: &'static str,
    /// SQL expression.
    pub sql: &'static str,
}

/// What happens to a row that breaks an expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Keep the row; count it.
    Warn,
    /// Send the row to quarantine.
    Drop,
    /// Fail the task.
    Fail,
}

/// An expectation declared in SQL: a boolean expression over the typed columns a row must
/// satisfy (false breaks it; null, as in a SQL CHECK constraint, does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlRule {
    /// Rule name, as written to quarantine.
    pub name: &'static str,
    /// Boolean SQL expression.
    pub sql: &'static str,
    /// What a violation does.
    pub action: Action,
}

/// The generators of the five seed streams, in DAG order: the built-in pipeline declares
/// their streams from these schemas.
pub fn seed_streams() -> [&'static StreamSpec; 5] {
    [
        &super::iot_sensors::SPEC,
        &super::api_logs::SPEC,
        &super::social_media::SPEC,
        &super::ecommerce_clickstream::SPEC,
        &super::financial_transactions::SPEC,
    ]
}

/// The streams of the active pipeline declaration ([`crate::pipeline::active`]), in DAG order.
pub fn all_streams() -> &'static [&'static StreamSpec] {
    crate::pipeline::active().streams
}

/// The streams of the active pipeline that have a generator, in DAG order: the ones with a
/// synthetic ingest DAG and that `produce` can send.
pub fn generated_streams() -> impl Iterator<Item = &'static StreamSpec> {
    all_streams()
        .iter()
        .copied()
        .filter(|s| s.generate.is_some())
}

/// Looks up a stream of the active pipeline by name.
pub fn stream_by_name(name: &str) -> Option<&'static StreamSpec> {
    all_streams().iter().copied().find(|s| s.name == name)
}

/// Values of one event before the id and event time are added.
#[derive(Debug, Default)]
pub struct Record {
    /// Milliseconds after the interval start; `None` spreads the event at random.
    pub offset_ms: Option<i64>,
    values: Vec<(&'static str, Value)>,
}

impl Record {
    /// A record at a random time in the interval.
    pub fn new() -> Record {
        Record::default()
    }
    /// A record at a given offset (ms) after the interval start.
    pub fn at(offset_ms: i64) -> Record {
        Record {
            offset_ms: Some(offset_ms),
            values: Vec::new(),
        }
    }
    /// Sets a field.
    pub fn set(mut self, name: &'static str, v: impl Into<Value>) -> Record {
        self.values.push((name, v.into()));
        self
    }
    fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.values
            .iter_mut()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
    fn get(&self, name: &str) -> Option<&Value> {
        self.values.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

/// What a stream's `generate` function draws from.
pub struct Ctx<'a> {
    /// Deterministic generator for this (seed, stream, interval).
    pub rng: Rng,
    /// Start of the data interval.
    pub start: DateTime<Utc>,
    /// Length of the data interval in milliseconds.
    pub interval_ms: i64,
    seed: u64,
    out: &'a mut Vec<Record>,
}

impl Ctx<'_> {
    /// Emits a record.
    pub fn push(&mut self, r: Record) {
        self.out.push(r);
    }
    /// A uniformly chosen element.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())]
    }
    /// An element chosen with the given relative weights (same length as `items`).
    pub fn weighted<T: Copy>(&mut self, items: &[T], weights: &[f64]) -> T {
        debug_assert_eq!(items.len(), weights.len());
        let total: f64 = weights.iter().sum();
        let mut x = self.rng.random_range(0.0..total);
        for (item, w) in items.iter().zip(weights) {
            if x < *w {
                return *item;
            }
            x -= w;
        }
        items[items.len() - 1]
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }
    /// An integer in `[lo, hi]`.
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        self.rng.random_range(lo..=hi)
    }
    /// A number in `[lo, hi]` with `decimals` decimals.
    pub fn uniform(&mut self, lo: f64, hi: f64, decimals: i32) -> f64 {
        round_to(self.rng.random_range(lo..=hi), decimals).clamp(lo, hi)
    }
    /// A normal draw clamped to `[lo, hi]`.
    pub fn normal(&mut self, mean: f64, sd: f64, lo: f64, hi: f64, decimals: i32) -> f64 {
        let d = Normal::new(mean, sd).expect("valid normal");
        round_to(d.sample(&mut self.rng).clamp(lo, hi), decimals).clamp(lo, hi)
    }
    /// A log-normal draw with the given median, clamped to `[lo, hi]`.
    pub fn lognormal(&mut self, median: f64, sigma: f64, lo: f64, hi: f64, decimals: i32) -> f64 {
        let d = LogNormal::new(median.ln(), sigma).expect("valid log-normal");
        round_to(d.sample(&mut self.rng).clamp(lo, hi), decimals).clamp(lo, hi)
    }
    /// An entity id `PREFIX-000123` from a pool of `size` that is the same in every run.
    pub fn pool(&mut self, prefix: &str, size: u32, width: usize) -> String {
        let i = self.rng.random_range(1..=size);
        format!("{prefix}-{i:0width$}")
    }
    /// Like [`Ctx::pool`] but skewed towards low numbers (popular posts, busy accounts).
    pub fn pool_skewed(&mut self, prefix: &str, size: u32, width: usize) -> String {
        let u: f64 = self.rng.random();
        let i = 1 + ((size as f64) * u.powi(3)) as u32;
        format!("{prefix}-{:0width$}", i.min(size))
    }
    /// A stable attribute of an entity, in `0..n`: the same in every run (home city, tier…).
    pub fn trait_of(&self, entity: &str, attribute: &str, n: u64) -> u64 {
        stable_hash(&[
            &self.seed.to_le_bytes(),
            entity.as_bytes(),
            attribute.as_bytes(),
        ]) % n
    }
    /// A deterministic UUID.
    pub fn uuid(&mut self) -> String {
        uuid_from(&mut self.rng)
    }
    /// An IPv4 address from public-looking ranges.
    pub fn ipv4(&mut self) -> String {
        format!(
            "{}.{}.{}.{}",
            self.rng.random_range(11..=223),
            self.rng.random_range(0..=255),
            self.rng.random_range(0..=255),
            self.rng.random_range(1..=254)
        )
    }
}

/// Kinds of faults `--fault-rate` mixes in; each is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// A JSON line cut short.
    Malformed,
    /// The id field is absent.
    MissingId,
    /// A number or boolean written as a string.
    WrongType,
    /// A number outside its range.
    OutOfRange,
    /// An enum value outside its set.
    UnknownEnum,
    /// An exact copy of an earlier event.
    Duplicate,
    /// An event 1–72 h older than the interval.
    Late,
    /// An event time 1–48 h after the interval.
    Future,
    /// Stray spaces or case in an enum value; silver must normalise it, not reject it.
    Noise,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Malformed,
        FaultKind::MissingId,
        FaultKind::WrongType,
        FaultKind::OutOfRange,
        FaultKind::UnknownEnum,
        FaultKind::Duplicate,
        FaultKind::Late,
        FaultKind::Future,
        FaultKind::Noise,
    ];
}

/// How many faults of each kind were mixed in.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct FaultCounts(pub BTreeMap<FaultKind, u64>);

impl FaultCounts {
    /// Count of one kind.
    pub fn get(&self, k: FaultKind) -> u64 {
        self.0.get(&k).copied().unwrap_or(0)
    }
    /// All faults.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
    fn bump(&mut self, k: FaultKind) {
        *self.0.entry(k).or_default() += 1;
    }
}

/// One generated event: its event time and its JSON line (no trailing newline).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Event time as written in the line (for malformed lines, the intended one).
    pub event_time: DateTime<Utc>,
    /// The JSON line.
    pub line: String,
}

/// The events of one data interval.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// Events in time order (faulty ones included).
    pub events: Vec<Event>,
    /// Faults mixed in, by kind.
    pub faults: FaultCounts,
}

/// Generates the events of `spec` for the data interval `[start, end)`: a pure function of
/// its arguments. `fault_rate` is the probability that an event carries one fault.
pub fn generate_interval(
    spec: &StreamSpec,
    seed: u64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    scale: f64,
    fault_rate: f64,
) -> Generated {
    let interval_ms = (end - start).num_milliseconds().max(1);
    let minutes = interval_ms as f64 / 300_000.0;
    let n = scaled(spec.per_run, scale * minutes);
    let mut records = Vec::with_capacity(n + n / 8);
    let mut ctx = Ctx {
        rng: rng_for(seed, spec.name, start, 0),
        start,
        interval_ms,
        seed,
        out: &mut records,
    };
    if let Some(generate) = spec.generate {
        generate(&mut ctx, n);
    }
    let mut rng = ctx.rng;
    let mut timed: Vec<(i64, Record)> = records
        .into_iter()
        .map(|r| {
            let off = r
                .offset_ms
                .unwrap_or_else(|| rng.random_range(0..interval_ms))
                .clamp(0, interval_ms - 1);
            (off, r)
        })
        .collect();
    timed.sort_by_key(|(off, _)| *off);

    let mut faults = FaultCounts::default();
    let mut frng = rng_for(seed, spec.name, start, 0xfa17);
    let mut events = Vec::with_capacity(timed.len());
    for (off, mut rec) in timed {
        let id = uuid_from(&mut rng);
        let mut t = start + Duration::milliseconds(off);
        let fault = (fault_rate > 0.0 && frng.random_bool(fault_rate.min(1.0)))
            .then(|| FaultKind::ALL[frng.random_range(0..FaultKind::ALL.len())]);
        let mut keep_id = true;
        let applied = match fault {
            Some(FaultKind::MissingId) => {
                keep_id = false;
                true
            }
            Some(FaultKind::Late) => {
                t = start - Duration::minutes(frng.random_range(60..=72 * 60));
                true
            }
            Some(FaultKind::Future) => {
                t = end + Duration::minutes(frng.random_range(60..=48 * 60));
                true
            }
            Some(
                k @ (FaultKind::WrongType
                | FaultKind::OutOfRange
                | FaultKind::UnknownEnum
                | FaultKind::Noise),
            ) => corrupt_value(spec, &mut rec, k, &mut frng),
            _ => false,
        };
        if applied {
            faults.bump(fault.expect("applied implies a fault"));
        }
        let mut line = serialise(spec, keep_id.then_some(id.as_str()), t, &rec);
        match fault {
            Some(FaultKind::Malformed) => {
                line.truncate(super::malformed_cut(&line));
                faults.bump(FaultKind::Malformed);
            }
            Some(FaultKind::Duplicate) => {
                events.push(Event {
                    event_time: t,
                    line: line.clone(),
                });
                faults.bump(FaultKind::Duplicate);
            }
            _ => {}
        }
        events.push(Event {
            event_time: t,
            line,
        });
    }
    Generated { events, faults }
}

/// Applies a value-level fault to a field that can carry it; false if none can.
fn corrupt_value(spec: &StreamSpec, rec: &mut Record, kind: FaultKind, rng: &mut Rng) -> bool {
    let fits = |f: &&Field| {
        matches!(
            (kind, f.kind),
            (
                FaultKind::WrongType,
                Kind::Int { .. } | Kind::IntEnum(_) | Kind::Float { .. } | Kind::Bool,
            ) | (FaultKind::UnknownEnum, Kind::IntEnum(_))
                | (FaultKind::OutOfRange, Kind::Int { .. } | Kind::Float { .. })
                | (FaultKind::UnknownEnum | FaultKind::Noise, Kind::Enum(_))
        )
    };
    let candidates: Vec<&Field> = spec
        .fields
        .iter()
        .filter(fits)
        .filter(|f| rec.get(f.name).is_some_and(|v| !v.is_null()))
        .collect();
    if candidates.is_empty() {
        return false;
    }
    let f = candidates[rng.random_range(0..candidates.len())];
    let Some(v) = rec.get_mut(f.name) else {
        return false;
    };
    *v = match (kind, f.kind) {
        (FaultKind::WrongType, _) => Value::String(format!("{v}x")),
        (FaultKind::OutOfRange, Kind::Int { min, max }) => {
            Value::from(max + (max - min).max(1) + 1)
        }
        (FaultKind::OutOfRange, Kind::Float { min, max }) => {
            Value::from(round_to(min - (max - min).max(1.0) - 1.0, 2))
        }
        (FaultKind::UnknownEnum, Kind::IntEnum(_)) => Value::from(299),
        (FaultKind::UnknownEnum, _) => Value::from("unknown_value"),
        (FaultKind::Noise, _) => {
            let s = v.as_str().unwrap_or_default();
            let cased: String = if rng.random_bool(0.5) {
                s.to_uppercase()
            } else {
                let mut c = s.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default()
            };
            Value::from(format!(" {cased} "))
        }
        _ => return false,
    };
    true
}

fn serialise(spec: &StreamSpec, id: Option<&str>, t: DateTime<Utc>, rec: &Record) -> String {
    // Written straight into the line's bytes: the same text as each value's `Display`, without
    // a string per value.
    let mut out = Vec::with_capacity(384);
    out.push(b'{');
    let mut first = true;
    let mut put = |out: &mut Vec<u8>, k: &str, v: &Value| {
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"\":");
        // Writing a JSON value into memory cannot fail.
        let _ = serde_json::to_writer(&mut *out, v);
    };
    if let Some(id) = id {
        put(&mut out, spec.id_field, &Value::from(id));
    }
    put(&mut out, "event_time", &Value::from(rfc3339_millis(t)));
    for f in spec.fields {
        put(&mut out, f.name, rec.get(f.name).unwrap_or(&Value::Null));
    }
    out.push(b'}');
    // serde_json writes UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Checks a clean event line against its stream's schema (used by tests and the silver rules).
pub fn validate_line(
    spec: &StreamSpec,
    line: &str,
) -> Result<serde_json::Map<String, Value>, String> {
    let v: serde_json::Map<String, Value> =
        serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    match v.get(spec.id_field) {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => return Err(format!("{} missing", spec.id_field)),
    }
    match v.get("event_time").and_then(Value::as_str) {
        Some(t) if crate::clock::parse_utc(t).is_ok() => {}
        _ => return Err("event_time missing or not RFC 3339".into()),
    }
    for f in spec.fields {
        f.check(v.get(f.name).unwrap_or(&Value::Null))?;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;

    fn interval() -> (DateTime<Utc>, DateTime<Utc>) {
        let s = parse_utc("2026-02-01T23:55:00Z").unwrap();
        (s, s + Duration::minutes(5))
    }

    #[test]
    fn every_stream_is_deterministic_valid_and_inside_its_interval() {
        let (start, end) = interval();
        for spec in all_streams() {
            let a = generate_interval(spec, 42, start, end, 1.0, 0.0);
            let b = generate_interval(spec, 42, start, end, 1.0, 0.0);
            assert_eq!(a.events, b.events, "{}", spec.name);
            assert!(a.faults.total() == 0);
            let n = a.events.len();
            assert!(
                n >= spec.per_run && n <= spec.per_run * 11 / 10,
                "{}: {n}",
                spec.name
            );
            let mut ids = std::collections::HashSet::new();
            for e in &a.events {
                assert!(e.event_time >= start && e.event_time < end, "{}", e.line);
                let v = validate_line(spec, &e.line)
                    .unwrap_or_else(|m| panic!("{}: {m}: {}", spec.name, e.line));
                assert!(ids.insert(v[spec.id_field].as_str().unwrap().to_string()));
                assert!(
                    !e.line.contains("\": \"") && !e.line.contains(" \""),
                    "stray spaces: {}",
                    e.line
                );
            }
            let c = generate_interval(spec, 43, start, end, 1.0, 0.0);
            assert_ne!(a.events, c.events);
        }
    }

    #[test]
    fn scale_multiplies_volume() {
        let (start, end) = interval();
        let spec = &super::super::api_logs::SPEC;
        let a = generate_interval(spec, 1, start, end, 2.0, 0.0);
        assert_eq!(a.events.len(), 2 * spec.per_run);
    }

    #[test]
    fn faults_are_counted_by_kind_and_detectable() {
        let (start, end) = interval();
        for spec in all_streams() {
            let g = generate_interval(spec, 7, start, end, 4.0, 0.3);
            for k in FaultKind::ALL {
                assert!(g.faults.get(k) > 0, "{}: no {k:?}", spec.name);
            }
            let mut invalid = 0;
            let mut late = 0;
            let mut future = 0;
            let mut seen = std::collections::HashSet::new();
            let mut dups = 0;
            for e in &g.events {
                if !seen.insert(e.line.clone()) {
                    dups += 1;
                }
                if e.event_time < start {
                    late += 1;
                }
                if e.event_time >= end {
                    future += 1;
                }
                if validate_line(spec, &e.line).is_err() {
                    invalid += 1;
                }
            }
            let f = &g.faults;
            assert_eq!(dups, f.get(FaultKind::Duplicate), "{}", spec.name);
            assert_eq!(late, f.get(FaultKind::Late), "{}", spec.name);
            assert_eq!(future, f.get(FaultKind::Future), "{}", spec.name);
            let rejected = f.get(FaultKind::Malformed)
                + f.get(FaultKind::MissingId)
                + f.get(FaultKind::WrongType)
                + f.get(FaultKind::OutOfRange)
                + f.get(FaultKind::UnknownEnum)
                + f.get(FaultKind::Noise);
            assert_eq!(invalid, rejected, "{}", spec.name);
        }
    }

    #[test]
    fn clean_data_is_unchanged_by_faults_elsewhere() {
        let (start, end) = interval();
        let spec = &super::super::financial_transactions::SPEC;
        let clean = generate_interval(spec, 5, start, end, 1.0, 0.0);
        let faulty = generate_interval(spec, 5, start, end, 1.0, 0.1);
        let clean_lines: std::collections::HashSet<_> =
            clean.events.iter().map(|e| &e.line).collect();
        let kept = faulty
            .events
            .iter()
            .filter(|e| clean_lines.contains(&e.line))
            .count();
        assert!(kept >= clean.events.len() * 8 / 10);
    }
}
