//! Cost of the chapter's problem: one step on w (5x1), b (1) — with the default
//! non-finite check and without it — and the whole 2-epoch from-scratch and trainer
//! trainings: `cargo run --release -p rmsprop-lab --example chapter_cost`.
use rmsprop::{NonFinitePolicy, Optimizer, RmsProp};
use rmsprop_lab::{bench, chapter, train};

fn main() {
    let specs = [("w", &[5, 1][..]), ("b", &[1][..])];
    let (mut p, g) = ([vec![0.1f32; 5], vec![0.0]], [vec![0.01f32; 5], vec![0.02]]);
    let mut step_ns = |policy| {
        let mut opt = Optimizer::<f32>::new(RmsProp::default(), &specs).unwrap().with_nonfinite_policy(policy);
        1e9 * bench::best_time(
            || {
                opt.step(&mut p, &g).unwrap();
            },
            5,
            0.1,
        )
    };
    let (checked, unchecked) = (step_ns(NonFinitePolicy::Error), step_ns(NonFinitePolicy::Propagate));
    let (d, _) = chapter::chapter_data(None, true, None);
    let protocol = train::Protocol::default();
    let ms = |update: train::Update| {
        1e3 * bench::best_time(
            || {
                train::train(&d, &update, &protocol).unwrap();
            },
            5,
            0.1,
        )
    };
    let scratch = ms(train::Update::Scratch { lr: 0.01, gamma: 0.9 });
    let trainer = ms(train::Update::Trainer(chapter::gluon_trainer()));
    println!(
        "one step (w 5x1, b 1): {checked:.1} ns ({unchecked:.1} ns without the non-finite check); \
         2-epoch training: {scratch:.3} ms from scratch, {trainer:.3} ms through the trainer ({} rows)",
        d.rows
    );
}
