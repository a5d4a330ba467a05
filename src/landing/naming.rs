//! The landing datasets as data: cadence, objects per slot, key templates, content types and
//! metadata. A key is a pure function of (dataset, slot, device): re-running a slot rewrites
//! the same key.

use bytes::Bytes;
use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};

use crate::clock::rfc3339_secs;
use crate::sources::{self, LineFaults};
use crate::store::ObjectAttrs;

/// One landing dataset.
#[derive(Debug)]
pub struct Dataset {
    /// Streamer name on the command line (`text`, `csv`, `iot`).
    pub name: &'static str,
    /// Key prefix of the dataset.
    pub prefix: &'static str,
    /// Seconds between slots.
    pub cadence_s: i64,
    /// Objects written per slot (one per IoT device).
    pub objects_per_slot: usize,
    /// MIME type of the objects.
    pub content_type: &'static str,
    render: fn(&RenderArgs, DateTime<Utc>, usize) -> LandingObject,
}

/// The three landing datasets, in CLI order.
pub static DATASETS: [Dataset; 3] = [
    Dataset {
        name: "text",
        prefix: "data/text_files",
        cadence_s: 5,
        objects_per_slot: 1,
        content_type: "text/plain; charset=utf-8",
        render: render_text,
    },
    Dataset {
        name: "csv",
        prefix: "data/csv_files",
        cadence_s: 10,
        objects_per_slot: 1,
        content_type: "text/csv",
        render: render_csv,
    },
    Dataset {
        name: "iot",
        prefix: "data/iot_data",
        cadence_s: 15,
        objects_per_slot: sources::iot::DEVICES.len(),
        content_type: "application/x-ndjson",
        render: render_iot,
    },
];

/// Looks up a dataset by streamer name.
pub fn dataset(name: &str) -> Option<&'static Dataset> {
    DATASETS.iter().find(|d| d.name == name)
}

/// Generation settings shared by all datasets.
#[derive(Debug, Clone, Copy)]
pub struct RenderArgs {
    /// Generator seed.
    pub seed: u64,
    /// Records-per-file multiplier.
    pub scale: f64,
    /// Probability of a line fault.
    pub fault_rate: f64,
}

/// A rendered object, ready to write.
#[derive(Debug, Clone)]
pub struct LandingObject {
    /// Key relative to the lake root.
    pub key: String,
    /// Bytes.
    pub body: Bytes,
    /// Content type and user metadata.
    pub attrs: ObjectAttrs,
    /// Data lines or rows in the object.
    pub lines: usize,
    /// Faults mixed into its lines.
    pub faults: LineFaults,
}

impl Dataset {
    /// Renders object `index` (the IoT device) of the slot starting at `slot`.
    pub fn render(&self, args: &RenderArgs, slot: DateTime<Utc>, index: usize) -> LandingObject {
        (self.render)(args, slot, index)
    }

    /// 0-based number of the slot within its UTC day: the `{n}` of the key.
    pub fn seq_in_day(&self, slot: DateTime<Utc>) -> u64 {
        u64::from(slot.num_seconds_from_midnight()) / self.cadence_s as u64
    }

    /// Start of the slot containing `t`.
    pub fn slot_floor(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let s = t.timestamp().div_euclid(self.cadence_s) * self.cadence_s;
        Utc.timestamp_opt(s, 0).single().unwrap_or(t)
    }
}

