//! SVG charts of the `report` command, drawn with `plotters`' SVG backend:
//! an HDR-style latency percentile chart and deliveries/s over time.

use std::ops::Range;
use std::path::Path;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;

/// Chart size, pixels.
const CHART_SIZE: (u32, u32) = (900, 500);
/// Largest `1 / (1 - q)` on the latency chart's x axis (q = 99.999%).
const MAX_PERCENTILE_SPAN: f64 = 100_000.0;
/// x axis key points of the latency chart, as log10(1 / (1 - q)):
/// 50%, 90%, 99%, 99.9%, 99.99%, 99.999%.
const PERCENTILE_TICKS: [f64; 6] = [std::f64::consts::LOG10_2, 1.0, 2.0, 3.0, 4.0, 5.0];
/// Lowest latency on the latency chart's log y axis, ms.
const MIN_LATENCY_MS: f64 = 0.001;
/// Line colors, one per result (then repeated).
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// One line of a chart: a label and its (x, y) points.
pub(crate) struct Series {
    pub(crate) label: String,
    pub(crate) points: Vec<(f64, f64)>,
}

/// The x coordinate of quantile `q` on the latency chart: log10(1/(1-q)).
/// `None` for q outside 0..1 (the maximum, q = 1, has no finite place).
pub(crate) fn percentile_x(q: f64) -> Option<f64> {
    if !(0.0..1.0).contains(&q) {
        return None;
    }
    let span = (1.0 / (1.0 - q)).min(MAX_PERCENTILE_SPAN);
    Some(span.log10())
}

/// The label of an x coordinate of the latency chart ("99.9%").
fn percentile_label(x: &f64) -> String {
    let q = 1.0 - 10f64.powf(-*x);
    let pct = q * 100.0;
    // Enough decimals to tell 99.99% from 99.999%.
    let decimals = (x.round() as i64 - 2).clamp(0, 4) as usize;
    format!("{pct:.decimals$}%")
}

/// Draw the latency percentile chart (y = ms) to `path`.
pub(crate) fn latency_chart(path: &Path, series: &[Series]) -> Result<(), String> {
    // Log scale: one chart holds sub-millisecond and multi-second results.
    let y_min = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite() && *y > 0.0)
        .fold(f64::INFINITY, f64::min);
    let y_min = if y_min.is_finite() {
        10f64.powf(y_min.log10().floor()).max(MIN_LATENCY_MS)
    } else {
        MIN_LATENCY_MS
    };
    let y_max = max_y(series).max(y_min * 10.0);
    let last_tick = PERCENTILE_TICKS[PERCENTILE_TICKS.len() - 1];
    draw(path, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Latency by percentile", ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(PercentileAxis(0.0..last_tick), (y_min..y_max).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ms, log scale)")
            .x_label_formatter(&percentile_label)
            .y_label_formatter(&|y| format_ms(*y))
            .draw()
            .map_err(|e| e.to_string())?;
        lines(&mut chart, series)
    })
}

/// A latency axis label: no more decimals than the value needs.
fn format_ms(ms: f64) -> String {
    if ms >= 10.0 {
        format!("{ms:.0}")
    } else if ms >= 1.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.3}")
    }
}

/// Draw deliveries/s over time (x = seconds since the run started).
pub(crate) fn throughput_chart(path: &Path, series: &[Series]) -> Result<(), String> {
    let y_max = max_y(series);
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    draw(path, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Deliveries per second over time", ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(90)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("time (s, warm-up included)")
            .y_desc("deliveries/s")
            .y_label_formatter(&|y| format_count(*y))
            .draw()
            .map_err(|e| e.to_string())?;
        lines(&mut chart, series)
    })
}

/// The latency chart's x axis: linear in log10(1/(1-q)), with grid lines
/// and labels at [`PERCENTILE_TICKS`] only.
struct PercentileAxis(Range<f64>);

impl Ranged for PercentileAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = (self.0.end - self.0.start).max(1e-9);
        let frac = (value - self.0.start) / span;
        limit.0 + (frac * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            return Vec::new();
        }
        PERCENTILE_TICKS.to_vec()
    }

    fn range(&self) -> Range<f64> {
        self.0.clone()
    }
}

/// A count axis label: 1.5M, 250k, 900.
fn format_count(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.0}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// The top of the y axis: the largest y plus 10%, at least 1.
fn max_y(series: &[Series]) -> f64 {
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .fold(0.0f64, f64::max);
    (top * 1.1).max(1.0)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Create the SVG at `path`, fill it white, run `body`, and write it.
fn draw(path: &Path, body: impl FnOnce(&Area<'_>) -> Result<(), String>) -> Result<(), String> {
    let root = SVGBackend::new(path, CHART_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    body(&root)?;
    root.present()
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// One line per series, with a legend.
fn lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: &[Series],
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_axis() {
        assert_eq!(percentile_x(1.0), None);
        let x = percentile_x(0.999).expect("x");
        assert!((x - 3.0).abs() < 1e-9);
        assert_eq!(percentile_label(&std::f64::consts::LOG10_2), "50%");
        assert_eq!(percentile_label(&1.0), "90%");
        assert_eq!(percentile_label(&2.0), "99%");
        assert_eq!(percentile_label(&3.0), "99.9%");
        assert_eq!(percentile_label(&4.0), "99.99%");
        assert_eq!(percentile_label(&5.0), "99.999%");
    }
}
