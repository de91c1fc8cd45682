//! Time per optimizer step through candle, measured side by side in one run (rounds
//! interleaved, best of each): our `Trainer` (PyTorch's RMSprop, default policy) against
//! the core stepping the same sizes directly and against candle-nn's `AdamW` (candle's
//! own optimizer, tensor ops), on the chapter's MLP (5-16-1) and on three 1826x1826
//! `Linear` layers (~1e7 parameters).
//!
//! `cargo run --release -p rmsprop-candle --example bench_step -- [ROUNDS]`

use candle_core::{DType, Device, Tensor};
use candle_nn::{Module, Optimizer as _, VarBuilder, VarMap};
use rmsprop::{Flavor, Optimizer, StepOutcome::Applied};
use rmsprop_candle::Trainer;
use std::time::Instant;

fn model(widths: &[usize]) -> (VarMap, Vec<candle_nn::Linear>) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let layers = widths.windows(2).enumerate().map(|(i, w)| candle_nn::linear(w[0], w[1], vb.pp(i)).unwrap()).collect();
    (varmap, layers)
}

/// Best seconds per call of `f` over `rounds`, each round as many calls as fill ~0.2 s.
fn time(f: &mut dyn FnMut(), calls: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..calls {
        f();
    }
    start.elapsed().as_secs_f64() / calls as f64
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|r| r.parse().ok()).unwrap_or(5);
    println!(
        "| model | parameters | ours (candle) | core alone | candle-nn AdamW | our speed, relative to the core | AdamW time / ours |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (label, widths, calls) in [("MLP 5-16-1", vec![5, 16, 1], 20000), ("3 x Linear 1826", vec![1826; 4], 10)] {
        let (varmap, layers) = model(&widths);
        let x = Tensor::ones((4, widths[0]), DType::F32, &Device::Cpu).unwrap();
        let loss = layers.iter().fold(x, |h, l| l.forward(&h).unwrap()).sqr().unwrap().mean_all().unwrap();
        let grads = loss.backward().unwrap();
        let params: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();

        let mut ours = Trainer::new(&varmap, Flavor::PyTorch.rmsprop()).unwrap();
        let mut adamw = candle_nn::AdamW::new_lr(varmap.all_vars(), 1e-3).unwrap();
        // the core on its own buffers of the same sizes
        let sizes: Vec<(String, Vec<usize>)> =
            ours.names().iter().map(|n| (n.to_string(), varmap.data().lock().unwrap()[*n].dims().to_vec())).collect();
        let specs: Vec<(&str, &[usize])> = sizes.iter().map(|(n, s)| (n.as_str(), s.as_slice())).collect();
        let mut core = Optimizer::<f32>::new(Flavor::PyTorch.rmsprop(), &specs).unwrap();
        let mut xs: Vec<Vec<f32>> = sizes.iter().map(|(_, s)| vec![0.5; s.iter().product()]).collect();
        let gs: Vec<Vec<f32>> = xs.iter().map(|x| vec![1e-3; x.len()]).collect();

        let mut best = [f64::INFINITY; 3];
        for _ in 0..rounds {
            best[0] = best[0].min(time(&mut || assert_eq!(ours.step(&grads).unwrap(), Applied), calls));
            best[1] = best[1].min(time(&mut || assert_eq!(core.step(&mut xs, &gs).unwrap(), Applied), calls));
            best[2] = best[2].min(time(&mut || adamw.step(&grads).unwrap(), calls));
        }
        let us = |s: f64| format!("{:.3} µs", s * 1e6);
        println!(
            "| {label} | {params} | {} | {} | {} | {:.2} | {:.1} |",
            us(best[0]),
            us(best[1]),
            us(best[2]),
            best[1] / best[0],
            best[2] / best[0]
        );
    }
}