/// Slot starts of a dataset in the half-open event-time range `[from, to)`.
pub fn slots(
    d: &Dataset,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> impl Iterator<Item = DateTime<Utc>> + use<> {
    let floor = d.slot_floor(from);
    let first = if floor < from {
        floor + Duration::seconds(d.cadence_s)
    } else {
        floor
    };
    let step = Duration::seconds(d.cadence_s);
    std::iter::successors(Some(first), move |t| Some(*t + step)).take_while(move |t| *t < to)
}

/// `year=YYYY/month=MM/day=DD` of a UTC time.
pub fn partition_path(t: DateTime<Utc>) -> String {
    format!(
        "year={:04}/month={:02}/day={:02}",
        t.year(),
        t.month(),
        t.day()
    )
}

fn hhmmss(t: DateTime<Utc>) -> String {
    t.format("%H%M%S").to_string()
}

fn attrs(d: &Dataset, slot: DateTime<Utc>, original: Vec<(&str, String)>) -> ObjectAttrs {
    let mut metadata: Vec<(String, String)> = original
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    metadata.push(("source".into(), d.name.into()));
    metadata.push(("slot".into(), rfc3339_secs(slot)));
    metadata.push(("schema_version".into(), "1".into()));
    ObjectAttrs {
        content_type: Some(d.content_type.to_string()),
        metadata,
    }
}

fn render_text(args: &RenderArgs, slot: DateTime<Utc>, _index: usize) -> LandingObject {
    let d = &DATASETS[0];
    let n = d.seq_in_day(slot);
    let body = sources::text::render(args.seed, slot, n, args.scale);
    LandingObject {
        key: format!(
            "{}/{}/document_{n}_{}.txt",
            d.prefix,
            partition_path(slot),
            hhmmss(slot)
        ),
        lines: body.lines().count(),
        body: Bytes::from(body),
        attrs: attrs(
            d,
            slot,
            vec![
                ("document_id", n.to_string()),
                ("generated_at", rfc3339_secs(slot)),
            ],
        ),
        faults: LineFaults::default(),
    }
}

fn render_csv(args: &RenderArgs, slot: DateTime<Utc>, _index: usize) -> LandingObject {
    let d = &DATASETS[1];
    let n = d.seq_in_day(slot);
    let mut faults = LineFaults::default();
    let (body, rows) =
        sources::csv::render(args.seed, slot, n, args.scale, args.fault_rate, &mut faults);
    LandingObject {
        key: format!(
            "{}/{}/data_{n}_{}.csv",
            d.prefix,
            partition_path(slot),
            hhmmss(slot)
        ),
        body: Bytes::from(body),
        attrs: attrs(
            d,
            slot,
            vec![
                ("file_id", n.to_string()),
                ("num_rows", rows.to_string()),
                ("generated_at", rfc3339_secs(slot)),
            ],
        ),
        lines: rows,
        faults,
    }
}

fn render_iot(args: &RenderArgs, slot: DateTime<Utc>, device: usize) -> LandingObject {
    let d = &DATASETS[2];
    let id = sources::iot::DEVICES[device];
    let mut faults = LineFaults::default();
    let (body, lines) = sources::iot::render(
        args.seed,
        slot,
        device,
        args.scale,
        args.fault_rate,
        &mut faults,
    );
    LandingObject {
        key: format!(
            "{}/device_id={id}/{}/readings_{}_{}.jsonl",
            d.prefix,
            partition_path(slot),
            hhmmss(slot),
            sources::iot::hex8(args.seed, id, slot)
        ),
        body: Bytes::from(body),
        attrs: attrs(
            d,
            slot,
            vec![
                ("device_id", id.to_string()),
                ("batch_size", lines.to_string()),
                ("generated_at", rfc3339_secs(slot)),
            ],
        ),
        lines,
        faults,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;

    const ARGS: RenderArgs = RenderArgs {
        seed: 42,
        scale: 1.0,
        fault_rate: 0.0,
    };

    #[test]
    fn keys_follow_the_templates() {
        let t = parse_utc("2026-02-01T14:30:20Z").unwrap();
        let text = dataset("text").unwrap().render(&ARGS, t, 0);
        assert_eq!(
            text.key,
            "data/text_files/year=2026/month=02/day=01/document_10444_143020.txt"
        );
        let csv = dataset("csv").unwrap().render(&ARGS, t, 0);
        assert_eq!(
            csv.key,
            "data/csv_files/year=2026/month=02/day=01/data_5222_143020.csv"
        );
        let iot =
            dataset("iot")
                .unwrap()
                .render(&ARGS, parse_utc("2026-02-01T14:30:15Z").unwrap(), 2);
        let re = "data/iot_data/device_id=sensor_002/year=2026/month=02/day=01/readings_143015_";
        assert!(
            iot.key.starts_with(re) && iot.key.ends_with(".jsonl"),
            "{}",
            iot.key
        );
        assert_eq!(iot.key.len(), re.len() + 8 + 6);
    }

    #[test]
    fn day_boundary_resets_the_sequence_and_uses_utc() {
        let d = dataset("text").unwrap();
        let last = parse_utc("2026-12-31T23:59:55Z").unwrap();
        let first = parse_utc("2027-01-01T00:00:00Z").unwrap();
        assert_eq!(d.seq_in_day(last), 17_279);
        assert_eq!(d.seq_in_day(first), 0);
        assert!(
            d.render(&ARGS, last, 0)
                .key
                .contains("year=2026/month=12/day=31/document_17279_235955")
        );
        assert!(
            d.render(&ARGS, first, 0)
                .key
                .contains("year=2027/month=01/day=01/document_0_000000")
        );
        // A non-UTC input time still lands in its UTC partition.
        let local = parse_utc("2027-01-01T01:00:00+02:00").unwrap();
        assert!(
            d.render(&ARGS, local, 0)
                .key
                .contains("year=2026/month=12/day=31/document_16560_230000")
        );
    }

    #[test]
    fn slots_are_half_open_and_aligned() {
        let d = dataset("csv").unwrap();
        let from = parse_utc("2026-02-01T00:00:03Z").unwrap();
        let to = parse_utc("2026-02-01T00:01:00Z").unwrap();
        let s: Vec<_> = slots(d, from, to).collect();
        assert_eq!(s.len(), 5);
        assert_eq!(rfc3339_secs(s[0]), "2026-02-01T00:00:10Z");
        assert_eq!(rfc3339_secs(s[4]), "2026-02-01T00:00:50Z");
        let hour = parse_utc("2026-02-01T00:00:00Z").unwrap();
        let end = hour + Duration::hours(1);
        let counts: Vec<usize> = DATASETS
            .iter()
            .map(|d| slots(d, hour, end).count() * d.objects_per_slot)
            .collect();
        assert_eq!(counts, vec![720, 360, 960]);
    }

    #[test]
    fn metadata_has_original_and_lakepipe_keys() {
        let t = parse_utc("2026-02-01T00:00:10Z").unwrap();
        let csv = dataset("csv").unwrap().render(&ARGS, t, 0);
        let keys: Vec<&str> = csv.attrs.metadata.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "file_id",
                "num_rows",
                "generated_at",
                "source",
                "slot",
                "schema_version"
            ]
        );
        assert_eq!(csv.attrs.content_type.as_deref(), Some("text/csv"));
        let a = dataset("iot").unwrap().render(&ARGS, t, 1);
        let b = dataset("iot").unwrap().render(&ARGS, t, 1);
        assert_eq!((a.key, a.body), (b.key, b.body));
    }
}
