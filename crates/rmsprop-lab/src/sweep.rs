//! The chapter's exercises as a grid: learning rates x γ (0 and 1 included), several
//! seeds each, run in parallel (and, through [`sweep_part`] and [`assemble`], spread over
//! processes). A run whose loss leaves the finite numbers is reported as diverged, not as
//! a crash.

use crate::data::Dataset;
use crate::train::{Curve, Protocol, Share, Update, train};
use rayon::prelude::*;
use rmsprop::by_name::{self, Value};

/// What to run.
#[derive(Clone, Debug)]
pub struct SweepSpec {
    /// Optimizer by name (`mxnet.rmsprop`, `pytorch.rmsprop`, `d2l.adagrad`, ...).
    pub optimizer: String,
    /// Learning rates.
    pub lrs: Vec<f64>,
    /// Values of the decay γ; empty for optimizers without one (Adagrad, SGD).
    pub gammas: Vec<f64>,
    /// Seeds per cell.
    pub seeds: Vec<u64>,
    /// The training protocol (its seed is replaced by each of `seeds`).
    pub protocol: Protocol,
    /// Every other hyperparameter of every cell, by name (`state_storage`, `eps`, ...);
    /// a cell's `lr` and `decay` are its own.
    pub hyperparameters: Vec<(String, Value)>,
}

impl SweepSpec {
    /// The number of runs: cells (lr x γ) x seeds.
    pub fn runs(&self) -> usize {
        self.lrs.len() * self.gammas.len().max(1) * self.seeds.len()
    }
}

/// One cell of the grid.
#[derive(Clone, Debug)]
pub struct Cell {
    /// Optimizer name.
    pub optimizer: String,
    /// Learning rate.
    pub lr: f64,
    /// γ, if the optimizer has one.
    pub gamma: Option<f64>,
    /// The seeds, in order.
    pub seeds: Vec<u64>,
    /// One curve per seed, in `seeds` order.
    pub curves: Vec<Curve>,
}

/// The final losses of a cell's seeds: mean, population standard deviation, range.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Spread {
    /// Mean over seeds.
    pub mean: f64,
    /// Population standard deviation over seeds.
    pub std: f64,
    /// Smallest final loss.
    pub min: f64,
    /// Largest final loss.
    pub max: f64,
}

