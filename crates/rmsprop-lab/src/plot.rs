//! Figures: the 2-D contour plot with trajectories, loss curves, the sweep heatmap, and
//! lines on a log axis (effective learning rates, the leaky average's weights).
//! Each figure draws on any plotters [`DrawingBackend`]; [`save`] writes it as SVG and
//! PNG with an embedded DejaVu Sans font, so the output is the same on every machine.
//! Plotting only draws what it is handed: every number comes from the caller.

use crate::trace2d::{Objective, Trajectory};
use crate::train::Curve;
pub use plotters::chart::SeriesLabelPosition;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A figure that could not be drawn or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot draw the figure: {reason}")]
pub struct PlotError {
    /// The file being written.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// Something that draws itself on a drawing area of any backend.
pub trait Figure {
    /// Draws on `root` (already sized); errors are returned as text.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// `stem` with `.ext` appended (a stem may hold dots: `chapter_lr=0.4`).
pub fn with_suffix(stem: &Path, ext: &str) -> PathBuf {
    let mut s = stem.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Writes `figure` to `stem.svg` and `stem.png` at `size` pixels and returns both paths.
pub fn save(figure: &impl Figure, stem: &Path, size: (u32, u32)) -> Result<[PathBuf; 2], PlotError> {
    register_font();
    let svg = with_suffix(stem, "svg");
    let png = with_suffix(stem, "png");
    let fail = |path: &Path, reason: String| PlotError { path: path.to_path_buf(), reason };
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        figure.draw(&root).map_err(|e| fail(&svg, e))?;
        root.present().map_err(|e| fail(&svg, e.to_string()))?;
    }
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        figure.draw(&root).map_err(|e| fail(&png, e))?;
        root.present().map_err(|e| fail(&png, e.to_string()))?;
    }
    Ok([svg, png])
}

/// Registers DejaVu Sans as plotters' `sans-serif` (once per process).
fn register_font() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans font is valid"));
    });
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The legend box every line figure uses.
/// The corner for a legend of `labels` that covers the fewest of `points` (data
/// coordinates): `preferred` when it covers none, else the emptiest of the four corners
/// (the box's size estimated from the labels' lengths).
fn free_corner<DB: DrawingBackend>(
    chart: &ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    points: &[(f64, f64)],
    labels: &[&str],
    preferred: SeriesLabelPosition,
) -> SeriesLabelPosition {
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    let chars = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as i32;
    let (w, h) = (40 + 8 * chars, 10 + 20 * labels.len() as i32);
    let pixels: Vec<(i32, i32)> = points.iter().map(|p| chart.backend_coord(p)).collect();
    let covered = |corner: &SeriesLabelPosition| {
        let (x0, y0) = match corner {
            SeriesLabelPosition::UpperLeft => (xs.start, ys.start),
            SeriesLabelPosition::LowerLeft => (xs.start, ys.end - h),
            SeriesLabelPosition::LowerRight => (xs.end - w, ys.end - h),
            _ => (xs.end - w, ys.start),
        };
        pixels.iter().filter(|(x, y)| (x0 - 6..=x0 + w + 6).contains(x) && (y0 - 6..=y0 + h + 6).contains(y)).count()
    };
    if covered(&preferred) == 0 {
        return preferred;
    }
    let corners = [
        SeriesLabelPosition::UpperRight,
        SeriesLabelPosition::UpperLeft,
        SeriesLabelPosition::LowerRight,
        SeriesLabelPosition::LowerLeft,
    ];
    corners.into_iter().min_by_key(|c| covered(c)).unwrap_or(preferred)
}

fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)
}

/// The chapter's figure: contour lines of a 2-D objective and optimizer trajectories.
pub struct ContourPlot<'a> {
    /// Title line.
    pub title: String,
    /// The objective.
    pub objective: &'a Objective,
    /// Labelled trajectories.
    pub trajectories: &'a [(String, Trajectory)],
}

