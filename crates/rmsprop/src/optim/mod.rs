//! The optimizers (one file each) and the [`Optimizer`] that drives them over many
//! named tensors.

mod check;
mod driver;
mod guard;
mod norm;
pub(crate) mod packed;
mod registry;
pub(crate) mod state;
mod step;
pub(crate) mod world;

use crate::kernel::Prep;
use serde::{Deserialize, Serialize};

pub use self::adam::BiasCorrection;
pub use self::rmsprop::{AverageForm, EpsPlacement, MomentumStyle};
pub use self::sgd::SgdMomentum;
pub use driver::Optimizer;
pub(crate) use registry::Rule;
pub use step::Tensors;

// The family: one line per optimizer (its file, `optim/<module>.rs`, holds the rest).
registry::registry! {
    "rmsprop" => RmsProp(rmsprop::RmsProp),
    "adagrad" => Adagrad(adagrad::Adagrad),
    "sgd" => Sgd(sgd::Sgd),
    "adam" => Adam(adam::Adam),
    "adadelta" => Adadelta(adadelta::Adadelta),
    "yogi" => Yogi(yogi::Yogi),
}

/// How a [`Param`](crate::Param) plans a step's kernel: a supertrait of `Param` that no
/// other crate can name, so `Param` is sealed and its four types' loops are compiled in
/// this crate only (see `registry::planner_for`).
#[allow(private_interfaces)] // on purpose: what a crate outside cannot name, it cannot implement
pub trait Planner: Sized {
    #[doc(hidden)]
    fn plan(config: &OptimizerConfig, ctx: Ctx<<Self as crate::Param>::Acc>) -> Kernel<Self>
    where
        Self: crate::Param;
}

/// One state tensor of an optimizer: its PyTorch name, initial value, whether this
/// configuration uses it, and whether it holds squares (never negative).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub name: &'static str,
    pub init: f64,
    pub used: bool,
    pub nonneg: bool,
    /// Never below the square of this slot's values (a centred average of squares over
    /// its mean: `s - m²` is a variance).
    pub covers: Option<usize>,
}

impl Slot {
    /// A state tensor of any sign (a momentum, a mean gradient).
    pub(crate) fn new(name: &'static str, init: f64, used: bool) -> Self {
        Slot { name, init, used, nonneg: false, covers: None }
    }
    /// A state tensor of squares, never negative (a checkpoint saying otherwise is corrupt).
    pub(crate) fn squares(name: &'static str, init: f64, used: bool) -> Self {
        Slot { name, init, used, nonneg: true, covers: None }
    }
    /// This slot holds the squares whose average is at least slot `mean`'s square.
    pub(crate) fn covering(self, mean: usize) -> Self {
        Slot { covers: Some(mean), ..self }
    }
}

/// What a kernel needs to know about the current step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx<T> {
    /// 1-based step number.
    pub t: u64,
    /// Learning rate of this step (after the schedule), `f64`.
    pub lr: f64,
    /// Gradient preprocessing.
    pub prep: Prep<T>,
}

/// What to do when a gradient holds NaN or an infinity, or when a step would turn finite
/// parameters or state into NaN or an infinity (an overflow of the arithmetic type, or
/// `0 / 0`: `g = 1e20` squared in `f32`, an `eps = 0` denominator whose accumulator
/// decayed to 0, a `float16` parameter pushed past 65504).
///
/// The second case is settled before the step writes anything: by bounds carried through
/// the update formula from the gradient's largest magnitude (taken in the same scan as
/// the non-finite check) — for a centred step without `clamp_variance`, with the smallest
/// denominator of the step measured by a read-only pass — and where they cannot rule it
/// out, by a trial of the step on a copy, chunk by chunk. A parameter that is already
/// non-finite is the caller's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonFinitePolicy {
    /// Refuse the step with [`Error::NonFiniteGradient`](crate::Error::NonFiniteGradient) or
    /// [`Error::NonFiniteResult`](crate::Error::NonFiniteResult);
    /// nothing changes.
    #[default]
    Error,
    /// Count it ([`Optimizer::skipped_steps`]) and leave everything unchanged.
    Skip,
    /// Apply it anyway, as PyTorch, Keras, optax and MXNet do.
    Propagate,
}

