//! State kept in bfloat16 and in block-wise 8 bits ([`StateStorage`]): every optimizer and
//! flavour against the element-wise reference, the `f32` optimizer whose state is rounded
//! through the public quantiser (`quant`) between steps, bit for bit; the safeguards;
//! checkpoints; the non-finite policy; memory.

mod support;

use rmsprop::{
    Error, Flavor, NonFinitePolicy, Optimizer, OptimizerConfig, Parallelism, RmsProp, StateStorage, StepOutcome,
};
use support::kept;

const STORAGES: [StateStorage; 2] = [StateStorage::Bf16, StateStorage::Int8];

/// The tensors: one of two chunks and a ragged last block, one of a few blocks, one
/// below the 8-bit size (kept in `f32` under `Int8`).
const TENSORS: [(&str, usize); 3] = [("w", rmsprop::CHUNK + 1000 + 37), ("v", 4096 + 5), ("b", 300)];

/// A deterministic stream of values in `[-1, 1)` (SplitMix64).
struct Stream(u64);
impl Stream {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// Gradients of magnitudes spread over several decades, as a network's are.
    fn grads(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next() * 10f32.powf(3.0 * self.next())).collect()
    }
}

/// Every optimizer and the flavours' variants that change what state is kept.
fn configs() -> Vec<(String, OptimizerConfig)> {
    let named = [
        ("pytorch.rmsprop", vec![]),
        ("pytorch.rmsprop", vec![("centered", 1.0), ("momentum", 0.9)]),
        ("pytorch.rmsprop", vec![("momentum", 0.5), ("weight_decay", 0.01)]),
        ("keras.rmsprop", vec![("centered", 1.0)]),
        ("tf1.rmsprop", vec![("momentum", 0.9), ("centered", 1.0)]),
        ("optax.rmsprop", vec![("centered", 1.0)]),
        ("mxnet.rmsprop", vec![("centered", 1.0)]),
        ("d2l.rmsprop", vec![]),
        ("timm.rmsprop", vec![("momentum", 0.9)]),
        ("pytorch.adagrad", vec![]),
        ("pytorch.adam", vec![]),
        ("pytorch.adamw", vec![("amsgrad", 1.0)]),
        ("optax.adam", vec![]),
        ("pytorch.adadelta", vec![]),
        ("pytorch.sgd", vec![("momentum", 0.9), ("nesterov", 1.0)]),
        ("pytorch.yogi", vec![]),
    ];
    named
        .into_iter()
        .map(|(name, hyper)| {
            let hyper: Vec<(&str, rmsprop::by_name::Value)> = hyper
                .into_iter()
                .map(|(k, v)| {
                    let flag = matches!(k, "centered" | "amsgrad" | "nesterov");
                    (k, if flag { (v != 0.0).into() } else { v.into() })
                })
                .collect();
            let config = rmsprop::by_name::config(name, hyper.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            (format!("{name} {hyper:?}"), config)
        })
        .collect()
}

fn with_storage(mut config: OptimizerConfig, storage: StateStorage) -> OptimizerConfig {
    config.common_mut().state_storage = storage;
    config
}

fn specs() -> Vec<(&'static str, Vec<usize>)> {
    TENSORS.iter().map(|&(n, len)| (n, vec![len])).collect()
}

fn build(config: OptimizerConfig, parallel: Parallelism) -> Optimizer<f32> {
    let specs = specs();
    let specs: Vec<(&str, &[usize])> = specs.iter().map(|(n, s)| (*n, &s[..])).collect();
    Optimizer::<f32>::new(config, &specs).unwrap().with_parallelism(parallel)
}

/// Every slot's state of every tensor, decoded.
fn state_of(opt: &Optimizer<f32>, slots: &[&'static str]) -> Vec<(String, Vec<f32>)> {
    let mut all = Vec::new();
    for (t, _) in TENSORS {
        for s in slots {
            all.push((format!("{t}.{s}"), opt.state(t, s).unwrap().into_owned()));
        }
    }
    all
}

/// The packed optimizer against the `f32` one whose state is replaced, before every step,
/// by what the storage keeps of it (and a centred average raised to its mean's square):
/// parameters and state bit for bit, serial and across threads.
#[test]
fn every_optimizer_in_every_storage_is_the_f32_step_on_the_kept_state() {
    for (name, config) in configs() {
        let slots = config.state_names();
        let centred = slots.contains(&"grad_avg") && slots.contains(&"square_avg");
        for storage in STORAGES {
            for parallel in [Parallelism::Serial, Parallelism::Parallel] {
                let mut packed = build(with_storage(config.clone(), storage), parallel);
                let mut reference = build(config.clone(), parallel);
                let mut rng = Stream(7);
                let mut xp: Vec<Vec<f32>> =
                    TENSORS.iter().map(|&(_, n)| (0..n).map(|_| rng.next()).collect()).collect();
                let mut xr = xp.clone();
                for step in 1..=6 {
                    // the reference's state: what the storage keeps, raised where centred
                    let mut state = state_of(&reference, &slots);
                    for (t, _) in TENSORS {
                        let tensor_storage = packed.state_storage(t).unwrap();
                        for (key, values) in state.iter_mut().filter(|(k, _)| k.starts_with(&format!("{t}."))) {
                            let squares = !(key.ends_with("grad_avg")
                                || key.ends_with("momentum_buffer")
                                || key.ends_with(".exp_avg"));
                            *values = kept(values, tensor_storage, squares);
                        }
                        if centred && tensor_storage != StateStorage::F32 {
                            let m = state.iter().find(|(k, _)| *k == format!("{t}.grad_avg")).unwrap().1.clone();
                            let s = &mut state.iter_mut().find(|(k, _)| *k == format!("{t}.square_avg")).unwrap().1;
                            for (s, m) in s.iter_mut().zip(&m) {
                                *s = s.max(m * m * (1.0 + 2.0 * f32::EPSILON));
                            }
                        }
                    }
                    let entries: Vec<(&str, &str, &[f32])> = state
                        .iter()
                        .map(|(k, v)| {
                            let (t, s) = k.split_once('.').unwrap();
                            (t, s, &v[..])
                        })
                        .collect();
                    reference.set_state(reference.step_count(), &entries).unwrap();
                    let g: Vec<Vec<f32>> = TENSORS.iter().map(|&(_, n)| rng.grads(n)).collect();
                    packed.step(&mut xp, &g).unwrap_or_else(|e| panic!("{name} {storage}: {e}"));
                    reference.step(&mut xr, &g).unwrap();
                    let what = format!("{name}, {storage} state, {parallel:?}, step {step}");
                    for (i, (a, b)) in xp.iter().zip(&xr).enumerate() {
                        let differs = a.iter().zip(b).position(|(a, b)| a.to_bits() != b.to_bits());
                        assert_eq!(differs, None, "{what}: parameter {} differs", TENSORS[i].0);
                    }
                    // the packed state is what the storage keeps of the reference's
                    // (decoded again: a centred average as kept, before its next raise)
                    for ((key, ours), (_, theirs)) in state_of(&packed, &slots).iter().zip(state_of(&reference, &slots))
                    {
                        let (t, _) = key.split_once('.').unwrap();
                        let squares = !(key.ends_with("grad_avg")
                            || key.ends_with("momentum_buffer")
                            || key.ends_with(".exp_avg"));
                        let theirs = kept(&theirs, packed.state_storage(t).unwrap(), squares);
                        let differs = ours.iter().zip(&theirs).position(|(a, b)| a.to_bits() != b.to_bits());
                        assert_eq!(differs, None, "{what}: state {key} differs");
                    }
                }
            }
        }
    }
}

#[test]
fn the_state_takes_the_bytes_it_should() {
    let tensors = [("w", &[1024, 1024][..]), ("b", &[1024][..])];
    let bytes = |storage| {
        let config = RmsProp::default().with_centered(true).with_state_storage(storage);
        Optimizer::<f32>::new(config, &tensors).unwrap().state_bytes()
    };
    let f32_bytes = bytes(StateStorage::F32);
    assert_eq!(f32_bytes, 2 * 4 * (1 << 20) + 2 * 4 * 1024);
    assert_eq!(bytes(StateStorage::Bf16) * 2, f32_bytes);
    // codes and a scale per 256 for w; b (below 4096 elements) in f32: ≤ 27 % of f32
    assert_eq!(bytes(StateStorage::Int8), 2 * ((1 << 20) + (1 << 20) / 256 * 4) + 2 * 4 * 1024);
    assert!(bytes(StateStorage::Int8) as f64 <= 0.27 * f32_bytes as f64);
    // bitsandbytes' min_8bit_size: 0 packs b too (a block of 256 codes per 1024 values)
    let config = rmsprop::by_name::config(
        "rmsprop",
        [
            ("centered", rmsprop::by_name::Value::from(true)),
            ("state_storage", "int8".into()),
            ("min_8bit_size", 0.0.into()),
        ],
    )
    .unwrap();
    let all = Optimizer::<f32>::new(config.clone(), &tensors).unwrap();
    assert_eq!(
        (all.state_storage("b"), all.state_bytes()),
        (Some(StateStorage::Int8), 2 * ((1 << 20) + 1024 + (1 << 20 | 1024) / 256 * 4))
    );
    assert_eq!(rmsprop::by_name::config("rmsprop", rmsprop::by_name::hyperparameters(&config)).unwrap(), config);
    // codes packed back to back, a scale per started block of each tensor: no padding
    let ragged = [("w", &[5000][..]), ("b", &[10][..])];
    let opt = Optimizer::<f32>::new(config.clone(), &ragged).unwrap();
    assert_eq!(opt.state_bytes(), 2 * (5010 + (20 + 1) * 4));
    let e = rmsprop::by_name::config("rmsprop", [("min_8bit_size", -1.0)]).unwrap_err().to_string();
    assert!(e.contains("a whole number >= 0"), "{e}");
}

/// A square far below its block's largest value encodes to the smallest positive code, not
/// to 0: with ε outside the root (PyTorch, ε = 1e-8 here) a 0 would make the step
/// `η g / ε`; the kept value is at least the true one, so the step is at most f32's.
#[test]
fn a_tiny_denominator_never_decodes_to_zero() {
    let n = 4096;
    for storage in STORAGES {
        let config = with_storage(Flavor::PyTorch.config("rmsprop").unwrap(), storage);
        let mut opt = Optimizer::<f32>::new(config.clone(), &[("w", &[n][..])]).unwrap();
        let mut reference =
            Optimizer::<f32>::new(Flavor::PyTorch.config("rmsprop").unwrap(), &[("w", &[n][..])]).unwrap();
        // one large gradient in the block, the others 1e-20: s = 0.01 g² is 1e-42 there (an
        // f32 subnormal), below bfloat16's range and 1e-44 of the block's scale 100
        let mut g = vec![1e-20f32; n];
        g[0] = 100.0;
        let (mut x, mut xr) = (vec![vec![0.0f32; n]], vec![vec![0.0f32; n]]);
        opt.step(&mut x, std::slice::from_ref(&g)).unwrap();
        reference.step(&mut xr, std::slice::from_ref(&g)).unwrap();
        let s = opt.state("w", "square_avg").unwrap();
        assert!(s[1] > 0.0, "{storage}: a positive square decoded to {}", s[1]);
        // a second step with the tiny gradients: |Δx| no larger than with f32 state
        let g2 = vec![1e-20f32; n];
        let before = x[0][1];
        let before_r = xr[0][1];
        opt.step(&mut x, std::slice::from_ref(&g2)).unwrap();
        reference.step(&mut xr, std::slice::from_ref(&g2)).unwrap();
        let (ours, f32_step) = ((x[0][1] - before).abs(), (xr[0][1] - before_r).abs());
        assert!(ours <= f32_step, "{storage}: moved {ours:e}, f32 state {f32_step:e}");
    }
}

/// Rounding the averages can leave `s < m²`, which would put a negative variance under the
/// root; the kept average is raised to its mean's square, and the step stays finite where
/// the f32 state's is (here: every gradient the same, the variance exactly 0 in exact
/// arithmetic, ε = 1e-8 inside).
#[test]
fn a_centred_variance_stays_non_negative() {
    for storage in STORAGES {
        let config = with_storage(Flavor::Keras.config("rmsprop").unwrap(), storage);
        let OptimizerConfig::RmsProp(r) = config else { unreachable!() };
        let config = r.with_centered(true);
        let mut opt = Optimizer::<f32>::new(config, &[("w", &[8192][..])]).unwrap();
        let mut x = vec![vec![0.0f32; 8192]];
        let g: Vec<f32> = (0..8192).map(|i| 1.0 + (i % 97) as f32 * 0.37).collect();
        for _ in 0..50 {
            assert_eq!(opt.step(&mut x, std::slice::from_ref(&g)).unwrap(), StepOutcome::Applied, "{storage}");
        }
        assert!(x[0].iter().all(|v| v.is_finite()), "{storage}");
        let (s, m) = (opt.state("w", "square_avg").unwrap(), opt.state("w", "grad_avg").unwrap());
        assert!(s.iter().zip(m.iter()).all(|(s, m)| s.is_finite() && m.is_finite()));
    }
}

/// A refused step (a non-finite gradient, a result that would overflow) leaves parameters
/// and the packed state bit-identical, under `Error` and under `Skip`.
#[test]
fn a_failed_step_leaves_packed_state_as_it_was() {
    for storage in STORAGES {
        for policy in [NonFinitePolicy::Error, NonFinitePolicy::Skip] {
            let config = with_storage(Flavor::PyTorch.config("adam").unwrap(), storage);
            let mut opt = Optimizer::<f32>::new(config, &[("w", &[5000][..])]).unwrap().with_nonfinite_policy(policy);
            let mut rng = Stream(3);
            let mut x = vec![(0..5000).map(|_| rng.next()).collect::<Vec<f32>>()];
            opt.step(&mut x, &[rng.grads(5000)]).unwrap();
            let (x0, m0, v0) = (
                x.clone(),
                opt.state("w", "exp_avg").unwrap().into_owned(),
                opt.state("w", "exp_avg_sq").unwrap().into_owned(),
            );
            for bad in [f32::NAN, 1e30] {
                let mut g = rng.grads(5000);
                g[4321] = bad; // NaN: refused by the scan; 1e30: its square overflows
                let outcome = opt.step(&mut x, &[g]);
                match policy {
                    NonFinitePolicy::Skip => assert_eq!(outcome.unwrap(), StepOutcome::Skipped),
                    _ => assert!(
                        matches!(outcome, Err(Error::NonFiniteGradient { .. } | Error::NonFiniteResult { .. })),
                        "{outcome:?}"
                    ),
                }
                let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same(&x[0], &x0[0]), "{storage} {policy:?}: the parameters changed");
                assert!(same(&opt.state("w", "exp_avg").unwrap(), &m0), "{storage} {policy:?}: exp_avg changed");
                assert!(same(&opt.state("w", "exp_avg_sq").unwrap(), &v0), "{storage} {policy:?}: exp_avg_sq changed");
                assert_eq!(opt.step_count(), 1);
            }
        }
    }
}

#[test]
fn a_float64_optimizer_refuses_packed_state_and_storage_cannot_change_later() {
    let config = RmsProp::default().with_state_storage(StateStorage::Int8);
    let e = Optimizer::<f64>::new(config, &[("w", &[4][..])]).unwrap_err().to_string();
    assert!(e.contains("state_storage int8 packs float32 state"), "{e}");
    let mut opt = Optimizer::<f32>::new(RmsProp::default(), &[("w", &[4][..])]).unwrap();
    opt.group_mut(0).unwrap().common_mut().state_storage = StateStorage::Bf16;
    let e = opt.step(&mut [vec![0.0f32; 4]], &[vec![1.0f32; 4]]).unwrap_err().to_string();
    assert!(e.contains("cannot change to bf16"), "{e}");
    let e = rmsprop::by_name::config("rmsprop", [("state_storage", "int4")]).unwrap_err().to_string();
    assert!(e.contains("state_storage=int4") && e.contains("f32, bf16, int8"), "{e}");
    let c = rmsprop::by_name::config("rmsprop", [("state_storage", "bf16")]).unwrap();
    assert_eq!(c.common().state_storage, StateStorage::Bf16);
    assert_eq!(rmsprop::by_name::config("rmsprop", rmsprop::by_name::hyperparameters(&c)).unwrap(), c);
}

/// The same step in a shard of a partition (ZeRO-1): pieces start on chunks, so on blocks,
/// and keep the whole tensor's storage (a piece below 4096 elements of a larger tensor
/// stays 8-bit).
#[test]
fn a_shard_keeps_the_whole_tensors_blocks() {
    use rmsprop::{Partition, Solo};
    let n = 2 * rmsprop::CHUNK + 100;
    let tensors = [("w", &[n][..])];
    let config = RmsProp::default().with_state_storage(StateStorage::Int8);
    let mut whole = Optimizer::<f32>::new(config.clone(), &tensors).unwrap();
    let partition = Partition::balanced(&tensors, 3).unwrap();
    let mut rng = Stream(11);
    let mut x = vec![(0..n).map(|_| rng.next()).collect::<Vec<f32>>()];
    let g = vec![rng.grads(n)];
    let mut pieces_x = Vec::new();
    for rank in 0..3 {
        let mut shard = Optimizer::<f32>::sharded(config.clone(), &tensors, &partition, rank).unwrap();
        let r = partition.pieces(rank)[0].clone();
        let mut px = vec![x[0][r.clone()].to_vec()];
        shard.step_in(&Solo, &mut px, &[g[0][r.clone()].to_vec()]).unwrap();
        assert_eq!(shard.state_storage("w"), Some(StateStorage::Int8));
        pieces_x.push((r, px.remove(0), shard.state("w", "square_avg").unwrap().into_owned()));
    }
    whole.step(&mut x, &g).unwrap();
    let s = whole.state("w", "square_avg").unwrap();
    for (r, px, ps) in pieces_x {
        assert_eq!(px, x[0][r.clone()]);
        assert_eq!(ps, s[r]);
    }
}

/// Stochastic rounding to bfloat16 (`bf16_stochastic_round`): the kept state is, bit for
/// bit, each value rounded with the random bits `quant::stochastic_bits` gives for its
/// step, tensor, slot and index — serial and across threads alike.
#[test]
fn stochastic_rounding_is_the_f32_step_rounded_with_the_counters_bits() {
    use rmsprop::quant::{from_bf16, stochastic_bits, to_bf16_stochastic};
    let named = [
        ("pytorch.adam", vec![]),
        ("pytorch.rmsprop", vec![("centered", rmsprop::by_name::Value::Bool(true)), ("momentum", 0.9.into())]),
    ];
    for (name, hyper) in named {
        let mut config = rmsprop::by_name::config(name, hyper).unwrap();
        let slots = config.state_names(); // every slot used, in the optimizer's order
        let centred = slots.contains(&"grad_avg");
        for parallel in [Parallelism::Serial, Parallelism::Parallel] {
            let reference_config = config.clone();
            config.common_mut().state_storage = StateStorage::Bf16;
            config.common_mut().bf16_stochastic_round = true;
            let mut packed = build(config.clone(), parallel);
            let mut reference = build(reference_config, parallel);
            let mut rng = Stream(5);
            let mut xp: Vec<Vec<f32>> = TENSORS.iter().map(|&(_, n)| (0..n).map(|_| rng.next()).collect()).collect();
            let mut xr = xp.clone();
            for step in 1..=4u64 {
                let g: Vec<Vec<f32>> = TENSORS.iter().map(|&(_, n)| rng.grads(n)).collect();
                packed.step(&mut xp, &g).unwrap();
                reference.step(&mut xr, &g).unwrap();
                assert_eq!(xp, xr, "{name} {parallel:?} step {step}");
                let mut next = Vec::new();
                for (t, (tensor, _)) in TENSORS.iter().enumerate() {
                    for (k, slot) in slots.iter().enumerate() {
                        let theirs = reference.state(tensor, slot).unwrap();
                        let squares = !matches!(*slot, "grad_avg" | "momentum_buffer" | "exp_avg");
                        let kept: Vec<f32> = theirs
                            .iter()
                            .enumerate()
                            .map(|(i, &v)| {
                                let h = to_bf16_stochastic(v, stochastic_bits(step, t, k, i as u64));
                                from_bf16(if squares && v > 0.0 && h == 0 { 1 } else { h })
                            })
                            .collect();
                        let ours = packed.state(tensor, slot).unwrap();
                        let differs = ours.iter().zip(&kept).position(|(a, b)| a.to_bits() != b.to_bits());
                        assert_eq!(differs, None, "{name} {parallel:?} step {step}: {tensor}.{slot}");
                        next.push((*tensor, *slot, kept));
                    }
                }
                // the reference continues from the kept state (raised where centred, as
                // every packed step's decode does)
                if centred {
                    for t in TENSORS.iter().map(|t| t.0) {
                        let m = next.iter().find(|e| e.0 == t && e.1 == "grad_avg").unwrap().2.clone();
                        let s = &mut next.iter_mut().find(|e| e.0 == t && e.1 == "square_avg").unwrap().2;
                        for (s, m) in s.iter_mut().zip(&m) {
                            *s = s.max(m * m * (1.0 + 2.0 * f32::EPSILON));
                        }
                    }
                }
                let entries: Vec<(&str, &str, &[f32])> = next.iter().map(|(t, s, v)| (*t, *s, &v[..])).collect();
                reference.set_state(reference.step_count(), &entries).unwrap();
            }
        }
    }
}

/// Why stochastic rounding: Adam's `v` with β₂ = 0.999 and a constant gradient of 1 grows as
/// `1 - 0.999^t`; in bfloat16 rounded to nearest it stops where `0.001 (1 - v)` falls below
/// half a bfloat16 step of `v`, well short of 0.632 after 1000 steps; rounded
/// stochastically it follows float32's on average.
#[test]
fn stochastic_rounding_keeps_a_slow_average_moving() {
    let mean_v = |stochastic: bool| {
        let mut c = rmsprop::by_name::config("pytorch.adam", [("lr", 1e-6)]).unwrap();
        (c.common_mut().state_storage, c.common_mut().bf16_stochastic_round) = (StateStorage::Bf16, stochastic);
        let mut opt = Optimizer::<f32>::new(c, &[("w", &[1024][..])]).unwrap();
        let (mut x, g) = (vec![vec![0.0f32; 1024]], vec![vec![1.0f32; 1024]]);
        for _ in 0..1000 {
            opt.step(&mut x, &g).unwrap();
        }
        let v = opt.state("w", "exp_avg_sq").unwrap();
        v.iter().map(|&v| v as f64).sum::<f64>() / 1024.0
    };
    let exact = 1.0 - 0.999f64.powi(1000);
    let (nearest, stochastic) = (mean_v(false), mean_v(true));
    assert!(nearest < 0.6 * exact, "nearest {nearest} against {exact}");
    assert!((stochastic / exact - 1.0).abs() < 0.02, "stochastic {stochastic} against {exact}");
    // without bfloat16 state: refused by the configuration's validation (by name, before
    // any tensor is registered) and by the optimizer
    let e = rmsprop::by_name::config("rmsprop", [("bf16_stochastic_round", true)]).unwrap_err().to_string();
    assert!(e.contains("bf16_stochastic_round rounds state kept in bfloat16"), "{e}");
    let mut c = RmsProp::default();
    c.common.bf16_stochastic_round = true;
    let e = Optimizer::<f32>::new(c, &[("w", &[4][..])]).unwrap_err().to_string();
    assert!(e.contains("bf16_stochastic_round rounds state kept in bfloat16"), "{e}");
}
