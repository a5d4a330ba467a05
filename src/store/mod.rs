//! All lake I/O: one [`Store`] over `object_store` for local disk and S3.
//!
//! Only this module builds object-store clients. It bounds concurrency, retries with backoff
//! and jitter (`retry`), streams listings page by page, uploads large objects in parts, sets
//! content types and user metadata on S3, and makes landing writes exactly-once
//! ([`Store::put_new`]). AWS credentials, endpoints and checks live in `s3`; request counters
//! for `/metrics` in `metrics`; the capability record that decides how create-only writes are
//! made (written by `lakepipe bootstrap`) in `capabilities`.

mod capabilities;
mod config;
mod delta;
mod durable;
mod listing;
pub mod metrics;
mod offset_listing;
pub mod oplog;
mod own_writes;
use own_writes::OwnBytes;
mod read_retries;
mod retry;
mod s3;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, GetOptions, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMode, PutOptions, PutPayload, WriteMultipart,
};
use tokio::sync::{OnceCell, Semaphore};

pub use capabilities::{CAPABILITIES_KEY, Capabilities};
pub use config::{LakeUrl, StoreConfig, validate_bucket_name};
pub use delta::{commit_actions, register_delta, table_fields};
pub use retry::RetryConfig;
pub use s3::{DEFAULT_REGION, S3Connection};
pub(crate) use s3::{classify_head_bucket, source_chain};

use crate::config::ValidatedConfig;

/// Errors of lake I/O, with the key they concern.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lake cannot be used at all (missing bucket, bad credentials, unreachable endpoint).
    #[error("{reason}")]
    Unavailable { reason: String },
    /// A request for one key failed after retries.
    #[error("{op} {key} failed: {message}")]
    Request {
        op: &'static str,
        key: String,
        message: String,
    },
    /// A deterministic key already holds different bytes: never overwritten.
    #[error(
        "{key} already exists with different content ({existing} bytes, new {new} bytes); refusing to overwrite"
    )]
    Conflict {
        key: String,
        existing: usize,
        new: usize,
    },
    /// A value could not be encoded as the JSON object it was to be stored as.
    #[error("cannot encode {key} as JSON: {source}")]
    Encode {
        key: String,
        source: serde_json::Error,
    },
    /// A command that only reads was pointed at a local lake directory that does not exist.
    #[error(
        "no lake at {path}: pass --lake (or LAKEPIPE_LAKE), or make one with `lakepipe up`, `simulate` or `stream`"
    )]
    NoLake { path: String },
    /// The local lake directory cannot be created.
    #[error("cannot create lake directory {path}: {source}")]
    LocalDir {
        path: String,
        source: std::io::Error,
    },
}

/// Result with the store [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Content type and user metadata of an object (S3 `x-amz-meta-*`; not kept on local disk).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectAttrs {
    /// MIME type, e.g. `text/csv`.
    pub content_type: Option<String>,
    /// User metadata pairs, lower-case keys.
    pub metadata: Vec<(String, String)>,
}

/// What [`Store::get_version`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Version {
    /// The version asked for, whole.
    Bytes(Bytes),
    /// No object under the key.
    Gone,
    /// The key holds another version now.
    Changed,
}

/// What [`Store::put_new`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The object did not exist and was written.
    Created,
    /// The key already held exactly these bytes: already landed, nothing written.
    AlreadyPresent,
}

/// How long a scheduler on a store that ignores create-only writes waits after writing the
/// lease before it reads back whose lease stands: a concurrent contender that checked before
/// this PUT has written by then.
pub const CHECK_THEN_PUT_SETTLE: Duration = Duration::from_secs(1);

/// How create-only writes are made on this store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    /// The store honours create-only writes (`If-None-Match: *`, or local no-clobber).
    Conditional,
    /// The store ignores `If-None-Match`: HEAD, then PUT. Safe only with a single writer.
    CheckThenPut,
}

impl CreateMode {
    /// Stable name used in summaries and capability records.
    pub fn as_str(self) -> &'static str {
        match self {
            CreateMode::Conditional => "conditional",
            CreateMode::CheckThenPut => "check-then-put",
        }
    }
}