/// What a successful [`Optimizer::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// Parameters and state were updated.
    Applied,
    /// A non-finite gradient was skipped ([`NonFinitePolicy::Skip`]).
    Skipped,
}

/// A named parameter tensor: its name and shape (row-major).
///
/// ```
/// let t = rmsprop::TensorSpec::new("w", &[5, 1]);
/// assert_eq!((t.len(), t.checked_len()), (5, Some(5)));
/// let absurd = rmsprop::TensorSpec::new("w", &[usize::MAX, 2]);
/// assert_eq!((absurd.checked_len(), absurd.len()), (None, usize::MAX));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Unique name (`"w"`, `"0.weight"`).
    pub name: String,
    /// Shape; the element count is its product.
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// A tensor called `name` of shape `shape`.
    pub fn new(name: impl Into<String>, shape: &[usize]) -> Self {
        TensorSpec { name: name.into(), shape: shape.to_vec() }
    }
    /// Number of elements; `usize::MAX` when the product of the shape overflows (an
    /// optimizer refuses such a tensor: see [`checked_len`](Self::checked_len)).
    pub fn len(&self) -> usize {
        self.checked_len().unwrap_or(usize::MAX)
    }
    /// Number of elements, or `None` when the product of the shape overflows `usize`.
    pub fn checked_len(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }
    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<S: Into<String>> From<(S, &[usize])> for TensorSpec {
    fn from((name, shape): (S, &[usize])) -> Self {
        TensorSpec::new(name, shape)
    }
}

impl From<&TensorSpec> for TensorSpec {
    fn from(t: &TensorSpec) -> Self {
        t.clone()
    }
}

/// Elements per unit of work: 64 KiB of `f32` per array, so a chunk's arrays stay in L2.
pub const CHUNK: usize = 1 << 14;

/// Below this many elements in a step, it runs on the calling thread.
pub const PARALLEL_THRESHOLD: usize = 1 << 18;

/// Whether a step may use several threads (rayon). Results are bit-identical either way:
/// the update is element-wise and each chunk is computed the same way on any thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Parallelism {
    /// Threads for steps of at least [`PARALLEL_THRESHOLD`] elements (the default).
    #[default]
    Auto,
    /// Always on the calling thread.
    Serial,
    /// Always through rayon, whatever the size (for tests and benchmarks).
    Parallel,
}

/// What the optimizers' fused-against-general tests share.
#[cfg(test)]
pub(crate) mod bit_tests {
    use crate::common::Common;
    use crate::float::Float;

    /// `n` gradients of mixed sign and size, and `n` parameters in [-3, 3] (some beyond
    /// the weight-clipping bound 2 of [`commons`]).
    pub(crate) fn inputs<T: Float>(n: usize) -> (Vec<T>, Vec<T>) {
        let g = (0..n).map(|i| T::from_f64((i * 7919 % 1000) as f64 / 100.0 - 5.0)).collect();
        let x = (0..n).map(|i| T::from_f64((i as f64 / 20.0).sin() * 3.0)).collect();
        (g, x)
    }

    /// `base` with every combination of gradient rescaling, weight decay (none, decoupled,
    /// coupled), weight clipping and rounding.
    pub(crate) fn commons(base: &Common) -> Vec<Common> {
        use crate::{Rounding, WeightDecayMode::*};
        let mut out = Vec::new();
        for rescale in [1.0, 0.5] {
            for (wd, mode) in [(0.0, Decoupled), (0.1, Decoupled), (0.1, Coupled)] {
                for clip in [None, Some(2.0)] {
                    for rounding in [Rounding::AsWritten, Rounding::Torch, Rounding::Xla, Rounding::Mxnet] {
                        let mut c = base.clone();
                        c.rescale_grad = rescale;
                        c.weight_decay = wd;
                        c.weight_decay_mode = mode;
                        c.clip_weights = clip;
                        c.rounding = rounding;
                        out.push(c);
                    }
                }
            }
        }
        out
    }

    /// The bits of every value (through `f64`, exact for `f32`).
    pub(crate) fn bits<T: Float>(v: &[T]) -> Vec<u64> {
        v.iter().map(|x| x.to_f64().to_bits()).collect()
    }
}
