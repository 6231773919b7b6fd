//! The report's SVG charts, drawn by plotters' SVG backend: bands (what held when, one
//! row per label) and lines (a figure over time, one series per label). Every label
//! drawn is made visible first and cut short; plotters escapes it for XML.

use crate::text::visible;
use plotters::backend::SVGBackend;
use plotters::prelude::*;

/// Width of every chart, in pixels.
pub const WIDTH: u32 = 960;
/// Rows a band chart shows; the rest are merged into "other".
pub const MAX_ROWS: usize = 12;
/// Series a line chart shows.
pub const MAX_SERIES: usize = 8;
const LABEL_CHARS: usize = 48;

const FONT: &str = "sans-serif";

/// One row of a band chart: its label and when it held.
pub struct BandRow {
    pub label: String,
    pub spans: Vec<(f64, f64)>,
}

/// One series of a line chart.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A label for a chart: visible, on one line, at most [`LABEL_CHARS`] characters.
pub fn short(s: &str) -> String {
    let v = visible(s);
    let mut out: String = v.chars().take(LABEL_CHARS).collect();
    if v.chars().nth(LABEL_CHARS).is_some() {
        out.push('…');
    }
    out
}

fn color(i: usize) -> RGBColor {
    let (r, g, b) = Palette99::pick(i).rgb();
    RGBColor(r, g, b)
}

fn err(e: impl std::fmt::Display) -> String {
    format!("chart not drawn: {e}")
}

/// An x range that plotters can draw: finite and not empty.
fn x_range(x: (f64, f64)) -> (f64, f64) {
    let (a, b) = (x.0.max(0.0), x.1);
    if a.is_finite() && b.is_finite() && b > a {
        (a, b)
    } else {
        (0.0, 1.0)
    }
}

/// Bands over time: one row per label, a filled bar where it held.
pub fn bands(title: &str, x: (f64, f64), rows: &[BandRow]) -> Result<String, String> {
    let (x0, x1) = x_range(x);
    let n = rows.len().clamp(1, MAX_ROWS + 1);
    let height = 70 + 26 * n as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let labels: Vec<String> = rows.iter().map(|r| short(&r.label)).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(short(title), (FONT, 16))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(260)
            .build_cartesian_2d(x0..x1, (0..n as i32).into_segmented())
            .map_err(err)?;
        let label_of = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) => labels
                .get(usize::try_from(*i).unwrap_or(usize::MAX))
                .cloned()
                .unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc("seconds since attach")
            .y_labels(n)
            .y_label_formatter(&label_of)
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        for (i, row) in rows.iter().take(n).enumerate() {
            let c = color(i);
            let y = i as i32;
            chart
                .draw_series(row.spans.iter().map(|&(a, b)| {
                    let (a, b) = (a.clamp(x0, x1), b.clamp(x0, x1));
                    // An instant is still drawn, one pixel wide at least.
                    let b = b.max(a + (x1 - x0) / f64::from(WIDTH));
                    Rectangle::new(
                        [(a, SegmentValue::Exact(y)), (b, SegmentValue::Exact(y + 1))],
                        c.filled(),
                    )
                }))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Lines over time, on `y_desc`'s axis from 0 to the largest value (or `y_max`).
pub fn lines(
    title: &str,
    x: (f64, f64),
    y_desc: &str,
    y_max: Option<f64>,
    series: &[Series],
) -> Result<String, String> {
    let (x0, x1) = x_range(x);
    let finite = |v: f64| v.is_finite();
    let top = y_max.unwrap_or_else(|| {
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|v| finite(*v))
            .fold(0.0, f64::max)
    });
    let top = if top > 0.0 && top.is_finite() {
        top * 1.05
    } else {
        1.0
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(short(title), (FONT, 16))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, 0.0..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("seconds since attach")
            .y_desc(short(y_desc))
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        for (i, s) in series.iter().take(MAX_SERIES).enumerate() {
            let c = color(i);
            let pts = s
                .points
                .iter()
                .filter(|p| finite(p.0) && finite(p.1))
                .map(|&(x, y)| (x.clamp(x0, x1), y.clamp(0.0, top)));
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(err)?
                .label(short(&s.label))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font((FONT, 12))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A coverage strip: one bar, 0 to 100 % of a relation's size, cut into parts (label,
/// share in percent) laid end to end.
pub fn strip(title: &str, parts: &[(String, f64)]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 120)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(short(title), (FONT, 14))
            .margin(6)
            .x_label_area_size(32)
            .y_label_area_size(10)
            .build_cartesian_2d(0.0..100.0, 0.0..1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_desc("percent of the relation's size")
            .label_style((FONT, 11))
            .draw()
            .map_err(err)?;
        let mut at = 0.0;
        for (i, (label, share)) in parts.iter().enumerate() {
            let share = if share.is_finite() { *share } else { 0.0 };
            let end = (at + share.max(0.0)).min(100.0);
            let c = strip_color(i);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(at, 0.0), (end, 1.0)],
                    c.filled(),
                )))
                .map_err(err)?
                .label(format!("{} {share:.1} %", short(label)))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
            at = end;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 11))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Read, in shared buffers, not seen.
fn strip_color(i: usize) -> RGBColor {
    [
        RGBColor(46, 125, 50),
        RGBColor(129, 199, 132),
        RGBColor(224, 224, 224),
    ]
    .get(i)
    .copied()
    .unwrap_or_else(|| color(i))
}
