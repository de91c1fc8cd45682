//! The chapter's trainer on a real network (cargo feature `candle`): a 5-16-1 tanh MLP on
//! the airfoil data, its gradients by candle, its steps by any optimizer of the core crate
//! through [`rmsprop_candle::Trainer`], in the chapter's loop ([`crate::train::Protocol`]:
//! minibatches of 10, two epochs, the loss logged every 100 examples).
//!
//! The layers are PyTorch's `nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1))`,
//! their variables named `0.weight`, `0.bias`, `2.weight`, `2.bias`, initialised as PyTorch
//! initialises `nn.Linear` (uniform in ±1/√fan_in) from the run's seed. The loss is the
//! chapter's `(ŷ - y)² / 2`; a step's gradient is of the batch's summed loss divided by the
//! batch size (Gluon's `trainer.step(batch_size)`).
//!
//! ```
//! use rmsprop_lab::{data, mlp, train::Protocol};
//! let config = rmsprop::by_name::config("mxnet.rmsprop", [("learning_rate", 0.01), ("gamma1", 0.9)]).unwrap();
//! let curve = mlp::train(&data::embedded(), &config, &Protocol::default()).unwrap();
//! assert!(curve.final_loss() < curve.loss[0]);
//! ```

use crate::data::{Dataset, FEATURES};
use crate::divergence::{Divergence, Watch};
use crate::effective;
use crate::train::{self, Curve, Learner, Protocol};
use candle_core::{DType, Device, Module, Tensor, Var};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use rmsprop::{NonFinitePolicy, OptimizerConfig};
use rmsprop_candle::Trainer;

/// Hidden units.
pub const HIDDEN: usize = 16;

/// The MLP with its trainer and the data as tensors.
struct Mlp {
    /// `0.weight`, `0.bias`, `2.weight`, `2.bias`.
    vars: Vec<(String, Var)>,
    hidden: candle_nn::Linear,
    out: candle_nn::Linear,
    trainer: Trainer,
    config: OptimizerConfig,
    features: Tensor,
    labels: Tensor,
    batch_size: usize,
}

impl Mlp {
    /// `(ŷ - y)² / 2` of each row of `x`.
    fn losses(&self, x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
        let y_hat = self.out.forward(&self.hidden.forward(x)?.tanh()?)?.squeeze(1)?;
        (y_hat - y)?.sqr()? * 0.5
    }
}

fn values(t: &Tensor) -> candle_core::Result<Vec<f64>> {
    t.flatten_all()?.to_dtype(DType::F64)?.to_vec1()
}

impl Learner for Mlp {
    type Error = rmsprop_candle::Error;

    fn rates(&self, step: u64) -> Option<Vec<f64>> {
        let mut all = Vec::new();
        for (name, v) in &self.vars {
            let slot = |k: &str| self.trainer.state(name, k);
            all.extend(effective::rates(&self.config, step, v.elem_count(), &slot, None)?);
        }
        Some(all)
    }

    fn values(&self) -> rmsprop_candle::Result<Vec<f64>> {
        let mut all = Vec::new();
        for (_, v) in &self.vars {
            all.extend(values(v.as_tensor())?);
        }
        Ok(all)
    }

    fn step(&mut self, _: &Dataset, batch: &[usize]) -> rmsprop_candle::Result<()> {
        let rows: Vec<u32> = batch.iter().map(|&i| i as u32).collect();
        let idx = Tensor::new(rows.as_slice(), &Device::Cpu)?;
        let (x, y) = (self.features.index_select(&idx, 0)?, self.labels.index_select(&idx, 0)?);
        let loss = (self.losses(&x, &y)?.sum_all()? / self.batch_size as f64)?;
        self.trainer.backward_step(&loss)?;
        Ok(())
    }

    fn loss(&self, _: &Dataset) -> rmsprop_candle::Result<f64> {
        Ok(self.losses(&self.features, &self.labels)?.to_dtype(DType::F64)?.mean_all()?.to_scalar()?)
    }

    fn diverged(&self, watch: &Watch, step: u64) -> rmsprop_candle::Result<Option<Divergence>> {
        for (name, v) in &self.vars {
            if let Some(d) = watch.params(step, name, values(v.as_tensor())?) {
                return Ok(Some(d));
            }
        }
        let states = self.config.state_names();
        let state = |(name, _): &(String, Var)| {
            states.iter().find_map(|k| watch.state(step, k, name, self.trainer.state(name, k)?))
        };
        Ok(self.vars.iter().find_map(state))
    }
}

/// Trains the 5-16-1 MLP on `data` with `config` and returns its loss curve; a run that
/// diverges (see [`crate::divergence`]) stops there and says so in the curve.
///
/// Errors: an invalid configuration, or candle's.
pub fn train(data: &Dataset, config: &OptimizerConfig, protocol: &Protocol) -> rmsprop_candle::Result<Curve> {
    let cpu = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(protocol.seed);
    let mut vars = Vec::new();
    let mut layer = |name: &str, fan_in: usize, fan_out: usize| -> candle_core::Result<candle_nn::Linear> {
        // PyTorch's nn.Linear init: weight and bias uniform in ±1/√fan_in
        let bound = 1.0 / (fan_in as f32).sqrt();
        let mut uniform = |n: usize| (0..n).map(|_| rng.random_range(-bound..bound)).collect::<Vec<f32>>();
        let w = Var::from_vec(uniform(fan_out * fan_in), (fan_out, fan_in), &cpu)?;
        let b = Var::from_vec(uniform(fan_out), fan_out, &cpu)?;
        let linear = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
        vars.extend([(format!("{name}.weight"), w), (format!("{name}.bias"), b)]);
        Ok(linear)
    };
    let (hidden, out) = (layer("0", FEATURES, HIDDEN)?, layer("2", HIDDEN, 1)?);
    // a diverging run (the γ = 1 exercise) is an outcome to show, not an error
    let trainer = Trainer::from_named(vars.clone(), config.clone())?.with_nonfinite_policy(NonFinitePolicy::Propagate);
    let features = Tensor::from_slice(&data.features, (data.rows, FEATURES), &cpu)?;
    let labels = Tensor::from_slice(&data.labels, data.rows, &cpu)?;
    let config = config.clone();
    let mut mlp = Mlp { vars, hidden, out, trainer, config, features, labels, batch_size: protocol.batch_size };
    train::run(&mut mlp, data, protocol, &mut rng)
}
