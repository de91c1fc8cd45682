//! Framework presets: each framework's RMSProp (and neighbours) with *its own*
//! defaults and formula. The table of differences is in the crate docs.

use crate::common::{HyperPrecision, Rounding, StepForm, WeightDecayMode};
use crate::error::{Error, Result};
use crate::optim::{AverageForm, EpsPlacement, MomentumStyle, OptimizerConfig, RmsProp};
use std::fmt;
use std::str::FromStr;

/// A framework whose optimizer semantics a preset reproduces.
///
/// ```
/// use rmsprop::{EpsPlacement, Flavor};
/// let torch = Flavor::PyTorch.rmsprop();
/// assert_eq!((torch.decay, torch.eps, torch.eps_placement), (0.99, 1e-8, EpsPlacement::OutsideSqrt));
/// assert_eq!("tf1".parse::<Flavor>().unwrap(), Flavor::Tf1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// *Dive into Deep Learning*, the RMSProp chapter's own code.
    D2l,
    /// PyTorch 2.x `torch.optim`.
    PyTorch,
    /// Keras 3 `keras.optimizers`.
    Keras,
    /// TensorFlow 1 `tf.compat.v1.train.RMSPropOptimizer` (`ApplyRMSProp`).
    Tf1,
    /// optax 0.2.
    Optax,
    /// MXNet 1.x `mx.optimizer` (the chapter's `gluon.Trainer`).
    Mxnet,
    /// Burn `burn-optim`.
    Burn,
    /// timm's `RMSpropTF` (PyTorch Image Models): TensorFlow's RMSProp on PyTorch's
    /// kernels, what PyTorch users train TensorFlow recipes (EfficientNet, MobileNetV3)
    /// with.
    Timm,
}

impl Flavor {
    /// Every flavour, in the order of the crate docs' table.
    pub const ALL: [Flavor; 8] = [
        Flavor::D2l,
        Flavor::PyTorch,
        Flavor::Keras,
        Flavor::Tf1,
        Flavor::Optax,
        Flavor::Mxnet,
        Flavor::Burn,
        Flavor::Timm,
    ];

