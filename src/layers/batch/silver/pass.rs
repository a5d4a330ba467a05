//! Silver's one pass over bronze: cleaning runs in every partition of the bronze scan
//! ([`CleanedBronze`]), typed rows flow on to silver and quarantine rows go through a
//! [`QuarantineChannel`] to the quarantine write ([`QuarantineRows`]), which runs at the same
//! time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::TaskContext as DfTaskContext;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::{StreamExt as _, TryStreamExt as _};
use tokio::sync::mpsc;

use crate::layers::clean::{Cleaned, Cleaner, Counts};

/// Bronze rows of some dates, cleaned on the fly: one DataFusion partition stream per
/// partition of the bronze scan (so cleaning runs on every core), yielding the typed rows and
/// sending the quarantine rows to [`QuarantineRows`] — one pass over bronze for both tables.
#[derive(Debug)]
pub(super) struct CleanedBronze {
    pub(super) scan: Arc<dyn ExecutionPlan>,
    pub(super) partition: usize,
    pub(super) cleaner: Arc<Cleaner>,
    pub(super) counts: Arc<Mutex<Counts>>,
    pub(super) quarantine: Arc<QuarantineChannel>,
}

/// Where the cleaning partitions send quarantine rows. Each partition holds its own sender and
/// drops it when its stream ends or is dropped, so the channel closes once they all stopped;
/// the reader tells a finished pass from one that stopped early by [`Self::complete`].
#[derive(Debug)]
pub(super) struct QuarantineChannel {
    /// The sender partitions clone theirs from, until every partition has one.
    tx: Mutex<Option<mpsc::Sender<RecordBatch>>>,
    rx: Mutex<Option<mpsc::Receiver<RecordBatch>>>,
    /// Partitions that have not yet taken their sender.
    unstarted: AtomicUsize,
    /// Partitions that have not yet read their whole input.
    unfinished: AtomicUsize,
}

impl QuarantineChannel {
    pub(super) fn new(partitions: usize) -> Arc<QuarantineChannel> {
        let (tx, rx) = mpsc::channel(4);
        Arc::new(QuarantineChannel {
            // No partitions: nothing will be sent, the channel is closed from the start.
            tx: Mutex::new((partitions > 0).then_some(tx)),
            rx: Mutex::new(Some(rx)),
            unstarted: AtomicUsize::new(partitions),
            unfinished: AtomicUsize::new(partitions),
        })
    }

    /// A partition's sender; the last partition to take one leaves no other behind.
    pub(super) fn sender(&self) -> Option<mpsc::Sender<RecordBatch>> {
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let mine = tx.clone();
        let left = self
            .unstarted
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if left == Ok(1) {
            tx.take();
        }
        mine
    }

    /// One partition read all its input.
    pub(super) fn finished(&self) {
        self.unfinished.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether every partition read all its input.
    pub(super) fn complete(&self) -> bool {
        self.unfinished.load(Ordering::SeqCst) == 0
    }
}

impl PartitionStream for CleanedBronze {
    fn schema(&self) -> &SchemaRef {
        self.cleaner.clean_schema()
    }

    fn execute(&self, ctx: Arc<DfTaskContext>) -> SendableRecordBatchStream {
        let cleaner = Arc::clone(&self.cleaner);
        let counts = Arc::clone(&self.counts);
        let channel = Arc::clone(&self.quarantine);
        // Dropped with this stream, or at the end of its input after counting it finished.
        let tx = Arc::new(Mutex::new(channel.sender()));
        let batch_tx = Arc::clone(&tx);
        let input = futures::stream::once(futures::future::ready(
            self.scan.execute(self.partition, ctx),
        ))
        .try_flatten();
        let cleaned = input.and_then(move |b| {
            let tx = batch_tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let cleaned = cleaner.apply(&b, &counts);
            async move {
                let Cleaned { clean, quarantine } = cleaned?;
                if quarantine.num_rows() > 0 {
                    let tx = tx.ok_or_else(|| {
                        DataFusionError::Internal("quarantine channel already closed".into())
                    })?;
                    tx.send(quarantine).await.map_err(|_| {
                        DataFusionError::Execution("the quarantine writer stopped".into())
                    })?;
                }
                Ok(clean)
            }
        });
        let end = futures::stream::once(async move {
            channel.finished();
            tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        })
        .filter_map(|()| futures::future::ready(None));
        Box::pin(RecordBatchStreamAdapter::new(
            self.cleaner.clean_schema().clone(),
            cleaned.chain(end),
        ))
    }
}

/// The quarantine rows of a pass, read from [`QuarantineChannel`]: ends when every cleaning
/// partition has read its whole input, and fails if the channel closes before.
#[derive(Debug)]
pub(super) struct QuarantineRows {
    pub(super) channel: Arc<QuarantineChannel>,
    pub(super) schema: SchemaRef,
}

impl PartitionStream for QuarantineRows {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<DfTaskContext>) -> SendableRecordBatchStream {
        let rx = self
            .channel
            .rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let channel = Arc::clone(&self.channel);
        let stream: futures::stream::BoxStream<'static, Result<RecordBatch, DataFusionError>> =
            match rx {
                None => futures::stream::once(futures::future::ready(Err(
                    DataFusionError::Internal("quarantine rows read twice".into()),
                )))
                .boxed(),
                // The state is gone after an error: the stream ends there.
                Some(rx) => futures::stream::unfold(Some(rx), move |state| {
                    let channel = Arc::clone(&channel);
                    async move {
                        let mut rx = state?;
                        match rx.recv().await {
                            Some(b) => Some((Ok(b), Some(rx))),
                            None if channel.complete() => None,
                            None => Some((
                                Err(DataFusionError::Execution(
                                    "the silver pass stopped before the end of bronze".into(),
                                )),
                                None,
                            )),
                        }
                    }
                })
                .boxed(),
            };
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::clean::schema::quarantine_schema;

    /// The quarantine rows a [`QuarantineRows`] stream yields, or its error.
    async fn read_quarantine(channel: Arc<QuarantineChannel>) -> Result<usize, DataFusionError> {
        let rows = QuarantineRows {
            channel,
            schema: quarantine_schema(),
        };
        let batches: Vec<RecordBatch> = rows
            .execute(Arc::new(DfTaskContext::default()))
            .try_collect()
            .await?;
        Ok(batches.iter().map(RecordBatch::num_rows).sum())
    }

    #[tokio::test]
    async fn quarantine_rows_end_only_when_every_partition_read_its_input() {
        let batch = || RecordBatch::new_empty(quarantine_schema());
        // Both partitions finish: the rows sent arrive, then the stream ends.
        let channel = QuarantineChannel::new(2);
        let (a, b) = (channel.sender().unwrap(), channel.sender().unwrap());
        let reader = tokio::spawn(read_quarantine(Arc::clone(&channel)));
        a.send(batch()).await.unwrap();
        for tx in [a, b] {
            channel.finished();
            drop(tx);
        }
        assert_eq!(reader.await.unwrap().unwrap(), 0);
        // One partition stops early (its stream is dropped): an error, not a short table.
        let channel = QuarantineChannel::new(2);
        let (a, b) = (channel.sender().unwrap(), channel.sender().unwrap());
        channel.finished();
        drop((a, b));
        let err = read_quarantine(Arc::clone(&channel)).await.unwrap_err();
        assert!(err.to_string().contains("stopped before the end"), "{err}");
        // A second read is refused.
        assert!(read_quarantine(channel).await.is_err());
        // No partitions at all: nothing to wait for.
        assert_eq!(read_quarantine(QuarantineChannel::new(0)).await.unwrap(), 0);
    }
}
