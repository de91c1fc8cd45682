//! What a checked step settles before it writes: every gradient finite (one scan, which
//! also measures the largest magnitudes), every result finite (by bounds, else by bounds
//! with the probed floor of the step's denominators, else by a trial on a copy), and every
//! scheduled rate valid.

use super::packed::stage;
use super::state::{Envelope, Plan, Scratch, Trial};
use super::{Optimizer, guard};
use crate::common::Common;
use crate::error::{Error, Result};
use crate::float::{Float, Param};
use crate::kernel::{Arrays, MAX_SLOTS};

impl<P: Param> Optimizer<P> {
    /// Sets each group's largest `|g|` and `|x|` to 0, before [`scan`](Self::scan)s; where
    /// the step scans through `scan` (`probe_with_scan`: across threads, or tensor by
    /// tensor in `step_each`), marks the groups whose probe runs with the scan.
    pub(super) fn reset_largest(&mut self, probe_with_scan: bool) {
        let group_largest = &mut self.scratch.group_largest;
        if group_largest.len() == self.groups.len() {
            group_largest.fill([0.0; 2]);
        } else {
            group_largest.clear();
            group_largest.resize(self.groups.len(), [0.0; 2]);
        }
        self.scratch.early_floors.clear();
        if probe_with_scan && !self.stages {
            // a steady group's kernel is the one this step will run: its probe can run on
            // each chunk right after the scan, which has just brought the gradient into
            // cache (the probe reads it again) — and, in `step_each`, while its tensor is
            // open, saving a pass that opens every tensor again
            let Plan { kernels, steady, .. } = &self.plan;
            let early = steady.iter().zip(kernels).map(|(&steady, k)| (steady && k.probes()).then_some(f64::INFINITY));
            self.scratch.early_floors.extend(early);
        }
    }

    /// The gradient scan of a checked step over the tensors `range` (their pointers taken):
    /// the first non-finite gradient element (tensor, index), else each group's largest
    /// `|g|` (and `|x|` in a group with weight decay, which the bounds need) added into
    /// `scratch.group_largest`. Chunk by chunk across threads like the step itself, or
    /// tensor by tensor ([`scan_tensor`](Self::scan_tensor)).
    pub(super) fn scan(&mut self, range: std::ops::Range<usize>) -> Option<(usize, usize)> {
        if !self.parallel() {
            for t in range {
                let a = self.scratch.ptrs[t].arrays;
                // SAFETY: `take` checked the gradient and the parameter have `n` elements;
                // both are only read here.
                let (x, g) = unsafe {
                    (std::slice::from_raw_parts(a.x.cast_const(), a.n), std::slice::from_raw_parts(a.g, a.n))
                };
                if let Err(index) = self.scan_tensor(t, x, g) {
                    return Some((t, index));
                }
                let group = self.tensors[t].group;
                if let Some(Some(floor)) = self.scratch.early_floors.get_mut(group) {
                    // SAFETY: as above; the probe only reads, the tensor's state included.
                    let found = unsafe { self.plan.kernels[self.scratch.ptrs[t].kernel].probe_on(a) };
                    *floor = floor.min(found.unwrap_or(0.0));
                }
            }
            return None;
        }
        let chunk_range = self.chunks_of(range);
        let Scratch { ptrs, largest, group_largest, early_floors, chunk_floors, .. } = &mut self.scratch;
        let (tensors, groups, kernels) = (&*self.tensors, &*self.groups, &self.plan.kernels);
        use rayon::prelude::*;
        let ptrs = &*ptrs;
        let chunks = &self.chunks[chunk_range];
        let early = |c: &super::state::Chunk| early_floors.get(tensors[c.tensor].group).is_some_and(Option::is_some);
        chunks
            .par_iter()
            .map(|c| {
                let p = &ptrs[c.tensor];
                // SAFETY: a chunk lies within its tensor; as above.
                let a = unsafe { p.arrays.range(c.start, c.end) };
                let (x, g) = unsafe {
                    (std::slice::from_raw_parts(a.x.cast_const(), a.n), std::slice::from_raw_parts(a.g, a.n))
                };
                let found = largest_in(groups[tensors[c.tensor].group].common(), x, g).map_err(|i| c.start + i);
                // SAFETY: as above; the probe only reads.
                let floor = if early(c) && found.is_ok() { unsafe { kernels[p.kernel].probe_on(a) } } else { None };
                (found, floor.unwrap_or(f64::INFINITY))
            })
            .unzip_into_vecs(largest, chunk_floors);
        for ((c, found), &floor) in chunks.iter().zip(largest.iter()).zip(chunk_floors.iter()) {
            let group = tensors[c.tensor].group;
            match *found {
                Err(index) => return Some((c.tensor, index)),
                Ok(found) => add_largest(&mut group_largest[group], found),
            }
            if let Some(Some(f)) = early_floors.get_mut(group) {
                *f = f.min(floor);
            }
        }
        None
    }