impl ContourPlot<'_> {
    /// The chapter's view, (-5.5, 1) x (-3, 1).
    const BASE: ([f64; 2], [f64; 2]) = ([-5.5, 1.0], [-3.0, 1.0]);

    /// How far from the origin a point may be and still widen the view: 10 × the largest
    /// coordinate of the chapter's view and of the starts. Points beyond it are outside the
    /// figure, and each trajectory that leaves is marked where it does.
    pub fn fit_limit(&self) -> f64 {
        let base = [Self::BASE.0, Self::BASE.1].into_iter().flatten().map(f64::abs).fold(0.0, f64::max);
        let starts = self.trajectories.iter().filter_map(|(_, t)| t.points.first()).flatten().map(|v| v.abs());
        10.0 * starts.filter(|v| v.is_finite()).fold(base, f64::max)
    }

    /// The plotted region: the chapter's view widened to every point within
    /// [`fit_limit`](Self::fit_limit) and to the objective's minimum, padded by 5 %.
    pub fn bounds(&self) -> ([f64; 2], [f64; 2]) {
        let (mut x, mut y) = Self::BASE;
        let limit = self.fit_limit();
        let fits = |p: &&[f64; 2]| p.iter().all(|v| v.abs() <= limit);
        let minimum = self.objective.minimum.iter();
        for p in self.trajectories.iter().flat_map(|(_, t)| &t.points).chain(minimum).filter(fits) {
            x = [x[0].min(p[0]), x[1].max(p[0])];
            y = [y[0].min(p[1]), y[1].max(p[1])];
        }
        let pad = |[a, b]: [f64; 2]| [a - 0.05 * (b - a), b + 0.05 * (b - a)];
        (pad(x), pad(y))
    }

    /// Where each trajectory first leaves the view: `(index, step, exit point on the border)`.
    pub fn exits(&self) -> Vec<(usize, usize, (f64, f64))> {
        let (xr, yr) = self.bounds();
        let mut out = Vec::new();
        for (i, (_, t)) in self.trajectories.iter().enumerate() {
            for (k, w) in t.points.windows(2).enumerate() {
                let (a, b) = ((w[0][0], w[0][1]), (w[1][0], w[1][1]));
                if inside(b, xr, yr) {
                    continue;
                }
                if let Some((_, exit)) = clip(a, b, xr, yr) {
                    out.push((i, k + 1, exit));
                }
                break;
            }
        }
        out
    }
}

fn inside((x, y): (f64, f64), xr: [f64; 2], yr: [f64; 2]) -> bool {
    (xr[0]..=xr[1]).contains(&x) && (yr[0]..=yr[1]).contains(&y)
}

/// The part of the segment `a`–`b` inside the box (Liang–Barsky), if any.
fn clip(a: (f64, f64), b: (f64, f64), xr: [f64; 2], yr: [f64; 2]) -> Option<((f64, f64), (f64, f64))> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [(-dx, a.0 - xr[0]), (dx, xr[1] - a.0), (-dy, a.1 - yr[0]), (dy, yr[1] - a.1)] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
        }
    }
    (t0 <= t1).then_some(((a.0 + t0 * dx, a.1 + t0 * dy), (a.0 + t1 * dx, a.1 + t1 * dy)))
}

