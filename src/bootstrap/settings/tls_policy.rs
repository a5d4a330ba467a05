//! TLS-only bucket policy: lakepipe's statement denying any request made without TLS, merged
//! into the user's policy; skipped on a plain-HTTP endpoint, where it would lock every client out.

use serde_json::{Value, json};

use super::BucketSetting;
use crate::bootstrap::fault::{Fault, absent_is_null, fault};
use crate::bootstrap::target::Target;

/// Sid of lakepipe's statement in the bucket policy.
const TLS_SID: &str = "LakepipeDenyInsecureTransport";

/// lakepipe's statement in the bucket policy.
pub(super) struct TlsPolicy;

#[async_trait::async_trait]
impl BucketSetting for TlsPolicy {
    fn name(&self) -> &'static str {
        "TLS-only policy"
    }

    fn describe(&self, _t: &Target) -> String {
        "deny aws:SecureTransport=false".into()
    }

    fn desired(&self, t: &Target) -> Value {
        tls_statement(t)
    }

    fn skip(&self, t: &Target) -> Option<String> {
        t.plain_http
            .then(|| "endpoint is plain HTTP: a TLS-only policy would lock every client out".into())
    }

    async fn current(&self, t: &Target) -> Result<Value, Fault> {
        match t.client.get_bucket_policy().bucket(&t.bucket).send().await {
            Ok(out) => {
                let doc: Value = out
                    .policy()
                    .and_then(|p| serde_json::from_str(p).ok())
                    .unwrap_or(Value::Null);
                Ok(statements(&doc)
                    .into_iter()
                    .find(|s| s["Sid"] == TLS_SID)
                    .map_or(Value::Null, |s| canonical_statement(&s)))
            }
            Err(e) => absent_is_null(fault(&e)),
        }
    }

    async fn apply(&self, t: &Target) -> Result<(), Fault> {
        let (c, b) = (&t.client, t.bucket.as_str());
        let mut doc = match c.get_bucket_policy().bucket(b).send().await {
            Ok(out) => out
                .policy()
                .and_then(|p| serde_json::from_str::<Value>(p).ok())
                .unwrap_or(Value::Null),
            Err(e) => match fault(&e) {
                Fault::Absent => Value::Null,
                f => return Err(f),
            },
        };
        let mut stmts: Vec<Value> = statements(&doc)
            .into_iter()
            .filter(|s| s["Sid"] != TLS_SID)
            .collect();
        stmts.push(tls_statement(t));
        if !doc.is_object() {
            doc = json!({ "Version": "2012-10-17" });
        }
        doc["Statement"] = Value::Array(stmts);
        c.put_bucket_policy()
            .bucket(b)
            .policy(doc.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| fault(&e))
    }
}

/// The policy statement that denies any request made without TLS.
fn tls_statement(t: &Target) -> Value {
    let arn = format!("arn:{}:s3:::{}", t.partition(), t.bucket);
    json!({
        "Sid": TLS_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [arn.clone(), format!("{arn}/*")],
        "Condition": { "Bool": { "aws:SecureTransport": "false" } }
    })
}

/// Statements of a policy document (a single statement object counts as one).
fn statements(doc: &Value) -> Vec<Value> {
    match &doc["Statement"] {
        Value::Array(a) => a.clone(),
        Value::Object(_) => vec![doc["Statement"].clone()],
        _ => Vec::new(),
    }
}

/// A statement as we compare it: resources sorted, a single principal/action as a string.
fn canonical_statement(s: &Value) -> Value {
    let mut s = s.clone();
    if let Value::Array(r) = &mut s["Resource"] {
        r.sort_by_key(|v| v.to_string());
    }
    if let Some(p) = s["Principal"].get("AWS").filter(|p| *p == "*") {
        s["Principal"] = p.clone();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::target::target;

    #[test]
    fn tls_policy_denies_plain_http_on_the_bucket_and_its_objects() {
        let s = tls_statement(&target("", "cn-north-1"));
        assert_eq!(s["Effect"], "Deny");
        assert_eq!(s["Condition"]["Bool"]["aws:SecureTransport"], "false");
        assert_eq!(
            s["Resource"],
            json!([
                "arn:aws-cn:s3:::modern-lakehouse-data",
                "arn:aws-cn:s3:::modern-lakehouse-data/*"
            ])
        );
        // AWS may echo `"Principal": {"AWS": "*"}`; that is the same statement.
        let mut echoed = s.clone();
        echoed["Principal"] = json!({ "AWS": "*" });
        assert_eq!(canonical_statement(&echoed), canonical_statement(&s));
    }
}
