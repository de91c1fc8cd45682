//! Cost of the chapter's problem: one step on w (5x1), b (1) — with the default
//! non-finite check and without it — against the chapter's update written out by hand
//! for the same six numbers (the floor: no checks, no planning), timed in interleaved
//! rounds; then the whole 2-epoch from-scratch and trainer trainings:
//! `cargo run --release -p rmsprop-lab --example chapter_cost`.
use rmsprop::{NonFinitePolicy, Optimizer, RmsProp};
use rmsprop_lab::{bench, chapter, train};
use std::hint::black_box;

fn main() {
    let specs = [("w", &[5, 1][..]), ("b", &[1][..])];
    let grads = [vec![0.01f32; 5], vec![0.02]];
    let optimizer = |policy| {
        let opt = Optimizer::<f32>::new(RmsProp::default(), &specs).unwrap().with_nonfinite_policy(policy);
        (opt, [vec![0.1f32; 5], vec![0.0]])
    };
    let (mut checked, mut unchecked) = (optimizer(NonFinitePolicy::Error), optimizer(NonFinitePolicy::Propagate));
    // D2L eq. 12.8.1 with η = 0.01, γ = 0.9, ε = 1e-6, on the same arrays
    let (mut x, mut s) = ([vec![0.1f32; 5], vec![0.0]], [vec![0.0f32; 5], vec![0.0]]);
    let mut by_hand = || {
        for ((x, s), g) in x.iter_mut().zip(&mut s).zip(black_box(&grads)) {
            for ((x, s), &g) in x.iter_mut().zip(s.iter_mut()).zip(g) {
                *s = 0.9 * *s + 0.1 * g * g;
                *x -= 0.01 / (*s + 1e-6).sqrt() * g;
            }
        }
        black_box(&x);
    };
    let (grads_a, grads_b) = (&grads, &grads);
    let mut contenders: Vec<Box<dyn FnMut() + '_>> = vec![
        Box::new(|| {
            let (opt, p) = &mut checked;
            opt.step(p, grads_a).unwrap();
        }),
        Box::new(|| {
            let (opt, p) = &mut unchecked;
            opt.step(p, grads_b).unwrap();
        }),
        Box::new(&mut by_hand),
    ];
    let secs = bench::interleaved(&mut contenders, 21, 0.02);
    drop(contenders);
    let best = |v: &[f64]| 1e9 * v.iter().copied().fold(f64::INFINITY, f64::min);
    let ratio = |c: usize| {
        let mut r: Vec<f64> = secs[c].iter().zip(&secs[2]).map(|(a, b)| a / b).collect();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    };
    println!(
        "one step (w 5x1, b 1): {:.1} ns ({:.1} ns without the non-finite check); the update by hand: {:.1} ns; \
         ratio to it (median of 21 rounds): {:.2} and {:.2}",
        best(&secs[0]),
        best(&secs[1]),
        best(&secs[2]),
        ratio(0),
        ratio(1)
    );

    let d = rmsprop_lab::data::embedded();
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
    println!("2-epoch training: {scratch:.3} ms from scratch, {trainer:.3} ms through the trainer ({} rows)", d.rows);
}