impl Figure for ContourPlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let (xr, yr) = self.bounds();
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(xr[0]..xr[1], yr[0]..yr[1])
            .map_err(err)?;
        chart
            .configure_mesh()
            .max_light_lines(0)
            .x_desc("x1")
            .y_desc("x2")
            .label_style(("sans-serif", 14))
            .x_label_formatter(&|v| short(*v))
            .y_label_formatter(&|v| short(*v))
            .draw()
            .map_err(err)?;
        let grey = RGBColor(170, 170, 170);
        for pts in contour_lines(self.objective, xr, yr, 120)? {
            chart.draw_series(std::iter::once(PathElement::new(pts, grey.stroke_width(1)))).map_err(err)?;
        }
        // the minimum: a black cross and its coordinates
        if let Some([mx, my]) = self.objective.minimum {
            let ink = BLACK.stroke_width(2);
            chart.draw_series(std::iter::once(Cross::new((mx, my), 7, ink))).map_err(err)?;
            // written on the side with room for it
            let right = mx > (xr[0] + xr[1]) / 2.0;
            let (side, dx) = if right { (HPos::Right, -0.01) } else { (HPos::Left, 0.01) };
            let style = ("sans-serif", 13).into_font().color(&BLACK).pos(Pos::new(side, VPos::Bottom));
            let at = (mx + dx * (xr[1] - xr[0]), my + 0.015 * (yr[1] - yr[0]));
            let text = format!("minimum ({}, {})", short(mx), short(my));
            chart.draw_series(std::iter::once(Text::new(text, at, style))).map_err(err)?;
        }
        // a run that ends within 2 % of the view's diagonal from its start
        let diagonal = (xr[1] - xr[0]).hypot(yr[1] - yr[0]);
        let (mut labels, mut shown_points) = (Vec::new(), Vec::new());
        for (i, (label, t)) in self.trajectories.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let pts: Vec<(f64, f64)> = t.points.iter().map(|p| (p[0], p[1])).collect();
            // every step's segment, clipped to the view: a run that leaves is drawn up to the border
            let segments: Vec<_> = pts.windows(2).filter_map(|w| clip(w[0], w[1], xr, yr)).collect();
            let moved = match (pts.first(), pts.last()) {
                (Some(a), Some(b)) => (b.0 - a.0).hypot(b.1 - a.1),
                _ => 0.0,
            };
            let label = match &t.diverged {
                Some(d) => format!("{label}, diverged at step {}", d.step),
                None if moved < 0.02 * diagonal => format!("{label}, barely moved"),
                None => label.clone(),
            };
            labels.push(label.clone());
            shown_points.extend(pts.iter().copied().filter(|&p| inside(p, xr, yr)));
            chart
                .draw_series(segments.iter().map(|&(a, b)| PathElement::new(vec![a, b], color.stroke_width(2))))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            let inside_points = pts.iter().filter(|&&p| inside(p, xr, yr));
            chart.draw_series(inside_points.map(|&p| Circle::new(p, 3, color.filled()))).map_err(err)?;
        }
        // where a run leaves the view: a marker on the border and the step, never a silent clip
        for (i, step, exit) in self.exits() {
            let color = PALETTE[i % PALETTE.len()];
            let to = self.trajectories[i].1.points[step];
            let text = format!("step {step} leaves the view (to {}, {})", short(to[0]), short(to[1]));
            chart.draw_series(std::iter::once(TriangleMarker::new(exit, 9, color.filled()))).map_err(err)?;
            let (right, top) = (exit.0 > (xr[0] + xr[1]) / 2.0, exit.1 > (yr[0] + yr[1]) / 2.0);
            let pos =
                Pos::new(if right { HPos::Right } else { HPos::Left }, if top { VPos::Top } else { VPos::Bottom });
            let style = ("sans-serif", 13).into_font().color(&color).pos(pos);
            let (fx, fy) = ((xr[1] - xr[0]) * 0.01, (yr[1] - yr[0]) * 0.03);
            let nudge = |(x, y): (f64, f64)| (x + if right { -fx } else { fx }, y + if top { -fy } else { fy });
            chart.draw_series(std::iter::once(Text::new(text, nudge(exit), style))).map_err(err)?;
        }
        // the chapter's runs start lower left and end near the origin: the lower right is free
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let corner = free_corner(&chart, &shown_points, &labels, SeriesLabelPosition::LowerRight);
        legend(&mut chart, corner)
    }
}