#[derive(Debug)]
enum Backend {
    Local {
        root: std::path::PathBuf,
    },
    S3 {
        bucket: String,
        conn: Box<S3Connection>,
    },
}

/// A handle to the lake. Cheap to clone; all clones share the concurrency limit.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    backend: Arc<Backend>,
    url: LakeUrl,
    limit: Arc<Semaphore>,
    multipart_threshold: usize,
    create_mode: Arc<OnceCell<CreateMode>>,
}

impl Store {
    /// Opens the lake named by the configuration. Creates a local lake directory; for S3,
    /// loads the AWS chain but sends no request (see [`Store::preflight`]).
    pub async fn open(cfg: &ValidatedConfig) -> Result<Store> {
        let sc = &cfg.config.store;
        let (inner, backend): (Arc<dyn ObjectStore>, Backend) = match &cfg.lake {
            LakeUrl::Local(root) => {
                std::fs::create_dir_all(root).map_err(|source| Error::LocalDir {
                    path: root.display().to_string(),
                    source,
                })?;
                let fs =
                    object_store::local::LocalFileSystem::new_with_prefix(root).map_err(|e| {
                        Error::LocalDir {
                            path: root.display().to_string(),
                            source: std::io::Error::other(e.to_string()),
                        }
                    })?;
                (Arc::new(fs), Backend::Local { root: root.clone() })
            }
            LakeUrl::S3 { bucket, prefix } => {
                let conn =
                    S3Connection::load(&cfg.config.s3, Duration::from_secs(sc.connect_timeout_s))
                        .await;
                let client_opts = object_store::ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(sc.connect_timeout_s))
                    .with_timeout(Duration::from_secs(sc.request_timeout_s))
                    .with_allow_http(
                        conn.endpoint
                            .as_deref()
                            .is_some_and(|e| e.starts_with("http://")),
                    );
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(&conn.region)
                    .with_virtual_hosted_style_request(conn.virtual_hosted_style)
                    .with_client_options(client_opts)
                    .with_http_connector(metrics::CountingConnector)
                    .with_retry(sc.retry.to_object_store());
                if let Some(endpoint) = &conn.endpoint {
                    b = b.with_endpoint(endpoint);
                }
                match s3::SdkCredentialProvider::new(&conn.sdk) {
                    Some(p) => b = b.with_credentials(Arc::new(p)),
                    None => b = b.with_skip_signature(true),
                }
                let s3 = b.build().map_err(|e| Error::Unavailable {
                    reason: format!("cannot configure S3 client: {e}"),
                })?;
                let s3: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(s3, prefix.as_str()))
                };
                let inner: Arc<dyn ObjectStore> = Arc::new(read_retries::ReadRetries::new(s3));
                (
                    inner,
                    Backend::S3 {
                        bucket: bucket.clone(),
                        conn: Box::new(conn),
                    },
                )
            }
        };
        Ok(Store {
            inner,
            backend: Arc::new(backend),
            url: cfg.lake.clone(),
            limit: Arc::new(Semaphore::new(sc.concurrency)),
            multipart_threshold: (sc.multipart_threshold_mib as usize) << 20,
            create_mode: Arc::new(OnceCell::new()),
        })
    }

    /// Opens a lake that must already exist, for commands that only read it (`runs list`,
    /// `query`, `logs`, `ui`): a missing local directory is [`Error::NoLake`] instead of a new
    /// empty lake, and an S3 lake must pass [`Store::preflight`] (one line if it cannot be
    /// reached).
    pub async fn open_existing(cfg: &ValidatedConfig) -> Result<Store> {
        if let LakeUrl::Local(root) = &cfg.lake
            && !root.is_dir()
        {
            return Err(Error::NoLake {
                path: root.display().to_string(),
            });
        }
        let store = Store::open(cfg).await?;
        store.preflight().await?;
        Ok(store)
    }

    /// The lake location.
    pub fn url(&self) -> &LakeUrl {
        &self.url
    }

    /// The directory of a local lake.
    pub fn local_root(&self) -> Option<&std::path::Path> {
        match &*self.backend {
            Backend::Local { root } => Some(root),
            Backend::S3 { .. } => None,
        }
    }

    /// True for a local-directory lake.
    pub fn is_local(&self) -> bool {
        matches!(*self.backend, Backend::Local { .. })
    }

    /// The S3 connection, for bucket administration (None on a local lake).
    pub fn s3(&self) -> Option<(&str, &S3Connection)> {
        match &*self.backend {
            Backend::S3 { bucket, conn } => Some((bucket.as_str(), conn)),
            Backend::Local { .. } => None,
        }
    }

    /// Does the folder `prefix` exist: a directory on disk, a folder marker (`prefix/`) on S3?
    pub async fn folder_exists(&self, prefix: &str) -> Result<bool> {
        match &*self.backend {
            Backend::Local { root } => Ok(root.join(prefix).is_dir()),
            Backend::S3 { bucket, conn } => {
                let key = self.marker_key(prefix);
                match conn
                    .client()
                    .head_object()
                    .bucket(bucket)
                    .key(&key)
                    .send()
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                        Ok(false)
                    }
                    Err(e) => Err(Error::Request {
                        op: "HEAD",
                        key,
                        message: s3::source_chain(&e),
                    }),
                }
            }
        }
    }

    /// Creates the folder `prefix`: a directory on disk, a zero-byte `prefix/` marker on S3 (how
    /// consoles show folders; listings and the catalog skip markers).
    pub async fn create_folder(&self, prefix: &str) -> Result<()> {
        match &*self.backend {
            Backend::Local { root } => {
                let path = root.join(prefix);
                std::fs::create_dir_all(&path).map_err(|source| Error::LocalDir {
                    path: path.display().to_string(),
                    source,
                })
            }
            Backend::S3 { bucket, conn } => {
                let key = self.marker_key(prefix);
                let _p = self.permit().await;
                conn.client()
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .content_type("application/x-directory")
                    .body(aws_sdk_s3::primitives::ByteStream::from_static(b""))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| Error::Request {
                        op: "PUT",
                        key,
                        message: s3::source_chain(&e),
                    })
            }
        }
    }

    /// The bucket key of the folder marker of `prefix` (lake prefix included).
    fn marker_key(&self, prefix: &str) -> String {
        match &self.url {
            LakeUrl::S3 { prefix: lake, .. } if !lake.is_empty() => format!("{lake}/{prefix}/"),
            _ => format!("{prefix}/"),
        }
    }

    /// The underlying object store (for engines such as deltalake and DataFusion).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.inner)
    }

    /// Fails with one clear reason if the lake cannot be used: missing bucket, denied
    /// credentials, unreachable endpoint, or an unwritable local directory.
    pub async fn preflight(&self) -> Result<()> {
        match &*self.backend {
            Backend::S3 { bucket, conn } => conn.preflight(bucket).await,
            Backend::Local { root } => {
                let meta = std::fs::metadata(root).map_err(|source| Error::LocalDir {
                    path: root.display().to_string(),
                    source,
                })?;
                if meta.permissions().readonly() {
                    return Err(Error::Unavailable {
                        reason: format!("lake directory {} is read-only", root.display()),
                    });
                }
                Ok(())
            }
        }
    }

    async fn permit(&self) -> tokio::sync::SemaphorePermit<'_> {
        // The semaphore is never closed, so acquire cannot fail.
        self.limit.acquire().await.expect("store semaphore closed")
    }

    fn attributes(&self, attrs: &ObjectAttrs) -> Attributes {
        let mut a = Attributes::new();
        // Local disk keeps no attributes; object_store rejects them there.
        if self.is_local() {
            return a;
        }
        if let Some(ct) = &attrs.content_type {
            a.insert(Attribute::ContentType, AttributeValue::from(ct.clone()));
        }
        for (k, v) in &attrs.metadata {
            a.insert(
                Attribute::Metadata(k.clone().into()),
                AttributeValue::from(v.clone()),
            );
        }
        a
    }

    /// How this store makes create-only writes; probed once per process on S3.
    pub async fn create_mode(&self) -> Result<CreateMode> {
        self.create_mode
            .get_or_try_init(|| async {
                if self.is_local() {
                    return Ok(CreateMode::Conditional);
                }
                let recorded = Capabilities::load(self).await?;
                let mode = match recorded {
                    Some(c) => c.create_mode(),
                    None => self.probe_conditional_put().await?,
                };
                if mode == CreateMode::CheckThenPut {
                    tracing::warn!(
                        lake = %self.url,
                        "this S3 endpoint ignores `If-None-Match: *` (create-only PUT): \
                         falling back to check-then-put; Delta commits take turns under claims, \
                         the scheduler lease is read back"
                    );
                } else {
                    tracing::info!(lake = %self.url, "S3 endpoint honours create-only PUT");
                }
                Ok(mode)
            })
            .await
            .copied()
    }

    /// A create-only PUT (`opts.mode` is `Create`): on S3 a write that failed in transport is
    /// repeated, and a refusal that finds this write's own bytes is its success as `own` says
    /// ([`own_writes::create_repeated`]); a local lake answers for sure the first time.
    async fn put_create(
        &self,
        path: &Path,
        payload: PutPayload,
        opts: PutOptions,
        own: own_writes::OwnBytes,
    ) -> object_store::Result<object_store::PutResult> {
        if self.is_local() {
            return self.inner.put_opts(path, payload, opts).await;
        }
        own_writes::create_repeated(self.inner.as_ref(), path, payload, opts, own).await
    }

    /// Writes an object twice with `If-None-Match: *`: a store that accepts the second write
    /// ignores the header.
    pub(crate) async fn probe_conditional_put(&self) -> Result<CreateMode> {
        let nonce = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        let key = Path::from(format!("_lakepipe/probe/conditional-put-{nonce}"));
        let create = || PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let _p = self.permit().await;
        self.put_create(
            &key,
            PutPayload::from_static(b"1"),
            create(),
            OwnBytes::Unique,
        )
        .await
        .map_err(|e| request_error("PUT", &key, e))?;
        // A repeat of a second write that was refused is refused too (other bytes are there).
        let second = self
            .put_create(
                &key,
                PutPayload::from_static(b"2"),
                create(),
                OwnBytes::Unique,
            )
            .await;
        let _ = self.inner.delete(&key).await;
        match second {
            Err(object_store::Error::AlreadyExists { .. }) => Ok(CreateMode::Conditional),
            Ok(_) => Ok(CreateMode::CheckThenPut),
            // Stores that reject the header outright cannot do create-only writes either.
            Err(object_store::Error::NotImplemented { .. }) => Ok(CreateMode::CheckThenPut),
            Err(e) => Err(request_error("PUT", &key, e)),
        }
    }

    /// Exactly-once write of a deterministic key: creates the object, or reports
    /// [`WriteOutcome::AlreadyPresent`] if the key already holds identical bytes. A key holding
    /// different bytes is a [`Error::Conflict`]; it is never overwritten.
    pub async fn put_new(
        &self,
        key: &str,
        body: Bytes,
        attrs: &ObjectAttrs,
    ) -> Result<WriteOutcome> {
        self.put_new_checked(key, body, attrs, None).await
    }

    /// [`Store::put_new`] for many keys of the same partitions: on a store without create-only
    /// writes, existence comes from `index` (one LIST per 1000 keys) instead of a HEAD per
    /// object, which halves the requests of a range run.
    pub async fn put_new_indexed(
        &self,
        key: &str,
        body: Bytes,
        attrs: &ObjectAttrs,
        index: &KeyIndex,
    ) -> Result<WriteOutcome> {
        self.put_new_checked(key, body, attrs, Some(index)).await
    }

    async fn put_new_checked(
        &self,
        key: &str,
        body: Bytes,
        attrs: &ObjectAttrs,
        index: Option<&KeyIndex>,
    ) -> Result<WriteOutcome> {
        let path = Path::from(key);
        let mode = self.create_mode().await?;
        let exists = async || match index {
            Some(ix) => ix.exists(self, key).await,
            None => Ok(self.head(key).await?.is_some()),
        };
        let opts = PutOptions {
            mode: PutMode::Create,
            attributes: self.attributes(attrs),
            ..PutOptions::default()
        };
        if mode == CreateMode::CheckThenPut && !exists().await? {
            let opts = PutOptions {
                mode: PutMode::Overwrite,
                ..opts
            };
            let _p = self.permit().await;
            self.inner
                .put_opts(&path, PutPayload::from_bytes(body), opts)
                .await
                .map_err(|e| request_error("PUT", &path, e))?;
            return Ok(WriteOutcome::Created);
        }
        if mode == CreateMode::Conditional {
            let res = {
                let _p = self.permit().await;
                let payload = PutPayload::from_bytes(body.clone());
                self.put_create(&path, payload, opts, OwnBytes::AfterRepeat)
                    .await
            };
            match res {
                Ok(_) => return Ok(WriteOutcome::Created),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(request_error("PUT", &path, e)),
            }
        }
        self.already_there(key, &body).await
    }

    /// What a create-only write of `body` finds when `key` exists: the same bytes (already
    /// present), or a conflict; never overwritten.
    async fn already_there(&self, key: &str, body: &Bytes) -> Result<WriteOutcome> {
        match self.get_opt(key).await? {
            Some(existing) if existing == body => Ok(WriteOutcome::AlreadyPresent),
            Some(existing) => Err(Error::Conflict {
                key: key.to_string(),
                existing: existing.len(),
                new: body.len(),
            }),
            None => Err(Error::Request {
                op: "PUT",
                key: key.to_string(),
                message: "object reported as existing but could not be read back".into(),
            }),
        }
    }

    /// Creates `key` only if it does not exist yet (leases, markers); `false` if it exists.
    /// `body` must be this writer's own (it names an owner or a time): a write repeated after
    /// its answer was lost, and refused, counts as created when the key holds the same bytes.
    /// Uses create-only PUT where the store honours it, else HEAD then PUT (single writer).
    pub async fn create_if_absent(&self, key: &str, body: Bytes) -> Result<bool> {
        let path = Path::from(key);
        let mode = self.create_mode().await?;
        if mode == CreateMode::CheckThenPut {
            if self.head(key).await?.is_some() {
                return Ok(false);
            }
            self.put(key, body, &ObjectAttrs::default()).await?;
            return Ok(true);
        }
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let _p = self.permit().await;
        match self
            .put_create(&path, PutPayload::from_bytes(body), opts, OwnBytes::Unique)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(request_error("PUT", &path, e)),
        }
    }

    /// Writes `value` as a pretty-printed JSON object (`application/json`) at `key`: the one
    /// way pipeline state, manifests, capabilities and documents for UIs are stored.
    pub async fn put_json<T: serde::Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let body = serde_json::to_vec_pretty(value).map_err(|source| Error::Encode {
            key: key.to_string(),
            source,
        })?;
        let attrs = ObjectAttrs {
            content_type: Some("application/json".into()),
            metadata: Vec::new(),
        };
        self.put(key, Bytes::from(body), &attrs).await
    }

    /// Writes (or replaces) an object atomically: state files, metadata, logs.
    pub async fn put(&self, key: &str, body: Bytes, attrs: &ObjectAttrs) -> Result<()> {
        let path = Path::from(key);
        if body.len() >= self.multipart_threshold {
            return self
                .upload(key, futures::stream::iter([Ok(body)]).boxed(), attrs)
                .await;
        }
        let opts = PutOptions {
            attributes: self.attributes(attrs),
            ..PutOptions::default()
        };
        let _p = self.permit().await;
        self.inner
            .put_opts(&path, PutPayload::from_bytes(body), opts)
            .await
            .map(|_| ())
            .map_err(|e| request_error("PUT", &path, e))
    }

    /// Streams a large object up in parts (multipart upload); the object appears only when the
    /// last part is committed, and a failed upload is aborted.
    pub async fn upload(
        &self,
        key: &str,
        mut chunks: BoxStream<'_, std::io::Result<Bytes>>,
        attrs: &ObjectAttrs,
    ) -> Result<()> {
        let path = Path::from(key);
        let opts = object_store::PutMultipartOptions {
            attributes: self.attributes(attrs),
            ..Default::default()
        };
        let upload = {
            let _p = self.permit().await;
            self.inner
                .put_multipart_opts(&path, opts)
                .await
                .map_err(|e| request_error("multipart PUT", &path, e))?
        };
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.multipart_threshold);
        while let Some(chunk) = chunks.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(Error::Request {
                        op: "multipart PUT",
                        key: key.to_string(),
                        message: format!("reading the source failed: {e}"),
                    });
                }
            };
            if let Err(e) = writer.wait_for_capacity(4).await {
                return Err(request_error("multipart PUT", &path, e));
            }
            writer.put(chunk);
        }
        writer
            .finish()
            .await
            .map(|_| ())
            .map_err(|e| request_error("multipart PUT", &path, e))
    }

    /// Reads a whole object; `None` if it does not exist.
    pub async fn get_opt(&self, key: &str) -> Result<Option<Bytes>> {
        let path = Path::from(key);
        let _p = self.permit().await;
        let res = match self.inner.get(&path).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(request_error("GET", &path, e)),
        };
        res.bytes()
            .await
            .map(Some)
            .map_err(|e| request_error("GET", &path, e))
    }

    /// Reads a whole object and its ETag (if the store gives one); `None` if it does not exist.
    pub async fn get_tagged(&self, key: &str) -> Result<Option<(Bytes, Option<String>)>> {
        let path = Path::from(key);
        let _p = self.permit().await;
        let res = match self.inner.get(&path).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(request_error("GET", &path, e)),
        };
        let e_tag = res.meta.e_tag.clone();
        let body = res
            .bytes()
            .await
            .map_err(|e| request_error("GET", &path, e))?;
        Ok(Some((body, e_tag)))
    }

    /// Replaces `key` only if it still holds the version whose ETag is `e_tag` (`If-Match`):
    /// whether it did. A store that cannot make conditional replacements (a local lake)
    /// replaces it unconditionally; one that ignores the header (Garage) does so too.
    pub async fn replace_if_unchanged(&self, key: &str, body: Bytes, e_tag: &str) -> Result<bool> {
        let path = Path::from(key);
        let opts = PutOptions {
            mode: PutMode::Update(object_store::UpdateVersion {
                e_tag: Some(e_tag.to_string()),
                version: None,
            }),
            ..PutOptions::default()
        };
        let res = {
            let _p = self.permit().await;
            self.inner
                .put_opts(&path, PutPayload::from_bytes(body.clone()), opts)
                .await
        };
        match res {
            Ok(_) => Ok(true),
            Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => {
                self.put(key, body, &ObjectAttrs::default()).await?;
                Ok(true)
            }
            Err(e) => Err(request_error("PUT", &path, e)),
        }
    }

    /// Reads exactly the version of `key` whose ETag is `etag` (`If-Match`; any version
    /// without an ETag).
    pub async fn get_version(&self, key: &str, etag: Option<&str>) -> Result<Version> {
        let path = Path::from(key);
        let options = GetOptions {
            if_match: etag.map(str::to_string),
            ..GetOptions::default()
        };
        let _p = self.permit().await;
        let res = match self.inner.get_opts(&path, options).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(Version::Gone),
            Err(object_store::Error::Precondition { .. }) => return Ok(Version::Changed),
            Err(e) => return Err(request_error("GET", &path, e)),
        };
        res.bytes()
            .await
            .map(Version::Bytes)
            .map_err(|e| request_error("GET", &path, e))
    }

    /// Reads an object as a stream of chunks, without holding it whole; `None` if it does not
    /// exist.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<Option<BoxStream<'static, std::result::Result<Bytes, std::io::Error>>>> {
        let path = Path::from(key);
        let _p = self.permit().await;
        match self.inner.get(&path).await {
            Ok(r) => Ok(Some(
                r.into_stream()
                    .map(|c| c.map_err(std::io::Error::other))
                    .boxed(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(request_error("GET", &path, e)),
        }
    }

    /// Size and modification time of an object; `None` if it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let path = Path::from(key);
        let _p = self.permit().await;
        match self.inner.head(&path).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(request_error("HEAD", &path, e)),
        }
    }

    /// Deletes an object (absent objects are fine).
    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = Path::from(key);
        let _p = self.permit().await;
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(request_error("DELETE", &path, e)),
        }
    }

    /// Lists every object under `prefix`, page by page as the caller consumes the stream.
    pub fn list(&self, prefix: &str) -> BoxStream<'static, Result<ObjectMeta>> {
        let p = Path::from(prefix);
        let shown = prefix.to_string();
        self.inner
            .list(Some(&p))
            .map(move |r| r.map_err(|e| list_error(&shown, e)))
            .boxed()
    }

    /// Lists the objects under `prefix` whose keys sort after `offset` (S3 `start-after`), page
    /// by page: how incremental walks skip what they have seen.
    pub fn list_after(&self, prefix: &str, offset: &str) -> BoxStream<'static, Result<ObjectMeta>> {
        let p = Path::from(prefix);
        let shown = prefix.to_string();
        self.inner
            .list_with_offset(Some(&p), &Path::from(offset))
            .map(move |r| r.map_err(|e| list_error(&shown, e)))
            .boxed()
    }

    /// One level of a listing: the sub-folders (full keys, no trailing `/`) and the objects
    /// directly under `prefix`.
    pub async fn list_dir(&self, prefix: &str) -> Result<(Vec<String>, Vec<ObjectMeta>)> {
        let p = Path::from(prefix);
        let _p = self.permit().await;
        let res = self
            .inner
            .list_with_delimiter(Some(&p))
            .await
            .map_err(|e| list_error(prefix, e))?;
        let dirs = res.common_prefixes.iter().map(|d| d.to_string()).collect();
        Ok((dirs, res.objects))
    }
}

