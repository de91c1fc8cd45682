//! `rmsprop`: the RMSProp chapter of *Dive into Deep Learning*, runnable. Argument
//! parsing and printing only; everything is computed by `rmsprop-lab` and `rmsprop`.
//!
//! Every subcommand prints text, or one JSON document with `--json`. Bad input of any kind
//! (an argument, a hyperparameter, a data file) exits 1 with one line `error: ...` on
//! stderr, or `{"error": "..."}` on stdout under `--json`.

mod distributed;
mod outdir;
mod resolve;

use anyhow::{Context, Result, bail};
use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use resolve::Overrides;
use rmsprop::by_name;
use rmsprop::{OptimizerConfig, StateStorage};
use rmsprop_lab::chapter::{self, ChapterOptions};
use rmsprop_lab::plot::{self, ContourPlot, Heatmap, LossPlot};
use rmsprop_lab::sweep::{self, SweepSpec};
use rmsprop_lab::train::{self, Protocol, Update};
use rmsprop_lab::{data, hyper, trace2d};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The RMSProp chapter of Dive into Deep Learning (§12.8), runnable: the 2-D demo, the
/// airfoil regression, the exercises, with every framework's RMSProp.
#[derive(Parser)]
// help as written, never wrapped: an example stays one line to copy, whichever clap
// features a build unifies (divan, a benchmark dependency, turns `wrap_help` on)
#[command(name = "rmsprop", version, about, long_about = None, term_width = 0)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole section in one go: figures, numbers and an HTML report.
    #[command(
        after_help = "Examples:\n  rmsprop chapter\n  rmsprop chapter --out airfoil-1500 --data my/airfoil_self_noise.dat --rows 1500"
    )]
    Chapter(ChapterArgs),
    /// An optimizer's trajectory on a 2-D objective, with a contour plot.
    #[command(
        after_help = "Examples:\n  rmsprop trace2d                       # the chapter's demo: rmsprop, lr 0.4, gamma 0.9\n  \
                            rmsprop trace2d --gamma 1             # the exercise: diverged at step 1\n  \
                            rmsprop trace2d --lr 0.4 --optimizer rmsprop --optimizer adagrad\n  \
                            rmsprop trace2d --lr 0.4 --optimizer rmsprop --optimizer sgd --optimizer adam --set sgd.momentum=0.9\n  \
                            rmsprop trace2d --objective rosenbrock --optimizer pytorch.rmsprop --steps 500 --set centered=true"
    )]
    Trace2d(Trace2dArgs),
    /// Linear regression on the airfoil data, as the chapter trains it (or an MLP: --model mlp).
    #[command(after_help = "Examples:\n  rmsprop train --impl scratch\n  rmsprop train --impl trainer --seed 3\n  \
                            rmsprop train --impl trainer --optimizer pytorch.rmsprop --set centered=true --json\n  \
                            rmsprop train --model mlp --optimizer pytorch.adam --lr 0.001   (built with --features candle)")]
    Train(TrainArgs),
    /// The exercises: a grid of learning rates x gamma, several seeds each, in parallel.
    #[command(
        after_help = "Examples:\n  rmsprop sweep\n  rmsprop sweep --lrs 0.01,0.1 --gammas 0,0.9,1 --seeds 5\n  mpirun -np 4 rmsprop sweep --distributed   (a build with --features mpi)"
    )]
    Sweep(SweepArgs),
    /// Measure the step against a memory-bandwidth probe (ratios within one run).
    #[command(after_help = "Examples:\n  rmsprop bench --sizes 1e4,1e6 --model-sizes 1e5 --threads 1 --quick\n  \
                            rmsprop bench --sizes 1e5 --variants plain,plain_checked --threads 1 --quick --json\n  \
                            rmsprop bench --sizes 1e5 --variants plain,adam --state-storage f32,bf16,int8 --model-sizes 1e5 --threads 1 --quick\n\
                      Without options it measures every size from 1e3 to 1e8 and the model layout, on 1 and \
                      all threads: minutes.")]
    Bench(BenchArgs),
    /// Replay golden-vector files (the format of testdata/golden/README.md) and report per case.
    #[command(after_help = "Example:\n  rmsprop replay testdata/golden/torch.json testdata/golden/mxnet.json")]
    Replay(ReplayArgs),
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

/// A learning rate: a finite number ≥ 0.
fn learning_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v.is_finite() && v >= 0.0 { Ok(v) } else { Err("expected a finite number >= 0".into()) }
}

