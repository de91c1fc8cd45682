//! Save, load and continue through candle: bit-identical to a run that never stopped.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Module, VarBuilder, VarMap};
use rmsprop::Flavor;
use rmsprop_candle::Trainer;

struct Mlp {
    varmap: VarMap,
    l1: candle_nn::Linear,
    l2: candle_nn::Linear,
}

fn mlp(seed_from: Option<&std::path::Path>) -> Mlp {
    let mut varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    let (l1, l2) = (candle_nn::linear(5, 16, vb.pp("0")).unwrap(), candle_nn::linear(16, 1, vb.pp("2")).unwrap());
    if let Some(path) = seed_from {
        varmap.load(path).unwrap();
    }
    Mlp { varmap, l1, l2 }
}

fn train(m: &Mlp, trainer: &mut Trainer, steps: std::ops::Range<usize>) {
    for t in steps {
        let x: Vec<f64> = (0..50).map(|i| ((i * 7 + t * 3) % 11) as f64 / 11.0 - 0.5).collect();
        let x = Tensor::from_vec(x, (10, 5), &Device::Cpu).unwrap();
        let y = m.l2.forward(&m.l1.forward(&x).unwrap().tanh().unwrap()).unwrap();
        trainer.backward_step(&y.sqr().unwrap().mean_all().unwrap()).unwrap();
    }
}

fn weights(m: &Mlp) -> Vec<u64> {
    let data = m.varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    names.iter().flat_map(|n| data[*n].flatten_all().unwrap().to_vec1::<f64>().unwrap()).map(f64::to_bits).collect()
}

#[test]
fn save_load_and_continue_is_bit_identical() {
    let dir = std::env::temp_dir().join(format!("rmsprop-candle-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config =
        || Flavor::PyTorch.rmsprop().with_centered(true).with_momentum(0.9, rmsprop::MomentumStyle::LrOutsideBuffer);
    let straight = mlp(None);
    let mut trainer = Trainer::new(&straight.varmap, config()).unwrap();
    train(&straight, &mut trainer, 0..3);
    straight.varmap.save(dir.join("model.safetensors")).unwrap();
    trainer.save(dir.join("optimizer.safetensors")).unwrap();
    train(&straight, &mut trainer, 3..8);

    let resumed = mlp(Some(&dir.join("model.safetensors")));
    let mut again = Trainer::new(&resumed.varmap, config()).unwrap();
    again.load(dir.join("optimizer.safetensors")).unwrap();
    assert_eq!(again.step_count(), 3);
    train(&resumed, &mut again, 3..8);
    assert_eq!(weights(&resumed), weights(&straight));
    assert_eq!(again.state("0.weight", "grad_avg"), trainer.state("0.weight", "grad_avg"));

    // another optimizer's checkpoint, or another model's, is refused and changes nothing
    let mut adam = Trainer::new(&resumed.varmap, Flavor::PyTorch.config("adam").unwrap()).unwrap();
    let e = adam.load(dir.join("optimizer.safetensors")).unwrap_err().to_string();
    assert!(e.contains("rmsprop") && e.contains("adam"), "{e}");
    let other = VarMap::new();
    candle_nn::linear(5, 3, VarBuilder::from_varmap(&other, DType::F64, &Device::Cpu).pp("0")).unwrap();
    let mut small = Trainer::new(&other, config()).unwrap();
    let e = small.load(dir.join("optimizer.safetensors")).unwrap_err().to_string();
    assert!(e.contains("0.weight"), "{e}");
    assert_eq!(small.step_count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
