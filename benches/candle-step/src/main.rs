//! Time per optimizer step through candle, measured side by side in one run (rounds
//! interleaved, best of each): our `Trainer` against the core stepping plain buffers of the
//! same sizes, candle-optimisers' `RMSprop` (tensor ops, on candle 0.10, the version it is
//! built on) and candle-nn's `AdamW` (candle's own optimizer), on the chapter's MLP
//! (5-16-1) and on three 1826x1826 `Linear` layers (~1e7 parameters), for PyTorch's
//! RMSprop and its centred + momentum variant.
//!
//! Before timing, both RMSprops take three steps from the same weights with the same
//! gradients and must agree (they implement the same formula), so the race is between
//! equals.
//!
//! `cargo run --release --manifest-path benches/candle-step/Cargo.toml -- [ROUNDS]`

use candle_core::{Device, Tensor, Var};
use candle_core_010 as candle010;
use candle_nn::Optimizer as _;
use candle_nn_010::Optimizer as _;
use candle_optimisers::rmsprop::{ParamsRMSprop, RMSprop};
use rmsprop::{Flavor, MomentumStyle, Optimizer, OptimizerConfig, StepOutcome::Applied};
use rmsprop_candle::Trainer;
use std::time::Instant;

/// A variable's name, shape, start values and gradient.
type Layer = (String, Vec<usize>, Vec<f32>, Vec<f32>);

/// The weights and gradients of `x W + b` layers of `widths`, by name, as plain values.
fn layers(widths: &[usize]) -> Vec<Layer> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut out = Vec::new();
    for (i, w) in widths.windows(2).enumerate() {
        for (name, dims) in [(format!("{i}.weight"), vec![w[1], w[0]]), (format!("{i}.bias"), vec![w[1]])] {
            let n = dims.iter().product();
            let x = (0..n).map(|_| uniform()).collect();
            let g = (0..n).map(|_| 1e-3 * uniform()).collect();
            out.push((name, dims, x, g));
        }
    }
    out
}

/// The same model in candle 0.11 (ours, AdamW) and in candle 0.10 (candle-optimisers), with
/// two sets of gradients, `g` and `-g/2`, in each candle's stores: steps alternate between
/// them (a constant gradient would drive the centred variance to 0 and the weights away).
struct Model {
    vars: Vec<(String, Var)>,
    grads: [candle_core::backprop::GradStore; 2],
    vars010: Vec<candle010::Var>,
    grads010: [candle010::backprop::GradStore; 2],
}

fn model(widths: &[usize]) -> Model {
    let (cpu, cpu010) = (Device::Cpu, candle010::Device::Cpu);
    let layers = layers(widths);
    // a store with one entry per variable: backward of a loss that touches each once,
    // then the gradients replaced by the fixed ones
    let vars: Vec<(String, Var)> =
        layers.iter().map(|(n, d, x, _)| (n.clone(), Var::from_slice(x, d.as_slice(), &cpu).unwrap())).collect();
    let touch = vars.iter().map(|(_, v)| v.as_tensor().sum_all().unwrap()).reduce(|a, b| (a + b).unwrap()).unwrap();
    let mut grads = [touch.backward().unwrap(), touch.backward().unwrap()];
    let vars010: Vec<candle010::Var> =
        layers.iter().map(|(_, d, x, _)| candle010::Var::from_slice(x, d.as_slice(), &cpu010).unwrap()).collect();
    let touch010 = vars010.iter().map(|v| v.as_tensor().sum_all().unwrap()).reduce(|a, b| (a + b).unwrap()).unwrap();
    let mut grads010 = [touch010.backward().unwrap(), touch010.backward().unwrap()];
    for (((_, d, _, g), (_, var)), var010) in layers.iter().zip(&vars).zip(&vars010) {
        for (k, scale) in [1.0f32, -0.5].into_iter().enumerate() {
            let g: Vec<f32> = g.iter().map(|g| scale * g).collect();
            grads[k].insert(var, Tensor::from_slice(&g, d.as_slice(), &cpu).unwrap());
            grads010[k].insert(var010, candle010::Tensor::from_slice(&g, d.as_slice(), &cpu010).unwrap());
        }
    }
    Model { vars, grads, vars010, grads010 }
}

/// Seconds per call of `f`, over `calls` calls (`f` is told the call's index).
fn time(f: &mut dyn FnMut(usize), calls: usize) -> f64 {
    let start = Instant::now();
    for i in 0..calls {
        f(i);
    }
    start.elapsed().as_secs_f64() / calls as f64
}

