//! `rmsprop`: the RMSProp chapter of *Dive into Deep Learning*, runnable. Argument
//! parsing and printing only; everything is computed by `rmsprop-lab` and `rmsprop`.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rmsprop::OptimizerConfig;
use rmsprop::by_name::{self, Value};
use rmsprop_lab::chapter::{self, ChapterOptions};
use rmsprop_lab::plot::{self, ContourPlot, Heatmap, LossPlot};
use rmsprop_lab::sweep::{self, SweepSpec};
use rmsprop_lab::train::{self, Protocol, Update};
use rmsprop_lab::{data, trace2d};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The RMSProp chapter of Dive into Deep Learning (§12.8), runnable: the 2-D demo, the
/// airfoil regression, the exercises, with every framework's RMSProp.
#[derive(Parser)]
#[command(name = "rmsprop", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole section in one go: figures, numbers and an HTML report.
    #[command(
        after_help = "Examples:\n  rmsprop chapter\n  rmsprop chapter --out /tmp/ch --data my/airfoil_self_noise.dat --rows 1500"
    )]
    Chapter(ChapterArgs),
    /// An optimizer's trajectory on a 2-D objective, with a contour plot.
    #[command(
        after_help = "Examples:\n  rmsprop trace2d\n  rmsprop trace2d --optimizer rmsprop --optimizer adagrad\n  \
                            rmsprop trace2d --gamma 0 --set eps=1e-8\n  rmsprop trace2d --objective rosenbrock --optimizer pytorch.rmsprop --lr 0.01 --steps 500"
    )]
    Trace2d(Trace2dArgs),
    /// Linear regression on the airfoil data, as the chapter trains it.
    #[command(after_help = "Examples:\n  rmsprop train --impl scratch\n  rmsprop train --impl trainer --seed 3\n  \
                            rmsprop train --impl trainer --optimizer pytorch.rmsprop --set centered=true --json")]
    Train(TrainArgs),
    /// The exercises: a grid of learning rates x gamma, several seeds each, in parallel.
    #[command(after_help = "Examples:\n  rmsprop sweep\n  rmsprop sweep --lrs 0.01,0.1 --gammas 0,0.9,1 --seeds 5")]
    Sweep(SweepArgs),
    /// Measure the step against a memory-bandwidth probe (ratios within one run).
    #[command(
        after_help = "Examples:\n  rmsprop bench\n  rmsprop bench --sizes 1e4,1e7 --variants plain --threads 1 --json\n  \
                            rmsprop bench --quick"
    )]
    Bench(BenchArgs),
    /// Replay golden-vector files (the format of testdata/golden/README.md) and report per case.
    #[command(after_help = "Example:\n  rmsprop replay testdata/golden/torch.json testdata/golden/mxnet.json")]
    Replay {
        /// Golden files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct DataArgs {
    /// Another copy of the airfoil file (default: the copy embedded in the program).
    #[arg(long, value_name = "PATH")]
    data: Option<PathBuf>,
    /// Use only the first N rows (1500: the later edition's protocol).
    #[arg(long)]
    rows: Option<usize>,
}

