//! The [`Optimizer`]: parameter groups, schedule, non-finite policy and the step, over
//! the state its groups' tensors were registered with (see [`state`](super::state)).

use super::check::norm;
use super::state::{Chunk, Plan, Ptrs, Scratch, Tracked, Trial};
use super::{CHUNK, Ctx, NonFinitePolicy, OptimizerConfig, PARALLEL_THRESHOLD, Parallelism, StepOutcome, TensorSpec};
use crate::buffer::Buffer;
use crate::common::{HyperPrecision, NormScope, Rounding};
use crate::error::{Error, Result};
use crate::float::{Float, Param};
use crate::kernel::{Arrays, MAX_SLOTS};
use crate::schedule::Schedule;

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
    pub(super) groups: Vec<OptimizerConfig>,
    pub(super) tensors: Vec<Tracked>,
    /// All tensors' state of slot `k`, back to back in one huge-page-capable buffer, so
    /// even a model of many small tensors keeps its state on huge pages.
    pub(super) arena: [Buffer<P::Acc>; MAX_SLOTS],
    pub(super) step: u64,
    pub(super) skipped: u64,
    pub(super) schedule: Schedule,
    pub(super) policy: NonFinitePolicy,
    /// Every tensor cut into chunks of at most [`CHUNK`] elements: one stream of work
    /// for all tensors, fixed when tensors are registered.
    pub(super) chunks: Vec<Chunk>,
    /// Per-step scratch (per-tensor pointers), reused so `step` never allocates.
    pub(super) scratch: Scratch<P>,
    /// The kernels planned for the last step, reused when the next one's are the same.
    pub(super) plan: Plan<P>,
    pub(super) parallel: Parallelism,
    /// A group's configuration was handed out mutably since it was last validated.
    pub(super) unvalidated: bool,
    /// Per group: the state its tensors were registered with, which a change through
    /// [`group_mut`](Self::group_mut) must keep.
    registered: Vec<Registered>,
    /// Elements in all tensors.
    pub(super) total: usize,
    /// Per group and state slot: an upper bound of every `|value|` (see [`guard`]).
    pub(super) bounds: Vec<[f64; MAX_SLOTS]>,
    /// Per thread, a chunk's copy for a trial step (see [`guard`]).
    pub(super) trials: Vec<Trial<P>>,
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
            let kernel = P::plan(config, Ctx { t, lr, prep: common.prep(norm) });
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
                    kernels.push(P::plan(config, Ctx { t, lr: self.schedule.lr(common.lr, t), prep }));
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
    pub(super) fn parallel(&self) -> bool {
        match self.parallel {
            Parallelism::Auto => self.total >= PARALLEL_THRESHOLD,
            Parallelism::Serial => false,
            Parallelism::Parallel => true,
        }
    }
}
