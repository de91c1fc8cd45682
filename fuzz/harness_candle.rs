// The candle adapter's fuzz body: a trainer built from any aliasing of a few variables
// (one `Var` under several names, names given twice, a gradient that is a variable). Included
// by `fuzz_targets/candle.rs` and by `crates/rmsprop-candle/tests/fuzz_corpus.rs`, which replays
// the committed corpus in the project's ordinary `cargo test`.
//
// It must return (a step that never returns is a hang, which the fuzzer reports); a built
// trainer steps each storage once, exactly as a trainer of the distinct variables alone does;
// a refused step changes no variable.

use candle_core::{Device, Tensor, Var};
use rmsprop_candle::Trainer;

/// The first byte: how many distinct variables (1 to 4) and whether a gradient is swapped for
/// a variable; every further byte (at most 8): an entry, naming variable `b % n` as `p{b / 16 % 6}`.
pub fn candle_aliasing(bytes: &[u8]) {
    let Some((&head, entries)) = bytes.split_first() else { return };
    let n = usize::from(head % 4) + 1;
    let swap_gradient = head & 0x80 != 0;
    let start = |i: usize| [1.0f32 + i as f32, -0.5 * i as f32, 0.25];
    let vars: Vec<Var> = (0..n).map(|i| Var::new(&start(i), &Device::Cpu).expect("a variable")).collect();
    let named: Vec<(String, Var)> =
        entries.iter().take(8).map(|&b| (format!("p{}", b / 16 % 6), vars[usize::from(b) % n].clone())).collect();
    if named.is_empty() {
        return;
    }
    let Ok(mut trainer) = Trainer::from_named(named.clone(), rmsprop::Flavor::PyTorch.rmsprop().with_lr(0.1)) else {
        return;
    };
    // every entry is stepped under its own name or is an alias of one
    let names: Vec<String> = trainer.names().iter().map(|s| s.to_string()).collect();
    for (name, _) in &named {
        assert!(
            names.contains(name) || trainer.aliases().iter().any(|(a, _)| a == name),
            "entry {name} is neither stepped nor an alias"
        );
    }
    // each name the trainer steps is one distinct variable
    let stepped: Vec<Var> = names
        .iter()
        .map(|name| named.iter().find(|(n, _)| n == name).expect("a stepped name is an entry").1.clone())
        .collect();
    for (i, a) in stepped.iter().enumerate() {
        assert!(stepped[..i].iter().all(|b| b.id() != a.id()), "one variable stepped twice");
    }
    // the loss uses every entry: a variable named twice gets the sum of both uses' gradients
    let loss = named
        .iter()
        .map(|(_, v)| v.as_tensor().sqr().and_then(|t| t.sum_all()).expect("a loss"))
        .reduce(|a, b| (a + b).expect("a sum"))
        .expect("entries");
    let mut grads = loss.backward().expect("gradients");
    let before: Vec<Vec<f32>> = vars.iter().map(|v| v.as_tensor().to_vec1().expect("values")).collect();
    if swap_gradient {
        // another variable of the trainer, or the variable itself: either is refused (a
        // variable the trainer does not step is a tensor like any other)
        let a = &stepped[0];
        let b = stepped.iter().find(|v| v.id() != a.id()).unwrap_or(a);
        grads.insert(a.as_tensor(), b.as_tensor().clone());
        let refused = trainer.step(&grads);
        assert!(refused.is_err(), "a gradient on a variable's storage was accepted");
        let after: Vec<Vec<f32>> = vars.iter().map(|v| v.as_tensor().to_vec1().expect("values")).collect();
        assert_eq!(before, after, "a refused step changed a variable");
        return;
    }
    // the reference: the distinct variables, copied, given once each, with the same gradients
    let copies: Vec<(String, Var)> = names
        .iter()
        .zip(&stepped)
        .map(|(name, v)| (name.clone(), Var::from_tensor(&v.as_tensor().copy().expect("a copy")).expect("a var")))
        .collect();
    let mut reference = Trainer::from_named(copies.clone(), rmsprop::Flavor::PyTorch.rmsprop().with_lr(0.1))
        .expect("distinct variables build");
    let dummy: Tensor = copies
        .iter()
        .map(|(_, v)| v.as_tensor().sum_all().expect("a sum"))
        .reduce(|a, b| (a + b).expect("a sum"))
        .expect("copies");
    let mut reference_grads = dummy.backward().expect("gradients");
    for ((_, copy), original) in copies.iter().zip(&stepped) {
        let g = grads.get(original.as_tensor()).expect("a gradient").copy().expect("a copy");
        reference_grads.insert(copy.as_tensor(), g);
    }
    trainer.step(&grads).expect("a valid step");
    reference.step(&reference_grads).expect("a valid step");
    for ((_, copy), original) in copies.iter().zip(&stepped) {
        let (a, b): (Vec<f32>, Vec<f32>) = (original.as_tensor().to_vec1().expect("values"), copy.as_tensor().to_vec1().expect("values"));
        assert_eq!(a, b, "a tied variable stepped differently from the same variable given once");
    }
}
