//! The optimizers (one file each) and the [`Optimizer`] that drives them over many
//! named tensors.

pub mod adadelta;
pub mod adagrad;
pub mod adam;
mod guard;
mod registry;
pub mod rmsprop;
pub mod sgd;
pub mod yogi;

use crate::buffer::Buffer;
use crate::common::{HyperPrecision, NormScope, Rounding};
use crate::error::{Error, Result};
use crate::float::{Float, Param};
use crate::kernel::{Arrays, MAX_SLOTS, Prep};
use crate::schedule::Schedule;
use serde::{Deserialize, Serialize};

pub use adadelta::Adadelta;
pub use adagrad::Adagrad;
pub use adam::{Adam, BiasCorrection};
pub use registry::OptimizerConfig;
pub(crate) use registry::{Kernel, Rule, names};
pub use rmsprop::{EpsPlacement, MomentumStyle, RmsProp};
pub use sgd::{Sgd, SgdMomentum};
pub use yogi::Yogi;

/// One state tensor of an optimizer: its PyTorch name, initial value, whether this
/// configuration uses it, and whether it holds squares (never negative).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub name: &'static str,
    pub init: f64,
    pub used: bool,
    pub nonneg: bool,
}

impl Slot {
    /// A state tensor of any sign (a momentum, a mean gradient).
    pub(crate) fn new(name: &'static str, init: f64, used: bool) -> Self {
        Slot { name, init, used, nonneg: false }
    }
    /// A state tensor of squares, never negative (a checkpoint saying otherwise is corrupt).
    pub(crate) fn squares(name: &'static str, init: f64, used: bool) -> Self {
        Slot { name, init, used, nonneg: true }
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
/// the non-finite check), and where they cannot rule it out, by a trial of the step on a
/// copy, chunk by chunk. A parameter that is already non-finite is the caller's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonFinitePolicy {
    /// Refuse the step with [`Error::NonFiniteGradient`] or [`Error::NonFiniteResult`];
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

/// Every numeric hyperparameter of `config` stays finite where the step computes with it:
/// in `T`, the state's type, and in `f32` under [`HyperPrecision::F32`]. (`lr = 1e300` is a
/// valid `f64` but becomes infinite in an `f32` step.)
fn check_representable<T: Float>(config: &OptimizerConfig) -> Result<()> {
    let held_in_f32 = config.common().precision == HyperPrecision::F32;
    for (name, value) in crate::by_name::hyperparameters(config) {
        let crate::by_name::Value::Num(x) = value else { continue };
        let lost = !T::from_f64(x).to_f64().is_finite() || (held_in_f32 && !(x as f32).is_finite());
        if x.is_finite() && lost {
            return Err(Error::InvalidHyperparameter {
                optimizer: config.name(),
                name,
                value: x.to_string(),
                expected: "a value within float32's range (|x| <= 3.4e38), the type the step computes in",
            });
        }
    }
    Ok(())
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

/// A parameter tensor as the optimizer tracks it.
#[derive(Clone, Debug)]
pub(crate) struct Tracked {
    pub spec: TensorSpec,
    /// `spec.len()`, kept so a step does not multiply the shape out again.
    pub numel: usize,
    pub group: usize,
    /// Where this tensor's state of slot `k` starts in arena `k`; `None` when unused.
    pub offset: [Option<usize>; MAX_SLOTS],
}

impl Tracked {
    #[cold]
    fn length_mismatch(&self, x: usize, g: usize) -> Error {
        let (what, got) = if x != self.numel { ("parameter", x) } else { ("gradient", g) };
        let (tensor, shape) = (self.spec.name.clone(), self.spec.shape.clone());
        Error::LengthMismatch { what, tensor, expected: self.numel, got, shape }
    }
}

/// The optimizer family and state tensors a group was registered with: its tensors' state
/// is laid out for them, so a configuration changed later must keep both.
#[derive(Clone, Debug)]
struct Registered {
    family: std::mem::Discriminant<OptimizerConfig>,
    name: &'static str,
    state: Vec<&'static str>,
}

impl Registered {
    fn of(config: &OptimizerConfig) -> Self {
        Registered { family: std::mem::discriminant(config), name: config.name(), state: config.state_names() }
    }

    /// An error when `config` is of another family or keeps other state tensors.
    fn check(&self, config: &OptimizerConfig) -> Result<()> {
        let now = Registered::of(config);
        if now.family == self.family && now.state == self.state {
            return Ok(());
        }
        Err(Error::InvalidCombination {
            optimizer: config.name(),
            reason: format!(
                "a group registered as {} with state [{}] cannot become {} with state [{}]; \
                 add a new group (or build a new optimizer) instead",
                self.name,
                self.state.join(", "),
                now.name,
                now.state.join(", ")
            ),
        })
    }
}

/// Drives one optimizer configuration per parameter group over named tensors of
/// element type `T` (`f32` or `f64`).
///
/// State is allocated when tensors are registered; [`step`](Self::step) allocates
/// nothing. A step first checks every tensor's length and (by default) that every
/// gradient is finite, and only then writes: an `Err` leaves parameters and state
/// bit-identical.
///
/// # Examples
/// The chapter's linear regression parameters, `w` (5x1) and `b` (1):
/// ```
/// use rmsprop::{Optimizer, RmsProp};
/// let mut opt = Optimizer::<f32>::new(RmsProp::default(), &[("w", &[5, 1][..]), ("b", &[1][..])]).unwrap();
/// let mut params = vec![vec![0.0f32; 5], vec![0.0]];
/// let grads = vec![vec![1.0f32; 5], vec![-1.0]];
/// opt.step(&mut params, &grads).unwrap();
/// // first step of RMSProp: x -= lr * g / sqrt((1-γ) g² + ε)
/// let expected = -0.01 * 1.0 / (0.1f32 + 1e-6).sqrt();
/// assert!((params[0][0] - expected).abs() < 1e-7);
/// assert_eq!(opt.step_count(), 1);
/// ```
#[derive(Clone, Debug)]
pub struct Optimizer<P: Param> {
    groups: Vec<OptimizerConfig>,
    tensors: Vec<Tracked>,
    /// All tensors' state of slot `k`, back to back in one huge-page-capable buffer, so
    /// even a model of many small tensors keeps its state on huge pages.
    arena: [Buffer<P::Acc>; MAX_SLOTS],
    step: u64,
    skipped: u64,
    schedule: Schedule,
    policy: NonFinitePolicy,
    /// Every tensor cut into chunks of at most [`CHUNK`] elements: one stream of work
    /// for all tensors, fixed when tensors are registered.
    chunks: Vec<Chunk>,
    /// Per-step scratch (per-tensor pointers), reused so `step` never allocates.
    scratch: Scratch<P>,
    /// The kernels planned for the last step, reused when the next one's are the same.
    plan: Plan<P>,
    parallel: Parallelism,
    /// A group's configuration was handed out mutably since it was last validated.
    unvalidated: bool,
    /// Per group: the state its tensors were registered with, which a change through
    /// [`group_mut`](Self::group_mut) must keep.
    registered: Vec<Registered>,
    /// Elements in all tensors.
    total: usize,
    /// Per group and state slot: an upper bound of every `|value|` (see [`guard`]).
    bounds: Vec<[f64; MAX_SLOTS]>,
    /// Per thread, a chunk's copy for a trial step (see [`guard`]).
    trials: Vec<Trial<P>>,
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

#[derive(Clone, Copy, Debug)]
struct Chunk {
    tensor: usize,
    start: usize,
    end: usize,
}

/// One tensor's arrays for the step under way, and what runs on them.
#[derive(Debug)]
struct Ptrs<P: Param> {
    /// Index of the tensor's planned [`Kernel`] in the step's plan.
    kernel: usize,
    /// The whole tensor.
    arrays: Arrays<P::Acc, P>,
}

impl<P: Param> Clone for Ptrs<P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P: Param> Copy for Ptrs<P> {}

// SAFETY: the pointers are only dereferenced inside `Optimizer::step`, while the `&mut`
// borrows they come from are held, and every chunk covers a disjoint element range.
unsafe impl<P: Param> Send for Ptrs<P> {}
unsafe impl<P: Param> Sync for Ptrs<P> {}

/// Each tensor's pointers for the step under way, and what the gradient scan found.
struct Scratch<P: Param> {
    ptrs: Vec<Ptrs<P>>,
    /// Per chunk (in parallel) or per tensor: the largest `|g|` and `|x|` (∞ where not
    /// scanned), or the index of a non-finite gradient element.
    largest: Vec<std::result::Result<[f64; 2], usize>>,
    /// Per group: the largest `|g|` and `|x|` of the step.
    group_largest: Vec<[f64; 2]>,
    /// Per group: the state bounds after the step under way.
    next_bounds: Vec<[f64; MAX_SLOTS]>,
    /// Per group: the bounds could not clear the step, it is tried first.
    tried: Vec<bool>,
}

impl<P: Param> Clone for Scratch<P> {
    /// Scratch holds nothing between steps: a clone starts empty.
    fn clone(&self) -> Self {
        Scratch {
            ptrs: Vec::with_capacity(self.ptrs.capacity()),
            largest: Vec::with_capacity(self.largest.capacity()),
            group_largest: Vec::with_capacity(self.group_largest.capacity()),
            next_bounds: Vec::with_capacity(self.next_bounds.capacity()),
            tried: Vec::with_capacity(self.tried.capacity()),
        }
    }
}

/// One thread's copy of a chunk's parameters and state for a trial step, and the largest
/// state magnitudes per group it found.
#[derive(Clone, Default)]
struct Trial<P: Param> {
    x: Vec<P>,
    bufs: [Vec<P::Acc>; MAX_SLOTS],
    measured: Vec<[f64; MAX_SLOTS]>,
}

impl<P: Param> std::fmt::Debug for Trial<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Trial")
    }
}

/// The kernels of the last step: one per group, then one per tensor of a group that clips
/// by the tensor's own norm.
#[derive(Clone)]
struct Plan<P: Param> {
    kernels: Vec<Kernel<P>>,
    /// Per group: the group's kernel serves every step until its configuration or the
    /// schedule changes ([`OptimizerConfig::steady`] under a constant schedule; cleared by
    /// [`Optimizer::group_mut`] and [`Optimizer::with_schedule`]).
    steady: Vec<bool>,
}

impl<P: Param> std::fmt::Debug for Plan<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").field("kernels", &self.kernels.len()).field("steady", &self.steady).finish()
    }
}

