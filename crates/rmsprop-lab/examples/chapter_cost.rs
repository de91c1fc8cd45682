//! Cost of the chapter's problem: one step on w (5x1), b (1), and the whole 2-epoch
//! from-scratch and trainer trainings (`cargo run --release -p rmsprop-lab --example chapter_cost`).
use rmsprop_lab::{bench, chapter, data, train};
fn main() {
    let mut opt =
        rmsprop::Optimizer::<f32>::new(rmsprop::RmsProp::default(), &[("w", &[5, 1][..]), ("b", &[1][..])]).unwrap();
    let mut p = [vec![0.1f32; 5], vec![0.0]];
    let g = [vec![0.01f32; 5], vec![0.02]];
    let step = bench::best_time(
        || {
            opt.step(&mut p, &g).unwrap();
        },
        5,
        0.1,
    );
    let mut opt2 = rmsprop::Optimizer::<f32>::new(rmsprop::RmsProp::default(), &[("w", &[5, 1][..]), ("b", &[1][..])])
        .unwrap()
        .with_nonfinite_policy(rmsprop::NonFinitePolicy::Propagate);
    let step2 = bench::best_time(
        || {
            opt2.step(&mut p, &g).unwrap();
        },
        5,
        0.1,
    );
    println!("propagate: {:.1} ns", step2 * 1e9);
    let (d, _) = chapter::chapter_data(None, true, None);
    let proto = train::Protocol::default();
    let scratch = bench::best_time(
        || {
            train::train(&d, &train::Update::Scratch { lr: 0.01, gamma: 0.9 }, &proto).unwrap();
        },
        5,
        0.1,
    );
    let trainer = bench::best_time(
        || {
            train::train(&d, &train::Update::Trainer(chapter::gluon_trainer()), &proto).unwrap();
        },
        5,
        0.1,
    );
    println!(
        "one step (w 5x1, b 1): {:.1} ns; scratch training: {:.3} ms; trainer training: {:.3} ms ({} rows, {:?})",
        step * 1e9,
        scratch * 1e3,
        trainer * 1e3,
        d.rows,
        d.source
    );
    let _ = data::FILE_NAME;
}
