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
//!
//! On a store that ignores create-only PUT (Garage; `_lakepipe/capabilities.json` says
//! `check-then-put`) two writers committing the same version would each overwrite the other's
//! commit and both believe they had made it: one commit silently lost (measured with
//! deltalake-py: 8 concurrent appends kept 4 of 9 rows). There a create-only write is made
//! under a claim (`_lakepipe/claims/<key>/…`, see [`OwnWrites::create_claimed`]): writers of one
//! key take turns, the key is written only while absent, and a writer that finds it written
//! gets "already exists" — deltalake then treats it as the concurrent commit it is (retries at
//! the next version, or fails the operation with its conflict) as on stores with create-only
//! writes. No timing is assumed but for claims left by dead writers, passed over after a minute.

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

use futures::TryStreamExt;

use super::{CreateMode, Store};

/// Times a create-only write that failed in transport is repeated.
const TRANSPORT_RETRIES: u32 = 5;

/// `inner`, with create-only writes that find their own bytes treated as done.
#[derive(Debug)]
pub struct OwnWrites {
    inner: Arc<dyn ObjectStore>,
    mode: ModeOf,
}

/// Where [`OwnWrites`] learns whether the store honours create-only writes.
#[derive(Debug)]
enum ModeOf {
    #[cfg(test)]
    Known(CreateMode),
    /// The lake's recorded or probed capability, asked at the first create-only write.
    Lake(Store),
}

impl OwnWrites {
    /// Wraps `inner`, a store that honours create-only writes.
    #[cfg(test)]
    pub fn new(inner: Arc<dyn ObjectStore>) -> OwnWrites {
        OwnWrites::with_mode(inner, CreateMode::Conditional)
    }

    /// Wraps `inner`, whose create-only writes are made as `mode` says.
    #[cfg(test)]
    pub fn with_mode(inner: Arc<dyn ObjectStore>, mode: CreateMode) -> OwnWrites {
        OwnWrites {
            inner,
            mode: ModeOf::Known(mode),
        }
    }

    /// Wraps the object store of `lake`, asking the lake how create-only writes are made.
    pub fn for_lake(lake: &Store) -> OwnWrites {
        OwnWrites {
            inner: lake.object_store(),
            mode: ModeOf::Lake(lake.clone()),
        }
    }

    async fn create_mode(&self) -> Result<CreateMode> {
        match &self.mode {
            #[cfg(test)]
            ModeOf::Known(m) => Ok(*m),
            ModeOf::Lake(lake) => {
                lake.create_mode()
                    .await
                    .map_err(|e| object_store::Error::Generic {
                        store: "OwnWrites",
                        source: Box::new(e),
                    })
            }
        }
    }

    /// A create-only write on a store that ignores the condition, made under a claim: the
    /// writer puts a claim object of its own next to the key's other claims, lists them, and
    /// writes the key only if it saw no other live claim and the key is still absent; a writer
    /// that saw another claim withdraws its own and tries again after a random pause. Of
    /// writers whose claims overlap, at least the later lister sees the other's claim, so two
    /// never both write; a winner removes its claim only after its write, so a later claimant
    /// finds the key.
    async fn create_claimed(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let refused = || object_store::Error::AlreadyExists {
            path: location.to_string(),
            source: "the key exists (checked under a claim: this store ignores create-only \
                     writes)"
                .into(),
        };
        let folder = Path::from(format!("{CLAIMS}/{location}"));
        let overwrite = PutOptions {
            mode: PutMode::Overwrite,
            ..opts
        };
        for round in 0..CLAIM_ROUNDS {
            if self.exists(location).await? {
                return Err(refused());
            }
            let mine = folder.clone().join(claim_name().as_str());
            self.inner.put(&mine, PutPayload::new()).await?;
            let claims: Vec<ObjectMeta> = self.inner.list(Some(&folder)).try_collect().await?;
            let alone = claims
                .iter()
                .find(|m| m.location == mine)
                .is_some_and(|me| {
                    claims.iter().all(|m| {
                        m.location == mine || me.last_modified - m.last_modified > CLAIM_TTL
                    })
                });
            if alone {
                let written = if self.exists(location).await? {
                    Err(refused())
                } else {
                    self.inner
                        .put_opts(location, payload.clone(), overwrite.clone())
                        .await
                };
                let _ = self.inner.delete(&mine).await;
                return written;
            }
            let _ = self.inner.delete(&mine).await;
            tracing::debug!(key = %location, round, "another writer claims this key: trying again");
            tokio::time::sleep(jitter(round)).await;
        }
        Err(object_store::Error::Generic {
            store: "OwnWrites",
            source: format!(
                "{location}: other writers kept claiming this key ({CLAIM_ROUNDS} rounds); this \
                 store ignores create-only writes, so concurrent writers take turns"
            )
            .into(),
        })
    }

    async fn exists(&self, location: &Path) -> Result<bool> {
        match self.inner.head(location).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Where claims on create-only keys are made on stores that ignore create-only writes:
/// `<CLAIMS>/<key>/<claim>`.
const CLAIMS: &str = "_lakepipe/claims";

/// A claim older than this (by the store's clock) than one's own was left by a writer that
/// died between its claim and its write, and is passed over.
const CLAIM_TTL: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Rounds of claiming before a write gives up.
const CLAIM_ROUNDS: u32 = 40;

/// A name no other claim has: time, process, and a counter.
fn claim_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{nanos:024}-{}-{n}", std::process::id())
}

/// A random pause before claiming round `round + 1`: up to 25 ms doubled per round, at most
/// 400 ms.
fn jitter(round: u32) -> Duration {
    use std::hash::BuildHasher;
    let cap = 25u64 << round.min(4);
    Duration::from_millis(std::hash::RandomState::new().hash_one(round) % cap + 1)
}

fn same_bytes(stored: &[u8], payload: &PutPayload) -> bool {
    stored.len() == payload.content_length()
        && payload
            .iter()
            .flat_map(|b| b.iter())
            .zip(stored)
            .all(|(a, b)| a == b)
}

/// When a create-only write refused because its key holds the very bytes being written is
/// taken for this writer's own earlier write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OwnBytes {
    /// Always: the bytes are unique to this write (a Delta commit's timestamp and file names,
    /// a lease's owner id), so whoever wrote them was this write, repeated by the client's
    /// retry policy or by [`create_repeated`].
    Unique,
    /// Only when [`create_repeated`] repeated the write: deterministic bytes (a landed object)
    /// that another writer, or an earlier run, may have written first; a first refusal is
    /// reported as such, and the caller tells "already present" from a conflict.
    AfterRepeat,
}

