//! The chapter's trainer on a real network: a 5-16-1 tanh MLP on the airfoil data, its
//! gradients by candle, its steps by any optimizer of the `rmsprop` crate by name, in the
//! chapter's loop (two epochs of minibatches of 10, the loss logged every 100 examples),
//! the loss curve drawn as in the chapter (`train_mlp.svg`, `.png`). The model and loop
//! are `rmsprop_lab::mlp` (the CLI's `rmsprop train --model mlp`, built with `--features
//! candle`, runs the same).
//!
//! ```sh
//! cargo run --release -p rmsprop-candle --example train_mlp                       # Gluon's rmsprop, lr 0.01, gamma1 0.9
//! cargo run --release -p rmsprop-candle --example train_mlp -- pytorch.adam lr=0.001
//! ```

use rmsprop::by_name::Value;
use rmsprop_lab::plot::{self, LossPlot};
use rmsprop_lab::{data, mlp, train::Protocol};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "mxnet.rmsprop".into());
    let mut hyper: Vec<(String, Value)> = Vec::new();
    for pair in args {
        let (k, v) = pair.split_once('=').ok_or_else(|| format!("{pair:?}: expected KEY=VALUE"))?;
        hyper.push((k.into(), Value::parse(v)));
    }
    if hyper.is_empty() && name == "mxnet.rmsprop" {
        // the chapter's Trainer("rmsprop", {"learning_rate": 0.01, "gamma1": 0.9})
        hyper = vec![("learning_rate".into(), Value::Num(0.01)), ("gamma1".into(), Value::Num(0.9))];
    }
    let config = rmsprop::by_name::config(&name, hyper)?;

    let curve = mlp::train(&data::embedded(), &config, &Protocol::default())?;
    println!("{name}: {}", curve.printed());
    let curves = [(name.clone(), curve)];
    let figure = LossPlot { title: format!("5-16-1 MLP on the airfoil data, {name} through candle"), curves: &curves };
    let [svg, png] = plot::save(&figure, std::path::Path::new("train_mlp"), (640, 400))?;
    println!("wrote {} and {}", svg.display(), png.display());
    Ok(())
}
