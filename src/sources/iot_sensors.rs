//! Stream `iot_sensors`: building sensors (200 sensors in 10 buildings), one reading each.

use super::stream::{Ctx, Field, Kind, Record, StreamSpec};

/// Sensor types; a sensor's type never changes.
pub const SENSOR_TYPES: &[&str] = &[
    "temperature",
    "humidity",
    "co2",
    "pressure",
    "occupancy",
    "energy",
];
/// Reading status; about 95 % ok.
pub const STATUSES: &[&str] = &["ok", "warning", "critical", "offline"];
/// Unit of each sensor type (same order as [`SENSOR_TYPES`]).
pub const UNITS: &[&str] = &["celsius", "percent", "ppm", "hPa", "count", "kWh"];
/// Valid value range of each sensor type (same order as [`SENSOR_TYPES`]).
pub const VALUE_RANGES: &[(f64, f64)] = &[
    (15.0, 30.0),
    (25.0, 65.0),
    (400.0, 1500.0),
    (990.0, 1030.0),
    (0.0, 80.0),
    (0.0, 50.0),
];
/// Number of sensors in the pool.
pub const SENSORS: u32 = 200;

/// The stream's schema and generator.
pub static SPEC: StreamSpec = StreamSpec {
    name: "iot_sensors",
    id_field: "reading_id",
    per_run: 500,
    fields: &[
        Field::new("sensor_id", Kind::Str),
        Field::new("building_id", Kind::Str),
        Field::new("floor", Kind::Int { min: 1, max: 20 }),
        Field::new("sensor_type", Kind::Enum(SENSOR_TYPES)),
        Field::new(
            "value",
            Kind::Float {
                min: 0.0,
                max: 1500.0,
            },
        ),
        Field::new("unit", Kind::Enum(UNITS)),
        Field::new("status", Kind::Enum(STATUSES)),
        Field::new(
            "battery_level",
            Kind::Float {
                min: 0.0,
                max: 100.0,
            },
        ),
    ],
    generate: Some(generate),
    event_time_field: "event_time",
    title: "IoT Sensors",
    derived: &[],
    rules: &[],
};

fn generate(ctx: &mut Ctx<'_>, n: usize) {
    for _ in 0..n {
        let sensor = ctx.pool("SENS", SENSORS, 4);
        let building = 1 + ctx.trait_of(&sensor, "building", 10);
        let floor = 1 + ctx.trait_of(&sensor, "floor", 20) as i64;
        let t = ctx.trait_of(&sensor, "type", SENSOR_TYPES.len() as u64) as usize;
        let (lo, hi) = VALUE_RANGES[t];
        let mid = (lo + hi) / 2.0;
        let value = match SENSOR_TYPES[t] {
            "occupancy" => ctx.int(0, 80) as f64,
            "energy" => ctx.lognormal(8.0, 0.8, lo, hi, 2),
            _ => ctx.normal(mid, (hi - lo) / 6.0, lo, hi, 2),
        };
        // Most batteries are healthy; about 3 % of sensors run low.
        let base = if ctx.trait_of(&sensor, "battery_low", 100) < 3 {
            2.0 + ctx.trait_of(&sensor, "battery", 14) as f64
        } else {
            25.0 + ctx.trait_of(&sensor, "battery", 76) as f64
        };
        let battery = (base + ctx.uniform(-2.0, 2.0, 1)).clamp(0.0, 100.0);
        let status = ctx.weighted(STATUSES, &[95.0, 3.0, 1.0, 1.0]);
        ctx.push(
            Record::new()
                .set("sensor_id", sensor)
                .set("building_id", format!("BLD-{building:02}"))
                .set("floor", floor)
                .set("sensor_type", SENSOR_TYPES[t])
                .set("value", value)
                .set("unit", UNITS[t])
                .set("status", status)
                .set("battery_level", super::round_to(battery, 1)),
        );
    }
}
