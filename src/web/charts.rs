//! Inline SVG charts, rendered on the server: horizontal bars, a funnel, the batch/speed split
//! of a window, and KPI tiles. Every data point is an element with `data-label` and
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
}