/// RMSProp's γ: a number from 0 to 1 (both allowed: the chapter's exercise).
fn decay(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&v) { Ok(v) } else { Err("expected a number from 0 to 1".into()) }
}

/// A point `X,Y`.
fn point(s: &str) -> Result<[f64; 2], String> {
    let bad = || format!("{s:?}: expected two finite numbers X,Y (e.g. -5,-2)");
    let (x, y) = s.split_once(',').ok_or_else(bad)?;
    let (x, y): (f64, f64) = (x.trim().parse().map_err(|_| bad())?, y.trim().parse().map_err(|_| bad())?);
    if x.is_finite() && y.is_finite() { Ok([x, y]) } else { Err(bad()) }
}

#[derive(Args)]
struct Trace2dArgs {
    /// Objective: chapter, rotated, rosenbrock, beale, saddle.
    #[arg(long, default_value = "chapter")]
    objective: String,
    /// Optimizer(s) by name, optionally with a flavour (`pytorch.rmsprop`); repeat to overlay.
    /// Without one: the chapter's demo, `rmsprop` at lr 0.4.
    #[arg(long = "optimizer", value_name = "NAME")]
    optimizers: Vec<String>,
    /// Learning rate η for every optimizer (default: each preset's own; the chapter's demo: 0.4).
    #[arg(long, alias = "eta", value_parser = learning_rate, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// RMSProp's decay γ, `decay` in the printed hyperparameters (default: each preset's own:
    /// 0.9 for rmsprop, 0.99 for pytorch.rmsprop).
    #[arg(long, value_parser = decay, allow_negative_numbers = true)]
    gamma: Option<f64>,
    /// Any hyperparameter: `KEY=VALUE` for every optimizer, `NAME.KEY=VALUE` for one
    /// (e.g. eps=1e-8, sgd.momentum=0.9, pytorch.rmsprop.centered=true).
    #[arg(long = "set", value_name = "[NAME.]KEY=VALUE")]
    set: Vec<String>,
    /// Steps (at most; a run that diverges stops there).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    steps: u64,
    /// Start point X,Y.
    #[arg(long, value_parser = point, default_value = "-5,-2", allow_hyphen_values = true)]
    start: [f64; 2],
    /// Output folder for the figure [default: rmsprop-out/trace2d].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Impl {
    /// The book's update written out on the model's arrays.
    Scratch,
    /// The core crate's optimizer by name, MXNet trainer semantics.
    Trainer,
}

/// The model `train` trains.
#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Model {
    /// The chapter's linear regression, gradients written out.
    Linear,
    /// A 5-16-1 tanh MLP, gradients by candle (needs the `candle` feature).
    Mlp,
}

#[derive(Args)]
struct TrainArgs {
    /// The model.
    #[arg(long, value_enum, default_value = "linear")]
    model: Model,
    /// How the update is applied [default: scratch for the linear model, trainer for the MLP].
    #[arg(long = "impl", value_enum)]
    implementation: Option<Impl>,
    /// Optimizer for --impl trainer, with its own defaults. Without one: the chapter's
    /// Trainer("rmsprop", {learning_rate: 0.01, gamma1: 0.9}), i.e. mxnet.rmsprop.
    #[arg(long)]
    optimizer: Option<String>,
    /// Learning rate (default: the preset's; the chapter's runs: 0.01).
    #[arg(long, value_parser = learning_rate, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// RMSProp's decay γ (default: the preset's; the chapter's runs: 0.9).
    #[arg(long, value_parser = decay, allow_negative_numbers = true)]
    gamma: Option<f64>,
    /// Any other hyperparameter of --impl trainer, `KEY=VALUE`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// How --impl trainer keeps the optimizer state: f32, bf16 or int8 (block-wise 8 bits;
    /// tensors below min_8bit_size elements, 4096 unless `--set min_8bit_size=N`, stay f32).
    #[arg(long)]
    state_storage: Option<StateStorage>,
    /// Seed of the initial weights and the shuffles.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Epochs.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    epochs: u64,
    /// Minibatch size.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    batch_size: u64,
    #[command(flatten)]
    data: DataArgs,
    /// Output folder for the curve (SVG, PNG, CSV, JSON) [default: rmsprop-out/train].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Split each minibatch across the processes of an MPI job (`mpirun -np N rmsprop
    /// train --impl trainer --distributed zero1`; a build with the `mpi` feature):
    /// data-parallel, or with the optimizer state sharded. Process 0 prints and plots.
    #[arg(long, value_enum)]
    distributed: Option<distributed::Distribution>,
}

