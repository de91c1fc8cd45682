//! The [`Optimizer`]: parameter groups, schedule and non-finite policy over the state its
//! groups' tensors were registered with (see [`state`](super::state)); its step is in
//! [`step`](super::step).

use super::packed::{Packed, STAGE, check_storage};
use super::state::{Chunk, Plan, Scratch, Tracked, Trial};
use super::world::Partition;
use super::{CHUNK, NonFinitePolicy, OptimizerConfig, Parallelism, TensorSpec};
use crate::buffer::Buffer;
use crate::common::{HyperPrecision, StateStorage};
use crate::error::{Error, Result};
use crate::float::{Float, Param};
use crate::kernel::MAX_SLOTS;
use crate::quant::BLOCK;
use crate::schedule::Schedule;
use std::ops::Range;

/// Every numeric hyperparameter of `config` stays finite where the step computes with it:
/// in `T`, the state's type, and in `f32` under [`HyperPrecision::F32`]. (`lr = 1e300` is a
/// valid `f64` but becomes infinite in an `f32` step.)
pub(super) fn check_representable<T: Float>(config: &OptimizerConfig) -> Result<()> {
    let held_in_f32 = config.common().precision == HyperPrecision::F32;
    for (name, value) in crate::by_name::hyperparameters(config) {
        let crate::by_name::Value::Num(x) = value else { continue };
        let lost = !T::from_f64(x).to_f64().is_finite() || (held_in_f32 && !(x as f32).is_finite());
        if x.is_finite() && lost {
            return Err(Error::InvalidHyperparameter {
                optimizer: config.name(),
                name,
                value: crate::common::number(x),
                expected: "a value within float32's range (|x| <= 3.4e38), the type the step computes in",
            });
        }
    }
    Ok(())
}

/// Where a tensor of `n` elements kept in `storage` has its state: the index of its arena
/// (`f32`, bfloat16, 8-bit codes) and the scales it takes (one per block of its codes).
fn kept_in(storage: StateStorage, n: usize) -> (usize, usize) {
    match storage {
        StateStorage::F32 => (0, 0),
        StateStorage::Bf16 => (1, 0),
        StateStorage::Int8 => (2, n.div_ceil(BLOCK)),
    }
}

/// The optimizer family and state tensors a group was registered with: its tensors' state
/// is laid out for them, so a configuration changed later must keep both.
#[derive(Clone, Debug)]
pub(super) struct Registered {
    family: std::mem::Discriminant<OptimizerConfig>,
    name: &'static str,
    state: Vec<&'static str>,
    storage: StateStorage,
    min_8bit_size: u64,
    /// A centred average of squares and its mean's slot.
    covers: Option<(usize, usize)>,
}

impl Registered {
    fn of(config: &OptimizerConfig) -> Self {
        let (family, name, state) = (std::mem::discriminant(config), config.name(), config.state_names());
        let slots = config.slots();
        let covers =
            slots.iter().enumerate().find_map(|(k, s)| s.covers.filter(|&m| s.used && slots[m].used).map(|m| (k, m)));
        let (storage, min_8bit_size) = (config.common().state_storage, config.common().min_8bit_size);
        Registered { family, name, state, storage, min_8bit_size, covers }
    }

    /// The group's state bounds for what its storage keeps of state within `bounds`
    /// (see [`packed::widen`](super::packed::widen)).
    pub(super) fn widen(&self, bounds: [f64; MAX_SLOTS]) -> [f64; MAX_SLOTS] {
        super::packed::widen(self.storage, self.covers, bounds)
    }

    /// A centred average of squares and its mean's slot.
    pub(super) fn covers(&self) -> Option<(usize, usize)> {
        self.covers
    }

