//! The step: take the arrays, check them, agree with the other processes, plan, check the
//! results, agree again, run. Alone ([`Solo`]) the agreements are free.

use super::driver::check_representable;
use super::norm::Squares;
use super::packed::{STAGE, stage, unstage};
use super::state::{Plan, Ptrs, Trial};
use super::world::{Solo, World};
use super::{Ctx, NonFinitePolicy, Optimizer, OptimizerConfig, PARALLEL_THRESHOLD, Parallelism, StepOutcome};
use crate::StateStorage;
use crate::common::NormScope;
use crate::error::{Error, Result};
use crate::float::Param;
use crate::kernel::Arrays;
use crate::schedule::Schedule;

/// What a process found before a step, added up across processes: invalid inputs, then
/// non-finite gradients.
const INVALID: usize = 0;
const NONFINITE: usize = 1;

impl<P: Param> Optimizer<P> {
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
    /// assert_eq!((x[0].as_slice(), &*opt.state("w", "square_avg").unwrap()), (&[1.0, 2.0][..], &[0.0, 0.0][..]));
    /// ```
    pub fn step<X: AsMut<[P]>, G: AsRef<[P]>>(&mut self, params: &mut [X], grads: &[G]) -> Result<StepOutcome> {
        self.step_in(&Solo, params, grads)
    }

    /// One step taken by every process of `world` together: each passes its own `params`
    /// and `grads` (the whole tensors, already averaged across processes, for
    /// data-parallel training; its pieces for an optimizer built by
    /// [`sharded`](Self::sharded)), and every process calls it for every step.
    ///
    /// The processes agree before anything is written: if any of them has an invalid
    /// input, a non-finite gradient or a step with a non-finite result, every one refuses
    /// the step (the others with [`Error::RefusedElsewhere`]) or, under
    /// [`NonFinitePolicy::Skip`], skips it; nothing changes anywhere. Norm clipping uses
    /// the norm of the whole model, the same on every process and the same bits as one
    /// process computes (see [`world`](crate::World)). A failure of `world` itself ends
    /// the step on this process with its error, and nothing is changed.
    ///
    /// ```
    /// use rmsprop::{Optimizer, RmsProp, Solo};
    /// let mut opt = Optimizer::<f32>::new(RmsProp::default(), &[("w", &[2][..])]).unwrap();
    /// let mut x = [vec![1.0f32, 2.0]];
    /// opt.step_in(&Solo, &mut x, &[vec![0.5f32, 0.5]]).unwrap(); // the same as `step`
    /// assert_eq!(opt.step_count(), 1);
    /// ```
    pub fn step_in<W: World + ?Sized, X: AsMut<[P]>, G: AsRef<[P]>>(
        &mut self,
        world: &W,
        params: &mut [X],
        grads: &[G],
    ) -> Result<StepOutcome> {
        let checked = self.policy != NonFinitePolicy::Propagate;
        // what this process finds, then what all found; a serial step scans each gradient
        // as it takes it
        let scan_in_take = checked && !self.parallel();
        if checked {
            self.reset_largest(!scan_in_take);
        }
        let local = match self.take(params, grads, scan_in_take) {
            Err(e) => Err(e),
            Ok(found) => {
                let nonfinite = if checked && !scan_in_take { self.scan(0..self.tensors.len()) } else { found };
                self.validate_changed().map(|()| nonfinite)
            }
        };
        let mut found = [0.0; 2];
        match &local {
            Err(_) => found[INVALID] = 1.0,
            Ok(Some(_)) => found[NONFINITE] = 1.0,
            Ok(None) => {}
        }
        world.all_sum(&mut found)?;
        let t = self.step + 1;
        if found[INVALID] > 0.0 {
            return Err(local.err().unwrap_or_else(|| refused(t, "an invalid input", found[INVALID])));
        }
        if found[NONFINITE] > 0.0 {
            if self.policy == NonFinitePolicy::Skip {
                return Ok(self.skip());
            }
            let Ok(Some((i, index))) = local else {
                return Err(refused(t, "a non-finite gradient", found[NONFINITE]));
            };
            let value = format!("{:?}", grads[i].as_ref()[index]);
            // the element of the whole tensor (a shard's piece starts at `first`)
            let (tensor, index) = (self.tensors[i].spec.name.clone(), self.tensors[i].first + index);
            return Err(Error::NonFiniteGradient { tensor, index, value });
        }
        if !matches!(self.schedule, Schedule::Constant) {
            self.check_schedule(t)?; // the same on every process
        }
        self.plan(world, t)?;
        if checked {
            let verdict = self.check_results(t);
            let mut failed = [verdict.is_err() as u8 as f64];
            world.all_sum(&mut failed)?;
            if failed[0] > 0.0 {
                if self.policy == NonFinitePolicy::Skip {
                    return Ok(self.skip());
                }
                return Err(verdict.err().unwrap_or_else(|| refused(t, "a non-finite result", failed[0])));
            }
        }
        self.run(0..self.chunks.len());
        if checked {
            std::mem::swap(&mut self.bounds, &mut self.scratch.next_bounds); // one per group in each
        }
        self.step = t;
        Ok(StepOutcome::Applied)
    }

