//! The picture of the trade-off: throughput against TTFT p99 and against
//! TPOT p99, side by side, every configuration labelled, the Pareto frontier
//! drawn through the ones worth choosing. Configurations often land a few
//! pixels apart (policies at the same load), so each label is placed where
//! it covers no other label, marker, the frontier or the legend
//! (`place_labels`), with a leader line when it had to move away.
//!
//! Text is drawn with a font compiled into the binary (a subset of DejaVu
//! Sans, see `assets/`) through plotters' `ab_glyph` backend, so plots come
//! out the same on a bare CI machine with no fontconfig or system fonts.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::types::RangedCoordf64;
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
const LEGEND: &str = "Pareto frontier";
const LEGEND_FONT: u32 = 14;
const LABEL_FONT: u32 = 13;
const MARKER_RADIUS: u32 = 5;
/// Pixels between a marker's centre and its label.
const GAP: i32 = 7;
/// How many lines up or down a label may move to find a free place.
const MAX_RINGS: i32 = 12;
/// A label farther than this from its marker (pixels) gets a leader line.
const LEADER_MIN: i32 = 12;

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

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One chart: latency on x (lower is better), throughput on y (higher is
/// better), so the frontier is the upper-left edge of the cloud.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    points: &[OperatingPoint],
    axis: LatencyAxis,
) -> Result<(), String> {
    let shown: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].throughput.is_finite() && axis.of(&points[i]).is_finite())
        .collect();
    let mut chart = axes(area, points, &shown, axis)?;
    let frontier = pareto_frontier(points, &[axis]);
    // Connect the frontier in latency order: it rises left to right.
    let mut line: Vec<(f64, f64)> = frontier
        .iter()
        .map(|&i| (axis.of(&points[i]), points[i].throughput))
        .collect();
    line.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(LineSeries::new(line.clone(), FRONTIER.stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label(LEGEND)
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], FRONTIER.stroke_width(2)));
    labelled_markers(&mut chart, points, &shown, &frontier, &line, axis)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FAMILY, LEGEND_FONT))
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(|e| e.to_string())
}

/// The chart's frame: axes from zero to a little past the largest shown
/// value, so the top and right points keep room for their labels.
fn axes<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    points: &[OperatingPoint],
    shown: &[usize],
    axis: LatencyAxis,
) -> Result<Chart<'a, DB>, String> {
    let largest = |value: &dyn Fn(&OperatingPoint) -> f64| {
        shown
            .iter()
            .map(|&i| value(&points[i]))
            .fold(0.0, f64::max)
            .max(1e-3)
    };
    let x_max = largest(&|p| axis.of(p)) * 1.2;
    let y_max = largest(&|p| p.throughput) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("output throughput vs {}", axis.name()),
            (FAMILY, 20),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(format!("{} (ms)", axis.name()))
        .y_desc("output tokens/s")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(chart)
}

/// A marker and a label per shown point, the labels placed where they
/// cover no other label, no marker, not the frontier's `line` and not the
/// legend; a label pushed away from its marker gets a thin line back to it.
fn labelled_markers<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    points: &[OperatingPoint],
    shown: &[usize],
    frontier: &[usize],
    line: &[(f64, f64)],
    axis: LatencyAxis,
) -> Result<(), String> {
    // Frontier points choose first: theirs are the labels a reader wants.
    let mut order = shown.to_vec();
    order.sort_by_key(|i| !frontier.contains(i));
    let coord = |i: usize| (axis.of(&points[i]), points[i].throughput);
    let color = |i: usize| -> &'static RGBColor {
        if frontier.contains(&i) {
            &FRONTIER
        } else {
            &DOMINATED
        }
    };
    let font: TextStyle = (FAMILY, LABEL_FONT).into();
    let mut labels = Vec::with_capacity(order.len());
    for &i in &order {
        let size = text_size(chart, &points[i].label, &font)?;
        labels.push((chart.backend_coord(&coord(i)), size));
    }
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    let bounds = Rect::new(xs.start, ys.start, xs.end, ys.end);
    let offsets = place_labels(&labels, bounds, &keep_clear(chart, line)?);
    let leaders = order
        .iter()
        .zip(&offsets)
        .zip(&labels)
        .filter_map(|((&i, &off), &(_, wh))| {
            let end = Rect::at(off, wh).nearest_to_origin();
            let far = end.0 * end.0 + end.1 * end.1 > LEADER_MIN * LEADER_MIN;
            far.then(|| EmptyElement::at(coord(i)) + PathElement::new(vec![(0, 0), end], *color(i)))
        });
    chart.draw_series(leaders).map_err(|e| e.to_string())?;
    let markers = order.iter().zip(&offsets).map(|(&i, &off)| {
        EmptyElement::at(coord(i))
            + Circle::new((0, 0), MARKER_RADIUS, color(i).filled())
            + Text::new(points[i].label.clone(), off, font.color(color(i)))
    });
    chart.draw_series(markers).map_err(|e| e.to_string())?;
    Ok(())
}

