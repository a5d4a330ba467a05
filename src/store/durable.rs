//! Durable create-only writes for acknowledged data (the ingest API, inboxes): when
//! [`Store::put_new_durable`] returns, the object survives a crash of the process and of the
//! machine. On S3 that is the PUT's answer; on a local lake the bytes are written to a staging
//! file beside the target, fsynced, linked to the key (which fails if the key exists, so the
//! write stays create-only), and the directory is fsynced so the new name is durable too.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{Error, ObjectAttrs, Result, Store, WriteOutcome};

impl Store {
    /// [`Store::put_new`], durable before it returns (see the module docs).
    pub async fn put_new_durable(
        &self,
        key: &str,
        body: Bytes,
        attrs: &ObjectAttrs,
    ) -> Result<WriteOutcome> {
        let Some(root) = self.local_root() else {
            return self.put_new(key, body, attrs).await;
        };
        let target = root.join(key);
        let io_error = |source: std::io::Error| Error::Request {
            op: "PUT",
            key: key.to_string(),
            message: source.to_string(),
        };
        let created = {
            let _p = self.permit().await;
            let (target, body) = (target.clone(), body.clone());
            tokio::task::spawn_blocking(move || write_synced(&target, &body))
                .await
                .map_err(|e| io_error(std::io::Error::other(e)))?
                .map_err(io_error)?
        };
        if created {
            return Ok(WriteOutcome::Created);
        }
        self.already_there(key, &body).await
    }
}

/// Writes `body` to `target` durably and create-only; `false` if `target` exists. The staging
/// name carries `#`, which object_store's listings skip.
fn write_synced(target: &Path, body: &[u8]) -> std::io::Result<bool> {
    let dir = target
        .parent()
        .ok_or_else(|| std::io::Error::other("key without a parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let hex = crate::hex::random_hex::<8>().map_err(std::io::Error::other)?;
    let mut staging = target.as_os_str().to_owned();
    staging.push(format!("#durable-{hex}"));
    let staging = PathBuf::from(staging);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staging)?;
        f.write_all(body)?;
        f.sync_all()?;
        drop(f);
        match std::fs::hard_link(&staging, target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e),
        }
        std::fs::File::open(dir)?.sync_all()?;
        Ok(true)
    })();
    let _ = std::fs::remove_file(&staging);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_durable_write_is_create_only_and_leaves_no_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b/c.jsonl");
        assert!(write_synced(&target, b"one\n").unwrap());
        assert!(!write_synced(&target, b"two\n").unwrap());
        assert_eq!(std::fs::read(&target).unwrap(), b"one\n");
        let names: Vec<_> = std::fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("c.jsonl")]);
    }
}
