//! Data-parallel training and sharded optimizer state (ZeRO stage 1) for the optimizers of
//! [`rmsprop`], on MPI (OpenMPI through the `mpi` crate).
//!
//! Each process computes the gradient of its part of the global batch; [`Distributed::step`]
//! averages the gradients across processes and steps:
//! - [`Mode::DataParallel`] (PyTorch's `DistributedDataParallel`): the gradients are
//!   all-reduced in buckets of the flat gradient, and every process steps its full copy of
//!   the model and of the optimizer's state.
//! - [`Mode::Sharded`] (PyTorch's `ZeroRedundancyOptimizer`): the flat gradient is
//!   reduce-scattered, so each process receives the average of its range only
//!   ([`Partition`]: contiguous, a tensor may be split, each range within half a
//!   [`CHUNK`](rmsprop::CHUNK) of an exact share: the cuts fall where the norms' blocks do,
//!   so the steps keep one process's bits); it keeps optimizer state for that range alone,
//!   steps it with the fused kernel, and the ranges are all-gathered.
//!
//! Both divide each gradient by the number of processes before adding (as
//! `DistributedDataParallel` does), and both add them with the same calls: bucket by
//! bucket, a reduce-scatter, then an all-gather (of the averaged gradient, data-parallel;
//! of the stepped parameters, sharded) — the ring all-reduce of NCCL and Horovod. So the
//! two modes give the same bits on every process. (`MPI_Allreduce` itself adds three or
//! more processes' values in another order than `MPI_Reduce_scatter_block` does: measured
//! with OpenMPI 4.1 on 3 processes, the last bits differ.) Whether to step (a non-finite gradient or result
//! anywhere) and the norm of norm clipping are settled by [`Optimizer::step_in`] across
//! the processes ([`Mpi`] is its [`World`]).
//!
//! ```no_run
//! use rmsprop::{RmsProp, TensorSpec};
//! use rmsprop_mpi::{Distributed, Mode, Mpi};
//! let universe = mpi::initialize().expect("MPI initialised once");
//! let world = Mpi::new(universe.world());
//! let tensors = [TensorSpec::new("w", &[1000]), TensorSpec::new("b", &[1])];
//! let mut opt = Distributed::<f32>::new(world, Mode::Sharded, RmsProp::default(), &tensors).unwrap();
//! let mut params = vec![vec![0.0f32; 1000], vec![0.0]];
//! let local_grads = vec![vec![0.1f32; 1000], vec![0.1]]; // this process's part of the batch
//! opt.step(&mut params, &local_grads).unwrap();
//! ```

pub mod checkpoint;
mod watchdog;

pub use watchdog::EXIT_CODE;

use mpi::collective::SystemOperation;
use mpi::datatype::Equivalence;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use rmsprop::{Error, Float, Optimizer, OptimizerConfig, Param, Partition, Result, StepOutcome, TensorSpec, World};
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

/// Elements of the gradient reduced in one collective call: 25 MiB of `f32`,
/// `DistributedDataParallel`'s default `bucket_cap_mb`.
pub const BUCKET: usize = 25 << 18;

/// How long a collective waits for the other processes before the job is ended
/// ([`Mpi::with_timeout`]): ten minutes, PyTorch's default for NCCL.
pub const TIMEOUT: Duration = Duration::from_secs(600);

/// The processes of an MPI communicator, as the [`World`] of a step.
///
/// Its collectives have a deadline ([`TIMEOUT`] unless [`with_timeout`](Self::with_timeout)
/// says otherwise): a process that waits longer for the others (one died, or hangs)
/// says so on its standard error, naming the collective and the step, and ends the job
/// (`MPI_Abort`, exit code [`EXIT_CODE`]) rather than waiting for ever.
pub struct Mpi {
    comm: SimpleCommunicator,
    watchdog: Option<watchdog::Watchdog>,
}

impl Mpi {
    /// The processes of `comm` (`universe.world()` for all of them), with the deadline
    /// [`TIMEOUT`].
    pub fn new(comm: SimpleCommunicator) -> Self {
        let rank = comm.rank() as usize;
        Mpi { comm, watchdog: Some(watchdog::Watchdog::start(rank, TIMEOUT)) }
    }