    /// An error when `config` is of another family or keeps other state tensors.
    pub(super) fn check(&self, config: &OptimizerConfig) -> Result<()> {
        let now = Registered::of(config);
        if now.min_8bit_size != self.min_8bit_size && self.storage == StateStorage::Int8 {
            return Err(Error::InvalidCombination {
                optimizer: config.name(),
                reason: format!(
                    "a group registered with min_8bit_size {} cannot change it to {}: which tensors keep 8-bit \
                     state was fixed when they were added",
                    self.min_8bit_size, now.min_8bit_size
                ),
            });
        }
        if now.storage != self.storage {
            return Err(Error::InvalidCombination {
                optimizer: config.name(),
                reason: format!(
                    "a group registered with state_storage {} cannot change to {}; its state is laid out \
                     for it (save a checkpoint and load it into an optimizer built with {})",
                    self.storage, now.storage, now.storage
                ),
            });
        }
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
    pub(super) registered: Vec<Registered>,
    /// Elements in all tensors.
    pub(super) total: usize,
    /// Per group and state slot: an upper bound of every `|value|` (see [`guard`]).
    pub(super) bounds: Vec<[f64; MAX_SLOTS]>,
    /// Per thread, a chunk's copy for a trial step (see [`guard`]).
    pub(super) trials: Vec<Trial<P>>,
    /// The whole tensors' chunks, counted over all tensors (see [`world`](super::world)).
    pub(super) blocks: usize,
    /// Built by [`sharded`](Self::sharded): one group, over pieces.
    pub(super) sharded: bool,
    /// State slot `k` of the tensors kept in bfloat16 or 8 bits ([`StateStorage`]).
    pub(super) packed: [Packed; MAX_SLOTS],
    /// Some tensor's state is packed: the step stages its chunks (see [`packed`](super::packed)).
    pub(super) stages: bool,
}

impl<P: Param> Optimizer<P> {
    /// One parameter group with `config` over `tensors` (names must be unique).
    pub fn new<S: Into<TensorSpec> + Clone>(config: impl Into<OptimizerConfig>, tensors: &[S]) -> Result<Self> {
        let mut opt = Self::empty();
        opt.add_group(config, tensors)?;
        Ok(opt)
    }

    /// No group yet.
    fn empty() -> Self {
        Optimizer {
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
                floors: Vec::new(),
                chunk_floors: Vec::new(),
                early_floors: Vec::new(),
                chunk_sums: Vec::new(),
                block_sums: Vec::new(),
                packed: Default::default(),
            },
            plan: Plan { kernels: Vec::new(), steady: Vec::new(), envelope: Vec::new() },
            parallel: Parallelism::Auto,
            unvalidated: false,
            registered: Vec::new(),
            total: 0,
            bounds: Vec::new(),
            trials: Vec::new(),
            blocks: 0,
            sharded: false,
            packed: std::array::from_fn(|_| Packed::empty()),
            stages: false,
        }
    }

    /// Adds a parameter group with its own hyperparameters (PyTorch `add_param_group`;
    /// MXNet's `lr_mult`/`wd_mult` are groups with scaled `lr`/`weight_decay`). Its tensors
    /// come after those already registered, in [`step`](Self::step)'s argument order.
    pub fn add_group<S: Into<TensorSpec> + Clone>(
        &mut self,
        config: impl Into<OptimizerConfig>,
        tensors: &[S],
    ) -> Result<()> {
        if self.sharded {
            return Err(Error::InvalidCombination {
                optimizer: self.groups[0].name(),
                reason: "a sharded optimizer has one group, cut by its Partition".into(),
            });
        }
        let specs: Vec<TensorSpec> = tensors.iter().cloned().map(Into::into).collect();
        self.add_pieces(config.into(), specs, None)
    }

    /// The state of process `rank` of a model cut by `partition` (ZeRO stage 1): one
    /// group with `config` over `tensors`, of which it keeps state, and steps, only for its
    /// piece of each ([`Partition::pieces`]). Its tensors are those pieces, flat (a tensor
    /// it holds nothing of has length 0): [`step_in`](Self::step_in) takes each piece of
    /// the parameters and gradients, and with a [`World`](crate::World) of the partition's
    /// processes takes exactly that piece of the step a single process would take.
    ///
    /// ```
    /// use rmsprop::{Optimizer, Partition, RmsProp, Solo};
    /// let tensors = [("w", &[3][..]), ("b", &[1][..])];
    /// let whole = Partition::balanced(&tensors, 1).unwrap();
    /// let mut opt = Optimizer::<f32>::sharded(RmsProp::default(), &tensors, &whole, 0).unwrap();
    /// opt.step_in(&Solo, &mut [vec![0.0f32; 3], vec![0.0]], &[vec![1.0f32; 3], vec![1.0]]).unwrap();
    /// assert_eq!(opt.state("b", "square_avg").map(|s| s.len()), Some(1));
    /// ```
    pub fn sharded<S: Into<TensorSpec> + Clone>(
        config: impl Into<OptimizerConfig>,
        tensors: &[S],
        partition: &Partition,
        rank: usize,
    ) -> Result<Self> {
        let specs: Vec<TensorSpec> = tensors.iter().cloned().map(Into::into).collect();
        let lens: Vec<Option<usize>> = specs.iter().map(TensorSpec::checked_len).collect();
        if rank >= partition.ranks() || lens.iter().copied().ne(partition.lens().iter().map(|&n| Some(n))) {
            return Err(Error::InvalidCombination {
                optimizer: "partition",
                reason: format!(
                    "process {rank} of a partition of {} processes over tensors of {:?} elements; \
                     the tensors given have {:?}",
                    partition.ranks(),
                    partition.lens(),
                    lens
                ),
            });
        }
        let mut opt = Self::empty();
        opt.add_pieces(config.into(), specs, Some(partition.pieces(rank)))?;
        opt.sharded = true;
        Ok(opt)
    }

