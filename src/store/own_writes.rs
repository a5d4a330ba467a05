//! A create-only write that finds its own bytes already there succeeded.
//!
//! A Delta commit is a create-only PUT of `_delta_log/<version>.json`. When S3 stores the
//! object but the answer is lost (a connection reset after the request was forwarded, a 5xx
//! from a proxy), the client retries and the retry is refused: the key exists. deltalake then
//! takes the commit for another writer's, checks its own against it and either fails the
//! operation as a conflict (an overwrite or a date replace: "a concurrent transaction deleted
//! data this operation read") or — a blind append — commits the same rows again at the next
//! version: counted twice. A connection that fails during the PUT is worse: the client does not
//! repeat a create-only PUT, so the commit fails though it may have been stored, and the task's
//! retry makes it again. [`OwnWrites`], under the Delta tables of an S3 lake, repeats a
//! create-only PUT that failed in transport, and reads the
//! object a refused create-only PUT names: if it holds exactly the bytes being written, the
//! write was this one (a commit's bytes carry its timestamp and the random names of the files
//! it adds, which no other writer repeats) and it succeeded. Any other content stays refused.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Times a create-only write that failed in transport is repeated.
const TRANSPORT_RETRIES: u32 = 5;

/// `inner`, with create-only writes that find their own bytes treated as done.
#[derive(Debug)]
pub struct OwnWrites {
    inner: Arc<dyn ObjectStore>,
}

impl OwnWrites {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> OwnWrites {
        OwnWrites { inner }
    }
}

