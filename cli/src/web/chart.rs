//! Small inline SVG charts: no script, no external file, readable without a legend hunt.

use std::fmt::Write as _;

use super::escape::esc;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 150.0;
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 20.0;
const TOP: f64 = 10.0;

/// One value per backup, oldest first; `None` where it is not known (no bar, no point).
pub struct Series<'a> {
    pub title: &'a str,
    pub values: Vec<Option<f64>>,
    /// How a value reads on the axis (e.g. bytes as MiB).
    pub label: &'a dyn Fn(f64) -> String,
    pub bars: bool,
}

/// A chart of `s`, or an empty string when it has no known value.
pub fn svg(s: &Series) -> String {
    let known: Vec<f64> = s.values.iter().flatten().copied().collect();
    if known.is_empty() {
        return String::new();
    }
    let max = known.iter().copied().fold(0.0_f64, f64::max);
    let max = if max > 0.0 { max } else { 1.0 };
    let n = s.values.len() as f64;
    let plot_w = WIDTH - LEFT - 10.0;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let step = plot_w / n;
    let y = |v: f64| TOP + plot_h * (1.0 - v / max);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<figure class="chart"><figcaption>{}</figcaption><svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{}">"#,
        esc(s.title),
        esc(s.title)
    );
    // Axis: the maximum and zero, with a faint grid line at each.
    for (v, text) in [(max, (s.label)(max)), (0.0, (s.label)(0.0))] {
        let yy = y(v);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#d0d7de"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11" fill="#57606a">{}</text>"##,
            WIDTH - 10.0,
            LEFT - 6.0,
            yy + 4.0,
            esc(&text)
        );
    }
    if s.bars {
        let w = (step * 0.8).max(1.0);
        for (i, v) in s.values.iter().enumerate() {
            if let Some(v) = v {
                let x = LEFT + step * i as f64 + (step - w) / 2.0;
                let top = y(*v);
                let _ = write!(
                    out,
                    r##"<rect x="{x:.1}" y="{top:.1}" width="{w:.1}" height="{:.1}" fill="#0969da"><title>{}</title></rect>"##,
                    (TOP + plot_h - top).max(0.5),
                    esc(&(s.label)(*v))
                );
            }
        }
    } else {
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.map(|v| format!("{:.1},{:.1}", LEFT + step * (i as f64 + 0.5), y(v)))
            })
            .collect();
        let _ = write!(
            out,
            r##"<polyline points="{}" fill="none" stroke="#bf3989" stroke-width="2"/>"##,
            points.join(" ")
        );
        for (i, v) in s.values.iter().enumerate() {
            if let Some(v) = v {
                let _ = write!(
                    out,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#bf3989"><title>{}</title></circle>"##,
                    LEFT + step * (i as f64 + 0.5),
                    y(*v),
                    esc(&(s.label)(*v))
                );
            }
        }
    }
    let _ = write!(
        out,
        r##"<text x="{LEFT}" y="{}" font-size="11" fill="#57606a">oldest</text><text x="{}" y="{}" text-anchor="end" font-size="11" fill="#57606a">newest</text></svg></figure>"##,
        HEIGHT - 4.0,
        WIDTH - 10.0,
        HEIGHT - 4.0
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bar_per_known_value_and_nothing_for_no_data() {
        let label = |v: f64| format!("{v}");
        let s = Series {
            title: "t <b>",
            values: vec![Some(1.0), None, Some(3.0)],
            label: &label,
            bars: true,
        };
        let out = svg(&s);
        assert_eq!(out.matches("<rect").count(), 2);
        assert!(out.contains("t &lt;b&gt;"));
        let empty = Series {
            title: "t",
            values: vec![None, None],
            label: &label,
            bars: false,
        };
        assert_eq!(svg(&empty), "");
    }
}
