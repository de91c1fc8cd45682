//! What every optimizer of the family shares: the learning rate, weight decay, the
//! gradient preprocessing of Keras and MXNet, weight clipping, and how hyperparameters
//! are rounded.

use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernel::{Prep, WeightOps};
use serde::{Deserialize, Serialize};

/// How weight decay enters the update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightDecayMode {
    /// L2 penalty: `g += wd*x` before anything else, so it enters the accumulators
    /// (PyTorch `weight_decay`, MXNet `wd`, optax `add_decayed_weights` before the transform).
    Coupled,
    /// `x -= lr*wd*x`, outside the accumulators (PyTorch AdamW, Keras 3 `weight_decay`,
    /// optax `adamw`, MXNet AdaGrad/AdaDelta `wd`).
    Decoupled,
}

/// Where a gradient-norm bound is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormScope {
    /// Each tensor on its own (Keras `clipnorm`).
    PerTensor,
    /// All tensors of the step together (`torch.nn.utils.clip_grad_norm_`, Keras
    /// `global_clipnorm`, optax `clip_by_global_norm`).
    Global,
}

/// Rescale gradients whose L2 norm exceeds `max_norm`: `g = g*c / max(||g||, c)`
/// (Keras `clip_by_norm`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipNorm {
    /// The bound `c` (> 0).
    pub max_norm: f64,
    /// Per tensor or global.
    pub scope: NormScope,
}

/// The precision the hyperparameters are held in before they meet the tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HyperPrecision {
    /// Full `f64` values (PyTorch, optax, Keras).
    Native,
    /// Rounded to `f32` first, even for `f64` tensors: MXNet 1.x operators
    /// (`rmsprop_update`, `adam_update`, `sgd_mom_update`) and Burn store them as `float`.
    F32,
}

/// How the accumulators, the moving averages and the parameter update are rounded.
///
/// Equal in exact arithmetic; in rounding the difference shows where a state cancels (a
/// centred mean `m` or a momentum buffer summing gradients of both signs), where a few
/// ulps of `m` are a large part of it.
///
/// ```
/// use rmsprop::{Flavor, Rounding};
/// assert_eq!(Flavor::PyTorch.rmsprop().common.rounding, Rounding::Torch);
/// assert_eq!(Flavor::Optax.rmsprop().common.rounding, Rounding::Xla);
/// assert_eq!(Flavor::Keras.rmsprop().common.rounding, Rounding::Xla);
/// assert_eq!(Flavor::Mxnet.rmsprop().common.rounding, Rounding::Mxnet);
/// assert_eq!(Flavor::D2l.rmsprop().common.rounding, Rounding::AsWritten);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Every product and sum rounded as the update is written, e.g. `γ s + (1-γ) g²`,
    /// `γ m + (1-γ) g`, `x - η b`, `g + wd x` (the chapter's NumPy-style code, TF1 and Burn
    /// presets).
    #[default]
    AsWritten,
    /// As PyTorch 2.x's CPU kernels round (`aten/src/ATen/native/cpu`, built with FMA
    /// contraction): `s.mul_(γ).addcmul_(g, g, value=1-γ)` is `fma((1-γ) g, g, γ s)`,
    /// `m.lerp_(g, w)` is `fma(w, g - m, m)` for `w < ½` and `fma(w - 1, g - m, g)`
    /// otherwise, `s.addcmul(m, m, value=-1)` is `fma(-m, m, s)`, `x.add_(b, alpha=-η)`
    /// is `fma(b, -η, x)`, `g.add(x, alpha=wd)` is `fma(x, wd, g)`, and
    /// `x.mul_(1 - η wd)` forms its factor in `f64`.
    Torch,
    /// As JAX computes on XLA (optax, Keras 3 on JAX): elementwise as written, but
    /// `decay ** count` with an integer `count` is formed by repeated squaring (`lax.pow`
    /// with an integer exponent; `0.9 ** 4` is `0.6561000000000001` there, `0.6561` in
    /// Python), a division by a broadcast scalar (a bias correction, Keras's
    /// `g * c / maximum(norm, c)`) is a multiplication by its reciprocal, and the norm of
    /// a tensor of up to 32 elements sums the squares one after another in its dtype.
    Xla,
    /// As MXNet 1.x's C++ kernels write it (`optimizer_op-inl.h`): an average of squares
    /// is `(1 - β) * g * g`, left to right, `((1-β) g) g`, in `rmspropalex_update` (the
    /// centred RMSProp), `adam_update` and `adadelta_update` — but `(1 - γ1) * (g * g)`
    /// in the plain `rmsprop_update` — and the centred step is `(η g) / d` (the plain one
    /// `η (g / d)`, the step form).
    Mxnet,
}