/// The contour lines of `objective` over the box `xr` x `yr`, as polylines: 14 levels on an
/// `n` x `n` grid, evenly spaced in √f (like distance from the minimum).
pub fn contour_lines(
    objective: &Objective,
    xr: [f64; 2],
    yr: [f64; 2],
    n: usize,
) -> Result<Vec<Vec<(f64, f64)>>, String> {
    let (dx, dy) = ((xr[1] - xr[0]) / (n - 1) as f64, (yr[1] - yr[0]) / (n - 1) as f64);
    let values: Vec<f64> =
        (0..n * n).map(|k| (objective.eval)([xr[0] + (k % n) as f64 * dx, yr[0] + (k / n) as f64 * dy]).0).collect();
    let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let span = (hi - lo).max(1e-12);
    let levels: Vec<f64> = (1..=14).map(|k| lo + span * (k as f64 / 15.0).powi(2)).collect();
    let lines = contour::ContourBuilder::new(n, n, true)
        .x_origin(xr[0])
        .y_origin(yr[0])
        .x_step(dx)
        .y_step(dy)
        .lines(&values, &levels)
        .map_err(err)?;
    Ok(lines.iter().flat_map(|l| l.geometry().0.iter().map(|ls| ls.0.iter().map(|c| (c.x, c.y)).collect())).collect())
}

/// A number on a figure: four significant digits, no trailing zeros (`395`, `0.5`,
/// `1.585`), scientific outside `[1e-3, 1e5)` (`1e-5`, `2.5e7`).
pub(crate) fn short(v: f64) -> String {
    let trim = |s: String| -> String {
        if !s.contains('.') {
            return s;
        }
        let (mantissa, exponent) = s.split_once('e').map_or((s.as_str(), None), |(m, e)| (m, Some(e)));
        let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
        exponent.map_or(mantissa.to_string(), |e| format!("{mantissa}e{e}"))
    };
    if v == 0.0 {
        "0".into()
    } else if v.is_finite() && (1e-3..1e5).contains(&v.abs()) {
        let decimals = (3 - v.abs().log10().floor() as i32).max(0) as usize;
        trim(format!("{v:.decimals$}"))
    } else {
        trim(format!("{v:.3e}"))
    }
}

/// Tick positions from `lo` to `hi`: on a linear axis, multiples of 1, 2 or 5 times a
/// power of ten, about `n` of them; on a log axis (`lo`, `hi` in decades), the decades,
/// with 2 and 5 between them when the axis spans fewer than three, and every digit when it
/// spans less than one.
fn ticks(lo: f64, hi: f64, log: bool, n: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Vec::new();
    }
    if log {
        let steps: &[f64] = match hi - lo {
            span if span < 1.0 => &[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
            span if span < 3.0 => &[1.0, 2.0, 5.0],
            _ => &[1.0],
        };
        let decades = (lo.floor() as i64)..=(hi.ceil() as i64);
        let at = decades.flat_map(|d| steps.iter().map(move |m| d as f64 + m.log10()));
        let all: Vec<f64> = at.filter(|&v| (lo..=hi).contains(&v)).collect();
        // many decades: every other one
        return if all.len() > 2 * n { all.into_iter().step_by(2).collect() } else { all };
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|&s| s >= raw).unwrap_or(10.0 * power);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// Loss against epochs, one line per labelled curve (the chapter's loss plot).
pub struct LossPlot<'a> {
    /// Title line.
    pub title: String,
    /// Labelled curves; diverged points are left out.
    pub curves: &'a [(String, Curve)],
}

impl LossPlot<'_> {
    /// The y range: from the smallest loss to the largest that fits, i.e. at most 10 × the
    /// largest initial loss; a curve that goes higher leaves through the top edge, marked
    /// there with its value, and does not flatten the others.
    pub fn y_range(&self) -> (f64, f64) {
        let finite = || self.curves.iter().flat_map(|(_, c)| c.loss.iter().copied()).filter(|l| l.is_finite());
        let initial = self.curves.iter().filter_map(|(_, c)| c.loss.first().copied()).fold(0.0, f64::max);
        let cap = 10.0 * initial.max(f64::MIN_POSITIVE);
        let lo = finite().fold(f64::INFINITY, f64::min);
        let hi = finite().filter(|&l| l <= cap).fold(f64::NEG_INFINITY, f64::max);
        if !(lo.is_finite() && hi.is_finite()) {
            return (0.0, 1.0);
        }
        // at least 20 % of the values' size, so that a lone point is not the whole axis
        let span = (hi - lo).max(0.2 * hi.abs()).max(1e-12);
        (lo - 0.05 * span, lo + 1.05 * span)
    }
}

