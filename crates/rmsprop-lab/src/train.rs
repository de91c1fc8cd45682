//! Linear regression on the airfoil data, as the chapter trains it (`d2l.train_ch7`,
//! `d2l.train_gluon_ch7`): `w ~ N(0, 0.01²)` (5x1), `b = 0`, loss `(ŷ - y)² / 2`,
//! minibatches reshuffled every epoch, the loss on the whole set logged every 100
//! examples (on a file large enough that this would cost more than the training, less
//! often: [`Protocol::log_interval`]).

use crate::data::{Dataset, FEATURES};
use crate::divergence::{Divergence, Watch};
use crate::effective::{self, Spread};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Normal};
use rmsprop::{NonFinitePolicy, Optimizer, OptimizerConfig};
use std::time::Instant;

/// The training protocol.
#[derive(Clone, Debug)]
pub struct Protocol {
    /// Rows per minibatch (10).
    pub batch_size: usize,
    /// Passes over the data (2).
    pub epochs: usize,
    /// Seed of the initial weights and of the shuffles.
    pub seed: u64,
    /// Log the whole-set loss every this many examples (100).
    pub log_every: usize,
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol { batch_size: 10, epochs: 2, seed: 0, log_every: 100 }
    }
}

/// The most whole-set losses one epoch logs: each costs a pass over every row, so the
/// book's interval on a large file would make the logging quadratic in its size.
pub const MAX_LOGS_PER_EPOCH: usize = 100;

impl Protocol {
    /// How many examples apart the whole-set loss is logged on `rows` rows: `log_every`
    /// (the book's 100: 15 points an epoch on its 1503 rows), widened to a multiple of it
    /// where an epoch would log more than [`MAX_LOGS_PER_EPOCH`] times, so that a run costs
    /// at most that many passes over the data per epoch besides the training.
    ///
    /// ```
    /// use rmsprop_lab::train::Protocol;
    /// let p = Protocol::default();
    /// assert_eq!(p.log_interval(1503), 100);
    /// assert_eq!(p.log_interval(3_000_000), 30_000);
    /// ```
    pub fn log_interval(&self, rows: usize) -> usize {
        let every = self.log_every.max(1);
        let logs = rows / every;
        every * logs.div_ceil(MAX_LOGS_PER_EPOCH).max(1)
    }
}

/// How the update is applied.
#[derive(Clone, Debug)]
pub enum Update {
    /// The book's `rmsprop(params, states, hyperparams)` written out on the model's own
    /// arrays: `s = γ s + (1-γ) g²`, `p -= η g / sqrt(s + 1e-6)`, gradients of the
    /// batch-mean loss.
    Scratch {
        /// η.
        lr: f32,
        /// γ.
        gamma: f32,
    },
    /// The high-level API: an optimizer from the core crate, gradients of the summed
    /// loss rescaled by `1 / batch_size` (MXNet `trainer.step(batch_size)`; the last,
    /// short batch is still divided by `batch_size`, as in the chapter).
    Trainer(OptimizerConfig),
}

/// The loss curve of one run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Curve {
    /// Epoch of each logged point (`0, 2/30, ..., 2`); a run that diverged ends with the
    /// point where it did, if its loss there was finite.
    pub epochs: Vec<f64>,
    /// Whole-set loss at each point (finite).
    pub loss: Vec<f64>,
    /// Wall time of the last full epoch, seconds (of the partial one for a run that
    /// diverged in its first).
    pub seconds_per_epoch: f64,
    /// Where and why the run diverged (see [`crate::divergence`]).
    pub diverged: Option<Divergence>,
    /// The epoch (fractional) at which it diverged.
    pub diverged_epoch: Option<f64>,
    /// The effective learning rates over the parameters (see [`crate::effective`]) at each
    /// logged point after the start, where the update's state gives them.
    pub effective_lr: Vec<Spread>,
}

