//! The gradient norms of norm clipping, from partial sums of squares per [`CHUNK`] of each
//! tensor, so that any cut of the model into processes gives the same bits (see
//! [`world`](super::world)).

use super::state::{Scratch, Tracked};
use super::world::World;
use super::{CHUNK, Optimizer};
use crate::common::Rounding;
use crate::error::Result;
use crate::float::{Float, Param};

/// Up to this many elements, XLA adds a tensor's squares one after another on CPU.
const IN_TURN: usize = 32;

impl<P: Param> Optimizer<P> {
    /// Every chunk's sum of squares of the gradient `take` prepared, into
    /// `scratch.block_sums` at the chunk's place in the whole model (`[2b]`: the sum in
    /// `f64`; `[2b + 1]`: for a tensor of at most 32 elements, the squares added in turn
    /// in the arithmetic type), then, for a shard, summed across `world`, where every
    /// other process put zero.
    pub(super) fn square_sums<W: World + ?Sized>(&mut self, world: &W) -> Result<()> {
        self.scratch.block_sums.fill(0.0);
        self.square_sums_of(0..self.chunks.len());
        // a shard holds its chunks only; a whole model (data-parallel) holds them all
        if self.sharded && world.size() > 1 {
            world.all_sum(&mut self.scratch.block_sums)?;
        }
        Ok(())
    }

    /// The sums of squares of the chunks `range` (their tensors' pointers taken) into
    /// `scratch.block_sums`.
    pub(super) fn square_sums_of(&mut self, range: std::ops::Range<usize>) {
        let parallel = self.parallel();
        let Scratch { ptrs, chunk_sums, block_sums, .. } = &mut self.scratch;
        let tensors = &self.tensors;
        let sums = |c: &super::state::Chunk| {
            // SAFETY: `take` checked the gradient has its tensor's length; only read.
            let a = unsafe { ptrs[c.tensor].arrays.range(c.start, c.end) };
            let g = unsafe { std::slice::from_raw_parts(a.g, a.n) };
            let in_f64 = g.iter().map(|v| v.load().to_f64().powi(2)).sum::<f64>();
            let in_turn = if tensors[c.tensor].full <= IN_TURN {
                g.iter().fold(P::Acc::ZERO, |s, v| s + v.load() * v.load()).to_f64()
            } else {
                0.0
            };
            [in_f64, in_turn]
        };
        let chunks = &self.chunks[range];
        if parallel {
            use rayon::prelude::*;
            chunks.par_iter().map(sums).collect_into_vec(chunk_sums);
        } else {
            chunk_sums.clear();
            chunk_sums.extend(chunks.iter().map(sums));
        }
        for (c, s) in chunks.iter().zip(chunk_sums.iter()) {
            let tr = &tensors[c.tensor];
            let b = tr.blocks.start + (tr.first + c.start) / CHUNK;
            block_sums[2 * b..2 * b + 2].copy_from_slice(s);
        }
    }
}

/// The sums of squares of a step (after [`Optimizer::square_sums`]) and the tensors they
/// are of.
pub(super) struct Squares<'a> {
    pub(super) tensors: &'a [Tracked],
    pub(super) sums: &'a [f64],
}

impl Squares<'_> {
    /// Tensor `t`'s sum of squares as `rounding` forms it in `T`: under [`Rounding::Xla`]
    /// in `T`, added in turn up to 32 elements (as XLA reduces on CPU; larger tensors it
    /// reduces in vector lanes, an order not reproduced: their sum is taken in `f64` and
    /// rounded); otherwise in `f64`, its chunks' sums in order.
    fn tensor<T: Float>(&self, t: usize, rounding: Rounding) -> f64 {
        let tr = &self.tensors[t];
        if rounding == Rounding::Xla && tr.full <= IN_TURN {
            return tr.blocks.clone().next().map_or(0.0, |b| self.sums[2 * b + 1]);
        }
        let in_f64 = tr.blocks.clone().map(|b| self.sums[2 * b]).sum::<f64>();
        if rounding == Rounding::Xla { T::from_f64(in_f64).to_f64() } else { in_f64 }
    }

    /// The L2 norm of all gradients together: the tensors' sums added in turn (in `T`
    /// under [`Rounding::Xla`], optax's `global_norm`; else in `f64`), then the root.
    /// Rounded once where it is used.
    pub(super) fn global<T: Float>(&self, rounding: Rounding) -> f64 {
        let each = (0..self.tensors.len()).map(|t| self.tensor::<T>(t, rounding));
        if rounding == Rounding::Xla {
            each.fold(T::ZERO, |s, t| s + T::from_f64(t)).sqrt().to_f64()
        } else {
            each.sum::<f64>().sqrt()
        }
    }

    /// The L2 norm of tensor `t`'s gradient (all of it, on every process).
    pub(super) fn of_tensor<T: Float>(&self, t: usize, rounding: Rounding) -> f64 {
        let squares = self.tensor::<T>(t, rounding);
        if rounding == Rounding::Xla { T::from_f64(squares).sqrt().to_f64() } else { squares.sqrt() }
    }
}
