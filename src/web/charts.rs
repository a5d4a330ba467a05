//! Inline SVG charts, rendered on the server: horizontal bars, a funnel, the batch/speed split
//! of a window, KPI tiles, and time series (stacked batch/speed columns, lines). Every data point is an element with `data-label` and
//! `data-value`, so a browser test (or a scraper) can read what a chart shows.

use super::pages::esc;

/// Formats a number for labels: integers without decimals, others with up to 2.
pub fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// Horizontal bars, one per `(label, value)`, scaled to the largest value.
pub fn bars(title: &str, unit: &str, items: &[(String, f64)]) -> String {
    if items.is_empty() {
        return format!(
            "<figure class=\"chart empty\"><figcaption>{}</figcaption><p>no data in the window</p></figure>",
            esc(title)
        );
    }
    let max = items.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let (row, label_w, bar_w) = (18.0, 190.0, 300.0);
    let height = row * items.len() as f64 + 4.0;
    let mut svg = format!(
        "<svg class=\"bars\" viewBox=\"0 0 {w} {height}\" width=\"{w}\" height=\"{height}\" role=\"img\">",
        w = label_w + bar_w + 80.0
    );
    for (i, (label, v)) in items.iter().enumerate() {
        let y = i as f64 * row + 2.0;
        let w = if max > 0.0 { v / max * bar_w } else { 0.0 };
        svg.push_str(&format!(
            "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{l}</text>\
             <rect class=\"point\" data-label=\"{l}\" data-value=\"{v}\" x=\"{label_w}\" y=\"{y}\" width=\"{w:.1}\" height=\"{h}\"><title>{l}: {vs} {u}</title></rect>\
             <text x=\"{vx:.1}\" y=\"{ty}\">{vs}</text>",
            lx = label_w - 6.0,
            ty = y + row * 0.7,
            l = esc(label),
            h = row - 4.0,
            vx = label_w + w + 4.0,
            vs = num(*v),
            u = esc(unit),
        ));
    }
    svg.push_str("</svg>");
    format!(
        "<figure class=\"chart\"><figcaption>{} <span class=\"unit\">{}</span></figcaption>{svg}</figure>",
        esc(title),
        esc(unit)
    )
}

/// A funnel: each stage as a centred bar, with the share of the first stage.
pub fn funnel(title: &str, stages: &[(&str, f64)]) -> String {
    let first = stages.first().map_or(0.0, |(_, v)| *v);
    let (row, width) = (26.0, 420.0);
    let height = row * stages.len() as f64 + 4.0;
    let mut svg = format!(
        "<svg class=\"funnel\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\">"
    );
    for (i, (label, v)) in stages.iter().enumerate() {
        let share = if first > 0.0 { v / first } else { 0.0 };
        let w = (share * (width - 20.0)).max(2.0);
        let y = i as f64 * row + 2.0;
        svg.push_str(&format!(
            "<rect class=\"point\" data-label=\"{l}\" data-value=\"{v}\" x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"{h}\"></rect>\
             <text x=\"{cx}\" y=\"{ty}\" text-anchor=\"middle\">{l}: {vs} ({p:.1} %)</text>",
            l = esc(label),
            x = (width - w) / 2.0,
            h = row - 4.0,
            cx = width / 2.0,
            ty = y + row * 0.62,
            vs = num(*v),
            p = share * 100.0,
        ));
    }
    svg.push_str("</svg>");
    format!(
        "<figure class=\"chart\"><figcaption>{}</figcaption>{svg}</figure>",
        esc(title)
    )
}

/// The batch/speed split of a window's events: where the batch layer's data ends and the
/// speed layer's begins.
pub fn source_split(batch: u64, speed: u64) -> String {
    let total = (batch + speed).max(1) as f64;
    let width = 420.0;
    let bw = batch as f64 / total * width;
    format!(
        "<div class=\"split\"><svg viewBox=\"0 0 {width} 16\" width=\"{width}\" height=\"16\" role=\"img\">\
         <rect class=\"point source-batch\" data-label=\"batch\" data-value=\"{batch}\" x=\"0\" y=\"0\" width=\"{bw:.1}\" height=\"16\"></rect>\
         <rect class=\"point source-speed\" data-label=\"speed\" data-value=\"{speed}\" x=\"{bw:.1}\" y=\"0\" width=\"{sw:.1}\" height=\"16\"></rect></svg>\
         <span class=\"legend\"><i class=\"source-batch\"></i>batch layer {batch} · <i class=\"source-speed\"></i>speed layer {speed} events in the window</span></div>",
        sw = width - bw
    )
}

/// KPI tiles: `(label, value)`.
pub fn tiles(items: &[(&str, String)]) -> String {
    let mut s = String::from("<div class=\"tiles\">");
    for (label, v) in items {
        s.push_str(&format!(
            "<div class=\"tile\" data-label=\"{l}\" data-value=\"{v}\"><b>{v}</b><span>{l}</span></div>",
            l = esc(label),
            v = esc(v)
        ));
    }
    s.push_str("</div>");
    s
}