fn text_size<DB: DrawingBackend>(
    chart: &Chart<'_, DB>,
    text: &str,
    style: &TextStyle,
) -> Result<(i32, i32), String> {
    let (w, h) = chart
        .plotting_area()
        .estimate_text_size(text, style)
        .map_err(|e| e.to_string())?;
    Ok((w as i32, h as i32))
}

/// What labels must not cover besides each other and the markers: the
/// legend box in the lower right corner (the series-label layout: a 30 px
/// sample line, margins of 10, an inset of 5) and the frontier's line,
/// as small boxes every few pixels along it.
fn keep_clear<DB: DrawingBackend>(
    chart: &Chart<'_, DB>,
    line: &[(f64, f64)],
) -> Result<Vec<Rect>, String> {
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    let (w, h) = text_size(chart, LEGEND, &(FAMILY, LEGEND_FONT).into())?;
    let mut boxes = vec![Rect::new(xs.end - w - 55, ys.end - h - 25, xs.end, ys.end)];
    let pixels: Vec<(i32, i32)> = line.iter().map(|c| chart.backend_coord(c)).collect();
    for pair in pixels.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        let steps = (x1 - x0).abs().max((y1 - y0).abs()) / 3 + 1;
        boxes.extend((0..=steps).map(|k| {
            let x = x0 + (x1 - x0) * k / steps;
            let y = y0 + (y1 - y0) * k / steps;
            Rect::new(x - 1, y - 1, x + 2, y + 2)
        }));
    }
    Ok(boxes)
}

/// A box in pixels, corners inclusive of `(x0, y0)`, exclusive of `(x1, y1)`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Rect {
    x0: i32,
    y0: i32,
    x1: i32,
    y1: i32,
}

impl Rect {
    fn new(x0: i32, y0: i32, x1: i32, y1: i32) -> Rect {
        Rect { x0, y0, x1, y1 }
    }

    /// The box of size `(w, h)` whose top-left corner is at `(x, y)`.
    fn at((x, y): (i32, i32), (w, h): (i32, i32)) -> Rect {
        Rect::new(x, y, x + w, y + h)
    }

    fn shifted(self, (dx, dy): (i32, i32)) -> Rect {
        Rect::new(self.x0 + dx, self.y0 + dy, self.x1 + dx, self.y1 + dy)
    }

    /// Area shared with `other`, in square pixels.
    fn overlap(&self, other: &Rect) -> i64 {
        let w = (self.x1.min(other.x1) - self.x0.max(other.x0)).max(0) as i64;
        let h = (self.y1.min(other.y1) - self.y0.max(other.y0)).max(0) as i64;
        w * h
    }

    /// Area outside `bounds`, in square pixels.
    fn outside(&self, bounds: &Rect) -> i64 {
        let area = (self.x1 - self.x0) as i64 * (self.y1 - self.y0) as i64;
        area - self.overlap(bounds)
    }

    /// The point of the box nearest to `(0, 0)` (where a leader line ends).
    fn nearest_to_origin(&self) -> (i32, i32) {
        (0.clamp(self.x0, self.x1), 0.clamp(self.y0, self.y1))
    }

    /// Squared distance from `(x, y)` to the box, in square pixels.
    fn distance_sq(&self, (x, y): (i32, i32)) -> i64 {
        let (dx, dy) = self.shifted((-x, -y)).nearest_to_origin();
        dx as i64 * dx as i64 + dy as i64 * dy as i64
    }
}

/// A marker's position and its label's width and height, in pixels.
type Label = ((i32, i32), (i32, i32));

