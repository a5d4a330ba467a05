//! A pipeline declared as data: a user's `orders` stream (five fields, two expectations, a
//! derived column, one fact, one dashboard, one alert) posted with curl flows to bronze,
//! silver, quarantine, its fact, its dashboard and its alert, and is queryable; it has no
//! synthetic ingest DAG; the catalog writes its DDL. `pipeline check` reports mistakes with
//! their lines. (The built-in declaration, printed by `pipeline show` and read back, gives the
//! simulated day's lake of before: `scheduler.rs`.)

use chrono::{DateTime, Duration, DurationRound as _, Utc};

use crate::ingest::{NDJSON, post};
use crate::util::{TestCommand, query_rows, rfc, run_dag_at, serving};

/// The README's example: a user's order events.
pub const ORDERS: &str = r#"
[[stream]]
name = "orders"
title = "Orders"
id_field = "order_id"
event_time_field = "ordered_at"

[[stream.field]]
name = "customer_id"
type = "string"

[[stream.field]]
name = "amount"
type = "float"
min = 0.0
max = 100000.0

[[stream.field]]
name = "currency"
type = "string"
values = ["EUR", "USD", "GBP"]

[[stream.field]]
name = "items"
type = "int"
min = 1
max = 1000

[[stream.field]]
name = "coupon"
type = "string"
nullable = true

[[stream.expect]]
name = "amount_positive"
sql = "amount > 0"
action = "drop"

[[stream.expect]]
name = "plausible_basket"
sql = "amount / items < 5000"
action = "warn"

[[stream.derived]]
name = "size"
sql = "CASE WHEN amount >= 1000 THEN 'large' WHEN amount >= 100 THEN 'medium' ELSE 'small' END"

[[fact]]
name = "fact_orders_daily"
stream = "orders"
sql = """
SELECT date, currency, count(*) AS orders, sum(items) AS items,
       round(sum(amount), 2) AS revenue, count(DISTINCT customer_id) AS customers,
       sum(CASE WHEN coupon IS NOT NULL THEN 1 ELSE 0 END) AS with_coupon
FROM silver GROUP BY date, currency"""

[[dashboard]]
name = "orders_last_hour"
stream = "orders"
window_minutes = 60
sql = """
SELECT currency, count(*) AS orders, round(sum(amount), 2) AS revenue
FROM w GROUP BY currency ORDER BY currency"""

[[alert]]
name = "large_order"
stream = "orders"
window_minutes = 10
threshold = 1000.0
severity = "high"
id = "{rule}:{subject}"
sql = """
SELECT order_id AS subject, amount AS value, make_array(order_id) AS triggering_ids,
       concat('order of ', CAST(amount AS VARCHAR), ' ', currency, ' by ', customer_id) AS detail
FROM w WHERE amount >= 1000"""
"#;

