//! Least-squares regression with 40 001 parameters, trained with RMSProp (PyTorch's
//! defaults, global norm clipping) on a global batch of 12 rows split across the
//! processes of an MPI job — or, with `--mode single`, by one process without MPI.
//!
//! ```text
//! mpirun -np 2 distributed-regression --mode sharded --steps 20
//! distributed-regression --mode single --steps 20
//! ```
//!
//! Its options: `distributed-regression --help`.

mod common;

use clap::{Parser, ValueEnum};
use common::Launch;
use rmsprop::{NonFinitePolicy, NormScope, Optimizer, RmsProp, StepOutcome, TensorSpec};
use rmsprop_mpi::{Distributed, Mpi};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const FEATURES: usize = 40_000;
const ROWS: usize = 12;

/// Row `i`'s features and target (a fixed linear model plus a wobble).
fn row(i: usize) -> (Vec<f32>, f32) {
    let x: Vec<f32> = (0..FEATURES).map(|j| ((i * 31 + j * 7) as f32 * 0.37).sin()).collect();
    let y = x.iter().enumerate().map(|(j, v)| v * ((j % 13) as f32 - 6.0) / 100.0).sum::<f32>() + (i as f32).cos();
    (x, y)
}

/// The mean loss `(x·w + b - y)² / 2` of `rows` and its gradient.
fn loss_and_grad(rows: &[(Vec<f32>, f32)], w: &[f32], b: f32) -> (f32, Vec<Vec<f32>>) {
    let mut gw = vec![0.0f32; FEATURES];
    let (mut gb, mut loss) = (0.0f32, 0.0f32);
    for (x, y) in rows {
        let e = x.iter().zip(w).map(|(a, b)| a * b).sum::<f32>() + b - y;
        loss += e * e / 2.0;
        gw.iter_mut().zip(x).for_each(|(g, v)| *g += e * v);
        gb += e;
    }
    let n = rows.len() as f32;
    gw.iter_mut().for_each(|g| *g /= n);
    (loss / n, vec![gw, vec![gb / n]])
}

/// The gradient of one process as `parts` processes form theirs: each part's mean
/// gradient divided by `parts`, the parts added in order (for two, the very sum MPI forms,
/// whichever order it adds in). The loss is the parts' mean.
fn as_processes(rows: &[(Vec<f32>, f32)], parts: usize, params: &[Vec<f32>]) -> (f32, Vec<Vec<f32>>) {
    if parts == 1 {
        return loss_and_grad(rows, &params[0], params[1][0]);
    }
    let mut sum = vec![vec![0.0f32; FEATURES], vec![0.0f32]];
    let mut loss = 0.0;
    for part in rows.chunks(rows.len() / parts) {
        let (l, g) = loss_and_grad(part, &params[0], params[1][0]);
        loss += l / parts as f32;
        for (s, g) in sum.iter_mut().zip(&g) {
            s.iter_mut().zip(g).for_each(|(s, g)| *s += g / parts as f32);
        }
    }
    (loss, sum)
}

/// The parameters saved beside a checkpoint (float32, little-endian, `w` then `b`).
fn save_params(dir: &Path, params: &[Vec<f32>]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let bytes: Vec<u8> = params.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("params.bin"), bytes).map_err(|e| format!("{}: {e}", dir.display()))
}

/// `dir`, or the checkpoint `dir/latest` names.
fn checkpoint_dir(dir: &Path) -> PathBuf {
    match std::fs::read_to_string(dir.join("latest")) {
        Ok(name) if !dir.join("manifest.json").exists() => dir.join(name.trim()),
        _ => dir.to_path_buf(),
    }
}