    /// One step over tensors that `tensors` opens one at a time, for a caller that cannot
    /// hold every parameter at once without risking a deadlock (candle's variables, each
    /// behind its own lock, that another thread may be reading two at a time): the step
    /// opens each tensor up to four times — to check its length and scan its gradient (and
    /// probe the step's denominators where the guard's bounds need them, once the group's
    /// kernel is planned: from its second step), to probe them on a group's first step, to
    /// try it on copies where even the probe does not clear it, to update it — and holds no
    /// tensor between two openings. What it promises is [`step`](Self::step)'s, for tensors
    /// nobody else writes during the step: a refused step (an error from `tensors` in any
    /// pass before the last included) changes nothing. A tensor that opened in the first
    /// pass and fails to in the last ([`Error::Access`]) leaves the tensors before it
    /// updated and the step uncounted.
    ///
    /// ```
    /// use rmsprop::{Optimizer, RmsProp, Tensors};
    /// struct Two(Vec<Vec<f32>>, Vec<Vec<f32>>);
    /// impl Tensors<f32> for Two {
    ///     fn with(&mut self, i: usize, f: &mut dyn FnMut(&mut [f32], &[f32])) -> rmsprop::Result<()> {
    ///         f(&mut self.0[i], &self.1[i]); // a lock would be taken and released around this
    ///         Ok(())
    ///     }
    /// }
    /// let specs = [("a", &[2][..]), ("b", &[1][..])];
    /// let (mut one, mut other) = (Optimizer::<f32>::new(RmsProp::default(), &specs).unwrap(), Optimizer::<f32>::new(RmsProp::default(), &specs).unwrap());
    /// let mut t = Two(vec![vec![1.0, 2.0], vec![3.0]], vec![vec![0.5, -0.5], vec![1.0]]);
    /// one.step_each(&mut t).unwrap();
    /// let mut x = vec![vec![1.0f32, 2.0], vec![3.0]];
    /// other.step(&mut x, &[vec![0.5f32, -0.5], vec![1.0]]).unwrap();
    /// assert_eq!(t.0, x);
    /// ```
    pub fn step_each(&mut self, tensors: &mut dyn Tensors<P>) -> Result<StepOutcome> {
        let checked = self.policy != NonFinitePolicy::Propagate;
        let n = self.tensors.len();
        let clips = self.groups.iter().any(|c| c.common().clip_norm.is_some());
        self.validate_changed()?;
        let t = self.step + 1;
        // first pass: lengths, the gradient scan and the sums of squares, tensor by tensor
        self.reset_largest(checked);
        self.scratch.block_sums.fill(0.0);
        self.scratch.ptrs.clear();
        let mut nonfinite = None;
        self.each_opened(tensors, |this, i| {
            if checked && nonfinite.is_none() {
                nonfinite = this.scan(i..i + 1);
            }
            if clips {
                this.square_sums_of(this.chunks_of(i..i + 1));
            }
        })?;
        if let Some((i, index)) = nonfinite {
            if self.policy == NonFinitePolicy::Skip {
                return Ok(self.skip());
            }
            let mut value = String::new();
            tensors.with(i, &mut |_, g| {
                if let Some(v) = g.get(index) {
                    value = format!("{v:?}");
                }
            })?;
            let (tensor, index) = (self.tensors[i].spec.name.clone(), self.tensors[i].first + index);
            return Err(Error::NonFiniteGradient { tensor, index, value });
        }
        if !matches!(self.schedule, Schedule::Constant) {
            self.check_schedule(t)?;
        }
        self.plan_kernels(t);
        // where the bounds cannot clear a group: its tensors probed, then, where that does
        // not clear it either, tried on copies
        let unsettled = checked && self.check_bounds(t);
        if unsettled {
            if self.start_probe() {
                self.each_opened(tensors, |this, i| this.probe_floors(this.chunks_of(i..i + 1)))?;
            }
            self.finish_probe(t);
        }
        if unsettled && self.scratch.tried.contains(&true) {
            self.start_trial();
            for i in 0..n {
                let mut tried = Ok(());
                tensors.with(i, &mut |x, g| {
                    tried = self.take_one(i, x, g).and_then(|()| self.trial_step(t, self.chunks_of(i..i + 1)));
                })?;
                if let Err(e) = tried {
                    if self.policy == NonFinitePolicy::Skip && matches!(e, Error::NonFiniteResult { .. }) {
                        return Ok(self.skip());
                    }
                    return Err(e);
                }
            }
            self.finish_trial();
        }
        // last pass: the update
        self.each_opened(tensors, |this, i| this.run(this.chunks_of(i..i + 1)))?;
        if checked {
            std::mem::swap(&mut self.bounds, &mut self.scratch.next_bounds); // one per group in each
        }
        self.step = t;
        Ok(StepOutcome::Applied)
    }

