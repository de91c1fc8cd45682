//! The whole section in one go: the 2-D demonstration, the Adagrad comparison, training
//! from scratch and through the trainer, and the exercises, written to one folder with
//! every figure, the numbers, and a self-contained HTML report.

use crate::data::{self, Dataset, Source};
use crate::divergence::{number, short_number};
use crate::effective;
use crate::error::{LabError, write};
use crate::explorer;
use crate::hyper;
use crate::plot::{self, ContourPlot, Figure, Heatmap, Line, LinePlot, LossPlot, SeriesLabelPosition};
use crate::report::{self, Section};
use crate::sweep::{self, SweepSpec};
use crate::trace2d::{self, Objective, Trajectory};
use crate::train::{self, Curve, Protocol, Update};
use rmsprop::{Adagrad, Flavor, OptimizerConfig, RmsProp, by_name};
use std::path::{Path, PathBuf};

/// What to run and where to write it.
#[derive(Clone, Debug)]
pub struct ChapterOptions {
    /// Output folder (created).
    pub out: PathBuf,
    /// Data file (`--data`); the embedded copy when `None`.
    pub data: Option<PathBuf>,
    /// Seed of the two trainings.
    pub seed: u64,
    /// Use only the first rows (the later edition's 1500).
    pub rows: Option<usize>,
    /// Seeds per cell of the exercise grid.
    pub sweep_seeds: Vec<u64>,
}

impl Default for ChapterOptions {
    fn default() -> Self {
        ChapterOptions {
            out: PathBuf::from("rmsprop-chapter"),
            data: None,
            seed: 0,
            rows: None,
            sweep_seeds: vec![0, 1, 2],
        }
    }
}

/// What a chapter run produced.
#[derive(Debug)]
pub struct ChapterOutput {
    /// The report's sections, with the book's and our printed lines.
    pub sections: Vec<Section>,
    /// Where the data came from.
    pub source: Source,
    /// Rows of the data used.
    pub rows: usize,
    /// The HTML report.
    pub report: PathBuf,
    /// Every file written.
    pub files: Vec<PathBuf>,
}

/// The learning rates and γ values of the exercise grid.
pub const GRID_LRS: [f64; 5] = [0.001, 0.003, 0.01, 0.03, 0.1];
/// γ values of the exercise grid, 0 and 1 included.
pub const GRID_GAMMAS: [f64; 5] = [0.0, 0.5, 0.9, 0.99, 1.0];

/// The chapter's `Trainer("rmsprop", {"learning_rate": 0.01, "gamma1": 0.9})`.
pub fn gluon_trainer() -> OptimizerConfig {
    by_name::config("mxnet.rmsprop", [("learning_rate", 0.01), ("gamma1", 0.9)]).expect("valid")
}

/// Seeds of the comparison of state storages (the 20).
const STORAGE_SEEDS: u64 = 20;

