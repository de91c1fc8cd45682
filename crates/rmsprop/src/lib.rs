//! # rmsprop
//!
//! RMSProp and its family — Adagrad, SGD with momentum, Adam/AdamW, Adadelta, Yogi — exactly
//! as *Dive into Deep Learning*, PyTorch, Keras, TF1, optax, MXNet and Burn compute them,
//! behind one API. Every convention is a named field with its framework in the doc,
//! and every preset is checked step by step against vectors recorded from the
//! frameworks themselves (the `rmsprop-golden` crate replays them).
//!
//! ```
//! use rmsprop::{Flavor, Optimizer};
//! // PyTorch's RMSprop(lr=0.01) on a 3-element tensor
//! let mut opt = Optimizer::<f32>::new(Flavor::PyTorch.rmsprop(), &[("w", &[3][..])]).unwrap();
//! let mut w = vec![vec![1.0f32, 2.0, 3.0]];
//! opt.step(&mut w, &[vec![0.5f32, -0.5, 0.0]]).unwrap();
//! assert!(w[0][0] < 1.0 && w[0][1] > 2.0 && w[0][2] == 3.0);
//! ```
//!
//! ## The RMSProp flavours
//!
//! | preset | default η | γ (name) | ε | ε placement | s₀ | momentum | centred | weight decay | hyperparameters held in |
//! |---|---|---|---|---|---|---|---|---|---|
//! | [`Flavor::D2l`] | 0.01 | 0.9 (`gamma`) | 1e-6 | inside √ | 0 | — | — | — | f64 |
//! | [`Flavor::PyTorch`] | 0.01 | 0.99 (`alpha`) | 1e-8 | outside √ | 0 | 0, η outside buffer | `s - m²` | coupled | f64 |
//! | [`Flavor::Keras`] | 0.001 | 0.9 (`rho`) | 1e-7 | inside √ | 0 | 0, η inside buffer | `s - m² + ε` | decoupled | f64 |
//! | [`Flavor::Tf1`] | 0.001¹ | 0.9 (`decay`) | 1e-10 | inside √ | **1** | 0, η inside buffer | `s - m² + ε` | — | f64 |
//! | [`Flavor::Optax`] | 0.01¹ | 0.9 (`decay`) | 1e-8 | inside √ (`eps_in_sqrt`) | 0 (`initial_scale`) | none, η inside (`trace`), Nesterov | yes, bias correction optional | — | f64 |
//! | [`Flavor::Mxnet`] | 0.001 | 0.9 (`gamma1`) | 1e-8 | inside √ | 0 | `gamma2` 0.9, η inside, **only when centred** | yes | coupled, clipped with g | **f32** |
//! | [`Flavor::Burn`] | 0.01¹ | 0.99 (`alpha`) | 1e-5 | outside √ | 0 | **0.9**, η outside buffer | `s - m²` | coupled | f32 |
//! | [`Flavor::Timm`] | 0.01 | 0.9 (`alpha`) | 1e-10 | inside √ | **1** | 0, η inside buffer (`lr_in_momentum`) | `s - m² + ε` | coupled (`decoupled_decay`: `x (1 - η wd)`) | f64 |
//!
//! ¹ no default in the framework; the value of its documentation examples.
//!
//! TF1 and timm move the averages by their increment, `s += (1-γ)(g² - s)`
//! ([`AverageForm::Increment`]), the others by the weighted sum `γ s + (1-γ) g²`.
//!
//! Other differences a port runs into: the MXNet 1.x operators hold `lr`, `gamma1`,
//! `gamma2`, `epsilon`, `wd`, `rescale_grad` and the clip bounds in `float32` even for
//! `float64` weights (`0.9` is applied as `0.89999997615814208984375`); optax's `trace`
//! and MXNet's `delta` hold negative, learning-rate-scaled values, Keras's `momentum`
//! positive ones; PyTorch's centred momentum buffer accumulates `g/den` without the
//! learning rate, so a schedule acts on it at once. PyTorch's CPU kernels round
//! differently from the formula as written: `addcmul_`, `lerp_` and `add_(…, alpha)` each
//! end in one fused multiply-add, and `addcdiv_` forms `(-η g)/d` ([`Rounding::Torch`],
//! [`StepForm::ScaledProduct`]); a centred mean or a momentum buffer that cancels to a
//! few ulps of its terms is then only reproduced with PyTorch's own rounding. optax and
//! Keras 3 on JAX run on XLA, which forms `decay ** count` by repeated squaring, divides by
//! a broadcast scalar as a multiplication by its reciprocal and sums a small tensor's
//! squares in turn ([`Rounding::Xla`], [`StepForm::ScaledReciprocal`]): at `count` = 1 a
//! centred, bias-corrected variance is pure rounding, and only XLA's gives optax's step.
//! MXNet's C++ kernels write `(1 - β) * g * g` left to right in most of its operators
//! ([`Rounding::Mxnet`]). Each preset carries its framework's rounding; every golden case
//! of Keras and MXNet, and most of PyTorch's and optax's, is reproduced bit for bit. The chapter's exercise values
//! γ = 0 (`s = g²`: sign descent scaled by `|g|/sqrt(g²+ε)`) and γ = 1 (`s` never
//! leaves its initial value: the step is `η g / sqrt(ε)`, which diverges) are legal.
//!
//! ## Layout
//! - [`Optimizer`]: many named tensors, parameter groups, schedules, non-finite policy.
//! - [`RmsProp`], [`Adagrad`], [`Sgd`], [`Adam`], [`Adadelta`], [`Yogi`]: one file each,
//!   with the update written out in its doc, and one line of the optimizers' registry.
//! - [`Flavor`]: framework presets. [`by_name`]: configs from names as frameworks spell
//!   them. [`checkpoint`]: safetensors state. [`quant`]: state in 8-bit codes and
//!   bfloat16, which any group keeps with [`StateStorage`]. The golden-vector replayer is the `rmsprop-golden` crate.

#![warn(missing_docs)]

mod buffer;
pub mod by_name;
pub mod checkpoint;
mod common;
mod error;
pub mod file;
mod flavor;
mod float;
mod kernel;
mod optim;
pub mod quant;
mod schedule;

pub use buffer::{Buffer, HUGE_PAGE};
pub use common::{ClipNorm, Common, HyperPrecision, NormScope, Rounding, StateStorage, StepForm, WeightDecayMode};
pub use error::{Error, Result};
pub use flavor::Flavor;
pub use float::{Dtype, Float, Param};
// every optimizer's configuration (`RmsProp`, `Adagrad`, `Sgd`, `Adam`, `Adadelta`, `Yogi`)
pub use optim::family::*;
pub use optim::world::{MAX_RANKS, Partition, Solo, World};
pub use optim::{
    AverageForm, BiasCorrection, CHUNK, EpsPlacement, MomentumStyle, NonFinitePolicy, Optimizer, OptimizerConfig,
    PARALLEL_THRESHOLD, Parallelism, SgdMomentum, StepOutcome, TensorSpec, Tensors,
};
pub use schedule::Schedule;
