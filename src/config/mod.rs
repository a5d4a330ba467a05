//! Configuration: an optional `lakepipe.toml`, overridden by `LAKEPIPE_*` environment
//! variables, overridden by command-line flags. [`Config::validate`] checks it before any I/O.

mod glue;
mod ingest;
mod lineage;
mod receivers;
mod serving;
mod upkeep;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::{LakeUrl, StoreConfig};
pub use glue::{GlueConfig, GlueTarget};
pub use ingest::{Compression, InboxConfig, InboxFormat, IngestConfig, IngestToken};
pub use lineage::LineageConfig;
pub use receivers::{Headers, ReceiverConfig, ReceiverFormat, Severity};
pub use serving::{DEFAULT_SERVING_SCHEDULE, ServingConfig};
pub use upkeep::UpkeepConfig;

/// Errors from reading or validating configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for lakepipe.
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// An environment variable holds a value of the wrong form.
    #[error("environment variable {name}={value:?} is invalid: {message}")]
    Env {
        name: &'static str,
        value: String,
        message: String,
    },
    /// A setting is out of its allowed range.
    #[error("invalid setting `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// Result with the config [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Name of the environment variable that points to the config file.
pub const CONFIG_ENV: &str = "LAKEPIPE_CONFIG";

/// The whole lakepipe configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the lake lives: a local directory (default `./lake`) or `s3://bucket[/prefix]`.
    ///
    /// Env: `LAKEPIPE_LAKE`. Flag: `--lake`.
    #[serde(default = "default_lake")]
    pub lake: String,

    /// Seed of every generator: the same seed and time slot always give the same bytes.
    ///
    /// Env: `LAKEPIPE_SEED`. Flag: `--seed`. Default 42.
    #[serde(default = "default_seed")]
    pub seed: u64,

    /// The pipeline declaration (streams, expectations, derived columns, facts, dashboards,
    /// alerts); a relative path is relative to this file. Unset: the built-in seed pipeline.
    ///
    /// Env: `LAKEPIPE_PIPELINE`. Flag: `--pipeline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PathBuf>,

    /// S3 connection settings; unset fields come from the standard AWS environment
    /// (`AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_PROFILE`, `~/.aws/config`, …).
    #[serde(default)]
    pub s3: S3Config,

    /// Object-store client behaviour: concurrency, timeouts, retries, multipart.
    #[serde(default)]
    pub store: StoreConfig,

    /// The embedded scheduler: catch-up and the lease.
    #[serde(default)]
    pub scheduler: SchedulerConfig,

    /// The HTTP ingest API of `up` and `serve`: flush window, limits, tokens.
    #[serde(default)]
    pub ingest: IngestConfig,

    /// Prefixes where other producers (Firehose, Vector, Fluent Bit) deliver objects, each
    /// taken exactly once into the speed layer (`[[inbox]]`).
    #[serde(default, rename = "inbox", skip_serializing_if = "Vec::is_empty")]
    pub inboxes: Vec<InboxConfig>,

    /// Webhooks the `alerts` task delivers new alerts to (`[[receiver]]`).
    #[serde(default, rename = "receiver", skip_serializing_if = "Vec::is_empty")]
    pub receivers: Vec<ReceiverConfig>,

    /// The serving layer: the schedule of `4-serving_layer_merge` (`[serving]`).
    #[serde(default)]
    pub serving: ServingConfig,

    /// Upkeep of the serving tables: compaction, checkpoints, log and file retention
    /// (`[upkeep]`, docs/upkeep.md).
    #[serde(default)]
    pub upkeep: UpkeepConfig,

    /// Where OpenLineage run events of every task attempt go (`[lineage]`, docs/lineage.md).
    #[serde(default)]
    pub lineage: LineageConfig,

    /// The Glue Data Catalog: whether catalog refreshes register the tables there (`[glue]`,
    /// docs/glue.md).
    #[serde(default)]
    pub glue: GlueConfig,
}

/// Scheduler settings (`[scheduler]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// On start, run every fire time missed since the last recorded run of each DAG (Airflow's
    /// `catchup`). Off: only the most recent missed fire time runs. Env:
    /// `LAKEPIPE_CATCHUP`. Default false, as in Airflow 3.
    #[serde(default)]
    pub catchup: bool,
    /// Seconds a scheduler lease stays valid without a heartbeat (renewed every third of it).
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl_s: u64,
}

