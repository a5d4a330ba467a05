//! The file system under a local lake's Delta tables, with listings from an offset that look
//! at nothing sorting before it.
//!
//! Every Delta commit, and every update of a table to its newest version, lists the table's
//! `_delta_log` from a recent version on: the log store asks for the objects after
//! `_delta_log/<version>.json`. `object_store`'s local listing walks the whole folder and, for
//! every entry, converts its path to a key and `stat`s it three times (following links)
//! before it can compare the key with the offset. A table keeps a few hundred log entries
//! (48 hours of 10-minute runs: `[upkeep] log_retention_hours`; thousands at a live tick of
//! seconds), so every commit paid for that many conversions and system calls. [`OffsetListing`]
//! reads the folder's names (`readdir`), skips those that sort at or before the offset, and
//! `stat`s only the few after it: a commit costs the entries it has to read. A whole listing
//! (log clean-up, vacuum) `stat`s each entry once. Everything else — reads, writes, create-only
//! commits, renames — is the local store's own.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

use super::listing::{in_progress, may_hold_keys_after};

/// The local file system rooted at `/` (as deltalake's own for a `file://` table), listing
/// from an offset by name.
#[derive(Debug)]
pub struct OffsetListing {
    inner: Arc<LocalFileSystem>,
}

impl OffsetListing {
    /// The one of this process (it holds no state but the local store).
    pub fn shared() -> Arc<OffsetListing> {
        static SHARED: LazyLock<Arc<OffsetListing>> = LazyLock::new(|| {
            Arc::new(OffsetListing {
                inner: Arc::new(LocalFileSystem::new()),
            })
        });
        Arc::clone(&SHARED)
    }
}

impl fmt::Display for OffsetListing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OffsetListing({})", self.inner)
    }
}

/// A listing's `prefix` with its folder in a store rooted at `/`, if there is a prefix and
/// its key needs no decoding (a part percent-encoded by `object_store` is left to the local
/// store's own listing).
fn folder_of(prefix: Option<&Path>) -> Option<(Path, PathBuf)> {
    let prefix = prefix?;
    let key = prefix.as_ref();
    (!key.is_empty() && !key.contains('%'))
        .then(|| (prefix.clone(), PathBuf::from(format!("/{key}"))))
}

/// The objects under `prefix` (whose folder is `dir`) sorting after `offset`, described as
/// the local store describes them. Only names are read for entries that sort before it; a
/// folder is entered only if keys under it can sort after the offset.
fn objects_after(dir: PathBuf, prefix: Path, offset: &Path) -> std::io::Result<Vec<ObjectMeta>> {
    let mut objects = Vec::new();
    let mut pending = vec![(dir, prefix)];
    while let Some((dir, key)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // As the local store's: nothing under a key that is missing or a file.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue; // not a key the local store lists either
            };
            let child = key.clone().join(name.as_str());
            // Neither a file after the offset nor a folder that can hold one: skipped unread.
            if !may_hold_keys_after(child.as_ref(), offset.as_ref()) {
                continue;
            }
            // Links are followed, as by the local store's listing.
            let meta = match std::fs::metadata(entry.path()) {
                Ok(meta) => meta,
                // Deleted since its name was read, or a broken link: not listed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                pending.push((entry.path(), child));
            } else if child > *offset && meta.is_file() && !in_progress(&name) {
                objects.push(described(child, &meta)?);
            }
        }
    }
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(objects)
}

/// `location`'s metadata as `object_store`'s local store gives it: modification time, size
/// and an ETag of inode, modification time in microseconds and size, in hexadecimal.
fn described(location: Path, meta: &std::fs::Metadata) -> std::io::Result<ObjectMeta> {
    use std::os::unix::fs::MetadataExt as _;
    let modified = meta.modified()?;
    let micros = modified
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    Ok(ObjectMeta {
        location,
        last_modified: modified.into(),
        size: meta.len(),
        e_tag: Some(format!("{:x}-{micros:x}-{:x}", meta.ino(), meta.len())),
        version: None,
    })
}

/// [`objects_after`] as a stream, read on a blocking thread.
fn listed(dir: PathBuf, prefix: Path, offset: Path) -> BoxStream<'static, Result<ObjectMeta>> {
    let shown = dir.display().to_string();
    stream::once(async move {
        tokio::task::spawn_blocking(move || objects_after(dir, prefix, &offset))
            .await
            .map_err(|e| object_store::Error::JoinError { source: e })?
            .map_err(|source| object_store::Error::Generic {
                store: "OffsetListing",
                source: format!("listing {shown}: {source}").into(),
            })
    })
    .flat_map(|objects| match objects {
        Ok(objects) => stream::iter(objects.into_iter().map(Ok)).boxed(),
        Err(e) => stream::once(async { Err(e) }).boxed(),
    })
    .boxed()
}

#[async_trait]
impl ObjectStore for OffsetListing {
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