#[derive(Args)]
struct ChapterArgs {
    /// Output folder.
    #[arg(long, default_value = "rmsprop-chapter")]
    out: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Seed of the two trainings.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct Trace2dArgs {
    /// Objective: chapter, rotated, rosenbrock, beale, saddle.
    #[arg(long, default_value = "chapter")]
    objective: String,
    /// Optimizer(s) by name, optionally with a flavour (`pytorch.rmsprop`); repeat to overlay.
    #[arg(long = "optimizer", default_value = "rmsprop")]
    optimizers: Vec<String>,
    /// Learning rate η.
    #[arg(long, alias = "eta", default_value_t = 0.4, allow_negative_numbers = true)]
    lr: f64,
    /// Decay γ (optimizers that have one).
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    gamma: f64,
    /// Any other hyperparameter, `name=value` (e.g. eps=1e-8, centered=true, eps_placement=outside_sqrt).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Start point.
    #[arg(long, value_delimiter = ',', num_args = 2, default_values_t = [-5.0, -2.0], allow_hyphen_values = true)]
    start: Vec<f64>,
    /// Output folder for the figure.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Impl {
    /// The book's update written out on the model's arrays.
    Scratch,
    /// The core crate's optimizer by name, MXNet trainer semantics.
    Trainer,
}

#[derive(Args)]
struct TrainArgs {
    /// How the update is applied.
    #[arg(long = "impl", value_enum, default_value = "scratch")]
    implementation: Impl,
    /// Optimizer for --impl trainer (the chapter's Trainer("rmsprop") is mxnet.rmsprop).
    #[arg(long, default_value = "mxnet.rmsprop")]
    optimizer: String,
    /// Learning rate.
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    lr: f64,
    /// Decay γ.
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    gamma: f64,
    /// Any other hyperparameter of --impl trainer, `name=value`.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Seed of the initial weights and the shuffles.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Epochs.
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    /// Minibatch size.
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    #[command(flatten)]
    data: DataArgs,
    /// Output folder for the curve (SVG, PNG, CSV, JSON).
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SweepArgs {
    /// Optimizer by name.
    #[arg(long, default_value = "mxnet.rmsprop")]
    optimizer: String,
    /// Learning rates.
    #[arg(long, value_delimiter = ',', default_values_t = chapter::GRID_LRS)]
    lrs: Vec<f64>,
    /// Values of γ (0 and 1 are the chapter's exercise); none for optimizers without one.
    #[arg(long, value_delimiter = ',', default_values_t = chapter::GRID_GAMMAS)]
    gammas: Vec<f64>,
    /// Seeds per cell.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    #[command(flatten)]
    data: DataArgs,
    /// Output folder.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Element counts (1e3 ... 1e8) of the single-tensor layout; empty for none.
    #[arg(long, value_delimiter = ',', default_values_t = ["1e3".to_string(), "1e4".into(), "1e5".into(), "1e6".into(), "1e7".into(), "1e8".into()])]
    sizes: Vec<String>,
    /// Variants: plain, plain_rsqrt, plain_checked (the default non-finite check on),
    /// centered, momentum.
    #[arg(long, value_delimiter = ',', default_values_t = ["plain".to_string(), "plain_rsqrt".into(), "plain_checked".into(), "centered".into(), "momentum".into()])]
    variants: Vec<String>,
    /// Thread counts; `all` is every core.
    #[arg(long, value_delimiter = ',', default_values_t = ["1".to_string(), "all".into()])]
    threads: Vec<String>,
    /// Also the model-like layout (100 tensors of mixed sizes) at these element counts;
    /// empty for none.
    #[arg(long, value_delimiter = ',', default_values_t = ["1e7".to_string()])]
    model_sizes: Vec<String>,
    /// Rounds per configuration: the probe and every variant are timed once per round, in
    /// turn, and each ratio is the median of the per-round ratios.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    /// Shorter timing batches (noisier).
    #[arg(long)]
    quick: bool,
    /// Print `{"results":[...]}` as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Chapter(a) => run_chapter(a),
        Command::Trace2d(a) => run_trace2d(a),
        Command::Train(a) => run_train(a),
        Command::Sweep(a) => run_sweep(a),
        Command::Bench(a) => run_bench(a),
        Command::Replay { files } => run_replay(&files),
    }
}

/// `name=value` pairs, values read as numbers, booleans or words.
fn parse_sets(sets: &[String]) -> Result<Vec<(String, Value)>> {
    sets.iter()
        .map(|s| {
            let (k, v) = s.split_once('=').with_context(|| format!("--set {s:?}: expected NAME=VALUE"))?;
            Ok((k.trim().to_string(), Value::parse(v.trim())))
        })
        .collect()
}

/// An optimizer by name with `lr`, `gamma` (when it has a decay) and `--set` values.
fn config(name: &str, lr: f64, gamma: f64, sets: &[String]) -> Result<OptimizerConfig> {
    let mut h = vec![("lr".to_string(), Value::Num(lr))];
    if name.rsplit('.').next() == Some("rmsprop") {
        h.push(("decay".into(), Value::Num(gamma)));
    }
    h.extend(parse_sets(sets)?);
    Ok(by_name::config(name, h)?)
}

fn spinner(hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("valid template"));
    pb.enable_steady_tick(std::time::Duration::from_millis(100));
    pb
}