impl Figure for LossPlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let (lo, hi) = self.y_range();
        let x_max = self.curves.iter().filter_map(|(_, c)| c.epochs.last().cloned()).fold(1.0, f64::max);
        // a little room left of 0 so that the first point (epoch 0) is drawn whole
        let x0 = -0.02 * x_max;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x_max * 1.02, lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .max_light_lines(0)
            .x_desc("epoch")
            .y_desc("loss")
            .label_style(("sans-serif", 14))
            .x_label_formatter(&|v| short(*v))
            .y_label_formatter(&|v| short(*v))
            .draw()
            .map_err(err)?;
        let (xr, yr) = ([x0, x_max * 1.02], [lo, hi]);
        let (mut labels, mut shown_points) = (Vec::new(), Vec::new());
        for (i, (label, c)) in self.curves.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let pts: Vec<(f64, f64)> = c.epochs.iter().copied().zip(c.loss.iter().copied()).collect();
            let segments: Vec<_> = pts.windows(2).filter_map(|w| clip(w[0], w[1], xr, yr)).collect();
            let label = match (&c.diverged, c.diverged_epoch) {
                (Some(d), Some(e)) => format!("{label}, diverged at step {} (epoch {e:.2})", d.step),
                _ => label.clone(),
            };
            labels.push(label.clone());
            shown_points.extend(pts.iter().copied().filter(|&p| inside(p, xr, yr)));
            chart
                .draw_series(segments.iter().map(|&(a, b)| PathElement::new(vec![a, b], color.stroke_width(2))))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            // the points themselves, so that a run with a single finite point still shows it
            let shown = pts.iter().filter(|&&p| inside(p, xr, yr));
            chart.draw_series(shown.map(|&p| Circle::new(p, 2, color.filled()))).map_err(err)?;
            // the first point above the view: a marker on the top edge with its value
            if let Some(&(e, l)) = pts.iter().find(|(_, l)| *l > hi) {
                let at = (e, hi);
                chart.draw_series(std::iter::once(TriangleMarker::new(at, 8, color.filled()))).map_err(err)?;
                let style = ("sans-serif", 13).into_font().color(&color).pos(Pos::new(HPos::Left, VPos::Top));
                let text = format!("loss {} at epoch {e:.2}, above the view", short(l));
                chart
                    .draw_series(std::iter::once(Text::new(text, (e + 0.01 * x_max, hi - 0.15 * (hi - lo)), style)))
                    .map_err(err)?;
            }
            // where it diverged: a dashed vertical line at its epoch
            if let Some(e) = c.diverged_epoch {
                let dashes = (0..20).map(|k| {
                    let y = |k: f64| lo + (hi - lo) * k / 20.0;
                    PathElement::new(vec![(e, y(k as f64)), (e, y(k as f64 + 0.5))], color.stroke_width(1))
                });
                chart.draw_series(dashes).map_err(err)?;
            }
        }
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let corner = free_corner(&chart, &shown_points, &labels, SeriesLabelPosition::UpperRight);
        legend(&mut chart, corner)
    }
}

/// One line of a [`LinePlot`].
#[derive(Clone, Debug)]
pub struct Line {
    /// Legend entry.
    pub label: String,
    /// The points, in order; on a log axis, values that are not positive are left out.
    pub points: Vec<(f64, f64)>,
    /// Palette index (lines of one run share a colour).
    pub color: usize,
    /// Dashed (a second coordinate, a bound) rather than solid.
    pub dashed: bool,
}

/// Lines against a shared x axis, the y axis optionally logarithmic, with labelled vertical
/// marks (the effective learning rates, the leaky average's weights and horizons).
pub struct LinePlot<'a> {
    /// Title line.
    pub title: String,
    /// The x axis's name.
    pub x_desc: &'a str,
    /// The y axis's name.
    pub y_desc: &'a str,
    /// A logarithmic y axis.
    pub log_y: bool,
    /// The lines.
    pub lines: &'a [Line],
    /// Vertical marks: the x where one stands, its palette index, its label (the labels
    /// stacked down from the top, in order).
    pub marks: &'a [(f64, usize, String)],
    /// Where the legend goes if it covers no data there; else the corner where it covers
    /// the least.
    pub legend_at: SeriesLabelPosition,
}

