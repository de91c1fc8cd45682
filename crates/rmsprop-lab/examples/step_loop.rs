//! Steps of the chapter's problem (100 000, or the count given), for instruction counting
//! (`valgrind --tool=callgrind target/release/examples/step_loop`).
fn main() {
    let mut opt =
        rmsprop::Optimizer::<f32>::new(rmsprop::RmsProp::default(), &[("w", &[5, 1][..]), ("b", &[1][..])]).unwrap();
    let mut p = [vec![0.1f32; 5], vec![0.0]];
    let g = [vec![0.01f32; 5], vec![0.02]];
    let steps: usize = std::env::args().nth(1).map_or(100_000, |s| s.parse().expect("a step count"));
    for _ in 0..steps {
        opt.step(&mut p, &g).unwrap();
    }
    println!("{}", p[0][0]);
}
