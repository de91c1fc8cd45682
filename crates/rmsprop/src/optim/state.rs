//! The layout a group's tensors were registered with and the per-step scratch: each
//! tensor's place in the state arenas, the chunks a step is cut into, the pointers and
//! plans of the step under way.

use super::packed::PackedPtrs;
use super::{Kernel, Optimizer, TensorSpec};
use crate::StateStorage;
use crate::error::Error;
use crate::float::{Float, Param};
use crate::kernel::{Arrays, MAX_SLOTS};
use crate::quant::BLOCK;
use std::borrow::Cow;

/// A state slot of one tensor as it is kept ([`StateStorage`]).
pub(crate) enum Kept<'a, A> {
    Full(&'a [A]),
    Bf16(&'a [u16]),
    /// 8-bit codes (the unsigned code for squares) and a scale per [`BLOCK`].
    Int8 {
        codes: &'a [u8],
        scales: &'a [f32],
    },
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
    /// Of a shard's piece: its first element in the whole tensor (a multiple of
    /// [`CHUNK`](super::CHUNK)); 0 otherwise.
    pub first: usize,
    /// The whole tensor's element count (`numel` unless a shard holds a piece).
    pub full: usize,
    /// The whole tensor's chunks, numbered over all tensors (see [`norm`](super::norm)).
    pub blocks: std::ops::Range<usize>,
    /// How its state is kept (its group's choice, or `f32` for a small tensor): `offset`
    /// is into the `f32` arenas or into the packed ones.
    pub storage: StateStorage,
    /// Per slot: it holds squares (never negative; the unsigned 8-bit code).
    pub squares: [bool; MAX_SLOTS],
    /// A centred average of squares and its mean's slot (see [`packed::stage`](super::packed::stage)).
    pub covers: Option<(usize, usize)>,
    /// Per slot kept in 8 bits: where its first block's scale is.
    pub scale_at: [usize; MAX_SLOTS],
}

impl Tracked {
    #[cold]
    pub(crate) fn length_mismatch(&self, x: usize, g: usize) -> Error {
        let (what, got) = if x != self.numel { ("parameter", x) } else { ("gradient", g) };
        let (tensor, shape) = (self.spec.name.clone(), self.spec.shape.clone());
        Error::LengthMismatch { what, tensor, expected: self.numel, got, shape }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Chunk {
    pub(crate) tensor: usize,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// One tensor's arrays for the step under way, and what runs on them.
#[derive(Debug)]
pub(crate) struct Ptrs<P: Param> {
    /// Index of the tensor's planned [`Kernel`] in the step's plan.
    pub(crate) kernel: usize,
    /// The whole tensor.
    pub(crate) arrays: Arrays<P::Acc, P>,
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
pub(crate) struct Scratch<P: Param> {
    pub(crate) ptrs: Vec<Ptrs<P>>,
    /// Per chunk of a parallel scan: the largest `|g|` and `|x|` (∞ where not scanned), or
    /// the index of a non-finite gradient element.
    pub(crate) largest: Vec<std::result::Result<[f64; 2], usize>>,
    /// Per group: the largest `|g|` and `|x|` of the step.
    pub(crate) group_largest: Vec<[f64; 2]>,
    /// Per group: the state bounds after the step under way.
    pub(crate) next_bounds: Vec<[f64; MAX_SLOTS]>,
    /// Per group: the bounds could not clear the step, it is tried first.
    pub(crate) tried: Vec<bool>,
    /// Per group: the smallest denominator of its step, where it is probed (see
    /// [`Probe`](crate::kernel::Probe)).
    pub(crate) floors: Vec<Option<f64>>,
    /// Per chunk of a parallel probe: its smallest denominator.
    pub(crate) chunk_floors: Vec<f64>,
    /// Per group of a step across threads or through `step_each`: the smallest denominator
    /// of its step, where its probe ran with the gradient scan (see
    /// [`reset_largest`](Optimizer::reset_largest)).
    pub(crate) early_floors: Vec<Option<f64>>,
    /// Per chunk: its gradient's sums of squares (see [`norm`](super::norm)).
    pub(crate) chunk_sums: Vec<[f64; 2]>,
    /// Per chunk of the whole model, two sums of squares (see [`norm`](super::norm)).
    pub(crate) block_sums: Vec<f64>,
    /// The packed arenas of the step under way (see [`packed`](super::packed)).
    pub(crate) packed: [PackedPtrs; MAX_SLOTS],
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
            floors: Vec::with_capacity(self.floors.capacity()),
            chunk_floors: Vec::with_capacity(self.chunk_floors.capacity()),
            early_floors: Vec::with_capacity(self.early_floors.capacity()),
            chunk_sums: Vec::with_capacity(self.chunk_sums.capacity()),
            block_sums: self.block_sums.clone(),
            packed: Default::default(),
        }
    }
}

/// One thread's copy of a chunk's parameters and state for a trial step, and the largest
/// state magnitudes per group it found.
#[derive(Clone, Default)]
pub(crate) struct Trial<P: Param> {
    pub(crate) x: Vec<P>,
    pub(crate) bufs: [Vec<P::Acc>; MAX_SLOTS],
    pub(crate) measured: Vec<[f64; MAX_SLOTS]>,
}

impl<P: Param> std::fmt::Debug for Trial<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Trial")
    }
}

/// The kernels of the last step: one per group, then one per tensor of a group that clips
/// by the tensor's own norm.
#[derive(Clone)]
pub(crate) struct Plan<P: Param> {
    pub(crate) kernels: Vec<Kernel<P>>,
    /// Per group: the group's kernel serves every step until its configuration or the
    /// schedule changes ([`OptimizerConfig::steady`] under a constant schedule; cleared by
    /// [`Optimizer::group_mut`] and [`Optimizer::with_schedule`]).
    pub(crate) steady: Vec<bool>,
    /// Per group: inputs under which its step was shown safe, kept while its kernel is
    /// (see [`check_bounds`](Optimizer::check_bounds)).
    pub(crate) envelope: Vec<Option<Envelope>>,
}

/// Inputs of a group's step — largest `|g|` and `|x|`, state bounds — under which its
/// bounds clear it and keep the state within `state`: any step with inputs below these
/// (the same kernel, learning rate and parameter type) is cleared too, since every bound
/// grows with every input, and leaves the state below `state` again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Envelope {
    pub(crate) grad: f64,
    pub(crate) param: f64,
    pub(crate) state: [f64; MAX_SLOTS],
    pub(crate) lr: f64,
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

/// The state arenas, read and restored (checkpoints).
impl<P: Param> Optimizer<P> {
    /// State tensor `name` (e.g. `"square_avg"`) of parameter `tensor`: borrowed where it
    /// is kept in the arithmetic type, decoded where it is packed ([`StateStorage`]).
    ///
    /// ```
    /// use rmsprop::{Optimizer, RmsProp};
    /// let opt = Optimizer::<f64>::new(RmsProp::default(), &[("w", &[3][..])]).unwrap();
    /// assert_eq!(opt.state("w", "square_avg").as_deref(), Some(&[0.0, 0.0, 0.0][..]));
    /// assert_eq!(opt.state("w", "grad_avg"), None); // not centred
    /// ```
    pub fn state(&self, tensor: &str, name: &str) -> Option<Cow<'_, [P::Acc]>> {
        let (t, k) = self.slot_index(tensor, name)?;
        self.buffer(t, k)
    }

    /// How tensor `tensor`'s state is kept: its group's [`StateStorage`], except that a
    /// tensor below [`min_8bit_size`](crate::Common::min_8bit_size) elements keeps `f32`
    /// under `Int8`.
    ///
    /// ```
    /// use rmsprop::{Optimizer, RmsProp, StateStorage};
    /// let config = RmsProp::default().with_state_storage(StateStorage::Int8);
    /// let opt = Optimizer::<f32>::new(config, &[("w", &[64, 64][..]), ("b", &[64][..])]).unwrap();
    /// assert_eq!(opt.state_storage("w"), Some(StateStorage::Int8));
    /// assert_eq!(opt.state_storage("b"), Some(StateStorage::F32));
    /// ```
    pub fn state_storage(&self, tensor: &str) -> Option<StateStorage> {
        self.tensors.iter().find(|t| t.spec.name == tensor).map(|t| t.storage)
    }

    /// Bytes of optimizer state held (every slot of every tensor, scales included; not
    /// the per-thread scratch of one chunk).
    ///
    /// ```
    /// use rmsprop::{Optimizer, RmsProp, StateStorage};
    /// let bf16 = RmsProp::default().with_state_storage(StateStorage::Bf16);
    /// let opt = Optimizer::<f32>::new(bf16, &[("w", &[1000][..])]).unwrap();
    /// assert_eq!(opt.state_bytes(), 2000);
    /// ```
    pub fn state_bytes(&self) -> usize {
        let arenas = self.arena.iter().map(|a| a.len() * size_of::<P::Acc>()).sum::<usize>();
        arenas + self.packed.iter().map(|p| p.bytes()).sum::<usize>()
    }

    /// Replaces the step count and every state tensor, all or nothing: `entries` are
    /// `(tensor, slot, values)` under the names [`state`](Self::state) reads (another
    /// framework's checkpoint, say). Every slot the optimizer uses must be given once, of
    /// the tensor's length and finite (a sum of squares not negative); nothing else may be.
    /// The count of skipped steps is kept.
    ///
    /// ```
    /// use rmsprop::{Optimizer, RmsProp};
    /// let mut opt = Optimizer::<f32>::new(RmsProp::default(), &[("w", &[2][..])]).unwrap();
    /// opt.set_state(7, &[("w", "square_avg", &[0.5, 2.0][..])]).unwrap();
    /// assert_eq!((opt.step_count(), opt.state("w", "square_avg").as_deref()), (7, Some(&[0.5f32, 2.0][..])));
    /// let e = opt.set_state(8, &[("w", "square_avg", &[-1.0, 2.0][..])]).unwrap_err();
    /// assert!(e.to_string().contains("a sum of squares is never negative"), "{e}");
    /// assert_eq!(opt.step_count(), 7); // nothing changed
    /// ```
    pub fn set_state(&mut self, step: u64, entries: &[(&str, &str, &[P::Acc])]) -> crate::Result<()> {
        let invalid = |what: String, reason: String| Error::InvalidState { what, reason };
        let mut bufs = Vec::with_capacity(self.tensors.len());
        let mut used = vec![false; entries.len()];
        for tr in &self.tensors {
            let mut b = Vec::with_capacity(MAX_SLOTS);
            for slot in self.groups[tr.group].slots() {
                if !slot.used {
                    b.push(Vec::new());
                    continue;
                }
                let what = format!("{}.{}", tr.spec.name, slot.name);
                let mut given = entries.iter().enumerate().filter(|(_, e)| e.0 == tr.spec.name && e.1 == slot.name);
                let (i, (_, _, values)) = given.next().ok_or_else(|| invalid(what.clone(), "not given".into()))?;
                if given.next().is_some() {
                    return Err(invalid(what, "given twice".into()));
                }
                used[i] = true;
                if values.len() != tr.numel {
                    return Err(invalid(what, format!("{} values for a tensor of {}", values.len(), tr.numel)));
                }
                if let Some((k, v, why)) = crate::checkpoint::bad_value(values, slot.nonneg) {
                    return Err(invalid(what, format!("element {k} is {v}: {why}")));
                }
                b.push(values.to_vec());
            }
            bufs.push(b);
        }
        if let Some(i) = used.iter().position(|u| !u) {
            let (t, s, _) = entries[i];
            return Err(invalid(format!("{t}.{s}"), "this optimizer has no such state".into()));
        }
        if i64::try_from(step).is_err() {
            return Err(invalid("step".into(), format!("{step} is beyond 2^63 - 1")));
        }
        self.restore(step, self.skipped, bufs);
        Ok(())
    }

    /// State slot `k` of tensor `t`, if used (decoded where packed).
    pub(crate) fn buffer(&self, t: usize, k: usize) -> Option<Cow<'_, [P::Acc]>> {
        let tr = &self.tensors[t];
        let o = tr.offset[k]?;
        Some(match tr.storage {
            StateStorage::F32 => Cow::Borrowed(&self.arena[k][o..o + tr.numel]),
            packed => {
                let values = self.packed[k].read(packed, tr.squares[k], o, tr.scale_at[k], tr.numel);
                Cow::Owned(values.into_iter().map(|v| P::Acc::from_f64(v as f64)).collect())
            }
        })
    }

    /// State slot `k` of tensor `t` as it is kept, if used (a checkpoint's arrays).
    pub(crate) fn kept(&self, t: usize, k: usize) -> Option<Kept<'_, P::Acc>> {
        let tr = &self.tensors[t];
        let (o, n) = (tr.offset[k]?, tr.numel);
        let packed = &self.packed[k];
        Some(match tr.storage {
            StateStorage::F32 => Kept::Full(&self.arena[k][o..o + n]),
            StateStorage::Bf16 => Kept::Bf16(&packed.half[o..o + n]),
            StateStorage::Int8 => Kept::Int8 {
                codes: &packed.codes[o..o + n],
                scales: &packed.scales[tr.scale_at[k]..tr.scale_at[k] + n.div_ceil(BLOCK)],
            },
        })
    }

    pub(crate) fn slot_index(&self, tensor: &str, name: &str) -> Option<(usize, usize)> {
        let t = self.tensors.iter().position(|t| t.spec.name == tensor)?;
        let slots = self.groups[self.tensors[t].group].slots();
        let k = slots.iter().position(|s| s.used && s.name == name)?;
        Some((t, k))
    }

    /// A shard's pieces, `[first, length, whole]` per tensor; `None` for whole tensors.
    pub(crate) fn pieces(&self) -> Option<Vec<[usize; 3]>> {
        self.sharded.then(|| self.tensors.iter().map(|t| [t.first, t.numel, t.full]).collect())
    }

    pub(crate) fn tracked(&self) -> &[Tracked] {
        &self.tensors
    }

    /// Sets the step counts and every used slot's state (`bufs[tensor][slot]`, empty where
    /// unused), encoded where packed; the bounds become those of the state kept.
    pub(crate) fn restore(&mut self, step: u64, skipped: u64, bufs: Vec<Vec<Vec<P::Acc>>>) {
        self.step = step;
        self.skipped = skipped;
        self.bounds.iter_mut().for_each(|b| *b = [0.0; MAX_SLOTS]);
        for (tr, b) in self.tensors.iter().zip(bufs) {
            for (k, v) in b.iter().enumerate() {
                let Some(o) = tr.offset[k] else { continue };
                match tr.storage {
                    StateStorage::F32 => self.arena[k][o..o + tr.numel].copy_from_slice(v),
                    packed => {
                        let v: Vec<f32> = v.iter().map(|v| v.to_f64() as f32).collect();
                        self.packed[k].write(packed, tr.squares[k], o, tr.scale_at[k], &v);
                    }
                }
                let bound = &mut self.bounds[tr.group][k];
                *bound = v.iter().fold(*bound, |m, v| m.max(v.to_f64().abs()));
            }
        }
        for (bounds, registered) in self.bounds.iter_mut().zip(&self.registered) {
            *bounds = registered.widen(*bounds);
        }
    }
}