/// The trainer's run with its state kept in f32, bfloat16 and 8 bits (every tensor packed:
/// the linear model's are far below bitsandbytes' 4096-element threshold): the loss curves,
/// their distance to f32 state's, and the final losses over [`STORAGE_SEEDS`] seeds.
fn fewer_bytes(out: &mut Out, data: &Dataset, protocol: &Protocol, short_label: &str) -> Result<Section, LabError> {
    use rmsprop::StateStorage;
    let storages = [StateStorage::F32, StateStorage::Bf16, StateStorage::Int8];
    let config = |s: StateStorage| {
        let mut c = gluon_trainer();
        (c.common_mut().state_storage, c.common_mut().min_8bit_size) = (s, 0);
        c
    };
    // the state bytes each storage holds for w and b, in the order of `storages`
    let specs = [("w", &[data::FEATURES, 1][..]), ("b", &[1][..])];
    let bytes = storages
        .iter()
        .map(|&s| Ok(rmsprop::Optimizer::<f32>::new(config(s), &specs)?.state_bytes()))
        .collect::<Result<Vec<usize>, LabError>>()?;
    let name = |s: StateStorage| match s {
        StateStorage::F32 => "f32 state",
        StateStorage::Bf16 => "bfloat16 state",
        StateStorage::Int8 => "8-bit state",
    };
    let mut curves = Vec::new();
    for (&s, held) in storages.iter().zip(&bytes) {
        let curve = train::train(data, &Update::Trainer(config(s)), protocol)?;
        out.text(&format!("state_{s}.csv"), curve.to_csv())?;
        curves.push((format!("{} ({held} bytes)", name(s)), curve));
    }
    let loss_fig = out.figure(
        &LossPlot {
            title: format!("Trainer(\"rmsprop\"), its state in f32, bfloat16 and 8 bits, {short_label}"),
            curves: &curves,
        },
        "state_storage",
        (800, 480),
    )?;
    // each packed run's loss over f32 state's, point by point
    let f32_curve = &curves[0].1;
    let lines: Vec<Line> = curves[1..]
        .iter()
        .enumerate()
        .map(|(i, (label, c))| Line {
            label: label.clone(),
            points: c
                .epochs
                .iter()
                .zip(&c.loss)
                .zip(&f32_curve.loss)
                .map(|((&e, &l), &f)| (e, 100.0 * (l / f - 1.0)))
                .collect(),
            color: i + 1,
            dashed: false,
        })
        .collect();
    let diff_fig = out.figure(
        &LinePlot {
            title: format!("loss against f32 state's, {short_label}"),
            x_desc: "epoch",
            y_desc: "loss / f32 state's loss - 1 (%)",
            log_y: false,
            lines: &lines,
            marks: &[],
            legend_at: SeriesLabelPosition::UpperRight,
        },
        "state_storage_difference",
        (800, 480),
    )?;
    // the final losses over the seeds, each storage against f32 state's of the same seed
    let finals = |s: StateStorage| -> Result<Vec<f64>, LabError> {
        (0..STORAGE_SEEDS)
            .map(|seed| {
                Ok(train::train(data, &Update::Trainer(config(s)), &Protocol { seed, ..protocol.clone() })?
                    .final_loss())
            })
            .collect()
    };
    let reference = finals(StateStorage::F32)?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mut ours = Vec::new();
    for s in &storages[1..] {
        let f = finals(*s)?;
        let worst = f.iter().zip(&reference).map(|(a, b)| (a / b - 1.0).abs()).fold(0.0, f64::max);
        ours.push(format!(
            "{}: mean final loss over {STORAGE_SEEDS} seeds {} against f32 state's {} ({:+.4} %; the largest single \
             seed's difference {:.4} %)",
            name(*s),
            number(mean(&f)),
            number(mean(&reference)),
            100.0 * (mean(&f) / mean(&reference) - 1.0),
            100.0 * worst
        ));
    }
    Ok(Section {
        title: "Optimizer state in fewer bytes".into(),
        text: format!(
            "The trainer's run again with its average of squares kept between steps in bfloat16 (2 bytes a value) \
             and in block-wise 8-bit codes (1 byte a value and a float32 scale per block of up to 256; the \
             dynamic-tree code of Dettmers et al., 8-bit Optimizers via Block-wise Quantization, 2022), \
             state_storage=bf16 and int8. Each step decodes the state to float32, takes the same step and \
             encodes the result. bitsandbytes keeps tensors below 4096 elements in 32 bits, and so does \
             state_storage=int8 unless min_8bit_size says otherwise: the linear model's six values are packed here \
             (min_8bit_size=0) so that the figure shows what the codes do. State bytes: f32 {}, bfloat16 {}, 8 \
             bits {}.",
            bytes[0], bytes[1], bytes[2]
        ),
        figures: vec![loss_fig, diff_fig],
        hyperparameters: storages
            .iter()
            .map(|&s| format!("mxnet.rmsprop: {}", hyper::summary(&config(s), Flavor::Mxnet)))
            .collect(),
        book: vec![],
        ours,
    })
}

/// The chapter's data: `path` if given, else the embedded copy; the first `rows` rows if
/// given (1 to all of them).
pub fn chapter_data(path: Option<&Path>, rows: Option<usize>) -> Result<Dataset, LabError> {
    let d = data::resolve(path)?;
    match rows {
        Some(n) if n == 0 || n > d.rows => Err(LabError::Rows { asked: n, available: d.rows }),
        Some(n) => Ok(d.truncated(n)),
        None => Ok(d),
    }
}

