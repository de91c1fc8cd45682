//! What the two binaries share: how `--mode` is read.

use clap::ValueEnum;
use rmsprop_mpi::Mode;

/// `--mode`: one process without MPI, or every process of an MPI job in a [`Mode`].
#[derive(Clone, Copy, ValueEnum)]
pub enum Launch {
    /// One process, no MPI.
    Single,
    /// Every process keeps all the optimizer's state.
    #[value(alias = "ddp")]
    DataParallel,
    /// ZeRO-1: each process keeps a share of the state.
    #[value(alias = "zero1")]
    Sharded,
}

impl Launch {
    /// The MPI mode, `None` for a single process.
    pub fn mode(self) -> Option<Mode> {
        match self {
            Launch::Single => None,
            Launch::DataParallel => Some(Mode::DataParallel),
            Launch::Sharded => Some(Mode::Sharded),
        }
    }
}