fn dataset(a: &DataArgs) -> Result<data::Dataset> {
    Ok(chapter::chapter_data(a.data.as_deref(), a.rows)?)
}

fn create(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn run_chapter(a: ChapterArgs) -> Result<ExitCode> {
    let opts = ChapterOptions {
        out: a.out.clone(),
        data: a.data.data.clone(),
        seed: a.seed,
        rows: a.data.rows,
        ..ChapterOptions::default()
    };
    let pb = spinner(a.json);
    let out = chapter::run(&opts, &|part| pb.set_message(part.to_string()))?;
    pb.finish_and_clear();
    if a.json {
        let j = serde_json::json!({
            "report": out.report, "data": out.source.to_string(), "rows": out.rows, "sections": out.sections,
            "files": out.files,
        });
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("data: {}, {} rows used", out.source, out.rows);
    for s in &out.sections {
        println!("{}", s.title);
        for (book, ours) in s.book.iter().zip(s.ours.iter().chain(std::iter::repeat(&String::new()))) {
            println!("  book: {book}");
            println!("  ours: {ours}");
        }
        for ours in s.ours.iter().skip(s.book.len()) {
            println!("  ours: {ours}");
        }
    }
    println!("report: {} ({} files in {})", out.report.display(), out.files.len(), opts.out.display());
    Ok(ExitCode::SUCCESS)
}

fn run_trace2d(a: Trace2dArgs) -> Result<ExitCode> {
    let objective = trace2d::objective(&a.objective).with_context(|| {
        let names: Vec<_> = trace2d::objectives().iter().map(|o| o.name).collect();
        format!("unknown objective {:?}: expected one of {}", a.objective, names.join(", "))
    })?;
    let start = [a.start[0], a.start[1]];
    let mut runs = Vec::new();
    for name in &a.optimizers {
        let t = trace2d::run(&objective, config(name, a.lr, a.gamma, &a.set)?, start, a.steps)?;
        runs.push((name.clone(), t));
    }
    create(&a.out)?;
    let title = format!("{} (lr {}, gamma {})", objective.formula, a.lr, a.gamma);
    let files = plot::save(
        &ContourPlot { title, objective: &objective, trajectories: &runs },
        &a.out.join("trace2d"),
        (800, 560),
    )?;
    if a.json {
        let j: Vec<_> = runs
            .iter()
            .map(|(n, t)| serde_json::json!({"optimizer": n, "printed": t.printed(), "diverged": t.diverged(), "points": t.points}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"objective": objective.name, "runs": j, "files": files}))?
        );
    } else {
        for (n, t) in &runs {
            println!("{}{}", if runs.len() > 1 { format!("{n}: ") } else { String::new() }, t.printed());
        }
        eprintln!("wrote {} and {}", files[0].display(), files[1].display());
    }
    Ok(ExitCode::SUCCESS)
}

