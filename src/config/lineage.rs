//! Where OpenLineage run events go (`[lineage]`): an HTTP endpoint (Marquez, DataHub, any
//! OpenLineage consumer), a JSON-lines file, or both. Unset: no events.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// OpenLineage settings (`[lineage]`), read by every task attempt (docs/lineage.md).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineageConfig {
    /// Base URL of an OpenLineage HTTP consumer, e.g. `http://localhost:5000` for Marquez:
    /// each event is POSTed to `<url>/<endpoint>` as OpenLineage's HTTP transport does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Path under `url` events are POSTed to. Default `api/v1/lineage`.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Sent as `Authorization: Bearer <api_key>` when set (never logged or shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// A file each event is appended to, one JSON document per line (relative to the working
    /// directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The namespace of lakepipe's jobs (`<dag_id>.<task_id>`, and `<dag_id>` for DAG runs).
    /// Default `lakepipe`.
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

/// The API key is never printed, not even by `{:?}`.
impl std::fmt::Debug for LineageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineageConfig")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("api_key", &super::redacted(&self.api_key))
            .field("file", &self.file)
            .field("namespace", &self.namespace)
            .finish()
    }
}

fn default_endpoint() -> String {
    "api/v1/lineage".into()
}

fn default_namespace() -> String {
    "lakepipe".into()
}

impl Default for LineageConfig {
    fn default() -> Self {
        LineageConfig {
            url: None,
            endpoint: default_endpoint(),
            api_key: None,
            file: None,
            namespace: default_namespace(),
        }
    }
}

impl LineageConfig {
    /// Whether events are sent anywhere.
    pub fn is_enabled(&self) -> bool {
        self.url.is_some() || self.file.is_some()
    }
}

/// Checks `[lineage]`: an http(s) URL, a namespace.
pub(super) fn validate(l: &LineageConfig) -> Result<()> {
    if let Some(u) = &l.url {
        // The URL is logged when a delivery fails and shown by `config show`: credentials go
        // in `api_key`, never in it.
        super::http_url("lineage.url", u, "set lineage.api_key instead")?;
    }
    if l.namespace.trim().is_empty() {
        return Err(Error::Invalid {
            key: "lineage.namespace",
            message: "the namespace is empty".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_a_toml_literal_and_validation() {
        let d: LineageConfig = toml::from_str("").unwrap();
        assert!(!d.is_enabled());
        assert_eq!(d.namespace, "lakepipe");
        assert_eq!(d.endpoint, "api/v1/lineage");
        assert!(validate(&d).is_ok());
        let f: LineageConfig = toml::from_str("file = \"events.jsonl\"\n").unwrap();
        assert!(f.is_enabled());
        let bad: LineageConfig = toml::from_str("url = \"ftp://x\"\n").unwrap();
        let e = validate(&bad).unwrap_err().to_string();
        assert!(e.contains("lineage.url"), "{e}");
        let secret: LineageConfig = toml::from_str("url = \"http://me:pw@host/\"\n").unwrap();
        let e = validate(&secret).unwrap_err().to_string();
        assert!(e.contains("api_key") && !e.contains("pw"), "{e}");
        let bad: LineageConfig = toml::from_str("namespace = \" \"\n").unwrap();
        assert!(validate(&bad).is_err());
        assert!(toml::from_str::<LineageConfig>("transport = \"http\"\n").is_err());
    }
}
