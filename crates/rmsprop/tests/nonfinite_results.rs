//! A step that would turn finite parameters or state into NaN or infinity is refused
//! under `NonFinitePolicy::Error` (skipped under `Skip`) and changes nothing; every other
//! step gives exactly the bits of `Propagate` (no false refusal).

use proptest::prelude::*;
use rmsprop::{
    EpsPlacement, Error, Flavor, NonFinitePolicy, Optimizer, OptimizerConfig, Param, RmsProp, StepOutcome,
    WeightDecayMode,
};

const SHAPES: [(&str, usize); 2] = [("w", 6), ("b", 1)];

/// Parameters, then every state buffer, as `f64` (exact for `f32` and `f64`).
fn snapshot<P: Param>(opt: &Optimizer<P>, params: &[Vec<P>]) -> Vec<f64>
where
    P::Acc: Into<f64>,
{
    let mut out: Vec<f64> = params.iter().flatten().map(|v| v.load().into()).collect();
    for (name, _) in SHAPES {
        for slot in opt.group(0).unwrap().state_names() {
            out.extend(opt.state(name, slot).unwrap().iter().map(|&v| v.into()));
        }
    }
    out
}

fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

/// Runs `steps` through an optimizer under `Error` and a twin under `Propagate`: while the
/// twin's results stay finite the two agree bit for bit; the first step that makes them
/// non-finite is refused with `NonFiniteResult` and leaves everything as it was.
fn agree<P: Param + Copy>(config: OptimizerConfig, params: Vec<Vec<P>>, steps: &[Vec<Vec<P>>]) -> Result<(), String>
where
    P::Acc: Into<f64>,
{
    let specs: Vec<(&str, Vec<usize>)> = SHAPES.iter().map(|&(n, len)| (n, vec![len])).collect();
    let specs: Vec<(&str, &[usize])> = specs.iter().map(|(n, s)| (*n, s.as_slice())).collect();
    let Ok(checked) = Optimizer::<P>::new(config.clone(), &specs) else { return Ok(()) };
    let mut checked = checked.with_nonfinite_policy(NonFinitePolicy::Error);
    let mut free = Optimizer::<P>::new(config, &specs).unwrap().with_nonfinite_policy(NonFinitePolicy::Propagate);
    let (mut x_checked, mut x_free) = (params.clone(), params);
    for (t, g) in steps.iter().enumerate() {
        let before = snapshot(&checked, &x_checked);
        free.step(&mut x_free, g).unwrap();
        let after_free = snapshot(&free, &x_free);
        let outcome = checked.step(&mut x_checked, g);
        if after_free.iter().all(|v| v.is_finite()) {
            match outcome {
                Ok(StepOutcome::Applied) => {}
                other => return Err(format!("step {}: finite results refused: {other:?}", t + 1)),
            }
            if !same_bits(&snapshot(&checked, &x_checked), &after_free) {
                return Err(format!("step {}: a checked step differs from the unchecked one", t + 1));
            }
        } else {
            match outcome {
                Err(Error::NonFiniteResult { .. }) => {}
                other => return Err(format!("step {}: non-finite results accepted: {other:?}", t + 1)),
            }
            if !same_bits(&snapshot(&checked, &x_checked), &before) {
                return Err(format!("step {}: a refused step changed something", t + 1));
            }
            return Ok(());
        }
    }
    Ok(())
}

/// A magnitude over the whole range of `f32` (mostly below 1e15, so that most sequences
/// run several finite steps), signed, sometimes 0.
fn magnitude() -> impl Strategy<Value = f64> + Clone {
    let exponent = prop_oneof![3 => -45.0f64..15.0, 1 => -45.0f64..38.5];
    (exponent, any::<bool>(), prop::sample::select(vec![false, false, false, true]))
        .prop_map(|(e, neg, zero)| if zero { 0.0 } else { 10f64.powf(e) * if neg { -1.0 } else { 1.0 } })
}

