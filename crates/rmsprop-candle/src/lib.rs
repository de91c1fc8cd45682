//! Every optimizer and framework flavour of the [`rmsprop`] crate as a candle optimizer.
//!
//! A [`Trainer`] steps the variables of a [`VarMap`] (keyed by their names, in name order)
//! or named [`Var`]s with the core's fused loops, in place in candle's CPU storage: no
//! copy of a parameter or gradient per step. A step opens one variable at a time (under
//! candle's lock of its storage), so it never waits in a circle with another thread using
//! the variables; tied weights are one parameter. `f32` and `f64` variables have state of
//! their own type; `bf16` and `f16` variables have `f32` state.
//!
//! ```
//! use candle_core::{Device, Tensor, DType};
//! use candle_nn::{VarMap, VarBuilder, Module};
//! use rmsprop_candle::Trainer;
//!
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
//! let net = candle_nn::linear(2, 1, vb.pp("out")).unwrap();
//! // the chapter's trainer, the Gluon way: an optimizer by name, hyperparameters by name
//! let mut trainer = Trainer::by_name(&varmap, "mxnet.rmsprop", [("learning_rate", 0.01), ("gamma1", 0.9)]).unwrap();
//! let x = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
//! let loss = net.forward(&x).unwrap().sqr().unwrap().mean_all().unwrap();
//! trainer.backward_step(&loss).unwrap();
//! assert_eq!(trainer.names(), ["out.bias", "out.weight"]);
//! assert_eq!(trainer.step_count(), 1);
//! ```

mod in_place;

pub use in_place::Element;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;
use half::{bf16, f16};
use rmsprop::{NonFinitePolicy, Optimizer, OptimizerConfig, Schedule, StepOutcome, TensorSpec};

/// What can go wrong: the core's errors (invalid hyperparameters, a refused step, ...),
/// candle's, and a model the adapter cannot step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the optimizer.
    #[error(transparent)]
    Optimizer(#[from] rmsprop::Error),
    /// From candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Variables of different dtypes in one trainer.
    #[error("variable {name:?} is {dtype:?}, but {first:?} is {first_dtype:?}: one trainer steps one dtype")]
    MixedDtypes {
        /// The variable that differs.
        name: String,
        /// Its dtype.
        dtype: DType,
        /// The first variable.
        first: String,
        /// Its dtype.
        first_dtype: DType,
    },
    /// A dtype the optimizer does not step.
    #[error("variable {name:?} is {dtype:?}: the optimizer steps f32, f64, bf16 and f16")]
    UnsupportedDtype {
        /// The variable.
        name: String,
        /// Its dtype.
        dtype: DType,
    },
    /// A variable outside the CPU.
    #[error("variable {name:?} is on {device}: the optimizer steps CPU tensors in place")]
    NotOnCpu {
        /// The variable.
        name: String,
        /// Its device, printed.
        device: String,
    },
    /// The gradient store has no gradient for a variable.
    #[error("no gradient for variable {name:?} (is it used in the loss?); nothing was updated")]
    NoGradient {
        /// The variable.
        name: String,
    },
    /// Two variables that share one storage but are not one variable (a view made a
    /// `Var`): which of their gradients steps the shared elements is not defined.
    #[error(
        "variables {name:?} and {other:?} share one storage but are different tensors: the trainer cannot step both \
         (give it one of them)"
    )]
    SharedStorage {
        /// The later variable.
        name: String,
        /// The earlier one.
        other: String,
    },
    /// One variable (tied weights) in two groups with different configurations.
    #[error("variable {name:?} is also {other:?} (tied weights) in another parameter group: put it in one group")]
    TiedAcrossGroups {
        /// The later name.
        name: String,
        /// The name it was first registered under.
        other: String,
    },
    /// A gradient that is a variable of the trainer: stepping would read it while writing it.
    #[error(
        "the gradient of {name:?} is the storage of variable {other:?}: a gradient must be a tensor of its own; \
         nothing was updated"
    )]
    GradientIsAVariable {
        /// The variable whose gradient it is.
        name: String,
        /// The variable whose storage it is.
        other: String,
    },
    /// A trainer with no variables.
    #[error("no variables to train")]
    Empty,
    /// A group's name pattern is not a glob, or matches no variable.
    #[error("parameter group {pattern:?}: {reason}")]
    Group {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
}

impl From<Error> for candle_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Candle(e) => e,
            other => candle_core::Error::wrap(other),
        }
    }
}

/// The adapter's result.
pub type Result<T> = std::result::Result<T, Error>;