impl Curve {
    /// The last logged loss (of a run that diverged: the last finite one).
    pub fn final_loss(&self) -> f64 {
        *self.loss.last().expect("the initial loss is always logged")
    }
    /// The curve as CSV (`epoch,loss`).
    pub fn to_csv(&self) -> String {
        let rows: String = self.epochs.iter().zip(&self.loss).map(|(e, l)| format!("{e},{l}\n")).collect();
        format!("epoch,loss\n{rows}")
    }
    /// The chapter's line, `loss: 0.245398, 0.000057 sec per epoch`, or
    /// `diverged at step k (epoch e): ...`.
    pub fn printed(&self) -> String {
        match (&self.diverged, self.diverged_epoch) {
            (Some(d), Some(e)) => {
                format!("diverged at step {} (epoch {e:.3}): {}", d.step, d.reason)
            }
            (Some(d), None) => d.to_string(),
            _ => format!("loss: {:.6}, {:.6} sec per epoch", self.final_loss(), self.seconds_per_epoch),
        }
    }
    /// True when the run diverged.
    pub fn diverged(&self) -> bool {
        self.diverged.is_some()
    }
}

/// Mean over all rows of `(x·w + b - y)² / 2`.
pub fn loss(data: &Dataset, w: &[f32], b: f32) -> f64 {
    (0..data.rows).map(|i| f64::from(residual(data, i, w, b)).powi(2) / 2.0).sum::<f64>() / data.rows as f64
}

fn residual(data: &Dataset, i: usize, w: &[f32], b: f32) -> f32 {
    data.row(i).iter().zip(w).map(|(x, w)| x * w).sum::<f32>() + b - data.labels[i]
}

/// A step applied by the caller of [`train_shared`]: the parameters `[w, b]` and this
/// process's gradient of them.
pub type SharedStep<'a> = dyn FnMut(&mut [Vec<f32>], &[Vec<f32>]) -> rmsprop::Result<()> + 'a;

/// An [`Update`] with its running state.
enum Stepper<'a> {
    Scratch {
        lr: f32,
        gamma: f32,
        s: Vec<Vec<f32>>,
    },
    /// The optimizer and the names of its state arrays.
    Trainer(Box<Optimizer<f32>>, Vec<&'static str>),
    /// A step made elsewhere (across processes: see [`train_shared`]).
    Shared(&'a mut SharedStep<'a>),
}

/// The names the optimizer knows the two parameters by: the weights and the bias.
const NAMES: [&str; 2] = ["w", "b"];

/// A model with its update, as the training loop drives it: the chapter's linear
/// regression here, the MLP through candle in [`crate::mlp`].
pub(crate) trait Learner {
    /// What a step can fail with (a diverging run is an outcome, not an error).
    type Error;
    /// Every parameter's value, for the divergence watch's scale.
    fn values(&self) -> Result<Vec<f64>, Self::Error>;
    /// One update with the gradient of the rows `batch`.
    fn step(&mut self, data: &Dataset, batch: &[usize]) -> Result<(), Self::Error>;
    /// The mean loss over the whole set.
    fn loss(&self, data: &Dataset) -> Result<f64, Self::Error>;
    /// The first parameter or state value that diverged after `step`.
    fn diverged(&self, watch: &Watch, step: u64) -> Result<Option<Divergence>, Self::Error>;
    /// Every parameter's effective learning rate at step `step` (none where the update's state
    /// does not give it).
    fn rates(&self, step: u64) -> Option<Vec<f64>>;
}

/// The linear regression with its update.
struct Linear<'a> {
    /// `[w, b]`.
    params: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
    stepper: Stepper<'a>,
    /// This process's share of each batch: the rows at `rank, rank + size, ...`.
    share: Share,
}

/// Which rows of each minibatch a process computes the gradient of: those at positions
/// `rank, rank + size, ...` (all of them for one process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// This process, `0..size`.
    pub rank: usize,
    /// The number of processes.
    pub size: usize,
}

impl Share {
    /// One process, all rows.
    pub const ALL: Share = Share { rank: 0, size: 1 };

    /// How many of the positions `0..n` are this process's (`rank, rank + size, ...`).
    ///
    /// ```
    /// use rmsprop_lab::train::Share;
    /// assert_eq!((0..3).map(|rank| Share { rank, size: 3 }.count(20)).collect::<Vec<_>>(), [7, 7, 6]);
    /// ```
    pub fn count(self, n: usize) -> usize {
        n.saturating_sub(self.rank).div_ceil(self.size.max(1))
    }
}