/// Writes the run's files into the output folder and remembers them.
struct Out {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl Out {
    /// Saves `fig` as `name.svg` and `name.png`; returns the SVG text for the report.
    fn figure(&mut self, fig: &impl Figure, name: &str, size: (u32, u32)) -> Result<String, LabError> {
        let [svg, png] = plot::save(fig, &self.dir.join(name), size)?;
        let text = std::fs::read_to_string(&svg).map_err(|error| LabError::Io { path: svg.clone(), error })?;
        self.files.extend([svg, png]);
        Ok(text)
    }

    /// Writes a text file `name`.
    fn text(&mut self, name: &str, contents: impl AsRef<[u8]>) -> Result<(), LabError> {
        let path = self.dir.join(name);
        write(&path, contents)?;
        self.files.push(path);
        Ok(())
    }

    /// The contour figure of `trajectories` on `o`.
    fn contour(
        &mut self,
        name: &str,
        title: &str,
        o: &Objective,
        t: &[(String, Trajectory)],
    ) -> Result<String, LabError> {
        self.figure(&ContourPlot { title: title.into(), objective: o, trajectories: t }, name, (800, 560))
    }
}

/// The book's RMSProp from scratch, as the report states it.
const SCRATCH_HYPERPARAMETERS: &str = "the book's update: lr=0.01 gamma=0.9 eps=1e-6 (inside the root), in float32";

/// The book's exercises for this section (D2L §12.8.4), as it asks them.
pub const EXERCISES: [&str; 4] = [
    "What happens experimentally if we set γ = 1? Why?",
    "Rotate the optimization problem to minimize f(x) = 0.1 (x1 + x2)² + 2 (x1 − x2)². What happens to the \
     convergence?",
    "Try out what happens to RMSProp on a real machine learning problem, such as training on Fashion-MNIST. \
     Experiment with different choices for adjusting the learning rate.",
    "Would you want to adjust γ as optimization progresses? How sensitive is RMSProp to this?",
];

/// The final loss of both trainings over seeds in MXNet 1.9.1 with this protocol, and the
/// least-squares floor of the linear model on these rows.
const BAND: &str = "MXNet 1.9.1 ends this protocol at 0.243–0.248 over seeds; the least-squares floor is 0.2421";

/// Runs the chapter into `opts.out`; `progress` hears the name of each part as it starts.
///
/// Everything is written into a folder beside `opts.out` first and takes its place only
/// when complete, so an interrupted run never leaves new figures next to an old report. An
/// existing `opts.out` is replaced only if it is empty or an earlier chapter folder (it has
/// a `numbers.json`); any other folder or file there is an error, before anything runs.
pub fn run(opts: &ChapterOptions, progress: &(dyn Fn(&str) + Sync)) -> Result<ChapterOutput, LabError> {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
        move |error| LabError::Io { path: path.to_path_buf(), error }
    }
    // `.` or `..` has no name to put a sibling beside: the folder by its own name
    let out = match std::fs::canonicalize(&opts.out) {
        Ok(real) => real,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => opts.out.clone(),
        Err(e) => return Err(io(&opts.out)(e)),
    };
    if let Ok(here) = std::env::current_dir().and_then(std::fs::canonicalize)
        && (here.starts_with(&out) || out.file_name().is_none())
    {
        return Err(LabError::HoldsCurrentFolder { path: opts.out.clone() });
    }
    let earlier = match std::fs::read_dir(&out).map(|mut entries| entries.next().is_none()) {
        Ok(true) => true,
        Ok(false) if out.join("numbers.json").is_file() => true,
        Ok(false) => return Err(LabError::NotChapterFolder { path: opts.out.clone() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io(&opts.out)(e)),
    };
    let partial = sibling(&out, "partial");
    std::fs::create_dir_all(&partial).map_err(io(&partial))?;
    // on every failure from here on the partial folder goes, and an earlier folder stays
    let result = write_chapter(opts, &partial, progress).and_then(|o| {
        let old = sibling(&out, "old");
        if earlier {
            std::fs::rename(&out, &old).map_err(io(&opts.out))?;
        }
        if let Err(e) = std::fs::rename(&partial, &out) {
            if earlier {
                let _ = std::fs::rename(&old, &out);
            }
            return Err(io(&opts.out)(e));
        }
        if earlier {
            let _ = std::fs::remove_dir_all(&old);
        }
        Ok(o)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    result.map(|mut o| {
        o.files = o.files.iter().map(|f| opts.out.join(f.strip_prefix(&partial).unwrap_or(f))).collect();
        o.report = opts.out.join("index.html");
        o
    })
}

/// `.NAME.WHAT-PID` beside `dir`.
fn sibling(dir: &Path, what: &str) -> PathBuf {
    let name = dir.file_name().map_or("rmsprop-chapter".into(), |n| n.to_string_lossy().into_owned());
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    parent.join(format!(".{name}.{what}-{}", std::process::id()))
}

/// The chapter, written into `dir`.
fn write_chapter(
    opts: &ChapterOptions,
    dir: &Path,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<ChapterOutput, LabError> {
    let mut out = Out { dir: dir.to_path_buf(), files: Vec::new() };
    let mut sections = Vec::new();
    let start = [-5.0, -2.0];
    let chapter = trace2d::objective("chapter").expect("built in");
    let rms = |lr: f64, gamma: f64| -> OptimizerConfig { RmsProp::default().with_lr(lr).with_decay(gamma).into() };
    // a legend entry and the report's line: what each run really used
    let named = |name: &str, c: &OptimizerConfig| {
        (hyper::label(name, c, Flavor::D2l), format!("{name}: {}", hyper::summary(c, Flavor::D2l)))
    };

    progress("2-D RMSProp");
    let rms_config = rms(0.4, 0.9);
    let rms_traj = trace2d::run(&chapter, rms_config.clone(), start, 20)?;
    let (rms_label, rms_line) = named("RMSProp", &rms_config);
    sections.push(Section {
        title: "RMSProp on f(x) = 0.1 x1² + 2 x2²".into(),
        text: "η = 0.4, γ = 0.9, ε = 1e-6 inside the square root, 20 steps from (-5, -2): the per-coordinate \
               scaling lets both coordinates converge at one learning rate."
            .into(),
        figures: vec![out.contour(
            "rmsprop_2d",
            "RMSProp, eta 0.4, gamma 0.9",
            &chapter,
            &[(rms_label.clone(), rms_traj.clone())],
        )?],
        hyperparameters: vec![rms_line.clone()],
        book: vec!["epoch 20, x1 -0.010599, x2 0.000000".into()],
        ours: vec![rms_traj.printed()],
    });

    progress("Adagrad comparison");
    let ada_config: OptimizerConfig = Adagrad::default().with_lr(0.4).into();
    let ada = trace2d::run(&chapter, ada_config.clone(), start, 20)?;
    let (ada_label, ada_line) = named("Adagrad", &ada_config);
    sections.push(Section {
        title: "Compared with Adagrad".into(),
        text: "At the same η = 0.4, Adagrad's ever-growing sum shrinks its steps and it crawls; RMSProp's leaky \
               average keeps them useful."
            .into(),
        figures: vec![out.contour(
            "rmsprop_vs_adagrad",
            "RMSProp and Adagrad, eta 0.4",
            &chapter,
            &[(rms_label, rms_traj.clone()), (ada_label, ada.clone())],
        )?],
        hyperparameters: vec![rms_line.clone(), ada_line.clone()],
        book: vec!["Adagrad (§12.7, η = 0.4): epoch 20, x1 -2.382563, x2 -0.158591".into()],
        ours: vec![format!("Adagrad: {}", ada.printed())],
    });

    progress("effective learning rates");
    let rate_lines: Vec<Line> = [("RMSProp", &rms_traj, 0), ("Adagrad", &ada, 1)]
        .into_iter()
        .flat_map(|(name, t, color)| {
            (0..2).map(move |i| Line {
                label: format!("{name}, x{}", i + 1),
                points: t.steps.iter().enumerate().map(|(k, s)| ((k + 1) as f64, s.effective_lr[i])).collect(),
                color,
                dashed: i == 1,
            })
        })
        .collect();
    let rate_fig = LinePlot {
        title: "effective learning rate η/√(s + ε), η = 0.4".into(),
        x_desc: "step",
        y_desc: "rate (log scale)",
        log_y: true,
        lines: &rate_lines,
        marks: &[],
        legend_at: SeriesLabelPosition::LowerLeft,
    };
    let rate_at = |t: &Trajectory, k: usize| {
        let r = t.steps[k - 1].effective_lr;
        format!("step {k}: x1 {}, x2 {}", number(r[0]), number(r[1]))
    };
    sections.push(Section {
        title: "The effective learning rate η/√(s + ε)".into(),
        text: "Each coordinate moves by its gradient times its own rate η/√(s + ε). Adagrad's s is the sum of every \
               squared gradient so far: it only grows, so the rates only fall, and the flat x1 direction crawls. \
               RMSProp's s is a leaky average: once x2's gradient has shrunk, s forgets the large early gradients and \
               x2's rate climbs back, while x1's rate stays large because its gradients were small all along. At step \
               1, RMSProp's rate for x1 is η/√((1−γ) g1² + ε) with g1 = 0.2·(−5)."
            .into(),
        figures: vec![out.figure(&rate_fig, "effective_lr", (800, 480))?],
        hyperparameters: vec![rms_line.clone(), ada_line],
        book: vec!["s_t ← γ s_{t−1} + (1 − γ) g_t², x_t ← x_{t−1} − η/√(s_t + ε) ⊙ g_t (D2L (12.8.1))".into()],
        ours: vec![
            format!("RMSProp {}", rate_at(&rms_traj, 1)),
            format!("RMSProp {}", rate_at(&rms_traj, 20)),
            format!("Adagrad {}", rate_at(&ada, 1)),
            format!("Adagrad {}", rate_at(&ada, 20)),
        ],
    });

    let gammas = [0.0, 0.5, 0.9, 0.99];
    let weight_lines: Vec<Line> = gammas
        .iter()
        .enumerate()
        .map(|(c, &g)| Line {
            label: format!("gamma {g}"),
            points: (0..=120).map(|k| (f64::from(k), effective::leaky_weight(g, k))).filter(|p| p.1 >= 1e-4).collect(),
            color: c,
            dashed: false,
        })
        .collect();
    let marks: Vec<(f64, usize, String)> =
        gammas.iter().enumerate().map(|(c, &g)| (effective::horizon(g), c, format!("1/(1-{g})"))).collect();
    let weights_fig = LinePlot {
        title: "weight (1 − γ) γᵏ of the squared gradient k steps back".into(),
        x_desc: "k (steps back)",
        y_desc: "weight (log scale)",
        log_y: true,
        lines: &weight_lines,
        marks: &marks,
        legend_at: SeriesLabelPosition::LowerRight,
    };
    sections.push(Section {
        title: "What γ means: the horizon".into(),
        text: "Unrolled, s_t = (1−γ)(g_t² + γ g_{t−1}² + γ² g_{t−2}² + …): the squared gradient k steps back weighs \
               (1−γ)γ^k, and the weights sum to 1. They fall by a factor e over about 1/(1−γ) steps, the horizon \
               marked on each curve: γ = 0.9 averages over about 10 steps, γ = 0.99 over 100, γ = 0 sees only the \
               last gradient. At γ = 1 the weight (1−γ) is 0: s never leaves its start, 0, and every step is \
               η g/√ε = 1000 η g with the chapter's ε = 1e-6, which is why the γ = 1 exercise diverges."
            .into(),
        figures: vec![out.figure(&weights_fig, "leaky_average_weights", (800, 480))?],
        hyperparameters: vec![format!("γ = {}: the weights alone, no run", gammas.map(hyper::number).join(", "))],
        book: vec![
            "1 + γ + γ² + … = 1/(1 − γ): the weights are normalized, the time scale is about 1/(1 − γ) (D2L §12.8.1)"
                .into(),
        ],
        ours: gammas
            .iter()
            .map(|&g| {
                format!(
                    "γ = {g}: horizon {}, weight of the last gradient {}",
                    short_number(effective::horizon(g)),
                    short_number(effective::leaky_weight(g, 0))
                )
            })
            .collect(),
    });

    progress("momentum and Adam");
    let momentum_config = by_name::config("pytorch.sgd", [("lr", 0.6), ("momentum", 0.5)])?;
    let adam_config = by_name::config("pytorch.adam", [("lr", 0.4)])?;
    let momentum = trace2d::run(&chapter, momentum_config.clone(), start, 20)?;
    let adam = trace2d::run(&chapter, adam_config.clone(), start, 20)?;
    let family = [
        (hyper::label("RMSProp", &rms_config, Flavor::D2l), rms_traj.clone()),
        (hyper::label("momentum", &momentum_config, Flavor::PyTorch), momentum.clone()),
        (hyper::label("Adam", &adam_config, Flavor::PyTorch), adam.clone()),
    ];
    sections.push(Section {
        title: "Compared with momentum and Adam".into(),
        text: "Momentum (the book's §12.6 settings, η = 0.6, β = 0.5) keeps one learning rate for both coordinates \
               and averages the gradients themselves: it damps the zig-zag along x2 but x1 still moves at η times a \
               small gradient. Adam (§12.10) is RMSProp's per-coordinate rate applied to a momentum of the gradient, \
               with both averages bias-corrected: its first steps are about η in each coordinate, whatever the \
               gradient's scale."
            .into(),
        figures: vec![out.contour("rmsprop_momentum_adam", "RMSProp, momentum and Adam", &chapter, &family)?],
        hyperparameters: vec![
            rms_line,
            format!("momentum (pytorch.sgd): {}", hyper::summary(&momentum_config, Flavor::PyTorch)),
            format!("Adam (pytorch.adam): {}", hyper::summary(&adam_config, Flavor::PyTorch)),
        ],
        book: vec!["momentum_2d, eta, beta = 0.6, 0.5 (§12.6.1): epoch 20, x1 0.007188, x2 0.002553".into()],
        ours: vec![
            format!("RMSProp: {}", rms_traj.printed()),
            format!("momentum: {}", momentum.printed()),
            format!("Adam: {}", adam.printed()),
        ],
    });

    progress("data");
    let data = chapter_data(opts.data.as_deref(), opts.rows)?;
    let data_label = format!("{}, {} rows used", data.source, data.rows);
    let short_label = format!("airfoil, {} rows", data.rows);
    let protocol = Protocol { seed: opts.seed, ..Protocol::default() };
    let training = |out: &mut Out, name: &str, title: &str, update: Update| -> Result<(Curve, String), LabError> {
        let curve = train::train(&data, &update, &protocol)?;
        out.text(&format!("{name}.csv"), curve.to_csv())?;
        out.text(&format!("{name}.json"), serde_json::to_string_pretty(&curve).expect("serialisable"))?;
        let curves = [(title.to_string(), curve.clone())];
        let svg =
            out.figure(&LossPlot { title: format!("{title}, {short_label}"), curves: &curves }, name, (800, 480))?;
        Ok((curve, svg))
    };
    progress("training from scratch");
    let (scratch, svg) = training(
        &mut out,
        "train_scratch",
        "from scratch (lr 0.01, gamma 0.9)",
        Update::Scratch { lr: 0.01, gamma: 0.9 },
    )?;
    sections.push(Section {
        title: "Linear regression from scratch".into(),
        text: format!(
            "The book's rmsprop(params, states, hyperparams) on w (5x1) and b: lr 0.01, γ 0.9, ε 1e-6 inside the \
             root, minibatch 10, 2 epochs, loss on the whole set every 100 examples. Data: {data_label}."
        ),
        figures: vec![svg],
        hyperparameters: vec![SCRATCH_HYPERPARAMETERS.into()],
        book: vec![
            "d2l.train_ch11(rmsprop, init_rmsprop_states(feature_dim), {'lr': 0.01, 'gamma': 0.9}, data_iter, \
             feature_dim)"
                .into(),
        ],
        ours: vec![scratch.printed(), BAND.into()],
    });
    progress("training through the trainer");
    let trainer_config = gluon_trainer();
    let trainer_line = format!("mxnet.rmsprop: {}", hyper::summary(&trainer_config, Flavor::Mxnet));
    let (trainer, svg) =
        training(&mut out, "train_trainer", "Trainer(\"rmsprop\")", Update::Trainer(trainer_config.clone()))?;
    sections.push(Section {
        title: "Through the trainer".into(),
        text: "Trainer(\"rmsprop\", {learning_rate: 0.01, gamma1: 0.9}) with MXNet 1.x semantics: ε 1e-8 inside the \
               root, hyperparameters held in float32, summed loss rescaled by 1/batch size (the last batch of 3 rows \
               too)."
            .into(),
        figures: vec![svg],
        hyperparameters: vec![trainer_line.clone()],
        book: vec!["d2l.train_concise_ch11('rmsprop', {'learning_rate': 0.01, 'gamma1': 0.9}, data_iter)".into()],
        ours: vec![trainer.printed(), BAND.into()],
    });

    let spread_lines: Vec<Line> = [("from scratch", &scratch, 0), ("Trainer", &trainer, 1)]
        .into_iter()
        .flat_map(|(name, c, color)| {
            let at = |f: fn(&effective::Spread) -> f64| c.effective_lr.iter().map(|s| (s.epoch, f(s))).collect();
            [
                Line { label: format!("{name}, median"), points: at(|s| s.median), color, dashed: false },
                Line { label: format!("{name}, min and max"), points: at(|s| s.min), color, dashed: true },
                Line { label: String::new(), points: at(|s| s.max), color, dashed: true },
            ]
        })
        .collect();
    let spread_fig = LinePlot {
        title: format!("effective learning rates of the 6 parameters, {short_label}"),
        x_desc: "epoch",
        y_desc: "rate (log scale)",
        log_y: true,
        lines: &spread_lines,
        // until epoch 1 the Trainer's lines cover the book's: they part there (see the text)
        marks: &[(1.0, 2, "runs part".into())],
        legend_at: SeriesLabelPosition::UpperRight,
    };
    let last_spread = |name: &str, c: &Curve| match c.effective_lr.last() {
        Some(s) => format!(
            "{name}, epoch {}: median {}, from {} to {}",
            short_number(s.epoch),
            number(s.median),
            number(s.min),
            number(s.max)
        ),
        None => format!("{name}: no rate (the run diverged before its first logged point)"),
    };
    sections.push(Section {
        title: "Effective learning rates on the airfoil data".into(),
        text: "The same quantity over the linear model's six parameters (five weights and the bias), at every logged \
               point: the median and the range. With γ = 0.9 each parameter's s follows its own recent squared \
               gradients (about the last 10 minibatches), so the rates differ between parameters by a factor of 2 to \
               4 and move with the minibatches. The two runs share their shuffles and part only after the last, short \
               batch of the first epoch (3 rows): the book's code divides that batch's gradient by 3, the trainer by \
               the nominal 10, and the difference in s fades within about 1/(1−γ) = 10 steps."
            .into(),
        figures: vec![out.figure(&spread_fig, "train_effective_lr", (800, 480))?],
        hyperparameters: vec![SCRATCH_HYPERPARAMETERS.into(), trainer_line],
        book: vec![],
        ours: vec![last_spread("from scratch", &scratch), last_spread("Trainer", &trainer)],
    });

    progress("optimizer state in fewer bytes");
    sections.push(fewer_bytes(&mut out, &data, &protocol, &short_label)?);

    progress("exercise: gamma 0 and 1");
    let g0 = trace2d::run(&chapter, rms(0.4, 0.0), start, 20)?;
    let g1 = trace2d::run(&chapter, rms(0.4, 1.0), start, 20)?;
    let gamma_runs = [
        (hyper::label("RMSProp", &rms(0.4, 0.9), Flavor::D2l), rms_traj),
        (hyper::label("RMSProp", &rms(0.4, 0.0), Flavor::D2l), g0.clone()),
        (hyper::label("RMSProp", &rms(0.4, 1.0), Flavor::D2l), g1.clone()),
    ];
    sections.push(Section {
        title: "Exercise: γ = 0 and γ = 1".into(),
        text: "γ = 0 keeps only the last squared gradient: each step is η·g/sqrt(g² + ε), nearly η·sign(g). γ = 1 \
               never updates s from its start 0, so each step is η·g/sqrt(ε) = 400·g: the first step throws x2 from \
               -2 to 3198, and the run diverges (the figure marks where it leaves the view)."
            .into(),
        figures: vec![out.contour("rmsprop_gamma", "RMSProp, eta 0.4, gamma 0.9 / 0 / 1", &chapter, &gamma_runs)?],
        hyperparameters: [0.9, 0.0, 1.0]
            .map(|g| format!("RMSProp: {}", hyper::summary(&rms(0.4, g), Flavor::D2l)))
            .to_vec(),
        book: vec![EXERCISES[0].into()],
        ours: vec![format!("γ = 0: {}", g0.printed()), format!("γ = 1: {}", g1.printed())],
    });

    progress("exercise: learning rate x gamma");
    let spec = SweepSpec {
        optimizer: "mxnet.rmsprop".into(),
        lrs: GRID_LRS.to_vec(),
        gammas: GRID_GAMMAS.to_vec(),
        seeds: opts.sweep_seeds.clone(),
        protocol: Protocol::default(),
        hyperparameters: vec![],
    };
    let cells = sweep::sweep(&data, &spec, &|| {})?;
    out.text("sweep.csv", sweep::to_csv(&cells))?;
    out.text("sweep.md", sweep::to_markdown(&cells))?;
    let values: Vec<Vec<Option<f64>>> =
        cells.chunks(GRID_LRS.len()).map(|row| row.iter().map(sweep::Cell::mean_final_loss).collect()).collect();
    let heat = Heatmap {
        title: format!("final loss, mean of {} seeds", spec.seeds.len()),
        lrs: &GRID_LRS,
        gammas: &GRID_GAMMAS,
        values: &values,
    };
    let heat_svg = out.figure(&heat, "sweep_heatmap", (800, 560))?;
    let at_lr: Vec<(String, Curve)> = cells
        .iter()
        .filter(|c| c.lr == 0.01)
        .map(|c| (format!("γ = {}", c.gamma.map_or("-".into(), hyper::number)), c.curves[0].clone()))
        .collect();
    let curves_svg = out.figure(
        &LossPlot { title: format!("η = 0.01, by γ (seed {})", spec.seeds[0]), curves: &at_lr },
        "sweep_curves",
        (800, 480),
    )?;
    let diverged: Vec<String> = cells
        .iter()
        .filter(|c| c.diverged())
        .map(|c| format!("lr {} γ {}: {}", c.lr, hyper::number(c.gamma.unwrap_or(f64::NAN)), c.summary()))
        .collect();
    sections.push(Section {
        title: "Exercise: other learning rates and γ".into(),
        text: format!(
            "Trainer RMSProp (mxnet.rmsprop) on {data_label}, every lr x γ, {} seeds each; every γ = 1 cell is \
             expected to diverge.",
            spec.seeds.len()
        ),
        figures: vec![heat_svg, curves_svg],
        hyperparameters: vec![format!(
            "mxnet.rmsprop: {}",
            hyper::summary_of_grid(
                &by_name::config("mxnet.rmsprop", Vec::<(String, by_name::Value)>::new())?,
                Flavor::Mxnet,
                &[("lr", &spec.lrs), ("decay", &spec.gammas)]
            )
        )],
        book: vec![EXERCISES[3].into()],
        ours: std::iter::once(format!("{} of {} cells diverged", diverged.len(), cells.len()))
            .chain(diverged)
            .collect(),
    });

    progress("exercise: rotated quadratic");
    let rotated = trace2d::objective("rotated").expect("built in");
    let rot = trace2d::run(&rotated, rms(0.4, 0.9), start, 20)?;
    sections.push(Section {
        title: "Exercise: a rotated problem".into(),
        text: "f(x) = 0.1 (x1 + x2)² + 2 (x1 − x2)²: the same two curvatures, turned 45°, so each coordinate now \
               feels both. RMSProp's per-coordinate rates can no longer give the flat direction the larger step, since \
               that direction is diagonal: the run drops into the valley in two steps, then creeps along its floor at \
               a nearly constant pace. After 20 steps it is still about 1.3 from the minimum (on the unrotated problem: \
               0.01); after 100 steps, about 0.24. The explorer below shows the same for Adagrad, momentum and Adam."
            .into(),
        figures: vec![out.contour(
            "rmsprop_rotated",
            rotated.formula,
            &rotated,
            &[(hyper::label("RMSProp", &rms(0.4, 0.9), Flavor::D2l), rot.clone())],
        )?],
        hyperparameters: vec![format!("RMSProp: {}", hyper::summary(&rms(0.4, 0.9), Flavor::D2l))],
        book: vec![EXERCISES[1].into()],
        ours: vec![rot.printed()],
    });

    let preamble = format!("Data: {data_label}.");
    let numbers = serde_json::json!({ "data": data_label, "rows": data.rows, "sections": sections });
    out.text("numbers.json", serde_json::to_string_pretty(&numbers).expect("serialisable"))?;
    progress("explorer");
    let explorer = explorer::html()?;
    let title = "RMSProp (Dive into Deep Learning §12.8), reproduced";
    out.text("index.html", report::html(title, &preamble, &sections, &explorer))?;
    let report = dir.join("index.html");
    Ok(ChapterOutput { sections, source: data.source, rows: data.rows, report, files: out.files })
}
