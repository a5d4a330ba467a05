//! The charts of the seed pipeline's time-series dashboards (`api_per_minute`,
//! `ecommerce_revenue_today`, `financial_per_minute`): each row a minute (or ten) of the
//! window, drawn as columns split by layer (batch below, speed on top) and as lines.

use std::collections::BTreeMap;

use serde_json::Value;

use super::charts::{line_series, num, stacked_series, tiles};

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The charts of `name`'s rows, `None` if it is not a time-series dashboard.
pub fn charts(name: &str, rows: &[Value]) -> Option<String> {
    Some(match name {
        "api_per_minute" => api_per_minute(rows),
        "ecommerce_revenue_today" => revenue_today(rows),
        "financial_per_minute" => financial_per_minute(rows),
        _ => return None,
    })
}

/// Rows of `time_col` summed by time: time → the sums of `cols`, in time order.
fn by_time(rows: &[Value], time_col: &str, cols: &[&str]) -> BTreeMap<String, Vec<f64>> {
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in rows {
        let sums = out
            .entry(text(&r[time_col]))
            .or_insert_with(|| vec![0.0; cols.len()]);
        for (s, c) in sums.iter_mut().zip(cols) {
            *s += f(&r[*c]);
        }
    }
    out
}

/// Requests per minute (batch/speed), errors per minute, p95 per minute of each endpoint.
fn api_per_minute(rows: &[Value]) -> String {
    let totals = by_time(
        rows,
        "minute",
        &["batch_requests", "speed_requests", "errors"],
    );
    let labels: Vec<String> = totals.keys().cloned().collect();
    let stacked: Vec<(String, f64, f64)> = totals
        .iter()
        .map(|(t, v)| (t.clone(), v[0], v[1]))
        .collect();
    let errors = vec![(
        "errors".to_string(),
        totals.values().map(|v| Some(v[2])).collect(),
    )];
    let index: BTreeMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut p95: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    for r in rows {
        let Some(i) = index.get(text(&r["minute"]).as_str()).copied() else {
            continue;
        };
        let line = p95
            .entry(text(&r["endpoint"]))
            .or_insert_with(|| vec![None; labels.len()]);
        line[i] = r["p95_ms"].as_f64();
    }
    let p95: Vec<(String, Vec<Option<f64>>)> = p95.into_iter().collect();
    format!(
        "{}{}{}",
        stacked_series("requests per minute", "requests", &stacked),
        line_series("p95 latency per minute, by endpoint", "ms", &labels, &p95),
        line_series("errors per minute", "errors", &labels, &errors),
    )
}

/// Revenue per ten minutes of today (batch/speed) and its running total.
fn revenue_today(rows: &[Value]) -> String {
    let mut rows: Vec<&Value> = rows.iter().collect();
    rows.sort_by_key(|r| text(&r["bucket"]));
    let labels: Vec<String> = rows.iter().map(|r| text(&r["bucket"])).collect();
    let stacked: Vec<(String, f64, f64)> = rows
        .iter()
        .map(|r| {
            (
                text(&r["bucket"]),
                f(&r["revenue_batch"]),
                f(&r["revenue_speed"]),
            )
        })
        .collect();
    let cumulative = vec![(
        "revenue so far today".to_string(),
        rows.iter()
            .map(|r| r["cumulative_revenue"].as_f64())
            .collect(),
    )];
    let total = rows.last().map_or(0.0, |r| f(&r["cumulative_revenue"]));
    let orders: f64 = rows.iter().map(|r| f(&r["orders"])).sum();
    format!(
        "{}{}{}",
        tiles(&[("revenue today", num(total)), ("orders today", num(orders))]),
        stacked_series("revenue per 10 minutes", "USD", &stacked),
        line_series("revenue through the day", "USD", &labels, &cumulative),
    )
}

