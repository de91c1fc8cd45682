//! Linear regression on the airfoil data, as the chapter trains it (`d2l.train_ch7`,
//! `d2l.train_gluon_ch7`): `w ~ N(0, 0.01²)` (5x1), `b = 0`, loss `(ŷ - y)² / 2`,
//! minibatches reshuffled every epoch, the loss on the whole set logged every 100
//! examples.

use crate::data::{Dataset, FEATURES};
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
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Curve {
    /// Epoch of each logged point (`0, 2/30, ..., 2`).
    pub epochs: Vec<f64>,
    /// Whole-set loss at each point.
    pub loss: Vec<f64>,
    /// Wall time of the last epoch, seconds.
    pub seconds_per_epoch: f64,
}

impl Curve {
    /// The last logged loss.
    pub fn final_loss(&self) -> f64 {
        *self.loss.last().expect("the initial loss is always logged")
    }
    /// The curve as CSV (`epoch,loss`).
    pub fn to_csv(&self) -> String {
        let rows: String = self.epochs.iter().zip(&self.loss).map(|(e, l)| format!("{e},{l}\n")).collect();
        format!("epoch,loss\n{rows}")
    }
    /// The chapter's line, `loss: 0.245398, 0.000057 sec per epoch`.
    pub fn printed(&self) -> String {
        format!("loss: {:.6}, {:.6} sec per epoch", self.final_loss(), self.seconds_per_epoch)
    }
    /// True when the loss went to NaN or infinity.
    pub fn diverged(&self) -> bool {
        self.loss.iter().any(|l| !l.is_finite())
    }
}

/// Mean over all rows of `(x·w + b - y)² / 2`.
pub fn loss(data: &Dataset, w: &[f32], b: f32) -> f64 {
    (0..data.rows).map(|i| f64::from(residual(data, i, w, b)).powi(2) / 2.0).sum::<f64>() / data.rows as f64
}

fn residual(data: &Dataset, i: usize, w: &[f32], b: f32) -> f32 {
    data.row(i).iter().zip(w).map(|(x, w)| x * w).sum::<f32>() + b - data.labels[i]
}

/// An [`Update`] with its running state.
enum Stepper {
    Scratch { lr: f32, gamma: f32, s: Vec<Vec<f32>> },
    Trainer(Box<Optimizer<f32>>),
}

/// Trains the chapter's linear regression and returns its loss curve.
///
/// Errors only when the optimizer configuration is invalid.
pub fn train(data: &Dataset, update: &Update, protocol: &Protocol) -> rmsprop::Result<Curve> {
    let mut rng = ChaCha8Rng::seed_from_u64(protocol.seed);
    let init = Normal::new(0.0f32, 0.01).expect("valid");
    let mut params = vec![(0..FEATURES).map(|_| init.sample(&mut rng)).collect::<Vec<f32>>(), vec![0.0f32]];
    let mut grads = vec![vec![0.0f32; FEATURES], vec![0.0f32]];
    let mut stepper = match update {
        Update::Scratch { lr, gamma } => {
            Stepper::Scratch { lr: *lr, gamma: *gamma, s: vec![vec![0.0f32; FEATURES], vec![0.0f32]] }
        }
        Update::Trainer(config) => {
            // a diverging run (the γ = 1 exercise) is an outcome to show, not an error
            let opt = Optimizer::new(config.clone(), &[("w", &[FEATURES, 1][..]), ("b", &[1][..])])?;
            Stepper::Trainer(Box::new(opt.with_nonfinite_policy(NonFinitePolicy::Propagate)))
        }
    };
    let mut losses = vec![loss(data, &params[0], params[1][0])];
    let mut seconds_per_epoch = 0.0;
    let mut order: Vec<usize> = (0..data.rows).collect();
    for _ in 0..protocol.epochs {
        let start = Instant::now();
        order.shuffle(&mut rng);
        for (batch_i, batch) in order.chunks(protocol.batch_size).enumerate() {
            // gradient of the summed loss over the batch
            grads.iter_mut().for_each(|g| g.fill(0.0));
            for &i in batch {
                let r = residual(data, i, &params[0], params[1][0]);
                for (g, x) in grads[0].iter_mut().zip(data.row(i)) {
                    *g += r * x;
                }
                grads[1][0] += r;
            }
            match &mut stepper {
                // D2L §12.8.3 `rmsprop`: s[:] = gamma*s + (1-gamma)*square(g); p[:] -= lr*g / sqrt(s + eps),
                // with g the gradient of the batch-mean loss
                Stepper::Scratch { lr, gamma, s } => {
                    let n = batch.len() as f32;
                    for ((p, g), s) in params.iter_mut().zip(&grads).zip(s.iter_mut()) {
                        for ((p, g), s) in p.iter_mut().zip(g).zip(s.iter_mut()) {
                            let g = g / n;
                            *s = *gamma * *s + (1.0 - *gamma) * (g * g);
                            *p -= *lr * g / (*s + 1e-6).sqrt();
                        }
                    }
                }
                Stepper::Trainer(opt) => {
                    opt.step(&mut params, &grads)?;
                }
            }
            if ((batch_i + 1) * protocol.batch_size).is_multiple_of(protocol.log_every) {
                losses.push(loss(data, &params[0], params[1][0]));
            }
        }
        seconds_per_epoch = start.elapsed().as_secs_f64();
    }
    let last = (losses.len() - 1).max(1) as f64;
    let epochs = (0..losses.len()).map(|k| protocol.epochs as f64 * k as f64 / last).collect();
    let curve = Curve { epochs, loss: losses, seconds_per_epoch };
    Ok(curve)
}