/// GET `url` with curl: the body.
fn curl(url: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sS", url])
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn order(n: u32, t: DateTime<Utc>, customer: &str, amount: f64, currency: &str) -> String {
    serde_json::json!({
        "order_id": format!("ord-{n:05}"),
        "ordered_at": rfc(t),
        "customer_id": customer,
        "amount": amount,
        "currency": currency,
        "items": 1 + n % 3,
        "coupon": if n.is_multiple_of(4) { serde_json::Value::from("WELCOME") } else { serde_json::Value::Null },
    })
    .to_string()
}

#[test]
fn a_declared_stream_flows_from_curl_to_every_layer_and_is_queryable() {
    let t = TestCommand::new();
    let file = t.path().join("pipeline.toml");
    std::fs::write(&file, ORDERS).unwrap();
    let t = t.env("LAKEPIPE_PIPELINE", file.to_str().unwrap());
    t.run(&["pipeline", "check", file.to_str().unwrap()])
        .assert_exit_code(0);

    // The DAGs follow the declaration: no synthetic ingest DAG for a stream without a
    // generator; the batch and serving DAGs have the stream's and the fact's tasks.
    let dags = t.run(&["--json", "dags", "list"]);
    dags.assert_exit_code(0);
    let text = dags.stdout();
    assert!(!text.contains("realtime_ingest"), "{text}");
    let show = t.run(&["--json", "dags", "show", "3-batch_etl_all_streams"]);
    show.assert_exit_code(0);
    for task in ["bronze_orders", "silver_orders", "gold_fact_orders_daily"] {
        assert!(show.stdout().contains(task), "{task}: {}", show.stdout());
    }
    assert!(!show.stdout().contains("api_logs"), "{}", show.stdout());

    let now = Utc::now();
    let serving_at = (now + Duration::minutes(12))
        .duration_trunc(Duration::minutes(10))
        .unwrap();
    let batch_at = (now + Duration::days(1))
        .duration_trunc(Duration::days(1))
        .unwrap()
        + Duration::hours(2);
    // Inside the alert's 10-minute window before the serving run.
    let at = |s: i64| serving_at - Duration::minutes(5) + Duration::seconds(s);
    let mut lines = Vec::new();
    for n in 0..40u32 {
        let currency = ["EUR", "USD", "GBP"][n as usize % 3];
        lines.push(order(
            n,
            at(n as i64),
            &format!("cust-{}", n % 7),
            20.0 + n as f64,
            currency,
        ));
    }
    lines.push(order(100, at(50), "cust-big", 2500.0, "EUR")); // alerts; medium → large
    lines.push(order(101, at(51), "cust-1", 0.0, "EUR")); // amount_positive: quarantined
    lines.push(order(102, at(52), "cust-1", 15.0, "JPY")); // currency_valid: quarantined
    lines.push(order(103, at(53), "cust-2", 30.0, "usd ").replace("usd ", " usd ")); // noise: kept as USD
    lines.push(r#"{"ordered_at":"2026-02-01T10:00:00Z","amount":3}"#.to_string()); // id_present
    lines.push("[1, 2]".to_string()); // not an object: answered as an error, not landed
    let body = t.path().join("orders.ndjson");
    std::fs::write(&body, lines.join("\n") + "\n").unwrap();

    let (server, base) = serving(
        &t,
        &[
            "--lake",
            "lake",
            "serve",
            "--no-scheduler",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let reply = post(&format!("{base}/ingest/orders"), &body, &[NDJSON]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let answer = reply.json();
    assert_eq!(answer["accepted"], 45, "{answer}");
    assert_eq!(answer["rejected"], 1, "{answer}");
    // An undeclared stream is unknown.
    let reply = post(&format!("{base}/ingest/api_logs"), &body, &[NDJSON]);
    assert_eq!(reply.status, 404, "{reply:?}");
    let metrics = curl(&format!("{base}/metrics"));
    assert!(
        metrics
            .contains("lakepipe_ingest_records_total{stream=\"orders\",outcome=\"accepted\"} 45"),
        "{metrics}"
    );
    drop(server);
    // Partitioned by the declared event-time key.
    let hour = at(0).format("date=%Y-%m-%d/hour=%H").to_string();
    assert!(
        crate::util::files_under(&t.lake().join("realtime/orders"))
            .iter()
            .any(|f| f.starts_with(&hour)),
        "{hour}"
    );

    for (dag, at) in [
        ("4-serving_layer_merge", serving_at),
        ("3-batch_etl_all_streams", batch_at),
    ] {
        run_dag_at(&t, "lake", dag, at);
    }
    let q = |sql: &str| query_rows(&t, "lake", sql);

    assert_eq!(q("SELECT count(*) AS n FROM bronze_orders")[0]["n"], 45);
    let silver = q("SELECT order_id, currency, size, coupon FROM silver_orders ORDER BY order_id");
    assert_eq!(silver.len(), 42, "{silver:?}");
    let big = silver
        .iter()
        .find(|r| r["order_id"] == "ord-00100")
        .unwrap();
    assert_eq!(big["size"], "large");
    let noisy = silver
        .iter()
        .find(|r| r["order_id"] == "ord-00103")
        .unwrap();
    assert_eq!(noisy["currency"], "USD");
    assert_eq!(silver[0]["coupon"], "WELCOME");
    let quarantine = q("SELECT rule, value FROM quarantine_orders ORDER BY rule");
    let rules: Vec<&str> = quarantine
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["amount_positive", "currency_valid", "id_present"]);
    assert_eq!(quarantine[0]["value"], "amount=0.0");

    let fact = q(
        "SELECT currency, orders, revenue, with_coupon FROM gold_fact_orders_daily ORDER BY currency",
    );
    let total: u64 = fact.iter().map(|r| r["orders"].as_u64().unwrap()).sum();
    assert_eq!(total, 42, "{fact:?}");

    let dash =
        q("SELECT currency, orders FROM serving_dashboards_orders_last_hour ORDER BY currency");
    assert_eq!(dash.len(), 3, "{dash:?}");
    assert_eq!(
        dash.iter()
            .map(|r| r["orders"].as_u64().unwrap())
            .sum::<u64>(),
        42
    );
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(t.lake().join("serving/dashboards/orders_last_hour.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(doc["stream"], "orders", "{doc}");

    let alerts =
        q("SELECT alert_id, rule, severity, stream, subject, value FROM serving_alerts_history");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["alert_id"], "large_order:ord-00100");
    assert_eq!(alerts[0]["severity"], "high");
    assert_eq!(alerts[0]["stream"], "orders");
    let summary = q("SELECT domain, total_records FROM serving_analytics_master_summary");
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert_eq!(summary[0]["domain"], "Orders");

    // The UI charts the declared dashboard and lists the alert.
    let (ui, base) = serving(&t, &["--lake", "lake", "ui", "--listen", "127.0.0.1:0"]);
    let page = curl(&format!("{base}/dashboards"));
    assert!(
        page.contains("data-dashboard=\"orders_last_hour\""),
        "{page}"
    );
    assert!(page.contains("data-label=\"EUR\""), "{page}");
    let page = curl(&format!("{base}/alerts"));
    assert!(page.contains("data-rule=\"large_order\""), "{page}");
    assert!(page.contains("<td>ord-00100</td>"), "{page}");
    drop(ui);

    // The Airflow export runs the declared pipeline's tasks with the declaration.
    let out = t.path().join("airflow");
    t.run(&[
        "--lake",
        "lake",
        "airflow",
        "export",
        "--out",
        out.to_str().unwrap(),
    ])
    .assert_exit_code(0);
    let batch = std::fs::read_to_string(out.join("lakepipe_3_batch_etl_all_streams.py")).unwrap();
    assert!(batch.contains(r#"tasks["silver_orders"] >> tasks["gold_fact_orders_daily"]"#));
    assert!(batch.contains(&format!("\"LAKEPIPE_PIPELINE\", \"{}\"", file.display())));
    assert!(
        !crate::util::files_under(&out)
            .iter()
            .any(|f| f.contains("realtime_ingest"))
    );

    // The catalog writes the stream's DDL.
    t.run(&["--lake", "lake", "catalog", "refresh"])
        .assert_exit_code(0);
    let ddl = crate::util::files_under(&t.lake().join("metadata/athena"));
    assert!(
        ddl.iter().any(|f| f.contains("orders")),
        "no DDL for orders: {ddl:?}"
    );
}

/// The `orders` declaration with mistakes of one kind, each on a known line: of shape and
/// names, in the stream's SQL, or in the SQL of its fact, dashboard and alert (a stream whose
/// fields or derived columns are broken has the SQL built on them checked once they are fixed).
fn broken_orders(kind: &str) -> (String, Vec<(usize, &'static str)>) {
    let mut text = ORDERS.to_string();
    let mut edit = |from: &str, to: &str| {
        assert!(text.contains(from), "{from}");
        text = text.replace(from, to);
    };
    match kind {
        "shape" => {
            edit("GBP\"]", "GBP\"]\ncolour = \"red\"");
            edit(
                "name = \"items\"\ntype = \"int\"",
                "name = \"items\"\ntype = 3",
            );
            edit("name = \"coupon\"", "name = \"customer_id\"");
            edit(
                "stream = \"orders\"\nsql = \"\"\"\nSELECT date",
                "stream = \"shipments\"\nsql = \"\"\"\nSELECT date",
            );
            edit(
                "id = \"{rule}:{subject}\"",
                "id = \"{rule}:{subject}:{when}\"",
            );
            text.push_str("\n[[dashboard]]\nname = \"orders_last_hour\"\nstream = \"orders\"\nwindow_minutes = 5\nsql = \"SELECT count(*) AS n FROM w\"\n");
        }
        "rules" => {
            edit("amount / items < 5000", "amount / itemz < 5000");
            edit("sql = \"amount > 0\"", "sql = \"amount + 1\"");
            edit("CASE WHEN amount >= 1000 THEN", "CASE WHEN amount >= THEN");
        }
        _ => {
            edit(
                "AS revenue, count(DISTINCT customer_id)",
                "AS revenue, count(DISTINCT shop_id)",
            );
            edit("ORDER BY currency\"\"\"", "ORDER BY currency LIMIT\"\"\"");
            edit("SELECT order_id AS subject, amount", "SELECT amount");
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    let first = |needle: &str| lines.iter().position(|l| l.contains(needle)).unwrap() + 1;
    let last = |needle: &str| lines.iter().rposition(|l| l.contains(needle)).unwrap() + 1;
    let want = match kind {
        "shape" => vec![
            (first("colour = "), "stream[orders].field[currency].colour"),
            (first("type = 3"), "stream[orders].field[items].type"),
            (
                last("name = \"customer_id\""),
                "stream[orders].field[customer_id].name",
            ),
            (
                first("stream = \"shipments\""),
                "fact[fact_orders_daily].stream",
            ),
            (first("{when}"), "alert[large_order].id"),
            (
                last("name = \"orders_last_hour\""),
                "dashboard[orders_last_hour].name",
            ),
        ],
        "rules" => vec![
            (
                first("itemz"),
                "stream[orders].expect[plausible_basket].sql",
            ),
            (
                first("amount + 1"),
                "stream[orders].expect[amount_positive].sql",
            ),
            (first("amount >= THEN"), "stream[orders].derived[size].sql"),
        ],
        _ => vec![
            (
                first("name = \"fact_orders_daily\"") + 2,
                "fact[fact_orders_daily].sql",
            ),
            (
                first("name = \"orders_last_hour\"") + 3,
                "dashboard[orders_last_hour].sql",
            ),
            (
                first("name = \"large_order\"") + 6,
                "alert[large_order].sql",
            ),
        ],
    };
    drop(lines);
    (text, want)
}

#[test]
fn pipeline_check_reports_each_mistake_on_its_line_and_commands_refuse_the_file() {
    let t = TestCommand::new();
    let file = t.path().join("broken.toml");
    for kind in ["shape", "rules", "queries"] {
        let (text, want) = broken_orders(kind);
        std::fs::write(&file, &text).unwrap();
        let r = t.run(&["pipeline", "check", file.to_str().unwrap()]);
        r.assert_exit_code(1);
        let err = r.stderr();
        for (line, key) in &want {
            let prefix = format!("{}:{line}: {key}: ", file.display());
            assert!(
                err.lines().any(|l| l.starts_with(&prefix)),
                "no `{prefix}` in:\n{err}"
            );
        }
        assert!(err.contains(&format!("{} mistake(s)", want.len())), "{err}");
    }
    // A command running the pipeline refuses the file the same way, before any work.
    let r = t.run(&[
        "--pipeline",
        file.to_str().unwrap(),
        "--lake",
        "lake",
        "dags",
        "list",
    ]);
    r.assert_exit_code(1);
    assert!(
        r.stderr().contains(&format!("{}:", file.display())),
        "{}",
        r.stderr()
    );
    assert!(!t.lake().exists(), "nothing written");

    // `pipeline show` of a declared file prints it back; the built-in one checks clean.
    let good = t.path().join("orders.toml");
    std::fs::write(&good, ORDERS).unwrap();
    let shown = t.run(&["--pipeline", good.to_str().unwrap(), "pipeline", "show"]);
    shown.assert_exit_code(0);
    assert!(shown.stdout().contains("name = \"orders\""));
    let again = t.path().join("again.toml");
    std::fs::write(&again, shown.stdout()).unwrap();
    t.run(&["pipeline", "check", again.to_str().unwrap()])
        .assert_exit_code(0);
    let builtin = t.run(&["pipeline", "show"]);
    std::fs::write(&again, builtin.stdout()).unwrap();
    t.run(&["pipeline", "check", again.to_str().unwrap()])
        .assert_exit_code(0);
}

#[test]
fn a_declared_stream_takes_inbox_objects_by_its_event_time_key_and_has_no_generator() {
    let t = TestCommand::new();
    // `pipeline =` in a config file, relative to that file.
    let conf = t.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("pipeline.toml"), ORDERS).unwrap();
    let inbox = t.path().join("inbox");
    std::fs::write(
        conf.join("lakepipe.toml"),
        format!(
            "lake = \"{}\"\npipeline = \"pipeline.toml\"\n\n[[inbox]]\nstream = \"orders\"\nurl = \"{}\"\n",
            t.lake().display(),
            inbox.display()
        ),
    )
    .unwrap();
    let config = conf.join("lakepipe.toml");
    let config = config.to_str().unwrap();
    let at = Utc::now() - Duration::hours(2);
    let lines: Vec<String> = (0..3)
        .map(|n| order(n, at + Duration::seconds(n as i64), "c", 10.0, "EUR"))
        .collect();
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("part-0001.ndjson"), lines.join("\n") + "\n").unwrap();

    let r = t.run(&["--config", config, "--json", "inbox", "pickup"]);
    r.assert_exit_code(0);
    assert_eq!(r.json()["inboxes"][0]["records"], 3, "{}", r.stdout());
    let dir = t
        .lake()
        .join("realtime/orders")
        .join(at.format("date=%Y-%m-%d/hour=%H").to_string());
    let landed: String = crate::util::files_under(&dir)
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
        .collect();
    assert_eq!(landed.lines().count(), 3, "{}", dir.display());

    // No generator: no synthetic DAG, and `produce` says why it cannot send orders.
    let r = t.run(&["--config", config, "produce", "orders", "--count", "1"]);
    r.assert_exit_code(1);
    assert!(
        r.stderr().contains("no generator for stream `orders`"),
        "{}",
        r.stderr()
    );
    // Without a fact, the batch run compacts after the stream's silver task.
    let bare = t.path().join("bare.toml");
    std::fs::write(&bare, ORDERS.split("[[stream.expect]]").next().unwrap()).unwrap();
    let show = t.run(&[
        "--pipeline",
        bare.to_str().unwrap(),
        "--json",
        "dags",
        "show",
        "3-batch_etl_all_streams",
    ]);
    show.assert_exit_code(0);
    let edges = show.json()["edges"].clone();
    assert!(
        edges
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["silver_orders", "compact"])),
        "{edges}"
    );
    let shown = t.run(&["--config", config, "pipeline", "show"]);
    assert!(
        shown
            .stdout()
            .contains(&format!("# from {}", conf.join("pipeline.toml").display())),
        "{}",
        shown.stdout()
    );
}

#[test]
fn the_readme_example_declaration_checks_clean() {
    let readme = include_str!("../../README.md");
    let section = &readme[readme
        .find("## Your own events: declaring a pipeline")
        .expect("the README's section")..];
    let start = section.find("```toml\n").expect("its TOML example") + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let t = TestCommand::new();
    let file = t.path().join("pipeline.toml");
    std::fs::write(&file, example).unwrap();
    let r = t.run(&["pipeline", "check", file.to_str().unwrap()]);
    r.assert_exit_code(0);
    assert!(
        r.stdout()
            .contains("1 stream(s), 1 fact(s), 1 dashboard(s), 1 alert rule(s)"),
        "{}",
        r.stdout()
    );
}
