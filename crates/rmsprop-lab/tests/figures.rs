//! The figures open as valid SVG and PNG and carry their labels.

use rmsprop_lab::plot::{self, ContourPlot, Heatmap, LossPlot};
use rmsprop_lab::train::{Protocol, Update, train};
use rmsprop_lab::{data, trace2d};
use std::path::{Path, PathBuf};

fn out(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rmsprop-fig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn check(paths: &[PathBuf; 2], labels: &[&str], size: (u32, u32)) {
    let svg = std::fs::read_to_string(&paths[0]).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{}: not XML: {e}", paths[0].display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> =
        doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(str::trim).collect();
    for l in labels {
        assert!(texts.contains(l), "{} has no text {l:?} (has {texts:?})", paths[0].display());
    }
    let png = image::open(&paths[1]).unwrap_or_else(|e| panic!("{}: {e}", paths[1].display()));
    assert_eq!((png.width(), png.height()), size);
    let rgb = png.to_rgb8();
    let distinct: std::collections::HashSet<_> = rgb.pixels().map(|p| p.0).collect();
    assert!(distinct.len() > 10, "the PNG is (nearly) blank");
}

#[test]
fn contour_loss_and_heatmap_figures() {
    let o = trace2d::objective("chapter").unwrap();
    let t = trace2d::run(&o, rmsprop::RmsProp::default().with_lr(0.4).into(), [-5.0, -2.0], 20).unwrap();
    let trajs = [("RMSProp".to_string(), t)];
    let fig = ContourPlot { title: "contour title".into(), objective: &o, trajectories: &trajs };
    check(
        &plot::save(&fig, &out("contour"), (640, 480)).unwrap(),
        &["contour title", "x1", "x2", "RMSProp"],
        (640, 480),
    );

    let d = data::embedded().truncated(200);
    let c = train(&d, &Update::Scratch { lr: 0.01, gamma: 0.9 }, &Protocol::default()).unwrap();
    let curves = [("scratch".to_string(), c)];
    let fig = LossPlot { title: "loss title".into(), curves: &curves };
    check(
        &plot::save(&fig, &out("loss"), (500, 350)).unwrap(),
        &["loss title", "epoch", "loss", "scratch"],
        (500, 350),
    );

    let values = vec![vec![Some(0.25), Some(0.3)], vec![None, Some(0.5)]];
    let fig = Heatmap { title: "grid".into(), lrs: &[0.01, 0.1], gammas: &[0.9, 1.0], values: &values };
    check(&plot::save(&fig, &out("heat"), (500, 400)).unwrap(), &["grid", "diverged", "learning rate"], (500, 400));
}

/// Lines on a log axis: labelled lines and marks, a dashed line without a legend entry,
/// and values that a log axis cannot show (0, negative, NaN) left out rather than failing.
#[test]
fn line_figures_on_a_log_axis() {
    use rmsprop_lab::plot::{Line, LinePlot, SeriesLabelPosition};
    let lines = [
        Line {
            label: "falling".into(),
            points: (1..=20).map(|k| (k as f64, 1.0 / k as f64)).collect(),
            color: 0,
            dashed: false,
        },
        Line {
            label: String::new(),
            points: vec![(1.0, 0.0), (2.0, -1.0), (3.0, f64::NAN), (4.0, 0.5)],
            color: 1,
            dashed: true,
        },
    ];
    let marks = [(10.0, 0, "horizon 10".to_string())];
    let fig = LinePlot {
        title: "rates".into(),
        x_desc: "step",
        y_desc: "rate (log scale)",
        log_y: true,
        lines: &lines,
        marks: &marks,
        legend_at: SeriesLabelPosition::LowerLeft,
    };
    let files = plot::save(&fig, &out("lines"), (600, 400)).unwrap();
    check(&files, &["rates", "step", "falling", "horizon 10"], (600, 400));
    // 1/k from 1 to 0.05 on a log axis: ticked at 1-2-5 steps of each decade, written as
    // people write them, never at 10^0.2 = 1.585
    check(&files, &["0.05", "0.1", "0.2", "0.5", "1", "2", "20"], (600, 400));
    let svg = std::fs::read_to_string(&files[0]).unwrap();
    assert!(!svg.contains("1.585") && !svg.contains("0.631") && !svg.contains("0.100") && !svg.contains("2.0"));
}

#[test]
fn unwritable_destination_is_an_error() {
    let o = trace2d::objective("saddle").unwrap();
    let fig = ContourPlot { title: "t".into(), objective: &o, trajectories: &[] };
    let e = plot::save(&fig, Path::new("/nonexistent-dir/fig"), (100, 100)).unwrap_err();
    assert!(e.to_string().contains("/nonexistent-dir/fig"), "{e}");
}

/// A run that leaves the view is drawn to the border and marked there with its step; the
/// view widens to what fits instead of clipping silently.
#[test]
fn a_run_that_leaves_the_view_is_marked_where_it_does() {
    let o = trace2d::objective("chapter").unwrap();
    let rms = |gamma| rmsprop::RmsProp::default().with_lr(0.4).with_decay(gamma).into();
    let g1 = trace2d::run(&o, rms(1.0), [-5.0, -2.0], 20).unwrap();
    let g0 = trace2d::run(&o, rms(0.0), [-5.0, -2.0], 20).unwrap();
    assert_eq!(g1.diverged.as_ref().map(|d| d.step), Some(1));
    let trajs = [("gamma 0".to_string(), g0), ("gamma 1".to_string(), g1)];
    let fig = ContourPlot { title: "t".into(), objective: &o, trajectories: &trajs };
    let (x, y) = fig.bounds();
    assert!(x[0] < -5.0 && x[1] > 0.0 && y[0] < -2.0 && y[1] < 5.0, "{x:?} {y:?}: widened by the point at 3198");
    assert_eq!(fig.exits().iter().map(|&(i, step, _)| (i, step)).collect::<Vec<_>>(), [(1, 1)]);
    let paths = plot::save(&fig, &out("leaves"), (640, 480)).unwrap();
    check(&paths, &["gamma 0", "gamma 1, diverged at step 1"], (640, 480));
    let svg = std::fs::read_to_string(&paths[0]).unwrap();
    assert!(svg.contains("step 1 leaves the view (to 395, 3198)"), "no exit marker");
    // a wide but finite run widens the view instead
    let far = rmsprop::RmsProp::default().with_lr(3.0).into();
    let t = trace2d::run(&o, far, [-5.0, -2.0], 5).unwrap();
    assert!(!t.diverged() && t.points.iter().any(|p| p[0].abs() > 6.0 || p[1].abs() > 3.0), "{:?}", t.points);
    let far = [("far".to_string(), t)];
    let fig = ContourPlot { title: "t".into(), objective: &o, trajectories: &far };
    assert!(fig.exits().is_empty());
}

/// A curve with one finite point still shows it; a loss far above the view is marked.
#[test]
fn a_diverged_loss_curve_shows_its_first_point_and_where_it_went() {
    let d = data::embedded().truncated(300);
    let c = train(&d, &Update::Scratch { lr: 0.01, gamma: 1.0 }, &Protocol::default()).unwrap();
    assert!(c.diverged(), "{}", c.printed());
    let curves = [("gamma 1".to_string(), c.clone())];
    let fig = LossPlot { title: "diverged".into(), curves: &curves };
    let (lo, hi) = fig.y_range();
    assert!(lo <= c.loss[0] && c.loss[0] <= hi, "the first point {} is outside {lo}..{hi}", c.loss[0]);
    let paths = plot::save(&fig, &out("diverged-loss"), (500, 350)).unwrap();
    let svg = std::fs::read_to_string(&paths[0]).unwrap();
    assert!(svg.contains("<circle"), "no point drawn");
    assert!(svg.contains("above the view") || c.loss.iter().all(|&l| l <= hi), "no mark for the point above the view");
    let step = c.diverged.as_ref().unwrap().step;
    let label = format!("gamma 1, diverged at step {step} (epoch {:.2})", c.diverged_epoch.unwrap());
    check(&paths, &[&label[..]], (500, 350));
}

/// A legend goes where it covers no data: lines along the top (the preferred upper right
/// and the upper left) and across the lower right leave only the lower left free.
#[test]
fn the_legend_avoids_the_data() {
    use rmsprop_lab::plot::{Line, LinePlot, SeriesLabelPosition};
    let line = |k: usize, y: f64, from: usize| Line {
        label: format!("line {k}"),
        points: (from..=40).map(|i| (i as f64, y)).collect(),
        color: k,
        dashed: false,
    };
    let lines = [line(0, 14.0, 0), line(1, 13.0, 0), line(2, 12.0, 0), line(3, 10.0, 20)];
    let fig = LinePlot {
        title: "t".into(),
        x_desc: "x",
        y_desc: "y",
        log_y: false,
        lines: &lines,
        marks: &[],
        legend_at: SeriesLabelPosition::UpperRight,
    };
    let files = plot::save(&fig, &out("legend"), (600, 400)).unwrap();
    let svg = std::fs::read_to_string(&files[0]).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let text = doc.descendants().find(|n| n.has_tag_name("text") && n.text().is_some_and(|t| t.trim() == "line 0"));
    let text = text.expect("the legend's first entry");
    let (x, y): (f64, f64) =
        (text.attribute("x").unwrap().parse().unwrap(), text.attribute("y").unwrap().parse().unwrap());
    assert!(x < 300.0 && y > 200.0, "the legend is at ({x}, {y}), not in the empty lower left");
}

/// A contour figure marks the objective's minimum (and takes it into the view), and a run
/// that hardly leaves its start says so in the legend.
#[test]
fn the_minimum_is_marked_and_a_run_that_barely_moved_says_so() {
    let o = trace2d::objective("rosenbrock").unwrap();
    let slow = trace2d::run(&o, rmsprop::RmsProp::default().with_lr(1e-4).into(), [-5.0, -2.0], 20).unwrap();
    let trajs = [("slow".to_string(), slow)];
    let fig = ContourPlot { title: "t".into(), objective: &o, trajectories: &trajs };
    let (x, y) = fig.bounds();
    assert!(x[0] < 1.0 && 1.0 < x[1] && y[0] < 1.0 && 1.0 < y[1], "{x:?} {y:?}");
    check(
        &plot::save(&fig, &out("minimum"), (640, 480)).unwrap(),
        &["minimum (1, 1)", "slow, barely moved"],
        (640, 480),
    );
    // the saddle has no minimum to mark
    let saddle = trace2d::objective("saddle").unwrap();
    assert!(saddle.minimum.is_none() && trace2d::objectives().iter().filter(|o| o.minimum.is_some()).count() == 4);
}
