//! What a receiver is sent: an alert's fields, in lakepipe's own `json` format or in
//! Alertmanager's webhook format.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::ReceiverFormat;

/// An alert as delivered: the fields of its `serving/alerts/history` row (without `date`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The deterministic id receivers de-duplicate by.
    pub alert_id: String,
    pub rule: String,
    pub severity: String,
    pub stream: String,
    pub subject: String,
    pub window_start: String,
    pub window_end: String,
    pub triggered_at: String,
    #[serde(default)]
    pub value: Option<f64>,
    pub threshold: f64,
    #[serde(default)]
    pub triggering_ids: Option<Vec<String>>,
    pub triggering_count: i64,
    #[serde(default)]
    pub detail: Option<String>,
}

impl Alert {
    /// The alert of a history row as JSON (extra fields such as `date` are ignored).
    pub fn from_row(row: &Value) -> Result<Alert, serde_json::Error> {
        Alert::deserialize(row)
    }
}

/// The body of one POST of `alerts` to the receiver `receiver` in `format`.
pub fn body(format: ReceiverFormat, receiver: &str, alerts: &[&Alert]) -> Value {
    match format {
        ReceiverFormat::Json => json!({ "receiver": receiver, "alerts": alerts }),
        ReceiverFormat::Alertmanager => alertmanager(receiver, alerts),
    }
}

/// Alertmanager's webhook payload (version 4): every alert firing, never resolved.
fn alertmanager(receiver: &str, alerts: &[&Alert]) -> Value {
    let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|a| {
            json!({
                "status": "firing",
                "labels": {
                    "alertname": a.rule,
                    "severity": a.severity,
                    "stream": a.stream,
                    "subject": a.subject,
                    "alert_id": a.alert_id,
                },
                "annotations": {
                    "detail": a.detail.clone().unwrap_or_default(),
                    "value": num(a.value),
                    "threshold": num(Some(a.threshold)),
                },
                "startsAt": a.triggered_at,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": fingerprint(&a.alert_id),
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{receiver=\"{receiver}\"}}"),
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": receiver,
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "",
        "alerts": alerts,
    })
}

/// Alertmanager's 16 hex digits identifying an alert: of its `alert_id`'s SHA-256.
pub fn fingerprint(alert_id: &str) -> String {
    use sha2::Digest as _;
    crate::hex::hex(&sha2::Sha256::digest(alert_id.as_bytes())[..8])
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn alert(id: &str, rule: &str, severity: &str, at: &str) -> Alert {
        Alert {
            alert_id: id.into(),
            rule: rule.into(),
            severity: severity.into(),
            stream: "financial_transactions".into(),
            subject: "t1".into(),
            window_start: "2026-02-02T00:00:00Z".into(),
            window_end: at.into(),
            triggered_at: at.into(),
            value: Some(0.95),
            threshold: 0.9,
            triggering_ids: Some(vec!["t1".into()]),
            triggering_count: 1,
            detail: Some("risk_score=0.95 <b>".into()),
        }
    }

    #[test]
    fn a_history_row_is_an_alert() {
        let row = json!({
            "alert_id": "fraud_transaction:t1", "rule": "fraud_transaction", "severity": "high",
            "stream": "financial_transactions", "subject": "t1",
            "window_start": "2026-02-02T00:00:00Z", "window_end": "2026-02-02T00:10:00Z",
            "triggered_at": "2026-02-02T00:10:00Z", "value": 0.95, "threshold": 0.9,
            "triggering_ids": ["t1"], "triggering_count": 1, "detail": "d", "date": "2026-02-02",
        });
        let a = Alert::from_row(&row).unwrap();
        assert_eq!(a.alert_id, "fraud_transaction:t1");
        let mut back = serde_json::to_value(&a).unwrap();
        back["date"] = "2026-02-02".into();
        assert_eq!(back, row);
    }

    #[test]
    fn the_json_format_carries_every_field_and_the_id() {
        let a = alert(
            "fraud_transaction:t1",
            "fraud_transaction",
            "high",
            "2026-02-02T00:10:00Z",
        );
        let b = body(ReceiverFormat::Json, "ops", &[&a]);
        assert_eq!(b["receiver"], "ops");
        let got = &b["alerts"][0];
        for k in [
            "alert_id",
            "rule",
            "severity",
            "stream",
            "subject",
            "window_start",
            "window_end",
            "triggered_at",
            "value",
            "threshold",
            "triggering_ids",
            "triggering_count",
            "detail",
        ] {
            assert!(got.get(k).is_some(), "{k} missing in {got}");
        }
        assert_eq!(got["alert_id"], "fraud_transaction:t1");
        assert_eq!(got["triggering_ids"], json!(["t1"]));
    }

    #[test]
    fn the_alertmanager_format_is_alertmanagers_webhook() {
        let a = alert(
            "fraud_transaction:t1",
            "fraud_transaction",
            "critical",
            "2026-02-02T00:10:00Z",
        );
        let b = body(ReceiverFormat::Alertmanager, "pager", &[&a]);
        assert_eq!(b["version"], "4");
        assert_eq!(b["status"], "firing");
        assert_eq!(b["receiver"], "pager");
        assert!(b["groupKey"].is_string());
        let got = &b["alerts"][0];
        assert_eq!(
            got["labels"],
            json!({"alertname": "fraud_transaction", "severity": "critical",
                   "stream": "financial_transactions", "subject": "t1",
                   "alert_id": "fraud_transaction:t1"})
        );
        assert_eq!(
            got["annotations"],
            json!({"detail": "risk_score=0.95 <b>", "value": "0.95", "threshold": "0.9"})
        );
        assert_eq!(got["startsAt"], "2026-02-02T00:10:00Z");
        assert_eq!(got["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(got["generatorURL"], "");
        let fp = got["fingerprint"].as_str().unwrap();
        assert_eq!(fp.len(), 16);
        assert!(fp.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(fp, fingerprint("fraud_transaction:t1"));
        assert_ne!(fp, fingerprint("fraud_transaction:t2"));
    }
}