/// Plot area of the time series charts (pixels) and the room left of it for the axis.
const SERIES_W: f64 = 560.0;
const SERIES_H: f64 = 120.0;
const SERIES_LEFT: f64 = 56.0;

/// `HH:MM` of an RFC 3339 time label, else the label.
pub fn clock_label(t: &str) -> &str {
    match (t.get(11..16), t.as_bytes().get(10)) {
        (Some(hm), Some(b'T' | b' ')) => hm,
        _ => t,
    }
}

/// The frame of a time series chart: its axis (`max` at the top, 0 at the bottom) and the
/// first, middle and last time labels under the plot.
fn series_frame(class: &str, labels: &[String], max: f64, unit: &str) -> String {
    let (w, h) = (SERIES_LEFT + SERIES_W + 8.0, SERIES_H + 20.0);
    let mut svg = format!(
        "<svg class=\"series {class}\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\">\
         <line class=\"axis\" x1=\"{SERIES_LEFT}\" y1=\"{SERIES_H}\" x2=\"{x2}\" y2=\"{SERIES_H}\"></line>\
         <text x=\"{mx}\" y=\"10\">max {m} {u}</text><text x=\"{tx}\" y=\"{SERIES_H}\" text-anchor=\"end\">0</text>",
        x2 = SERIES_LEFT + SERIES_W,
        tx = SERIES_LEFT - 4.0,
        mx = SERIES_LEFT + 4.0,
        m = num(max),
        u = esc(unit),
    );
    let n = labels.len();
    let mut ticks = vec![0, n / 2, n.saturating_sub(1)];
    ticks.dedup();
    for i in ticks.into_iter().filter(|i| *i < n) {
        let anchor = if i == 0 {
            "start"
        } else if i + 1 == n {
            "end"
        } else {
            "middle"
        };
        svg.push_str(&format!(
            "<text x=\"{x:.1}\" y=\"{y}\" text-anchor=\"{anchor}\">{l}</text>",
            x = SERIES_LEFT + (i as f64 + 0.5) * SERIES_W / n as f64,
            y = SERIES_H + 15.0,
            l = esc(clock_label(&labels[i])),
        ));
    }
    svg
}

fn series_figure(title: &str, unit: &str, svg: String, legend: &str) -> String {
    format!(
        "<figure class=\"chart\"><figcaption>{} <span class=\"unit\">{}</span></figcaption>{svg}{legend}</figure>",
        esc(title),
        esc(unit)
    )
}

fn no_series(title: &str) -> String {
    format!(
        "<figure class=\"chart empty\"><figcaption>{}</figcaption><p>no data in the window</p></figure>",
        esc(title)
    )
}

/// A time series as columns, one per `(time, batch, speed)`: the batch layer's part at the
/// bottom, the speed layer's on top, with a legend of both totals.
pub fn stacked_series(title: &str, unit: &str, points: &[(String, f64, f64)]) -> String {
    if points.is_empty() {
        return no_series(title);
    }
    let max = points.iter().map(|(_, b, s)| b + s).fold(0.0_f64, f64::max);
    let labels: Vec<String> = points.iter().map(|(t, _, _)| t.clone()).collect();
    let mut svg = series_frame("stacked", &labels, max, unit);
    let step = SERIES_W / points.len() as f64;
    let scale = |v: f64| if max > 0.0 { v / max * SERIES_H } else { 0.0 };
    for (i, (t, b, s)) in points.iter().enumerate() {
        let x = SERIES_LEFT + i as f64 * step + step * 0.1;
        let (bh, sh) = (scale(*b), scale(*s));
        let l = esc(t);
        let hm = esc(clock_label(t));
        svg.push_str(&format!(
            "<rect class=\"point source-batch\" data-label=\"{l} batch\" data-value=\"{b}\" x=\"{x:.1}\" y=\"{by:.1}\" width=\"{w:.1}\" height=\"{bh:.1}\"><title>{hm} batch: {bs} {u}</title></rect>\
             <rect class=\"point source-speed\" data-label=\"{l} speed\" data-value=\"{s}\" x=\"{x:.1}\" y=\"{sy:.1}\" width=\"{w:.1}\" height=\"{sh:.1}\"><title>{hm} speed: {ss} {u}</title></rect>",
            by = SERIES_H - bh,
            sy = SERIES_H - bh - sh,
            w = step * 0.8,
            bs = num(*b),
            ss = num(*s),
            u = esc(unit),
        ));
    }
    svg.push_str("</svg>");
    let (tb, ts) = points
        .iter()
        .fold((0.0, 0.0), |(tb, ts), (_, b, s)| (tb + b, ts + s));
    let legend = format!(
        "<div class=\"legend\"><i class=\"source-batch\"></i>batch layer {} · <i class=\"source-speed\"></i>speed layer {}</div>",
        num(tb),
        num(ts)
    );
    series_figure(title, unit, svg, &legend)
}