/// A create-only PUT (`opts.mode` is `Create`) on a store that honours the condition, made
/// as if the network were reliable. The client does not repeat a create-only PUT whose
/// connection failed (it is not idempotent to it); here it is repeated: the condition keeps it
/// from overwriting anything. A refusal is then read: a key holding exactly the bytes being
/// written was this very write, made once already with its answer lost, and is a success —
/// when `own` says the bytes could be no one else's. Any other content stays refused
/// (`AlreadyExists`).
pub(super) async fn create_repeated(
    inner: &dyn ObjectStore,
    location: &Path,
    payload: PutPayload,
    opts: PutOptions,
    own: OwnBytes,
) -> Result<PutResult> {
    let mut attempt = 0;
    let answer = loop {
        match inner
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
    let Err(refused @ object_store::Error::AlreadyExists { .. }) = answer else {
        return answer;
    };
    if own == OwnBytes::AfterRepeat && attempt == 0 {
        return Err(refused);
    }
    let existing = match inner.get(location).await {
        Ok(got) => got,
        Err(_) => return Err(refused),
    };
    let (e_tag, version) = (existing.meta.e_tag.clone(), existing.meta.version.clone());
    let bytes = existing.bytes().await?;
    if same_bytes(&bytes, &payload) {
        tracing::info!(
            key = %location,
            "a create-only write refused on retry found its own bytes: it had succeeded"
        );
        Ok(PutResult { e_tag, version })
    } else {
        Err(refused)
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
        if self.create_mode().await? == CreateMode::CheckThenPut {
            return self.create_claimed(location, payload, opts).await;
        }
        create_repeated(
            self.inner.as_ref(),
            location,
            payload,
            opts,
            OwnBytes::Unique,
        )
        .await
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
        /// Overwrites like Garage, which ignores `If-None-Match`, after a pause of up to
        /// 20 ms that lets concurrent writers interleave.
        IgnoresCreate,
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
                Fault::IgnoresCreate => {
                    use std::hash::BuildHasher;
                    let pause = std::hash::RandomState::new().hash_one(location) % 20;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    let opts = PutOptions {
                        mode: PutMode::Overwrite,
                        ..opts
                    };
                    self.inner.put_opts(location, payload, opts).await
                }
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

    /// Eight writers appending to one table at once on a store that ignores create-only
    /// writes (Garage): over [`OwnWrites`] in check-then-put mode every append that reports
    /// success is in the table — the overwritten commits were refused and made again at a
    /// later version. Plain, the same appends overwrite each other's commits and report
    /// success: rows lost silently.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_delta_writers_on_a_store_ignoring_create_only_writes_lose_no_commit() {
        let ignores = || -> Arc<dyn ObjectStore> {
            Arc::new(Faulty::over(
                Arc::new(InMemory::new()),
                Fault::IgnoresCreate,
            ))
        };
        let checked = Arc::new(OwnWrites::with_mode(ignores(), CreateMode::CheckThenPut));
        let (ok, rows) = concurrent_appends(checked, 8).await;
        eprintln!("check-then-put under claims: {ok} of 8 appends succeeded, {rows} rows");
        assert_eq!(rows, ok + 1, "{ok} appends succeeded, {rows} rows");
        assert!(ok >= 1);
        // Plain: the commits overwrite each other and all claim success.
        let (ok, rows) = concurrent_appends(ignores(), 8).await;
        eprintln!("plain: {ok} of 8 appends succeeded, {rows} rows");
        assert!(rows < ok + 1, "{ok} appends succeeded, {rows} rows");
    }

    /// Creates the table (one row) over `store`, then makes `n` one-row appends at once:
    /// how many reported success, and the rows the table holds.
    async fn concurrent_appends(store: Arc<dyn ObjectStore>, n: i64) -> (usize, usize) {
        use deltalake::arrow::array::{Int64Array, RecordBatch};
        use deltalake::arrow::datatypes::{DataType, Field, Schema};
        let url = url::Url::parse("lakepipe://lake/t").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let batch = |i: i64| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from(vec![i]))],
            )
            .unwrap()
        };
        let table = || {
            super::super::delta::builder_over(Arc::clone(&store), url.clone())
                .unwrap()
                .build()
                .unwrap()
        };
        table().write(vec![batch(-1)]).await.unwrap();
        let mut writers = tokio::task::JoinSet::new();
        for i in 0..n {
            let mut t = table();
            let rows = batch(i);
            writers.spawn(async move {
                t.load().await.unwrap();
                t.write(vec![rows]).await.is_ok()
            });
        }
        let ok = writers
            .join_all()
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count();
        let mut t = table();
        t.load().await.unwrap();
        let rows = t
            .snapshot()
            .unwrap()
            .log_data()
            .iter()
            .map(|f| f.num_records().unwrap_or(0))
            .sum();
        (ok, rows)
    }
}