/// Which keys exist, learned by listing each partition (the folder of a key) once. For stores
/// without create-only writes, where it replaces a HEAD per object. Callers that go through
/// partitions in time order keep memory bounded: only the `capacity` most recently used
/// partitions are remembered (an evicted one is listed again if needed).
#[derive(Debug)]
pub struct KeyIndex {
    capacity: usize,
    parts: std::sync::Mutex<PartitionCache>,
}

type PartitionCache =
    std::collections::VecDeque<(String, Arc<OnceCell<std::collections::HashSet<String>>>)>;

impl KeyIndex {
    /// An index remembering at most `capacity` partitions.
    pub fn new(capacity: usize) -> KeyIndex {
        KeyIndex {
            capacity: capacity.max(1),
            parts: std::sync::Mutex::new(Default::default()),
        }
    }

    /// Does `key` exist? Lists its partition the first time one of its keys is asked for.
    pub async fn exists(&self, store: &Store, key: &str) -> Result<bool> {
        let prefix = key
            .rsplit_once('/')
            .map(|(p, _)| format!("{p}/"))
            .unwrap_or_default();
        let cell = {
            let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
            match parts.iter().position(|(p, _)| *p == prefix) {
                Some(i) => parts[i].1.clone(),
                None => {
                    if parts.len() >= self.capacity {
                        parts.pop_front();
                    }
                    let cell = Arc::new(OnceCell::new());
                    parts.push_back((prefix.clone(), cell.clone()));
                    cell
                }
            }
        };
        let keys = cell
            .get_or_try_init(|| async {
                let mut keys = std::collections::HashSet::new();
                let mut listing = store.list(&prefix);
                while let Some(meta) = listing.next().await {
                    let meta = meta?;
                    let k = meta.location.to_string();
                    // Only the partition's own objects, not deeper folders.
                    if !k[prefix.len().min(k.len())..].contains('/') {
                        keys.insert(k);
                    }
                }
                Ok::<_, Error>(keys)
            })
            .await?;
        Ok(keys.contains(key))
    }
}

