//! Our 8-bit state against bitsandbytes' own 8-bit optimizers (`RMSprop8bit`, `Adam8bit`,
//! 0.50 on the CPU; `testdata/bnb/record_optim.py`), on a seeded noisy quadratic of 4096
//! parameters: how close our trajectory stays to theirs, next to how far bitsandbytes'
//! 8-bit optimizer is from its own 32-bit one. The codes may differ where a value lies on a
//! rounding boundary (bitsandbytes forms its tables through `torch.linspace`, 2 ulps off in
//! places), and bitsandbytes keeps RMSProp's average of squares in the signed code, where
//! we keep it in the unsigned one (twice the entries for a non-negative value).

use rmsprop::{Optimizer, OptimizerConfig, StateStorage};
use serde_json::Value;

fn recorded() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/bnb/trajectories.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// SplitMix64 from `seed`, each output mapped to `(z >> 40) / 2^23 - 1` (record_optim.py).
fn splitmix(seed: u64, count: usize) -> Vec<f32> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f64 / (1u64 << 23) as f64 - 1.0) as f32
        })
        .collect()
}

/// Our run of the recorded problem with `config`: the parameters at each recorded step.
fn ours(problem: &Value, config: OptimizerConfig) -> Vec<(u64, Vec<f32>)> {
    let n = problem["n"].as_u64().unwrap() as usize;
    let steps = problem["steps"].as_u64().unwrap() as usize;
    let noise = problem["noise"].as_f64().unwrap() as f32;
    let record: Vec<u64> = problem["recorded_steps"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    let u = splitmix(problem["seed"].as_u64().unwrap(), n + steps * n);
    let a: Vec<f32> = (0..n).map(|i| 2f32.powi(i as i32 % 9 - 6)).collect();
    let mut x = vec![u[..n].to_vec()];
    let mut opt = Optimizer::<f32>::new(config, &[("x", &[n][..])]).unwrap();
    let mut out = Vec::new();
    for t in 1..=steps {
        let g: Vec<f32> = (0..n).map(|i| a[i] * x[0][i] + noise * u[n + (t - 1) * n + i]).collect();
        opt.step(&mut x, &[g]).unwrap();
        if record.contains(&(t as u64)) {
            out.push((t as u64, x[0].clone()));
        }
    }
    out
}

/// Max and median of `|a - b|`.
fn distance(a: &[f32], b: &[f32]) -> (f64, f64) {
    let mut d: Vec<f64> = a.iter().zip(b).map(|(a, b)| (*a as f64 - *b as f64).abs()).collect();
    d.sort_by(f64::total_cmp);
    (d[d.len() - 1], d[d.len() / 2])
}

fn theirs(run: &Value, t: u64) -> Vec<f32> {
    run[t.to_string()].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

#[test]
fn our_8bit_state_stays_as_close_to_bitsandbytes_as_it_is_to_itself() {
    let r = recorded();
    let problem = &r["problem"];
    let rmsprop = |storage: StateStorage| {
        let h = [("lr", 1e-3), ("alpha", 0.99), ("eps", 1e-8)];
        let mut c = rmsprop::by_name::config("pytorch.rmsprop", h).unwrap();
        c.common_mut().state_storage = storage;
        c
    };
    let adam = |storage: StateStorage| {
        let h = [("lr", 1e-3), ("beta1", 0.9), ("beta2", 0.999), ("eps", 1e-8)];
        let mut c = rmsprop::by_name::config("pytorch.adam", h).unwrap();
        c.common_mut().state_storage = storage;
        c
    };
    for (name, make) in [("rmsprop", &rmsprop as &dyn Fn(StateStorage) -> OptimizerConfig), ("adam", &adam)] {
        let (bnb8, bnb32) = (&r["runs"][format!("{name}_8bit")], &r["runs"][format!("{name}_32bit")]);
        let (ours8, ours32) = (ours(problem, make(StateStorage::Int8)), ours(problem, make(StateStorage::F32)));
        // the state was kept in 8 bits: by the last step ours moved off our f32 trajectory
        // by as much as bitsandbytes' 8-bit moved off its 32-bit one, in order of magnitude
        let (last, last_t) = (ours8.last().unwrap(), ours8.last().unwrap().0);
        let packed = distance(&last.1, &ours32.last().unwrap().1).1;
        let bnb_own = distance(&theirs(bnb8, last_t), &theirs(bnb32, last_t)).1;
        assert!(packed > 0.1 * bnb_own, "{name}: 8-bit state {packed:e} from f32 state's trajectory");
        for ((t, o8), (_, o32)) in ours8.iter().zip(&ours32) {
            let (b8, b32) = (theirs(bnb8, *t), theirs(bnb32, *t));
            let ours_to_theirs = distance(o8, &b8);
            let theirs_to_32 = distance(&b8, &b32);
            let ours_to_32 = distance(o8, &b32);
            let f32_to_32 = distance(o32, &b32);
            eprintln!(
                "{name} step {t}: |ours 8-bit - bnb 8-bit| max {:.3e} median {:.3e}; |bnb 8-bit - bnb 32-bit| max \
                 {:.3e} median {:.3e}; |ours 8-bit - bnb 32-bit| max {:.3e} median {:.3e}; |ours f32 - bnb 32-bit| \
                 max {:.3e}",
                ours_to_theirs.0,
                ours_to_theirs.1,
                theirs_to_32.0,
                theirs_to_32.1,
                ours_to_32.0,
                ours_to_32.1,
                f32_to_32.0
            );
            // f32 state is bitsandbytes' 32-bit optimizer up to its rounding (the same
            // formula, its CPU kernel forms `g / (sqrt(s) + ε)` before the rate)
            assert!(f32_to_32.0 <= 1e-6, "{name} step {t}: f32 state {f32_to_32:?} from bnb 32-bit");
            // our 8-bit state is no farther from the 32-bit optimizer than bitsandbytes'
            // 8-bit optimizer is (its median; its largest deviation within a quarter)...
            assert!(ours_to_32.1 <= theirs_to_32.1, "{name} step {t}: median {ours_to_32:?} vs {theirs_to_32:?}");
            assert!(ours_to_32.0 <= 1.25 * theirs_to_32.0, "{name} step {t}: max {ours_to_32:?} vs {theirs_to_32:?}");
            // ...and from bitsandbytes' 8-bit trajectory within half again its own distance
            assert!(
                ours_to_theirs.0 <= 1.5 * theirs_to_32.0 && ours_to_theirs.1 <= 1.5 * theirs_to_32.1,
                "{name} step {t}: {ours_to_theirs:?} from bnb 8-bit, which is {theirs_to_32:?} from its 32-bit"
            );
        }
    }
}