#[derive(Args)]
struct SweepArgs {
    /// Optimizer by name.
    #[arg(long, default_value = "mxnet.rmsprop")]
    optimizer: String,
    /// Learning rates.
    #[arg(long, value_delimiter = ',', value_parser = learning_rate, default_value = GRID_LRS_TEXT)]
    lrs: Vec<f64>,
    /// Values of γ (0 and 1 are the chapter's exercise); ignored for optimizers without one.
    #[arg(long, value_delimiter = ',', value_parser = decay, default_value = GRID_GAMMAS_TEXT)]
    gammas: Vec<f64>,
    /// Seeds per cell.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    seeds: u64,
    /// Any other hyperparameter of every cell, `KEY=VALUE`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// How the optimizer state is kept: f32, bf16 or int8 (block-wise 8 bits; tensors below
    /// min_8bit_size elements, 4096 unless `--set min_8bit_size=N`, stay f32).
    #[arg(long)]
    state_storage: Option<StateStorage>,
    #[command(flatten)]
    data: DataArgs,
    /// Output folder [default: rmsprop-out/sweep].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Spread the grid's runs over the processes of an MPI job (`mpirun -np N rmsprop
    /// sweep --distributed`; a build with the `mpi` feature): process 0 gathers them,
    /// prints and writes the files.
    #[arg(long)]
    distributed: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Element counts (1e3 ... 1e8) of the single-tensor layout; empty for none.
    #[arg(long, value_delimiter = ',', default_values_t = ["1e3".to_string(), "1e4".into(), "1e5".into(), "1e6".into(), "1e7".into(), "1e8".into()])]
    sizes: Vec<String>,
    /// Variants: plain, plain_rsqrt, plain_checked (the default non-finite check on),
    /// centered, centered_checked (the same, each step's denominators probed first), momentum,
    /// adam (PyTorch's).
    #[arg(long, value_delimiter = ',', default_values_t = ["plain".to_string(), "plain_rsqrt".into(), "plain_checked".into(), "centered".into(), "momentum".into()])]
    variants: Vec<String>,
    /// Thread counts; `all` is every core.
    #[arg(long, value_delimiter = ',', default_values_t = ["1".to_string(), "all".into()])]
    threads: Vec<String>,
    /// How each variant keeps its state: f32, bf16, int8 (block-wise 8 bits); each row of
    /// another storage gives its speed-up over the same variant with f32 state, measured
    /// in the same rounds.
    #[arg(long, value_delimiter = ',', default_values_t = [StateStorage::F32])]
    state_storage: Vec<StateStorage>,
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

#[derive(Args)]
struct ReplayArgs {
    /// Golden files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

/// What a command prints: text, or one JSON document under `--json`; and its exit code.
struct Printed {
    text: String,
    json: serde_json::Value,
    success: bool,
}

impl Printed {
    fn ok(text: String, json: serde_json::Value) -> Printed {
        Printed { text, json, success: true }
    }
}

/// The chapter's sweep grid as `--lrs` and `--gammas` take it (comma-separated), so that
/// `--help` shows the defaults in the form the flags take (`chapter::GRID_LRS` and
/// `GRID_GAMMAS`; a test checks they agree).
const GRID_LRS_TEXT: &str = "0.001,0.003,0.01,0.03,0.1";
const GRID_GAMMAS_TEXT: &str = "0,0.5,0.9,0.99,1";

fn main() -> ExitCode {
    let json = std::env::args_os().skip(1).any(|a| a == "--json");
    // `rmsprop help --help` is the help itself (clap would take `--help` for a subcommand)
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "help") && args[2..].iter().any(|a| a == "--help" || a == "-h") {
        args.truncate(1);
        args.push("--help".into());
    }
    let result = match Cli::try_parse_from(args) {
        Ok(cli) => run(cli).map(|p| if json && !p.json.is_null() { Printed { text: pretty(&p.json), ..p } } else { p }),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            return emit(&e.render().to_string(), true);
        }
        Err(e) => Err(anyhow::anyhow!(clap_line(&e))),
    };
    match result {
        Ok(p) => emit(&p.text, p.success),
        Err(e) => {
            // one line, whatever the cause chain holds
            let line = format!("{e:#}").replace('\n', "; ");
            if json {
                emit(&pretty(&json!({ "error": line })), false)
            } else {
                say(format_args!("error: {line}"));
                ExitCode::FAILURE
            }
        }
    }
}