impl fmt::Display for OwnWrites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnWrites({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for OwnWrites {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        if !matches!(opts.mode, PutMode::Create) {
            return self.inner.put_opts(location, payload, opts).await;
        }
        // The client does not repeat a create-only PUT whose connection failed (it is not
        // idempotent to it); here it is: the condition keeps it from overwriting anything, and
        // a refusal is then read below.
        let mut attempt = 0;
        let answer = loop {
            match self
                .inner
                .put_opts(location, payload.clone(), opts.clone())
                .await
            {
                Err(e @ object_store::Error::Generic { .. }) if attempt < TRANSPORT_RETRIES => {
                    attempt += 1;
                    tracing::warn!(key = %location, attempt, error = %e, "create-only write failed in transport: repeated");
                    tokio::time::sleep(Duration::from_millis(100 << attempt.min(4))).await;
                }
                other => break other,
            }
        };
        let sent = payload;
        match answer {
            Err(refused @ object_store::Error::AlreadyExists { .. }) => {
                let existing = match self.inner.get(location).await {
                    Ok(got) => got,
                    Err(_) => return Err(refused),
                };
                let (e_tag, version) = (existing.meta.e_tag.clone(), existing.meta.version.clone());
                let bytes = existing.bytes().await?;
                let ours: Vec<u8> = sent.iter().flat_map(|b| b.iter().copied()).collect();
                if bytes.as_ref() == ours.as_slice() {
                    tracing::info!(
                        key = %location,
                        "a create-only write refused on retry found its own bytes: it had succeeded"
                    );
                    Ok(PutResult { e_tag, version })
                } else {
                    Err(refused)
                }
            }
            other => other,
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    /// What a [`Faulty`] store does to create-only writes.
    #[derive(Debug, Clone, Copy)]
    enum Fault {
        /// Stores every one, then answers as the client's retry of it would: the key exists
        /// (the first answer was lost).
        LostAnswer,
        /// Fails the first one of each key in transport, after storing it (`stored`) or
        /// before.
        Reset { stored: bool },
    }

    /// An object store that answers create-only writes with `fault`; everything else passes.
    #[derive(Debug)]
    struct Faulty {
        inner: Arc<dyn ObjectStore>,
        fault: Fault,
        seen: std::sync::Mutex<std::collections::HashSet<Path>>,
    }

    impl Faulty {
        fn over(inner: Arc<dyn ObjectStore>, fault: Fault) -> Faulty {
            Faulty {
                inner,
                fault,
                seen: Default::default(),
            }
        }
    }

    impl fmt::Display for Faulty {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Faulty({:?})", self.fault)
        }
    }

    #[async_trait]
    impl ObjectStore for Faulty {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> Result<PutResult> {
            if !matches!(opts.mode, PutMode::Create) {
                return self.inner.put_opts(location, payload, opts).await;
            }
            match self.fault {
                Fault::LostAnswer => {
                    self.inner
                        .put_opts(location, payload.clone(), opts.clone())
                        .await?;
                    self.inner.put_opts(location, payload, opts).await
                }
                Fault::Reset { stored } => {
                    if !self.seen.lock().unwrap().insert(location.clone()) {
                        return self.inner.put_opts(location, payload, opts).await;
                    }
                    if stored {
                        self.inner.put_opts(location, payload, opts).await?;
                    }
                    Err(object_store::Error::Generic {
                        store: "Faulty",
                        source: "connection reset".into(),
                    })
                }
            }
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, Result<Path>>,
        ) -> BoxStream<'static, Result<Path>> {
            self.inner.delete_stream(locations)
        }
        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    /// Every commit's connection reset once, before or after the store kept it: over
    /// [`OwnWrites`] each append is one version with its row.
    #[tokio::test]
    async fn delta_commits_whose_connection_reset_are_made_once() {
        for stored in [false, true] {
            let resets = |stored| -> Arc<dyn ObjectStore> {
                Arc::new(Faulty::over(
                    Arc::new(InMemory::new()),
                    Fault::Reset { stored },
                ))
            };
            let own: Arc<dyn ObjectStore> = Arc::new(OwnWrites::new(resets(stored)));
            assert_eq!(appends(own, 3).await, (Some(2), 3, 0), "stored {stored}");
            // Unwrapped, appends fail (their commit stored or not).
            let (_, _, failed) = appends(resets(stored), 3).await;
            assert!(failed > 0, "stored {stored}");
        }
    }

    fn create() -> PutOptions {
        PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        }
    }

    #[tokio::test]
    async fn a_refused_retry_of_its_own_bytes_succeeds_and_other_bytes_stay_refused() {
        let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let store = OwnWrites::new(Arc::new(Faulty::over(
            Arc::clone(&memory),
            Fault::LostAnswer,
        )));
        let key = Path::from("t/_delta_log/00000000000000000001.json");
        store
            .put_opts(&key, PutPayload::from_static(b"ours"), create())
            .await
            .unwrap();
        let theirs = store
            .put_opts(&key, PutPayload::from_static(b"theirs"), create())
            .await;
        assert!(matches!(
            theirs,
            Err(object_store::Error::AlreadyExists { .. })
        ));
        let got = memory.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.as_ref(), b"ours");
        // Unwrapped, the same lost answer is a refusal.
        let bare = Faulty::over(memory, Fault::LostAnswer);
        let again = Path::from("t/_delta_log/00000000000000000002.json");
        assert!(
            bare.put_opts(&again, PutPayload::from_static(b"x"), create())
                .await
                .is_err()
        );
    }

    /// Appends to a Delta table over `store` (one row each): the table's version and rows after
    /// the appends that succeeded, and how many failed.
    async fn appends(store: Arc<dyn ObjectStore>, n: i64) -> (Option<u64>, usize, usize) {
        use deltalake::arrow::array::{Int64Array, RecordBatch};
        use deltalake::arrow::datatypes::{DataType, Field, Schema};
        let url = url::Url::parse("lakepipe://lake/t").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let mut failed = 0;
        for i in 0..n {
            let mut table = super::super::delta::builder_over(Arc::clone(&store), url.clone())
                .unwrap()
                .build()
                .unwrap();
            let table = match table.load().await {
                Ok(()) => table,
                Err(_) => super::super::delta::builder_over(Arc::clone(&store), url.clone())
                    .unwrap()
                    .build()
                    .unwrap(),
            };
            let rows = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from(vec![i]))],
            )
            .unwrap();
            if table.write(vec![rows]).await.is_err() {
                failed += 1;
            }
        }
        let mut table = super::super::delta::builder_over(store, url)
            .unwrap()
            .build()
            .unwrap();
        table.load().await.unwrap();
        let rows = table
            .snapshot()
            .unwrap()
            .log_data()
            .iter()
            .map(|f| f.num_records().unwrap_or(0))
            .sum();
        (table.version(), rows, failed)
    }

    /// Every commit's answer lost: over [`OwnWrites`] each append is one version with its row;
    /// without it the same appends are counted twice or fail.
    #[tokio::test]
    async fn delta_commits_whose_answer_was_lost_are_made_once() {
        let lossy = |memory: Arc<dyn ObjectStore>| -> Arc<dyn ObjectStore> {
            Arc::new(Faulty::over(memory, Fault::LostAnswer))
        };
        let own: Arc<dyn ObjectStore> = Arc::new(OwnWrites::new(lossy(Arc::new(InMemory::new()))));
        assert_eq!(appends(own, 3).await, (Some(2), 3, 0));
        let (_, rows, failed) = appends(lossy(Arc::new(InMemory::new())), 3).await;
        assert!(rows != 3 || failed > 0, "rows {rows}, failed {failed}");
    }
}
