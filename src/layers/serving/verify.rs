//! The differential check of the incremental serving path: with `LAKEPIPE_SERVING_VERIFY=1`,
//! every run of `dashboards`, `alerts` and `analytics` also evaluates the same declared SQL over
//! the unified Delta tables (the definition) and fails if any row differs from what the
//! windows kept in memory gave ([`super::window`]). For tests and for an operator who doubts a
//! number; it costs what serving cost before the windows.

use deltalake::datafusion::prelude::SessionContext;

use super::{Error, Result, unified_session};
use crate::store::Store;

/// The environment variable that turns the check on.
pub const ENV: &str = "LAKEPIPE_SERVING_VERIFY";

/// Whether runs check themselves against the Delta tables.
pub fn enabled() -> bool {
    std::env::var(ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The reference session: `unified_<stream>` is the Delta table of each of `streams`.
pub async fn reference(store: &Store, streams: &[&'static str]) -> Result<SessionContext> {
    Ok(unified_session(store, streams).await?.0)
}

/// Fails unless `incremental` and `reference` hold the same rows (in any order; floats equal to
/// a relative 1e-9, or one unit of the last decimal both show apart: sums over other
/// partitions add in another order, and a `round(v, d)` of them may fall either side of a half).
pub fn same_rows(
    what: &str,
    incremental: &[serde_json::Value],
    reference: &[serde_json::Value],
) -> Result<()> {
    let mut a: Vec<&serde_json::Value> = incremental.iter().collect();
    let mut b: Vec<&serde_json::Value> = reference.iter().collect();
    let key = |v: &&serde_json::Value| rounded(v).to_string();
    a.sort_by_cached_key(key);
    b.sort_by_cached_key(key);
    let diverged = |detail: String| Error::Diverged {
        what: what.to_string(),
        detail,
    };
    if a.len() != b.len() {
        return Err(diverged(format!(
            "{} rows incrementally, {} from the table",
            a.len(),
            b.len()
        )));
    }
    for (x, y) in a.iter().zip(&b) {
        if !close(x, y) {
            return Err(diverged(format!("incrementally {x}, from the table {y}")));
        }
    }
    Ok(())
}

/// `v` with floats to 6 decimals, for ordering rows.
fn rounded(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            serde_json::Value::String(format!("{:.6}", n.as_f64().unwrap_or(0.0)))
        }
        serde_json::Value::Array(a) => a.iter().map(rounded).collect(),
        serde_json::Value::Object(o) => o
            .iter()
            .map(|(k, v)| (k.clone(), rounded(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        other => other.clone(),
    }
}

fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match (a, b) {
        (V::Number(x), V::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => {
                    (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0) || rounded_apart(x, y)
                }
                _ => x == y,
            }
        }
        (V::Array(x), V::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y))
        }
        (V::Object(x), V::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        _ => a == b,
    }
}

/// Whether `x` and `y` are one unit of the last decimal both show apart: the SQL's `round(v, d)`
/// of sums that added in another order and fell either side of a half.
fn rounded_apart(x: f64, y: f64) -> bool {
    let decimals = |v: f64| {
        let s = format!("{v}");
        s.split_once('.').map_or(0, |(_, f)| f.len())
    };
    let d = decimals(x).max(decimals(y));
    (1..=6).contains(&d) && (x - y).abs() <= 10f64.powi(-(d as i32)) * 1.000_001
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_compare_in_any_order_with_float_sums_of_another_order() {
        let a = [json!({"k": "a", "v": 0.1 + 0.2}), json!({"k": "b", "v": 1})];
        let b = [json!({"k": "b", "v": 1}), json!({"k": "a", "v": 0.3})];
        same_rows("d", &a, &b).unwrap();
        let c = [json!({"k": "b", "v": 2}), json!({"k": "a", "v": 0.3})];
        let e = same_rows("d", &a, &c).unwrap_err();
        assert!(e.to_string().contains("d differs"), "{e}");
        assert!(same_rows("d", &a, &b[..1]).is_err());
        // round(avg, 2) of a sum that fell on either side of a half.
        same_rows("d", &[json!({"v": 67.64})], &[json!({"v": 67.65})]).unwrap();
        assert!(same_rows("d", &[json!({"v": 67.64})], &[json!({"v": 67.66})]).is_err());
    }
}
