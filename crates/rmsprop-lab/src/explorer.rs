//! The report's explorer: a grid of 2-D runs computed by the core, embedded in the page as
//! JSON, and plain inline JavaScript that draws the one the sliders select (the trajectory
//! on the contour lines, and its effective learning rates). The page computes nothing: every
//! number it shows is one of these runs', and each run says which `rmsprop trace2d` command
//! reproduces it.

use crate::plot::contour_lines;
use crate::trace2d::{self, Trajectory};
use rmsprop::OptimizerConfig;
use rmsprop::by_name::{self, Value};
use std::fmt::Write;

/// The learning rates the η slider snaps to.
pub const LRS: [f64; 7] = [0.05, 0.1, 0.2, 0.4, 0.6, 1.0, 2.0];
/// The values the γ slider snaps to for RMSProp's decay and momentum's β (1 included: the
/// chapter's exercise).
pub const GAMMAS: [f64; 5] = [0.0, 0.5, 0.9, 0.99, 1.0];
/// The values the same slider snaps to for Adam's β2, which must be below 1.
pub const BETA2S: [f64; 5] = [0.0, 0.5, 0.9, 0.99, 0.999];
/// The objectives, by [`trace2d::objective`] name.
pub const OBJECTIVES: [&str; 2] = ["chapter", "rotated"];
/// Where the runs start, and how many steps they take (the chapter's).
pub const START: [f64; 2] = [-5.0, -2.0];
/// Steps per run.
pub const STEPS: usize = 20;
/// The drawn region: x1 from, x1 to, x2 from, x2 to.
pub const VIEW: [f64; 4] = [-6.0, 2.0, -3.5, 2.5];

/// An optimizer of the explorer: its name in `by_name`, what the γ slider sets on it, and
/// whether the ε placement applies.
#[derive(Clone, Copy, Debug)]
pub struct Choice {
    /// The page's key and `by_name` name (`rmsprop`, `adagrad`, `sgd`, `adam`).
    pub name: &'static str,
    /// Shown in the menu.
    pub label: &'static str,
    /// The hyperparameter γ sets (`decay`, `momentum`, `beta2`), if any.
    pub gamma_key: Option<&'static str>,
    /// The values the γ slider offers it (empty without `gamma_key`).
    pub gammas: &'static [f64],
    /// Whether ε inside or outside the root applies.
    pub placement: bool,
}

/// The optimizers of the explorer's menu.
pub const CHOICES: [Choice; 4] = [
    Choice { name: "rmsprop", label: "RMSProp", gamma_key: Some("decay"), gammas: &GAMMAS, placement: true },
    Choice { name: "adagrad", label: "Adagrad", gamma_key: None, gammas: &[], placement: true },
    Choice { name: "sgd", label: "momentum", gamma_key: Some("momentum"), gammas: &GAMMAS, placement: false },
    Choice { name: "adam", label: "Adam", gamma_key: Some("beta2"), gammas: &BETA2S, placement: false },
];

/// The ε placements, as `by_name` spells them.
pub const PLACEMENTS: [&str; 2] = ["inside_sqrt", "outside_sqrt"];

/// One run of the grid: its configuration (or why the optimizer refuses it, as Adam refuses
/// β2 = 1) and the `rmsprop trace2d` arguments that reproduce it.
pub fn run_config(
    choice: &Choice,
    lr: f64,
    gamma: Option<f64>,
    placement: Option<&str>,
    objective: &str,
) -> (rmsprop::Result<OptimizerConfig>, Vec<String>) {
    let mut hyper = vec![("lr".to_string(), Value::Num(lr))];
    let mut args = vec!["--optimizer".to_string(), choice.name.into(), "--lr".into(), number_arg(lr)];
    if let (Some(key), Some(g)) = (choice.gamma_key, gamma) {
        hyper.push((key.into(), Value::Num(g)));
        args.extend(match key {
            "decay" => ["--gamma".to_string(), number_arg(g)],
            _ => ["--set".to_string(), format!("{key}={}", number_arg(g))],
        });
    }
    if let Some(p) = placement.filter(|_| choice.placement) {
        hyper.push(("eps_placement".into(), Value::Str(p.into())));
        args.extend(["--set".to_string(), format!("eps_placement={p}")]);
    }
    args.extend(["--objective".to_string(), objective.to_string()]);
    (by_name::config(choice.name, hyper), args)
}

