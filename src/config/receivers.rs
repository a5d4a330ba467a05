//! Where alerts are delivered: the webhook receivers (`[[receiver]]`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// Payload format of a receiver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverFormat {
    /// `{"receiver": …, "alerts": [ … ]}` with the alerts' own fields.
    #[default]
    Json,
    /// Alertmanager's webhook payload (`version` "4", `status` "firing", `alerts[]`).
    Alertmanager,
}

/// Severity of an alert, in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The severity named `s` (`low`, `medium`, `high`, `critical`).
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// HTTP headers sent with each delivery (e.g. `Authorization`). Their values are credentials:
/// never printed (`Debug` shows the names only), redacted by `config show`, never logged or
/// written to the lake.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Headers(pub BTreeMap<String, String>);

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "***")))
            .finish()
    }
}

/// A webhook receiver of alerts (`[[receiver]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Identifier, unique among receivers (letters, digits, `_`, `-`): names its delivery
    /// records under `serving/alerts/deliveries/<name>/`.
    pub name: String,
    /// `http://` or `https://` URL the alerts are POSTed to.
    pub url: String,
    /// Payload format. Default `json`.
    #[serde(default)]
    pub format: ReceiverFormat,
    /// Seconds one POST may take. Default 5.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// Headers sent with each POST (credentials: never printed).
    #[serde(default, skip_serializing_if = "headers_empty")]
    pub headers: Headers,
    /// Rules whose alerts it receives. Unset: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<String>>,
    /// Least severity it receives. Unset: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
}

fn headers_empty(h: &Headers) -> bool {
    h.0.is_empty()
}

fn default_timeout_s() -> u64 {
    5
}

impl ReceiverConfig {
    /// Whether this receiver wants an alert of `rule` with `severity` (an unknown severity
    /// passes only when no least severity is set).
    pub fn wants(&self, rule: &str, severity: &str) -> bool {
        let rule_ok = self
            .rules
            .as_ref()
            .is_none_or(|rules| rules.iter().any(|r| r == rule));
        let severity_ok = match self.min_severity {
            None => true,
            Some(min) => Severity::parse(severity).is_some_and(|s| s >= min),
        };
        rule_ok && severity_ok
    }
}

/// Checks the `[[receiver]]` entries: unique identifiers, http(s) URLs, sane timeouts,
/// header names and values HTTP accepts.
pub(super) fn validate(receivers: &[ReceiverConfig]) -> Result<()> {
    let invalid = |key: &'static str, message: String| Err(Error::Invalid { key, message });
    let mut seen = std::collections::HashSet::new();
    for r in receivers {
        let ident = !r.name.is_empty()
            && r.name.len() <= 64
            && r.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ident {
            return invalid(
                "receiver.name",
                format!(
                    "{:?} is not an identifier (1 to 64 letters, digits, `_` or `-`)",
                    r.name
                ),
            );
        }
        if !seen.insert(r.name.as_str()) {
            return invalid(
                "receiver.name",
                format!("two receivers are named `{}`", r.name),
            );
        }
        match url::Url::parse(&r.url) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.has_host() => {}
            _ => {
                return invalid(
                    "receiver.url",
                    format!("receiver `{}`: {:?} is not an http(s) URL", r.name, r.url),
                );
            }
        }
        if !(1..=120).contains(&r.timeout_s) {
            return invalid(
                "receiver.timeout_s",
                format!(
                    "receiver `{}`: {} is not between 1 and 120 seconds",
                    r.name, r.timeout_s
                ),
            );
        }
        for (k, v) in &r.headers.0 {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                return invalid(
                    "receiver.headers",
                    format!("receiver `{}`: {k:?} is not a header name", r.name),
                );
            }
            // The value is a credential: the message names the header only.
            if reqwest::header::HeaderValue::from_str(v).is_err() {
                return invalid(
                    "receiver.headers",
                    format!(
                        "receiver `{}`: the value of {k} is not a header value",
                        r.name
                    ),
                );
            }
        }
        if let Some(rules) = &r.rules
            && rules.is_empty()
        {
            return invalid(
                "receiver.rules",
                format!(
                    "receiver `{}`: an empty list sends nothing; leave `rules` out to send all",
                    r.name
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver(toml: &str) -> ReceiverConfig {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn defaults_filters_and_validation() {
        let r = receiver("name = \"ops\"\nurl = \"https://example.com/hook\"\n");
        assert_eq!(r.format, ReceiverFormat::Json);
        assert_eq!(r.timeout_s, 5);
        assert!(r.wants("anything", "weird"));
        assert!(validate(std::slice::from_ref(&r)).is_ok());

        let r = receiver(
            "name = \"pager\"\nurl = \"http://127.0.0.1:9093/api\"\nformat = \"alertmanager\"\n\
             rules = [\"fraud_transaction\"]\nmin_severity = \"high\"\n\
             headers = { Authorization = \"Bearer s3cret\" }\n",
        );
        assert!(r.wants("fraud_transaction", "critical"));
        assert!(r.wants("fraud_transaction", "high"));
        assert!(!r.wants("fraud_transaction", "medium"));
        assert!(!r.wants("api_error_rate", "critical"));
        assert!(!format!("{r:?}").contains("s3cret"));

        let e = validate(&[r.clone(), r.clone()]).unwrap_err().to_string();
        assert!(e.contains("two receivers are named `pager`"), "{e}");
        let bad = |f: &dyn Fn(&mut ReceiverConfig)| {
            let mut c = r.clone();
            f(&mut c);
            validate(&[c]).unwrap_err().to_string()
        };
        assert!(bad(&|c| c.url = "ftp://x/".into()).contains("receiver.url"));
        assert!(bad(&|c| c.name = "a b".into()).contains("receiver.name"));
        assert!(bad(&|c| c.timeout_s = 0).contains("receiver.timeout_s"));
        assert!(bad(&|c| c.rules = Some(vec![])).contains("receiver.rules"));
        let e = bad(&|c| {
            c.headers
                .0
                .insert("X-Key".into(), "line\nbreak-s3cret".into());
        });
        assert!(e.contains("X-Key") && !e.contains("s3cret"), "{e}");
        assert!(
            toml::from_str::<ReceiverConfig>("name = \"a\"\nurl = \"http://x\"\nretries = 3\n")
                .is_err()
        );
    }
}