    /// A whole listing (the log clean-up's, vacuum's) `stat`s each entry once, not three times.
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match folder_of(prefix) {
            Some((prefix, dir)) => listed(dir, prefix, Path::default()),
            None => self.inner.list(prefix),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        match folder_of(prefix) {
            Some((prefix, dir)) => listed(dir, prefix, offset.clone()),
            None => self.inner.list_with_offset(prefix, offset),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt as _;

    use super::*;

    async fn keys(store: &dyn ObjectStore, prefix: &Path, offset: &Path) -> Vec<String> {
        let mut metas: Vec<ObjectMeta> = store
            .list_with_offset(Some(prefix), offset)
            .try_collect()
            .await
            .unwrap();
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        metas.iter().map(|m| m.location.to_string()).collect()
    }

    /// The listing is the local store's, entry for entry: same keys, sizes, times and ETags,
    /// with part files of uploads in progress hidden, sub-folders entered where they can hold
    /// keys after the offset, an offset inside a sub-folder and one naming a sub-folder.
    #[tokio::test]
    async fn a_listing_from_an_offset_is_the_local_stores() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("t/_delta_log");
        std::fs::create_dir_all(log.join("_commits")).unwrap();
        for v in 0..30u64 {
            std::fs::write(log.join(format!("{v:020}.json")), vec![b'x'; v as usize]).unwrap();
        }
        std::fs::write(log.join("00000000000000000020.checkpoint.parquet"), b"c").unwrap();
        std::fs::write(log.join("00000000000000000031.json#1"), b"part").unwrap();
        std::fs::write(log.join("_commits/00000000000000000031.uuid.json"), b"s").unwrap();
        std::fs::write(log.join("_last_checkpoint"), b"{}").unwrap();

        let local = LocalFileSystem::new();
        let ours = OffsetListing::shared();
        let prefix = Path::from_absolute_path(&log).unwrap();
        for offset in [
            "00000000000000000000.json",
            "00000000000000000019.json",
            "00000000000000000029.json",
            "00000000000000000031.json",
            "_commits/00000000000000000000.json",
            "_commits",
            "_last_checkpoint",
            "",
        ] {
            let offset = if offset.is_empty() {
                prefix.clone()
            } else {
                Path::parse(format!("{prefix}/{offset}")).unwrap()
            };
            let expected = keys(&local, &prefix, &offset).await;
            assert_eq!(
                keys(ours.as_ref(), &prefix, &offset).await,
                expected,
                "{offset}"
            );
        }
        let offset = Path::parse(format!("{prefix}/00000000000000000027.json")).unwrap();
        let mut a: Vec<ObjectMeta> = local
            .list_with_offset(Some(&prefix), &offset)
            .try_collect()
            .await
            .unwrap();
        a.sort_by(|x, y| x.location.cmp(&y.location));
        let b: Vec<ObjectMeta> = ours
            .list_with_offset(Some(&prefix), &offset)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(a, b);
        let relative: Vec<&str> = b
            .iter()
            .map(|m| &m.location.as_ref()[prefix.as_ref().len() + 1..])
            .collect();
        assert_eq!(
            relative,
            [
                "00000000000000000028.json",
                "00000000000000000029.json",
                "_commits/00000000000000000031.uuid.json",
                "_last_checkpoint"
            ]
        );

        // A folder that is not there lists nothing, as the local store's.
        let none = Path::from_absolute_path(dir.path().join("absent")).unwrap();
        assert!(keys(ours.as_ref(), &none, &none).await.is_empty());
    }

    async fn listing(store: &dyn ObjectStore, prefix: &Path) -> Vec<ObjectMeta> {
        let mut metas: Vec<ObjectMeta> = store.list(Some(prefix)).try_collect().await.unwrap();
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        metas
    }

    /// A whole listing is the local store's too: same keys, sizes, times and ETags, in
    /// sub-folders, without parts of uploads in progress; nothing under a missing key or a
    /// file.
    #[tokio::test]
    async fn a_whole_listing_is_the_local_stores() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("t");
        std::fs::create_dir_all(table.join("_delta_log/_commits")).unwrap();
        std::fs::create_dir_all(table.join("date=2026-02-01")).unwrap();
        for v in 0..12u64 {
            let log = table.join(format!("_delta_log/{v:020}.json"));
            std::fs::write(log, vec![b'x'; v as usize]).unwrap();
        }
        std::fs::write(table.join("_delta_log/00000000000000000012.json#3"), b"p").unwrap();
        std::fs::write(table.join("_delta_log/_commits/a.json"), b"s").unwrap();
        std::fs::write(table.join("date=2026-02-01/part-0.parquet"), b"data").unwrap();

        let local = LocalFileSystem::new();
        let ours = OffsetListing::shared();
        let at = |p: &std::path::Path| Path::from_absolute_path(p).unwrap();
        for prefix in [table.clone(), table.join("_delta_log")] {
            let expected = listing(&local, &at(&prefix)).await;
            assert!(!expected.is_empty());
            assert_eq!(listing(ours.as_ref(), &at(&prefix)).await, expected);
        }
        let whole = listing(ours.as_ref(), &at(&table)).await;
        assert_eq!(whole.len(), 12 + 1 + 1, "{whole:?}");
        for empty in [
            dir.path().join("absent"),
            table.join("_delta_log/00000000000000000003.json"),
        ] {
            assert_eq!(listing(&local, &at(&empty)).await, Vec::new());
            assert_eq!(listing(ours.as_ref(), &at(&empty)).await, Vec::new());
        }
    }
}