/// Three steps of ours and of candle-optimisers' from the same weights agree.
fn check_agreement(widths: &[usize], ours: &OptimizerConfig, theirs: &ParamsRMSprop) {
    let m = model(widths);
    let mut trainer = Trainer::from_named(m.vars.clone(), ours.clone()).unwrap();
    let mut rms = RMSprop::new(m.vars010.clone(), theirs.clone()).unwrap();
    for i in 0..3 {
        trainer.step(&m.grads[i % 2]).unwrap();
        rms.step(&m.grads010[i % 2]).unwrap();
    }
    for (((name, a), b), (_, _, start, _)) in m.vars.iter().zip(&m.vars010).zip(layers(widths)) {
        let a: Vec<f32> = a.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = b.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        // the largest difference, relative to the largest distance travelled
        let largest = |v: &mut dyn Iterator<Item = f32>| v.fold(0.0f32, f32::max);
        let moved = largest(&mut a.iter().zip(&start).map(|(a, x0)| (a - x0).abs()));
        let worst = largest(&mut a.iter().zip(&b).map(|(a, b)| (a - b).abs())) / moved;
        assert!(moved > 0.0 && worst < 1e-5, "{name}: ours and candle-optimisers' differ by {worst:e} (relative)");
    }
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|r| r.parse().ok()).unwrap_or(5);
    let torch = Flavor::PyTorch.rmsprop();
    let torch_params = ParamsRMSprop { lr: 0.01, alpha: 0.99, eps: 1e-8, ..Default::default() };
    let variants = [
        ("RMSprop", OptimizerConfig::from(torch.clone()), torch_params.clone()),
        (
            "centred + momentum 0.9",
            OptimizerConfig::from(torch.clone().with_centered(true).with_momentum(0.9, MomentumStyle::LrOutsideBuffer)),
            ParamsRMSprop { centered: true, momentum: Some(0.9), ..torch_params },
        ),
    ];
    println!(
        "| model | parameters | variant | ours (candle) | core alone | candle-optimisers RMSprop | candle-nn AdamW | ours / core (speed) | candle-optimisers time / ours | AdamW time / ours |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (label, widths, calls) in [("MLP 5-16-1", vec![5, 16, 1], 20000), ("3 x Linear 1826", vec![1826; 4], 10)] {
        for (variant, ours_config, their_params) in &variants {
            check_agreement(&widths, ours_config, their_params);
            let m = model(&widths);
            let params: usize = m.vars.iter().map(|(_, v)| v.elem_count()).sum();
            let mut ours = Trainer::from_named(m.vars.clone(), ours_config.clone()).unwrap();
            let mut theirs = RMSprop::new(m.vars010.clone(), their_params.clone()).unwrap();
            let all: Vec<Var> = m.vars.iter().map(|(_, v)| v.clone()).collect();
            let mut adamw = candle_nn::AdamW::new_lr(all, 1e-3).unwrap();
            // the core on its own buffers of the same sizes
            let specs: Vec<(&str, &[usize])> = m.vars.iter().map(|(n, v)| (n.as_str(), v.dims())).collect();
            let mut core = Optimizer::<f32>::new(ours_config.clone(), &specs).unwrap();
            let mut xs: Vec<Vec<f32>> = m.vars.iter().map(|(_, v)| vec![0.5; v.elem_count()]).collect();
            let gs: [Vec<Vec<f32>>; 2] = [1e-3, -5e-4].map(|g| xs.iter().map(|x| vec![g; x.len()]).collect());

            let mut best = [f64::INFINITY; 4];
            for _ in 0..rounds {
                let ours = &mut |i: usize| assert_eq!(ours.step(&m.grads[i % 2]).unwrap(), Applied);
                best[0] = best[0].min(time(ours, calls));
                let core = &mut |i: usize| assert_eq!(core.step(&mut xs, &gs[i % 2]).unwrap(), Applied);
                best[1] = best[1].min(time(core, calls));
                best[2] = best[2].min(time(&mut |i| theirs.step(&m.grads010[i % 2]).unwrap(), calls));
                best[3] = best[3].min(time(&mut |i| adamw.step(&m.grads[i % 2]).unwrap(), calls));
            }
            let us = |s: f64| if s < 1e-3 { format!("{:.3} µs", s * 1e6) } else { format!("{:.2} ms", s * 1e3) };
            println!(
                "| {label} | {params} | {variant} | {} | {} | {} | {} | {:.2} | {:.1} | {:.1} |",
                us(best[0]),
                us(best[1]),
                us(best[2]),
                us(best[3]),
                best[1] / best[0],
                best[2] / best[0],
                best[3] / best[0]
            );
        }
    }
}