/// The core optimizer, in the dtype of the variables, and the storages a step opens.
#[derive(Debug)]
enum Inner {
    F32(Stepper<f32>),
    F64(Stepper<f64>),
    Bf16(Stepper<bf16>),
    F16(Stepper<f16>),
}

/// An optimizer in the dtype of the variables.
#[derive(Debug)]
struct Stepper<P: Element> {
    opt: Optimizer<P>,
}

impl<P: Element> Stepper<P> {
    /// One core step on the variables' own storage, opened one at a time.
    fn step(&mut self, vars: &[(String, Var)], grads: &GradStore) -> Result<StepOutcome> {
        let mut opener = in_place::Opener { vars, grads, failed: None };
        match self.opt.step_each(&mut opener) {
            Ok(outcome) => Ok(outcome),
            // candle's own error, as candle said it
            Err(_) if opener.failed.is_some() => Err(Error::Candle(opener.failed.take().expect("kept"))),
            Err(e) => Err(e.into()),
        }
    }
}

macro_rules! on_inner {
    ($inner:expr, $o:ident => $e:expr) => {
        match $inner {
            Inner::F32($o) => $e,
            Inner::F64($o) => $e,
            Inner::Bf16($o) => $e,
            Inner::F16($o) => $e,
        }
    };
}

/// The same variant, its optimizer changed by `$e`.
macro_rules! map_inner {
    ($inner:expr, $o:ident => $e:expr) => {
        match $inner {
            Inner::F32($o) => Inner::F32($e),
            Inner::F64($o) => Inner::F64($e),
            Inner::Bf16($o) => Inner::Bf16($e),
            Inner::F16($o) => Inner::F16($e),
        }
    };
}

/// An optimizer of the `rmsprop` crate over candle variables.
#[derive(Debug)]
pub struct Trainer {
    /// The variables, by name, in the optimizer's registration order: each storage once.
    vars: Vec<(String, Var)>,
    /// Their storages' addresses.
    keys: Vec<usize>,
    /// Names under which a variable was given again (tied weights), with the name it is
    /// stepped and saved under.
    aliases: Vec<(String, String)>,
    inner: Inner,
    /// Each group's learning rate as built, the reference of `set_learning_rate`.
    base_lrs: Vec<f64>,
}

impl Trainer {
    /// Every variable of `varmap`, in name order, keyed by its name.
    ///
    /// ```
    /// use candle_core::{Device, DType};
    /// use candle_nn::{VarMap, VarBuilder};
    /// use rmsprop::Flavor;
    /// let varmap = VarMap::new();
    /// let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    /// candle_nn::linear(5, 16, vb.pp("0")).unwrap();
    /// let trainer = rmsprop_candle::Trainer::new(&varmap, Flavor::PyTorch.rmsprop()).unwrap();
    /// assert_eq!(trainer.names(), ["0.bias", "0.weight"]);
    /// ```
    pub fn new(varmap: &VarMap, config: impl Into<OptimizerConfig>) -> Result<Self> {
        Self::from_named(named(varmap), config)
    }

    /// The optimizer `name` (`"rmsprop"`, `"pytorch.rmsprop"`, `"optax.adam"`, ...) with
    /// hyperparameters by their framework's names, as Gluon's
    /// `Trainer(net.collect_params(), "rmsprop", {"learning_rate": 0.01, "gamma1": 0.9})`;
    /// an unknown name is an error (see [`rmsprop::by_name`]).
    pub fn by_name<K: AsRef<str>, V: Into<rmsprop::by_name::Value>>(
        varmap: &VarMap,
        name: &str,
        hyper: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        Self::new(varmap, rmsprop::by_name::config(name, hyper)?)
    }

