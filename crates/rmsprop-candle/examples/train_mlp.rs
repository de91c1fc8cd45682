//! The chapter's trainer on a real network: a 5-16-1 tanh MLP on the airfoil data, its
//! gradients by candle, its steps by any optimizer of the `rmsprop` crate by name, the loss
//! curve logged every 10 batches and drawn as in the chapter (`train_mlp.svg`, `.png`).
//!
//! ```sh
//! cargo run --release -p rmsprop-candle --example train_mlp                       # Gluon's rmsprop, lr 0.01, gamma1 0.9
//! cargo run --release -p rmsprop-candle --example train_mlp -- pytorch.adam lr=0.001
//! ```

use candle_core::{DType, Device, Tensor};
use candle_nn::{Module, VarBuilder, VarMap};
use rmsprop::by_name::Value;
use rmsprop_candle::Trainer;
use rmsprop_lab::plot::{self, LossPlot};
use rmsprop_lab::train::Curve;

const EPOCHS: usize = 2;
const BATCH: usize = 10;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "mxnet.rmsprop".into());
    let mut hyper: Vec<(String, Value)> = Vec::new();
    for pair in args {
        let (k, v) = pair.split_once('=').ok_or_else(|| format!("{pair:?}: expected KEY=VALUE"))?;
        hyper.push((k.into(), Value::parse(v)));
    }
    if hyper.is_empty() && name == "mxnet.rmsprop" {
        hyper = vec![("learning_rate".into(), Value::Num(0.01)), ("gamma1".into(), Value::Num(0.9))];
    }

    let data = rmsprop_lab::data::embedded();
    let features = Tensor::from_vec(data.features.clone(), (data.rows, rmsprop_lab::data::FEATURES), &Device::Cpu)?;
    let labels = Tensor::from_vec(data.labels.clone(), data.rows, &Device::Cpu)?;

    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let (hidden, out) = (candle_nn::linear(5, 16, vb.pp("0"))?, candle_nn::linear(16, 1, vb.pp("2"))?);
    let loss = |x: &Tensor, y: &Tensor| -> candle_core::Result<Tensor> {
        let y_hat = out.forward(&hidden.forward(x)?.tanh()?)?.squeeze(1)?;
        (y_hat - y)?.sqr()?.mean_all()? * 0.5
    };
    let mut trainer = Trainer::by_name(&varmap, &name, hyper.iter().map(|(k, v)| (k.as_str(), v.clone())))?;

    // a fixed shuffle: row i of epoch e is (i * 7919 + e * 104729) mod n
    let n = data.rows;
    let batches = n.div_ceil(BATCH);
    let initial = loss(&features, &labels)?.to_scalar::<f32>()? as f64;
    let mut curve =
        Curve { epochs: vec![0.0], loss: vec![initial], seconds_per_epoch: 0.0, diverged: None, diverged_epoch: None };
    let start = std::time::Instant::now();
    for epoch in 0..EPOCHS {
        for b in 0..batches {
            let rows: Vec<u32> =
                (b * BATCH..((b + 1) * BATCH).min(n)).map(|i| ((i * 7919 + epoch * 104729) % n) as u32).collect();
            let idx = Tensor::new(rows.as_slice(), &Device::Cpu)?;
            let l = loss(&features.index_select(&idx, 0)?, &labels.index_select(&idx, 0)?)?;
            trainer.backward_step(&l)?;
            if (b + 1) % 10 == 0 || b + 1 == batches {
                curve.epochs.push(epoch as f64 + (b + 1) as f64 / batches as f64);
                curve.loss.push(loss(&features, &labels)?.to_scalar::<f32>()? as f64);
            }
        }
    }
    curve.seconds_per_epoch = start.elapsed().as_secs_f64() / EPOCHS as f64;
    println!(
        "{name}: loss {:.6} -> {:.6} in {EPOCHS} epochs ({:.1} ms per epoch)",
        curve.loss[0],
        curve.final_loss(),
        curve.seconds_per_epoch * 1e3
    );
    let curves = [(name.clone(), curve)];
    let figure = LossPlot { title: format!("5-16-1 MLP on the airfoil data, {name} through candle"), curves: &curves };
    let [svg, png] = plot::save(&figure, std::path::Path::new("train_mlp"), (640, 400))?;
    println!("wrote {} and {}", svg.display(), png.display());
    Ok(())
}
