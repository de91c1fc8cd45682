//! Final losses of the chapter's two trainings over seeds:
//! `cargo run --release -p rmsprop-lab --example band [-- PATH/airfoil_self_noise.dat]`
//! (the embedded copy when no path is given).
use rmsprop_lab::{data, train};

fn main() {
    let path = std::env::args().nth(1).map(std::path::PathBuf::from);
    let d = data::resolve(path.as_deref()).expect("readable data");
    let trainer = rmsprop::by_name::config("mxnet.rmsprop", [("learning_rate", 0.01), ("gamma1", 0.9)]).unwrap();
    for seed in 0..10 {
        let p = train::Protocol { seed, ..Default::default() };
        let s = train::train(&d, &train::Update::Scratch { lr: 0.01, gamma: 0.9 }, &p).unwrap();
        let t = train::train(&d, &train::Update::Trainer(trainer.clone()), &p).unwrap();
        println!(
            "seed {seed}: scratch loss: {:.6}, {:.6} sec per epoch | trainer loss: {:.6}, {:.6} sec per epoch",
            s.final_loss(),
            s.seconds_per_epoch,
            t.final_loss(),
            t.seconds_per_epoch
        );
    }
}
