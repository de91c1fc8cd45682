//! 100 000 steps of the chapter's problem, for instruction counting
//! (`valgrind --tool=callgrind target/release/examples/step_loop`).
fn main() {
    let mut opt =
        rmsprop::Optimizer::<f32>::new(rmsprop::RmsProp::default(), &[("w", &[5, 1][..]), ("b", &[1][..])]).unwrap();
    let mut p = [vec![0.1f32; 5], vec![0.0]];
    let g = [vec![0.01f32; 5], vec![0.02]];
    for _ in 0..100_000 {
        opt.step(&mut p, &g).unwrap();
    }
    println!("{}", p[0][0]);
}
