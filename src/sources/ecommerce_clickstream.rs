//! Stream `ecommerce_clickstream`: shopping sessions that move down the funnel (page view →
//! product view → cart → checkout); about 3–4 % of sessions convert.

use super::stream::{Ctx, Field, Kind, Record, StreamSpec};

/// Event types, in funnel order.
pub const EVENT_TYPES: &[&str] = &[
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "checkout_start",
    "checkout_complete",
];
/// Product categories.
pub const CATEGORIES: &[&str] = &[
    "electronics",
    "clothing",
    "home",
    "books",
    "sports",
    "beauty",
    "toys",
    "grocery",
];
/// Device types.
pub const DEVICE_TYPES: &[&str] = &["mobile", "desktop", "tablet"];
/// Browsers.
pub const BROWSERS: &[&str] = &["chrome", "safari", "firefox", "edge"];
/// Operating systems.
pub const OSES: &[&str] = &["android", "ios", "windows", "macos", "linux"];
/// Traffic sources.
pub const TRAFFIC_SOURCES: &[&str] = &["organic", "paid", "social", "email", "direct", "referral"];
const PAGES: &[&str] = &[
    "/",
    "/home",
    "/deals",
    "/search",
    "/category",
    "/account",
    "/help",
];
const PLACES: &[(&str, &str)] = &[
    ("US", "New York"),
    ("US", "San Francisco"),
    ("GB", "London"),
    ("DE", "Berlin"),
    ("FR", "Paris"),
    ("IN", "Mumbai"),
    ("BR", "Sao Paulo"),
    ("CA", "Toronto"),
    ("AU", "Sydney"),
    ("JP", "Tokyo"),
];
const PRODUCTS: u32 = 2_000;

/// The stream's schema and generator.
pub static SPEC: StreamSpec = StreamSpec {
    name: "ecommerce_clickstream",
    id_field: "event_id",
    per_run: 800,
    fields: &[
        Field::new("session_id", Kind::Str),
        Field::new("user_id", Kind::Str),
        Field::new("event_type", Kind::Enum(EVENT_TYPES)),
        Field::new("page_url", Kind::Str),
        Field::nullable("product_id", Kind::Str),
        Field::nullable("product_category", Kind::Enum(CATEGORIES)),
        Field::nullable(
            "price",
            Kind::Float {
                min: 0.99,
                max: 999.99,
            },
        ),
        Field::nullable("quantity", Kind::Int { min: 1, max: 5 }),
        Field::new("device_type", Kind::Enum(DEVICE_TYPES)),
        Field::new("browser", Kind::Enum(BROWSERS)),
        Field::new("os", Kind::Enum(OSES)),
        Field::new("traffic_source", Kind::Enum(TRAFFIC_SOURCES)),
        Field::new("is_new_user", Kind::Bool),
        Field::new(
            "session_duration_sec",
            Kind::Int {
                min: 0,
                max: 86_400,
            },
        ),
        Field::new("country", Kind::Str),
        Field::new("city", Kind::Str),
    ],
    generate: Some(generate),
    event_time_field: "event_time",
    title: "E-Commerce",
    derived: &[],
    rules: &[],
};

/// Visitor attributes shared by all events of a session.
struct Session {
    id: String,
    user: String,
    device: &'static str,
    browser: &'static str,
    os: &'static str,
    source: &'static str,
    new_user: bool,
    place: (&'static str, &'static str),
    start_ms: i64,
}

struct Product {
    id: String,
    category: &'static str,
    price: f64,
}

fn product(ctx: &mut Ctx<'_>) -> Product {
    let id = ctx.pool_skewed("PROD", PRODUCTS, 5);
    let category = CATEGORIES[ctx.trait_of(&id, "category", CATEGORIES.len() as u64) as usize];
    // A product's price is fixed: log-normal around 40 from its hash, within 0.99–999.99.
    let cents = ctx.trait_of(&id, "price", 1_000_000) as f64 / 1_000_000.0;
    let price = (0.99 * (999.99f64 / 0.99).powf(cents.powf(1.6))).clamp(0.99, 999.99);
    Product {
        id,
        category,
        price: super::round_to(price, 2),
    }
}

