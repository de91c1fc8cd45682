//! `rmsprop train --distributed ddp|zero1` and `rmsprop sweep --distributed`, launched by
//! `mpirun`: the chapter's trainer with each minibatch split across the processes, or the
//! grid's runs spread over them (`rmsprop_mpi`, in a build with the `mpi` feature).

use anyhow::Result;
use clap::ValueEnum;
use rmsprop::OptimizerConfig;
use rmsprop_lab::data::Dataset;
use rmsprop_lab::sweep::{Cell, SweepSpec};
use rmsprop_lab::train::{Curve, Protocol};

/// How `train` spreads its steps over the processes of an MPI job.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Distribution {
    /// Data-parallel: every process keeps the whole optimizer state.
    Ddp,
    /// Sharded optimizer state (ZeRO-1): every process keeps 1/N of it.
    Zero1,
}

/// What a distributed run gives: the curve (the same on every process) and what each
/// process held.
pub struct Run {
    pub rank: usize,
    pub curve: Curve,
    /// Bytes of optimizer state on each process.
    pub state_bytes: Vec<usize>,
    /// Bytes of optimizer state one process would hold.
    pub whole_bytes: usize,
    /// Seconds in MPI's collectives, the slowest process's.
    pub comm_seconds: f64,
}

/// Trains the chapter's linear regression with `config` (Gluon trainer semantics: the
/// summed gradient over the global minibatch, divided by its size) on every process of
/// the MPI job this program was started in.
#[cfg(feature = "mpi")]
pub fn train(data: &Dataset, config: &OptimizerConfig, protocol: &Protocol, how: Distribution) -> Result<Run> {
    use rmsprop::{NonFinitePolicy, TensorSpec, World};
    use rmsprop_lab::data::FEATURES;
    use rmsprop_lab::train::{Share, train_shared};
    use rmsprop_mpi::{Distributed, Mode, Mpi, Reduction};
    let universe = mpi::initialize().ok_or_else(|| anyhow::anyhow!("MPI was initialised twice"))?;
    let world = Mpi::new(universe.world());
    let (rank, size) = (world.rank(), world.size());
    let mut config = config.clone();
    config.common_mut().rescale_grad /= protocol.batch_size as f64;
    let tensors = [TensorSpec::new("w", &[FEATURES, 1]), TensorSpec::new("b", &[1])];
    let mode = match how {
        Distribution::Ddp => Mode::DataParallel,
        Distribution::Zero1 => Mode::Sharded,
    };
    // what one process would hold, in the configuration's storage
    let whole_bytes = rmsprop::Optimizer::<f32>::new(config.clone(), &tensors)?.state_bytes();
    // a diverging run (the γ = 1 exercise) is an outcome to show, as in one process
    let mut opt = Distributed::<f32>::new(world, mode, config, &tensors)?
        .with_reduction(Reduction::Sum)
        .map_optimizer(|o| o.with_nonfinite_policy(NonFinitePolicy::Propagate));
    let curve = train_shared(data, protocol, Share { rank, size }, &mut |p, g| opt.step(p, g).map(|_| ()))?;
    let mut held = vec![0.0; 2 * size];
    held[2 * rank] = opt.state_bytes() as f64;
    held[2 * rank + 1] = opt.comm_time().as_secs_f64();
    opt.world().all_sum(&mut held)?;
    let state_bytes = held.chunks(2).map(|h| h[0] as usize).collect();
    let comm_seconds = held.chunks(2).map(|h| h[1]).fold(0.0, f64::max);
    Ok(Run { rank, curve, state_bytes, whole_bytes, comm_seconds })
}

/// Runs the grid of `spec` on every process of the MPI job this program was started in:
/// process `r` of `N` runs the grid's runs `r, r + N, ...` (each seeded as in one
/// process, so the results are one process's), and process 0 gathers them. The cells on
/// process 0, `None` on the others; `progress` makes process 0's progress bar for its
/// number of runs.
#[cfg(feature = "mpi")]
pub fn sweep(
    data: &Dataset,
    spec: &SweepSpec,
    progress: impl Fn(u64) -> indicatif::ProgressBar,
) -> Result<Option<Vec<Cell>>> {
    use rmsprop::World;
    use rmsprop_lab::sweep::{assemble, sweep_part};
    use rmsprop_lab::train::Share;
    use rmsprop_mpi::Mpi;
    let universe = mpi::initialize().ok_or_else(|| anyhow::anyhow!("MPI was initialised twice"))?;
    let world = Mpi::new(universe.world());
    let share = Share { rank: world.rank(), size: world.size() };
    let pb = if share.rank == 0 { progress(share.count(spec.runs()) as u64) } else { indicatif::ProgressBar::hidden() };
    let part = sweep_part(data, spec, share, &|| pb.inc(1));
    pb.finish_and_clear();
    // the processes agree: one that failed makes every one stop, none waits for it
    let mut failed = [f64::from(u8::from(part.is_err()))];
    world.all_sum(&mut failed)?;
    let part = part?;
    if failed[0] > 0.0 {
        anyhow::bail!("{} other process(es) could not run their part of the grid", failed[0]);
    }
    let Some(parts) = world.gather_bytes(&serde_json::to_vec(&part)?)? else {
        return Ok(None);
    };
    let parts = parts.iter().map(|b| serde_json::from_slice(b)).collect::<serde_json::Result<Vec<Vec<Curve>>>>()?;
    Ok(Some(assemble(spec, parts)?))
}

/// Without the `mpi` feature: the error of [`available`].
#[cfg(not(feature = "mpi"))]
pub fn sweep(_: &Dataset, _: &SweepSpec, _: impl Fn(u64) -> indicatif::ProgressBar) -> Result<Option<Vec<Cell>>> {
    Err(missing())
}

/// Whether this build can train across processes: without the `mpi` feature, an error
/// saying how to build it.
pub fn available() -> Result<()> {
    if cfg!(feature = "mpi") { Ok(()) } else { Err(missing()) }
}

/// The error of a build without the `mpi` feature.
fn missing() -> anyhow::Error {
    anyhow::anyhow!(
        "--distributed needs MPI, and this rmsprop was built without it (the default build needs no system \
         packages); install OpenMPI (apt-get install libopenmpi-dev openmpi-bin libclang-dev) and build with \
         the mpi feature: cargo build --release -p rmsprop-cli --features mpi, then mpirun -np 2 \
         target/release/rmsprop train --impl trainer --distributed zero1"
    )
}

/// Without the `mpi` feature: the error of [`available`].
#[cfg(not(feature = "mpi"))]
pub fn train(_: &Dataset, _: &OptimizerConfig, _: &Protocol, _: Distribution) -> Result<Run> {
    Err(missing())
}
