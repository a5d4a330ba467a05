//! Repeated listings of one prefix that cost what changed, not what is there.
//!
//! The serving layer lists the speed layer's look-back window (days of objects) on every run.
//! S3 answers a thousand keys per request; a local directory costs a `stat` per entry, and
//! `object_store`'s local walk makes three. On a local lake [`Store::list_after_cached`] keeps
//! each folder's entries with the folder's modification time and reads a folder again only
//! when that time changed: adding or removing an entry updates it. A folder modified less than
//! [`SETTLED`] before the listing started is always read again (the clock that stamps folders
//! ticks in milliseconds, so a later change could carry the same time — as git treats "racy"
//! index entries).

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::ObjectMeta;
use object_store::path::Path;

use super::{Error, Result, Store};

/// How long a folder must have been left alone before its listing is reused.
const SETTLED: Duration = Duration::from_secs(2);

/// One folder as last read: its modification time, its files and its sub-folders' names.
#[derive(Clone)]
struct Folder {
    modified: SystemTime,
    files: Arc<Vec<ObjectMeta>>,
    folders: Arc<Vec<String>>,
}

/// Folders by absolute path, of every cached walk of this process.
type Folders = HashMap<PathBuf, Folder>;

/// The cached walks, by the root folder each walked; a walk replaces its root's entry with the
/// folders it visited (what left the window is forgotten).
static WALKS: LazyLock<Mutex<HashMap<PathBuf, Folders>>> = LazyLock::new(Default::default);

impl Store {
    /// The objects under `prefix` whose keys sort after `offset` (as [`Store::list_after`]),
    /// sorted by key. On a local lake, folders unchanged since this process last listed them
    /// are not read again (see the module documentation).
    pub async fn list_after_cached(&self, prefix: &str, offset: &str) -> Result<Vec<ObjectMeta>> {
        let Some(root) = self.local_root() else {
            let mut out = Vec::new();
            let mut listing = self.list_after(prefix, offset);
            while let Some(meta) = listing.next().await {
                out.push(meta?);
            }
            out.sort_by(|a, b| a.location.cmp(&b.location));
            return Ok(out);
        };
        let dir = root.join(prefix);
        let (prefix, offset) = (prefix.to_string(), offset.to_string());
        let shown = prefix.clone();
        tokio::task::spawn_blocking(move || walk(&dir, &prefix, &offset))
            .await
            .map_err(|e| Error::Request {
                op: "LIST",
                key: shown.clone(),
                message: e.to_string(),
            })?
            .map_err(|e| Error::Request {
                op: "LIST",
                key: shown,
                message: e.to_string(),
            })
    }
}

/// Walks `dir` (the folder of key `prefix`), reusing the settled folders of the last walk.
fn walk(dir: &FsPath, prefix: &str, offset: &str) -> std::io::Result<Vec<ObjectMeta>> {
    let started = SystemTime::now();
    let previous = WALKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(dir)
        .unwrap_or_default();
    let mut visited = Folders::new();
    let mut out = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), prefix.trim_end_matches('/').to_string())];
    while let Some((path, key)) = pending.pop() {
        let Some(folder) = read_folder(&path, &key, previous.get(&path), started)? else {
            continue; // gone (or never made): nothing under it
        };
        out.extend(
            folder
                .files
                .iter()
                .filter(|m| m.location.as_ref() > offset)
                .cloned(),
        );
        for name in folder.folders.iter() {
            let sub = format!("{key}/{name}");
            if !may_hold_keys_after(&sub, offset) {
                continue;
            }
            pending.push((path.join(name), sub));
        }
        visited.insert(path, folder);
    }
    WALKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(dir.to_path_buf(), visited);
    out.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(out)
}

/// The folder at `path` (key `key`): `known` when it is unchanged and settled, else read.
fn read_folder(
    path: &FsPath,
    key: &str,
    known: Option<&Folder>,
    started: SystemTime,
) -> std::io::Result<Option<Folder>> {
    let modified = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => m.modified()?,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let settled = started
        .duration_since(modified)
        .is_ok_and(|age| age >= SETTLED);
    if let Some(known) = known
        && settled
        && known.modified == modified
    {
        return Ok(Some(known.clone()));
    }
    let mut files = Vec::new();
    let mut folders = Vec::new();
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue; // not a key this lake writes
        };
        // `metadata` follows links, as object_store's local listing does.
        let meta = match std::fs::metadata(entry.path()) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            folders.push(name);
        } else if meta.is_file() && !in_progress(&name) {
            let Ok(location) = Path::parse(format!("{key}/{name}")) else {
                continue;
            };
            files.push(ObjectMeta {
                location,
                last_modified: DateTime::<Utc>::from(meta.modified()?),
                size: meta.len(),
                e_tag: None,
                version: None,
            });
        }
    }
    // A folder changed during this walk is read again next time.
    let modified = if settled {
        modified
    } else {
        SystemTime::UNIX_EPOCH
    };
    Ok(Some(Folder {
        modified,
        files: Arc::new(files),
        folders: Arc::new(folders),
    }))
}

