//! The Glue Data Catalog (`[glue]`): whether `catalog refresh` and the hourly
//! `5-lake_catalog_refresh` DAG also register the catalog's tables through the Glue API, and
//! where. Credentials and region are the lake's (`[s3]` and the AWS environment).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, Error, Result, S3Config};

/// Glue settings (`[glue]`, docs/glue.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlueConfig {
    /// Register the tables on every catalog refresh. Off: only `catalog refresh --glue` does.
    #[serde(default)]
    pub enabled: bool,
    /// The Glue database (created if missing). Default `lakepipe`.
    #[serde(default = "default_database")]
    pub database: String,
    /// The Data Catalog's account ID, when it is not the caller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_id: Option<String>,
    /// A Glue endpoint other than the AWS environment's (`AWS_ENDPOINT_URL_GLUE`,
    /// `AWS_ENDPOINT_URL`), e.g. when `[s3] endpoint` points at a non-AWS store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// The database of the Athena DDL too (`catalog::tables::DATABASE`).
fn default_database() -> String {
    "lakepipe".into()
}

impl Default for GlueConfig {
    fn default() -> Self {
        GlueConfig {
            enabled: false,
            database: default_database(),
            catalog_id: None,
            endpoint: None,
        }
    }
}

/// Where the tables go: the database, the account's catalog, and how to reach Glue.
#[derive(Debug, Clone, PartialEq)]
pub struct GlueTarget {
    /// The Glue database (`[glue] database`, default `lakepipe`).
    pub database: String,
    /// The catalog (AWS account ID); unset: the caller's account.
    pub catalog_id: Option<String>,
    /// A Glue endpoint other than the one the AWS environment gives (`[glue] endpoint`).
    pub endpoint: Option<String>,
    /// Credentials and region: the same as the lake's S3 (`[s3]` and the AWS environment).
    pub s3: S3Config,
    /// Connect timeout of the AWS client.
    pub connect_timeout: Duration,
}

impl GlueTarget {
    /// The target `config` names; `None` when `[glue] enabled` is off.
    pub fn from_config(config: &Config) -> Option<GlueTarget> {
        config.glue.enabled.then(|| GlueTarget::of(config))
    }

    /// The target of `config`'s `[glue]` settings, enabled or not (`catalog refresh --glue`).
    pub fn of(config: &Config) -> GlueTarget {
        GlueTarget {
            database: config.glue.database.clone(),
            catalog_id: config.glue.catalog_id.clone(),
            endpoint: config.glue.endpoint.clone(),
            s3: config.s3.clone(),
            connect_timeout: Duration::from_secs(config.store.connect_timeout_s),
        }
    }
}

/// Checks `[glue]`: a database name Glue and Athena accept, a 12-digit account, an http(s)
/// endpoint without credentials.
pub(super) fn validate(g: &GlueConfig) -> Result<()> {
    let db = &g.database;
    let name_ok = !db.is_empty()
        && db.len() <= 255
        && db
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !name_ok {
        return Err(Error::Invalid {
            key: "glue.database",
            message: format!(
                "{db:?}: Athena needs lowercase letters, digits and underscores (1–255)"
            ),
        });
    }
    if let Some(id) = &g.catalog_id
        && !(id.len() == 12 && id.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(Error::Invalid {
            key: "glue.catalog_id",
            message: format!("{id:?} is not a 12-digit AWS account ID"),
        });
    }
    if let Some(u) = &g.endpoint {
        super::http_url("glue.endpoint", u, "they come from the AWS environment")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let d: GlueConfig = toml::from_str("").unwrap();
        assert!(!d.enabled);
        assert_eq!(d.database, "lakepipe");
        assert!(validate(&d).is_ok());
        let ok: GlueConfig = toml::from_str(
            "enabled = true\ndatabase = \"lake_2\"\ncatalog_id = \"123456789012\"\nendpoint = \"https://glue.eu-west-1.amazonaws.com\"\n",
        )
        .unwrap();
        assert!(validate(&ok).is_ok());
        for bad in [
            "database = \"Lake\"",
            "database = \"\"",
            "database = \"a-b\"",
            "catalog_id = \"12\"",
            "endpoint = \"ftp://x\"",
            "endpoint = \"http://k:s@x\"",
        ] {
            let c: GlueConfig = toml::from_str(bad).unwrap();
            let e = validate(&c).unwrap_err().to_string();
            assert!(e.contains("glue."), "{bad}: {e}");
            assert!(!e.contains(":s@"), "{e}");
        }
        assert!(toml::from_str::<GlueConfig>("region = \"x\"\n").is_err());
    }
}