fn load_params(dir: &Path) -> Result<Vec<Vec<f32>>, String> {
    let bytes = std::fs::read(dir.join("params.bin")).map_err(|e| format!("{}: {e}", dir.display()))?;
    if bytes.len() != (FEATURES + 1) * 4 {
        return Err(format!("{}: {} bytes of parameters, expected {}", dir.display(), bytes.len(), (FEATURES + 1) * 4));
    }
    let v: Vec<f32> = bytes.chunks(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
    Ok(vec![v[..FEATURES].to_vec(), v[FEATURES..].to_vec()])
}

/// Names `step-<step>` in `dir/latest`, atomically.
fn point_latest(dir: &Path, step: usize) -> Result<(), String> {
    let tmp = dir.join(".latest.tmp");
    std::fs::write(&tmp, format!("step-{step}\n")).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join("latest")).map_err(|e| format!("{}: {e}", dir.display()))
}

/// Least-squares regression with 40 001 parameters trained with RMSProp (PyTorch's
/// defaults, global norm clipping) on a global batch of 12 rows split across the processes
/// of an MPI job, or by one process without MPI (`--mode single`). Process 0 prints the
/// loss; each process, at its end, its refusals or skipped steps, its optimizer state's
/// bytes and its communication time (also in `PREFIX.<rank>.log`).
#[derive(Parser)]
#[command(
    name = "distributed-regression",
    after_help = "Examples:\n  mpirun -np 2 distributed-regression --mode sharded --steps 20\n  \
                  distributed-regression --mode single --steps 20\n  \
                  mpirun -np 2 distributed-regression --save-every 5 --save ckpt --steps 20\n  \
                  mpirun -np 2 distributed-regression --resume ckpt --steps 40"
)]
struct Args {
    /// How the processes share the work: `single` (one process, no MPI), `data-parallel`
    /// (every process keeps all state) or `sharded` (ZeRO-1: each keeps a share).
    #[arg(long, value_enum, default_value_t = Launch::Sharded)]
    mode: Launch,
    /// The last step's number (a resumed run goes on from its checkpoint's).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Each process writes its final parameters' bits to `PREFIX.<rank>`.
    #[arg(long, value_name = "PREFIX")]
    out: Option<String>,
    /// That process's gradient holds a NaN at that step.
    #[arg(long, value_name = "STEP:RANK", value_parser = step_and_rank)]
    nan_at: Option<(usize, usize)>,
    /// What a step with a non-finite gradient does.
    #[arg(long, value_enum, default_value_t = Policy::Error)]
    policy: Policy,
    /// Elements reduced per collective call.
    #[arg(long, default_value_t = rmsprop_mpi::BUCKET)]
    bucket: usize,
    /// After the last step: the parameters and a checkpoint of the optimizer (see
    /// `rmsprop_mpi::checkpoint`).
    #[arg(long, value_name = "DIR")]
    save: Option<PathBuf>,
    /// With `--save DIR`, distributed: also after every K-th step, each into
    /// `DIR/step-<n>`, then `DIR/latest` names it.
    #[arg(long, value_name = "K", default_value_t = 0)]
    save_every: usize,
    /// From such a folder, or the one `DIR/latest` names, written on any number of processes.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// That process aborts at that step, as a crashed process would.
    #[arg(long, value_name = "STEP:RANK", value_parser = step_and_rank)]
    die_at: Option<(usize, usize)>,
    /// That process stops answering at that step, as a hung one would.
    #[arg(long, value_name = "STEP:RANK", value_parser = step_and_rank)]
    hang_at: Option<(usize, usize)>,
    /// With `--mode single`: the gradient formed as N processes form theirs, each part's
    /// mean divided by N, added in order (a divisor of 12).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = divisor_of_rows)]
    as_processes: usize,
    /// How long a collective waits for the others before the job is ended [default: 600,
    /// ten minutes].
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    timeout: Option<std::time::Duration>,
}

/// `--policy`.
#[derive(Clone, Copy, ValueEnum)]
enum Policy {
    Error,
    Skip,
}