    /// The scan of one tensor's gradient `g` (and parameter `x`), alone, its maxima added
    /// into its group's; `Err` the index of its first non-finite element.
    #[inline(always)]
    pub(super) fn scan_tensor(&mut self, tensor: usize, x: &[P], g: &[P]) -> std::result::Result<(), usize> {
        let group = self.tensors[tensor].group;
        let found = largest_in(self.groups[group].common(), x, g)?;
        add_largest(&mut self.scratch.group_largest[group], found);
        Ok(())
    }

    /// Whether the planned step `t` keeps every result finite (see [`guard`]): by the
    /// bounds, else by the bounds with the probed floor of the step's denominators, else
    /// by a trial of the groups they cannot clear. On success `scratch.next_bounds` holds
    /// the state bounds after the step.
    pub(super) fn check_results(&mut self, t: u64) -> Result<()> {
        if !self.check_bounds(t) {
            return Ok(());
        }
        if self.start_probe() {
            self.probe_floors(0..self.chunks.len());
        }
        self.finish_probe(t);
        if self.scratch.tried.contains(&true) {
            self.start_trial();
            self.trial_step(t, 0..self.chunks.len())?;
            self.finish_trial();
        }
        Ok(())
    }

    /// The bounds of step `t` for every group into `scratch.next_bounds`; true when some
    /// group's step must be tried on copies first (`scratch.tried`).
    ///
    /// A group whose kernel serves every step (a steady configuration, a constant rate)
    /// keeps an [`Envelope`]: inputs up to twice this step's and state bounds at a fixed
    /// point of its bounds, found once; while a step's inputs stay inside it, the step is
    /// cleared without the interval arithmetic (a few hundred instructions, most of a small
    /// model's check), and the state bounds stay the envelope's.
    ///
    /// A group the bounds cannot clear whose kernel has a probe (centred RMSProp without
    /// `clamp_variance`) is then probed ([`start_probe`](Self::start_probe)): with the
    /// smallest denominator of its step measured, the bounds usually clear it, and it is
    /// not tried.
    pub(super) fn check_bounds(&mut self, t: u64) -> bool {
        let n = self.groups.len();
        // one entry per group, written in place (a clone's scratch starts empty)
        self.scratch.next_bounds.resize(n, [0.0; MAX_SLOTS]);
        self.scratch.tried.resize(n, false);
        let mut any_tried = false;
        for i in 0..n {
            let ([grad, param], state) = (self.scratch.group_largest[i], &self.bounds[i]);
            // (kept while the group's kernel is, a steady one's: under a constant schedule,
            // its rate is the configuration's)
            let lr = self.groups[i].common().lr;
            if let Some(e) = self.plan.envelope[i].filter(|e| e.contains(grad, param, state, lr)) {
                (self.scratch.next_bounds[i], self.scratch.tried[i]) = (e.state, false);
            } else {
                any_tried |= self.bound_group(i, t);
            }
        }
        any_tried
    }