impl<P: Param> std::fmt::Debug for Scratch<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scratch")
    }
}

impl<P: Param> Optimizer<P> {
    /// One parameter group with `config` over `tensors` (names must be unique).
    pub fn new<S: Into<TensorSpec> + Clone>(config: impl Into<OptimizerConfig>, tensors: &[S]) -> Result<Self> {
        let mut opt = Optimizer {
            groups: Vec::new(),
            tensors: Vec::new(),
            step: 0,
            skipped: 0,
            schedule: Schedule::Constant,
            policy: NonFinitePolicy::Error,
            chunks: Vec::new(),
            arena: std::array::from_fn(|_| Buffer::filled(0, P::Acc::ZERO)),
            scratch: Scratch {
                ptrs: Vec::new(),
                largest: Vec::new(),
                group_largest: Vec::new(),
                next_bounds: Vec::new(),
                tried: Vec::new(),
            },
            plan: Plan { kernels: Vec::new(), steady: Vec::new() },
            parallel: Parallelism::Auto,
            unvalidated: false,
            registered: Vec::new(),
            total: 0,
            bounds: Vec::new(),
            trials: Vec::new(),
        };
        opt.add_group(config, tensors)?;
        Ok(opt)
    }

    /// Adds a parameter group with its own hyperparameters (PyTorch `add_param_group`;
    /// MXNet's `lr_mult`/`wd_mult` are groups with scaled `lr`/`weight_decay`). Its tensors
    /// come after those already registered, in [`step`](Self::step)'s argument order.
    pub fn add_group<S: Into<TensorSpec> + Clone>(
        &mut self,
        config: impl Into<OptimizerConfig>,
        tensors: &[S],
    ) -> Result<()> {
        let config = config.into();
        config.validate()?;
        check_representable::<P::Acc>(&config)?;
        let specs: Vec<TensorSpec> = tensors.iter().cloned().map(Into::into).collect();
        for (i, s) in specs.iter().enumerate() {
            if self.tensors.iter().any(|t| t.spec.name == s.name) || specs[..i].iter().any(|t| t.name == s.name) {
                return Err(Error::DuplicateTensor(s.name.clone()));
            }
        }
        let group = self.groups.len();
        let slots = config.slots();
        // sizes first, with checked arithmetic, and every allocation tried before anything
        // changes: a tensor too large is an error, never an abort or a wrapped count
        let mut len: [usize; MAX_SLOTS] = std::array::from_fn(|k| self.arena[k].len());
        let old = len;
        let mut chunks = 0usize;
        let too_large =
            |s: &TensorSpec, reason: String| Error::TooLarge { tensor: s.name.clone(), shape: s.shape.clone(), reason };
        for spec in &specs {
            let n = spec.checked_len().ok_or_else(|| too_large(spec, "its element count overflows usize".into()))?;
            for (k, _) in slots.iter().enumerate().filter(|(_, s)| s.used) {
                len[k] = len[k]
                    .checked_add(n)
                    .filter(|&l| l.checked_mul(size_of::<P::Acc>()).is_some_and(|b| b <= isize::MAX as usize))
                    .ok_or_else(|| too_large(spec, "the optimizer state would exceed the address space".into()))?;
            }
            chunks = chunks.saturating_add(n.div_ceil(CHUNK));
        }
        // an allocation that fails names the group's largest tensor
        let largest = || specs.iter().max_by_key(|s| s.len()).expect("a group that grows has tensors");
        let mut grown: [Option<Buffer<P::Acc>>; MAX_SLOTS] = std::array::from_fn(|_| None);
        for k in (0..MAX_SLOTS).filter(|&k| len[k] != old[k]) {
            let bytes = len[k] * size_of::<P::Acc>();
            let fail = || too_large(largest(), format!("cannot allocate {bytes} bytes of optimizer state"));
            grown[k] = Some(Buffer::try_filled(len[k], P::Acc::ZERO).ok_or_else(fail)?);
        }
        self.chunks.try_reserve(chunks).map_err(|_| too_large(largest(), format!("cannot index {chunks} chunks")))?;
        let mut len = old;
        let mut fills = Vec::new();
        for spec in specs {
            let n = spec.len();
            let tensor = self.tensors.len();
            self.chunks.extend((0..n).step_by(CHUNK).map(|start| Chunk { tensor, start, end: (start + CHUNK).min(n) }));
            let mut offset = [None; MAX_SLOTS];
            for (k, slot) in slots.iter().enumerate().filter(|(_, s)| s.used) {
                offset[k] = Some(len[k]);
                fills.push((k, len[k], n, P::Acc::from_f64(slot.init)));
                len[k] += n;
            }
            self.tensors.push(Tracked { spec, group, offset, numel: n });
            self.total += n;
        }
        // grow the arenas: keep what is there, initialise the new tensors' state
        for (k, buffer) in grown.into_iter().enumerate() {
            if let Some(mut buffer) = buffer {
                buffer[..old[k]].copy_from_slice(&self.arena[k]);
                self.arena[k] = buffer;
            }
        }
        for (k, start, n, init) in fills {
            self.arena[k][start..start + n].fill(init);
        }
        self.registered.push(Registered::of(&config));
        self.bounds.push(std::array::from_fn(|k| slots.get(k).map_or(0.0, |s| s.init.abs())));
        self.groups.push(config);
        self.plan.steady.push(false);
        self.plan.kernels.reserve(self.groups.len() + self.tensors.len());
        self.scratch.ptrs.reserve(self.tensors.len());
        self.scratch.largest.reserve(self.chunks.len().max(self.tensors.len()));
        self.scratch.group_largest.reserve(self.groups.len());
        self.scratch.next_bounds.reserve(self.groups.len());
        self.scratch.tried.reserve(self.groups.len());
        // a chunk's copy for trial steps per thread, allocated now so that a step never
        // allocates
        let widest = self.tensors.iter().map(|t| t.numel).max().unwrap_or(0).min(CHUNK);
        let threads = rayon::current_num_threads().max(1);
        self.trials.resize_with(threads, Trial::default);
        for trial in &mut self.trials {
            if trial.x.len() < widest {
                trial.x = vec![P::default(); widest];
                trial.bufs = std::array::from_fn(|_| vec![P::Acc::ZERO; widest]);
            }
            trial.measured.reserve(self.groups.len());
        }
        Ok(())
    }