/// `STEP:RANK`.
fn step_and_rank(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("expected STEP:RANK (two whole numbers), not {s:?}");
    let (step, rank) = s.split_once(':').ok_or_else(bad)?;
    Ok((step.parse().map_err(|_| bad())?, rank.parse().map_err(|_| bad())?))
}

/// A divisor of the batch's 12 rows.
fn divisor_of_rows(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 && ROWS.is_multiple_of(n) => Ok(n),
        _ => Err(format!("expected a divisor of {ROWS}, not {s:?}")),
    }
}

/// A number of seconds.
fn seconds(s: &str) -> Result<std::time::Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|v| std::time::Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("expected a number of seconds, not {s:?}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mode = args.mode.mode();
    let policy = match args.policy {
        Policy::Error => NonFinitePolicy::Error,
        Policy::Skip => NonFinitePolicy::Skip,
    };
    let timeout = Some(args.timeout.unwrap_or(rmsprop_mpi::TIMEOUT));
    let tensors = [TensorSpec::new("w", &[FEATURES]), TensorSpec::new("b", &[1])];
    let config = RmsProp::default().with_lr(1e-5).with_clip_norm(5.0, NormScope::Global);
    let mut params = vec![vec![0.0f32; FEATURES], vec![0.0f32]];
    let mut code = ExitCode::SUCCESS;
    // what each process has to say, printed at its end (and kept in `PREFIX.<rank>.log`)
    let mut log: Vec<String> = Vec::new();
    let mut _universe = None;
    // the distributed optimizer, kept to the end for the last barrier (dropped before the
    // universe, which ends MPI)
    let mut finished = None;
    let rank = match mode {
        None => {
            let rows: Vec<_> = (0..ROWS).map(row).collect();
            let mut opt = Optimizer::<f32>::new(config, &tensors).expect("valid").with_nonfinite_policy(policy);
            if let Some(dir) = &args.resume {
                let dir = &checkpoint_dir(dir);
                let loaded = load_params(dir).and_then(|p| {
                    let state = rmsprop_mpi::checkpoint::state_for(dir, &tensors, None).map_err(|e| e.to_string())?;
                    opt.load_bytes(&state, dir).map_err(|e| e.to_string())?;
                    params = p;
                    Ok(())
                });
                if let Err(e) = loaded {
                    eprintln!("error: resuming from {}: {e}", dir.display());
                    return ExitCode::from(1);
                }
            }
            for step in opt.step_count() as usize + 1..=args.steps {
                let (loss, mut g) = as_processes(&rows, args.as_processes, &params);
                if args.nan_at.is_some_and(|(s, _)| s == step) {
                    g[0][0] = f32::NAN;
                }
                println!("step {step} loss {loss}");
                if let Err(e) = opt.step(&mut params, &g) {
                    log.push(format!("process 0: step {step}: {e}"));
                    code = ExitCode::from(3);
                    break;
                }
            }
            if let Some(dir) = &args.save {
                let saved = save_params(dir, &params).and_then(|()| {
                    opt.save(&dir.join("optimizer.safetensors")).map_err(|e| e.to_string())?;
                    rmsprop_mpi::checkpoint::Manifest::new(&tensors, None, opt.step_count())
                        .write(dir)
                        .map_err(|e| e.to_string())
                });
                if let Err(e) = saved {
                    eprintln!("error: saving to {}: {e}", dir.display());
                    return ExitCode::from(1);
                }
            }
            0
        }
        Some(mode) => {
            let Some(u) = mpi::initialize() else {
                eprintln!("error: MPI is already initialised");
                return ExitCode::from(2);
            };
            let world = Mpi::new(u.world()).with_timeout(timeout);
            _universe = Some(u);
            let (rank, size) = (rmsprop::World::rank(&world), rmsprop::World::size(&world));
            if !ROWS.is_multiple_of(size) {
                eprintln!("error: the global batch of {ROWS} rows does not split evenly across {size} processes");
                return ExitCode::from(2);
            }
            let per = ROWS / size;
            let rows: Vec<_> = (rank * per..(rank + 1) * per).map(row).collect();
            let mut opt = Distributed::<f32>::new(world, mode, config, &tensors)
                .expect("valid")
                .with_bucket(args.bucket)
                .map_optimizer(|o| o.with_nonfinite_policy(policy));
            if let Some(dir) = &args.resume {
                let dir = &checkpoint_dir(dir);
                match load_params(dir) {
                    Ok(p) => params = p,
                    Err(e) => {
                        eprintln!("error: process {rank}: resuming: {e}");
                        return ExitCode::from(1);
                    }
                }
                if let Err(e) = opt.load(dir) {
                    eprintln!("error: process {rank}: resuming from {}: {e}", dir.display());
                    return ExitCode::from(1);
                }
            }
            for step in opt.optimizer().step_count() as usize + 1..=args.steps {
                let (loss, mut g) = loss_and_grad(&rows, &params[0], params[1][0]);
                if args.nan_at == Some((step, rank)) {
                    g[0][FEATURES - 1] = f32::NAN;
                }
                let mut total = [f64::from(loss)];
                rmsprop::World::all_sum(opt.world(), &mut total).expect("MPI");
                if rank == 0 {
                    println!("step {step} loss {}", total[0] as f32 / size as f32);
                }
                if args.die_at == Some((step, rank)) {
                    std::process::abort();
                }
                if args.hang_at == Some((step, rank)) {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                }
                match opt.step(&mut params, &g) {
                    Ok(StepOutcome::Applied) if args.save_every > 0 && step % args.save_every == 0 => {
                        if let Some(dir) = &args.save {
                            let at = dir.join(format!("step-{step}"));
                            let saved = (if rank == 0 { save_params(&at, &params) } else { Ok(()) })
                                .and_then(|()| opt.save(&at).map_err(|e| e.to_string()))
                                .and_then(|()| if rank == 0 { point_latest(dir, step) } else { Ok(()) });
                            if let Err(e) = saved {
                                eprintln!("error: process {rank}: saving to {}: {e}", at.display());
                                return ExitCode::from(1);
                            }
                        }
                    }
                    Ok(StepOutcome::Applied) => {}
                    Ok(StepOutcome::Skipped) => log.push(format!("process {rank}: step {step} skipped")),
                    Err(e) => {
                        log.push(format!("process {rank}: step {step}: {e}"));
                        code = ExitCode::from(3);
                        break;
                    }
                }
            }
            if let Some(dir) = &args.save {
                let params_saved = if rank == 0 { save_params(dir, &params) } else { Ok(()) };
                if let Err(e) = params_saved.and_then(|()| opt.save(dir).map_err(|e| e.to_string())) {
                    eprintln!("error: process {rank}: saving to {}: {e}", dir.display());
                    return ExitCode::from(1);
                }
            }
            log.push(format!(
                "process {rank}: optimizer state {} bytes, communication {:.3} ms",
                opt.state_bytes(),
                opt.comm_time().as_secs_f64() * 1e3
            ));
            finished = Some(opt);
            rank
        }
    };
    let said: String = log.iter().map(|l| format!("{l}\n")).collect();
    eprint!("{said}");
    if let Some(prefix) = &args.out {
        if let Err(e) = std::fs::write(format!("{prefix}.{rank}.log"), &said) {
            eprintln!("error: writing {prefix}.{rank}.log: {e}");
            return ExitCode::from(1);
        }
        let bytes: Vec<u8> = params.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
        if let Err(e) = std::fs::write(format!("{prefix}.{rank}"), bytes) {
            eprintln!("error: writing {prefix}.{rank}: {e}");
            return ExitCode::from(1);
        }
    }
    // every process has said and written all before any leaves (mpirun ends the others
    // when one leaves with an error)
    if let Some(opt) = &finished {
        opt.world().barrier();
    }
    code
}