impl Rounding {
    /// `base^t` as this rounding forms it in `f64`: by repeated squaring under
    /// [`Rounding::Xla`], else correctly rounded (`pow`, as Python's `**` on floats).
    ///
    /// ```
    /// use rmsprop::Rounding;
    /// assert_eq!(Rounding::AsWritten.power(0.9, 4), 0.6561);
    /// assert_eq!(Rounding::Xla.power(0.9, 4), 0.6561000000000001);
    /// ```
    pub fn power(self, base: f64, t: u64) -> f64 {
        match self {
            Rounding::Xla => {
                // square-and-multiply from the lowest bit, as XLA's integer power
                let (mut result, mut square, mut n) = (1.0, base, t);
                while n > 0 {
                    if n & 1 == 1 {
                        result *= square;
                    }
                    square *= square;
                    n >>= 1;
                }
                result
            }
            Rounding::AsWritten | Rounding::Torch | Rounding::Mxnet => base.powf(t as f64),
        }
    }
}

/// How a group keeps its optimizer state between steps (Dettmers et al. 2022 for the
/// 8-bit codes; see [`quant`](crate::quant)). Every step decodes a chunk's state to `f32`,
/// runs the same loop as [`F32`](Self::F32) on it and encodes the result, in one pass while
/// the chunk is in cache: the update is exactly the `f32` update of the decoded state.
///
/// Two safeguards the `f32` state does not need: a value that is positive in a state of
/// squares never encodes to 0 (the smallest positive code or bfloat16 instead, so that a
/// denominator with ε outside the root cannot be 0 where the `f32` state's was not), and
/// a centred group's decoded average of squares is raised to the square of its decoded
/// mean where rounding left it below (`s ≥ m²` holds for the exact averages, and
/// `s - m²` is the variance under the root).
///
/// ```
/// use rmsprop::{Optimizer, RmsProp, StateStorage};
/// let config = RmsProp::default().with_state_storage(StateStorage::Int8);
/// let mut opt = Optimizer::<f32>::new(config, &[("w", &[8192][..]), ("b", &[10][..])])?;
/// assert_eq!(opt.state_bytes(), 8192 + 32 * 4 + 10 * 4); // codes, a scale a block, b in f32
/// opt.step(&mut [vec![1.0f32; 8192], vec![1.0; 10]], &[vec![0.5f32; 8192], vec![0.5; 10]])?;
/// assert_eq!(opt.state("w", "square_avg").unwrap()[0], 0.025); // (1 - γ) g², a block of equal values
/// # Ok::<(), rmsprop::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateStorage {
    /// The arithmetic type's own values: `f32` (`f64` for an `f64` optimizer).
    #[default]
    F32,
    /// bfloat16, rounded to nearest (ties to even), or stochastically under
    /// [`Common::bf16_stochastic_round`]; a value beyond bfloat16's range is kept at its
    /// largest finite value. Half the bytes of `f32`.
    Bf16,
    /// Block-wise 8-bit dynamic-tree codes: one `f32` scale per [`BLOCK`](crate::quant::BLOCK)
    /// values, the signed code for state of either sign, the unsigned for squares. A
    /// tensor below [`Common::min_8bit_size`] elements (4096 unless set) keeps `f32` state, as
    /// bitsandbytes does. A quarter of the bytes of `f32`, and 4/256 for the scales.
    Int8,
}

