//! The chapter's 2-D demonstration: an optimizer's trajectory on a two-variable
//! objective (D2L §12.8: `f(x) = 0.1 x1² + 2 x2²`, η 0.4, γ 0.9, 20 steps from (-5, -2)).

use crate::divergence::{Divergence, Watch, number};
use crate::effective;
use rmsprop::{NonFinitePolicy, Optimizer, OptimizerConfig};
use rmsprop_golden::{Objective2d, objective_2d};
use std::collections::BTreeMap;

/// A named 2-D objective: value and gradient.
#[derive(Clone, Copy, Debug)]
pub struct Objective {
    /// Short name (`chapter`, `rotated`, `rosenbrock`, `beale`, `saddle`).
    pub name: &'static str,
    /// The formula, for titles.
    pub formula: &'static str,
    /// Value and gradient at a point.
    pub eval: Objective2d,
    /// Where its minimum is, if it has one (the figures mark it).
    pub minimum: Option<[f64; 2]>,
}

/// Every objective by name, the chapter's first.
pub fn objectives() -> Vec<Objective> {
    let chapter = "f(x1,x2) = 0.1*x1^2 + 2*x2^2";
    let rotated = "f(x1,x2) = 0.1*(x1+x2)^2 + 2*(x1-x2)^2";
    vec![
        Objective {
            name: "chapter",
            formula: chapter,
            eval: objective_2d(chapter).expect("known"),
            minimum: Some([0.0, 0.0]),
        },
        Objective {
            name: "rotated",
            formula: rotated,
            eval: objective_2d(rotated).expect("known"),
            minimum: Some([0.0, 0.0]),
        },
        Objective {
            name: "rosenbrock",
            formula: "f(x1,x2) = (1-x1)^2 + 100*(x2-x1^2)^2",
            eval: |[a, b]| {
                let d = b - a * a;
                ((1.0 - a).powi(2) + 100.0 * d * d, [-2.0 * (1.0 - a) - 400.0 * a * d, 200.0 * d])
            },
            minimum: Some([1.0, 1.0]),
        },
        Objective {
            name: "beale",
            formula: "f(x1,x2) = (1.5-x1+x1*x2)^2 + (2.25-x1+x1*x2^2)^2 + (2.625-x1+x1*x2^3)^2",
            eval: |[a, b]| {
                let t = [1.5 - a + a * b, 2.25 - a + a * b * b, 2.625 - a + a * b * b * b];
                let f = t.iter().map(|v| v * v).sum();
                let da = 2.0 * (t[0] * (b - 1.0) + t[1] * (b * b - 1.0) + t[2] * (b * b * b - 1.0));
                let db = 2.0 * (t[0] * a + t[1] * 2.0 * a * b + t[2] * 3.0 * a * b * b);
                (f, [da, db])
            },
            minimum: Some([3.0, 0.5]),
        },
        Objective {
            name: "saddle",
            formula: "f(x1,x2) = x1^2 - x2^2",
            eval: |[a, b]| (a * a - b * b, [2.0 * a, -2.0 * b]),
            minimum: None, // a saddle point at the origin, no minimum
        },
    ]
}

/// The objective called `name`.
pub fn objective(name: &str) -> Option<Objective> {
    objectives().into_iter().find(|o| o.name == name)
}

/// A trajectory: the start point and the point after every step, up to the step where it
/// diverged, if it did (see [`crate::divergence`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Trajectory {
    /// The start and the point after each step taken (`steps + 1` points for a run that did
    /// not diverge; up to the last finite point for one that did).
    pub points: Vec<[f64; 2]>,
    /// Where and why it diverged.
    pub diverged: Option<Divergence>,
    /// What the optimizer held after each step taken (one entry per step, the diverging
    /// one included).
    pub steps: Vec<StepState>,
}

/// The optimizer after one step of a 2-D run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StepState {
    /// Each state array's two values, by slot name (`square_avg`, `grad_avg`,
    /// `momentum_buffer`, `sum`, `exp_avg`, ...).
    pub state: BTreeMap<&'static str, [f64; 2]>,
    /// The per-coordinate rate the step applied (see [`crate::effective`]): `η/√(s + ε)`
    /// for the chapter's RMSProp.
    pub effective_lr: [f64; 2],
}

impl Trajectory {
    /// The chapter's printed line, `epoch 20, x1 -0.010599, x2 0.000000`, or
    /// `diverged at step k: ...` for a run that diverged.
    pub fn printed(&self) -> String {
        if let Some(d) = &self.diverged {
            return d.to_string();
        }
        let [x1, x2] = *self.points.last().expect("the start point is always there");
        format!("epoch {}, x1 {}, x2 {}", self.points.len() - 1, number(x1), number(x2))
    }
    /// True when the run diverged.
    pub fn diverged(&self) -> bool {
        self.diverged.is_some()
    }
}

/// Runs up to `steps` steps of `config` on `objective` from `start`, in `f64`, and stops
/// early where the run diverges (the γ = 1 exercise does: that is its point).
pub fn run(
    objective: &Objective,
    config: OptimizerConfig,
    start: [f64; 2],
    steps: usize,
) -> rmsprop::Result<Trajectory> {
    let states = config.state_names();
    let mut opt =
        Optimizer::<f64>::new(config.clone(), &[("x", &[2][..])])?.with_nonfinite_policy(NonFinitePolicy::Propagate);
    let watch = Watch::new(&start, (objective.eval)(start).0);
    let mut x = [start.to_vec()];
    let mut points = vec![start];
    let mut records = Vec::with_capacity(steps);
    let pair = |v: &[f64]| [v[0], v[1]];
    let mut held: BTreeMap<&'static str, [f64; 2]> =
        states.iter().filter_map(|&k| Some((k, pair(&opt.state("x", k)?)))).collect();
    for step in 1..=steps as u64 {
        let (_, g) = (objective.eval)([x[0][0], x[0][1]]);
        opt.step(&mut x, &[g])?;
        let before = std::mem::take(&mut held);
        held = states.iter().filter_map(|&k| Some((k, pair(&opt.state("x", k)?)))).collect();
        let slot = |m: &BTreeMap<&'static str, [f64; 2]>, k: &str| m.get(k).map(|v| v.to_vec());
        let rate = effective::rates(&config, step, 2, &|k| slot(&held, k), Some(&|k| slot(&before, k)));
        let effective_lr = rate.map_or([f64::NAN; 2], |r| [r[0], r[1]]);
        records.push(StepState { state: held.clone(), effective_lr });
        let p = [x[0][0], x[0][1]];
        if p.iter().all(|v| v.is_finite()) {
            points.push(p);
        }
        let diverged = watch
            .params(step, "x", x[0].iter().copied())
            .or_else(|| states.iter().find_map(|s| watch.state(step, s, "x", held.get(s)?.iter().copied())))
            .or_else(|| watch.loss(step, (objective.eval)(p).0));
        if diverged.is_some() {
            return Ok(Trajectory { points, diverged, steps: records });
        }
    }
    Ok(Trajectory { points, diverged: None, steps: records })
}