    /// The bounds of group `i`'s step `t` into `scratch.next_bounds` (a new envelope for a
    /// steady group); true when they cannot clear it.
    #[inline(never)]
    fn bound_group(&mut self, i: usize, t: u64) -> bool {
        let Scratch { next_bounds, group_largest, tried, .. } = &mut self.scratch;
        let (config, [grad, param], state) = (&self.groups[i], group_largest[i], self.bounds[i]);
        let lr = self.schedule.lr(config.common().lr, t);
        let inputs = guard::Inputs { grad, param, state, t, lr, floor: None };
        let found;
        (found, self.plan.envelope[i]) = group_reach::<P>(config, &self.registered[i], &inputs, self.plan.steady[i]);
        (next_bounds[i], tried[i]) = (found.map_or([f64::INFINITY; MAX_SLOTS], |r| r.state), found.is_none());
        found.is_none()
    }

    /// Marks the groups the bounds could not clear whose kernels have a probe and that the
    /// scan did not probe already, to be probed ([`probe_floors`](Self::probe_floors));
    /// false when there are none. None where state is packed: a probe reads `f32` state.
    pub(super) fn start_probe(&mut self) -> bool {
        let Scratch { tried, floors, early_floors, .. } = &mut self.scratch;
        let kernels = &self.plan.kernels;
        floors.clear();
        if self.stages {
            return false;
        }
        let early = |i: usize| early_floors.get(i).is_some_and(Option::is_some);
        let to_probe = |i: usize| tried[i] && kernels[i].probes() && !early(i);
        floors.extend((0..tried.len()).map(|i| to_probe(i).then_some(f64::INFINITY)));
        floors.iter().any(Option::is_some)
    }

    /// The tried groups with a probed floor (by [`probe_floors`](Self::probe_floors) or
    /// with the scan) bounded again with it: those the bounds now clear are not tried.
    pub(super) fn finish_probe(&mut self, t: u64) {
        let Scratch { next_bounds, group_largest, tried, floors, early_floors, .. } = &mut self.scratch;
        let floor_of = |i: usize| floors.get(i).copied().flatten().or(early_floors.get(i).copied().flatten());
        for i in 0..tried.len() {
            let Some(floor) = floor_of(i).filter(|_| tried[i]) else { continue };
            let (config, [grad, param]) = (&self.groups[i], group_largest[i]);
            let lr = self.schedule.lr(config.common().lr, t);
            let inputs = guard::Inputs { grad, param, state: self.bounds[i], t, lr, floor: Some(floor) };
            // no envelope: the floor holds for this step only
            if let (Some(r), _) = group_reach::<P>(config, &self.registered[i], &inputs, false) {
                (next_bounds[i], tried[i]) = (r.state, false);
            }
        }
    }

    /// The smallest denominator of each probed group's step on the chunks `range` (their
    /// tensors' pointers taken) into `scratch.floors`, by the kernels' probes: read-only,
    /// on this thread or across rayon's like the scan.
    pub(super) fn probe_floors(&mut self, range: std::ops::Range<usize>) {
        let parallel = self.parallel();
        let Scratch { ptrs, floors, chunk_floors, .. } = &mut self.scratch;
        let (tensors, kernels, chunks) = (&self.tensors, &self.plan.kernels, &self.chunks[range]);
        let probe = |c: &super::state::Chunk| {
            let p = &ptrs[c.tensor];
            // SAFETY: a chunk lies within its tensor; `take` checked the lengths; the
            // probe only reads. No probe (none planned) measures no floor: 0.
            unsafe { kernels[p.kernel].probe_on(p.arrays.range(c.start, c.end)) }.unwrap_or(0.0)
        };
        if parallel {
            use rayon::prelude::*;
            let probed = |c: &super::state::Chunk| floors[tensors[c.tensor].group].is_some();
            chunks.par_iter().map(|c| if probed(c) { probe(c) } else { f64::INFINITY }).collect_into_vec(chunk_floors);
            for (c, &found) in chunks.iter().zip(chunk_floors.iter()) {
                if let Some(f) = &mut floors[tensors[c.tensor].group] {
                    *f = f.min(found);
                }
            }
        } else {
            for c in chunks {
                if let Some(f) = &mut floors[tensors[c.tensor].group] {
                    *f = f.min(probe(c));
                }
            }
        }
    }

