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

#[test]
fn unwritable_destination_is_an_error() {
    let o = trace2d::objective("saddle").unwrap();
    let fig = ContourPlot { title: "t".into(), objective: &o, trajectories: &[] };
    let e = plot::save(&fig, Path::new("/nonexistent-dir/fig"), (100, 100)).unwrap_err();
    assert!(e.to_string().contains("/nonexistent-dir/fig"), "{e}");
}