fn emit(
    ctx: &mut Ctx<'_>,
    s: &Session,
    at_ms: i64,
    event: &str,
    page: String,
    p: Option<(&Product, i64)>,
) {
    let mut r = Record::at(at_ms)
        .set("session_id", s.id.clone())
        .set("user_id", s.user.clone())
        .set("event_type", event)
        .set("page_url", page)
        .set("device_type", s.device)
        .set("browser", s.browser)
        .set("os", s.os)
        .set("traffic_source", s.source)
        .set("is_new_user", s.new_user)
        .set("session_duration_sec", (at_ms - s.start_ms) / 1000)
        .set("country", s.place.0)
        .set("city", s.place.1);
    if let Some((p, qty)) = p {
        r = r
            .set("product_id", p.id.clone())
            .set("product_category", p.category)
            .set("price", p.price)
            .set("quantity", qty);
    }
    ctx.push(r);
}

fn generate(ctx: &mut Ctx<'_>, n: usize) {
    let mut emitted = 0;
    while emitted < n {
        let start_ms = ctx.int(0, (ctx.interval_ms - 90_000).max(1));
        let user = ctx.pool("USR", 20_000, 6);
        let place = PLACES[ctx.trait_of(&user, "place", PLACES.len() as u64) as usize];
        let s = Session {
            id: format!("SES-{}", &ctx.uuid()[..13]),
            new_user: ctx.trait_of(&user, "new", 100) < 20,
            user,
            device: ctx.weighted(DEVICE_TYPES, &[60.0, 32.0, 8.0]),
            browser: ctx.weighted(BROWSERS, &[60.0, 25.0, 8.0, 7.0]),
            os: ctx.pick(OSES),
            source: ctx.weighted(TRAFFIC_SOURCES, &[35.0, 20.0, 15.0, 10.0, 15.0, 5.0]),
            place,
            start_ms,
        };
        let mut t = start_ms;
        let step = |ctx: &mut Ctx<'_>, t: &mut i64| {
            *t += ctx.int(2_000, 15_000);
            *t
        };
        for _ in 0..ctx.int(1, 3) {
            let page = ctx.pick(PAGES).to_string();
            emit(ctx, &s, t, "page_view", page, None);
            emitted += 1;
            step(ctx, &mut t);
        }
        if !ctx.chance(0.6) {
            continue;
        }
        let mut viewed = product(ctx);
        for _ in 0..ctx.int(1, 3) {
            viewed = product(ctx);
            let page = format!("/product/{}", viewed.id);
            let at = step(ctx, &mut t);
            emit(ctx, &s, at, "product_view", page, Some((&viewed, 1)));
            emitted += 1;
        }
        if !ctx.chance(0.25) {
            continue;
        }
        let qty = ctx.int(1, 5);
        let at = step(ctx, &mut t);
        emit(
            ctx,
            &s,
            at,
            "add_to_cart",
            "/cart".into(),
            Some((&viewed, qty)),
        );
        emitted += 1;
        if ctx.chance(0.15) {
            let at = step(ctx, &mut t);
            emit(
                ctx,
                &s,
                at,
                "remove_from_cart",
                "/cart".into(),
                Some((&viewed, qty)),
            );
            emitted += 1;
            continue;
        }
        if !ctx.chance(0.4) {
            continue;
        }
        let at = step(ctx, &mut t);
        emit(
            ctx,
            &s,
            at,
            "checkout_start",
            "/checkout".into(),
            Some((&viewed, qty)),
        );
        emitted += 1;
        if ctx.chance(0.65) {
            let at = step(ctx, &mut t);
            emit(
                ctx,
                &s,
                at,
                "checkout_complete",
                "/checkout/complete".into(),
                Some((&viewed, qty)),
            );
            emitted += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;
    use crate::sources::generate_interval;

    #[test]
    fn sessions_move_down_the_funnel_and_a_few_convert() {
        let start = parse_utc("2026-02-01T12:00:00Z").unwrap();
        let end = start + chrono::Duration::hours(2);
        let g = generate_interval(&SPEC, 42, start, end, 1.0, 0.0);
        let mut sessions = std::collections::HashMap::<String, Vec<String>>::new();
        for e in &g.events {
            let v: serde_json::Value = serde_json::from_str(&e.line).unwrap();
            sessions
                .entry(v["session_id"].as_str().unwrap().to_string())
                .or_default()
                .push(v["event_type"].as_str().unwrap().to_string());
        }
        let converted = sessions
            .values()
            .filter(|ev| ev.iter().any(|e| e == "checkout_complete"))
            .count();
        let rate = converted as f64 / sessions.len() as f64;
        assert!((0.02..=0.045).contains(&rate), "conversion {rate}");
        for ev in sessions.values() {
            assert_eq!(ev[0], "page_view");
            if let Some(i) = ev.iter().position(|e| e == "checkout_complete") {
                assert_eq!(ev[i - 1], "checkout_start");
            }
        }
    }
}
