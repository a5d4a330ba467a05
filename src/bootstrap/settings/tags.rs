//! Tags: lakepipe's bucket tags (`project=lakepipe`), merged with the user's.

use std::collections::BTreeMap;

use aws_sdk_s3::types::{Tag, Tagging};
use serde_json::{Value, json};

use super::BucketSetting;
use crate::bootstrap::fault::{Fault, absent_is_null, built, fault};
use crate::bootstrap::target::Target;

/// Tags lakepipe sets on the bucket.
const TAGS: [(&str, &str); 1] = [("project", "lakepipe")];

/// lakepipe's bucket tags.
pub(super) struct Tags;

#[async_trait::async_trait]
impl BucketSetting for Tags {
    fn name(&self) -> &'static str {
        "tags"
    }

    fn describe(&self, _t: &Target) -> String {
        TAGS.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn desired(&self, _t: &Target) -> Value {
        json!(
            TAGS.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        )
    }

    async fn current(&self, t: &Target) -> Result<Value, Fault> {
        match t.client.get_bucket_tagging().bucket(&t.bucket).send().await {
            Ok(out) => Ok(json!(
                out.tag_set()
                    .iter()
                    .filter(|tag| TAGS.iter().any(|(k, _)| *k == tag.key()))
                    .map(|tag| (tag.key().to_string(), tag.value().to_string()))
                    .collect::<BTreeMap<_, _>>()
            )),
            Err(e) => absent_is_null(fault(&e)),
        }
    }

    async fn apply(&self, t: &Target) -> Result<(), Fault> {
        let (c, b) = (&t.client, t.bucket.as_str());
        let mut tags: BTreeMap<String, String> = match c.get_bucket_tagging().bucket(b).send().await
        {
            Ok(out) => out
                .tag_set()
                .iter()
                .map(|tag| (tag.key().to_string(), tag.value().to_string()))
                .collect(),
            Err(e) => match fault(&e) {
                Fault::Absent => BTreeMap::new(),
                f => return Err(f),
            },
        };
        for (k, v) in TAGS {
            tags.insert(k.into(), v.into());
        }
        let set = tags
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(built)?;
        c.put_bucket_tagging()
            .bucket(b)
            .tagging(
                Tagging::builder()
                    .set_tag_set(Some(set))
                    .build()
                    .map_err(built)?,
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| fault(&e))
    }
}