/// Time series as lines over the shared time `labels`: one line per `(name, values)` (a
/// value per label, `None` where the series has none), each value a point.
pub fn line_series(
    title: &str,
    unit: &str,
    labels: &[String],
    series: &[(String, Vec<Option<f64>>)],
) -> String {
    if labels.is_empty() || series.iter().all(|(_, v)| v.iter().all(Option::is_none)) {
        return no_series(title);
    }
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0_f64, |m, v| m.max(*v));
    let mut svg = series_frame("lines", labels, max, unit);
    let step = SERIES_W / labels.len() as f64;
    let mut legend = String::from("<div class=\"legend\">");
    for (k, (name, values)) in series.iter().enumerate() {
        let class = format!("s{}", k % 12);
        let n = esc(name);
        let at = |i: usize, v: f64| {
            (
                SERIES_LEFT + (i as f64 + 0.5) * step,
                SERIES_H - if max > 0.0 { v / max * SERIES_H } else { 0.0 },
            )
        };
        let path: Vec<String> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| at(i, v)))
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        svg.push_str(&format!(
            "<polyline class=\"line {class}\" data-series=\"{n}\" points=\"{}\"></polyline>",
            path.join(" ")
        ));
        for (i, v) in values.iter().enumerate() {
            let Some(v) = v else { continue };
            let (x, y) = at(i, *v);
            svg.push_str(&format!(
                "<circle class=\"point {class}\" data-label=\"{n} {l}\" data-value=\"{v}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2\"><title>{n} {hm}: {vs} {u}</title></circle>",
                l = esc(&labels[i]),
                hm = esc(clock_label(&labels[i])),
                vs = num(*v),
                u = esc(unit),
            ));
        }
        legend.push_str(&format!("<span><i class=\"{class}\"></i>{n}</span> "));
    }
    svg.push_str("</svg>");
    legend.push_str("</div>");
    series_figure(title, unit, svg, &legend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_have_one_point_per_item_scaled_to_the_largest() {
        let svg = bars("p95", "ms", &[("/a".into(), 100.0), ("/b<x>".into(), 50.0)]);
        assert_eq!(svg.matches("class=\"point\"").count(), 2);
        assert!(svg.contains("data-label=\"/b&lt;x&gt;\" data-value=\"50\""));
        assert!(svg.contains("width=\"300.0\""), "largest bar is full width");
        assert!(svg.contains("width=\"150.0\""));
        assert!(bars("p95", "ms", &[]).contains("no data"));
    }

    #[test]
    fn funnel_shares_and_source_split() {
        let f = funnel(
            "f",
            &[("sessions", 200.0), ("carts", 50.0), ("orders", 10.0)],
        );
        assert!(f.contains("(25.0 %)") && f.contains("(5.0 %)"), "{f}");
        let s = source_split(30, 10);
        assert!(s.contains("data-label=\"batch\" data-value=\"30\""));
        assert!(s.contains("width=\"315.0\""), "{s}");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(2.345), "2.35");
    }
    #[test]
    fn time_series_columns_and_lines() {
        let pts = vec![
            ("2026-02-01T10:00:00Z".to_string(), 3.0, 1.0),
            ("2026-02-01T10:01:00Z".to_string(), 0.0, 2.0),
        ];
        let svg = stacked_series("requests", "per minute", &pts);
        assert!(svg.contains("data-label=\"2026-02-01T10:00:00Z batch\" data-value=\"3\""));
        assert!(svg.contains("data-label=\"2026-02-01T10:01:00Z speed\" data-value=\"2\""));
        assert!(svg.contains(">10:00</text>") && svg.contains(">10:01</text>"));
        assert!(svg.contains("batch layer 3 · ") && svg.contains("speed layer 3</div>"));
        // The tallest column (3 + 1) fills the plot.
        assert!(
            svg.contains("height=\"90.0\"") && svg.contains("height=\"30.0\""),
            "{svg}"
        );
        let labels = vec!["10:00".to_string(), "10:01".to_string()];
        let svg = line_series(
            "p95",
            "ms",
            &labels,
            &[("/a<b>".to_string(), vec![Some(10.0), None])],
        );
        assert_eq!(svg.matches("<circle class=\"point").count(), 1);
        assert!(svg.contains("data-series=\"/a&lt;b&gt;\""), "{svg}");
        assert!(line_series("p95", "ms", &labels, &[]).contains("no data"));
        assert!(stacked_series("r", "", &[]).contains("no data"));
        assert_eq!(clock_label("2026-02-01T10:05:00Z"), "10:05");
        assert_eq!(clock_label("x"), "x");
    }
}