/// Whether a folder of key `folder` can hold keys sorting after `offset`: it sorts at or after
/// the offset, or the offset is inside it. Otherwise every key under it sorts before.
pub(super) fn may_hold_keys_after(folder: &str, offset: &str) -> bool {
    folder >= offset
        || offset
            .strip_prefix(folder)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// A part file of an upload still in progress (`name#123`), which object_store's local
/// listing hides too.
pub(super) fn in_progress(name: &str) -> bool {
    name.split_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &[ObjectMeta]) -> Vec<String> {
        v.iter().map(|m| m.location.to_string()).collect()
    }

    #[tokio::test]
    async fn a_cached_listing_sees_every_change_and_only_what_sorts_after_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let put = |k: &str| {
            let p = dir.path().join(k);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        };
        put("r/s/date=2026-01-01/hour=00/a.jsonl");
        put("r/s/date=2026-01-02/hour=00/b.jsonl");
        put("r/s/date=2026-01-02/hour=01/c.jsonl");
        put("r/s/date=2026-01-02/hour=01/c.jsonl#12"); // an upload in progress
        let list = || store.list_after_cached("r/s", "r/s/date=2026-01-02");
        let plain = |s: &Store| {
            let s = s.clone();
            async move {
                let mut v: Vec<String> = s
                    .list_after("r/s", "r/s/date=2026-01-02")
                    .map(|m| m.unwrap().location.to_string())
                    .collect()
                    .await;
                v.sort();
                v
            }
        };
        let first = list().await.unwrap();
        assert_eq!(
            keys(&first),
            [
                "r/s/date=2026-01-02/hour=00/b.jsonl",
                "r/s/date=2026-01-02/hour=01/c.jsonl"
            ]
        );
        assert_eq!(keys(&first), plain(&store).await);
        // Settled folders: the next listing reuses them, and still sees a file added to an old
        // folder (its modification time moves) and one removed.
        let old = SystemTime::now() - Duration::from_secs(60);
        for d in ["r/s", "r/s/date=2026-01-02", "r/s/date=2026-01-02/hour=00"] {
            let f = std::fs::File::open(dir.path().join(d)).unwrap();
            f.set_modified(old).unwrap();
        }
        assert_eq!(keys(&list().await.unwrap()), plain(&store).await);
        // Reused, not read: a file slipped into a folder whose time is put back stays unseen
        // until the folder's time moves.
        let hour = dir.path().join("r/s/date=2026-01-02/hour=00");
        put("r/s/date=2026-01-02/hour=00/hidden.jsonl");
        std::fs::File::open(&hour)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(list().await.unwrap().len(), 2);
        std::fs::remove_file(hour.join("hidden.jsonl")).unwrap();
        put("r/s/date=2026-01-02/hour=00/late.jsonl");
        std::fs::remove_file(dir.path().join("r/s/date=2026-01-02/hour=01/c.jsonl")).unwrap();
        put("r/s/date=2026-01-03/hour=00/d.jsonl");
        let after = list().await.unwrap();
        assert_eq!(
            keys(&after),
            [
                "r/s/date=2026-01-02/hour=00/b.jsonl",
                "r/s/date=2026-01-02/hour=00/late.jsonl",
                "r/s/date=2026-01-03/hour=00/d.jsonl"
            ]
        );
        assert_eq!(keys(&after), plain(&store).await);
        assert_eq!(after[0].size, 1);
    }

    #[tokio::test]
    async fn a_missing_prefix_lists_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        assert!(
            store
                .list_after_cached("nope", "")
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn upload_parts_are_hidden() {
        assert!(in_progress("a.jsonl#3"));
        assert!(!in_progress("a#b.jsonl"));
        assert!(!in_progress("a.jsonl"));
    }
}