    /// Sets whether steps may use several threads.
    pub fn with_parallelism(mut self, p: Parallelism) -> Self {
        self.parallel = p;
        self
    }

    /// Sets the learning-rate schedule (applies to every group's base rate).
    pub fn with_schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self.plan.steady.fill(false);
        self
    }

    /// Sets what happens on a non-finite gradient.
    pub fn with_nonfinite_policy(mut self, policy: NonFinitePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The configuration of group `i` ([`Error::NoGroup`] past the last).
    pub fn group(&self, i: usize) -> Result<&OptimizerConfig> {
        self.groups.get(i).ok_or(Error::NoGroup { index: i, groups: self.groups.len() })
    }

    /// The configuration of group `i`, mutably; a change is validated at the next step.
    ///
    /// A group's state was laid out when it was added, so a change that needs other state
    /// tensors (centring, momentum or AMSGrad switched on or off, another optimizer) is
    /// refused there with [`Error::InvalidCombination`]; add a group for it instead.
    ///
    /// ```
    /// use rmsprop::{Optimizer, OptimizerConfig, RmsProp};
    /// let mut opt = Optimizer::<f32>::new(RmsProp::default(), &[("w", &[2][..])]).unwrap();
    /// opt.group_mut(0)?.common_mut().lr = 0.1; // takes effect at the next step
    /// if let OptimizerConfig::RmsProp(r) = opt.group_mut(0)? {
    ///     r.centered = true; // would need a `grad_avg` the group does not have
    /// }
    /// assert!(opt.step(&mut [vec![1.0f32; 2]], &[vec![0.5f32; 2]]).is_err());
    /// assert_eq!(opt.group_mut(5).unwrap_err().to_string(), "no parameter group 5: the optimizer has 1 (0 to 0)");
    /// # Ok::<(), rmsprop::Error>(())
    /// ```
    pub fn group_mut(&mut self, i: usize) -> Result<&mut OptimizerConfig> {
        let groups = self.groups.len();
        let config = self.groups.get_mut(i).ok_or(Error::NoGroup { index: i, groups })?;
        self.unvalidated = true;
        self.plan.steady[i] = false;
        Ok(config)
    }

    /// Every group's configuration, in order.
    pub(crate) fn groups(&self) -> &[OptimizerConfig] {
        &self.groups
    }

    /// Number of parameter groups.
    pub fn num_groups(&self) -> usize {
        self.groups.len()
    }

    /// The tensors, in step order.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorSpec> {
        self.tensors.iter().map(|t| &t.spec)
    }

    /// Steps taken (skipped steps not counted).
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Steps skipped for a non-finite gradient.
    pub fn skipped_steps(&self) -> u64 {
        self.skipped
    }

    /// The learning rate the next step will use in group `i` (schedule applied).
    pub fn current_lr(&self, i: usize) -> Result<f64> {
        Ok(self.schedule.lr(self.group(i)?.common().lr, self.step + 1))
    }

    /// State tensor `name` (e.g. `"square_avg"`) of parameter `tensor`.
    ///
    /// ```
    /// use rmsprop::{Optimizer, RmsProp};
    /// let opt = Optimizer::<f64>::new(RmsProp::default(), &[("w", &[3][..])]).unwrap();
    /// assert_eq!(opt.state("w", "square_avg"), Some(&[0.0, 0.0, 0.0][..]));
    /// assert_eq!(opt.state("w", "grad_avg"), None); // not centred
    /// ```
    pub fn state(&self, tensor: &str, name: &str) -> Option<&[P::Acc]> {
        let (t, k) = self.slot_index(tensor, name)?;
        self.buffer(t, k)
    }

    /// State slot `k` of tensor `t`, if used.
    pub(crate) fn buffer(&self, t: usize, k: usize) -> Option<&[P::Acc]> {
        let tr = &self.tensors[t];
        tr.offset[k].map(|o| &self.arena[k][o..o + tr.numel])
    }

    pub(crate) fn slot_index(&self, tensor: &str, name: &str) -> Option<(usize, usize)> {
        let t = self.tensors.iter().position(|t| t.spec.name == tensor)?;
        let slots = self.groups[self.tensors[t].group].slots();
        let k = slots.iter().position(|s| s.used && s.name == name)?;
        Some((t, k))
    }

    pub(crate) fn tracked(&self) -> &[Tracked] {
        &self.tensors
    }

    pub(crate) fn restore(&mut self, step: u64, skipped: u64, bufs: Vec<Vec<Vec<P::Acc>>>) {
        self.step = step;
        self.skipped = skipped;
        self.bounds.iter_mut().for_each(|b| *b = [0.0; MAX_SLOTS]);
        for (tr, b) in self.tensors.iter().zip(bufs) {
            for (k, v) in b.iter().enumerate() {
                if let Some(o) = tr.offset[k] {
                    self.arena[k][o..o + tr.numel].copy_from_slice(v);
                    let bound = &mut self.bounds[tr.group][k];
                    *bound = v.iter().fold(*bound, |m, v| m.max(v.to_f64().abs()));
                }
            }
        }
    }

    /// One optimizer step: `params[i]` is updated with `grads[i]`, in registration order.
    ///
    /// Errors (nothing is changed): a wrong number of tensors, a length that does not
    /// match its tensor, an invalid hyperparameter (after [`group_mut`](Self::group_mut)),
    /// and under [`NonFinitePolicy::Error`] a non-finite gradient
    /// ([`Error::NonFiniteGradient`]) or a step that would make a finite parameter or state
    /// value non-finite ([`Error::NonFiniteResult`]: an overflow, or `0 / 0`).
    ///
    /// ```
    /// use rmsprop::{Error, Optimizer, RmsProp};
    /// // g² = 1e40 is beyond f32's range: the average of squares would be infinite
    /// let mut opt = Optimizer::<f32>::new(RmsProp::default(), &[("w", &[2][..])]).unwrap();
    /// let mut x = [vec![1.0f32, 2.0]];
    /// let e = opt.step(&mut x, &[vec![1e20f32, 0.5]]).unwrap_err();
    /// assert!(matches!(e, Error::NonFiniteResult { index: 0, .. }), "{e}");
    /// assert_eq!((x[0].as_slice(), opt.state("w", "square_avg").unwrap()), (&[1.0, 2.0][..], &[0.0, 0.0][..]));
    /// ```
    pub fn step<X: AsMut<[P]>, G: AsRef<[P]>>(&mut self, params: &mut [X], grads: &[G]) -> Result<StepOutcome> {
        self.take(params, grads)?;
        let checked = self.policy != NonFinitePolicy::Propagate;
        let nonfinite = if checked { self.scan() } else { None };
        if self.unvalidated {
            for (config, registered) in self.groups.iter().zip(&self.registered) {
                config.validate()?;
                check_representable::<P::Acc>(config)?;
                registered.check(config)?;
            }
            self.unvalidated = false;
        }
        if let Some((i, index)) = nonfinite {
            if self.policy == NonFinitePolicy::Skip {
                self.skipped = self.skipped.saturating_add(1);
                return Ok(StepOutcome::Skipped);
            }
            let value = format!("{:?}", grads[i].as_ref()[index]);
            return Err(Error::NonFiniteGradient { tensor: self.tensors[i].spec.name.clone(), index, value });
        }
        let t = self.step + 1;
        if !matches!(self.schedule, Schedule::Constant) {
            self.check_schedule(t)?;
        }
        self.plan(t, grads);
        if checked && let Err(e) = self.check_results(t) {
            if self.policy == NonFinitePolicy::Skip {
                self.skipped = self.skipped.saturating_add(1);
                return Ok(StepOutcome::Skipped);
            }
            return Err(e);
        }
        self.run();
        if checked {
            self.bounds.copy_from_slice(&self.scratch.next_bounds);
        }
        self.step = t;
        Ok(StepOutcome::Applied)
    }

    /// The first part of a step, which writes nothing: checks the number of tensors and
    /// every length, and keeps the pointers the kernels will write through.
    fn take<X: AsMut<[P]>, G: AsRef<[P]>>(&mut self, params: &mut [X], grads: &[G]) -> Result<()> {
        if params.len() != self.tensors.len() || grads.len() != self.tensors.len() {
            return Err(self.count_mismatch(params.len(), grads.len()));
        }
        let (ptrs, arena) = (&mut self.scratch.ptrs, &mut self.arena);
        ptrs.clear();
        for ((tr, x), g) in self.tensors.iter().zip(params.iter_mut()).zip(grads) {
            // each slice is taken once: the lengths checked are those of the very slices
            // the pointers come from, whatever an `AsMut` would answer a second time
            let (x, g) = (x.as_mut(), g.as_ref());
            if x.len() != tr.numel || g.len() != tr.numel {
                return Err(tr.length_mismatch(x.len(), g.len()));
            }
            let bufs = std::array::from_fn(|k| match tr.offset[k] {
                // SAFETY: `o + numel` is within the arena (laid out in `add_group`);
                // `Buffer::as_mut_ptr` is the buffer's raw pointer, so taking the next
                // tensor's pointer does not invalidate this one.
                Some(o) => unsafe { arena[k].as_mut_ptr().add(o) },
                None => std::ptr::null_mut(),
            });
            let arrays = Arrays { x: x.as_mut_ptr(), g: g.as_ptr(), bufs, n: tr.numel };
            ptrs.push(Ptrs { kernel: tr.group, arrays });
        }
        Ok(())
    }

    /// The gradient scan of a checked step: the first non-finite gradient element (tensor,
    /// index) of the step `take` prepared, else each group's largest `|g|` (and `|x|` in a
    /// group with weight decay, which the bounds need) into `scratch.group_largest`. Chunk
    /// by chunk across threads like the step itself, or tensor by tensor.
    fn scan(&mut self) -> Option<(usize, usize)> {
        let per_chunk = self.parallel();
        let Scratch { ptrs, largest, group_largest, .. } = &mut self.scratch;
        let (tensors, groups) = (&self.tensors, &self.groups);
        let scan = |tensor: usize, a: Arrays<P::Acc, P>| {
            // SAFETY: `take` checked the gradient and the parameter have `n` elements; both
            // are only read here.
            let g = largest_magnitude(unsafe { std::slice::from_raw_parts(a.g, a.n) })?;
            // |x| only where weight decay uses it; unscanned, or a non-finite parameter (the
            // caller's: the trial step then finds what it leads to), it bounds nothing: ∞
            let decays = groups[tensors[tensor].group].common().weight_decay != 0.0;
            let x = if decays {
                largest_magnitude(unsafe { std::slice::from_raw_parts(a.x.cast_const(), a.n) }).unwrap_or(f64::INFINITY)
            } else {
                f64::INFINITY
            };
            Ok([g, x])
        };
        if per_chunk {
            use rayon::prelude::*;
            let ptrs = &*ptrs;
            self.chunks
                .par_iter()
                .map(|c| {
                    // SAFETY: a chunk lies within its tensor.
                    let a = unsafe { ptrs[c.tensor].arrays.range(c.start, c.end) };
                    scan(c.tensor, a).map_err(|i| c.start + i)
                })
                .collect_into_vec(largest);
        } else {
            largest.clear();
            largest.extend(ptrs.iter().enumerate().map(|(t, p)| scan(t, p.arrays)));
        }
        group_largest.clear();
        group_largest.resize(groups.len(), [0.0; 2]);
        for (i, found) in largest.iter().enumerate() {
            let tensor = if per_chunk { self.chunks[i].tensor } else { i };
            match found {
                Err(index) => return Some((tensor, *index)),
                Ok([g, x]) => {
                    let group = &mut group_largest[tensors[tensor].group];
                    *group = [group[0].max(*g), group[1].max(*x)];
                }
            }
        }
        None
    }

    /// Whether the planned step `t` keeps every result finite (see [`guard`]): by the
    /// bounds, else by a trial of the groups they cannot clear. On success
    /// `scratch.next_bounds` holds the state bounds after the step.
    fn check_results(&mut self, t: u64) -> Result<()> {
        let Scratch { next_bounds, group_largest, tried, .. } = &mut self.scratch;
        next_bounds.clear();
        tried.clear();
        for (i, config) in self.groups.iter().enumerate() {
            let [grad, param] = group_largest[i];
            let lr = self.schedule.lr(config.common().lr, t);
            let inputs = guard::Inputs { grad, param, state: self.bounds[i], t, lr };
            let reach = config.reach::<P::Acc>(&inputs).filter(|r| r.step < P::HALF_GAP_AT_MAX / 2.0);
            tried.push(reach.is_none());
            next_bounds.push(reach.map_or([f64::INFINITY; MAX_SLOTS], |r| r.state));
        }
        if tried.contains(&true) { self.trial_step(t) } else { Ok(()) }
    }

    /// Runs each chunk of the groups the bounds could not clear through its kernel on a
    /// copy of its parameters and state, and checks every result; measures the state of
    /// those groups into `scratch.next_bounds`. Across threads like the step itself, each
    /// with its own copy; the failure reported is the first in chunk order.
    #[cold]
    fn trial_step(&mut self, t: u64) -> Result<()> {
        let workers = if self.parallel() { self.trials.len() } else { 1 };
        let Optimizer { trials, chunks, tensors, groups, scratch, plan, .. } = self;
        let Scratch { next_bounds, tried, ptrs, .. } = scratch;
        let (tried, ptrs, kernels) = (&*tried, &*ptrs, &plan.kernels);
        let work = |w: usize, trial: &mut Trial<P>| -> std::result::Result<(), (usize, Error)> {
            let Trial { x, bufs, measured } = trial;
            measured.clear();
            measured.resize(groups.len(), [0.0; MAX_SLOTS]);
            for (i, c) in chunks.iter().enumerate().skip(w).step_by(workers) {
                let (p, group) = (ptrs[c.tensor], tensors[c.tensor].group);
                if !tried[group] {
                    continue;
                }
                // SAFETY: a chunk lies within its tensor.
                let a = unsafe { p.arrays.range(c.start, c.end) };
                let n = a.n;
                // SAFETY: `take` checked the lengths; the originals are only read.
                unsafe {
                    x[..n].copy_from_slice(std::slice::from_raw_parts(a.x.cast_const(), n));
                    for (k, b) in bufs.iter_mut().enumerate().filter(|(k, _)| !a.bufs[*k].is_null()) {
                        b[..n].copy_from_slice(std::slice::from_raw_parts(a.bufs[k].cast_const(), n));
                    }
                }
                let copy = Arrays {
                    x: x.as_mut_ptr(),
                    g: a.g,
                    bufs: std::array::from_fn(|k| if a.bufs[k].is_null() { a.bufs[k] } else { bufs[k].as_mut_ptr() }),
                    n,
                };
                // SAFETY: the copy's arrays hold at least `n` elements (sized in
                // `add_group` for the widest chunk), owned here; `g` is only read.
                unsafe { kernels[p.kernel].run_on(copy) };
                let refuse = |index: usize, quantity: &str| {
                    let tensor = tensors[c.tensor].spec.name.clone();
                    (i, Error::NonFiniteResult { step: t, tensor, index: c.start + index, quantity: quantity.into() })
                };
                largest_magnitude(&x[..n]).map_err(|i| refuse(i, "the parameter"))?;
                for (k, b) in bufs.iter().enumerate().filter(|(k, _)| !a.bufs[*k].is_null()) {
                    let largest =
                        largest_of(&b[..n], |v| v.to_f64()).map_err(|i| refuse(i, groups[group].slots()[k].name))?;
                    measured[group][k] = measured[group][k].max(largest);
                }
            }
            Ok(())
        };
        let trials = &mut trials[..workers];
        let failed = if workers > 1 {
            use rayon::prelude::*;
            trials.par_iter_mut().enumerate().filter_map(|(w, trial)| work(w, trial).err()).min_by_key(|(i, _)| *i)
        } else {
            work(0, &mut trials[0]).err()
        };
        if let Some((_, e)) = failed {
            return Err(e);
        }
        for (group, bound) in next_bounds.iter_mut().enumerate().filter(|(g, _)| tried[*g]) {
            *bound = std::array::from_fn(|k| trials.iter().map(|t| t.measured[group][k]).fold(0.0, f64::max));
        }
        Ok(())
    }

    /// Every group's scheduled rate for step `t` is a finite number >= 0 (a constant rate
    /// is the validated `lr`; a schedule, a closure above all, can give anything).
    fn check_schedule(&self, t: u64) -> Result<()> {
        for (group, config) in self.groups.iter().enumerate() {
            let lr = self.schedule.lr(config.common().lr, t);
            if !(lr.is_finite() && lr >= 0.0) {
                return Err(Error::InvalidSchedule { group, step: t, lr });
            }
        }
        Ok(())
    }

    #[cold]
    fn count_mismatch(&self, params: usize, grads: usize) -> Error {
        let (what, got) = if params != self.tensors.len() { ("parameter", params) } else { ("gradient", grads) };
        let names = self.tensors.iter().map(|t| t.spec.name.as_str()).collect::<Vec<_>>().join(", ");
        Error::TensorCountMismatch { what, expected: self.tensors.len(), got, names }
    }

    /// Plans step `t`: each group's kernel (kept from the last step when it would come out
    /// the same), then one per tensor of groups that clip by the tensor's own norm.
    fn plan<G: AsRef<[P]>>(&mut self, t: u64, grads: &[G]) {
        let scope = |c: &OptimizerConfig| c.common().clip_norm.map(|c| c.scope);
        // per rounding: XLA's differs from the others' (see `norm`)
        let mut global_norm = [None, None];
        let mut per_tensor = false;
        let Plan { kernels, steady } = &mut self.plan;
        kernels.truncate(self.groups.len());
        for (i, config) in self.groups.iter().enumerate() {
            if steady[i] {
                continue; // no norm clipping then, and the same learning rate
            }
            let common = config.common();
            let lr = self.schedule.lr(common.lr, t);
            let norm = match scope(config) {
                Some(NormScope::Global) => Some(
                    *global_norm[(common.rounding == Rounding::Xla) as usize]
                        .get_or_insert_with(|| norm(grads.iter().map(|g| g.as_ref()), common.rounding)),
                ),
                Some(NormScope::PerTensor) => {
                    per_tensor = true;
                    None // the group's kernel is not used: each tensor gets its own below
                }
                None => None,
            };
            let kernel = config.kernel(Ctx { t, lr, prep: common.prep(norm) });
            match kernels.get_mut(i) {
                Some(k) => *k = kernel,
                None => kernels.push(kernel),
            }
            steady[i] = config.steady() && matches!(self.schedule, Schedule::Constant);
        }
        if per_tensor {
            for ((tr, p), g) in self.tensors.iter().zip(&mut self.scratch.ptrs).zip(grads) {
                let config = &self.groups[tr.group];
                if scope(config) == Some(NormScope::PerTensor) {
                    let common = config.common();
                    let prep = common.prep(Some(norm([g.as_ref()].into_iter(), common.rounding)));
                    p.kernel = kernels.len();
                    kernels.push(config.kernel(Ctx { t, lr: self.schedule.lr(common.lr, t), prep }));
                }
            }
        }
    }

    /// The second half of a step: every chunk through its tensor's kernel, on this thread
    /// or across rayon's.
    fn run(&self) {
        if self.parallel() {
            use rayon::prelude::*;
            self.chunks.par_iter().for_each(|c| self.run_chunk(c));
        } else {
            for c in &self.chunks {
                self.run_chunk(c);
            }
        }
    }

    /// Chunk `c` through its tensor's kernel.
    #[inline(always)]
    fn run_chunk(&self, c: &Chunk) {
        let p = &self.scratch.ptrs[c.tensor];
        // SAFETY: a chunk lies within its tensor; `take` checked every parameter and
        // gradient has its tensor's length, state is allocated at that length (null when
        // unused), chunks of one tensor never overlap, and the borrows behind the pointers
        // outlive `step`.
        unsafe { self.plan.kernels[p.kernel].run_on(p.arrays.range(c.start, c.end)) }
    }

    /// Whether this step runs across threads.
    fn parallel(&self) -> bool {
        match self.parallel {
            Parallelism::Auto => self.total >= PARALLEL_THRESHOLD,
            Parallelism::Serial => false,
            Parallelism::Parallel => true,
        }
    }
}