impl StateStorage {
    /// Tensors with fewer elements keep `f32` state under [`Int8`](Self::Int8) by default
    /// ([`Common::min_8bit_size`], bitsandbytes' `min_8bit_size`): biases and norms, whose
    /// state is a small part of the whole and the most sensitive to its error.
    pub const SMALL_TENSOR: u64 = 4096;

    /// How a tensor of `numel` elements (the whole tensor's count, for a shard's piece)
    /// keeps its state under this choice, when tensors below `min_8bit_size` elements keep
    /// `f32` under `Int8`.
    ///
    /// ```
    /// use rmsprop::StateStorage;
    /// assert_eq!(StateStorage::Int8.for_tensor(4095, 4096), StateStorage::F32);
    /// assert_eq!(StateStorage::Int8.for_tensor(4096, 4096), StateStorage::Int8);
    /// assert_eq!(StateStorage::Int8.for_tensor(5, 0), StateStorage::Int8);
    /// assert_eq!(StateStorage::Bf16.for_tensor(1, 4096), StateStorage::Bf16);
    /// ```
    pub fn for_tensor(self, numel: usize, min_8bit_size: u64) -> StateStorage {
        match self {
            StateStorage::Int8 if (numel as u64) < min_8bit_size => StateStorage::F32,
            s => s,
        }
    }

    /// Its name: `f32`, `bf16` or `int8` (as `state_storage=` takes it).
    pub fn name(self) -> &'static str {
        match self {
            StateStorage::F32 => "f32",
            StateStorage::Bf16 => "bf16",
            StateStorage::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for StateStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for StateStorage {
    type Err = crate::Error;
    /// `f32`, `bf16` or `int8`.
    ///
    /// ```
    /// use rmsprop::StateStorage;
    /// assert_eq!("int8".parse::<StateStorage>().unwrap(), StateStorage::Int8);
    /// let e = "int4".parse::<StateStorage>().unwrap_err().to_string();
    /// assert!(e.contains("expected one of f32, bf16, int8"), "{e}");
    /// ```
    fn from_str(s: &str) -> crate::Result<Self> {
        let all = [StateStorage::F32, StateStorage::Bf16, StateStorage::Int8];
        all.into_iter().find(|v| v.name() == s).ok_or_else(|| crate::Error::UnknownName {
            kind: "state storage",
            name: s.into(),
            known: all.map(StateStorage::name).join(", "),
        })
    }
}

/// How `η`, `g` and the denominator `d` are multiplied: equal in exact arithmetic,
/// different in rounding — and the difference grows where the update cancels against
/// `x` (the chapter's γ = 0 exercise). Each framework's own order is its preset's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepForm {
    /// `η · (g / d)`: MXNet.
    ScaledGradient,
    /// `(η / d) · g`: the chapter's `eta / sqrt(s + eps) * g`.
    ScaledRate,
    /// `(η · g) / d`: Keras (`divide(multiply(lr, g), sqrt(den))`), PyTorch
    /// (`addcdiv_(g, d, value=-η)` is `x + (-η · g) / d`).
    ScaledProduct,
    /// `η · (g · (1 / d))`: optax (`rsqrt(v + ε)` or `1 / (sqrt(v) + ε)`, times `g`, then
    /// scaled by the learning rate). XLA's `rsqrt` is `1 / sqrt` in `f64`; in `f32` it is
    /// the CPU's estimate refined by a Newton step, which no form reproduces exactly.
    ScaledReciprocal,
}

impl StepForm {
    /// `η g / d` in this form's order, written out (the reference of the loops'
    /// [`StepOrder`](crate::kernel::StepOrder)).
    #[cfg(test)]
    pub(crate) fn apply<T: Float>(self, lr: T, g: T, d: T) -> T {
        match self {
            StepForm::ScaledGradient => lr * (g / d),
            StepForm::ScaledRate => lr / d * g,
            StepForm::ScaledProduct => lr * g / d,
            StepForm::ScaledReciprocal => lr * (g * (T::ONE / d)),
        }
    }
}

/// Hyperparameters shared by every optimizer. Each field says which framework uses it.
///
/// ```
/// use rmsprop::{Common, WeightDecayMode};
/// let c = Common::new(0.01);
/// assert_eq!(c.weight_decay, 0.0);
/// assert_eq!(c.weight_decay_mode, WeightDecayMode::Coupled);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Common {
    /// Learning rate η (before any schedule).
    pub lr: f64,
    /// Weight decay factor (0 = off).
    pub weight_decay: f64,
    /// Coupled (L2, enters the accumulators) or decoupled.
    pub weight_decay_mode: WeightDecayMode,
    /// Coupled decay is added *before* `clip_gradient`, so the clip bounds `g + wd*x`
    /// (MXNet RMSProp, Adam); `false` adds it after the clip (MXNet SGD).
    pub weight_decay_clipped: bool,
    /// Follow the gradient upwards (`g = -g`; PyTorch `maximize`).
    pub maximize: bool,
    /// Multiply the gradient by this first (MXNet `rescale_grad`; 1 = off).
    pub rescale_grad: f64,
    /// Clip each gradient element to `[-c, c]` (MXNet `clip_gradient`, Keras `clipvalue`).
    pub clip_gradient: Option<f64>,
    /// Rescale the gradient to an L2 norm of at most `c` (Keras `clipnorm`).
    pub clip_norm: Option<ClipNorm>,
    /// Clip the parameters to `[-c, c]` after the step (MXNet `clip_weights`).
    pub clip_weights: Option<f64>,
    /// Precision of the hyperparameters.
    pub precision: HyperPrecision,
    /// How products and sums are rounded: each framework preset sets its own.
    #[serde(default)]
    pub rounding: Rounding,
    /// How the state is kept between steps ([`StateStorage`]; fixed when the group's
    /// tensors are registered).
    #[serde(default)]
    pub state_storage: StateStorage,
    /// Under [`StateStorage::Int8`], tensors with fewer elements keep `f32` state
    /// (bitsandbytes' `min_8bit_size`; [`StateStorage::SMALL_TENSOR`] unless set; 0 packs
    /// every tensor).
    #[serde(default = "small_tensor")]
    pub min_8bit_size: u64,
    /// Under [`StateStorage::Bf16`], round the state to bfloat16 stochastically rather than
    /// to nearest (torchao's `bf16_stochastic_round`): unbiased, so an average whose
    /// increments are below half a bfloat16 step (Adam's `(1 - β₂) g²` against `v`) still
    /// moves on average. The random bits are a hash of the step, the tensor, the slot and
    /// the element ([`quant::stochastic_bits`](crate::quant::stochastic_bits)): the same
    /// on every thread and process, and in every run.
    #[serde(default)]
    pub bf16_stochastic_round: bool,
}