fn config() -> impl Strategy<Value = OptimizerConfig> {
    let flavors = prop::sample::select(Flavor::ALL.to_vec());
    let names = prop::sample::select(rmsprop::by_name::optimizers());
    let lr = prop_oneof![3 => -4.0f64..2.0, 1 => -4.0f64..36.0].prop_map(|e| 10f64.powf(e));
    let eps = prop::sample::select(vec![None, Some(0.0), Some(1e-45), Some(1e-30), Some(1e-8)]);
    let wd = prop::sample::select(vec![0.0, 0.0, 1e-4, 0.5, 1e30]);
    (flavors, names, lr, eps, wd, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(flavor, name, lr, eps, wd, centered, momentum, coupled)| {
            let mut c = flavor.config(name).unwrap_or_else(|_| flavor.rmsprop().into());
            match &mut c {
                OptimizerConfig::RmsProp(r) => {
                    r.centered = centered;
                    r.momentum = if momentum { 0.9 } else { 0.0 };
                    r.eps = eps.unwrap_or(r.eps);
                }
                OptimizerConfig::Adagrad(a) => a.eps = eps.unwrap_or(a.eps),
                OptimizerConfig::Adam(a) => a.eps = eps.unwrap_or(a.eps),
                OptimizerConfig::Adadelta(a) => a.eps = eps.unwrap_or(a.eps),
                OptimizerConfig::Sgd(s) => s.momentum = if momentum { 0.9 } else { 0.0 },
                OptimizerConfig::Yogi(y) => y.eps = eps.unwrap_or(y.eps),
                other => panic!("no case for {}", other.name()),
            }
            let common = c.common_mut();
            common.lr = lr;
            if wd != 0.0 {
                common.weight_decay = wd;
                common.weight_decay_mode = if coupled { WeightDecayMode::Coupled } else { WeightDecayMode::Decoupled };
            }
            c
        },
    )
}

fn tensors(m: impl Strategy<Value = f64> + Clone) -> impl Strategy<Value = Vec<Vec<f64>>> {
    (prop::collection::vec(m.clone(), SHAPES[0].1), m).prop_map(|(w, b)| vec![w, vec![b]])
}

fn cast<P: Param>(v: &[Vec<f64>], to: fn(f64) -> P) -> Vec<Vec<P>> {
    v.iter().map(|t| t.iter().map(|&x| to(x)).collect()).collect()
}

/// Tensors opened one at a time from plain vectors ([`rmsprop::Tensors`]).
struct Each<'a, P>(&'a mut [Vec<P>], &'a [Vec<P>]);

impl<P> rmsprop::Tensors<P> for Each<'_, P> {
    fn with(&mut self, i: usize, f: &mut dyn FnMut(&mut [P], &[P])) -> rmsprop::Result<()> {
        f(&mut self.0[i], &self.1[i]);
        Ok(())
    }
}

