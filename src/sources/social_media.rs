//! Stream `social_media`: views, likes, comments, shares, follows and posts on five platforms;
//! a few posts draw most of the engagement, so trending means something.

use super::stream::{Ctx, Field, Kind, Record, StreamSpec};

/// Event types.
pub const EVENT_TYPES: &[&str] = &["view", "like", "comment", "share", "follow", "post"];
/// Platforms.
pub const PLATFORMS: &[&str] = &["twitter", "instagram", "facebook", "tiktok", "linkedin"];
/// Content types.
pub const CONTENT_TYPES: &[&str] = &["text", "image", "video", "link"];
/// Device types.
pub const DEVICE_TYPES: &[&str] = &["mobile", "desktop", "tablet"];
/// Hashtags a post may carry.
pub const HASHTAGS: &[&str] = &[
    "#data", "#ai", "#cloud", "#travel", "#food", "#music", "#sports", "#news", "#tech", "#art",
    "#fitness", "#gaming",
];
/// Countries (ISO 3166 alpha-2). `NA` is Namibia: a value, never a null.
pub const COUNTRIES: &[&str] = &[
    "US", "GB", "DE", "FR", "IN", "BR", "JP", "CA", "AU", "NA", "NG", "MX",
];
const EVENT_WEIGHTS: &[f64] = &[60.0, 20.0, 6.0, 4.0, 3.0, 7.0];
/// Engagement score range of each event type (same order as [`EVENT_TYPES`]).
const ENGAGEMENT: &[(f64, f64)] = &[
    (1.0, 30.0),
    (20.0, 55.0),
    (40.0, 85.0),
    (60.0, 100.0),
    (10.0, 40.0),
    (30.0, 90.0),
];

/// The stream's schema and generator.
pub static SPEC: StreamSpec = StreamSpec {
    name: "social_media",
    id_field: "event_id",
    per_run: 500,
    fields: &[
        Field::new("user_id", Kind::Str),
        Field::new("post_id", Kind::Str),
        Field::new("event_type", Kind::Enum(EVENT_TYPES)),
        Field::new("platform", Kind::Enum(PLATFORMS)),
        Field::new("content_type", Kind::Enum(CONTENT_TYPES)),
        Field::new(
            "engagement_score",
            Kind::Float {
                min: 0.0,
                max: 100.0,
            },
        ),
        Field::new("hashtags", Kind::Tags(HASHTAGS)),
        Field::new("is_verified", Kind::Bool),
        Field::new("device_type", Kind::Enum(DEVICE_TYPES)),
        Field::new("location_country", Kind::Enum(COUNTRIES)),
    ],
    generate: Some(generate),
    event_time_field: "event_time",
    title: "Social Media",
    derived: &[],
    rules: &[],
};

fn generate(ctx: &mut Ctx<'_>, n: usize) {
    for _ in 0..n {
        let user = ctx.pool("USR", 20_000, 6);
        let post = ctx.pool_skewed("POST", 5_000, 6);
        let e = ctx.weighted(&[0usize, 1, 2, 3, 4, 5], EVENT_WEIGHTS);
        let (lo, hi) = ENGAGEMENT[e];
        let score = ctx.uniform(lo, hi, 2);
        // A post's platform, content type and hashtags are properties of the post.
        let platform = PLATFORMS[ctx.trait_of(&post, "platform", PLATFORMS.len() as u64) as usize];
        let content =
            CONTENT_TYPES[ctx.trait_of(&post, "content", CONTENT_TYPES.len() as u64) as usize];
        let tag_count = ctx.trait_of(&post, "tags", 5) as usize;
        let tags: Vec<&str> = (0..tag_count)
            .map(|i| {
                HASHTAGS[ctx.trait_of(&post, &format!("tag{i}"), HASHTAGS.len() as u64) as usize]
            })
            .fold(Vec::new(), |mut v, t| {
                if !v.contains(&t) {
                    v.push(t);
                }
                v
            });
        let verified = ctx.trait_of(&user, "verified", 100) < 5;
        let country = COUNTRIES[ctx.trait_of(&user, "country", COUNTRIES.len() as u64) as usize];
        let device = ctx.weighted(DEVICE_TYPES, &[70.0, 22.0, 8.0]);
        ctx.push(
            Record::new()
                .set("user_id", user)
                .set("post_id", post)
                .set("event_type", EVENT_TYPES[e])
                .set("platform", platform)
                .set("content_type", content)
                .set("engagement_score", score)
                .set("hashtags", tags)
                .set("is_verified", verified)
                .set("device_type", device)
                .set("location_country", country),
        );
    }
}