    /// Opens each tensor in turn through `tensors`, takes its arrays ([`take_one`](Self::take_one):
    /// its length checked) and runs `then` on it while it is open; the first error, from
    /// `tensors` or a length, ends the pass.
    fn each_opened(&mut self, tensors: &mut dyn Tensors<P>, mut then: impl FnMut(&mut Self, usize)) -> Result<()> {
        for i in 0..self.tensors.len() {
            let mut taken = Ok(());
            tensors.with(i, &mut |x, g| {
                taken = self.take_one(i, x, g);
                if taken.is_ok() {
                    then(self, i);
                }
            })?;
            taken?;
        }
        Ok(())
    }

    /// The chunks (indices into `self.chunks`) of the tensors `range`: registration order
    /// keeps each tensor's chunks together.
    pub(super) fn chunks_of(&self, range: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let at = |t: usize| self.chunks.partition_point(|c| c.tensor < t);
        at(range.start)..at(range.end)
    }

    /// A step skipped under [`NonFinitePolicy::Skip`]: counted, nothing else changes.
    fn skip(&mut self) -> StepOutcome {
        self.skipped = self.skipped.saturating_add(1);
        StepOutcome::Skipped
    }

    /// The groups' configurations, if one was handed out mutably since the last step.
    fn validate_changed(&mut self) -> Result<()> {
        if self.unvalidated {
            for (config, registered) in self.groups.iter().zip(&self.registered) {
                config.validate()?;
                check_representable::<P::Acc>(config)?;
                super::packed::check_storage::<P::Acc>(config)?;
                registered.check(config)?;
            }
            self.unvalidated = false;
        }
        Ok(())
    }

    /// The first part of a step, which writes nothing: checks the number of tensors and
    /// every length, and keeps the pointers the kernels will write through; with `scan`,
    /// scans each gradient too ([`scan_tensor`](Self::scan_tensor)) and gives the first
    /// non-finite element found (tensor, index).
    fn take<X: AsMut<[P]>, G: AsRef<[P]>>(
        &mut self,
        params: &mut [X],
        grads: &[G],
        scan: bool,
    ) -> Result<Option<(usize, usize)>> {
        if params.len() != self.tensors.len() || grads.len() != self.tensors.len() {
            return Err(self.count_mismatch(params.len(), grads.len()));
        }
        self.scratch.ptrs.clear();
        let mut nonfinite = None;
        for (i, (x, g)) in params.iter_mut().zip(grads).enumerate() {
            // each slice is taken once: the lengths checked are those of the very slices
            // the pointers come from, whatever an `AsMut` would answer a second time
            let (x, g) = (x.as_mut(), g.as_ref());
            // (scanned through the references, before a pointer is taken from them)
            if scan && nonfinite.is_none() {
                nonfinite = self.scan_tensor(i, x, g).err().map(|index| (i, index));
            }
            if let Err(e) = self.take_one(i, x, g) {
                self.scratch.ptrs.clear();
                return Err(e);
            }
        }
        Ok(nonfinite)
    }