    /// Sets what the trials measured to 0, before [`trial_step`](Self::trial_step)s.
    pub(super) fn start_trial(&mut self) {
        for trial in &mut self.trials {
            trial.measured.clear();
            trial.measured.resize(self.groups.len(), [0.0; MAX_SLOTS]);
        }
    }

    /// The state bounds of the tried groups after the trials: what they measured.
    pub(super) fn finish_trial(&mut self) {
        let Scratch { next_bounds, tried, .. } = &mut self.scratch;
        let trials = &self.trials;
        for (group, bound) in next_bounds.iter_mut().enumerate().filter(|(g, _)| tried[*g]) {
            let measured = std::array::from_fn(|k| trials.iter().map(|t| t.measured[group][k]).fold(0.0, f64::max));
            *bound = self.registered[group].widen(measured);
        }
    }

    /// Runs each chunk of `range` of the groups the bounds could not clear through its
    /// kernel on a copy of its parameters and state, and checks every result; measures the
    /// state of those groups into the trials (see [`finish_trial`](Self::finish_trial)).
    /// Across threads like the step itself, each with its own copy; the failure reported
    /// is the first in chunk order.
    #[cold]
    pub(super) fn trial_step(&mut self, t: u64, range: std::ops::Range<usize>) -> Result<()> {
        let workers = if self.parallel() { self.trials.len() } else { 1 };
        let Optimizer { trials, chunks, tensors, groups, scratch, plan, .. } = self;
        let Scratch { tried, ptrs, packed, .. } = scratch;
        let (tried, ptrs, packed, kernels) = (&*tried, &*ptrs, &*packed, &plan.kernels);
        let chunks = &chunks[range];
        let work = |w: usize, trial: &mut Trial<P>| -> std::result::Result<(), (usize, Error)> {
            let Trial { x, bufs, measured } = trial;
            for (i, c) in chunks.iter().enumerate().skip(w).step_by(workers) {
                let (p, group) = (ptrs[c.tensor], tensors[c.tensor].group);
                if !tried[group] {
                    continue;
                }
                // SAFETY: a chunk lies within its tensor.
                let a = unsafe { p.arrays.range(c.start, c.end) };
                let n = a.n;
                // SAFETY: `take` checked the lengths; the originals are only read (the
                // parameter copied, the state copied or decoded into this thread's copy).
                let bufs_at = unsafe {
                    x[..n].copy_from_slice(std::slice::from_raw_parts(a.x.cast_const(), n));
                    stage(&tensors[c.tensor], p.arrays.bufs, packed, c.start, n, bufs, true)
                };
                let copy = Arrays { x: x.as_mut_ptr(), g: a.g, bufs: bufs_at, n };
                // SAFETY: the copy's arrays hold at least `n` elements (sized in
                // `add_group` for the widest chunk), owned here; `g` is only read.
                unsafe { kernels[p.kernel].run_on(copy) };
                let refuse = |index: usize, quantity: &str| {
                    let tensor = tensors[c.tensor].spec.name.clone();
                    let index = tensors[c.tensor].first + c.start + index; // in the whole tensor
                    (i, Error::NonFiniteResult { step: t, tensor, index, quantity: quantity.into() })
                };
                largest_magnitude(&x[..n]).map_err(|i| refuse(i, "the parameter"))?;
                for (k, b) in bufs.iter().enumerate().filter(|(k, _)| !bufs_at[*k].is_null()) {
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
        match failed {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Every group's scheduled rate for step `t` is a finite number >= 0 (a constant rate
    /// is the validated `lr`; a schedule, a closure above all, can give anything).
    pub(super) fn check_schedule(&self, t: u64) -> Result<()> {
        for (group, config) in self.groups.iter().enumerate() {
            let lr = self.schedule.lr(config.common().lr, t);
            if !(lr.is_finite() && lr >= 0.0) {
                return Err(Error::InvalidSchedule { group, step: t, lr });
            }
        }
        Ok(())
    }
}

impl Envelope {
    /// Whether a step with these inputs lies inside the envelope.
    #[inline]
    fn contains(&self, grad: f64, param: f64, state: &[f64; MAX_SLOTS], lr: f64) -> bool {
        grad <= self.grad && param <= self.param && lr == self.lr && state.iter().zip(&self.state).all(|(s, e)| s <= e)
    }

    /// An envelope around `inputs` (whose step reached `after`): twice the gradient and
    /// parameter magnitudes, and state bounds that the bounds of a step from them do not
    /// exceed, doubled until they hold (a few times: an average's fixed point is its
    /// gradient's square, a momentum buffer's the step over `1 - μ`); `None` if none is
    /// found in 16 tries (γ = 1 grows its state by rounding slack every step).
    fn find(
        inputs: &guard::Inputs,
        after: [f64; MAX_SLOTS],
        reach: impl Fn(&guard::Inputs) -> Option<guard::Reach>,
    ) -> Option<Envelope> {
        let mut wide = guard::Inputs { grad: inputs.grad * 2.0, param: inputs.param * 2.0, ..*inputs };
        wide.state = std::array::from_fn(|k| 2.0 * inputs.state[k].max(after[k]));
        for _ in 0..16 {
            let r = reach(&wide)?;
            if r.state.iter().zip(&wide.state).all(|(r, w)| r <= w) {
                let guard::Inputs { grad, param, state, lr, .. } = wide;
                return Some(Envelope { grad, param, state, lr });
            }
            wide.state = std::array::from_fn(|k| 2.0 * wide.state[k].max(r.state[k]));
        }
        None
    }
}

/// The bounds of one group's step under `inputs` (the parameter type's limit on how far
/// a parameter may move checked, the state bounds widened for its storage), and for a
/// `steady` group an [`Envelope`] of them.
fn group_reach<P: Param>(
    config: &super::OptimizerConfig,
    registered: &super::driver::Registered,
    inputs: &guard::Inputs,
    steady: bool,
) -> (Option<guard::Reach>, Option<Envelope>) {
    let reach = |inputs: &guard::Inputs| {
        let r = config.reach::<P::Acc>(inputs).filter(|r| r.step < P::HALF_GAP_AT_MAX / 2.0)?;
        Some(guard::Reach { state: registered.widen(r.state), ..r })
    };
    let found = reach(inputs);
    let envelope = match found {
        Some(r) if steady => Envelope::find(inputs, r.state, reach),
        _ => None,
    };
    (found, envelope)
}

/// The largest `|g|` of a gradient and, in a group with weight decay (`common`), `|x|` of
/// its parameter, which the bounds need (elsewhere, or for a non-finite parameter — the
/// caller's: the trial step then finds what it leads to — ∞: it bounds nothing); `Err`
/// the index of the gradient's first non-finite element.
#[inline(always)]
fn largest_in<P: Param>(common: &Common, x: &[P], g: &[P]) -> std::result::Result<[f64; 2], usize> {
    let g = largest_magnitude(g)?;
    let x = if common.weight_decay != 0.0 { largest_magnitude(x).unwrap_or(f64::INFINITY) } else { f64::INFINITY };
    Ok([g, x])
}

/// Raises a group's largest `|g|` and `|x|` to `found`'s.
#[inline(always)]
fn add_largest(group: &mut [f64; 2], found: [f64; 2]) {
    *group = [group[0].max(found[0]), group[1].max(found[1])];
}

/// The largest `|v|` of `v`, or the index of its first NaN or infinity.
#[inline(always)]
fn largest_magnitude<P: Param>(v: &[P]) -> std::result::Result<f64, usize> {
    largest_of(v, |v| v.load().to_f64())
}

/// [`largest_magnitude`] of any element type, `widen` giving each value in `f64`. The
/// maximum comes back from [`magnitude_of`] as one `f64` (in a register: a `Result` came
/// back through memory, written in two stores and read in one, which stalled the
/// chapter's step), the index of a non-finite value from a second, cold pass.
#[inline(always)]
fn largest_of<V: Copy + 'static>(v: &[V], widen: impl Fn(V) -> f64 + Copy) -> std::result::Result<f64, usize> {
    let largest = magnitude_of(v, widen);
    if largest.is_finite() { Ok(largest) } else { Err(first_nonfinite(v, widen)) }
}

/// The index of the first NaN or infinity of `v`, which has one.
#[cold]
#[inline(never)]
fn first_nonfinite<V: Copy>(v: &[V], widen: impl Fn(V) -> f64) -> usize {
    v.iter().position(|&v| !widen(v).is_finite()).expect("a non-finite value")
}

/// The largest `|v|` of `v`, ∞ or NaN if it holds a non-finite value. For `f32` and `f64`
/// on the bits: with the sign cleared, the order of the magnitudes is that of the
/// integers and every NaN or infinity is at least the infinity's, so one integer maximum
/// per block (which vectorises, where a float maximum does not) finds both, and the
/// scan stops at the first block holding one.
#[inline(always)]
fn magnitude_of<V: Copy + 'static>(v: &[V], widen: impl Fn(V) -> f64) -> f64 {
    use std::any::TypeId;
    macro_rules! by_bits {
        ($float:ty, $bits:ty) => {{
            // SAFETY: `V` is `$float`, which has the size and alignment of `$bits`, and
            // every bit pattern is a valid `$bits`.
            let bits = unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<$bits>(), v.len()) };
            let (magnitude, infinity) = (<$bits>::MAX >> 1, <$float>::INFINITY.to_bits());
            #[inline(always)]
            fn scan(bits: &[$bits], magnitude: $bits, infinity: $bits) -> $bits {
                let mut largest = 0;
                for block in bits.chunks(SCAN_BLOCK) {
                    largest = largest.max(block.iter().fold(0, |m: $bits, &x| m.max(x & magnitude)));
                    if largest >= infinity {
                        break;
                    }
                }
                largest
            }
            #[inline(never)]
            fn wide(bits: &[$bits], magnitude: $bits, infinity: $bits) -> $bits {
                crate::kernel::widest_closure(
                    #[inline(always)]
                    || scan(bits, magnitude, infinity),
                )
            }
            // a few values: in line, no vector loop to choose (the chapter's tensors have 5
            // and 1)
            let largest = if bits.len() <= SHORT {
                bits.iter().fold(0, |m: $bits, &x| m.max(x & magnitude))
            } else {
                wide(bits, magnitude, infinity)
            };
            return <$float>::from_bits(largest) as f64;
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
    for &v in v {
        let v = widen(v).abs();
        if !v.is_finite() {
            return v;
        }
        largest = largest.max(v);
    }
    largest
}

/// Elements per block of the gradient scan.
const SCAN_BLOCK: usize = 256;

/// Up to this many elements, the scan runs without choosing an instruction set first.
const SHORT: usize = 16;

#[cfg(test)]
mod tests {
    use super::Scratch;
    use crate::{CHUNK, Error, Flavor, Optimizer, Parallelism};

    /// Slices opened one at a time for `step_each`, counting the openings.
    struct Opened<'a> {
        x: &'a mut [Vec<f32>],
        g: &'a [Vec<f32>],
        opened: usize,
    }

    impl crate::Tensors<f32> for Opened<'_> {
        fn with(&mut self, i: usize, f: &mut dyn FnMut(&mut [f32], &[f32])) -> crate::Result<()> {
            self.opened += 1;
            f(&mut self.x[i], &self.g[i]);
            Ok(())
        }
    }

    /// PyTorch's centred RMSProp (unclamped, ε outside the root): no formula bounds its
    /// denominator, and its probe clears every ordinary step — serial and across threads,
    /// through `step` and `step_each`, each group measured alone — so that no step is
    /// tried on copies, with exactly the bits of the unchecked step. Where rounding leaves
    /// `s < m²` the probe finds the NaN root, the step is tried, and refused.
    #[test]
    fn a_centred_step_is_cleared_by_its_probe_not_tried() {
        let n = 2 * CHUNK + 3;
        let g = [(0..n).map(|i| (i % 101) as f32 * 1e-3 - 0.05).collect::<Vec<_>>(), vec![0.1, -0.2, 0.0]];
        let each = [false, true];
        for (parallelism, each) in
            [Parallelism::Serial, Parallelism::Parallel].into_iter().flat_map(|p| each.map(|e| (p, e)))
        {
            let centred = Flavor::PyTorch.rmsprop().with_centered(true);
            let specs = [("w", &[n][..]), ("b", &[3][..])];
            let build = |policy| {
                let mut opt = Optimizer::<f32>::new(centred.clone(), &specs[..1]).unwrap();
                opt.add_group(centred.clone().with_lr(0.1), &specs[1..]).unwrap();
                opt.with_parallelism(parallelism).with_nonfinite_policy(policy)
            };
            let (mut checked, mut free) =
                (build(crate::NonFinitePolicy::Error), build(crate::NonFinitePolicy::Propagate));
            let (mut x, mut y) = ([vec![1.0f32; n], vec![0.5; 3]], [vec![1.0f32; n], vec![0.5; 3]]);
            for step in 1..=4 {
                if each {
                    let mut opened = Opened { x: &mut x, g: &g, opened: 0 };
                    checked.step_each(&mut opened).unwrap();
                    // the scan's pass and the update's, and (on the first step, whose
                    // kernels are planned after the scan) the probe's
                    assert_eq!(opened.opened, if step == 1 { 6 } else { 4 }, "{parallelism:?} {step}");
                } else {
                    checked.step(&mut x, &g).unwrap();
                }
                free.step(&mut y, &g).unwrap();
                assert_eq!(checked.scratch.tried, [false, false], "{parallelism:?} {each}");
                // ε = 1e-8 where the gradient is 0: the smallest denominator of both groups,
                // probed with the scan across threads and in step_each from the second
                // step (the first plans the kernels), after it otherwise
                let Scratch { floors, early_floors, .. } = &checked.scratch;
                let floors: Vec<_> = (0..2).map(|i| floors[i].or(early_floors.get(i).copied().flatten())).collect();
                assert_eq!(floors.iter().map(|f| f.map(|f| f as f32)).collect::<Vec<_>>(), [Some(1e-8), Some(1e-8)]);
                let early = (parallelism == Parallelism::Parallel || each) && step > 1;
                let probed_early = early_floors.iter().flatten().count();
                assert_eq!(probed_early, if early { 2 } else { 0 }, "{parallelism:?} {each} {step}");
                assert_eq!(x, y, "{parallelism:?} {each}");
            }
            // s below m² (a checkpoint's state, say): sqrt of a negative variance
            let (m, s) = (vec![0.5f32; 3], vec![0.01f32; 3]);
            let w = |slot| checked.state("w", slot).unwrap().into_owned();
            let (ws, wm) = (w("square_avg"), w("grad_avg"));
            let entries =
                [("w", "square_avg", &ws[..]), ("w", "grad_avg", &wm), ("b", "square_avg", &s), ("b", "grad_avg", &m)];
            checked.set_state(4, &entries).unwrap();
            let x0 = x.clone();
            let e = if each {
                checked.step_each(&mut Opened { x: &mut x, g: &g, opened: 0 }).unwrap_err()
            } else {
                checked.step(&mut x, &g).unwrap_err()
            };
            assert_eq!(x, x0, "{parallelism:?} {each}");
            assert!(matches!(&e, Error::NonFiniteResult { tensor, .. } if tensor == "b"), "{parallelism:?}: {e}");
            assert_eq!(checked.scratch.tried, [false, true], "{parallelism:?}");
        }
    }
}