/// The largest `|v|` of `v`, or the index of its first NaN or infinity. For `f32` and
/// `f64` on the bits: with the sign cleared, the order of the magnitudes is that of the
/// integers and every NaN or infinity is at least the infinity's, so one integer maximum
/// per block (which vectorises, where a float maximum does not) finds both; only a block
/// holding a non-finite value is searched.
#[inline]
fn largest_magnitude<P: Param>(v: &[P]) -> std::result::Result<f64, usize> {
    largest_of(v, |v| v.load().to_f64())
}

/// [`largest_magnitude`] of any element type, `widen` giving each value in `f64` (used for
/// types other than `f32` and `f64`).
#[inline]
fn largest_of<V: Copy + 'static>(v: &[V], widen: impl Fn(V) -> f64) -> std::result::Result<f64, usize> {
    use std::any::TypeId;
    macro_rules! by_bits {
        ($float:ty, $bits:ty) => {{
            // SAFETY: `V` is `$float`, which has the size and alignment of `$bits`, and
            // every bit pattern is a valid `$bits`.
            let bits = unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<$bits>(), v.len()) };
            let (magnitude, infinity) = (<$bits>::MAX >> 1, <$float>::INFINITY.to_bits());
            let largest = crate::kernel::widest_closure(
                #[inline(always)]
                || {
                    let mut largest = 0;
                    for (b, block) in bits.chunks(SCAN_BLOCK).enumerate() {
                        let m = block.iter().fold(0, |m: $bits, &x| m.max(x & magnitude));
                        if m >= infinity {
                            let i = block.iter().position(|&x| x & magnitude >= infinity);
                            return Err(b * SCAN_BLOCK + i.expect("a block with a non-finite value"));
                        }
                        largest = largest.max(m);
                    }
                    Ok(largest)
                },
            )?;
            return Ok(<$float>::from_bits(largest) as f64);
        }};
    }
    if TypeId::of::<V>() == TypeId::of::<f32>() {
        by_bits!(f32, u32)
    }
    if TypeId::of::<V>() == TypeId::of::<f64>() {
        by_bits!(f64, u64)
    }
    // half precision: widened, one value at a time
    let mut largest = 0.0f64;
    for (i, &v) in v.iter().enumerate() {
        let v = widen(v);
        if !v.is_finite() {
            return Err(i);
        }
        largest = largest.max(v.abs());
    }
    Ok(largest)
}