fn small_tensor() -> u64 {
    StateStorage::SMALL_TENSOR
}

impl Common {
    /// Learning rate `lr`, everything else off.
    ///
    /// ```
    /// assert_eq!(rmsprop::Common::new(0.1).lr, 0.1);
    /// ```
    pub fn new(lr: f64) -> Self {
        Common {
            lr,
            weight_decay: 0.0,
            weight_decay_mode: WeightDecayMode::Coupled,
            weight_decay_clipped: true,
            maximize: false,
            rescale_grad: 1.0,
            clip_gradient: None,
            clip_norm: None,
            clip_weights: None,
            precision: HyperPrecision::Native,
            rounding: Rounding::AsWritten,
            state_storage: StateStorage::F32,
            min_8bit_size: StateStorage::SMALL_TENSOR,
            bf16_stochastic_round: false,
        }
    }

    /// A hyperparameter as the framework holds it (rounded to `f32` under
    /// [`HyperPrecision::F32`]).
    ///
    /// ```
    /// use rmsprop::{Flavor, HyperPrecision};
    /// let mxnet = Flavor::Mxnet.rmsprop().common;
    /// assert_eq!(mxnet.precision, HyperPrecision::F32);
    /// assert_eq!(mxnet.hp(0.1), 0.10000000149011612);
    /// ```
    pub fn hp(&self, v: f64) -> f64 {
        match self.precision {
            HyperPrecision::Native => v,
            HyperPrecision::F32 => v as f32 as f64,
        }
    }

