//! Reads whose answer broke off, and deletes without an answer, are made again.
//!
//! object_store retries a request that fails before its answer starts (5xx, throttling, a
//! refused or reset connection, a timeout), but not one whose body breaks off after a `200`:
//! a GET or LIST answer cut short by a reset connection fails the read with "error reading a
//! body from connection", and a LIST that fails so ended a whole `simulate` (found by the fault
//! proxy of `tests/it/faults.rs`). [`ReadRetries`], under the lake's S3 store, reads a GET's
//! body to its end and asks again if it breaks; a LIST that breaks is resumed after the last key
//! it gave (S3 lists in key order), so nothing is listed twice or skipped. Each such retry is
//! counted in `/metrics` ([`super::metrics::count_body_retry`]). S3 deletes are bulk POSTs,
//! which the client does not repeat when the connection fails: a delete is idempotent, so
//! its batch is sent again (a lost lease release or takeover failed `serve` at start-up); the
//! failed attempt is counted by the HTTP client, as a connection error.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Times a read whose answer broke off is made again.
const BODY_RETRIES: u32 = 4;

/// `inner`, with reads whose answer broke off made again.
#[derive(Debug)]
pub struct ReadRetries {
    inner: Arc<dyn ObjectStore>,
}

impl ReadRetries {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> ReadRetries {
        ReadRetries { inner }
    }
}

impl fmt::Display for ReadRetries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReadRetries({})", self.inner)
    }
}

/// Whether `e` may be a broken answer worth asking again: only untyped errors are (the typed
/// ones — not found, precondition, not modified, already exists — are answers).
fn broken(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::Generic { .. })
}

async fn pause(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(50 << attempt.min(4))).await;
}

/// `read()` until it succeeds, fails with an answer, or has broken [`BODY_RETRIES`] times;
/// each repetition logged with `what`, and counted when `counted` (a failure without an answer
/// is counted by the HTTP client already: one that broke off after its status is not).
async fn again<T, F, Fut>(what: &str, counted: bool, mut read: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        match read().await {
            Err(e) if broken(&e) && attempt < BODY_RETRIES => {
                attempt += 1;
                if counted {
                    super::metrics::count_body_retry();
                }
                tracing::warn!(attempt, error = %e, "{what} broke off: asked again");
                pause(attempt).await;
            }
            other => return other,
        }
    }
}