/// Elements per block of the gradient scan.
const SCAN_BLOCK: usize = 256;

/// The L2 norm of the gradients `gs` together, as the rounding forms it. Under
/// [`Rounding::Xla`] in the arithmetic type: a tensor of up to 32 elements adds its squares
/// in turn, as XLA reduces it on CPU (larger ones it reduces in vector lanes, an order not
/// reproduced here: their sum is taken in `f64` and rounded), the tensors' sums are added
/// in turn (optax's `global_norm`), then the root. Otherwise in `f64`, rounded once where
/// it is used.
fn norm<'a, P: Param>(gs: impl Iterator<Item = &'a [P]>, rounding: Rounding) -> f64 {
    let sum_f64 = |g: &[P]| g.iter().map(|v| v.load().to_f64().powi(2)).sum::<f64>();
    if rounding == Rounding::Xla {
        let in_turn = |g: &[P]| {
            g.iter().fold(P::Acc::ZERO, |s, v| {
                let v = v.load();
                s + v * v
            })
        };
        let tensor = |g: &[P]| if g.len() <= 32 { in_turn(g) } else { P::Acc::from_f64(sum_f64(g)) };
        gs.map(tensor).fold(P::Acc::ZERO, |s, t| s + t).sqrt().to_f64()
    } else {
        gs.map(sum_f64).sum::<f64>().sqrt()
    }
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
