//! Stream `financial_transactions`: card and bank transactions; risk scores are mostly low and
//! fraud (about 0.5 %) concentrates on high-risk transactions.

use super::stream::{Ctx, Field, Kind, Record, StreamSpec};

/// Transaction types.
pub const TRANSACTION_TYPES: &[&str] = &[
    "purchase",
    "transfer",
    "withdrawal",
    "deposit",
    "refund",
    "payment",
];
/// Currencies.
pub const CURRENCIES: &[&str] = &["USD", "EUR", "GBP", "JPY", "CAD", "AUD"];
/// Units of each currency per US dollar, for generation (same order as [`CURRENCIES`]).
pub const PER_USD: &[f64] = &[1.0, 0.92, 0.79, 150.0, 1.36, 1.52];
/// Payment methods.
pub const PAYMENT_METHODS: &[&str] = &[
    "credit_card",
    "debit_card",
    "bank_transfer",
    "digital_wallet",
];
/// Transaction statuses; about 3 % declined.
pub const STATUSES: &[&str] = &["approved", "declined", "pending", "reversed"];
/// Merchant categories.
pub const MERCHANT_CATEGORIES: &[&str] = &[
    "grocery",
    "restaurants",
    "travel",
    "electronics",
    "utilities",
    "entertainment",
    "healthcare",
    "fuel",
];
/// Authentication methods.
pub const AUTH_METHODS: &[&str] = &["pin", "otp", "biometric", "password"];

/// The stream's schema and generator.
pub static SPEC: StreamSpec = StreamSpec {
    name: "financial_transactions",
    id_field: "transaction_id",
    per_run: 300,
    fields: &[
        Field::new("account_id", Kind::Str),
        Field::new("customer_id", Kind::Str),
        Field::new("transaction_type", Kind::Enum(TRANSACTION_TYPES)),
        Field::new(
            "amount",
            Kind::Float {
                min: 0.01,
                max: 10_000_000.0,
            },
        ),
        Field::new("currency", Kind::Enum(CURRENCIES)),
        Field::new("payment_method", Kind::Enum(PAYMENT_METHODS)),
        Field::new("merchant_id", Kind::Str),
        Field::new("merchant_category", Kind::Enum(MERCHANT_CATEGORIES)),
        Field::new("status", Kind::Enum(STATUSES)),
        Field::new("is_international", Kind::Bool),
        Field::new("risk_score", Kind::Float { min: 0.0, max: 1.0 }),
        Field::new("fraud_flag", Kind::Bool),
        Field::new(
            "processing_time_ms",
            Kind::Float {
                min: 1.0,
                max: 30_000.0,
            },
        ),
        Field::new("ip_address", Kind::Str).distinct(),
        Field::new("auth_method", Kind::Enum(AUTH_METHODS)),
    ],
    generate: Some(generate),
    event_time_field: "event_time",
    title: "Financial",
    derived: &[],
    rules: &[],
};

fn generate(ctx: &mut Ctx<'_>, n: usize) {
    for _ in 0..n {
        let customer = ctx.pool("CUST", 10_000, 6);
        let account = format!("ACC-{:06}", 1 + ctx.trait_of(&customer, "account", 15_000));
        let merchant = ctx.pool_skewed("MER", 1_000, 5);
        let category = MERCHANT_CATEGORIES
            [ctx.trait_of(&merchant, "category", MERCHANT_CATEGORIES.len() as u64) as usize];
        let c = ctx.weighted(&[0usize, 1, 2, 3, 4, 5], &[60.0, 15.0, 10.0, 5.0, 5.0, 5.0]);
        let usd = ctx.lognormal(45.0, 1.3, 0.5, 50_000.0, 2);
        let amount = super::round_to((usd * PER_USD[c]).max(0.01), 2);
        // Risk: log-normal around 0.13; about 0.3 % of transactions score 0.9 or more.
        let risk = ctx.lognormal(0.135, 0.7, 0.0, 1.0, 4);
        let fraud = ctx.chance(if risk >= 0.7 { 0.3 } else { 0.002 });
        let status = if fraud && ctx.chance(0.5) {
            "declined"
        } else {
            ctx.weighted(STATUSES, &[94.5, 2.5, 2.0, 1.0])
        };
        let international = ctx.chance(0.08);
        let transaction_type =
            ctx.weighted(TRANSACTION_TYPES, &[50.0, 15.0, 10.0, 10.0, 5.0, 10.0]);
        let payment_method = ctx.weighted(PAYMENT_METHODS, &[40.0, 30.0, 15.0, 15.0]);
        let processing_ms = ctx.lognormal(120.0, 0.6, 1.0, 30_000.0, 1);
        let ip = ctx.ipv4();
        let auth = ctx.weighted(AUTH_METHODS, &[30.0, 30.0, 25.0, 15.0]);
        ctx.push(
            Record::new()
                .set("account_id", account)
                .set("customer_id", customer)
                .set("transaction_type", transaction_type)
                .set("amount", amount)
                .set("currency", CURRENCIES[c])
                .set("payment_method", payment_method)
                .set("merchant_id", merchant)
                .set("merchant_category", category)
                .set("status", status)
                .set("is_international", international)
                .set("risk_score", risk)
                .set("fraud_flag", fraud)
                .set("processing_time_ms", processing_ms)
                .set("ip_address", ip)
                .set("auth_method", auth),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;
    use crate::sources::generate_interval;

    #[test]
    fn fraud_and_alerts_are_rare_and_correlated_with_risk() {
        let start = parse_utc("2026-02-01T00:00:00Z").unwrap();
        let g = generate_interval(
            &SPEC,
            42,
            start,
            start + chrono::Duration::hours(24),
            1.0,
            0.0,
        );
        let rows: Vec<serde_json::Value> = g
            .events
            .iter()
            .map(|e| serde_json::from_str(&e.line).unwrap())
            .collect();
        let n = rows.len() as f64;
        let fraud = rows.iter().filter(|r| r["fraud_flag"] == true).count() as f64;
        let alerting = rows
            .iter()
            .filter(|r| r["fraud_flag"] == true || r["risk_score"].as_f64().unwrap() >= 0.9)
            .count() as f64;
        let declined = rows.iter().filter(|r| r["status"] == "declined").count() as f64;
        assert!(
            (0.002..=0.01).contains(&(fraud / n)),
            "fraud rate {}",
            fraud / n
        );
        assert!(alerting / n < 0.01, "alert rate {}", alerting / n);
        assert!(
            (0.02..=0.045).contains(&(declined / n)),
            "declined {}",
            declined / n
        );
        let high_risk_fraud = rows
            .iter()
            .filter(|r| r["fraud_flag"] == true && r["risk_score"].as_f64().unwrap() >= 0.7)
            .count() as f64;
        assert!(
            high_risk_fraud / fraud > 0.3,
            "fraud not correlated with risk"
        );
    }
}