impl Learner for Linear<'_> {
    type Error = rmsprop::Error;

    fn rates(&self, step: u64) -> Option<Vec<f64>> {
        match &self.stepper {
            // the book's update: η/√(s + 1e-6)
            Stepper::Scratch { lr, s, .. } => {
                Some(s.iter().flatten().map(|&s| f64::from(lr / (s + 1e-6).sqrt())).collect())
            }
            Stepper::Trainer(opt, _) => {
                let config = opt.group(0).ok()?;
                let slot = |name: &str, k: &str| opt.state(name, k).map(|v| v.iter().map(|&x| f64::from(x)).collect());
                let mut all = Vec::new();
                for (name, n) in NAMES.iter().zip([FEATURES, 1]) {
                    all.extend(effective::rates(config, step, n, &|k| slot(name, k), None)?);
                }
                Some(all)
            }
            Stepper::Shared(_) => None,
        }
    }

    fn values(&self) -> rmsprop::Result<Vec<f64>> {
        Ok(self.params.iter().flatten().map(|&v| f64::from(v)).collect())
    }

    fn step(&mut self, data: &Dataset, batch: &[usize]) -> rmsprop::Result<()> {
        let Linear { params, grads, stepper, share } = self;
        // gradient of the summed loss over the batch (this process's share of it)
        grads.iter_mut().for_each(|g| g.fill(0.0));
        for &i in batch.iter().skip(share.rank).step_by(share.size) {
            let r = residual(data, i, &params[0], params[1][0]);
            for (g, x) in grads[0].iter_mut().zip(data.row(i)) {
                *g += r * x;
            }
            grads[1][0] += r;
        }
        match stepper {
            // D2L §12.8.3 `rmsprop`: s[:] = gamma*s + (1-gamma)*square(g); p[:] -= lr*g / sqrt(s + eps),
            // with g the gradient of the batch-mean loss
            Stepper::Scratch { lr, gamma, s } => {
                let n = batch.len() as f32;
                for ((p, g), s) in params.iter_mut().zip(grads.iter()).zip(s.iter_mut()) {
                    for ((p, g), s) in p.iter_mut().zip(g).zip(s.iter_mut()) {
                        let g = g / n;
                        *s = *gamma * *s + (1.0 - *gamma) * (g * g);
                        *p -= *lr * g / (*s + 1e-6).sqrt();
                    }
                }
            }
            Stepper::Trainer(opt, _) => {
                opt.step(params, grads)?;
            }
            Stepper::Shared(step) => step(params, grads)?,
        }
        Ok(())
    }

    fn loss(&self, data: &Dataset) -> rmsprop::Result<f64> {
        Ok(loss(data, &self.params[0], self.params[1][0]))
    }

    fn diverged(&self, watch: &Watch, step: u64) -> rmsprop::Result<Option<Divergence>> {
        // no allocation per step: the values are widened as they are read
        fn wide(v: &[f32]) -> impl Iterator<Item = f64> + '_ {
            v.iter().map(|&x| f64::from(x))
        }
        let found = NAMES.iter().zip(&self.params).find_map(|(n, p)| watch.params(step, n, wide(p)));
        Ok(found.or_else(|| match &self.stepper {
            Stepper::Scratch { s, .. } => NAMES.iter().zip(s).find_map(|(n, s)| watch.state(step, "s", n, wide(s))),
            Stepper::Trainer(opt, states) => {
                NAMES.iter().find_map(|n| states.iter().find_map(|k| watch.state(step, k, n, wide(&opt.state(n, k)?))))
            }
            Stepper::Shared(_) => None,
        }))
    }
}

/// Trains the chapter's linear regression and returns its loss curve; a run that diverges
/// (see [`crate::divergence`]) stops there and says so in the curve.
///
/// Errors only when the optimizer configuration is invalid.
pub fn train(data: &Dataset, update: &Update, protocol: &Protocol) -> rmsprop::Result<Curve> {
    let (mut rng, params, grads) = start(protocol);
    let stepper = Stepper::new(update, protocol.batch_size)?;
    run(&mut Linear { params, grads, stepper, share: Share::ALL }, data, protocol, &mut rng)
}