    /// Parameter groups by name pattern, PyTorch's `param_groups` by glob: every variable
    /// of `varmap` goes to the first group whose pattern matches its name (`*` any run of
    /// characters, `?` one), the others to `default`.
    ///
    /// ```
    /// use candle_core::{Device, DType};
    /// use candle_nn::{VarMap, VarBuilder};
    /// use rmsprop::{Flavor, WeightDecayMode::Coupled};
    /// let varmap = VarMap::new();
    /// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// candle_nn::linear(5, 16, vb.pp("hidden")).unwrap();
    /// candle_nn::linear(16, 1, vb.pp("out")).unwrap();
    /// let base = Flavor::PyTorch.rmsprop().with_weight_decay(1e-4, Coupled);
    /// let trainer = rmsprop_candle::Trainer::grouped(&varmap, base.clone(), [
    ///     ("*.bias", base.clone().with_weight_decay(0.0, Coupled)), // no decay on biases
    ///     ("out.*", base.clone().with_lr(1e-3)),                      // a slower last layer
    /// ]).unwrap();
    /// assert_eq!(trainer.names(), ["hidden.bias", "out.bias", "out.weight", "hidden.weight"]);
    /// ```
    pub fn grouped<S: AsRef<str>, C: Into<OptimizerConfig>>(
        varmap: &VarMap,
        default: impl Into<OptimizerConfig>,
        groups: impl IntoIterator<Item = (S, C)>,
    ) -> Result<Self> {
        type Group = (Option<glob::Pattern>, String, OptimizerConfig, Vec<(String, Var)>);
        let mut groups: Vec<Group> = groups
            .into_iter()
            .map(|(pattern, config)| {
                let text = pattern.as_ref().to_string();
                let glob = glob::Pattern::new(&text)
                    .map_err(|e| Error::Group { pattern: text.clone(), reason: format!("not a glob: {e}") })?;
                Ok((Some(glob), text, config.into(), Vec::new()))
            })
            .collect::<Result<_>>()?;
        groups.push((None, "(default)".into(), default.into(), Vec::new()));
        for (name, var) in named(varmap) {
            let g = groups.iter().position(|(glob, ..)| glob.as_ref().is_none_or(|p| p.matches(&name)));
            groups[g.expect("the default group matches")].3.push((name, var));
        }
        if let Some((_, pattern, ..)) = groups.iter().find(|(glob, _, _, vars)| glob.is_some() && vars.is_empty()) {
            let names: Vec<&str> = groups.iter().flat_map(|g| g.3.iter().map(|(n, _)| n.as_str())).collect();
            let reason = format!("matches no variable (the variables: {})", names.join(", "));
            return Err(Error::Group { pattern: pattern.clone(), reason });
        }
        Self::from_groups(groups.into_iter().filter(|g| !g.3.is_empty()).map(|(_, _, c, vars)| (c, vars)).collect())
    }

    /// Named variables, stepped in the order given.
    pub fn from_named(
        vars: impl IntoIterator<Item = (String, Var)>,
        config: impl Into<OptimizerConfig>,
    ) -> Result<Self> {
        Self::from_groups(vec![(config.into(), vars.into_iter().collect())])
    }

    /// Groups of named variables, each with its configuration, stepped group after group.
    ///
    /// A variable given twice (the same `Var`, or one `Var` under two names of a
    /// `VarMap`: tied weights, e.g. an embedding shared with the output layer) is one
    /// parameter, stepped once per step with its gradient (candle's backward sums the
    /// gradients of a tensor used twice), named by its first name; [`aliases`](Self::aliases)
    /// lists the others. Two different tensors on one storage are refused.
    fn from_groups(mut groups: Vec<(OptimizerConfig, Vec<(String, Var)>)>) -> Result<Self> {
        let mut seen: std::collections::HashMap<usize, (String, candle_core::TensorId, usize)> = Default::default();
        // a name means one variable: given to two, which one it names is not defined
        let mut named: std::collections::HashMap<String, usize> = Default::default();
        let mut aliases = Vec::new();
        for (group, (_, vars)) in groups.iter_mut().enumerate() {
            let mut kept = Vec::with_capacity(vars.len());
            for (name, var) in vars.drain(..) {
                let key = storage_key(&var);
                if *named.entry(name.clone()).or_insert(key) != key {
                    return Err(rmsprop::Error::DuplicateTensor(name).into());
                }
                match seen.get(&key) {
                    None => {
                        seen.insert(key, (name.clone(), var.id(), group));
                        kept.push((name, var));
                    }
                    Some((other, id, _)) if *id != var.id() => {
                        return Err(Error::SharedStorage { name, other: other.clone() });
                    }
                    Some((other, _, g)) if *g != group => {
                        return Err(Error::TiedAcrossGroups { name, other: other.clone() });
                    }
                    Some((other, ..)) => aliases.push((name, other.clone())),
                }
            }
            *vars = kept;
        }
        let vars: Vec<(String, Var)> = groups.iter().flat_map(|(_, v)| v.iter().cloned()).collect();
        let (first, first_var) = vars.first().ok_or(Error::Empty)?;
        let first_dtype = first_var.dtype();
        for (name, var) in &vars {
            if !var.device().is_cpu() {
                return Err(Error::NotOnCpu { name: name.clone(), device: format!("{:?}", var.device()) });
            }
            if var.dtype() != first_dtype {
                let (first, dtype) = (first.clone(), var.dtype());
                return Err(Error::MixedDtypes { name: name.clone(), dtype, first, first_dtype });
            }
        }
        fn build<P: Element>(groups: &[(OptimizerConfig, Vec<(String, Var)>)]) -> Result<Stepper<P>> {
            let specs = |vars: &[(String, Var)]| -> Vec<TensorSpec> {
                vars.iter().map(|(n, v)| TensorSpec::new(n.clone(), v.dims())).collect()
            };
            let mut opt = Optimizer::new(groups[0].0.clone(), &specs(&groups[0].1))?;
            for (config, vars) in &groups[1..] {
                opt.add_group(config.clone(), &specs(vars))?;
            }
            Ok(Stepper { opt })
        }
        let inner = match first_dtype {
            DType::F32 => Inner::F32(build(&groups)?),
            DType::F64 => Inner::F64(build(&groups)?),
            DType::BF16 => Inner::Bf16(build(&groups)?),
            DType::F16 => Inner::F16(build(&groups)?),
            dtype => return Err(Error::UnsupportedDtype { name: first.clone(), dtype }),
        };
        let base_lrs = groups.iter().map(|(config, _)| config.common().lr).collect();
        let keys: Vec<usize> = vars.iter().map(|(_, v)| storage_key(v)).collect();
        Ok(Trainer { vars, keys, aliases, inner, base_lrs })
    }