/// The first line of a clap error, without its `error: ` (every error is one line).
fn clap_line(e: &clap::Error) -> String {
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand || e.kind() == ErrorKind::MissingSubcommand {
        return "a subcommand is required: chapter, trace2d, train, sweep, bench or replay (see rmsprop --help)".into();
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("invalid arguments").trim();
    format!("{} (see --help)", first.strip_prefix("error: ").unwrap_or(first))
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).expect("a JSON value serialises") + "\n"
}

/// Writes one line of diagnostics to stderr. A stderr that cannot be written (closed, a
/// full disk, `2>/dev/full`) loses the line, never the run: the result still goes to
/// stdout and the exit code is the run's (`eprintln!` would panic).
fn say(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Writes `text` to stdout; a reader that went away (`| head`) ends the program quietly.
fn emit(text: &str, success: bool) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            say(format_args!("error: writing the output: {e}"));
            ExitCode::FAILURE
        }
        _ if success => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

fn run(cli: Cli) -> Result<Printed> {
    match cli.command {
        Command::Chapter(a) => run_chapter(a),
        Command::Trace2d(a) => run_trace2d(a),
        Command::Train(a) => run_train(a),
        Command::Sweep(a) => run_sweep(a),
        Command::Bench(a) => run_bench(a),
        Command::Replay(a) => run_replay(&a.files),
    }
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

/// The hyperparameters of the `with …` line under a run of the optimizer `name`: every one
/// that is on, and every 0 its preset does not have (`eps=0`).
fn with_line(name: &str, config: &rmsprop::OptimizerConfig) -> String {
    let preset = rmsprop::by_name::config(name, Vec::<(String, rmsprop::by_name::Value)>::new()).ok();
    hyper::summary_against(config, preset.as_ref(), hyper::flavor_of(name))
}

/// Says on stderr which files a text-mode run wrote.
fn wrote(json: bool, files: &[PathBuf]) {
    if !json {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        say(format_args!("wrote {}", names.join(", ")));
    }
}

fn run_chapter(a: ChapterArgs) -> Result<Printed> {
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
    let mut text = format!("data: {}, {} rows used\n", out.source, out.rows);
    for s in &out.sections {
        text += &format!("{}\n", s.title);
        for line in &s.hyperparameters {
            text += &format!("  with: {line}\n");
        }
        for line in &s.book {
            text += &format!("  book: {line}\n");
        }
        for line in &s.ours {
            text += &format!("  ours: {line}\n");
        }
    }
    text += &format!("report: {} ({} files in {})\n", out.report.display(), out.files.len(), opts.out.display());
    let j = json!({
        "report": out.report, "data": out.source.to_string(), "rows": out.rows, "sections": out.sections,
        "files": out.files,
    });
    Ok(Printed::ok(text, j))
}

/// The run as JSON: its name, resolved hyperparameters and outcome.
fn run_json(name: &str, config: &OptimizerConfig) -> serde_json::Value {
    json!({"optimizer": name, "hyperparameters": by_name::hyperparameters_json(config), "summary": hyper::summary(config, hyper::flavor_of(name))})
}

fn run_trace2d(a: Trace2dArgs) -> Result<Printed> {
    let objective = trace2d::objective(&a.objective).with_context(|| {
        let names: Vec<_> = trace2d::objectives().iter().map(|o| o.name).collect();
        format!("unknown objective {:?}: expected one of {}", a.objective, names.join(", "))
    })?;
    // no --optimizer: the chapter's demo, RMSProp at the demo's η = 0.4
    let demo = a.optimizers.is_empty();
    let names = if demo { vec!["rmsprop".to_string()] } else { a.optimizers.clone() };
    let lr = a.lr.or(demo.then_some(0.4));
    let typed = [a.lr.is_some(), a.gamma.is_some()];
    let configs = resolve::configs(&names, &Overrides { lr, gamma: a.gamma, sets: &a.set, typed })?;
    let dir = outdir::dir(a.out.as_deref(), "trace2d");
    create(&dir)?;
    let mut runs = Vec::new();
    for (name, config) in names.iter().zip(&configs) {
        let t = trace2d::run(&objective, config.clone(), a.start, a.steps as usize)?;
        runs.push((hyper::label(name, config, hyper::flavor_of(name)), t));
    }
    let stem = outdir::stem(&outdir::trace2d_parts(&a.objective, &names, a.lr, a.gamma, &a.set, a.steps, a.start));
    let files = plot::save(
        &ContourPlot { title: objective.formula.to_string(), objective: &objective, trajectories: &runs },
        &dir.join(stem),
        (800, 560),
    )?;
    wrote(a.json, &files);
    let mut text = String::new();
    let mut j = Vec::new();
    for ((name, config), (_, t)) in names.iter().zip(&configs).zip(&runs) {
        text += &format!("{name}: {}\n  with {}\n", t.printed(), with_line(name, config));
        let mut r = run_json(name, config);
        r["printed"] = json!(t.printed());
        r["diverged"] = json!(t.diverged());
        r["diverged_at"] = json!(t.diverged.as_ref().map(|d| d.step));
        r["divergence"] = json!(t.diverged);
        r["points"] = json!(t.points);
        r["steps"] = json!(t.steps);
        j.push(r);
    }
    Ok(Printed::ok(text, json!({"objective": objective.name, "start": a.start, "runs": j, "files": files})))
}

fn run_train(mut a: TrainArgs) -> Result<Printed> {
    let implementation = a.implementation.unwrap_or(match a.model {
        Model::Linear => Impl::Scratch,
        Model::Mlp => Impl::Trainer,
    });
    if a.distributed.is_some() {
        if (a.model, implementation) != (Model::Linear, Impl::Trainer) {
            bail!("--distributed trains the linear model with --impl trainer");
        }
        distributed::available()?;
    }
    let train_mlp = match (a.model, implementation) {
        (Model::Linear, _) => None,
        (Model::Mlp, Impl::Scratch) => {
            bail!("--model mlp trains with --impl trainer: the book's scratch update is written for the linear model")
        }
        (Model::Mlp, Impl::Trainer) => Some(mlp_training()?),
    };
    let (name, update, config) = match implementation {
        Impl::Scratch => {
            if a.state_storage.is_some() {
                bail!("--state-storage applies to --impl trainer; --impl scratch is the book's RMSProp on f32 arrays");
            }
            if !a.set.is_empty() || a.optimizer.is_some() {
                bail!("--optimizer and --set apply to --impl trainer; --impl scratch is the book's RMSProp");
            }
            // the book's update is the D2L RMSProp, with the book's hyperparameters by default
            let (lr, gamma) = (a.lr.unwrap_or(0.01), a.gamma.unwrap_or(0.9));
            let config: OptimizerConfig = rmsprop::RmsProp::default().with_lr(lr).with_decay(gamma).into();
            config.validate()?;
            ("scratch".to_string(), Update::Scratch { lr: lr as f32, gamma: gamma as f32 }, config)
        }
        Impl::Trainer => {
            let (name, lr, gamma) = match &a.optimizer {
                Some(name) => (name.clone(), a.lr, a.gamma),
                // the chapter's Trainer("rmsprop", {"learning_rate": 0.01, "gamma1": 0.9})
                None => ("mxnet.rmsprop".to_string(), a.lr.or(Some(0.01)), a.gamma.or(Some(0.9))),
            };
            let typed = [a.lr.is_some(), a.gamma.is_some()];
            let mut config =
                resolve::configs(std::slice::from_ref(&name), &Overrides { lr, gamma, sets: &a.set, typed })?.remove(0);
            if let Some(s) = a.state_storage {
                config.common_mut().state_storage = s;
            }
            (name, Update::Trainer(config.clone()), config)
        }
    };
    let d = dataset(&a.data)?;
    // the state's storage named in the output's file names as a --set would be
    a.set.extend(a.state_storage.map(|s| format!("state_storage={s}")));
    let dir = outdir::dir(a.out.as_deref(), "train");
    create(&dir)?;
    let protocol =
        Protocol { seed: a.seed, epochs: a.epochs as usize, batch_size: a.batch_size as usize, ..Protocol::default() };
    let mut shared = None;
    let pb = spinner(a.json);
    pb.set_message(format!("training on {} rows", d.rows));
    let (curve, mut parts) = match (train_mlp, a.distributed) {
        // (the MLP with --distributed was refused above)
        (Some(train_mlp), _) => (train_mlp(&d, &config, &protocol)?, vec!["mlp".to_string()]),
        (None, None) => (train::train(&d, &update, &protocol)?, vec![]),
        (None, Some(how)) => {
            let run = distributed::train(&d, &config, &protocol, how)?;
            let curve = run.curve.clone();
            shared = Some(run);
            (curve, vec![])
        }
    };
    pb.finish_and_clear();
    if let Some(run) = &shared
        && run.rank != 0
    {
        return Ok(Printed::ok(String::new(), json!(null))); // process 0 speaks for all
    }
    parts.extend(outdir::train_parts(&name, a.lr, a.gamma, &a.set, a.seed, &a.data));
    let stem = dir.join(outdir::stem(&parts));
    let (csv, json_file) = (plot::with_suffix(&stem, "csv"), plot::with_suffix(&stem, "json"));
    std::fs::write(&csv, curve.to_csv()).with_context(|| format!("writing {}", csv.display()))?;
    std::fs::write(&json_file, serde_json::to_string_pretty(&curve)?)
        .with_context(|| format!("writing {}", json_file.display()))?;
    let label = match implementation {
        Impl::Scratch => format!("from scratch ({})", hyper::summary(&config, hyper::flavor_of(&name))),
        Impl::Trainer => hyper::label(&format!("Trainer({name})"), &config, hyper::flavor_of(&name)),
    };
    let curves = [(label, curve.clone())];
    let title = match a.model {
        Model::Linear => format!("loss, {} rows of the airfoil data", d.rows),
        Model::Mlp => format!("5-16-1 MLP through candle, {} rows of the airfoil data", d.rows),
    };
    let mut files = plot::save(&LossPlot { title, curves: &curves }, &stem, (800, 480))?.to_vec();
    files.extend([csv, json_file]);
    wrote(a.json, &files);
    let mut j = run_json(&name, &config);
    j["model"] = json!(match a.model {
        Model::Linear => "linear",
        Model::Mlp => "mlp",
    });
    j["data"] = json!(d.source.to_string());
    j["rows"] = json!(d.rows);
    j["printed"] = json!(curve.printed());
    j["final_loss"] = json!((!curve.diverged()).then(|| curve.final_loss()));
    j["seconds_per_epoch"] = json!(curve.seconds_per_epoch);
    j["diverged"] = json!(curve.diverged());
    j["diverged_at"] = json!(curve.diverged.as_ref().map(|d| d.step));
    j["curve"] = json!(curve);
    j["files"] = json!(files);
    let mut text = format!("{name}: {}\n  with {}\n", curve.printed(), with_line(&name, &config));
    let log_every = protocol.log_interval(d.rows);
    if log_every != protocol.log_every {
        text += &format!(
            "  the loss on all {} rows logged every {log_every} examples, not the book's {}: at most {} whole-set \
             passes per epoch\n",
            d.rows,
            protocol.log_every,
            train::MAX_LOGS_PER_EPOCH
        );
    }
    j["log_every"] = json!(log_every);
    if let Some(run) = &shared {
        let n = run.state_bytes.len();
        text += &format!(
            "  on {n} processes: optimizer state {:?} bytes per process (one process: {}), {:.1} ms in MPI's collectives\n",
            run.state_bytes,
            run.whole_bytes,
            run.comm_seconds * 1e3
        );
        j["processes"] = json!(n);
        j["state_bytes_per_process"] = json!(run.state_bytes);
        j["state_bytes_one_process"] = json!(run.whole_bytes);
        j["communication_seconds"] = json!(run.comm_seconds);
    }
    Ok(Printed::ok(text, j))
}

/// How `train --model mlp` trains: the MLP through candle (`rmsprop_lab::mlp`).
type MlpTraining = fn(&data::Dataset, &OptimizerConfig, &Protocol) -> Result<train::Curve>;

/// The MLP's training, in a build with the `candle` feature.
#[cfg(feature = "candle")]
fn mlp_training() -> Result<MlpTraining> {
    Ok(|d, config, protocol| Ok(rmsprop_lab::mlp::train(d, config, protocol)?))
}

/// Without the `candle` feature: an error saying how to build it.
#[cfg(not(feature = "candle"))]
fn mlp_training() -> Result<MlpTraining> {
    bail!(
        "--model mlp needs candle, and this rmsprop was built without it (the default build stays light); \
         build it with the candle feature: cargo run --release -p rmsprop-cli --features candle -- train --model mlp"
    )
}

fn run_sweep(a: SweepArgs) -> Result<Printed> {
    if a.lrs.is_empty() {
        bail!("--lrs: expected at least one learning rate");
    }
    if a.distributed {
        distributed::available()?;
    }
    let base = by_name::config(&a.optimizer, Vec::<(String, by_name::Value)>::new())?;
    let takes_gamma = matches!(base, OptimizerConfig::RmsProp(_));
    let runs = a.lrs.len() as u64 * if takes_gamma { a.gammas.len().max(1) as u64 } else { 1 } * a.seeds;
    if runs > MAX_RUNS {
        bail!("the grid is {runs} runs (lrs x gammas x seeds); at most {MAX_RUNS}");
    }
    let d = dataset(&a.data)?;
    // the output folder first: a bad --out is said before the grid runs, not after
    let dir = outdir::dir(a.out.as_deref(), "sweep");
    create(&dir)?;
    let mut sets = a.set.clone();
    sets.extend(a.state_storage.map(|s| format!("state_storage={s}")));
    let spec = SweepSpec {
        optimizer: a.optimizer.clone(),
        lrs: a.lrs.clone(),
        gammas: if takes_gamma { a.gammas.clone() } else { Vec::new() },
        seeds: (0..a.seeds).collect(),
        protocol: Protocol::default(),
        hyperparameters: resolve::sets_of(&a.optimizer, &sets)?,
    };
    let bar = |runs| {
        let pb = if a.json { ProgressBar::hidden() } else { ProgressBar::new(runs) };
        pb.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} runs {elapsed}").expect("valid template"));
        pb
    };
    let cells = if a.distributed {
        match distributed::sweep(&d, &spec, bar)? {
            Some(cells) => cells,
            None => return Ok(Printed::ok(String::new(), json!(null))), // process 0 speaks for all
        }
    } else {
        let pb = bar(runs);
        let cells = sweep::sweep(&d, &spec, &|| pb.inc(1))?;
        pb.finish_and_clear();
        cells
    };
    let stem = outdir::stem(&outdir::sweep_parts(&a.optimizer, &spec.lrs, &spec.gammas, &sets, a.seeds, &a.data));
    let (csv, md) = (dir.join(format!("{stem}.csv")), dir.join(format!("{stem}.md")));
    std::fs::write(&csv, sweep::to_csv(&cells)).with_context(|| format!("writing {}", csv.display()))?;
    std::fs::write(&md, sweep::to_markdown(&cells)).with_context(|| format!("writing {}", md.display()))?;
    let gammas = if spec.gammas.is_empty() { vec![f64::NAN] } else { spec.gammas.clone() };
    let values: Vec<Vec<Option<f64>>> =
        cells.chunks(spec.lrs.len()).map(|r| r.iter().map(sweep::Cell::mean_final_loss).collect()).collect();
    let heat = Heatmap {
        title: format!("{}: final loss, mean of {} seeds", a.optimizer, a.seeds),
        lrs: &spec.lrs,
        gammas: &gammas,
        values: &values,
    };
    let mut files = vec![csv, md];
    files.extend(plot::save(&heat, &dir.join(format!("{stem}_heatmap")), (800, 560))?);
    let curves: Vec<_> = cells
        .iter()
        .map(|c| (format!("η = {}, γ = {}", c.lr, c.gamma.map_or("-".into(), hyper::number)), c.curves[0].clone()))
        .collect();
    files.extend(plot::save(
        &LossPlot { title: format!("loss curves (seed {})", spec.seeds[0]), curves: &curves },
        &dir.join(format!("{stem}_curves")),
        (900, 560),
    )?);
    wrote(a.json, &files);
    let rows: Vec<_> = cells
        .iter()
        .map(|c| {
            let finals: Vec<Option<f64>> = c.curves.iter().map(|x| (!x.diverged()).then(|| x.final_loss())).collect();
            json!({"lr": c.lr, "gamma": c.gamma, "diverged": c.diverged(), "diverged_seeds": c.diverged_seeds(),
                "first_diverged_step": c.first_divergence(),
                "first_diverged_seed": c.first_diverged().map(|(_, seed)| seed), "mean_final_loss": c.mean_final_loss(),
                "spread": c.spread(), "final_losses": finals, "summary": c.summary()})
        })
        .collect();
    let mut j = run_json(&a.optimizer, &base);
    j["note"] = json!("hyperparameters: the preset's; lr and (for RMSProp) decay come from the grid");
    j["data"] = json!(d.source.to_string());
    j["cells"] = json!(rows);
    j["files"] = json!(files);
    let grid = [("lr", &spec.lrs[..]), ("decay", &spec.gammas[..])];
    let grid = if spec.gammas.is_empty() { &grid[..1] } else { &grid[..] };
    let with = hyper::summary_of_grid(&base, hyper::flavor_of(&a.optimizer), grid);
    let text = format!("{}with {with}\n", sweep::to_markdown(&cells));
    Ok(Printed::ok(text, j))
}