    /// The deadline of a collective: `None` for none (wait for ever).
    ///
    /// ```no_run
    /// use rmsprop_mpi::Mpi;
    /// use std::time::Duration;
    /// let universe = mpi::initialize().expect("MPI initialised once");
    /// let world = Mpi::new(universe.world()).with_timeout(Some(Duration::from_secs(30)));
    /// ```
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        let rank = self.comm.rank() as usize;
        self.watchdog = timeout.map(|t| watchdog::Watchdog::start(rank, t));
        self
    }

    /// The deadline of a collective.
    pub fn timeout(&self) -> Option<Duration> {
        self.watchdog.as_ref().map(|w| w.timeout())
    }

    /// The communicator (its collectives called directly have no deadline).
    pub fn comm(&self) -> &SimpleCommunicator {
        &self.comm
    }

    /// Waits until every process has called it (under the deadline).
    pub fn barrier(&self) {
        self.guard("barrier", || self.comm.barrier());
    }

    /// Every process's `mine`, on process 0 (in process order); `None` on the others.
    /// Every process calls it.
    ///
    /// ```no_run
    /// use rmsprop::World;
    /// use rmsprop_mpi::Mpi;
    /// let universe = mpi::initialize().expect("MPI initialised once");
    /// let world = Mpi::new(universe.world());
    /// let said = format!("process {}", world.rank());
    /// if let Some(all) = world.gather_bytes(said.as_bytes()).unwrap() {
    ///     assert_eq!(all.len(), world.size());
    /// }
    /// ```
    pub fn gather_bytes(&self, mine: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        let size = self.size();
        let mut lens = vec![0.0; size];
        lens[self.rank()] = mine.len() as f64;
        self.all_sum(&mut lens)?;
        let too_long = |n: f64| Error::World(format!("{n} bytes from one process: at most {} in one gather", i32::MAX));
        if let Some(&n) = lens.iter().find(|&&n| n > f64::from(i32::MAX)) {
            return Err(too_long(n));
        }
        let counts: Vec<i32> = lens.iter().map(|&n| n as i32).collect();
        let total: usize = lens.iter().map(|&n| n as usize).sum();
        if total > i32::MAX as usize {
            return Err(too_long(total as f64));
        }
        let root = self.comm.process_at_rank(0);
        if self.rank() != 0 {
            self.guard("gather of the results", || root.gather_varcount_into(mine));
            return Ok(None);
        }
        let displs: Vec<i32> = counts.iter().scan(0, |at, &n| Some(std::mem::replace(at, *at + n))).collect();
        let mut all = vec![0u8; total];
        {
            let mut parts = mpi::datatype::PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            self.guard("gather of the results", || root.gather_varcount_into_root(mine, &mut parts));
        }
        Ok(Some(counts.iter().zip(&displs).map(|(&n, &at)| all[at as usize..(at + n) as usize].to_vec()).collect()))
    }

    /// Runs the collective `f` (named by `what`) under the deadline.
    fn guard<R>(&self, what: &'static str, f: impl FnOnce() -> R) -> R {
        match &self.watchdog {
            Some(w) => w.guard(what, f),
            None => f(),
        }
    }

    /// Tells the watchdog the step the processes are at (for its message).
    fn at_step(&self, step: u64) {
        if let Some(w) = &self.watchdog {
            w.at_step(step);
        }
    }
}

impl World for Mpi {
    fn rank(&self) -> usize {
        self.comm.rank() as usize
    }
    fn size(&self) -> usize {
        self.comm.size() as usize
    }
    /// `MPI_Allreduce` with `MPI_SUM`. A step adds only counts and numbers with one
    /// non-zero contribution, which every reduction order adds exactly. (MPI's default
    /// error handler ends the job on a failed collective; the deadline, on a process that
    /// never answers.)
    fn all_sum(&self, v: &mut [f64]) -> Result<()> {
        let send = v.to_vec();
        self.guard("all-reduce of the step's agreement", || {
            self.comm.all_reduce_into(&send[..], v, SystemOperation::sum())
        });
        Ok(())
    }
}

/// How the processes share the work of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every process keeps the whole state and steps the whole model (the averaged
    /// gradient reduce-scattered and all-gathered: an all-reduce).
    DataParallel,
    /// Every process keeps the state of its range and steps it (reduce-scatter, all-gather).
    Sharded,
}

/// How the processes' gradients are combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// Their mean: each divided by the number of processes, then added
    /// (`DistributedDataParallel`; each process's gradient is of its batch's mean loss).
    #[default]
    Mean,
    /// Their sum (each process's gradient is of its rows' share of a loss already
    /// normalised for the global batch, as Gluon's `trainer.step(batch_size)` does).
    Sum,
}