fn default_lease_ttl() -> u64 {
    60
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            catchup: false,
            lease_ttl_s: default_lease_ttl(),
        }
    }
}

/// S3 settings that override the AWS environment.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Region, e.g. `us-east-1`. Env: `LAKEPIPE_S3_REGION`; otherwise the AWS chain, then
    /// `us-east-1`.
    pub region: Option<String>,
    /// Endpoint URL of an S3-compatible server, e.g. `http://127.0.0.1:3900`.
    /// Env: `LAKEPIPE_S3_ENDPOINT`; otherwise `AWS_ENDPOINT_URL`.
    pub endpoint: Option<String>,
    /// Named profile of `~/.aws/config`. Env: `LAKEPIPE_S3_PROFILE`; otherwise `AWS_PROFILE`.
    pub profile: Option<String>,
    /// Use virtual-hosted-style addressing (`bucket.host`) instead of path style.
    /// Default: false (path style, which every local S3 server accepts).
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// Static access key id; prefer the AWS credential chain. Never printed.
    pub access_key_id: Option<String>,
    /// Static secret access key; prefer the AWS credential chain. Never printed.
    pub secret_access_key: Option<String>,
    /// Static session token. Never printed.
    pub session_token: Option<String>,
}

/// `Some("<redacted>")` for a set secret: what a `Debug` form shows of it.
pub(crate) fn redacted(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| "<redacted>")
}

/// The credentials are never printed, not even by `{:?}` (the settings travel inside
/// `RunParams` and `[glue]`'s target, which derive `Debug`).
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("profile", &self.profile)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("access_key_id", &redacted(&self.access_key_id))
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .finish()
    }
}

fn default_lake() -> String {
    "./lake".to_string()
}

