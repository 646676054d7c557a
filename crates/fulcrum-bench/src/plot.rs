//! The picture of the trade-off: throughput against TTFT p99 and against
//! TPOT p99, side by side, every configuration labelled, the Pareto frontier
//! drawn through the ones worth choosing.
//!
//! Text is drawn with a font compiled into the binary (a subset of DejaVu
//! Sans, see `assets/`) through plotters' `ab_glyph` backend, so plots come
//! out the same on a bare CI machine with no fontconfig or system fonts.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle, RGBColor};

use crate::error::BenchError;
use crate::frontier::{pareto_frontier, LatencyAxis, OperatingPoint};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1400, 600);
const FRONTIER: RGBColor = RGBColor(214, 39, 40);
const DOMINATED: RGBColor = RGBColor(140, 140, 140);

fn ensure_font() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            register_font(FAMILY, FontStyle::Normal, FONT)
                .map_err(|_| "the embedded font is invalid".to_string())
        })
        .clone()
}

/// Writes `<out_stem>.svg` and `<out_stem>.png`; returns their paths.
pub fn plot_frontier(
    points: &[OperatingPoint],
    title: &str,
    out_stem: &Path,
) -> Result<Vec<PathBuf>, BenchError> {
    let svg = out_stem.with_extension("svg");
    let png = out_stem.with_extension("png");
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |message: String| BenchError::Plot { path, message }
    };
    ensure_font().map_err(fail(&svg))?;
    draw(
        SVGBackend::new(&svg, SIZE).into_drawing_area(),
        points,
        title,
    )
    .map_err(fail(&svg))?;
    draw(
        BitMapBackend::new(&png, SIZE).into_drawing_area(),
        points,
        title,
    )
    .map_err(fail(&png))?;
    Ok(vec![svg, png])
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    points: &[OperatingPoint],
    title: &str,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let body = root
        .titled(title, (FAMILY, 26))
        .map_err(|e| e.to_string())?;
    let (left, right) = body.split_horizontally(SIZE.0 / 2);
    panel(&left, points, LatencyAxis::TtftP99)?;
    panel(&right, points, LatencyAxis::TpotP99)?;
    root.present().map_err(|e| e.to_string())
}

/// One chart: latency on x (lower is better), throughput on y (higher is
/// better), so the frontier is the upper-left edge of the cloud.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    points: &[OperatingPoint],
    axis: LatencyAxis,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let finite: Vec<&OperatingPoint> = points
        .iter()
        .filter(|p| p.throughput.is_finite() && axis.of(p).is_finite())
        .collect();
    let x_max = finite
        .iter()
        .map(|p| axis.of(p))
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.2;
    let y_max = finite
        .iter()
        .map(|p| p.throughput)
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("output throughput vs {}", axis.name()),
            (FAMILY, 20),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(format!("{} (ms)", axis.name()))
        .y_desc("output tokens/s")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(|e| err(&e))?;

    let frontier = pareto_frontier(points, &[axis]);
    // Connect the frontier in latency order: it rises left to right.
    let mut line: Vec<(f64, f64)> = frontier
        .iter()
        .map(|&i| (axis.of(&points[i]), points[i].throughput))
        .collect();
    line.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(LineSeries::new(line, FRONTIER.stroke_width(2)))
        .map_err(|e| err(&e))?
        .label("Pareto frontier")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], FRONTIER.stroke_width(2)));
    let marker = |p: &OperatingPoint, on_frontier: bool| {
        let color = if on_frontier { FRONTIER } else { DOMINATED };
        EmptyElement::at((axis.of(p), p.throughput))
            + Circle::new((0, 0), 5, color.filled())
            + Text::new(
                p.label.clone(),
                (7, -16),
                (FAMILY, 13).into_font().color(&color),
            )
    };
    chart
        .draw_series(finite.iter().map(|p| {
            let on_frontier = frontier.iter().any(|&i| std::ptr::eq(&points[i], *p));
            marker(p, on_frontier)
        }))
        .map_err(|e| err(&e))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FAMILY, 14))
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_svg_with_labels_and_a_png() {
        let points = vec![
            OperatingPoint {
                label: "max_num_seqs=1".into(),
                throughput: 90.0,
                ttft_p99_ms: 80.0,
                tpot_p99_ms: 11.0,
            },
            OperatingPoint {
                label: "max_num_seqs=8".into(),
                throughput: 520.0,
                ttft_p99_ms: 310.0,
                tpot_p99_ms: 19.0,
            },
            OperatingPoint {
                label: "static".into(),
                throughput: 300.0,
                ttft_p99_ms: 900.0,
                tpot_p99_ms: 25.0,
            },
        ];
        let dir = std::env::temp_dir().join(format!("fulcrum-bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let paths = plot_frontier(&points, "SmolLM2 · 2 threads", &dir.join("frontier")).unwrap();
        let svg = std::fs::read_to_string(&paths[0]).unwrap();
        assert!(
            svg.contains("max_num_seqs=8")
                && svg.contains("TPOT p99 (ms)")
                && svg.contains("Pareto frontier")
        );
        let png = std::fs::read(&paths[1]).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