/// An optimizer whose step is taken by every process of an MPI job together; see the
/// [crate] documentation.
///
/// The gradients travel in a padded layout: process `r`'s range of the flat model,
/// padded to the longest range (`block` elements), is cut into buckets of `bucket`
/// elements; bucket `k` holds every process's `k`-th piece back to back, so one
/// reduce-scatter per bucket gives each process its own piece, summed.
pub struct Distributed<P: Param + Equivalence> {
    mode: Mode,
    world: Mpi,
    partition: Partition,
    opt: Optimizer<P>,
    tensors: Vec<TensorSpec>,
    /// Each tensor's range of the flat vector.
    spans: Vec<Range<usize>>,
    /// Elements per process in the padded layout (the longest range).
    block: usize,
    /// Elements per process in one bucket.
    bucket: usize,
    /// The gradients divided by the number of processes, in the padded layout.
    send: Vec<P>,
    /// This process's block of the summed gradient.
    reduced: Vec<P>,
    /// Sharded: this process's parameters (one block).
    local: Vec<P>,
    /// Every process's block (the gradient, data-parallel; the parameters, sharded), in
    /// the padded layout.
    gathered: Vec<P>,
    /// Data-parallel: the averaged gradient, flat.
    full: Vec<P>,
    reduction: Reduction,
    comm_time: Duration,
}

impl<P: Param + Equivalence> Distributed<P> {
    /// `config` over `tensors`, on every process of `world` (all call it alike).
    pub fn new(world: Mpi, mode: Mode, config: impl Into<OptimizerConfig>, tensors: &[TensorSpec]) -> Result<Self> {
        let (rank, size) = (world.rank(), world.size());
        let partition = Partition::balanced(tensors, size)?;
        let opt = match mode {
            Mode::DataParallel => Optimizer::new(config, tensors)?,
            Mode::Sharded => Optimizer::sharded(config, tensors, &partition, rank)?,
        };
        let mut spans = Vec::with_capacity(tensors.len());
        let mut at = 0;
        for &n in partition.lens() {
            spans.push(at..at + n);
            at += n;
        }
        let block = (0..size).map(|r| partition.range(r).len()).max().unwrap_or(0);
        let padded = block.checked_mul(size).ok_or_else(|| Error::World("the padded layout overflows".into()))?;
        let bucket = (BUCKET / size).max(1);
        let zeros = |n| vec![P::default(); n];
        let (local, full) = match mode {
            Mode::DataParallel => (Vec::new(), zeros(at)),
            Mode::Sharded => (zeros(block), Vec::new()),
        };
        Ok(Distributed {
            mode,
            world,
            partition,
            opt,
            tensors: tensors.to_vec(),
            spans,
            block,
            bucket,
            send: zeros(padded),
            reduced: zeros(block),
            local,
            gathered: zeros(padded),
            full,
            reduction: Reduction::Mean,
            comm_time: Duration::ZERO,
        })
    }

    /// The optimizer of this process (the whole model's, or its shard's), changed by `f`
    /// (a schedule, a non-finite policy).
    pub fn map_optimizer(mut self, f: impl FnOnce(Optimizer<P>) -> Optimizer<P>) -> Self {
        self.opt = f(self.opt);
        self
    }

    /// Reduces the gradient in buckets of about `elements` elements (at least one per
    /// process) instead of [`BUCKET`].
    pub fn with_bucket(mut self, elements: usize) -> Self {
        self.bucket = (elements / self.world.size()).max(1);
        self
    }

    /// Combines the processes' gradients by `r` (the mean by default).
    pub fn with_reduction(mut self, r: Reduction) -> Self {
        self.reduction = r;
        self
    }

    /// The optimizer of this process.
    pub fn optimizer(&self) -> &Optimizer<P> {
        &self.opt
    }

    /// How the model is cut into the processes' ranges.
    pub fn partition(&self) -> &Partition {
        &self.partition
    }

    /// The MPI world.
    pub fn world(&self) -> &Mpi {
        &self.world
    }

    /// Time spent in MPI's collectives of the gradient and parameters so far.
    pub fn comm_time(&self) -> Duration {
        self.comm_time
    }

    /// Bytes of optimizer state this process holds, as it keeps it (bfloat16, 8-bit codes
    /// and their scales where the configuration's `state_storage` packs it).
    pub fn state_bytes(&self) -> usize {
        self.opt.state_bytes()
    }

