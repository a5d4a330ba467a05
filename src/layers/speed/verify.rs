//! `verify`: read back what `ingest` reported — every object present with the size it wrote,
//! and as many lines as events were generated.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use super::{Error, IngestMetrics};
use crate::scheduler::task::{Dataset, TaskLog, log_info, output};
use crate::scheduler::{TaskBody, TaskContext, TaskResult};
use crate::store::Store;

/// What `verify` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyMetrics {
    /// Objects checked.
    pub objects: u64,
    /// Lines they hold, by ingest's count.
    pub lines: u64,
}

/// Checks an ingest's objects against its report.
#[derive(Debug)]
pub struct VerifyBuilder<'a> {
    store: &'a Store,
    ingest: &'a IngestMetrics,
    log: Option<&'a TaskLog>,
}

impl<'a> VerifyBuilder<'a> {
    /// Verification of what `ingest` reported against `store`.
    pub fn new(store: &'a Store, ingest: &'a IngestMetrics) -> VerifyBuilder<'a> {
        VerifyBuilder {
            store,
            ingest,
            log: None,
        }
    }

    /// Where the operation logs what it does.
    pub fn with_log(mut self, log: &'a TaskLog) -> VerifyBuilder<'a> {
        self.log = Some(log);
        self
    }

    /// The lines the report adds up to, checked against its event count (no I/O).
    pub fn plan(&self) -> Result<u64, Error> {
        let lines: u64 = self.ingest.objects.iter().map(|o| o.lines).sum();
        if lines != self.ingest.events {
            return Err(Error::Miscounted {
                events: self.ingest.events,
                lines,
            });
        }
        Ok(lines)
    }
}

impl<'a> IntoFuture for VerifyBuilder<'a> {
    type Output = Result<VerifyMetrics, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let mut checked = 0u64;
            for o in &self.ingest.objects {
                let meta = self
                    .store
                    .head(&o.key)
                    .await?
                    .ok_or_else(|| Error::Missing { key: o.key.clone() })?;
                if meta.size != o.bytes {
                    return Err(Error::Replaced {
                        key: o.key.clone(),
                        size: meta.size,
                        wrote: o.bytes,
                    });
                }
                checked += 1;
            }
            let lines = self.plan()?;
            log_info(
                self.log,
                format!("verified {checked} objects, {lines} lines"),
            );
            Ok(VerifyMetrics {
                objects: checked,
                lines,
            })
        })
    }
}

/// The body of `verify`.
pub(super) struct Verify;

#[async_trait::async_trait]
impl TaskBody for Verify {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        let ingest = ctx.upstream.get("ingest").ok_or(Error::NoIngestOutput)?;
        let ingest: IngestMetrics =
            serde_json::from_value(ingest.clone()).map_err(Error::BadIngestOutput)?;
        let metrics = VerifyBuilder::new(&ctx.store, &ingest)
            .with_log(&ctx.log)
            .await?;
        for o in &ingest.objects {
            ctx.datasets
                .read(Dataset::at(&o.key).rows(o.lines).bytes(o.bytes));
        }
        output(&metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::speed::LandedObject;

    #[test]
    fn a_report_whose_lines_do_not_add_up_is_refused_before_any_read() {
        let object = |lines| LandedObject {
            key: "k".into(),
            lines,
            bytes: 10,
            outcome: "created".into(),
        };
        let report = IngestMetrics {
            stream: "api_logs".into(),
            events: 5,
            faults: Default::default(),
            objects: vec![object(2), object(2)],
        };
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config {
            lake: dir.path().display().to_string(),
            ..Default::default()
        }
        .validate()
        .unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = rt.block_on(Store::open(&cfg)).unwrap();
        let verify = VerifyBuilder::new(&store, &report);
        assert_eq!(
            verify.plan().unwrap_err().to_string(),
            "ingest generated 5 events but landed 4 lines"
        );
        let fine = IngestMetrics {
            events: 4,
            ..report.clone()
        };
        assert_eq!(VerifyBuilder::new(&store, &fine).plan().unwrap(), 4);
        let json = serde_json::to_value(VerifyMetrics {
            objects: 2,
            lines: 4,
        })
        .unwrap();
        assert_eq!(json, serde_json::json!({ "objects": 2, "lines": 4 }));
    }
}
