//! The effective learning rate in the 2-D traces: the chapter's numbers at step 1, and, for
//! every framework's optimizer without momentum, the step the core really took equals the
//! rate times the direction it follows (`g`, or Adam's `m̂`), step after step.

use rmsprop::by_name::{Value, config};
use rmsprop::{Adagrad, OptimizerConfig, RmsProp};
use rmsprop_lab::trace2d::{self, Trajectory};

fn chapter_run(config: impl Into<OptimizerConfig>, steps: usize) -> Trajectory {
    trace2d::run(&trace2d::objective("chapter").unwrap(), config.into(), [-5.0, -2.0], steps).unwrap()
}

/// D2L §12.8: at step 1, `s = (1-γ) g²` with `g = (0.2·(-5), 4·(-2))`, and the rate is
/// `η/√(s + ε)`, ε = 1e-6 inside the root; Adagrad's sum is `g²`.
#[test]
fn step_one_has_the_chapters_effective_rates() {
    let (eta, gamma, eps) = (0.4, 0.9, 1e-6);
    let g: [f64; 2] = [0.2 * -5.0, 4.0 * -2.0];
    let rms = chapter_run(RmsProp::default().with_lr(eta).with_decay(gamma), 20);
    let first = &rms.steps[0];
    let s = g.map(|g| (1.0 - gamma) * g * g);
    assert_eq!(first.state["square_avg"], s);
    assert_eq!(first.effective_lr, s.map(|s| eta / (s + eps).sqrt()));
    assert_eq!(rms.steps.len(), 20);
    // x2's rate recovers as its gradient shrinks: the leaky average forgets
    assert!(rms.steps[19].effective_lr[1] > 2.0 * first.effective_lr[1]);

    let ada = chapter_run(Adagrad::default().with_lr(eta), 20);
    assert_eq!(ada.steps[0].effective_lr, g.map(|g| eta / (g * g + eps).sqrt()));
    // Adagrad's only fall
    assert!(ada.steps.windows(2).all(|w| w[1].effective_lr[0] <= w[0].effective_lr[0]));
}

/// `x_t - x_{t-1} = -rate_t · direction_t` for every optimizer and flavour without momentum,
/// where the core (checked against the frameworks) took the step.
#[test]
fn the_rate_times_the_direction_is_the_step_the_core_took() {
    let cases: Vec<(&str, Vec<(&str, Value)>)> = vec![
        ("d2l.rmsprop", vec![]),
        ("pytorch.rmsprop", vec![]),
        ("pytorch.rmsprop", vec![("centered", Value::Bool(true))]),
        ("keras.rmsprop", vec![]),
        ("tf1.rmsprop", vec![]),
        ("optax.rmsprop", vec![("bias_correction", Value::Bool(true))]),
        ("mxnet.rmsprop", vec![]),
        ("burn.rmsprop", vec![("momentum", Value::Num(0.0))]),
        ("d2l.adagrad", vec![]),
        ("pytorch.adagrad", vec![("lr_decay", Value::Num(0.1))]),
        ("mxnet.adagrad", vec![]),
        ("pytorch.adam", vec![]),
        ("pytorch.adam", vec![("amsgrad", Value::Bool(true))]),
        ("optax.adam", vec![("eps_root", Value::Num(1e-3))]),
        ("mxnet.adam", vec![]),
        ("d2l.adadelta", vec![]),
        ("pytorch.adadelta", vec![]),
        ("pytorch.sgd", vec![]),
        ("d2l.yogi", vec![]),
        ("optax.yogi", vec![("initial_accumulator", Value::Num(0.1))]),
    ];
    for (name, mut hyper) in cases {
        hyper.push(("lr", Value::Num(0.1)));
        // an ε as large as the root it meets, so that its placement shows
        if !name.ends_with("sgd") {
            hyper.push(("eps", Value::Num(0.1)));
        }
        let c = config(name, hyper.iter().cloned()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let t = chapter_run(c.clone(), 8);
        let (beta1, adam) = match &c {
            OptimizerConfig::Adam(a) => (a.beta1, true),
            OptimizerConfig::Yogi(y) => (y.beta1, true),
            _ => (0.0, false),
        };
        for (k, step) in t.steps.iter().enumerate() {
            let (x0, x1) = (t.points[k], t.points[k + 1]);
            let objective = trace2d::objective("chapter").unwrap();
            let g = (objective.eval)(x0).1;
            let direction = match adam {
                true => step.state["exp_avg"].map(|m| m / (1.0 - beta1.powi(k as i32 + 1))),
                false => g,
            };
            for i in 0..2 {
                let (taken, predicted) = (x1[i] - x0[i], -step.effective_lr[i] * direction[i]);
                let close = (taken - predicted).abs() <= 1e-12 * taken.abs().max(1e-300) + 1e-15;
                assert!(
                    close,
                    "{name} {hyper:?}, step {}, x{}: moved {taken:e}, rate x direction {predicted:e}",
                    k + 1,
                    i + 1
                );
            }
        }
    }
}
