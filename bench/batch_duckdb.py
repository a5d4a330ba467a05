"""The DuckDB peer of bench/batch.sh: bronze -> silver -> gold over the raw speed-layer files
with the same rules lakepipe applies on fault-free data (type, de-duplicate by id keeping the
first landed, derive), writing parquet. Prints its wall time in seconds."""
import sys
import time

import duckdb

raw, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET threads = 2")
STREAMS = {
    "iot_sensors": "reading_id",
    "api_logs": "log_id",
    "social_media": "event_id",
    "ecommerce_clickstream": "event_id",
    "financial_transactions": "transaction_id",
}
DERIVED = {
    "iot_sensors": "battery_level < 20 AS battery_low, false AS is_anomaly",
    "api_logs": "status_code >= 400 AS is_error, status_code >= 500 AS is_server_error, "
                "response_time_ms > 1000 AS is_slow, CAST(status_code // 100 AS VARCHAR) || 'xx' AS response_category",
    "social_media": "CASE WHEN engagement_score < 30 THEN 'low' WHEN engagement_score < 70 THEN 'medium' ELSE 'high' END AS engagement_tier",
    "ecommerce_clickstream": "price * quantity AS cart_value, CASE event_type WHEN 'page_view' THEN 'awareness' "
                             "WHEN 'product_view' THEN 'interest' WHEN 'add_to_cart' THEN 'consideration' "
                             "WHEN 'remove_from_cart' THEN 'consideration' WHEN 'checkout_start' THEN 'intent' "
                             "WHEN 'checkout_complete' THEN 'conversion' END AS funnel_stage",
    "financial_transactions": "CASE WHEN risk_score < 0.3 THEN 'low' WHEN risk_score < 0.7 THEN 'medium' ELSE 'high' END AS risk_level, amount AS amount_usd",
}
GOLD = {
    "fact_iot_daily": ("iot_sensors", """SELECT date, building_id, sensor_type, count(*) total_readings, avg(value) avg_value,
        min(value) min_value, max(value) max_value, avg(battery_level) avg_battery,
        sum(CASE WHEN status='warning' THEN 1 ELSE 0 END) warning_count, count(DISTINCT sensor_id) unique_sensors,
        sum(CASE WHEN status='critical' THEN 1 ELSE 0 END) critical_count, sum(CASE WHEN is_anomaly THEN 1 ELSE 0 END) anomalies
        FROM silver GROUP BY ALL"""),
    "fact_api_hourly": ("api_logs", """SELECT date, hour(event_time) AS hour, endpoint, count(*) total_requests,
        avg(response_time_ms) avg_response_time, quantile_cont(response_time_ms, 0.95) p95_response_time,
        sum(CASE WHEN is_error THEN 1 ELSE 0 END) error_count, 100.0 * avg(CASE WHEN is_error THEN 1 ELSE 0 END) error_rate,
        sum(CASE WHEN is_slow THEN 1 ELSE 0 END) slow_requests, sum(bytes_sent) total_bytes_sent,
        count(DISTINCT api_key_id) unique_api_keys, sum(CASE WHEN is_server_error THEN 1 ELSE 0 END) server_errors,
        sum(bytes_received) total_bytes_received FROM silver GROUP BY ALL"""),
    "fact_social_daily": ("social_media", """SELECT date, platform, event_type, count(*) total_events,
        sum(engagement_score) total_engagement, avg(engagement_score) avg_engagement,
        count(DISTINCT CASE WHEN engagement_tier='high' THEN post_id END) viral_posts, count(DISTINCT user_id) unique_users,
        count(DISTINCT CASE WHEN is_verified THEN user_id END) verified_users,
        100.0 * avg(CASE WHEN device_type='mobile' THEN 1 ELSE 0 END) mobile_percentage FROM silver GROUP BY ALL"""),
    "fact_ecommerce_funnel": ("ecommerce_clickstream", """SELECT *, 100.0 * unique_sessions / max(CASE WHEN funnel_stage='awareness' THEN unique_sessions END) OVER (PARTITION BY date) stage_conversion_rate
        FROM (SELECT date, funnel_stage, count(*) total_events, count(DISTINCT session_id) unique_sessions,
        count(DISTINCT user_id) unique_users, avg(session_duration_sec) avg_session_duration,
        count(DISTINCT CASE WHEN is_new_user THEN user_id END) new_users FROM silver GROUP BY ALL)"""),
    "fact_ecommerce_revenue": ("ecommerce_clickstream", """SELECT date, product_category, count(*) total_orders,
        sum(cart_value) total_revenue, avg(cart_value) avg_order_value, count(DISTINCT user_id) unique_customers,
        sum(quantity) units FROM silver WHERE event_type='checkout_complete' GROUP BY ALL"""),
    "fact_financial_daily": ("financial_transactions", """SELECT date, transaction_type, status, count(*) total_transactions,
        sum(amount) total_volume, avg(amount) avg_amount, avg(risk_score) avg_risk_score,
        sum(CASE WHEN fraud_flag THEN 1 ELSE 0 END) fraud_count, 100.0 * avg(CASE WHEN fraud_flag THEN 1 ELSE 0 END) fraud_rate,
        avg(processing_time_ms) avg_processing_time, count(DISTINCT customer_id) unique_customers,
        sum(amount_usd) total_volume_usd FROM silver GROUP BY ALL"""),
    "fact_fraud_summary": ("financial_transactions", """SELECT date, risk_level, count(*) transaction_count,
        sum(CASE WHEN fraud_flag THEN 1 ELSE 0 END) flagged_count, sum(CASE WHEN status='declined' THEN 1 ELSE 0 END) declined_count,
        sum(amount) total_amount, avg(risk_score) avg_risk_score FROM silver GROUP BY ALL"""),
}

start = time.time()
for s, id_col in STREAMS.items():
    con.execute(f"""COPY (SELECT *, filename AS _source_key,
                          regexp_extract(filename, 'date=([0-9-]+)', 1) AS date
                        FROM read_json('{raw}/{s}/*/*/*.jsonl', format='newline_delimited', filename=true))
                    TO '{out}/bronze_{s}.parquet' (FORMAT parquet)""")
    con.execute(f"""COPY (SELECT *, {DERIVED[s]} FROM read_parquet('{out}/bronze_{s}.parquet')
                        QUALIFY row_number() OVER (PARTITION BY {id_col} ORDER BY _source_key) = 1)
                    TO '{out}/silver_{s}.parquet' (FORMAT parquet)""")
for fact, (s, sql) in GOLD.items():
    con.execute(f"CREATE OR REPLACE VIEW silver AS SELECT * FROM read_parquet('{out}/silver_{s}.parquet')")
    con.execute(f"COPY ({sql}) TO '{out}/{fact}.parquet' (FORMAT parquet)")
print(f"{time.time() - start:.3f}")