/// The most runs one sweep takes (each is a 2-epoch training, about 0.2 ms).
const MAX_RUNS: u64 = 100_000;

fn run_replay(files: &[PathBuf]) -> Result<Printed> {
    let mut ok = true;
    let mut text = String::new();
    let mut j = Vec::new();
    for f in files {
        let report = rmsprop_golden::replay_file(f)?;
        text += &format!("{}\n", report.summary());
        for c in report.cases.iter().filter(|c| !c.passed) {
            text += &if c.worst.is_finite() {
                format!("  FAIL {}: worst {:.3}x tolerance at {}\n", c.name, c.worst, c.detail)
            } else {
                format!("  FAIL {}: not replayed: {}\n", c.name, c.detail)
            };
        }
        ok &= report.failed() == 0 && !report.cases.is_empty();
        let cases: Vec<_> = report
            .cases
            .iter()
            .map(|c| {
                json!({"name": c.name, "passed": c.passed, "bit_exact": c.passed && c.worst == 0.0,
                    "worst": c.worst, "detail": c.detail})
            })
            .collect();
        j.push(json!({"file": f, "passed": report.passed(), "failed": report.failed(), "bit_exact": report.exact(),
            "cases": cases}));
    }
    Ok(Printed { text, json: json!({"files": j, "passed": ok}), success: ok })
}