/// `step_each` (tensors opened one at a time, three passes) gives exactly `step`'s
/// outcome, parameters and state, under every policy, with and without norm clipping.
fn each_equals_step<P: Param + Copy + std::fmt::Debug>(
    config: OptimizerConfig,
    params: Vec<Vec<P>>,
    steps: &[Vec<Vec<P>>],
    policy: NonFinitePolicy,
) -> Result<(), String>
where
    P::Acc: Into<f64>,
{
    let specs: Vec<(&str, Vec<usize>)> = SHAPES.iter().map(|&(n, len)| (n, vec![len])).collect();
    let specs: Vec<(&str, &[usize])> = specs.iter().map(|(n, s)| (*n, s.as_slice())).collect();
    let Ok(a) = Optimizer::<P>::new(config.clone(), &specs) else { return Ok(()) };
    let mut a = a.with_nonfinite_policy(policy);
    let mut b = Optimizer::<P>::new(config, &specs).unwrap().with_nonfinite_policy(policy);
    let (mut xa, mut xb) = (params.clone(), params);
    for (t, g) in steps.iter().enumerate() {
        let oa = a.step(&mut xa, g).map_err(|e| e.to_string());
        let ob = b.step_each(&mut Each(&mut xb, g)).map_err(|e| e.to_string());
        if oa != ob {
            return Err(format!("step {}: step gave {oa:?}, step_each {ob:?}", t + 1));
        }
        if !same_bits(&snapshot(&a, &xa), &snapshot(&b, &xb)) {
            return Err(format!("step {}: the two differ", t + 1));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn step_each_is_step_in_f32(
        config in config(),
        clip in prop::sample::select(vec![None, Some((1e-3, rmsprop::NormScope::Global)), Some((1.0, rmsprop::NormScope::PerTensor))]),
        policy in prop::sample::select(vec![NonFinitePolicy::Error, NonFinitePolicy::Skip, NonFinitePolicy::Propagate]),
        params in tensors((-3.0f64..3.0).prop_map(|e| 10f64.powf(e))),
        steps in prop::collection::vec(tensors(magnitude()), 1..5),
        nan in prop::sample::select(vec![None, Some(f64::NAN), Some(f64::INFINITY)]),
    ) {
        let mut config = config;
        let mut steps = steps;
        if let Some(v) = nan {
            let last = steps.len() - 1;
            steps[last][0][3] = v; // the first tensor's fourth element, at the last step
        }
        if let Some((c, scope)) = clip {
            config.common_mut().clip_norm = Some(rmsprop::ClipNorm { max_norm: c, scope });
        }
        let steps: Vec<_> = steps.iter().map(|g| cast(g, |v| v as f32)).collect();
        each_equals_step(config, cast(&params, |v| v as f32), &steps, policy).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn f32_refuses_exactly_the_steps_that_would_not_be_finite(
        config in config(),
        params in tensors((-3.0f64..3.0).prop_map(|e| 10f64.powf(e))),
        steps in prop::collection::vec(tensors(magnitude()), 1..6),
    ) {
        let steps: Vec<_> = steps.iter().map(|g| cast(g, |v| v as f32)).collect();
        agree(config, cast(&params, |v| v as f32), &steps).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn f64_refuses_exactly_the_steps_that_would_not_be_finite(
        config in config(),
        params in tensors(magnitude()),
        steps in prop::collection::vec(tensors(magnitude().prop_map(|v| v * 1e269)), 1..6),
    ) {
        agree(config, cast(&params, |v| v), &steps).map_err(TestCaseError::fail)?;
    }
}

/// Every optimizer of every flavour, with each hyperparameter it reads by name set to 0, a
/// tiny, a huge or an ordinary value (alone, and over `eps = 0`): whatever the configuration
/// accepted, no step under `Error` applies a non-finite result, none is refused whose
/// result would have been finite, and a refused one changes nothing (`agree`).
#[test]
fn no_configuration_by_name_gets_a_non_finite_step_past_the_guard() {
    use rmsprop::by_name::{self, Value};
    let values: Vec<Value> = [0.0, 5e-324, 1e-300, 1e-40, 1e-8, 0.5, 1.0, 2.0, 1e30, 1e300]
        .into_iter()
        .map(Value::Num)
        .chain([Value::Bool(true), Value::Bool(false)])
        .collect();
    let params = vec![vec![1.0, -2.0, 0.5, 1e-3, 3.0, -0.25], vec![0.1]];
    let mixed = |scale: f64| vec![vec![0.0, 1.0 * scale, -1e-3 * scale, 0.0, 2e-30, -1.0], vec![scale]];
    let zero = vec![vec![0.0; 6], vec![0.0]];
    let sequences = [
        vec![zero.clone(), mixed(1.0), zero.clone(), mixed(1e3)],
        vec![mixed(1.0), mixed(1e-20), zero.clone(), mixed(1e18)],
        vec![mixed(1e35), zero.clone()],
    ];
    let (mut configurations, mut steps) = (0, 0);
    for flavor in Flavor::ALL {
        for name in by_name::optimizers() {
            let Ok(preset) = flavor.config(name) else { continue };
            let mut bases = vec![preset.clone()];
            let mut eps0 = preset.clone();
            if by_name::set(&mut eps0, "eps", &Value::Num(0.0)).unwrap_or(false) {
                bases.push(eps0);
            }
            for base in &bases {
                for key in by_name::names(base) {
                    for value in &values {
                        let mut config = base.clone();
                        if !matches!(by_name::set(&mut config, key, value), Ok(true)) || config.validate().is_err() {
                            continue;
                        }
                        configurations += 1;
                        for seq in &sequences {
                            let what = format!("{flavor:?} {name} {key}={value}");
                            let f32s: Vec<_> = seq.iter().map(|g| cast(g, |v| v as f32)).collect();
                            agree(config.clone(), cast(&params, |v| v as f32), &f32s)
                                .unwrap_or_else(|e| panic!("f32, {what}: {e}"));
                            let f64s: Vec<_> = seq.iter().map(|g| cast(g, |v| v * 1e135)).collect();
                            agree(config.clone(), cast(&params, |v| v), &f64s)
                                .unwrap_or_else(|e| panic!("f64, {what}: {e}"));
                            agree(config.clone(), cast(&params, |v| v), seq)
                                .unwrap_or_else(|e| panic!("f64 (unscaled), {what}: {e}"));
                            steps += 3 * seq.len();
                        }
                    }
                }
            }
        }
    }
    assert!(configurations > 1000 && steps > 10_000, "{configurations} configurations, {steps} steps");
}

fn rmsprop_f32(config: RmsProp) -> Optimizer<f32> {
    Optimizer::new(config, &[("w", &[2][..])]).unwrap()
}

#[test]
fn an_overflowing_square_is_refused_and_named() {
    // g² = 1e40 is beyond f32: the accumulator would be infinite
    let mut opt = rmsprop_f32(RmsProp::default());
    let mut x = [vec![1.0f32, 2.0]];
    let e = opt.step(&mut x, &[vec![0.5f32, 1e20]]).unwrap_err();
    let message = e.to_string();
    assert!(
        matches!(&e, Error::NonFiniteResult { step: 1, index: 1, quantity, .. } if quantity == "square_avg"),
        "{e}"
    );
    assert!(message.contains("\"w\"") && message.contains("nothing was updated"), "{message}");
    assert_eq!(x[0], [1.0, 2.0]);
    assert_eq!(&*opt.state("w", "square_avg").unwrap(), [0.0, 0.0]);
    assert_eq!(opt.step_count(), 0);
}

#[test]
fn skip_counts_a_step_that_would_not_be_finite() {
    let mut opt = rmsprop_f32(RmsProp::default()).with_nonfinite_policy(NonFinitePolicy::Skip);
    let mut x = [vec![1.0f32, 2.0]];
    assert_eq!(opt.step(&mut x, &[vec![1e20f32, 1.0]]).unwrap(), StepOutcome::Skipped);
    assert_eq!((x[0].as_slice(), opt.skipped_steps(), opt.step_count()), (&[1.0f32, 2.0][..], 1, 0));
    // a gradient the rate can take is applied
    assert_eq!(opt.step(&mut x, &[vec![0.0f32, 0.0]]).unwrap(), StepOutcome::Applied);
}

#[test]
fn propagate_applies_it_as_the_frameworks_do() {
    let mut opt = rmsprop_f32(RmsProp::default()).with_nonfinite_policy(NonFinitePolicy::Propagate);
    let mut x = [vec![1.0f32, 2.0]];
    assert_eq!(opt.step(&mut x, &[vec![1e20f32, 1.0]]).unwrap(), StepOutcome::Applied);
    assert!(opt.state("w", "square_avg").unwrap()[0].is_infinite());
}

#[test]
fn an_accumulator_that_decays_to_zero_is_caught_before_0_over_0() {
    // eps = 0 is allowed over a positive initial accumulator; after ~90 steps of zero
    // gradients 0.3^t · 0.1 underflows to 0 and the next zero gradient is 0 / 0
    let config =
        RmsProp::default().with_decay(0.3).with_eps(0.0, EpsPlacement::InsideSqrt).with_initial_accumulator(0.1);
    let mut opt = rmsprop_f32(config);
    let mut x = [vec![1.0f32, 2.0]];
    let zero = [vec![0.0f32, 0.0]];
    let refused = (1..=2000).find_map(|_| opt.step(&mut x, &zero).err()).expect("the accumulator reaches 0");
    assert!(matches!(refused, Error::NonFiniteResult { .. }), "{refused}");
    assert_eq!(x[0], [1.0, 2.0]);
    assert!(opt.state("w", "square_avg").unwrap().iter().all(|s| s.is_finite()));
}

#[test]
fn a_half_precision_parameter_past_its_range_is_refused() {
    use half::f16;
    // float16 ends at 65504: 65500 + 0.01 / sqrt(0.1) stays, 65500 + 100 / sqrt(0.1) does not
    let mut opt = Optimizer::<f16>::new(RmsProp::default().with_lr(100.0), &[("w", &[1][..])]).unwrap();
    let mut x = [vec![f16::from_f32(65500.0)]];
    let e = opt.step(&mut x, &[vec![f16::from_f32(-1.0)]]).unwrap_err();
    assert!(matches!(&e, Error::NonFiniteResult { quantity, .. } if quantity == "the parameter"), "{e}");
    assert_eq!(x[0][0], f16::from_f32(65500.0));
}

#[test]
fn a_trial_across_threads_names_the_first_bad_element_and_changes_nothing() {
    use rmsprop::{CHUNK, Parallelism};
    // centred without clamping: rounding can make ŝ - m̂² negative, which no bound rules
    // out, so every step is tried first, here on several threads
    let n = 3 * CHUNK + 5;
    for parallelism in [Parallelism::Serial, Parallelism::Parallel] {
        let config = Flavor::PyTorch.rmsprop().with_centered(true);
        let mut opt = Optimizer::<f32>::new(config, &[("w", &[n][..])]).unwrap().with_parallelism(parallelism);
        let mut x = [vec![1.0f32; n]];
        let mut g = vec![1e-3f32; n];
        opt.step(&mut x, &[g.clone()]).unwrap();
        let (x_before, s_before) = (x[0].clone(), opt.state("w", "square_avg").unwrap().to_vec());
        g[2 * CHUNK + 7] = 1e30;
        g[CHUNK + 3] = 1e30;
        let e = opt.step(&mut x, &[g]).unwrap_err();
        assert!(matches!(&e, Error::NonFiniteResult { index, .. } if *index == CHUNK + 3), "{parallelism:?}: {e}");
        assert!(x[0] == x_before && opt.state("w", "square_avg").unwrap() == s_before, "{parallelism:?}");
        assert_eq!(opt.step_count(), 1);
    }
}

/// A steady RMSProp clears steps inside an envelope of its inputs without redoing its
/// bounds; gradients that grow by a factor each step leave the envelope again and again
/// until the average of squares overflows: every step before that is applied with the
/// unchecked step's bits, that one is refused and changes nothing. Growth just inside the
/// envelope's doubling (1.9x) and well within it (1.05x), with and without momentum and
/// weight decay, in f32 and f64.
#[test]
fn growing_gradients_are_refused_exactly_where_the_state_overflows() {
    fn run<P: Param + Copy>(config: OptimizerConfig, growth: f64, to: fn(f64) -> P) -> usize
    where
        P::Acc: Into<f64>,
    {
        let params = cast(&[vec![0.5; 6], vec![-0.25]], to);
        let mut steps = Vec::new();
        let mut g = 1e-3;
        while g < 1e300 && steps.len() < 20_000 {
            steps.push(cast(&[vec![g, -g, g / 2.0, 0.0, g, g * 0.9], vec![-g]], to));
            g *= growth;
        }
        agree(config.clone(), params.clone(), &steps).unwrap_or_else(|e| panic!("{growth}x: {e}"));
        // the sequence does reach an overflow (so `agree` saw its refusal)
        let specs: Vec<(&str, Vec<usize>)> = SHAPES.iter().map(|&(n, len)| (n, vec![len])).collect();
        let specs: Vec<(&str, &[usize])> = specs.iter().map(|(n, s)| (*n, s.as_slice())).collect();
        let mut free = Optimizer::<P>::new(config, &specs).unwrap().with_nonfinite_policy(NonFinitePolicy::Propagate);
        let mut x = params;
        for g in &steps {
            free.step(&mut x, g).unwrap();
        }
        assert!(snapshot(&free, &x).iter().any(|v| !v.is_finite()), "{growth}x never overflowed");
        steps.len()
    }
    let decayed = RmsProp::default().with_weight_decay(0.01, WeightDecayMode::Coupled);
    for config in [
        RmsProp::default().into(),
        RmsProp::default().with_momentum(0.9, rmsprop::MomentumStyle::LrOutsideBuffer).into(),
        OptimizerConfig::from(decayed),
        Flavor::PyTorch.rmsprop().into(),
    ] {
        for growth in [1.9, 1.05] {
            assert!(run::<f32>(config.clone(), growth, |v| v as f32) > 50);
            run::<f64>(config.clone(), growth, |v| v);
        }
    }
}