/// Places labels one by one, in the order given: `labels` holds each
/// marker's pixel position and its label's size; the answer is each label's
/// top-left corner relative to its marker. A label takes the first slot
/// free of the labels placed before it, of every marker, of `reserved` and
/// of the edges of `bounds`, and nearer its own marker than any other (so
/// it is read as that marker's): the four corners beside its marker and the
/// places just above and below it first, then the same one line further up
/// or down at a time. Where no slot is free, it takes the least bad one.
fn place_labels(labels: &[Label], bounds: Rect, reserved: &[Rect]) -> Vec<(i32, i32)> {
    let mut taken: Vec<Rect> = reserved.to_vec();
    taken.extend(labels.iter().map(|&((x, y), _)| {
        let r = MARKER_RADIUS as i32;
        Rect::new(x - r, y - r, x + r + 1, y + r + 1)
    }));
    let mut offsets = Vec::with_capacity(labels.len());
    for &(anchor, (w, h)) in labels {
        let cost = |offset: (i32, i32)| {
            let label = Rect::at(offset, (w, h)).shifted(anchor);
            let covered: i64 = taken.iter().map(|t| t.overlap(&label)).sum();
            let own = label.distance_sq(anchor);
            let misread = labels
                .iter()
                .any(|&(other, _)| label.distance_sq(other) < own);
            let misread_cost = if misread { (w * h / 2) as i64 } else { 0 };
            covered + label.outside(&bounds) + misread_cost
        };
        let mut best = (i64::MAX, (GAP, -h - GAP));
        for ring in 0..MAX_RINGS {
            let step = ring * (h + 2);
            let up = -h - GAP - step;
            let down = GAP + step;
            let (right, left, centre) = (GAP, -w - GAP, -w / 2);
            let slots = [
                (right, up),
                (right, down),
                (left, up),
                (left, down),
                (centre, up),
                (centre, down),
            ];
            for offset in slots {
                let c = cost(offset);
                if c < best.0 {
                    best = (c, offset);
                }
            }
            if best.0 == 0 {
                break;
            }
        }
        taken.push(Rect::at(best.1, (w, h)).shifted(anchor));
        offsets.push(best.1);
    }
    offsets
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

    /// Four policies a few pixels apart (the shape of docs/img/policies.png)
    /// and a label over the legend's corner.
    fn crowded() -> Vec<Label> {
        vec![
            ((300, 200), (60, 13)),
            ((303, 198), (90, 13)),
            ((306, 199), (90, 13)),
            ((309, 197), (60, 13)),
            ((590, 390), (60, 13)),
        ]
    }

    #[test]
    fn labels_of_close_points_cover_no_label_marker_or_legend() {
        let bounds = Rect::new(0, 0, 600, 400);
        let legend = Rect::new(460, 360, 600, 400);
        let labels = crowded();
        let boxes: Vec<Rect> = place_labels(&labels, bounds, &[legend])
            .into_iter()
            .zip(&labels)
            .map(|(offset, &(anchor, wh))| Rect::at(offset, wh).shifted(anchor))
            .collect();
        for (a, label) in boxes.iter().enumerate() {
            assert_eq!(label.outside(&bounds), 0, "label {a} leaves the plot");
            assert_eq!(label.overlap(&legend), 0, "label {a} covers the legend");
            for other in &boxes[a + 1..] {
                assert_eq!(label.overlap(other), 0, "{label:?} overlaps {other:?}");
            }
            for &((x, y), _) in &labels {
                let marker = Rect::new(x - 5, y - 5, x + 6, y + 6);
                assert_eq!(label.overlap(&marker), 0, "label {a} covers a marker");
            }
        }
    }

    #[test]
    fn a_free_label_sits_beside_its_marker() {
        let offsets = place_labels(&[((100, 100), (50, 13))], Rect::new(0, 0, 600, 400), &[]);
        assert_eq!(offsets, vec![(GAP, -13 - GAP)]);
    }

    #[test]
    fn renders_close_points_with_every_label() {
        let point =
            |label: &str, throughput: f64, ttft_p99_ms: f64, tpot_p99_ms: f64| OperatingPoint {
                label: label.into(),
                throughput,
                ttft_p99_ms,
                tpot_p99_ms,
            };
        let points = vec![
            point("static", 61.5, 13615.0, 21.0),
            point("prefill-first", 62.4, 4714.0, 86.0),
            point("decode-first", 61.7, 4313.0, 85.0),
            point("chunked", 61.8, 4551.0, 84.0),
        ];
        let dir = std::env::temp_dir().join(format!("fulcrum-bench-close-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let paths = plot_frontier(&points, "four policies", &dir.join("policies")).unwrap();
        let svg = std::fs::read_to_string(&paths[0]).unwrap();
        for p in &points {
            let drawn = svg.lines().filter(|line| *line == p.label).count();
            assert_eq!(drawn, 2, "{} is labelled once per panel", p.label);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