fn run_train(a: TrainArgs) -> Result<ExitCode> {
    if a.batch_size == 0 || a.epochs == 0 {
        bail!("--batch-size and --epochs must be at least 1");
    }
    let update = match a.implementation {
        Impl::Scratch => {
            if !a.set.is_empty() || a.optimizer != "mxnet.rmsprop" {
                bail!("--optimizer and --set apply to --impl trainer; --impl scratch is the book's RMSProp");
            }
            // the book's update has the domain of the core crate's D2L RMSProp
            OptimizerConfig::from(rmsprop::RmsProp::default().with_lr(a.lr).with_decay(a.gamma)).validate()?;
            Update::Scratch { lr: a.lr as f32, gamma: a.gamma as f32 }
        }
        Impl::Trainer => Update::Trainer(config(&a.optimizer, a.lr, a.gamma, &a.set)?),
    };
    let d = dataset(&a.data)?;
    let protocol = Protocol { seed: a.seed, epochs: a.epochs, batch_size: a.batch_size, ..Protocol::default() };
    let curve = train::train(&d, &update, &protocol)?;
    create(&a.out)?;
    let stem = a.out.join("train");
    std::fs::write(stem.with_extension("csv"), curve.to_csv()).context("writing the curve")?;
    std::fs::write(stem.with_extension("json"), serde_json::to_string_pretty(&curve)?).context("writing the curve")?;
    let label = match a.implementation {
        Impl::Scratch => "from scratch".to_string(),
        Impl::Trainer => format!("Trainer({})", a.optimizer),
    };
    let curves = [(label, curve.clone())];
    let files = plot::save(
        &LossPlot { title: format!("loss, lr {}, gamma {}", a.lr, a.gamma), curves: &curves },
        &stem,
        (800, 480),
    )?;
    if a.json {
        let j = serde_json::json!({"final_loss": curve.final_loss(), "seconds_per_epoch": curve.seconds_per_epoch,
            "diverged": curve.diverged(), "curve": curve, "files": files});
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        println!("{}", curve.printed());
        eprintln!("wrote {}, {} and {}.csv/.json", files[0].display(), files[1].display(), stem.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn run_sweep(a: SweepArgs) -> Result<ExitCode> {
    if a.seeds == 0 || a.lrs.is_empty() {
        bail!("--seeds must be at least 1 and --lrs not empty");
    }
    let d = dataset(&a.data)?;
    let spec = SweepSpec {
        optimizer: a.optimizer.clone(),
        lrs: a.lrs.clone(),
        gammas: if a.optimizer.rsplit('.').next() == Some("rmsprop") { a.gammas.clone() } else { Vec::new() },
        seeds: (0..a.seeds).collect(),
        protocol: Protocol::default(),
    };
    let jobs = (spec.lrs.len() * spec.gammas.len().max(1)) as u64 * a.seeds;
    let pb = if a.json { ProgressBar::hidden() } else { ProgressBar::new(jobs) };
    pb.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} runs {elapsed}").expect("valid template"));
    let cells = sweep::sweep(&d, &spec, &|| pb.inc(1))?;
    pb.finish_and_clear();
    create(&a.out)?;
    std::fs::write(a.out.join("sweep.csv"), sweep::to_csv(&cells)).context("writing sweep.csv")?;
    std::fs::write(a.out.join("sweep.md"), sweep::to_markdown(&cells)).context("writing sweep.md")?;
    let gammas = if spec.gammas.is_empty() { vec![f64::NAN] } else { spec.gammas.clone() };
    let values: Vec<Vec<Option<f64>>> =
        cells.chunks(spec.lrs.len()).map(|r| r.iter().map(sweep::Cell::mean_final_loss).collect()).collect();
    let heat = Heatmap {
        title: format!("{}: final loss, mean of {} seeds", a.optimizer, a.seeds),
        lrs: &spec.lrs,
        gammas: &gammas,
        values: &values,
    };
    let mut files = plot::save(&heat, &a.out.join("sweep_heatmap"), (800, 560))?.to_vec();
    let curves: Vec<_> = cells
        .iter()
        .filter(|c| !c.diverged())
        .map(|c| (format!("lr {} gamma {}", c.lr, c.gamma.map_or("-".into(), |g| g.to_string())), c.curves[0].clone()))
        .collect();
    files.extend(plot::save(
        &LossPlot { title: "loss curves (seed 0)".into(), curves: &curves },
        &a.out.join("sweep_curves"),
        (900, 560),
    )?);
    if a.json {
        let rows: Vec<_> = cells
            .iter()
            .map(|c| serde_json::json!({"lr": c.lr, "gamma": c.gamma, "diverged": c.diverged(),
                "mean_final_loss": c.mean_final_loss(), "final_losses": c.curves.iter().map(|x| x.final_loss()).collect::<Vec<_>>()}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"optimizer": a.optimizer, "cells": rows, "files": files})
            )?
        );
    } else {
        print!("{}", sweep::to_markdown(&cells));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_replay(files: &[PathBuf]) -> Result<ExitCode> {
    let mut ok = true;
    for f in files {
        let report = rmsprop::golden::replay_file(f)?;
        println!("{}", report.summary());
        for c in report.cases.iter().filter(|c| !c.passed) {
            println!("  FAIL {}: worst {:.3}x tolerance at {}", c.name, c.worst, c.detail);
        }
        ok &= report.failed() == 0 && !report.cases.is_empty();
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn count(s: &str) -> Result<usize> {
    let v: f64 = s.trim().parse().with_context(|| format!("{s:?} is not a number"))?;
    if !((1.0..=1e10).contains(&v) && v.fract() == 0.0) {
        bail!("{s:?}: expected a whole number of elements from 1 to 1e10");
    }
    Ok(v as usize)
}

fn run_bench(a: BenchArgs) -> Result<ExitCode> {
    use rmsprop_lab::bench::{self, Layout, Row, Variant};
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: Vec<usize> = a
        .threads
        .iter()
        .map(|t| {
            if t == "all" {
                Ok(cores)
            } else {
                t.parse::<usize>()
                    .ok()
                    .filter(|&n| n >= 1)
                    .with_context(|| format!("--threads {t:?}: expected a number >= 1 or `all`"))
            }
        })
        .collect::<Result<_>>()?;
    let variants: Vec<Variant> = a
        .variants
        .iter()
        .map(|v| {
            Variant::ALL.into_iter().find(|x| x.name() == v).with_context(|| {
                let known: Vec<&str> = Variant::ALL.iter().map(|v| v.name()).collect();
                format!("--variants {v:?}: expected one of {}", known.join(", "))
            })
        })
        .collect::<Result<_>>()?;
    let counts = |v: &[String]| v.iter().filter(|s| !s.trim().is_empty()).map(|s| count(s)).collect::<Result<Vec<_>>>();
    let mut jobs: Vec<(Layout, usize)> = counts(&a.sizes)?.into_iter().map(|n| (Layout::Single, n)).collect();
    jobs.extend(counts(&a.model_sizes)?.into_iter().map(|n| (Layout::Model, n)));
    let min_batch = if a.quick { 0.02 } else { 0.1 };
    let pb = if a.json { ProgressBar::hidden() } else { ProgressBar::new((jobs.len() * threads.len()) as u64) };
    pb.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").expect("valid template"));
    let mut rows: Vec<Row> = Vec::new();
    for &(layout, n) in &jobs {
        for &t in &threads {
            pb.set_message(format!("{layout:?} n={n} threads={t}"));
            rows.extend(bench::with_threads(t, || {
                bench::measure(layout, n, &variants, t, a.rounds as usize, min_batch)
            }));
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"results": rows}))?);
    } else {
        println!(
            "{:<9} {:<7} {:>10} {:>3} {:>5} {:>12} {:>11} {:>8} {:>8} {:>6}",
            "variant", "layout", "n", "thr", "huge", "s/step", "Gelem/s", "GB/s", "probe", "ratio"
        );
        for r in &rows {
            println!(
                "{:<11} {:<7} {:>10} {:>3} {:>5} {:>12.3e} {:>11.3} {:>8.2} {:>8.2} {:>6.2}",
                r.variant,
                r.layout,
                r.n,
                r.threads,
                r.huge_pages,
                r.seconds_per_step,
                r.elements_per_s / 1e9,
                r.gb_per_s,
                r.probe_gb_per_s,
                r.ratio_to_probe
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
