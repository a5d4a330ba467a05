//! IoT readings of the landing dataset `iot_data`: four environmental devices, ten JSON-lines
//! readings per device per 15-second slot, status derived from the values.

use chrono::{DateTime, Duration, Utc};
use rand_distr::{Distribution, Normal};
use serde::Serialize;

use super::{LineFaults, rng_for, round_to, scaled, stable_hash, uuid_from};
use crate::clock::rfc3339_millis;

/// Source name (also the `source` metadata value).
pub const SOURCE: &str = "iot";
/// Device ids, in order; device `i` sits in `LOCATIONS[i]`.
pub const DEVICES: &[&str] = &["sensor_000", "sensor_001", "sensor_002", "sensor_003"];
/// Locations of the devices.
pub const LOCATIONS: &[&str] = &["Zone_A", "Zone_B", "Zone_C", "Zone_D"];
/// Readings per object at scale 1.
pub const READINGS: usize = 10;
/// Slot length: readings are spread over it.
pub const SLOT_SECONDS: i64 = 15;
/// Allowed `status` values.
pub const STATUSES: &[&str] = &["ok", "warning", "error"];

/// One reading, fields in the documented order.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Reading {
    pub device_id: String,
    pub location: String,
    pub sensor_type: String,
    pub timestamp: String,
    pub temperature: f64,
    pub humidity: f64,
    pub pressure: f64,
    pub status: String,
    pub reading_id: String,
}

/// Status from the values: error above 35 °C; warning above 30 °C or humidity outside 20–80 %.
pub fn status_for(temperature: f64, humidity: f64) -> &'static str {
    if temperature > 35.0 {
        "error"
    } else if temperature > 30.0 || !(20.0..=80.0).contains(&humidity) {
        "warning"
    } else {
        "ok"
    }
}

/// The 8 lower-case hex digits of a file name, derived from (device, slot).
pub fn hex8(seed: u64, device: &str, slot: DateTime<Utc>) -> String {
    let h = stable_hash(&[
        &seed.to_le_bytes(),
        device.as_bytes(),
        &slot.timestamp().to_le_bytes(),
    ]);
    format!("{:08x}", h as u32)
}

/// Renders the JSON-lines object of device number `device` for the slot starting at `slot`;
/// returns the body and the number of lines.
pub fn render(
    seed: u64,
    slot: DateTime<Utc>,
    device: usize,
    scale: f64,
    fault_rate: f64,
    faults: &mut LineFaults,
) -> (String, usize) {
    let device_id = DEVICES[device];
    let mut rng = rng_for(seed, device_id, slot, 0);
    let temp = Normal::<f64>::new(20.0, 5.0).expect("valid normal");
    let hum = Normal::<f64>::new(50.0, 10.0).expect("valid normal");
    let pres = Normal::<f64>::new(1013.0, 5.0).expect("valid normal");
    let n = scaled(READINGS, scale);
    let mut lines = Vec::with_capacity(n);
    for i in 0..n {
        let ts = slot + Duration::milliseconds((i as i64 * SLOT_SECONDS * 1000) / n as i64);
        let temperature = round_to(f64::clamp(temp.sample(&mut rng), -10.0, 50.0), 2);
        let humidity = round_to(f64::clamp(hum.sample(&mut rng), 0.0, 100.0), 2);
        let pressure = round_to(pres.sample(&mut rng), 2);
        let r = Reading {
            device_id: device_id.to_string(),
            location: LOCATIONS[device].to_string(),
            sensor_type: "environmental".to_string(),
            timestamp: rfc3339_millis(ts),
            temperature,
            humidity,
            pressure,
            status: status_for(temperature, humidity).to_string(),
            reading_id: uuid_from(&mut rng),
        };
        // Serialising a plain struct of strings and finite floats cannot fail.
        lines.push(serde_json::to_string(&r).expect("reading serialises"));
    }
    let count = faults.apply(&mut lines, seed, device_id, slot, fault_rate);
    let mut out = lines.join("\n");
    out.push('\n');
    (out, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;

    #[test]
    fn readings_follow_the_schema_and_ranges() {
        let t = parse_utc("2026-02-01T10:00:45Z").unwrap();
        for device in 0..DEVICES.len() {
            let (body, n) = render(42, t, device, 1.0, 0.0, &mut LineFaults::default());
            assert_eq!(n, READINGS);
            assert!(body.ends_with('\n'));
            let first = body.lines().next().unwrap();
            assert!(first.starts_with("{\"device_id\":\"sensor_00"), "{first}");
            let keys: Vec<String> =
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(first)
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect();
            assert_eq!(keys.len(), 9);
            for line in body.lines() {
                let r: Reading = serde_json::from_str(line).unwrap();
                assert_eq!(r.device_id, DEVICES[device]);
                assert_eq!(r.location, LOCATIONS[device]);
                assert_eq!(r.sensor_type, "environmental");
                let ts = parse_utc(&r.timestamp).unwrap();
                assert!(ts >= t && ts < t + Duration::seconds(SLOT_SECONDS));
                assert!((-10.0..=50.0).contains(&r.temperature));
                assert!((0.0..=100.0).contains(&r.humidity));
                assert!((950.0..=1080.0).contains(&r.pressure));
                assert_eq!(r.status, status_for(r.temperature, r.humidity));
                assert!(uuid::Uuid::parse_str(&r.reading_id).is_ok());
            }
            assert!(body.len() < 128 * 1024);
        }
    }

    #[test]
    fn status_rules() {
        assert_eq!(status_for(36.0, 50.0), "error");
        assert_eq!(status_for(31.0, 50.0), "warning");
        assert_eq!(status_for(25.0, 85.0), "warning");
        assert_eq!(status_for(25.0, 19.0), "warning");
        assert_eq!(status_for(25.0, 50.0), "ok");
    }

    #[test]
    fn hex8_is_deterministic_and_lowercase() {
        let t = parse_utc("2026-02-01T10:00:45Z").unwrap();
        let h = hex8(42, "sensor_001", t);
        assert_eq!(h, hex8(42, "sensor_001", t));
        assert_ne!(h, hex8(42, "sensor_002", t));
        assert_eq!(h.len(), 8);
        assert!(
            h.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
