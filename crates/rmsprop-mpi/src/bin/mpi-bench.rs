//! Time per step of RMSProp (PyTorch's defaults, float32) on one flat tensor: one process
//! without MPI, or every process of an MPI job in a [`Mode`], with the time in MPI's
//! collectives split out.
//!
//! ```text
//! mpi-bench --mode single --sizes 1e7,1e8
//! mpirun -np 2 mpi-bench --mode sharded --sizes 1e7,1e8
//! ```
//!
//! Prints one line per size (process 0): `mode processes size step_ms comm_ms`, the median
//! of `--steps` steps (5) after one untimed step; a process's step is timed from the call
//! to its return, and the slowest process's time is reported.

mod common;

use clap::Parser;
use common::Launch;
use rmsprop::{Optimizer, RmsProp, TensorSpec, World};
use rmsprop_mpi::{Distributed, Mode, Mpi};
use std::process::ExitCode;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Time per step of RMSProp (PyTorch's defaults, float32) on one flat tensor, one line per
/// size (process 0): `mode processes size step_ms comm_ms`, the median of `--steps` steps
/// after one untimed step, the slowest process's.
#[derive(Parser)]
#[command(
    name = "mpi-bench",
    after_help = "Examples:\n  mpi-bench --mode single --sizes 1e7,1e8\n  mpirun -np 2 mpi-bench --mode sharded --sizes 1e7,1e8"
)]
struct Args {
    /// `single` (one process, no MPI), `data-parallel` or `sharded` (ZeRO-1).
    #[arg(long, value_enum, default_value_t = Launch::Sharded)]
    mode: Launch,
    /// Element counts of the tensor, comma-separated (1e7,1e8).
    #[arg(long, value_delimiter = ',', value_parser = size, default_value = "1e7")]
    sizes: Vec<usize>,
    /// Timed steps per size.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    steps: u64,
}

/// An element count, as `1e7` or `10000000`.
fn size(s: &str) -> Result<usize, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if (1.0..=1e10).contains(&x) && x.fract() == 0.0 => Ok(x as usize),
        _ => Err(format!("expected a whole number from 1 to 1e10 such as 1e7, not {s:?}")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mode = args.mode.mode();
    let (sizes, steps) = (args.sizes, args.steps as usize);
    let universe = match mode {
        Some(_) => match mpi::initialize() {
            Some(u) => Some(u),
            None => {
                eprintln!("error: MPI is already initialised");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    for &n in &sizes {
        let tensors = [TensorSpec::new("x", &[n])];
        let mut params = vec![vec![0.5f32; n]];
        let grads = vec![(0..n).map(|i| ((i % 1000) as f32 - 500.0) / 1000.0).collect::<Vec<f32>>()];
        let (mut times, mut comms) = (Vec::new(), Vec::new());
        let (label, processes) = match (&universe, mode) {
            (Some(u), Some(mode)) => {
                let world = Mpi::new(u.world());
                let size = world.size();
                let mut opt = Distributed::<f32>::new(world, mode, RmsProp::default(), &tensors).expect("valid");
                opt.step(&mut params, &grads).expect("a finite step");
                for _ in 0..steps {
                    let comm = opt.comm_time();
                    let start = Instant::now();
                    opt.step(&mut params, &grads).expect("a finite step");
                    let mut t = [start.elapsed().as_secs_f64(), (opt.comm_time() - comm).as_secs_f64()];
                    // the slowest process's: each process's time, the largest taken
                    let mut all = vec![0.0; 2 * size];
                    all[2 * opt.world().rank()..][..2].copy_from_slice(&t);
                    opt.world().all_sum(&mut all).expect("MPI");
                    t = all.chunks(2).fold([0.0, 0.0], |m, p| if p[0] > m[0] { [p[0], p[1]] } else { m });
                    times.push(t[0]);
                    comms.push(t[1]);
                }
                let label = if mode == Mode::Sharded { "sharded" } else { "data-parallel" };
                if opt.world().rank() != 0 {
                    continue;
                }
                (label, size)
            }
            _ => {
                let mut opt = Optimizer::<f32>::new(RmsProp::default(), &tensors).expect("valid");
                opt.step(&mut params, &grads).expect("a finite step");
                for _ in 0..steps {
                    let start = Instant::now();
                    opt.step(&mut params, &grads).expect("a finite step");
                    times.push(start.elapsed().as_secs_f64());
                    comms.push(0.0);
                }
                ("single", 1)
            }
        };
        println!("{label} {processes} {n:e} {:.3} {:.3}", median(times) * 1e3, median(comms) * 1e3);
    }
    ExitCode::SUCCESS
}
