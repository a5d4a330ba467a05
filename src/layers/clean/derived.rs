//! The derived silver columns of a stream, as SQL over the typed columns: those the pipeline
//! declares ([`derived`]), and those of the seed streams ([`seed_derived`]), which the built-in
//! declaration holds.

use crate::sources::stream::StreamSpec;

/// Derived silver columns of a declared stream: (name, SQL expression over the typed columns).
pub fn derived(spec: &StreamSpec) -> Vec<(String, String)> {
    spec.derived
        .iter()
        .map(|d| (d.name.to_string(), d.sql.to_string()))
        .collect()
}

/// Derived silver columns of a seed stream, as the built-in declaration has them.
pub fn seed_derived(stream: &str) -> Vec<(String, String)> {
    let d = |n: &str, sql: String| (n.to_string(), sql);
    match stream {
        "iot_sensors" => {
            use crate::sources::iot_sensors::{SENSOR_TYPES, VALUE_RANGES};
            // Normal band: the middle two thirds of the type's range (mean ± 2σ of the
            // generator's distribution).
            let arms: Vec<String> = SENSOR_TYPES
                .iter()
                .zip(VALUE_RANGES)
                .map(|(t, (lo, hi))| {
                    let w = (hi - lo) / 6.0;
                    format!("WHEN '{t}' THEN value < {} OR value > {}", lo + w, hi - w)
                })
                .collect();
            vec![
                d("is_anomaly", format!("CASE sensor_type {} ELSE false END", arms.join(" "))),
                d("battery_low", "battery_level < 20".into()),
            ]
        }
        "api_logs" => vec![
            d("is_error", "status_code >= 400".into()),
            d("is_server_error", "status_code >= 500".into()),
            d("is_slow", "response_time_ms > 1000".into()),
            d(
                "response_category",
                "concat(CAST(status_code / 100 AS VARCHAR), 'xx')".into(),
            ),
        ],
        "social_media" => vec![d(
            "engagement_tier",
            "CASE WHEN engagement_score < 30 THEN 'low' WHEN engagement_score < 70 THEN 'medium' ELSE 'high' END".into(),
        )],
        "ecommerce_clickstream" => vec![
            d("cart_value", "price * quantity".into()),
            d(
                "funnel_stage",
                "CASE event_type WHEN 'page_view' THEN 'awareness' WHEN 'product_view' THEN 'interest' \
                 WHEN 'add_to_cart' THEN 'consideration' WHEN 'remove_from_cart' THEN 'consideration' \
                 WHEN 'checkout_start' THEN 'intent' WHEN 'checkout_complete' THEN 'conversion' END"
                    .into(),
            ),
        ],
        "financial_transactions" => {
            use crate::sources::financial_transactions::{CURRENCIES, PER_USD};
            let arms: Vec<String> = CURRENCIES
                .iter()
                .zip(PER_USD)
                .map(|(c, r)| format!("WHEN '{c}' THEN amount / {r}"))
                .collect();
            vec![
                d(
                    "risk_level",
                    "CASE WHEN risk_score < 0.3 THEN 'low' WHEN risk_score < 0.7 THEN 'medium' ELSE 'high' END".into(),
                ),
                d("amount_usd", format!("round(CASE currency {} END, 2)", arms.join(" "))),
            ]
        }
        _ => Vec::new(),
    }
}