    /// What a non-finite gradient or result does (default: refuse the step, change nothing).
    pub fn with_nonfinite_policy(mut self, policy: NonFinitePolicy) -> Self {
        self.inner = map_inner!(self.inner, o => Stepper { opt: o.opt.with_nonfinite_policy(policy) });
        self
    }

    /// A learning-rate schedule.
    pub fn with_schedule(mut self, schedule: Schedule) -> Self {
        self.inner = map_inner!(self.inner, o => Stepper { opt: o.opt.with_schedule(schedule) });
        self
    }

    /// The variables' names, in the order they are stepped (a variable given under several
    /// names: its first; see [`aliases`](Self::aliases)).
    pub fn names(&self) -> Vec<&str> {
        self.vars.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The names under which a variable was given again (tied weights), each with the name
    /// it is stepped and saved under.
    ///
    /// ```
    /// use candle_core::{Device, DType, Var};
    /// let w = Var::ones((2, 2), DType::F32, &Device::Cpu).unwrap();
    /// let named = [("embed.weight".to_string(), w.clone()), ("out.weight".to_string(), w)];
    /// let trainer = rmsprop_candle::Trainer::from_named(named, rmsprop::Flavor::PyTorch.rmsprop()).unwrap();
    /// assert_eq!(trainer.names(), ["embed.weight"]);
    /// assert_eq!(trainer.aliases(), [("out.weight".to_string(), "embed.weight".to_string())]);
    /// ```
    pub fn aliases(&self) -> &[(String, String)] {
        &self.aliases
    }

    /// Steps taken.
    pub fn step_count(&self) -> u64 {
        on_inner!(&self.inner, o => o.opt.step_count())
    }

    /// Steps skipped under [`NonFinitePolicy::Skip`].
    pub fn skipped_steps(&self) -> u64 {
        on_inner!(&self.inner, o => o.opt.skipped_steps())
    }

    /// State `slot` (e.g. `"square_avg"`) of variable `name`, widened to `f64`.
    pub fn state(&self, name: &str, slot: &str) -> Option<Vec<f64>> {
        use rmsprop::Float;
        on_inner!(&self.inner, o => o.opt.state(name, slot).map(|s| s.iter().map(|v| v.to_f64()).collect()))
    }

    /// Bytes of optimizer state held, as the configuration keeps it (bfloat16 or 8-bit
    /// codes and their scales under `state_storage`, see [`rmsprop::StateStorage`]).
    pub fn state_bytes(&self) -> usize {
        on_inner!(&self.inner, o => o.opt.state_bytes())
    }

    /// One step with the gradients of `grads`: every variable is updated in place, or,
    /// on an error, none is and the optimizer's state is unchanged.
    ///
    /// Every variable needs a gradient of its own shape. PyTorch and candle-nn's optimizers
    /// skip a variable without one; here the state of all variables advances together
    /// (one step count, one schedule), so a missing gradient is an error
    /// ([`Error::NoGradient`]): freeze a variable by leaving it out of the trainer
    /// ([`from_named`](Self::from_named)). A strided gradient (put in the store by hand)
    /// is copied to a contiguous one; backward's own gradients are used where they are.
    pub fn step(&mut self, grads: &GradStore) -> Result<StepOutcome> {
        for (name, var) in &self.vars {
            let g = grads.get(var).ok_or_else(|| Error::NoGradient { name: name.clone() })?;
            // a gradient on a variable's storage would be read while written (and its
            // lock taken twice): refused before any lock is held
            let key = storage_key(g);
            if let Some(i) = self.keys.iter().position(|&k| k == key) {
                return Err(Error::GradientIsAVariable { name: name.clone(), other: self.vars[i].0.clone() });
            }
        }
        on_inner!(&mut self.inner, o => o.step(&self.vars, grads))
    }

    /// The gradients of `loss`, then [`step`](Self::step).
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<StepOutcome> {
        self.step(&loss.backward()?)
    }

    /// Writes the optimizer state to `path` (safetensors, atomically): each state array
    /// keyed by its variable's name (`fc.weight.square_avg`, ...), the step count, the
    /// optimizer and its hyperparameters (see [`rmsprop::checkpoint`]). The model's weights
    /// are the `VarMap`'s: [`VarMap::save`].
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        Ok(on_inner!(&self.inner, o => o.opt.save(path.as_ref()))?)
    }