#[async_trait]
impl ObjectStore for ReadRetries {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if options.head {
            return self.inner.get_opts(location, options).await;
        }
        let body = again("GET", true, || async {
            let got = self.inner.get_opts(location, options.clone()).await?;
            let (meta, range, attributes) =
                (got.meta.clone(), got.range.clone(), got.attributes.clone());
            Ok((got.bytes().await?, meta, range, attributes))
        });
        let (body, meta, range, attributes) = body.await?;
        Ok(GetResult {
            payload: GetResultPayload::Stream(
                futures::stream::once(async move { Ok(body) }).boxed(),
            ),
            meta,
            range,
            attributes,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        again("ranged GET", true, || {
            self.inner.get_ranges(location, ranges)
        })
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let inner = Arc::clone(&self.inner);
        locations
            .chunks(DELETE_BATCH)
            .then(move |chunk| deleted(Arc::clone(&inner), chunk))
            .flat_map(futures::stream::iter)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        resumed(Arc::clone(&self.inner), prefix.cloned(), None)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        resumed(
            Arc::clone(&self.inner),
            prefix.cloned(),
            Some(offset.clone()),
        )
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        again("LIST", true, || self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Keys per bulk DELETE (S3's limit).
const DELETE_BATCH: usize = 1000;

/// Deletes `chunk` (one bulk request); a request that failed without an answer (S3 sends a
/// bulk delete as a POST, which the client does not repeat) is made again: deleting is
/// idempotent. Failed keys of the input pass through as they are.
async fn deleted(inner: Arc<dyn ObjectStore>, chunk: Vec<Result<Path>>) -> Vec<Result<Path>> {
    let mut out = Vec::with_capacity(chunk.len());
    let mut paths = Vec::with_capacity(chunk.len());
    for item in chunk {
        match item {
            Ok(p) => paths.push(p),
            Err(e) => out.push(Err(e)),
        }
    }
    if paths.is_empty() {
        return out;
    }
    let answer = again("DELETE", false, || {
        let batch = futures::stream::iter(paths.clone().into_iter().map(Ok)).boxed();
        let stream = inner.delete_stream(batch);
        async move {
            let results: Vec<Result<Path>> = stream.collect().await;
            // A broken request fails every key of it: ask again for the whole batch.
            match results.iter().position(|r| r.as_ref().is_err_and(broken)) {
                Some(i) => Err(results
                    .into_iter()
                    .nth(i)
                    .and_then(Result::err)
                    .expect("an error")),
                None => Ok(results),
            }
        }
    })
    .await;
    match answer {
        Ok(results) => out.extend(results),
        Err(e) => {
            let message = e.to_string();
            out.push(Err(e));
            out.extend(paths.iter().skip(1).map(|p| {
                Err(object_store::Error::Generic {
                    store: "ReadRetries",
                    source: format!("DELETE {p}: {message}").into(),
                })
            }));
        }
    }
    out
}

/// The listing of `prefix` after `offset`, resumed after the last key it gave when it breaks.
fn resumed(
    inner: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
    offset: Option<Path>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    let list = |after: &Option<Path>| match after {
        Some(o) => inner.list_with_offset(prefix.as_ref(), o),
        None => inner.list(prefix.as_ref()),
    };
    let first = list(&offset);
    futures::stream::unfold(
        (first, offset, 0u32, false),
        move |(mut current, mut last, mut attempt, done)| {
            let (inner, prefix) = (Arc::clone(&inner), prefix.clone());
            async move {
                if done {
                    return None;
                }
                loop {
                    match current.next().await {
                        None => return None,
                        Some(Ok(meta)) => {
                            last = Some(meta.location.clone());
                            return Some((Ok(meta), (current, last, attempt, false)));
                        }
                        Some(Err(e)) if broken(&e) && attempt < BODY_RETRIES => {
                            attempt += 1;
                            super::metrics::count_body_retry();
                            tracing::warn!(attempt, error = %e, "LIST broke off: resumed after the last key");
                            pause(attempt).await;
                            current = match &last {
                                Some(o) => inner.list_with_offset(prefix.as_ref(), o),
                                None => inner.list(prefix.as_ref()),
                            };
                        }
                        Some(Err(e)) => return Some((Err(e), (current, last, attempt, true))),
                    }
                }
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Every listing breaks after its second entry, and every GET's body breaks, `breaks`
    /// times in all.
    #[derive(Debug)]
    struct Breaking {
        inner: Arc<dyn ObjectStore>,
        breaks: Arc<AtomicU32>,
    }

    impl fmt::Display for Breaking {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Breaking")
        }
    }

    fn cut() -> object_store::Error {
        object_store::Error::Generic {
            store: "Breaking",
            source: "error reading a body from connection".into(),
        }
    }

    impl Breaking {
        fn take(&self) -> bool {
            self.breaks
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        }
    }

    #[async_trait]
    impl ObjectStore for Breaking {
        async fn put_opts(&self, l: &Path, p: PutPayload, o: PutOptions) -> Result<PutResult> {
            self.inner.put_opts(l, p, o).await
        }
        async fn put_multipart_opts(
            &self,
            l: &Path,
            o: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(l, o).await
        }
        async fn get_opts(&self, l: &Path, o: GetOptions) -> Result<GetResult> {
            let mut got = self.inner.get_opts(l, o).await?;
            if self.take() {
                got.payload =
                    GetResultPayload::Stream(futures::stream::once(async { Err(cut()) }).boxed());
            }
            Ok(got)
        }
        fn delete_stream(
            &self,
            l: BoxStream<'static, Result<Path>>,
        ) -> BoxStream<'static, Result<Path>> {
            if self.take() {
                // The bulk request got no answer: every key of it fails, none deleted.
                return l.map(|_| Err(cut())).boxed();
            }
            self.inner.delete_stream(l)
        }
        fn list(&self, p: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            let broken = self.take();
            let items = self.inner.list(p);
            if !broken {
                return items;
            }
            items
                .take(2)
                .chain(futures::stream::once(async { Err(cut()) }))
                .boxed()
        }
        fn list_with_offset(
            &self,
            p: Option<&Path>,
            o: &Path,
        ) -> BoxStream<'static, Result<ObjectMeta>> {
            let broken = self.take();
            let items = self.inner.list_with_offset(p, o);
            if !broken {
                return items;
            }
            items
                .take(2)
                .chain(futures::stream::once(async { Err(cut()) }))
                .boxed()
        }
        async fn list_with_delimiter(&self, p: Option<&Path>) -> Result<ListResult> {
            self.inner.list_with_delimiter(p).await
        }
        async fn copy_opts(&self, f: &Path, t: &Path, o: CopyOptions) -> Result<()> {
            self.inner.copy_opts(f, t, o).await
        }
    }

    #[tokio::test]
    async fn a_listing_that_breaks_resumes_after_its_last_key_and_a_broken_get_or_delete_is_made_again()
     {
        let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for i in 0..7 {
            memory
                .put(
                    &Path::from(format!("p/k{i}")),
                    PutPayload::from(format!("v{i}")),
                )
                .await
                .unwrap();
        }
        let breaks = Arc::new(AtomicU32::new(3));
        let breaking: Arc<dyn ObjectStore> = Arc::new(Breaking {
            inner: memory,
            breaks: Arc::clone(&breaks),
        });
        let store = ReadRetries::new(Arc::clone(&breaking));
        let keys: Vec<String> = store
            .list(Some(&Path::from("p")))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        let want: Vec<String> = (0..7).map(|i| format!("p/k{i}")).collect();
        assert_eq!(keys, want, "every key once, in order, across three breaks");
        breaks.store(2, Ordering::SeqCst);
        let body = store
            .get(&Path::from("p/k3"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.as_ref(), b"v3");
        // Unwrapped, the same breaks fail the reads.
        breaks.store(1, Ordering::SeqCst);
        let plain: Result<Vec<ObjectMeta>> =
            breaking.list(Some(&Path::from("p"))).try_collect().await;
        assert!(plain.is_err());
        // A bulk delete without an answer is sent again.
        breaks.store(2, Ordering::SeqCst);
        store.delete(&Path::from("p/k0")).await.unwrap();
        assert!(store.head(&Path::from("p/k0")).await.is_err(), "deleted");
        breaks.store(1, Ordering::SeqCst);
        assert!(breaking.delete(&Path::from("p/k1")).await.is_err());
    }
}
