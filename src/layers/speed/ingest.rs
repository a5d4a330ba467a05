//! `ingest`: generate a data interval's events of one stream and land them create-only, one
//! JSON-lines object per event-time hour ([`super::object_key`]).

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt as _, TryStreamExt as _};

use super::{Error, IngestMetrics, LandedObject, object_key};
use crate::clock::rfc3339_secs;
use crate::scheduler::task::{Dataset, TaskLog, log_info, output};
use crate::scheduler::{RunParams, TaskBody, TaskContext, TaskResult};
use crate::sources::stream::{StreamSpec, generate_interval};
use crate::store::{ObjectAttrs, Store, WriteOutcome};

/// One object to land.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedObject {
    /// Object key.
    pub key: String,
    /// Events (lines) in it.
    pub lines: u64,
    /// Its bytes.
    pub body: Vec<u8>,
}

/// What an ingest run lands: a pure function of (seed, stream, interval, scale, faults).
#[derive(Debug, Clone, PartialEq)]
pub struct IngestPlan {
    /// The stream.
    pub stream: &'static str,
    /// The data interval [start, end).
    pub interval: (DateTime<Utc>, DateTime<Utc>),
    /// Events generated (faulty lines included).
    pub events: u64,
    /// Faults mixed in, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Objects, by key order.
    pub objects: Vec<PlannedObject>,
}

impl IngestPlan {
    /// Generates the interval's events and groups them by target object (an interval is
    /// bounded, so this is small).
    pub fn new(
        spec: &'static StreamSpec,
        params: &RunParams,
        (start, end): (DateTime<Utc>, DateTime<Utc>),
    ) -> IngestPlan {
        let generated = generate_interval(
            spec,
            params.seed,
            start,
            end,
            params.scale,
            params.fault_rate,
        );
        let faults = generated
            .faults
            .0
            .iter()
            .map(|(k, v)| (format!("{k:?}"), *v))
            .collect();
        // An object per event hour and kind (late, on time, future): its key is made once, not
        // once per event.
        let mut objects: BTreeMap<(i64, u8), (String, u64, Vec<u8>)> = BTreeMap::new();
        for e in &generated.events {
            let t = e.event_time;
            let kind = match t {
                t if t < start => 0,
                t if t >= end => 2,
                _ => 1,
            };
            let (_, lines, body) = objects
                .entry((t.timestamp().div_euclid(3600), kind))
                .or_insert_with(|| (object_key(spec.name, t, start, end), 0, Vec::new()));
            *lines += 1;
            body.extend_from_slice(e.line.as_bytes());
            body.push(b'\n');
        }
        let mut objects: Vec<(String, u64, Vec<u8>)> = objects.into_values().collect();
        objects.sort_by(|a, b| a.0.cmp(&b.0));
        IngestPlan {
            stream: spec.name,
            interval: (start, end),
            events: generated.events.len() as u64,
            faults,
            objects: objects
                .into_iter()
                .map(|(key, lines, body)| PlannedObject { key, lines, body })
                .collect(),
        }
    }

    /// The attributes of an object of `lines` lines.
    fn attrs(&self, lines: u64) -> ObjectAttrs {
        let (start, end) = self.interval;
        ObjectAttrs {
            content_type: Some("application/x-ndjson".into()),
            metadata: vec![
                ("stream".into(), self.stream.into()),
                (
                    "interval".into(),
                    format!("{}/{}", rfc3339_secs(start), rfc3339_secs(end)),
                ),
                ("lines".into(), lines.to_string()),
            ],
        }
    }

    /// Lands the objects create-only, eight at a time.
    async fn execute(
        mut self,
        store: &Store,
        log: Option<&TaskLog>,
    ) -> Result<IngestMetrics, Error> {
        let puts: Vec<(PlannedObject, ObjectAttrs)> = std::mem::take(&mut self.objects)
            .into_iter()
            .map(|o| {
                let attrs = self.attrs(o.lines);
                (o, attrs)
            })
            .collect();
        let landed: Vec<LandedObject> = futures::stream::iter(puts)
            .map(|(o, attrs)| async move {
                let bytes = o.body.len() as u64;
                let outcome = store
                    .put_new(&o.key, Bytes::from(o.body), &attrs)
                    .await
                    .map_err(|e| Error::put(&o.key, e))?;
                super::signal::landed();
                let outcome = match outcome {
                    WriteOutcome::Created => "created",
                    WriteOutcome::AlreadyPresent => "already_present",
                };
                Ok::<_, Error>(LandedObject {
                    key: o.key,
                    lines: o.lines,
                    bytes,
                    outcome: outcome.into(),
                })
            })
            .buffered(8)
            .try_collect()
            .await?;
        for o in &landed {
            log_info(
                log,
                format!(
                    "{} {} ({} lines, {} bytes)",
                    o.outcome, o.key, o.lines, o.bytes
                ),
            );
        }
        Ok(IngestMetrics {
            stream: self.stream.into(),
            events: self.events,
            faults: self.faults,
            objects: landed,
        })
    }
}