    /// Restores the optimizer state saved by [`save`](Self::save). A checkpoint of another
    /// model (variable names, shapes), optimizer or dtype is refused with a message naming
    /// both, and nothing changes.
    pub fn load(&mut self, path: impl AsRef<std::path::Path>) -> Result<()> {
        Ok(on_inner!(&mut self.inner, o => o.opt.load(path.as_ref()))?)
    }

    /// The learning rate of the first group (before any schedule).
    pub fn learning_rate(&self) -> f64 {
        self.learning_rates()[0]
    }

    /// Every group's learning rate (before any schedule), in group order: the groups of
    /// [`grouped`](Self::grouped) in the order given, the default group last.
    pub fn learning_rates(&self) -> Vec<f64> {
        on_inner!(&self.inner, o => (0..o.opt.num_groups())
            .map(|i| o.opt.group(i).map(|g| g.common().lr).unwrap_or(f64::NAN))
            .collect())
    }

    /// Sets the first group's learning rate to `lr` and scales every other group's by the
    /// same factor, so that their ratios stay as built, as PyTorch's schedulers scale each
    /// group's rate (if the first group was built with rate 0, every group gets `lr`).
    /// Checked at the next step: an invalid rate refuses that step.
    ///
    /// ```
    /// use candle_core::{Device, DType};
    /// use candle_nn::{VarMap, VarBuilder};
    /// use rmsprop::Flavor;
    /// let varmap = VarMap::new();
    /// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// candle_nn::linear(2, 1, vb.pp("fc")).unwrap();
    /// let base = Flavor::PyTorch.rmsprop().with_lr(0.01);
    /// let mut trainer =
    ///     rmsprop_candle::Trainer::grouped(&varmap, base.clone(), [("*.bias", base.with_lr(0.001))]).unwrap();
    /// trainer.set_learning_rate(0.005);
    /// assert_eq!(trainer.learning_rates(), [0.005, 0.05]); // the bias group first, the default group last
    /// ```
    pub fn set_learning_rate(&mut self, lr: f64) {
        let base = &self.base_lrs;
        let scaled = |i: usize| if base[0] == 0.0 { lr } else { base[i] * (lr / base[0]) };
        on_inner!(&mut self.inner, o => {
            for i in 0..o.opt.num_groups() {
                if let Ok(g) = o.opt.group_mut(i) {
                    g.common_mut().lr = if i == 0 { lr } else { scaled(i) };
                }
            }
        })
    }
}

/// Where a tensor's elements live: the address of its storage, the same for every tensor
/// that shares it (a `Var` and its clones, views) and stable while any of them lives. Its
/// read lock is taken for the look, alone.
fn storage_key(t: &Tensor) -> usize {
    let (storage, _) = t.storage_and_layout();
    std::ptr::from_ref(&*storage).addr()
}

/// The variables of `varmap` with their names, in name order.
fn named(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut vars: Vec<(String, Var)> = data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

impl candle_nn::Optimizer for Trainer {
    type Config = OptimizerConfig;

    /// Unnamed variables are keyed `"0"`, `"1"`, ... in the order given (prefer
    /// [`Trainer::new`] with a `VarMap`: checkpoints then carry the model's names).
    fn new(vars: Vec<Var>, config: OptimizerConfig) -> candle_core::Result<Self> {
        let named = vars.into_iter().enumerate().map(|(i, v)| (i.to_string(), v));
        Ok(Trainer::from_named(named, config)?)
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        Trainer::step(self, grads)?;
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        Trainer::learning_rate(self)
    }

    fn set_learning_rate(&mut self, lr: f64) {
        Trainer::set_learning_rate(self, lr)
    }
}

/// The README's Rust examples (the core's and this crate's), compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