fn count(s: &str) -> Result<usize> {
    let v: f64 = s.trim().parse().with_context(|| format!("{s:?} is not a number"))?;
    if !((1.0..=1e10).contains(&v) && v.fract() == 0.0) {
        bail!("{s:?}: expected a whole number of elements from 1 to 1e10 (and what the memory holds)");
    }
    Ok(v as usize)
}

fn run_bench(a: BenchArgs) -> Result<Printed> {
    use rmsprop_lab::bench::{self, Layout, Row, Variant};
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // more threads than a few per core measure the scheduler, not the memory
    let most = 4 * cores;
    let threads: Vec<usize> = a
        .threads
        .iter()
        .map(|t| {
            if t == "all" {
                Ok(cores)
            } else {
                t.trim().parse::<usize>().ok().filter(|n| (1..=most).contains(n)).with_context(|| {
                    format!("--threads {t:?}: expected `all` or 1 to {most} (4 x the {cores} cores here)")
                })
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
    // a size the machine cannot hold is refused before anything is allocated
    if let (Some(&(_, n)), Some(available)) = (jobs.iter().max_by_key(|j| j.1), bench::memory_available()) {
        let needed = bench::memory_needed(n, &variants, &a.state_storage);
        if needed > available {
            let gb = |b: u64| b as f64 / 1e9;
            bail!(
                "{n} elements need {:.1} GB for the probes and {} variant(s); this process can have {:.1} GB (the \
                 least of the machine's available memory, its address-space limit and its cgroup's)",
                gb(needed),
                variants.len(),
                gb(available)
            );
        }
    }
    let min_batch = if a.quick { 0.02 } else { 0.1 };
    let pb = if a.json { ProgressBar::hidden() } else { ProgressBar::new((jobs.len() * threads.len()) as u64) };
    pb.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").expect("valid template"));
    let mut rows: Vec<Row> = Vec::new();
    for &(layout, n) in &jobs {
        for &t in &threads {
            pb.set_message(format!("{layout:?} n={n} threads={t}"));
            rows.extend(bench::with_threads(t, || {
                bench::measure(layout, n, &variants, &a.state_storage, t, a.rounds as usize, min_batch)
            })?);
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    // the first column as wide as its longest name (`centered_checked`), every row aligned
    let w = rows.iter().map(|r| r.variant.len()).chain(["variant".len()]).max().unwrap_or(0);
    let mut text = format!(
        "{:<w$} {:<5} {:<7} {:>10} {:>3} {:>5} {:>12} {:>11} {:>8} {:>8} {:>6} {:>7}\n",
        "variant", "state", "layout", "n", "thr", "huge", "s/step", "Gelem/s", "GB/s", "probe", "ratio", "vs f32"
    );
    for r in &rows {
        let vs_f32 = r.ratio_to_f32_state.map_or("-".to_string(), |v| format!("{v:.2}"));
        text += &format!(
            "{:<w$} {:<5} {:<7} {:>10} {:>3} {:>5} {:>12.3e} {:>11.3} {:>8.2} {:>8.2} {:>6.2} {:>7}\n",
            r.variant,
            r.state_storage.map_or("-", StateStorage::name),
            r.layout,
            r.n,
            r.threads,
            r.huge_pages,
            r.seconds_per_step,
            r.elements_per_s / 1e9,
            r.gb_per_s,
            r.probe_gb_per_s,
            r.ratio_to_probe,
            vs_f32
        );
    }
    Ok(Printed::ok(text, json!({"results": rows})))
}