    pub(crate) fn validate(&self, optimizer: &'static str) -> Result<()> {
        check_nonneg(optimizer, "lr", self.lr)?;
        check_nonneg(optimizer, "weight_decay", self.weight_decay)?;
        check_finite(optimizer, "rescale_grad", self.rescale_grad)?;
        if let Some(c) = self.clip_gradient {
            check_pos(optimizer, "clip_gradient", c)?;
        }
        if let Some(c) = self.clip_norm {
            check_pos(optimizer, "clip_norm", c.max_norm)?;
        }
        if let Some(c) = self.clip_weights {
            check_pos(optimizer, "clip_weights", c)?;
        }
        if self.bf16_stochastic_round && self.state_storage != StateStorage::Bf16 {
            let storage = self.state_storage;
            return Err(Error::InvalidCombination {
                optimizer,
                reason: format!(
                    "bf16_stochastic_round rounds state kept in bfloat16; this state is kept in {storage} (set state_storage bf16)"
                ),
            });
        }
        Ok(())
    }

    /// The per-step gradient preprocessing in `T`; `norm` is the L2 norm that
    /// `clip_norm` compares against (per tensor or global, computed by the caller).
    pub(crate) fn prep<T: Float>(&self, norm: Option<f64>) -> Prep<T> {
        let wd = (self.weight_decay != 0.0 && self.weight_decay_mode == WeightDecayMode::Coupled)
            .then(|| T::from_f64(self.hp(self.weight_decay)));
        let norm_clip = match (self.clip_norm, norm) {
            (Some(c), Some(n)) if n > c.max_norm => {
                let (c, n) = (T::from_f64(c.max_norm), T::from_f64(n));
                Some((c, c / n, T::ONE / n))
            }
            _ => None,
        };
        Prep {
            rescale: (self.rescale_grad != 1.0).then(|| T::from_f64(self.hp(self.rescale_grad))),
            maximize: self.maximize,
            norm_clip,
            wd,
            wd_clipped: self.weight_decay_clipped,
            clip: self.clip_gradient.map(|c| T::from_f64(self.hp(c))),
        }
    }

    /// Decoupled decay factor `wd` in `T`, if any.
    pub(crate) fn decoupled_wd<T: Float>(&self) -> Option<T> {
        (self.weight_decay != 0.0 && self.weight_decay_mode == WeightDecayMode::Decoupled)
            .then(|| T::from_f64(self.hp(self.weight_decay)))
    }

    /// Decoupled decay of `x` at learning rate `lr`, written out per [`Rounding`]: the
    /// reference the fused loops' [`WeightOps::decay`] is tested against.
    #[cfg(test)]
    pub(crate) fn decoupled_decay<T: Float>(&self, lr: f64, x: T) -> T {
        match (self.decoupled_wd::<T>(), self.rounding) {
            (None, _) => x,
            (Some(_), Rounding::Torch) => x * T::from_f64(1.0 - lr * self.hp(self.weight_decay)),
            (Some(wd), Rounding::AsWritten | Rounding::Xla | Rounding::Mxnet) => x - x * wd * T::from_f64(lr),
        }
    }

    /// Weight-clipping bound in `T`, if any.
    pub(crate) fn clip_weights_t<T: Float>(&self) -> Option<T> {
        self.clip_weights.map(|c| T::from_f64(self.hp(c)))
    }

    /// Decoupled decay and weight clipping for a step at learning rate `lr` (as held,
    /// see [`hp`](Self::hp)).
    pub(crate) fn weight_ops<T: Float>(&self, lr: f64) -> WeightOps<T> {
        let (wd, bound) = (self.decoupled_wd::<T>(), self.clip_weights_t::<T>());
        WeightOps {
            decoupled: wd.is_some(),
            wd: wd.unwrap_or(T::ZERO),
            lr: T::from_f64(lr),
            factor: T::from_f64(1.0 - lr * self.hp(self.weight_decay)),
            clips: bound.is_some(),
            bound: bound.unwrap_or(T::ZERO),
        }
    }
}