fn default_seed() -> u64 {
    42
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lake: default_lake(),
            seed: default_seed(),
            pipeline: None,
            s3: S3Config::default(),
            store: StoreConfig::default(),
            scheduler: SchedulerConfig::default(),
            ingest: IngestConfig::default(),
            inboxes: Vec::new(),
            receivers: Vec::new(),
            serving: ServingConfig::default(),
            upkeep: UpkeepConfig::default(),
            lineage: LineageConfig::default(),
            glue: GlueConfig::default(),
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers in force.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--lake`
    pub lake: Option<String>,
    /// `--seed`
    pub seed: Option<u64>,
    /// `--concurrency`
    pub concurrency: Option<usize>,
    /// `--pipeline`
    pub pipeline: Option<PathBuf>,
}

/// A configuration that passed [`Config::validate`].
#[derive(Debug, Clone)]
pub struct ValidatedConfig {
    /// The settings as given.
    pub config: Config,
    /// The parsed lake location.
    pub lake: LakeUrl,
}

impl Config {
    /// Parses a TOML document.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config> {
        toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Builds the effective configuration: defaults < file < environment < flags.
    ///
    /// `file` is the `--config` path; without it, `LAKEPIPE_CONFIG` is used, then
    /// `./lakepipe.toml` if it exists. `env` looks up environment variables (injected for tests).
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Config> {
        let path = file
            .map(Path::to_path_buf)
            .or_else(|| env(CONFIG_ENV).map(PathBuf::from))
            .or_else(|| {
                let p = PathBuf::from("lakepipe.toml");
                p.exists().then_some(p)
            });
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
                    path: path.clone(),
                    source,
                })?;
                let mut config = Config::from_toml(&text, &path)?;
                if let (Some(p), Some(dir)) = (&config.pipeline, path.parent()) {
                    config.pipeline = Some(dir.join(p));
                }
                config
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.apply_flags(flags);
        Ok(config)
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        fn parsed<T: std::str::FromStr>(
            env: &dyn Fn(&str) -> Option<String>,
            name: &'static str,
        ) -> Result<Option<T>>
        where
            T::Err: std::fmt::Display,
        {
            match env(name) {
                None => Ok(None),
                Some(value) => value
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|e: T::Err| Error::Env {
                        name,
                        message: e.to_string(),
                        value,
                    }),
            }
        }
        if let Some(v) = env("LAKEPIPE_LAKE") {
            self.lake = v;
        }
        if let Some(v) = env("LAKEPIPE_PIPELINE") {
            self.pipeline = Some(PathBuf::from(v));
        }
        if let Some(v) = parsed(env, "LAKEPIPE_SEED")? {
            self.seed = v;
        }
        if let Some(v) = parsed(env, "LAKEPIPE_CONCURRENCY")? {
            self.store.concurrency = v;
        }
        if let Some(v) = env("LAKEPIPE_S3_REGION") {
            self.s3.region = Some(v);
        }
        if let Some(v) = env("LAKEPIPE_S3_ENDPOINT") {
            self.s3.endpoint = Some(v);
        }
        if let Some(v) = env("LAKEPIPE_S3_PROFILE") {
            self.s3.profile = Some(v);
        }
        if let Some(v) = parsed(env, "LAKEPIPE_CATCHUP")? {
            self.scheduler.catchup = v;
        }
        Ok(())
    }

    fn apply_flags(&mut self, flags: &Overrides) {
        if let Some(v) = &flags.lake {
            self.lake = v.clone();
        }
        if let Some(v) = flags.seed {
            self.seed = v;
        }
        if let Some(v) = &flags.pipeline {
            self.pipeline = Some(v.clone());
        }
        if let Some(v) = flags.concurrency {
            self.store.concurrency = v;
        }
    }

    /// Checks every setting before anything touches the network or disk.
    pub fn validate(self) -> Result<ValidatedConfig> {
        let lake = LakeUrl::parse(&self.lake).map_err(|message| Error::Invalid {
            key: "lake",
            message,
        })?;
        self.store
            .validate()
            .map_err(|(key, message)| Error::Invalid { key, message })?;
        if !(5..=3600).contains(&self.scheduler.lease_ttl_s) {
            return Err(Error::Invalid {
                key: "scheduler.lease_ttl_s",
                message: format!(
                    "{} is not between 5 and 3600 seconds",
                    self.scheduler.lease_ttl_s
                ),
            });
        }
        ingest::validate(&self.ingest, &self.inboxes)?;
        receivers::validate(&self.receivers)?;
        serving::validate(&self.serving)?;
        upkeep::validate(&self.upkeep)?;
        lineage::validate(&self.lineage)?;
        glue::validate(&self.glue)?;
        if self.s3.access_key_id.is_some() != self.s3.secret_access_key.is_some() {
            return Err(Error::Invalid {
                key: "s3.access_key_id",
                message: "set both access_key_id and secret_access_key, or neither".into(),
            });
        }
        Ok(ValidatedConfig { config: self, lake })
    }

    /// The configuration as TOML with credentials replaced by `***`.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        for secret in [
            &mut shown.s3.access_key_id,
            &mut shown.s3.secret_access_key,
            &mut shown.s3.session_token,
            &mut shown.lineage.api_key,
        ] {
            if secret.is_some() {
                *secret = Some("***".into());
            }
        }
        for t in &mut shown.ingest.tokens {
            t.token = "***".into();
        }
        for r in &mut shown.receivers {
            for v in r.headers.0.values_mut() {
                *v = "***".into();
            }
        }
        toml::to_string(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Checks that `key`'s value `u` is an http(s) URL with a host and no credentials (URLs are
/// logged and shown by `config show`); `instead` says where credentials go.
fn http_url(key: &'static str, u: &str, instead: &str) -> Result<()> {
    match url::Url::parse(u) {
        Ok(p) if !p.username().is_empty() || p.password().is_some() => Err(Error::Invalid {
            key,
            message: format!("credentials in the URL: {instead}"),
        }),
        Ok(p) if (p.scheme() == "http" || p.scheme() == "https") && p.has_host() => Ok(()),
        _ => Err(Error::Invalid {
            key,
            message: format!("{u:?} is not an http(s) URL"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn write_file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn toml_literal_parses_with_defaults_filled_in() {
        let c = Config::from_toml(
            r#"
            lake = "s3://bucket/prefix"
            [s3]
            endpoint = "http://127.0.0.1:3900"
            [store]
            concurrency = 8
            [store.retry]
            max_retries = 2
            "#,
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(c.lake, "s3://bucket/prefix");
        assert_eq!(c.seed, 42);
        assert_eq!(c.store.concurrency, 8);
        assert_eq!(c.store.retry.max_retries, 2);
        assert_eq!(c.s3.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_file_name() {
        let err = Config::from_toml("lakee = \"x\"", Path::new("bad.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bad.toml") && msg.contains("lakee"), "{msg}");
    }

    #[test]
    fn precedence_is_default_then_file_then_env_then_flags() {
        let file = write_file("lake = \"from-file\"\nseed = 1\n[store]\nconcurrency = 3\n");
        let none = env_of(&[]);
        let c = Config::load(None, &none, &Overrides::default()).unwrap();
        assert_eq!((c.lake.as_str(), c.seed), ("./lake", 42));

        let c = Config::load(Some(file.path()), &none, &Overrides::default()).unwrap();
        assert_eq!(
            (c.lake.as_str(), c.seed, c.store.concurrency),
            ("from-file", 1, 3)
        );

        let env = env_of(&[("LAKEPIPE_LAKE", "from-env"), ("LAKEPIPE_CONCURRENCY", "5")]);
        let c = Config::load(Some(file.path()), &env, &Overrides::default()).unwrap();
        assert_eq!(
            (c.lake.as_str(), c.seed, c.store.concurrency),
            ("from-env", 1, 5)
        );

        let flags = Overrides {
            lake: Some("from-flag".into()),
            seed: Some(7),
            concurrency: None,
            pipeline: None,
        };
        let c = Config::load(Some(file.path()), &env, &flags).unwrap();
        assert_eq!(
            (c.lake.as_str(), c.seed, c.store.concurrency),
            ("from-flag", 7, 5)
        );
    }

    #[test]
    fn config_file_can_come_from_the_environment() {
        let file = write_file("lake = \"via-env-file\"\n");
        let path = file.path().to_str().unwrap().to_string();
        let env = env_of(&[(CONFIG_ENV, path.as_str())]);
        let c = Config::load(None, &env, &Overrides::default()).unwrap();
        assert_eq!(c.lake, "via-env-file");
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let env = env_of(&[("LAKEPIPE_SEED", "forty-two")]);
        let err = Config::load(None, &env, &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("LAKEPIPE_SEED"), "{err}");
    }

    #[test]
    fn secrets_are_redacted() {
        let mut c = Config::default();
        c.s3.access_key_id = Some("AKIAEXAMPLE".into());
        c.s3.secret_access_key = Some("very-secret".into());
        c.receivers = vec![
            toml::from_str(
                "name = \"ops\"\nurl = \"http://x/\"\nheaders = { Authorization = \"Bearer hook-secret\" }\n",
            )
            .unwrap(),
        ];
        c.lineage.api_key = Some("lineage-secret".into());
        let shown = c.to_redacted_toml();
        assert!(
            !shown.contains("AKIAEXAMPLE")
                && !shown.contains("very-secret")
                && !shown.contains("hook-secret")
                && !shown.contains("lineage-secret"),
            "{shown}"
        );
        assert!(shown.contains("***"));
        // Nor in the Debug form the settings carry inside run parameters.
        let debug = format!("{c:?}");
        for secret in [
            "AKIAEXAMPLE",
            "very-secret",
            "hook-secret",
            "lineage-secret",
        ] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    #[test]
    fn validate_rejects_bad_lake_and_half_credentials() {
        let c = Config {
            lake: "s3://".into(),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.s3.access_key_id = Some("k".into());
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.store.concurrency = 0;
        assert!(c.validate().is_err());
    }

    /// Absurd values are refused with the key and the bound, not taken as they come.
    #[test]
    fn validate_refuses_values_out_of_bounds_with_the_bound() {
        let refused = |toml: &str| {
            let c: Config = toml::from_str(toml).unwrap();
            c.validate().unwrap_err().to_string()
        };
        let e = refused("[store.retry]\nmax_retries = 99999999999\n");
        assert!(
            e.contains("store.retry.max_retries") && e.contains("between 0 and 100"),
            "{e}"
        );
        let e = refused("[store.retry]\ntimeout_s = 0\n");
        assert!(
            e.contains("store.retry.timeout_s") && e.contains("between 1 and 3600"),
            "{e}"
        );
        let e = refused("[store]\nrequest_timeout_s = 0\n");
        assert!(e.contains("store.request_timeout_s"), "{e}");
        let e = refused("[store]\nconnect_timeout_s = 100000\n");
        assert!(e.contains("between 1 and 300"), "{e}");
        let e = refused("[upkeep]\ncheckpoint_every = 0\n");
        assert!(e.contains("upkeep.checkpoint_every"), "{e}");
        let e = refused("[serving]\nschedule = \"*/61 * * *\"\n");
        assert!(e.contains("serving.schedule"), "{e}");
        let ok: Config = toml::from_str("[store.retry]\nmax_retries = 0\n").unwrap();
        assert!(ok.validate().is_ok());
    }
}