    /// Writes a checkpoint of the optimizer state into the folder `dir` (see
    /// [`checkpoint`]): each process its shard (sharded), or process 0 the whole state
    /// (data-parallel); then process 0 the manifest. Every process calls it.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let rank = self.world.rank();
        let sharded = self.mode == Mode::Sharded;
        let manifest =
            checkpoint::Manifest::new(&self.tensors, sharded.then_some(&self.partition), self.opt.step_count());
        let written = std::fs::create_dir_all(dir).map_err(|error| Error::Io { path: dir.to_path_buf(), error });
        let written = written.and_then(|()| match self.mode {
            Mode::Sharded => self.opt.save(&dir.join(&manifest.files[rank])),
            Mode::DataParallel if rank == 0 => self.opt.save(&dir.join(&manifest.files[0])),
            Mode::DataParallel => Ok(()),
        });
        self.agree(written, "could not write its part of the checkpoint")?;
        let manifest = if rank == 0 { manifest.write(dir) } else { Ok(()) };
        self.agree(manifest, "could not write the manifest")
    }

    /// Replaces the optimizer state with the checkpoint `from`: a folder written by
    /// [`save`](Self::save) on any number of processes, or a single-process checkpoint
    /// file (`Optimizer::save`). Every process calls it; if any cannot load it, none
    /// changes.
    pub fn load(&mut self, from: &Path) -> Result<()> {
        let pieces = (self.mode == Mode::Sharded).then(|| self.partition.pieces(self.world.rank()));
        let mut trial = self.opt.clone();
        let loaded =
            checkpoint::state_for(from, &self.tensors, pieces.as_deref()).and_then(|b| trial.load_bytes(&b, from));
        self.agree(loaded, "could not load the checkpoint")?;
        self.opt = trial;
        Ok(())
    }

    /// `mine`, agreed on: an error on any process is an error on every one.
    fn agree(&self, mine: Result<()>, what: &str) -> Result<()> {
        let mut failed = [f64::from(u8::from(mine.is_err()))];
        self.world.all_sum(&mut failed)?;
        mine?;
        if failed[0] > 0.0 {
            return Err(Error::World(format!("{} other process(es) {what}", failed[0])));
        }
        Ok(())
    }

    /// One step: `local_grads` is this process's gradient of its part of the global batch
    /// (whole tensors); `params` the whole model, the same on every process before and
    /// after. Every process calls it for every step. On an error or a skipped step nothing
    /// changes on any process.
    pub fn step(&mut self, params: &mut [Vec<P>], local_grads: &[Vec<P>]) -> Result<StepOutcome> {
        self.world.at_step(self.opt.step_count() + 1);
        let lens = |v: &[Vec<P>]| v.iter().map(Vec::len).collect::<Vec<_>>();
        let fits = lens(params) == self.partition.lens() && lens(local_grads) == self.partition.lens();
        let mut bad = [f64::from(u8::from(!fits))];
        self.world.all_sum(&mut bad)?;
        if bad[0] > 0.0 {
            if !fits {
                return Err(Error::InvalidCombination {
                    optimizer: "distributed step",
                    reason: format!(
                        "parameters of {:?} and gradients of {:?} elements, for tensors of {:?}",
                        lens(params),
                        lens(local_grads),
                        self.partition.lens()
                    ),
                });
            }
            let step = self.opt.step_count() + 1;
            return Err(Error::RefusedElsewhere { step, processes: bad[0] as usize, reason: "an invalid input" });
        }
        let size = if self.reduction == Reduction::Mean { self.world.size() } else { 1 };
        // the padding between the processes' ranges is never written: it stays zero
        for (t, g) in local_grads.iter().enumerate() {
            let span = self.spans[t].clone();
            for (at, from, n) in self.runs_of(span.start, span.len()) {
                for (s, &g) in self.send[at..at + n].iter_mut().zip(&g[from - span.start..][..n]) {
                    *s = scaled(g, size);
                }
            }
        }
        let start = Instant::now();
        for (packed, mine) in self.buckets().zip(self.reduced.chunks_mut(self.bucket)) {
            let (comm, send) = (&self.world.comm, &self.send[packed]);
            self.world.guard("reduce-scatter of the gradient", || {
                comm.reduce_scatter_block_into(send, mine, SystemOperation::sum())
            });
        }
        self.comm_time += start.elapsed();
        match self.mode {
            Mode::DataParallel => self.step_data_parallel(params),
            Mode::Sharded => self.step_sharded(params),
        }
    }

    /// Every process's block all-gathered into `gathered`, bucket by bucket: the reduced
    /// gradient (data-parallel) or the stepped parameters (sharded).
    fn all_gather(&mut self) {
        let start = Instant::now();
        let mine = match self.mode {
            Mode::DataParallel => &self.reduced,
            Mode::Sharded => &self.local,
        };
        let what = match self.mode {
            Mode::DataParallel => "all-gather of the gradient",
            Mode::Sharded => "all-gather of the parameters",
        };
        for (packed, part) in self.buckets().zip(mine.chunks(self.bucket)) {
            let (comm, into) = (&self.world.comm, &mut self.gathered[packed]);
            self.world.guard(what, || comm.all_gather_into(part, into));
        }
        self.comm_time += start.elapsed();
    }

    fn step_data_parallel(&mut self, params: &mut [Vec<P>]) -> Result<StepOutcome> {
        self.all_gather();
        for (at, from, n) in self.runs_of(0, self.full.len()) {
            self.full[from..from + n].copy_from_slice(&self.gathered[at..at + n]);
        }
        let grads: Vec<&[P]> = self.spans.iter().map(|s| &self.full[s.clone()]).collect();
        self.opt.step_in(&self.world, params, &grads)
    }

    fn step_sharded(&mut self, params: &mut [Vec<P>]) -> Result<StepOutcome> {
        let me = self.world.rank();
        let base = self.partition.range(me).start;
        let pieces = self.partition.pieces(me);
        // this process's pieces, in the order of its range
        let at = |t: usize, p: &Range<usize>| self.spans[t].start + p.start - base;
        for (t, p) in pieces.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
            let a = at(t, p);
            self.local[a..a + p.len()].copy_from_slice(&params[t][p.clone()]);
        }
        let grads: Vec<&[P]> = pieces
            .iter()
            .enumerate()
            .map(|(t, p)| if p.is_empty() { &[][..] } else { &self.reduced[at(t, p)..at(t, p) + p.len()] })
            .collect();
        let mut rest = &mut self.local[..];
        let mut xs: Vec<&mut [P]> = Vec::with_capacity(pieces.len());
        for p in &pieces {
            let (x, tail) = std::mem::take(&mut rest).split_at_mut(p.len());
            xs.push(x);
            rest = tail;
        }
        let outcome = self.opt.step_in(&self.world, &mut xs, &grads)?;
        if outcome == StepOutcome::Applied {
            self.all_gather();
            for (t, x) in params.iter_mut().enumerate() {
                let span = self.spans[t].clone();
                for (at, from, n) in self.runs_of(span.start, span.len()) {
                    x[from - span.start..][..n].copy_from_slice(&self.gathered[at..at + n]);
                }
            }
        }
        Ok(outcome)
    }

    /// Each bucket's range of the padded layout: `size` pieces of the same length.
    fn buckets(&self) -> impl Iterator<Item = Range<usize>> + use<P> {
        let (size, block, bucket) = (self.world.size(), self.block, self.bucket);
        (0..block.div_ceil(bucket)).map(move |k| {
            let len = bucket.min(block - k * bucket);
            k * size * bucket..k * size * bucket + size * len
        })
    }

    /// The elements `from..from + n` of the flat model as runs `(at, flat, len)`: `len`
    /// elements from flat index `flat` lie at `at` in the padded layout.
    fn runs_of(&self, from: usize, n: usize) -> Vec<(usize, usize, usize)> {
        let (size, block, bucket) = (self.world.size(), self.block, self.bucket);
        let mut runs = Vec::new();
        for r in 0..size {
            let range = self.partition.range(r);
            let (lo, hi) = (from.max(range.start), (from + n).min(range.end));
            let mut flat = lo;
            while flat < hi {
                let offset = flat - range.start; // within process r's block
                let k = offset / bucket;
                let len = bucket.min(block - k * bucket);
                let run = (hi - flat).min((k + 1) * bucket - offset);
                runs.push((k * size * bucket + r * len + offset - k * bucket, flat, run));
                flat += run;
            }
        }
        runs
    }
}

/// `g / size`, rounded to `P`, as `DistributedDataParallel` scales a gradient before the
/// processes' are added.
#[inline]
fn scaled<P: Param>(g: P, size: usize) -> P {
    P::store(g.load() / P::Acc::from_f64(size as f64))
}