/// A number as the command line takes it (`0.4`, `2`).
fn number_arg(v: f64) -> String {
    format!("{v}")
}

/// A number for the page: 4 significant digits (the drawings' precision; the printed end
/// point is the run's own line), as the figures write them; `null` when not finite.
fn compact(v: f64) -> String {
    if v.is_finite() { crate::plot::short(v) } else { "null".into() }
}

fn pairs(points: impl Iterator<Item = [f64; 2]>) -> String {
    let items: Vec<String> = points.map(|[a, b]| format!("[{},{}]", compact(a), compact(b))).collect();
    format!("[{}]", items.join(","))
}

/// A string as a JSON string (no `<`, so the page's script element cannot be closed by it).
fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises").replace('<', "\\u003c")
}

/// The grid as the page's JSON: the objectives' contour lines, the slider values, the menu,
/// and every run keyed `optimizer|placement|objective|lr index|gamma index` (`-` where a
/// control does not apply).
pub fn data() -> rmsprop::Result<String> {
    let mut out = String::from("{");
    let _ = write!(
        out,
        "\"lrs\":[{}],\"view\":[{}],\"start\":[{},{}],\"steps\":{STEPS},",
        LRS.map(compact).join(","),
        VIEW.map(compact).join(","),
        compact(START[0]),
        compact(START[1])
    );
    let choices: Vec<String> = CHOICES
        .iter()
        .map(|c| {
            format!(
                "{{\"name\":{},\"label\":{},\"gamma\":{},\"gammas\":[{}],\"placement\":{}}}",
                json_string(c.name),
                json_string(c.label),
                c.gamma_key.map_or("null".into(), json_string),
                c.gammas.iter().map(|&g| compact(g)).collect::<Vec<_>>().join(","),
                c.placement
            )
        })
        .collect();
    let _ = write!(out, "\"choices\":[{}],\"objectives\":{{", choices.join(","));
    for (k, name) in OBJECTIVES.iter().enumerate() {
        let o = trace2d::objective(name).expect("built in");
        // a coarser grid than the figures' and 0.01 (under a pixel) for the coordinates: the
        // page stays small
        let lines = contour_lines(&o, [VIEW[0], VIEW[1]], [VIEW[2], VIEW[3]], 48).unwrap_or_default();
        let at = |v: f64| compact((v * 100.0).round() / 100.0);
        let lines: Vec<String> = lines
            .iter()
            .map(|l| {
                format!("[{}]", l.iter().map(|&(x, y)| format!("[{},{}]", at(x), at(y))).collect::<Vec<_>>().join(","))
            })
            .collect();
        let sep = if k == 0 { "" } else { "," };
        let _ = write!(
            out,
            "{sep}{}:{{\"formula\":{},\"minimum\":{},\"lines\":[{}]}}",
            json_string(name),
            json_string(o.formula),
            o.minimum.map_or("null".into(), |[x, y]| format!("[{},{}]", compact(x), compact(y))),
            lines.join(",")
        );
    }
    out += "},\"runs\":{";
    let mut first = true;
    for choice in &CHOICES {
        let placements: Vec<Option<&str>> =
            if choice.placement { PLACEMENTS.iter().map(|p| Some(*p)).collect() } else { vec![None] };
        let gammas: Vec<Option<(usize, f64)>> = if choice.gamma_key.is_some() {
            choice.gammas.iter().copied().enumerate().map(Some).collect()
        } else {
            vec![None]
        };
        for placement in &placements {
            for objective in OBJECTIVES {
                let o = trace2d::objective(objective).expect("built in");
                for (li, &lr) in LRS.iter().enumerate() {
                    for g in &gammas {
                        let (config, args) = run_config(choice, lr, g.map(|g| g.1), *placement, objective);
                        let t = config.and_then(|c| trace2d::run(&o, c, START, STEPS));
                        let key = format!(
                            "{}|{}|{objective}|{li}|{}",
                            choice.name,
                            placement.unwrap_or("-"),
                            g.map_or("-".into(), |g| g.0.to_string())
                        );
                        let sep = if first { "" } else { "," };
                        first = false;
                        let _ = write!(out, "{sep}{}:{}", json_string(&key), run_json(&t, &args));
                    }
                }
            }
        }
    }
    out += "}}";
    Ok(out)
}

