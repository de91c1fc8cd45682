//! A step taken by several processes together: what they must agree on, and how a model's
//! tensors are cut into one contiguous range per process for sharded optimizer state
//! (ZeRO stage 1, Rajbhandari et al. 2020; PyTorch's `ZeroRedundancyOptimizer`).
//!
//! The family's updates are element-wise, so the update of a range is exactly that range
//! of the whole update. Only three things need the other processes: whether to step at
//! all (an invalid input or a non-finite gradient anywhere, a non-finite result anywhere:
//! every process refuses or skips together, so replicas never drift apart), and the
//! gradient norms of norm clipping. [`Optimizer::step_in`](crate::Optimizer::step_in)
//! settles them through a [`World`]: it adds a few numbers across processes (never the
//! gradients themselves, which the caller reduces as it likes).
//!
//! Norms are bit-identical however the model is cut: each [`CHUNK`] of a tensor (counted
//! from the tensor's start) adds its own squares, the process owning it contributes that
//! partial sum and zero for every other chunk, and after the world's sum (exact: each
//! entry is one number plus zeros) every process adds the partial sums in the same order,
//! the order a single process uses.

use super::{CHUNK, TensorSpec};
use crate::error::{Error, Result};
use std::ops::Range;

/// The processes a step is taken by. [`Solo`] is one process; an MPI communicator is
/// another (the crate `rmsprop-mpi`).
///
/// ```
/// use rmsprop::{Solo, World};
/// let mut v = [1.0, 2.0];
/// Solo.all_sum(&mut v).unwrap();
/// assert_eq!((Solo.rank(), Solo.size(), v), (0, 1, [1.0, 2.0]));
/// ```
pub trait World {
    /// This process's index, `0..size()`.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn size(&self) -> usize;
    /// Replaces `v`, on every process, by the element-wise sum of every process's `v`
    /// (MPI's `Allreduce` with `MPI_SUM`). Every process calls it with the same length, in
    /// the same order of calls. An error (a process is gone) ends the step: nothing changes.
    fn all_sum(&self, v: &mut [f64]) -> Result<()>;
}

/// One process alone: the world of [`Optimizer::step`](crate::Optimizer::step).
#[derive(Clone, Copy, Debug, Default)]
pub struct Solo;

impl World for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_sum(&self, _: &mut [f64]) -> Result<()> {
        Ok(())
    }
}

/// The most processes a [`Partition`] cuts a model for (MPI counts them in an `int`; more
/// than this is a mistake, not a cluster).
pub const MAX_RANKS: usize = 1 << 24;

/// Tensors laid end to end (the flat vector of a model's parameters, in registration
/// order) and cut into one contiguous range per process, balanced in elements. A cut lies
/// at a tensor's end or a multiple of [`CHUNK`] from a tensor's start, so a range differs
/// from an exact share by less than `CHUNK / 2` elements; a tensor may be split between
/// processes.
///
/// ```
/// use rmsprop::{Partition, CHUNK};
/// let p = Partition::balanced(&[("w", &[3 * CHUNK][..]), ("b", &[10][..])], 2).unwrap();
/// assert_eq!(p.range(0), 0..2 * CHUNK); // the cut nearest 1.5 CHUNK + 5
/// assert_eq!(p.pieces(1), vec![2 * CHUNK..3 * CHUNK, 0..10]);
/// assert_eq!(p.len(), 3 * CHUNK + 10);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Each tensor's element count.
    lens: Vec<usize>,
    /// `ranks + 1` flat offsets: process `r` owns `cuts[r]..cuts[r + 1]`.
    cuts: Vec<usize>,
}