/// [`train`] by one of several processes, each with the same data and protocol (so the
/// same initial weights and shuffles): it computes the gradient of the summed loss over
/// its `share` of each minibatch, and `step` applies it — combining the processes'
/// gradients, e.g. `rmsprop_mpi::Distributed` with `Reduction::Sum` and `rescale_grad`
/// divided by the batch size, Gluon's `trainer.step(batch_size)` over the global batch.
/// `step` must leave the same parameters on every process; the curves are then the same.
pub fn train_shared(
    data: &Dataset,
    protocol: &Protocol,
    share: Share,
    step: &mut SharedStep<'_>,
) -> rmsprop::Result<Curve> {
    let (mut rng, params, grads) = start(protocol);
    run(&mut Linear { params, grads, stepper: Stepper::Shared(step), share }, data, protocol, &mut rng)
}

/// The run's random stream, the chapter's initial weights `w ~ N(0, 0.01²)`, `b = 0`
/// drawn from it, and zero gradients.
fn start(protocol: &Protocol) -> (ChaCha8Rng, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(protocol.seed);
    let init = Normal::new(0.0f32, 0.01).expect("valid");
    let params = vec![(0..FEATURES).map(|_| init.sample(&mut rng)).collect::<Vec<f32>>(), vec![0.0f32]];
    (rng, params, vec![vec![0.0f32; FEATURES], vec![0.0f32]])
}

impl Stepper<'_> {
    fn new(update: &Update, batch_size: usize) -> rmsprop::Result<Self> {
        Ok(match update {
            Update::Scratch { lr, gamma } => {
                Stepper::Scratch { lr: *lr, gamma: *gamma, s: vec![vec![0.0f32; FEATURES], vec![0.0f32]] }
            }
            Update::Trainer(config) => {
                // Gluon's trainer.step(batch_size): the gradient of the summed loss times
                // rescale_grad / batch_size
                let mut config = config.clone();
                config.common_mut().rescale_grad /= batch_size as f64;
                // a diverging run (the γ = 1 exercise) is an outcome to show, not an error
                let opt = Optimizer::new(config.clone(), &[(NAMES[0], &[FEATURES, 1][..]), (NAMES[1], &[1][..])])?;
                Stepper::Trainer(Box::new(opt.with_nonfinite_policy(NonFinitePolicy::Propagate)), config.state_names())
            }
        })
    }
}