    /// Tensor `i`'s arrays for the step under way, its length checked: pushed as the next
    /// tensor's (`i` the count so far), or, in a later pass of [`step_each`](Self::step_each),
    /// replacing its earlier pointers (its planned kernel kept).
    fn take_one(&mut self, i: usize, x: &mut [P], g: &[P]) -> Result<()> {
        if self.stages {
            // the packed arenas' pointers, taken again with each tensor's: valid while
            // nothing else borrows the arenas, which nothing does during a step
            self.scratch.packed = std::array::from_fn(|k| self.packed[k].ptrs());
        }
        let (tr, arena) = (&self.tensors[i], &mut self.arena);
        if x.len() != tr.numel || g.len() != tr.numel {
            return Err(tr.length_mismatch(x.len(), g.len()));
        }
        let bufs = std::array::from_fn(|k| match tr.offset[k] {
            // SAFETY: `o + numel` is within the arena (laid out in `add_pieces`);
            // `Buffer::as_mut_ptr` is the buffer's raw pointer, so taking the next
            // tensor's pointer does not invalidate this one.
            Some(o) if tr.storage == StateStorage::F32 => unsafe { arena[k].as_mut_ptr().add(o) },
            // unused, or packed: staged by the step (see `packed`)
            _ => std::ptr::null_mut(),
        });

        let arrays = Arrays { x: x.as_mut_ptr(), g: g.as_ptr(), bufs, n: tr.numel };
        let ptrs = &mut self.scratch.ptrs;
        match ptrs.get_mut(i) {
            Some(p) => p.arrays = arrays,
            None => ptrs.push(Ptrs { kernel: tr.group, arrays }),
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
    /// the same), then one per tensor of groups that clip by the tensor's own norm. The
    /// norms are the whole model's, settled with `world`.
    fn plan<W: World + ?Sized>(&mut self, world: &W, t: u64) -> Result<()> {
        if self.plan.steady.iter().all(|&s| s) {
            return Ok(()); // every kernel kept (and no group clips: a steady one does not)
        }
        if self.groups.iter().any(|c| c.common().clip_norm.is_some()) {
            self.square_sums(world)?;
        }
        self.plan_kernels(t);
        Ok(())
    }

    /// The kernels of step `t`, the sums of squares (if any group clips) already formed.
    fn plan_kernels(&mut self, t: u64) {
        let scope = |c: &OptimizerConfig| c.common().clip_norm.map(|c| c.scope);
        let mut per_tensor = false;
        let squares = Squares { tensors: &self.tensors, sums: &self.scratch.block_sums };
        let Plan { kernels, steady, envelope } = &mut self.plan;
        kernels.truncate(self.groups.len());
        envelope.resize(self.groups.len(), None);
        for (i, config) in self.groups.iter().enumerate() {
            if steady[i] {
                continue; // no norm clipping then, and the same learning rate
            }
            envelope[i] = None; // planned again: a configuration or a rate may have changed
            let common = config.common();
            let lr = self.schedule.lr(common.lr, t);
            let norm = match scope(config) {
                Some(NormScope::Global) => Some(squares.global::<P::Acc>(common.rounding)),
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
            for (tensor, (tr, p)) in self.tensors.iter().zip(&mut self.scratch.ptrs).enumerate() {
                let config = &self.groups[tr.group];
                if scope(config) == Some(NormScope::PerTensor) {
                    let common = config.common();
                    let prep = common.prep(Some(squares.of_tensor::<P::Acc>(tensor, common.rounding)));
                    p.kernel = kernels.len();
                    kernels.push(P::plan(config, Ctx { t, lr: self.schedule.lr(common.lr, t), prep }));
                }
            }
        }
    }

    /// The second half of a step: every chunk of `range` through its tensor's kernel, on
    /// this thread or across rayon's; packed state staged (see [`packed`](super::packed)).
    fn run(&mut self, range: std::ops::Range<usize>) {
        if self.stages {
            return self.run_staged(range);
        }
        let chunks = &self.chunks[range];
        if self.parallel() {
            use rayon::prelude::*;
            chunks.par_iter().for_each(|c| self.run_chunk(c));
        } else {
            for c in chunks {
                self.run_chunk(c);
            }
        }
    }

    /// Chunk `c` through its tensor's kernel.
    #[inline(always)]
    fn run_chunk(&self, c: &super::state::Chunk) {
        let p = &self.scratch.ptrs[c.tensor];
        // SAFETY: a chunk lies within its tensor; `take` checked every parameter and
        // gradient has its tensor's length, state is allocated at that length (null when
        // unused), chunks of one tensor never overlap, and the borrows behind the pointers
        // outlive `step`.
        unsafe { self.plan.kernels[p.kernel].run_on(p.arrays.range(c.start, c.end)) }
    }

    /// [`run`](Self::run) where some state is packed: each thread takes a contiguous run
    /// of chunks and stages the packed ones in its own scratch, [`STAGE`] elements at a
    /// time: decoded, through the kernel, encoded.
    fn run_staged(&mut self, range: std::ops::Range<usize>) {
        let workers = if self.parallel() { self.trials.len() } else { 1 };
        let t = self.step + 1;
        let Optimizer { trials, chunks, tensors, scratch, plan, groups, .. } = self;
        let (ptrs, packed, kernels) = (&scratch.ptrs, &scratch.packed, &plan.kernels);
        let chunks = &chunks[range];
        let work = |w: usize, trial: &mut Trial<P>| {
            let per = chunks.len().div_ceil(workers);
            for c in chunks.iter().skip(w * per).take(per) {
                let (p, tr) = (ptrs[c.tensor], &tensors[c.tensor]);
                let kernel = &kernels[p.kernel];
                if tr.storage == StateStorage::F32 {
                    // SAFETY: as in `run_chunk`.
                    unsafe { kernel.run_on(p.arrays.range(c.start, c.end)) };
                    continue;
                }
                let stochastic = groups[tr.group].common().bf16_stochastic_round.then_some((t, c.tensor));
                for start in (c.start..c.end).step_by(STAGE) {
                    let n = (c.end - start).min(STAGE);
                    // SAFETY: the stage lies within the chunk, hence within its tensor (as
                    // in `run_chunk`); the packed arenas hold the tensor's state, and this
                    // thread alone touches the chunk's elements and blocks; the scratch
                    // holds a chunk.
                    unsafe {
                        let bufs = stage(tr, p.arrays.bufs, packed, start, n, &mut trial.bufs, false);
                        let a = p.arrays.range(start, start + n);
                        kernel.run_on(Arrays { bufs, ..a });
                        unstage(tr, packed, start, n, &mut trial.bufs, stochastic);
                    }
                }
            }
        };
        let trials = &mut trials[..workers];
        if workers > 1 {
            use rayon::prelude::*;
            trials.par_iter_mut().enumerate().for_each(|(w, trial)| work(w, trial));
        } else {
            work(0, &mut trials[0]);
        }
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

/// Tensors a step opens one at a time ([`Optimizer::step_each`]): each behind a lock, say,
/// that must not be held while another is taken.
pub trait Tensors<P> {
    /// Calls `f` once with tensor `i`'s parameter (to update in place) and gradient, in
    /// registration order of `i`; both stay valid only during the call. An error (the
    /// tensor cannot be opened) ends the step with it.
    fn with(&mut self, i: usize, f: &mut dyn FnMut(&mut [P], &[P])) -> Result<()>;
}

/// This process's refusal of step `t` for what `count` other processes found.
#[cold]
fn refused(step: u64, what: &'static str, count: f64) -> Error {
    Error::RefusedElsewhere { step, processes: count as usize, reason: what }
}