/// Lands a data interval of one stream: plan with [`IngestPlan::new`], then put.
#[derive(Debug)]
pub struct IngestBuilder<'a> {
    store: &'a Store,
    spec: &'static StreamSpec,
    interval: (DateTime<Utc>, DateTime<Utc>),
    params: RunParams,
    log: Option<&'a TaskLog>,
}

impl<'a> IngestBuilder<'a> {
    /// Ingest of `spec`'s events of `interval` into `store`, with the default generator
    /// parameters.
    pub fn new(
        store: &'a Store,
        spec: &'static StreamSpec,
        interval: (DateTime<Utc>, DateTime<Utc>),
    ) -> IngestBuilder<'a> {
        IngestBuilder {
            store,
            spec,
            interval,
            params: RunParams::default(),
            log: None,
        }
    }

    /// Generator seed, scale and fault rate.
    pub fn with_params(mut self, params: RunParams) -> IngestBuilder<'a> {
        self.params = params;
        self
    }

    /// Where the operation logs what it does.
    pub fn with_log(mut self, log: &'a TaskLog) -> IngestBuilder<'a> {
        self.log = Some(log);
        self
    }

    /// The plan, without landing anything.
    pub fn plan(&self) -> IngestPlan {
        IngestPlan::new(self.spec, &self.params, self.interval)
    }
}

impl<'a> IntoFuture for IngestBuilder<'a> {
    type Output = Result<IngestMetrics, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let plan = self.plan();
            let (start, end) = self.interval;
            log_info(
                self.log,
                format!(
                    "generated {} {} events for [{}, {}) (seed {}, scale {}, faults {:?})",
                    plan.events,
                    plan.stream,
                    rfc3339_secs(start),
                    rfc3339_secs(end),
                    self.params.seed,
                    self.params.scale,
                    plan.faults
                ),
            );
            plan.execute(self.store, self.log).await
        })
    }
}

/// The body of `ingest`.
pub(super) struct Ingest {
    pub(super) spec: &'static StreamSpec,
}

#[async_trait::async_trait]
impl TaskBody for Ingest {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        let metrics = IngestBuilder::new(&ctx.store, self.spec, ctx.data_interval)
            .with_params(ctx.params.clone())
            .with_log(&ctx.log)
            .await?;
        for o in &metrics.objects {
            ctx.datasets
                .wrote(Dataset::at(&o.key).rows(o.lines).bytes(o.bytes));
        }
        output(&metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;

    #[test]
    fn the_plan_is_a_pure_function_of_its_inputs() {
        let interval = (
            parse_utc("2026-02-01T00:00:00Z").unwrap(),
            parse_utc("2026-02-01T00:05:00Z").unwrap(),
        );
        let params = RunParams {
            seed: 7,
            scale: 0.2,
            fault_rate: 0.05,
            ..RunParams::default()
        };
        let spec = &crate::sources::api_logs::SPEC;
        let plan = IngestPlan::new(spec, &params, interval);
        assert_eq!(plan, IngestPlan::new(spec, &params, interval));
        assert!(plan.events > 0);
        let lines: u64 = plan.objects.iter().map(|o| o.lines).sum();
        assert_eq!(lines, plan.events);
        for o in &plan.objects {
            assert!(o.key.starts_with("realtime/api_logs/date="), "{}", o.key);
            assert_eq!(
                o.body.iter().filter(|b| **b == b'\n').count() as u64,
                o.lines
            );
        }
        let keys: Vec<&str> = plan.objects.iter().map(|o| o.key.as_str()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "objects in key order");
    }
}