/// The chapter's loop (`d2l.train_ch7`): minibatches of a fresh shuffle (drawn from `rng`)
/// every epoch, the whole-set loss logged every `log_every` examples, the run stopped where
/// it diverges.
pub(crate) fn run<L: Learner>(
    learner: &mut L,
    data: &Dataset,
    protocol: &Protocol,
    rng: &mut ChaCha8Rng,
) -> Result<Curve, L::Error> {
    let initial = learner.loss(data)?;
    let watch = Watch::new(&learner.values()?, initial);
    let batches = data.rows.div_ceil(protocol.batch_size);
    let log_every = protocol.log_interval(data.rows);
    let logged = |batch_i: usize| ((batch_i + 1) * protocol.batch_size).is_multiple_of(log_every);
    // the logged points are evenly spaced over the run, as the chapter plots them
    let logs_per_epoch = (0..batches).filter(|&b| logged(b)).count();
    let total_logs = (logs_per_epoch * protocol.epochs).max(1) as f64;
    let mut curve = Curve {
        epochs: vec![0.0],
        loss: vec![initial],
        seconds_per_epoch: 0.0,
        diverged: None,
        diverged_epoch: None,
        effective_lr: Vec::new(),
    };
    let mut order: Vec<usize> = (0..data.rows).collect();
    let mut step = 0u64;
    for epoch in 0..protocol.epochs {
        let started = Instant::now();
        order.shuffle(rng);
        for (batch_i, batch) in order.chunks(protocol.batch_size).enumerate() {
            learner.step(data, batch)?;
            step += 1;
            let at_log = logged(batch_i);
            let mut diverged = learner.diverged(&watch, step)?;
            if at_log || diverged.is_some() {
                let l = learner.loss(data)?;
                diverged = diverged.or_else(|| watch.loss(step, l));
                if l.is_finite() {
                    curve.loss.push(l);
                    let at = if at_log {
                        protocol.epochs as f64 * (curve.loss.len() - 1) as f64 / total_logs
                    } else {
                        epoch as f64 + (batch_i + 1) as f64 / batches as f64
                    };
                    curve.epochs.push(at);
                    curve.effective_lr.extend(learner.rates(step).and_then(|r| Spread::of(at, r)));
                }
            }
            if let Some(d) = diverged {
                curve.diverged_epoch = Some(epoch as f64 + (batch_i + 1) as f64 / batches as f64);
                curve.diverged = Some(d);
                if epoch == 0 {
                    curve.seconds_per_epoch = started.elapsed().as_secs_f64();
                }
                return Ok(curve);
            }
        }
        curve.seconds_per_epoch = started.elapsed().as_secs_f64();
    }
    Ok(curve)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One process sharing with nobody, stepping the chapter's trainer itself, trains
    /// exactly as `train` does.
    #[test]
    fn a_shared_run_of_one_process_is_the_trainers_run() {
        let data = crate::data::embedded();
        let protocol = Protocol::default();
        let config = rmsprop::by_name::config("mxnet.rmsprop", [("learning_rate", 0.01), ("gamma1", 0.9)]).unwrap();
        let alone = train(&data, &Update::Trainer(config.clone()), &protocol).unwrap();
        let mut scaled = config.clone();
        scaled.common_mut().rescale_grad /= protocol.batch_size as f64;
        let mut opt = Optimizer::<f32>::new(scaled, &[("w", &[FEATURES, 1][..]), ("b", &[1][..])])
            .unwrap()
            .with_nonfinite_policy(NonFinitePolicy::Propagate);
        let shared = train_shared(&data, &protocol, Share::ALL, &mut |p, g| opt.step(p, g).map(|_| ())).unwrap();
        assert_eq!(shared.loss, alone.loss);
        assert_eq!(shared.epochs, alone.epochs);
    }

    /// The trainer steps with the gradient of the batch's summed loss divided by the batch
    /// size (Gluon's `trainer.step(batch_size)`), the last, short batch included: plain SGD
    /// moves by exactly η times that.
    #[test]
    fn the_trainer_steps_with_the_summed_gradient_over_the_batch_size() {
        let data = crate::data::embedded();
        let sgd = rmsprop::by_name::config("pytorch.sgd", [("lr", 0.5)]).unwrap();
        let batch_size = 10;
        for batch in [&[3usize, 17, 42, 99, 100, 101, 7, 8, 9, 1000][..], &[5, 6, 7]] {
            let w0 = vec![0.01f32, -0.02, 0.03, 0.0, 0.05];
            let stepper = Stepper::new(&Update::Trainer(sgd.clone()), batch_size).unwrap();
            let mut linear = Linear {
                params: vec![w0.clone(), vec![0.1]],
                grads: vec![vec![0.0; 5], vec![0.0]],
                stepper,
                share: Share::ALL,
            };
            linear.step(&data, batch).unwrap();
            // the summed gradient, in f64, over the nominal batch size
            let residual = |i: usize| -> f64 {
                data.row(i).iter().zip(&w0).map(|(x, w)| f64::from(*x) * f64::from(*w)).sum::<f64>() + 0.1
                    - f64::from(data.labels[i])
            };
            let g_b: f64 = batch.iter().map(|&i| residual(i)).sum::<f64>() / batch_size as f64;
            let expected_b = 0.1 - 0.5 * g_b;
            assert!(
                (f64::from(linear.params[1][0]) - expected_b).abs() < 1e-5,
                "{} vs {expected_b}",
                linear.params[1][0]
            );
            for (j, (w, w0)) in linear.params[0].iter().zip(&w0).enumerate() {
                let g: f64 =
                    batch.iter().map(|&i| residual(i) * f64::from(data.row(i)[j])).sum::<f64>() / batch_size as f64;
                let expected = f64::from(*w0) - 0.5 * g;
                assert!((f64::from(*w) - expected).abs() < 1e-5, "w{j}: {w} vs {expected}");
            }
        }
    }
}
