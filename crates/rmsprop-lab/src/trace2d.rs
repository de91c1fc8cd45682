//! The chapter's 2-D demonstration: an optimizer's trajectory on a two-variable
//! objective (D2L §12.8: `f(x) = 0.1 x1² + 2 x2²`, η 0.4, γ 0.9, 20 steps from (-5, -2)).

use rmsprop::golden::{Objective2d, objective_2d};
use rmsprop::{NonFinitePolicy, Optimizer, OptimizerConfig};

/// A named 2-D objective: value and gradient.
#[derive(Clone, Copy, Debug)]
pub struct Objective {
    /// Short name (`chapter`, `rotated`, `rosenbrock`, `beale`, `saddle`).
    pub name: &'static str,
    /// The formula, for titles.
    pub formula: &'static str,
    /// Value and gradient at a point.
    pub eval: Objective2d,
}

/// Every objective by name, the chapter's first.
pub fn objectives() -> Vec<Objective> {
    let chapter = "f(x1,x2) = 0.1*x1^2 + 2*x2^2";
    let rotated = "f(x1,x2) = 0.1*(x1+x2)^2 + 2*(x1-x2)^2";
    vec![
        Objective { name: "chapter", formula: chapter, eval: objective_2d(chapter).expect("known") },
        Objective { name: "rotated", formula: rotated, eval: objective_2d(rotated).expect("known") },
        Objective {
            name: "rosenbrock",
            formula: "f(x1,x2) = (1-x1)^2 + 100*(x2-x1^2)^2",
            eval: |[a, b]| {
                let d = b - a * a;
                ((1.0 - a).powi(2) + 100.0 * d * d, [-2.0 * (1.0 - a) - 400.0 * a * d, 200.0 * d])
            },
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
        },
        Objective {
            name: "saddle",
            formula: "f(x1,x2) = x1^2 - x2^2",
            eval: |[a, b]| (a * a - b * b, [2.0 * a, -2.0 * b]),
        },
    ]
}

/// The objective called `name`.
pub fn objective(name: &str) -> Option<Objective> {
    objectives().into_iter().find(|o| o.name == name)
}

/// A trajectory: the start point and the point after every step.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Trajectory {
    /// `steps + 1` points.
    pub points: Vec<[f64; 2]>,
}

impl Trajectory {
    /// The chapter's printed line, `epoch 20, x1 -0.010599, x2 0.000000`.
    pub fn printed(&self) -> String {
        let [x1, x2] = *self.points.last().expect("the start point is always there");
        format!("epoch {}, x1 {x1:.6}, x2 {x2:.6}", self.points.len() - 1)
    }
    /// True when a coordinate left the finite numbers.
    pub fn diverged(&self) -> bool {
        self.points.iter().flatten().any(|v| !v.is_finite())
    }
}

/// Runs `steps` steps of `config` on `objective` from `start`, in `f64`. Non-finite
/// gradients propagate (the γ = 1 exercise diverges, and that is the point).
pub fn run(
    objective: &Objective,
    config: OptimizerConfig,
    start: [f64; 2],
    steps: usize,
) -> rmsprop::Result<Trajectory> {
    let mut opt = Optimizer::<f64>::new(config, &[("x", &[2][..])])?.with_nonfinite_policy(NonFinitePolicy::Propagate);
    let mut x = [start.to_vec()];
    let mut points = vec![start];
    for _ in 0..steps {
        let (_, g) = (objective.eval)([x[0][0], x[0][1]]);
        opt.step(&mut x, &[g])?;
        points.push([x[0][0], x[0][1]]);
    }
    Ok(Trajectory { points })
}