impl LinePlot<'_> {
    /// The points as drawn: `log10(y)` on a log axis, non-finite (and, on a log axis,
    /// non-positive) values left out.
    fn drawn(&self, line: &Line) -> Vec<(f64, f64)> {
        let y = |v: f64| if self.log_y { v.log10() } else { v };
        line.points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite() && (!self.log_y || p.1 > 0.0))
            .map(|&(x, v)| (x, y(v)))
            .collect()
    }
}

impl Figure for LinePlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let all: Vec<(f64, f64)> = self.lines.iter().flat_map(|l| self.drawn(l)).collect();
        let range = |v: &mut dyn Iterator<Item = f64>| {
            v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)))
        };
        let (x0, x1) = range(&mut all.iter().map(|p| p.0).chain(self.marks.iter().map(|m| m.0)));
        let (y0, y1) = range(&mut all.iter().map(|p| p.1));
        let (x0, x1) = if x0 < x1 { (x0, x1) } else { (0.0, 1.0) };
        let (y0, y1) = if y0 < y1 {
            (y0, y1)
        } else if y0.is_finite() {
            (y0 - 1.0, y0 + 1.0)
        } else {
            (0.0, 1.0)
        };
        let (xm, ym) = (0.02 * (x1 - x0), 0.05 * (y1 - y0));
        let (xr, yr) = ([x0 - xm, x1 + xm], [y0 - ym, y1 + ym]);
        let log_y = self.log_y;
        let y_ticks = ticks(yr[0], yr[1], log_y, 6);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(xr[0]..xr[1], yr[0]..yr[1])
            .map_err(err)?;
        chart
            .configure_mesh()
            .max_light_lines(0)
            .x_desc(self.x_desc)
            .y_desc(self.y_desc)
            .y_labels(0) // drawn below, at ticks of our own
            .x_label_formatter(&|v| short(*v))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        // the y ticks: 1-2-5 steps, decades on a log axis (10^k exactly, not 10^(k ± an ulp))
        let label = |v: f64| if log_y { short(10f64.powf(v) * (1.0 + 1e-12)) } else { short(v) };
        let style = ("sans-serif", 14).into_font().color(&BLACK).pos(Pos::new(HPos::Right, VPos::Center));
        let grid = BLACK.mix(0.12).stroke_width(1);
        chart
            .draw_series(y_ticks.iter().map(|&t| PathElement::new(vec![(xr[0], t), (xr[1], t)], grid)))
            .map_err(err)?;
        for t in y_ticks {
            let (px, py) = chart.backend_coord(&(xr[0], t));
            root.draw(&PathElement::new(vec![(px - 5, py), (px, py)], BLACK.stroke_width(1))).map_err(err)?;
            root.draw(&Text::new(label(t), (px - 8, py), style.clone())).map_err(err)?;
        }
        for line in self.lines {
            let color = PALETTE[line.color % PALETTE.len()];
            let pts = self.drawn(line);
            let style = color.stroke_width(2);
            let segments: Vec<_> = pts.windows(2).filter_map(|w| clip(w[0], w[1], xr, yr)).collect();
            let pieces: Vec<((f64, f64), (f64, f64))> =
                if line.dashed { segments.iter().flat_map(|&(a, b)| dashes(a, b, 8)).collect() } else { segments };
            let dashed = line.dashed;
            let series =
                chart.draw_series(pieces.iter().map(|&(a, b)| PathElement::new(vec![a, b], style))).map_err(err)?;
            // an unlabelled line (the second bound of a range) has no legend entry of its own
            if !line.label.is_empty() {
                series.label(line.label.clone()).legend(move |(x, y)| {
                    let end = if dashed { x + 8 } else { x + 20 };
                    PathElement::new(vec![(x, y), (end, y)], color.stroke_width(2))
                });
            }
            let shown = pts.iter().filter(|&&p| inside(p, xr, yr));
            chart.draw_series(shown.map(|&p| Circle::new(p, 2, color.filled()))).map_err(err)?;
        }
        for (k, (x, color, label)) in self.marks.iter().enumerate() {
            let color = PALETTE[color % PALETTE.len()];
            let pieces = dashes((*x, yr[0]), (*x, yr[1]), 20);
            chart
                .draw_series(pieces.iter().map(|&(a, b)| PathElement::new(vec![a, b], color.stroke_width(1))))
                .map_err(err)?;
            let style = ("sans-serif", 13).into_font().color(&color).pos(Pos::new(HPos::Left, VPos::Top));
            let at = (*x + 0.005 * (xr[1] - xr[0]), yr[1] - (0.02 + 0.06 * k as f64) * (yr[1] - yr[0]));
            chart.draw_series(std::iter::once(Text::new(label.clone(), at, style))).map_err(err)?;
        }
        let drawn: Vec<(f64, f64)> =
            self.lines.iter().flat_map(|l| self.drawn(l)).filter(|&p| inside(p, xr, yr)).collect();
        let labels: Vec<&str> = self.lines.iter().map(|l| l.label.as_str()).filter(|l| !l.is_empty()).collect();
        let corner = free_corner(&chart, &drawn, &labels, self.legend_at.clone());
        legend(&mut chart, corner)
    }
}

