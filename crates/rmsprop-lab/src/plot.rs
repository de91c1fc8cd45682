//! Figures: the 2-D contour plot with trajectories, loss curves, and the sweep heatmap.
//! Each figure draws on any plotters [`DrawingBackend`]; [`save`] writes it as SVG and
//! PNG with an embedded DejaVu Sans font, so the output is the same on every machine.
//! Plotting only draws what it is handed: every number comes from the caller.

use crate::trace2d::{Objective, Trajectory};
use crate::train::Curve;
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

/// Writes `figure` to `stem.svg` and `stem.png` at `size` pixels and returns both paths.
pub fn save(figure: &impl Figure, stem: &Path, size: (u32, u32)) -> Result<[PathBuf; 2], PlotError> {
    register_font();
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
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
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
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
    /// The plotted region: the chapter's (-5.5, 1) x (-3, 1), widened to the points of
    /// the trajectories that stay within ±1000 (a diverging run is drawn while in view
    /// rather than flattening the picture).
    pub fn bounds(&self) -> ([f64; 2], [f64; 2]) {
        let (mut x, mut y) = ([-5.5f64, 1.0], [-3.0f64, 1.0]);
        let bounded = |t: &Trajectory| t.points.iter().flatten().all(|v| v.abs() <= 1e3);
        for p in self.trajectories.iter().filter(|(_, t)| bounded(t)).flat_map(|(_, t)| &t.points) {
            x = [x[0].min(p[0]), x[1].max(p[0])];
            y = [y[0].min(p[1]), y[1].max(p[1])];
        }
        let pad = |[a, b]: [f64; 2]| [a - 0.05 * (b - a), b + 0.05 * (b - a)];
        (pad(x), pad(y))
    }
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
            .light_line_style(WHITE)
            .x_desc("x1")
            .y_desc("x2")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        // contour lines on a 120 x 120 grid, levels spaced geometrically
        let n = 120;
        let (dx, dy) = ((xr[1] - xr[0]) / (n - 1) as f64, (yr[1] - yr[0]) / (n - 1) as f64);
        let values: Vec<f64> = (0..n * n)
            .map(|k| (self.objective.eval)([xr[0] + (k % n) as f64 * dx, yr[0] + (k / n) as f64 * dy]).0)
            .collect();
        let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let span = (hi - lo).max(1e-12);
        // quadratic spacing: evenly spaced in sqrt(f), like distance from the minimum
        let levels: Vec<f64> = (1..=14).map(|k| lo + span * (k as f64 / 15.0).powi(2)).collect();
        let lines = contour::ContourBuilder::new(n, n, true)
            .x_origin(xr[0])
            .y_origin(yr[0])
            .x_step(dx)
            .y_step(dy)
            .lines(&values, &levels)
            .map_err(err)?;
        let grey = RGBColor(170, 170, 170);
        for line in &lines {
            for ls in &line.geometry().0 {
                let pts: Vec<(f64, f64)> = ls.0.iter().map(|c| (c.x, c.y)).collect();
                chart.draw_series(std::iter::once(PathElement::new(pts, grey.stroke_width(1)))).map_err(err)?;
            }
        }
        for (i, (label, t)) in self.trajectories.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let pts: Vec<(f64, f64)> =
                t.points.iter().filter(|p| p[0].is_finite() && p[1].is_finite()).map(|p| (p[0], p[1])).collect();
            let inside: Vec<(f64, f64)> = pts
                .iter()
                .cloned()
                .filter(|(a, b)| (xr[0]..=xr[1]).contains(a) && (yr[0]..=yr[1]).contains(b))
                .collect();
            chart
                .draw_series(LineSeries::new(inside.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(inside.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(err)?;
        }
        legend(&mut chart)
    }
}

/// Loss against epochs, one line per labelled curve (the chapter's loss plot).
pub struct LossPlot<'a> {
    /// Title line.
    pub title: String,
    /// Labelled curves; diverged points are left out.
    pub curves: &'a [(String, Curve)],
}

impl Figure for LossPlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let finite = || self.curves.iter().flat_map(|(_, c)| c.loss.iter().cloned()).filter(|l| l.is_finite());
        let lo = finite().fold(f64::INFINITY, f64::min).min(0.2);
        let hi = finite().fold(f64::NEG_INFINITY, f64::max).max(lo + 0.1).min(10.0 * lo.max(0.1));
        let x_max = self.curves.iter().filter_map(|(_, c)| c.epochs.last().cloned()).fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc("epoch")
            .y_desc("loss")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        for (i, (label, c)) in self.curves.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let pts: Vec<(f64, f64)> = c
                .epochs
                .iter()
                .zip(&c.loss)
                .filter(|(_, l)| l.is_finite())
                .map(|(&e, &l)| (e, l.clamp(lo, hi)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(err)?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        legend(&mut chart)
    }
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