impl Cell {
    /// True when any seed's run diverged.
    pub fn diverged(&self) -> bool {
        self.curves.iter().any(Curve::diverged)
    }
    /// How many seeds' runs diverged.
    pub fn diverged_seeds(&self) -> usize {
        self.curves.iter().filter(|c| c.diverged()).count()
    }
    /// The earliest step at which a seed's run diverged.
    pub fn first_divergence(&self) -> Option<u64> {
        self.first_diverged().map(|(step, _)| step)
    }
    /// The earliest step at which a seed's run diverged, and that seed (the first in
    /// `seeds` order, if several diverged there).
    pub fn first_diverged(&self) -> Option<(u64, u64)> {
        let at = |(c, seed): (&Curve, &u64)| c.diverged.as_ref().map(|d| (d.step, *seed));
        self.curves.iter().zip(&self.seeds).filter_map(at).min_by_key(|&(step, _)| step)
    }
    /// The final losses over seeds; `None` when any seed diverged.
    pub fn spread(&self) -> Option<Spread> {
        if self.diverged() || self.curves.is_empty() {
            return None;
        }
        let l: Vec<f64> = self.curves.iter().map(Curve::final_loss).collect();
        let mean = l.iter().sum::<f64>() / l.len() as f64;
        let std = (l.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / l.len() as f64).sqrt();
        Some(Spread {
            mean,
            std,
            min: l.iter().copied().fold(f64::INFINITY, f64::min),
            max: l.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
    /// Mean final loss over seeds; `None` when any seed diverged.
    pub fn mean_final_loss(&self) -> Option<f64> {
        self.spread().map(|s| s.mean)
    }
    /// `0.245398 (0.2441–0.2467)`, or `diverged (3 of 3 seeds, first at step 2, seed 1)`.
    pub fn summary(&self) -> String {
        match (self.spread(), self.first_diverged()) {
            (Some(s), _) => format!("{:.6} ({:.6}–{:.6})", s.mean, s.min, s.max),
            (None, Some((step, seed))) => format!(
                "diverged ({} of {} seeds, first at step {step}, seed {seed})",
                self.diverged_seeds(),
                self.curves.len()
            ),
            (None, None) => "no runs".into(),
        }
    }
}

/// Runs every (lr, γ, seed) of `spec` on `data` in parallel; `tick` is called once per
/// finished run (for a progress bar). Cells come back in grid order (γ outer, lr inner).
///
/// ```
/// use rmsprop_lab::{chapter, sweep::{self, SweepSpec}, train::Protocol};
/// let data = chapter::chapter_data(None, Some(100)).unwrap();
/// let spec = SweepSpec {
///     optimizer: "mxnet.rmsprop".into(),
///     lrs: vec![0.01],
///     gammas: vec![0.9, 1.0],
///     seeds: vec![0],
///     protocol: Protocol::default(),
///     hyperparameters: vec![],
/// };
/// let cells = sweep::sweep(&data, &spec, &|| ()).unwrap();
/// assert_eq!(cells.len(), 2);
/// assert!(!cells[0].diverged());
/// ```
pub fn sweep(data: &Dataset, spec: &SweepSpec, tick: &(dyn Fn() + Sync)) -> rmsprop::Result<Vec<Cell>> {
    assemble(spec, vec![sweep_part(data, spec, Share::ALL, tick)?])
}

/// The grid's cells, `(lr, γ)` in grid order.
fn grid(spec: &SweepSpec) -> Vec<(f64, Option<f64>)> {
    let gammas: Vec<Option<f64>> =
        if spec.gammas.is_empty() { vec![None] } else { spec.gammas.iter().copied().map(Some).collect() };
    gammas.iter().flat_map(|&g| spec.lrs.iter().map(move |&lr| (lr, g))).collect()
}

/// The share of the grid's runs of process `share.rank` of `share.size` (for a sweep
/// spread over processes): the runs `i` with `i % size == rank`, in the grid's order of
/// runs (cell by cell, each cell's seeds in order), run in parallel. Every process
/// validates the whole grid first. [`assemble`] puts the processes' curves together.
pub fn sweep_part(
    data: &Dataset,
    spec: &SweepSpec,
    share: Share,
    tick: &(dyn Fn() + Sync),
) -> rmsprop::Result<Vec<Curve>> {
    // build (and so validate) every configuration before running anything
    let configs = grid(spec)
        .into_iter()
        .map(|(lr, gamma)| {
            let mut h = spec.hyperparameters.clone();
            h.push(("lr".into(), Value::Num(lr)));
            if let Some(g) = gamma {
                h.push(("decay".into(), Value::Num(g)));
            }
            by_name::config(&spec.optimizer, h)
        })
        .collect::<rmsprop::Result<Vec<_>>>()?;
    let jobs: Vec<(usize, u64)> = (0..configs.len()).flat_map(|c| spec.seeds.iter().map(move |&s| (c, s))).collect();
    jobs.par_iter()
        .skip(share.rank)
        .step_by(share.size.max(1))
        .map(|&(c, seed)| {
            let curve = train(data, &Update::Trainer(configs[c].clone()), &Protocol { seed, ..spec.protocol.clone() });
            tick();
            curve
        })
        .collect()
}

/// The cells of `spec` from the curves of every process's [`sweep_part`] (`parts[r]`:
/// process `r`'s); an error if they are not the grid's runs.
pub fn assemble(spec: &SweepSpec, parts: Vec<Vec<Curve>>) -> rmsprop::Result<Vec<Cell>> {
    let (runs, size) = (spec.runs(), parts.len());
    if size == 0 || parts.iter().enumerate().any(|(rank, p)| p.len() != Share { rank, size }.count(runs)) {
        let got: Vec<usize> = parts.iter().map(Vec::len).collect();
        return Err(rmsprop::Error::World(format!(
            "the grid's {runs} runs came back from {size} processes as {got:?} curves"
        )));
    }
    // run i is the (i / size)-th of process i % size's
    let mut parts: Vec<_> = parts.into_iter().map(Vec::into_iter).collect();
    let mut curves = (0..runs).map(|i| parts[i % size].next().expect("counted above"));
    Ok(grid(spec)
        .into_iter()
        .map(|(lr, gamma)| Cell {
            optimizer: spec.optimizer.clone(),
            lr,
            gamma,
            seeds: spec.seeds.clone(),
            curves: curves.by_ref().take(spec.seeds.len()).collect(),
        })
        .collect())
}

/// The table as CSV:
/// `optimizer,lr,gamma,seeds,mean_final_loss,std,min,max,status,diverged_seeds,first_diverged_step,first_diverged_seed`.
pub fn to_csv(cells: &[Cell]) -> String {
    let mut out = String::from(
        "optimizer,lr,gamma,seeds,mean_final_loss,std,min,max,status,diverged_seeds,first_diverged_step,\
         first_diverged_seed\n",
    );
    for c in cells {
        let stats = c
            .spread()
            .map(|s| format!("{:.6},{:.6},{:.6},{:.6}", s.mean, s.std, s.min, s.max))
            .unwrap_or_else(|| ",,,".into());
        let (step, seed) = match c.first_diverged() {
            Some((step, seed)) => (step.to_string(), seed.to_string()),
            None => Default::default(),
        };
        out += &format!(
            "{},{},{},{},{stats},{},{},{step},{seed}\n",
            c.optimizer,
            c.lr,
            c.gamma.map(|g| g.to_string()).unwrap_or_default(),
            c.curves.len(),
            if c.diverged() { "diverged" } else { "ok" },
            c.diverged_seeds(),
        );
    }
    out
}

/// The table as Markdown: the mean final loss over seeds with its range, or where the runs
/// diverged.
pub fn to_markdown(cells: &[Cell]) -> String {
    let mut out =
        String::from("| optimizer | lr | gamma | seeds | final loss: mean (min–max) |\n|---|---|---|---|---|\n");
    for c in cells {
        out += &format!(
            "| {} | {} | {} | {} | {} |\n",
            c.optimizer,
            c.lr,
            c.gamma.map(|g| g.to_string()).unwrap_or_else(|| "–".into()),
            c.curves.len(),
            c.summary()
        );
    }
    out
}