/// One run: points, effective rates per step, the printed line and the command; or, for
/// a configuration the optimizer refuses, its error.
fn run_json(t: &rmsprop::Result<Trajectory>, args: &[String]) -> String {
    let cmd = json_string(&format!("rmsprop trace2d {}", args.join(" ")));
    match t {
        Ok(t) => format!(
            "{{\"p\":{},\"r\":{},\"end\":{},\"cmd\":{cmd}}}",
            pairs(t.points.iter().copied()),
            pairs(t.steps.iter().map(|s| s.effective_lr)),
            json_string(&t.printed()),
        ),
        Err(e) => format!("{{\"p\":[],\"r\":[],\"end\":{},\"cmd\":{cmd}}}", json_string(&format!("refused: {e}"))),
    }
}

/// What the page says it holds.
pub fn holdings() -> String {
    let list = |v: &[f64]| v.iter().map(|&x| number_arg(x)).collect::<Vec<_>>().join(", ");
    let runs: usize = CHOICES
        .iter()
        .map(|c| {
            LRS.len()
                * OBJECTIVES.len()
                * if c.gamma_key.is_some() { c.gammas.len() } else { 1 }
                * if c.placement { PLACEMENTS.len() } else { 1 }
        })
        .sum();
    format!(
        "This explorer holds {runs} runs computed by the rmsprop core ({STEPS} steps from ({}, {}), each optimizer's \
         defaults otherwise): η ∈ {{{}}}, γ ∈ {{{}}} (RMSProp's decay γ, momentum's β; Adam's β2 ∈ {{{}}}; \
         Adagrad has none), \
         ε inside or outside the root (RMSProp and Adagrad), on the chapter's and the rotated objective. The sliders \
         snap to these values; the page computes nothing itself.",
        number_arg(START[0]),
        number_arg(START[1]),
        list(&LRS),
        list(&GAMMAS),
        list(&BETA2S)
    )
}

/// The explorer's HTML: controls, two drawings, the run's numbers, its data and its script.
pub fn html() -> rmsprop::Result<String> {
    let data = data()?;
    let options: String =
        CHOICES.iter().map(|c| format!("<option value=\"{}\">{}</option>", c.name, c.label)).collect();
    let objectives: String = OBJECTIVES
        .iter()
        .map(|o| format!("<option value=\"{o}\">{}</option>", trace2d::objective(o).expect("built in").formula))
        .collect();
    let lr0 = LRS.iter().position(|&l| l == 0.4).unwrap_or(0);
    let g0 = GAMMAS.iter().position(|&g| g == 0.9).unwrap_or(0);
    Ok(format!(
        r#"<section id="explorer">
<h2>Explore: η, γ, the optimizer and ε</h2>
<p>Move the sliders: the trajectory on the contour lines and the effective learning rate of each coordinate change with them. Try γ = 0.99 against 0.9, ε outside the root as PyTorch places it, Adagrad at η = 2, momentum or Adam on the same problem, and the rotated objective.</p>
<div class="controls">
<label>η <input type="range" id="explorer-lr" min="0" max="{lr_max}" step="1" value="{lr0}"> <output id="explorer-lr-value"></output></label>
<label><span id="explorer-gamma-name">γ</span> <input type="range" id="explorer-gamma" min="0" max="{g_max}" step="1" value="{g0}"> <output id="explorer-gamma-value"></output></label>
<label>optimizer <select id="explorer-optimizer">{options}</select></label>
<label>ε <select id="explorer-placement"><option value="inside_sqrt">inside the root</option><option value="outside_sqrt">outside the root</option></select></label>
<label>objective <select id="explorer-objective">{objectives}</select></label>
</div>
<svg id="explorer-contour" viewBox="0 0 480 360" width="480" height="360" role="img" aria-label="trajectory"></svg>
<svg id="explorer-rates" viewBox="0 0 480 240" width="480" height="240" role="img" aria-label="effective learning rates"></svg>
<p>End point: <b id="explorer-end"></b><br><span class="hp">Settings: <span id="explorer-settings"></span><br>The same run from the command line: <code id="explorer-command"></code></span></p>
<p class="hp">{holdings}</p>
<script type="application/json" id="explorer-data">{data}</script>
<script>{script}</script>
</section>
"#,
        lr_max = LRS.len() - 1,
        g_max = GAMMAS.len() - 1,
        holdings = crate::report::escape(&holdings()),
        script = SCRIPT,
    ))
}

/// The page's script (`explorer.js`): reads the embedded runs and draws the selected one;
/// it computes nothing beyond placing points on the drawings.
const SCRIPT: &str = include_str!("explorer.js");