/// The segment `a`–`b` as `n` dashes (each half the length of its period).
fn dashes(a: (f64, f64), b: (f64, f64), n: usize) -> Vec<((f64, f64), (f64, f64))> {
    let at = |t: f64| (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
    (0..n).map(|k| (at(k as f64 / n as f64), at((k as f64 + 0.5) / n as f64))).collect()
}

/// Final loss over a learning-rate x γ grid; diverged cells are black and marked.
pub struct Heatmap<'a> {
    /// Title line.
    pub title: String,
    /// Column labels (learning rates).
    pub lrs: &'a [f64],
    /// Row labels (γ).
    pub gammas: &'a [f64],
    /// `values[row][col]`: mean final loss, `None` when the run diverged.
    pub values: &'a [Vec<Option<f64>>],
}

impl Figure for Heatmap<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let (nc, nr) = (self.lrs.len(), self.gammas.len());
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d((0..nc.max(1) - 1).into_segmented(), (0..nr.max(1) - 1).into_segmented())
            .map_err(err)?;
        let (lrs, gammas) = (self.lrs, self.gammas);
        let name = |v: &SegmentValue<usize>, axis: &[f64]| match v {
            SegmentValue::CenterOf(k) => axis.get(*k).map(|x| format!("{x}")).unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("learning rate")
            .y_desc("gamma")
            .x_labels(nc)
            .y_labels(nr)
            .x_label_formatter(&|v| name(v, lrs))
            .y_label_formatter(&|v| name(v, gammas))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        let finite: Vec<f64> = self.values.iter().flatten().flatten().cloned().collect();
        let lo = finite.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = finite.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        // position on a log scale between the best and the worst finite cell
        let shade = |v: f64| if hi > lo { ((v.ln() - lo.ln()) / (hi.ln() - lo.ln())).clamp(0.0, 1.0) } else { 0.0 };
        for (r, row) in self.values.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                use SegmentValue::{CenterOf, Exact};
                let (fill, text, ink) = match v {
                    Some(v) => {
                        let ink = if shade(*v) > 0.6 { BLACK } else { WHITE };
                        (ViridisRGB::get_color(shade(*v)), format!("{v:.4}"), ink)
                    }
                    None => (RGBColor(0, 0, 0), "diverged".to_string(), WHITE),
                };
                let cell = [(Exact(c), Exact(r)), (Exact(c + 1), Exact(r + 1))];
                chart.draw_series(std::iter::once(Rectangle::new(cell, fill.filled()))).map_err(err)?;
                let style = ("sans-serif", 14).into_font().color(&ink).pos(Pos::new(HPos::Center, VPos::Center));
                chart.draw_series(std::iter::once(Text::new(text, (CenterOf(c), CenterOf(r)), style))).map_err(err)?;
            }
        }
        Ok(())
    }
}