fn list_error(prefix: &str, e: object_store::Error) -> Error {
    Error::Request {
        op: "LIST",
        key: prefix.to_string(),
        message: describe(&e),
    }
}

fn request_error(op: &'static str, key: &Path, e: object_store::Error) -> Error {
    Error::Request {
        op,
        key: key.to_string(),
        message: describe(&e),
    }
}

/// One line for an object_store error, including its sources.
fn describe(e: &object_store::Error) -> String {
    s3::source_chain(e)
}

/// A store over `inner` (an in-memory store, say) that it takes for a local lake at a path
/// that does not exist (unit tests of what needs only the object store).
#[cfg(test)]
pub(crate) fn over(inner: Arc<dyn ObjectStore>) -> Store {
    Store {
        inner,
        backend: Arc::new(Backend::Local {
            root: "/nonexistent/lakepipe-test".into(),
        }),
        url: LakeUrl::Local("/nonexistent/lakepipe-test".into()),
        limit: Arc::new(Semaphore::new(8)),
        multipart_threshold: 8 << 20,
        create_mode: Arc::new(OnceCell::new()),
    }
}

/// A store over a local directory with the default configuration (unit tests).
#[cfg(test)]
pub(crate) async fn local_store(dir: &std::path::Path) -> Store {
    let cfg = crate::config::Config {
        lake: dir.display().to_string(),
        ..crate::config::Config::default()
    }
    .validate()
    .unwrap();
    Store::open(&cfg).await.unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_new_is_exactly_once_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path()).await;
        let attrs = ObjectAttrs::default();
        let body = Bytes::from_static(b"hello\n");
        assert_eq!(
            store
                .put_new("a/b.txt", body.clone(), &attrs)
                .await
                .unwrap(),
            WriteOutcome::Created
        );
        assert_eq!(
            store.put_new("a/b.txt", body, &attrs).await.unwrap(),
            WriteOutcome::AlreadyPresent
        );
        let err = store
            .put_new("a/b.txt", Bytes::from_static(b"other\n"), &attrs)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join("a/b.txt")).unwrap(),
            b"hello\n"
        );
    }

    #[tokio::test]
    async fn key_index_lists_a_partition_once_and_ignores_deeper_folders() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path()).await;
        for k in ["d/p1/a", "d/p1/b", "d/p1/sub/c", "d/p2/a"] {
            store
                .put(k, Bytes::from_static(b"x"), &ObjectAttrs::default())
                .await
                .unwrap();
        }
        let ix = KeyIndex::new(1);
        assert!(ix.exists(&store, "d/p1/a").await.unwrap());
        assert!(!ix.exists(&store, "d/p1/c").await.unwrap());
        assert!(!ix.exists(&store, "d/p1/sub").await.unwrap());
        // Written after the partition was listed: not seen until the partition is evicted.
        store
            .put("d/p1/z", Bytes::from_static(b"x"), &ObjectAttrs::default())
            .await
            .unwrap();
        assert!(!ix.exists(&store, "d/p1/z").await.unwrap());
        assert!(ix.exists(&store, "d/p2/a").await.unwrap()); // evicts p1 (capacity 1)
        assert!(ix.exists(&store, "d/p1/z").await.unwrap());
    }

    #[tokio::test]
    async fn list_streams_every_object_and_multipart_upload_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path()).await;
        for i in 0..25 {
            store
                .put(
                    &format!("p/{i:03}"),
                    Bytes::from(vec![b'x'; i]),
                    &ObjectAttrs::default(),
                )
                .await
                .unwrap();
        }
        let n = store
            .list("p")
            .filter(|r| futures::future::ready(r.is_ok()))
            .count()
            .await;
        assert_eq!(n, 25);

        let chunk = Bytes::from(vec![7u8; 3 << 20]);
        let chunks = futures::stream::iter((0..4).map(|_| Ok(chunk.clone()))).boxed();
        store
            .upload("big/blob", chunks, &ObjectAttrs::default())
            .await
            .unwrap();
        let got = store.get_opt("big/blob").await.unwrap().unwrap();
        assert_eq!(got.len(), 12 << 20);
        assert!(store.get_opt("missing").await.unwrap().is_none());
    }
}