    /// The flavour's short name (`d2l`, `pytorch`, `keras`, `tf1`, `optax`, `mxnet`, `burn`,
    /// `timm`).
    pub fn name(self) -> &'static str {
        match self {
            Flavor::D2l => "d2l",
            Flavor::PyTorch => "pytorch",
            Flavor::Keras => "keras",
            Flavor::Tf1 => "tf1",
            Flavor::Optax => "optax",
            Flavor::Mxnet => "mxnet",
            Flavor::Burn => "burn",
            Flavor::Timm => "timm",
        }
    }

    /// How this framework rounds ([`Rounding`]): every preset of the flavour carries it.
    ///
    /// ```
    /// use rmsprop::{Flavor, Rounding};
    /// assert_eq!(Flavor::Optax.rounding(), Rounding::Xla);
    /// assert_eq!(Flavor::Burn.rounding(), Rounding::AsWritten);
    /// ```
    pub fn rounding(self) -> Rounding {
        match self {
            Flavor::PyTorch | Flavor::Timm => Rounding::Torch,
            Flavor::Optax | Flavor::Keras => Rounding::Xla,
            Flavor::Mxnet => Rounding::Mxnet,
            Flavor::D2l | Flavor::Tf1 | Flavor::Burn => Rounding::AsWritten,
        }
    }

    /// This framework's RMSProp with its default hyperparameters. Where the framework
    /// has no default learning rate (TF1, optax, Burn), the one of its documentation
    /// examples is used: 0.001 (TF1), 0.01 (optax, Burn).
    ///
    /// ```
    /// use rmsprop::{AverageForm, Flavor, MomentumStyle};
    /// // timm's RMSpropTF(params): lr 0.01, alpha 0.9, eps 1e-10 inside the root, s₀ = 1
    /// let timm = Flavor::Timm.rmsprop();
    /// assert_eq!((timm.common.lr, timm.decay, timm.eps, timm.initial_accumulator), (0.01, 0.9, 1e-10, 1.0));
    /// assert_eq!((timm.momentum_style, timm.average_form), (MomentumStyle::LrInsideBuffer, AverageForm::Increment));
    /// ```
    pub fn rmsprop(self) -> RmsProp {
        self.rmsprop_as_written().with_rounding(self.rounding())
    }

    /// This framework's RMSProp as written: [`rmsprop`](Self::rmsprop) without the
    /// flavour's rounding.
    pub(crate) fn rmsprop_as_written(self) -> RmsProp {
        let d = RmsProp::default();
        match self {
            Flavor::D2l => d,
            Flavor::PyTorch => d
                .with_step_form(StepForm::ScaledProduct)
                .with_lr(0.01)
                .with_decay(0.99)
                .with_eps(1e-8, EpsPlacement::OutsideSqrt)
                .with_momentum(0.0, MomentumStyle::LrOutsideBuffer),
            Flavor::Keras => d
                .with_step_form(StepForm::ScaledProduct)
                .with_lr(0.001)
                .with_decay(0.9)
                .with_eps(1e-7, EpsPlacement::InsideSqrt)
                .with_momentum(0.0, MomentumStyle::LrInsideBuffer)
                .with_weight_decay(0.0, WeightDecayMode::Decoupled),
            // `training_ops.cc`: `ms += (grad.square() - ms) * (1 - rho)`,
            // `mom = mom * momentum + (grad * lr) / sqrt(ms + epsilon)`
            Flavor::Tf1 => d
                .with_step_form(StepForm::ScaledProduct)
                .with_average_form(AverageForm::Increment)
                .with_lr(0.001)
                .with_decay(0.9)
                .with_eps(1e-10, EpsPlacement::InsideSqrt)
                .with_initial_accumulator(1.0)
                .with_momentum(0.0, MomentumStyle::LrInsideBuffer),
            // timm `rmsprop_tf.py` writes TF1's update on PyTorch's kernels
            // (`square_avg.add_(g² - square_avg, alpha=1-alpha)`,
            // `buf.mul_(momentum).addcdiv_(g, avg, value=lr)`), with lr 0.01 by default
            Flavor::Timm => Flavor::Tf1.rmsprop_as_written().with_lr(0.01),
            Flavor::Optax => d
                .with_step_form(StepForm::ScaledReciprocal)
                .with_lr(0.01)
                .with_decay(0.9)
                .with_eps(1e-8, EpsPlacement::InsideSqrt)
                .with_momentum(0.0, MomentumStyle::LrInsideBuffer),
            Flavor::Mxnet => RmsProp {
                momentum_with_centered: true,
                ..d.with_step_form(StepForm::ScaledGradient)
                    .with_lr(0.001)
                    .with_decay(0.9)
                    .with_eps(1e-8, EpsPlacement::InsideSqrt)
                    .with_momentum(0.9, MomentumStyle::LrInsideBuffer)
                    .with_precision(HyperPrecision::F32)
            },
            Flavor::Burn => d
                .with_step_form(StepForm::ScaledGradient)
                .with_lr(0.01)
                .with_decay(0.99)
                .with_eps(1e-5, EpsPlacement::OutsideSqrt)
                .with_momentum(0.9, MomentumStyle::LrOutsideBuffer)
                .with_precision(HyperPrecision::F32),
        }
    }

    /// This framework's `optimizer` (`rmsprop`, `adagrad`, `sgd`, `adam`, `adamw`,
    /// `adadelta`, `yogi`) with its defaults and its rounding. Combinations whose semantics
    /// this crate does not reproduce are an error rather than a guess.
    ///
    /// ```
    /// use rmsprop::Flavor;
    /// assert_eq!(Flavor::Mxnet.config("adam").unwrap().name(), "adam");
    /// assert!(Flavor::Keras.config("adagrad").is_err());
    /// ```
    pub fn config(self, optimizer: &str) -> Result<OptimizerConfig> {
        let mut config = OptimizerConfig::preset(self, optimizer)?;
        config.common_mut().rounding = self.rounding();
        Ok(config)
    }

    /// The name this framework gives `key` (this crate's name of a hyperparameter, as
    /// [`by_name::hyperparameters`](crate::by_name::hyperparameters) lists them) in its
    /// `optimizer`: PyTorch's RMSprop `alpha`, Keras's `rho` and `learning_rate`, MXNet's
    /// `gamma1`, `gamma2` and `wd`, optax's `b1`, ... Every name is one
    /// [`by_name`](crate::by_name) reads; a key the framework has no other name for comes
    /// back as it is.
    ///
    /// ```
    /// use rmsprop::Flavor;
    /// assert_eq!(Flavor::PyTorch.spelling("rmsprop", "decay"), "alpha");
    /// assert_eq!(Flavor::Mxnet.spelling("rmsprop", "momentum"), "gamma2");
    /// assert_eq!(Flavor::Keras.spelling("rmsprop", "lr"), "learning_rate");
    /// assert_eq!(Flavor::PyTorch.spelling("rmsprop", "eps"), "eps");
    /// ```
    pub fn spelling(self, optimizer: &str, key: &'static str) -> &'static str {
        use Flavor::*;
        match (self, optimizer, key) {
            (PyTorch | Timm | Burn, "rmsprop", "decay") => "alpha",
            (Keras, "rmsprop", "decay") => "rho",
            (D2l, "rmsprop", "decay") => "gamma",
            (Mxnet, "rmsprop", "decay") => "gamma1",
            (Mxnet, "rmsprop", "momentum") => "gamma2",
            (Keras | Tf1 | Optax | Mxnet, _, "lr") => "learning_rate",
            (Keras | Tf1 | Mxnet | Burn, _, "eps") => "epsilon",
            (Mxnet, _, "weight_decay") => "wd",
            (Optax, "rmsprop", "initial_accumulator") => "initial_scale",
            (PyTorch, "adagrad", "initial_accumulator") | (Optax, "adagrad" | "yogi", "initial_accumulator") => {
                "initial_accumulator_value"
            }
            (Optax, _, "beta1") => "b1",
            (Optax, _, "beta2") => "b2",
            (Keras, _, "clip_gradient") => "clipvalue",
            (Keras, _, "clip_norm") => "clipnorm",
            _ => key,
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Flavor {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        let alias = match lower.as_str() {
            "torch" => "pytorch",
            "keras3" | "tf2" => "keras",
            "tensorflow1" => "tf1",
            "gluon" | "mxnet1" => "mxnet",
            "rmsproptf" | "pytorch-image-models" => "timm",
            other => other,
        };
        Flavor::ALL.into_iter().find(|f| f.name() == alias).ok_or_else(|| Error::UnknownName {
            kind: "flavor",
            name: s.into(),
            known: Flavor::ALL.map(Flavor::name).join(", "),
        })
    }
}