    /// Registers `config` over `specs`, or over a piece of each (a shard).
    fn add_pieces(
        &mut self,
        config: OptimizerConfig,
        specs: Vec<TensorSpec>,
        pieces: Option<Vec<Range<usize>>>,
    ) -> Result<()> {
        config.validate()?;
        check_representable::<P::Acc>(&config)?;
        check_storage::<P::Acc>(&config)?;
        // one pass with a hash set: a model of a million small tensors registers in linear time
        let mut names: std::collections::HashSet<&str> = self.tensors.iter().map(|t| t.spec.name.as_str()).collect();
        if let Some(s) = specs.iter().find(|s| !names.insert(s.name.as_str())) {
            return Err(Error::DuplicateTensor(s.name.clone()));
        }
        let group = self.groups.len();
        let slots = config.slots();
        let (storage, min_8bit_size) = (config.common().state_storage, config.common().min_8bit_size);
        // sizes first, with checked arithmetic, and every allocation tried before anything
        // changes: a tensor too large is an error, never an abort or a wrapped count.
        // Per slot, the elements of the `f32` arena, the bfloat16 one, the 8-bit codes and
        // their scales
        let mut len: [[usize; 4]; MAX_SLOTS] = std::array::from_fn(|k| {
            let p = &self.packed[k];
            [self.arena[k].len(), p.half.len(), p.codes.len(), p.scales.len()]
        });
        let old = len;
        let width = [size_of::<P::Acc>(), 2, 1, 4];
        let mut chunks = 0usize;
        let too_large =
            |s: &TensorSpec, reason: String| Error::TooLarge { tensor: s.name.clone(), shape: s.shape.clone(), reason };
        for (i, spec) in specs.iter().enumerate() {
            let full = spec.checked_len().ok_or_else(|| too_large(spec, "its element count overflows usize".into()))?;
            let n = pieces.as_ref().map_or(full, |p| p[i].len());
            let (arena, scales) = kept_in(storage.for_tensor(full, min_8bit_size), n);
            for (k, _) in slots.iter().enumerate().filter(|(_, s)| s.used) {
                for (a, add) in [(arena, n), (3, scales)] {
                    len[k][a] = len[k][a]
                        .checked_add(add)
                        .filter(|&l| l.checked_mul(width[a]).is_some_and(|b| b <= isize::MAX as usize))
                        .ok_or_else(|| too_large(spec, "the optimizer state would exceed the address space".into()))?;
                }
            }
            chunks = chunks.saturating_add(n.div_ceil(CHUNK));
        }
        // an allocation that fails names the group's largest tensor
        let largest = || specs.iter().max_by_key(|s| s.len()).expect("a group that grows has tensors");
        let fail = |bytes: usize| too_large(largest(), format!("cannot allocate {bytes} bytes of optimizer state"));
        let mut grown: [Option<Buffer<P::Acc>>; MAX_SLOTS] = std::array::from_fn(|_| None);
        let mut grown_half: [Option<Buffer<u16>>; MAX_SLOTS] = std::array::from_fn(|_| None);
        let mut grown_codes: [Option<(Buffer<u8>, Buffer<f32>)>; MAX_SLOTS] = std::array::from_fn(|_| None);
        for k in 0..MAX_SLOTS {
            let [n, half, codes, scales] = len[k];
            if n != old[k][0] {
                grown[k] = Some(Buffer::try_filled(n, P::Acc::ZERO).ok_or_else(|| fail(n * width[0]))?);
            }
            if half != old[k][1] {
                grown_half[k] = Some(Buffer::try_filled(half, 0).ok_or_else(|| fail(half * 2))?);
            }
            if codes != old[k][2] {
                let bytes = codes + scales * 4;
                let codes = Buffer::try_filled(codes, 0).ok_or_else(|| fail(bytes))?;
                let scales = Buffer::try_filled(scales, 0.0).ok_or_else(|| fail(bytes))?;
                grown_codes[k] = Some((codes, scales));
            }
        }
        self.chunks.try_reserve(chunks).map_err(|_| too_large(largest(), format!("cannot index {chunks} chunks")))?;
        // grow the arenas, keeping what is there
        for k in 0..MAX_SLOTS {
            if let Some(mut buffer) = grown[k].take() {
                buffer[..old[k][0]].copy_from_slice(&self.arena[k]);
                self.arena[k] = buffer;
            }
            let packed = &mut self.packed[k];
            if let Some(mut half) = grown_half[k].take() {
                half[..old[k][1]].copy_from_slice(&packed.half);
                packed.half = half;
            }
            if let Some((mut codes, mut scales)) = grown_codes[k].take() {
                codes[..old[k][2]].copy_from_slice(&packed.codes);
                scales[..old[k][3]].copy_from_slice(&packed.scales);
                (packed.codes, packed.scales) = (codes, scales);
            }
        }
        let mut len = old;
        let registered = Registered::of(&config);
        let covers = registered.covers();
        for (i, spec) in specs.into_iter().enumerate() {
            let full = spec.len();
            let piece = pieces.as_ref().map_or(0..full, |p| p[i].clone());
            let n = piece.len();
            let blocks = self.blocks..self.blocks + full.div_ceil(CHUNK);
            self.blocks = blocks.end;
            // a shard's tensor is its piece, flat
            let spec = if pieces.is_some() { TensorSpec::new(spec.name, &[n]) } else { spec };
            let tensor = self.tensors.len();
            self.chunks.extend((0..n).step_by(CHUNK).map(|start| Chunk { tensor, start, end: (start + CHUNK).min(n) }));
            let kept = storage.for_tensor(full, min_8bit_size);
            let (arena, scales) = kept_in(kept, n);
            let (mut offset, mut scale_at) = ([None; MAX_SLOTS], [0; MAX_SLOTS]);
            for (k, slot) in slots.iter().enumerate().filter(|(_, s)| s.used) {
                let at = len[k][arena];
                (offset[k], scale_at[k]) = (Some(at), len[k][3]);
                len[k][arena] += n;
                len[k][3] += scales;
                // the initial state, written as every step writes it
                if kept == StateStorage::F32 {
                    self.arena[k][at..at + n].fill(P::Acc::from_f64(slot.init));
                } else {
                    let init = [slot.init as f32; STAGE];
                    for start in (0..n).step_by(STAGE) {
                        let m = (n - start).min(STAGE);
                        self.packed[k].write(kept, slot.nonneg, at + start, scale_at[k] + start / BLOCK, &init[..m]);
                    }
                }
            }
            let squares = std::array::from_fn(|k| slots.get(k).is_some_and(|s| s.nonneg));
            self.stages |= kept != StateStorage::F32;
            self.tensors.push(Tracked {
                spec,
                group,
                offset,
                numel: n,
                first: piece.start,
                full,
                blocks,
                storage: kept,
                squares,
                covers,
                scale_at,
            });
            self.total += n;
        }
        let initial = std::array::from_fn(|k| slots.get(k).map_or(0.0, |s| s.init.abs()));
        self.bounds.push(registered.widen(initial));
        self.registered.push(registered);
        self.groups.push(config);
        self.plan.steady.push(false);
        self.plan.kernels.reserve(self.groups.len() + self.tensors.len());
        self.scratch.ptrs.reserve(self.tensors.len());
        self.scratch.largest.reserve(self.chunks.len().max(self.tensors.len()));
        self.scratch.group_largest.reserve(self.groups.len());
        self.scratch.next_bounds.reserve(self.groups.len());
        self.scratch.tried.reserve(self.groups.len());
        self.scratch.floors.reserve(self.groups.len());
        self.scratch.early_floors.reserve(self.groups.len());
        self.scratch.chunk_floors.reserve(self.chunks.len());
        self.scratch.chunk_sums.reserve(self.chunks.len());
        self.scratch.block_sums.resize(2 * self.blocks, 0.0);
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

    /// Changes whether steps may use several threads (a caller that decides per step, as
    /// a framework following its thread setting does).
    ///
    /// ```
    /// use rmsprop::{Optimizer, Parallelism, RmsProp};
    /// let mut opt = Optimizer::<f32>::new(RmsProp::default(), &[("w", &[4][..])]).unwrap();
    /// opt.set_parallelism(Parallelism::Serial);
    /// assert_eq!(opt.parallelism(), Parallelism::Serial);
    /// ```
    pub fn set_parallelism(&mut self, p: Parallelism) {
        self.parallel = p;
    }

    /// Whether steps may use several threads.
    pub fn parallelism(&self) -> Parallelism {
        self.parallel
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
}