/// Transactions per minute (batch/speed), fraud-flagged ones and volume per minute.
fn financial_per_minute(rows: &[Value]) -> String {
    let totals = by_time(
        rows,
        "minute",
        &[
            "batch_transactions",
            "speed_transactions",
            "fraud",
            "volume_usd",
        ],
    );
    let labels: Vec<String> = totals.keys().cloned().collect();
    let stacked: Vec<(String, f64, f64)> = totals
        .iter()
        .map(|(t, v)| (t.clone(), v[0], v[1]))
        .collect();
    let line = |name: &str, k: usize| {
        vec![(
            name.to_string(),
            totals.values().map(|v| Some(v[k])).collect(),
        )]
    };
    format!(
        "{}{}{}",
        stacked_series("transactions per minute", "transactions", &stacked),
        line_series(
            "fraud-flagged per minute",
            "transactions",
            &labels,
            &line("fraud", 2)
        ),
        line_series("volume per minute", "USD", &labels, &line("volume", 3)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_minute_rows_become_columns_by_layer_and_lines() {
        let rows = serde_json::json!([
            {"minute": "2026-02-01T10:01:00Z", "endpoint": "/b", "requests": 2, "p95_ms": 30.0, "errors": 1, "batch_requests": 0, "speed_requests": 2},
            {"minute": "2026-02-01T10:00:00Z", "endpoint": "/a", "requests": 3, "p95_ms": 10.0, "errors": 0, "batch_requests": 3, "speed_requests": 0},
            {"minute": "2026-02-01T10:00:00Z", "endpoint": "/b", "requests": 1, "p95_ms": 20.0, "errors": 0, "batch_requests": 1, "speed_requests": 0}
        ]);
        let html = charts("api_per_minute", rows.as_array().unwrap()).unwrap();
        // 10:00 sums both endpoints: 4 from the batch layer.
        assert!(html.contains("data-label=\"2026-02-01T10:00:00Z batch\" data-value=\"4\""));
        assert!(html.contains("data-label=\"2026-02-01T10:01:00Z speed\" data-value=\"2\""));
        assert!(html.contains("data-label=\"/a 2026-02-01T10:00:00Z\" data-value=\"10\""));
        assert!(!html.contains("data-label=\"/a 2026-02-01T10:01:00Z\""));
        assert!(html.contains("data-label=\"errors 2026-02-01T10:01:00Z\" data-value=\"1\""));
        assert!(charts("api_health_1h", &[]).is_none());
    }

    #[test]
    fn revenue_runs_through_the_day() {
        let rows = serde_json::json!([
            {"bucket": "2026-02-01T00:10:00Z", "orders": 1, "revenue": 5.0, "revenue_batch": 0.0, "revenue_speed": 5.0, "cumulative_revenue": 15.0},
            {"bucket": "2026-02-01T00:00:00Z", "orders": 2, "revenue": 10.0, "revenue_batch": 10.0, "revenue_speed": 0.0, "cumulative_revenue": 10.0}
        ]);
        let html = charts("ecommerce_revenue_today", rows.as_array().unwrap()).unwrap();
        assert!(html.contains("data-label=\"revenue today\" data-value=\"15\""));
        assert!(html.contains("data-label=\"orders today\" data-value=\"3\""));
        assert!(html.contains(
            "data-label=\"revenue so far today 2026-02-01T00:10:00Z\" data-value=\"15\""
        ));
        let fin = serde_json::json!([{"minute": "2026-02-01T10:00:00Z", "transactions": 2, "fraud": 1,
            "volume_usd": 9.5, "batch_transactions": 0, "speed_transactions": 2}]);
        let html = charts("financial_per_minute", fin.as_array().unwrap()).unwrap();
        assert!(html.contains("data-label=\"fraud 2026-02-01T10:00:00Z\" data-value=\"1\""));
        assert!(html.contains("data-label=\"volume 2026-02-01T10:00:00Z\" data-value=\"9.5\""));
    }
}