impl Partition {
    /// `tensors` cut into `ranks` ranges as even as the allowed cuts make them.
    ///
    /// Errors: no process, or a model whose element count overflows `usize`.
    pub fn balanced<S: Into<TensorSpec> + Clone>(tensors: &[S], ranks: usize) -> Result<Self> {
        let specs: Vec<TensorSpec> = tensors.iter().cloned().map(Into::into).collect();
        if ranks == 0 || ranks > MAX_RANKS {
            return Err(Error::InvalidCombination {
                optimizer: "partition",
                reason: format!("{ranks} processes: a partition has from 1 to {MAX_RANKS}"),
            });
        }
        let mut lens = Vec::with_capacity(specs.len());
        for s in &specs {
            lens.push(s.checked_len().ok_or_else(|| Error::TooLarge {
                tensor: s.name.clone(),
                shape: s.shape.clone(),
                reason: "its element count overflows usize".into(),
            })?);
        }
        let total = lens.iter().try_fold(0usize, |a, &n| a.checked_add(n)).ok_or_else(|| Error::TooLarge {
            tensor: "(the model)".into(),
            shape: vec![],
            reason: "the total element count overflows usize".into(),
        })?;
        let mut cuts = vec![0];
        for r in 1..ranks {
            let ideal = (total as u128 * r as u128 / ranks as u128) as usize;
            let cut = nearest_cut(&lens, ideal).max(*cuts.last().expect("starts with 0"));
            cuts.push(cut);
        }
        cuts.push(total);
        Ok(Partition { lens, cuts })
    }

    /// The number of processes.
    pub fn ranks(&self) -> usize {
        self.cuts.len() - 1
    }

    /// The elements of all tensors together.
    pub fn len(&self) -> usize {
        *self.cuts.last().expect("at least one process")
    }

    /// True when the tensors hold no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Process `rank`'s range of the flat vector (`rank < ranks()`).
    pub fn range(&self, rank: usize) -> Range<usize> {
        self.cuts[rank]..self.cuts[rank + 1]
    }

    /// Process `rank`'s piece of each tensor, as a range of the tensor's elements (empty
    /// for a tensor it holds nothing of).
    pub fn pieces(&self, rank: usize) -> Vec<Range<usize>> {
        let Range { start: lo, end: hi } = self.range(rank);
        let mut at = 0;
        self.lens
            .iter()
            .map(|&n| {
                let (start, end) = (lo.clamp(at, at + n) - at, hi.clamp(at, at + n) - at);
                at += n;
                start..end
            })
            .collect()
    }

    /// Each tensor's element count.
    pub fn lens(&self) -> &[usize] {
        &self.lens
    }
}

/// The allowed cut (a tensor's end, or a multiple of [`CHUNK`] from its start) nearest
/// `ideal`, the lower one on a tie.
fn nearest_cut(lens: &[usize], ideal: usize) -> usize {
    let mut at = 0;
    for &n in lens {
        if ideal < at + n {
            let down = at + (ideal - at) / CHUNK * CHUNK;
            let up = (down + CHUNK).min(at + n);
            return if ideal - down <= up - ideal { down } else { up };
        }
        at += n;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_are_balanced_and_allowed() {
        let tensors: Vec<TensorSpec> = [5 * CHUNK + 7, 3, 0, 2 * CHUNK, 1]
            .iter()
            .enumerate()
            .map(|(i, &n)| TensorSpec::new(format!("t{i}"), &[n]))
            .collect();
        let total: usize = tensors.iter().map(|t| t.len()).sum();
        for ranks in 1..=9 {
            let p = Partition::balanced(&tensors, ranks).unwrap();
            assert_eq!(p.ranks(), ranks);
            let mut covered = 0;
            for r in 0..ranks {
                let range = p.range(r);
                assert_eq!(range.start, covered);
                covered = range.end;
                let share = total as f64 / ranks as f64;
                assert!((range.len() as f64 - share).abs() <= CHUNK as f64, "{ranks} ranks: {range:?}");
                for (piece, t) in p.pieces(r).iter().zip(&tensors) {
                    assert!(piece.start == t.len() || piece.start % CHUNK == 0 || piece.is_empty(), "{piece:?}");
                }
            }
            assert_eq!(covered, total);
            // every element of every tensor is in exactly one piece
            for (i, t) in tensors.iter().enumerate() {
                let held: usize = (0..ranks).map(|r| p.pieces(r)[i].len()).sum();
                assert_eq!(held, t.len());
            }
        }
        assert!(Partition::balanced(&tensors, 0).is_err());
        assert!(Partition::balanced(&tensors, usize::MAX).is_err());
        assert_eq!(Partition::balanced(&tensors, 100).unwrap().ranks(), 100); // more processes than cuts
        let absurd = [TensorSpec::new("a", &[usize::MAX]), TensorSpec::new("b", &[2])];
        assert!(matches!(Partition::balanced(&absurd, 2), Err(Error::TooLarge { .. })));
    }
}