pub(crate) fn check_finite(optimizer: &'static str, name: &'static str, v: f64) -> Result<()> {
    if v.is_finite() { Ok(()) } else { Err(invalid(optimizer, name, v, "a finite number")) }
}

pub(crate) fn check_nonneg(optimizer: &'static str, name: &'static str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 { Ok(()) } else { Err(invalid(optimizer, name, v, "a finite number >= 0")) }
}

pub(crate) fn check_pos(optimizer: &'static str, name: &'static str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 { Ok(()) } else { Err(invalid(optimizer, name, v, "a finite number > 0")) }
}

pub(crate) fn check_unit(optimizer: &'static str, name: &'static str, v: f64) -> Result<()> {
    if (0.0..=1.0).contains(&v) { Ok(()) } else { Err(invalid(optimizer, name, v, "a number in [0, 1]")) }
}

pub(crate) fn invalid(optimizer: &'static str, name: &'static str, v: f64, expected: &'static str) -> Error {
    Error::InvalidHyperparameter { optimizer, name, value: number(v), expected }
}

/// `v` as a person writes it: `1e39` and `-2.5e-12` rather than forty digits, `0.9` and
/// `100` as they are (the CLI's error tests check both).
pub(crate) fn number(v: f64) -> String {
    if v != 0.0 && v.is_finite() && !(1e-5..1e16).contains(&v.abs()) { format!("{v:e}") } else { format!("{v}") }
}

/// Generates the `with_*` setters of the [`Common`] fields on an optimizer config.
macro_rules! common_setters {
    ($t:ty) => {
        impl $t {
            /// Sets the learning rate.
            pub fn with_lr(mut self, lr: f64) -> Self {
                self.common.lr = lr;
                self
            }
            /// Sets the weight decay factor and how it enters the update.
            pub fn with_weight_decay(mut self, wd: f64, mode: $crate::WeightDecayMode) -> Self {
                self.common.weight_decay = wd;
                self.common.weight_decay_mode = mode;
                self
            }
            /// Follow the gradient upwards (PyTorch `maximize`).
            pub fn with_maximize(mut self, on: bool) -> Self {
                self.common.maximize = on;
                self
            }
            /// Multiply gradients by `r` first (MXNet `rescale_grad`).
            pub fn with_rescale_grad(mut self, r: f64) -> Self {
                self.common.rescale_grad = r;
                self
            }
            /// Clip gradient elements to `[-c, c]` (MXNet `clip_gradient`, Keras `clipvalue`).
            pub fn with_clip_gradient(mut self, c: f64) -> Self {
                self.common.clip_gradient = Some(c);
                self
            }
            /// Rescale gradients to an L2 norm of at most `c`.
            pub fn with_clip_norm(mut self, c: f64, scope: $crate::NormScope) -> Self {
                self.common.clip_norm = Some($crate::ClipNorm { max_norm: c, scope });
                self
            }
            /// Clip parameters to `[-c, c]` after each step (MXNet `clip_weights`).
            pub fn with_clip_weights(mut self, c: f64) -> Self {
                self.common.clip_weights = Some(c);
                self
            }
            /// Precision in which hyperparameters are held.
            pub fn with_precision(mut self, p: $crate::HyperPrecision) -> Self {
                self.common.precision = p;
                self
            }
            /// How products and sums are rounded ([`Rounding`](crate::Rounding)).
            pub fn with_rounding(mut self, r: $crate::Rounding) -> Self {
                self.common.rounding = r;
                self
            }
            /// How the state is kept between steps ([`StateStorage`](crate::StateStorage)).
            pub fn with_state_storage(mut self, s: $crate::StateStorage) -> Self {
                self.common.state_storage = s;
                self
            }
        }
    };
}
pub(crate) use common_setters;

/// The [`Rule`](crate::optim::Rule) methods giving an optimizer's `common` field.
macro_rules! common_access {
    () => {
        fn common(&self) -> &$crate::Common {
            &self.common
        }
        fn common_mut(&mut self) -> &mut $crate::Common {
            &mut self.common
        }
    };
}
pub(crate) use common_access;
