//! Bad input gets a clear, typed error, and a failed step changes nothing.

use rmsprop::{
    Adam, Error, MomentumStyle, NonFinitePolicy, Optimizer, RmsProp, Sgd, SgdMomentum, StepOutcome, by_name,
};

fn msg(e: Error) -> String {
    e.to_string()
}

fn new(config: RmsProp) -> Result<Optimizer<f64>, Error> {
    Optimizer::new(config, &[("w", &[5, 1][..]), ("b", &[1][..])])
}

#[test]
fn negative_learning_rate() {
    let e = msg(new(RmsProp::default().with_lr(-0.1)).unwrap_err());
    assert_eq!(e, "invalid hyperparameter rmsprop.lr = -0.1: expected a finite number >= 0");
}

#[test]
fn decay_outside_unit_interval() {
    let e = msg(new(RmsProp::default().with_decay(1.5)).unwrap_err());
    assert_eq!(e, "invalid hyperparameter rmsprop.decay = 1.5: expected a number in [0, 1]");
    assert!(new(RmsProp::default().with_decay(-0.01)).is_err());
    assert!(new(RmsProp::default().with_decay(f64::NAN)).is_err());
}

#[test]
fn gamma_zero_and_one_are_legal() {
    assert!(new(RmsProp::default().with_decay(0.0)).is_ok());
    assert!(new(RmsProp::default().with_decay(1.0)).is_ok());
}

#[test]
fn negative_eps_and_momentum() {
    let e = msg(new(RmsProp::default().with_eps(-1e-8, rmsprop::EpsPlacement::InsideSqrt)).unwrap_err());
    assert!(e.contains("rmsprop.eps = -1e-8") && e.contains(">= 0"), "{e}");
    let e = msg(new(RmsProp::default().with_momentum(-0.9, MomentumStyle::LrOutsideBuffer)).unwrap_err());
    assert!(e.contains("rmsprop.momentum = -0.9"), "{e}");
}

#[test]
fn nesterov_without_momentum() {
    let e = msg(new(RmsProp::default().with_nesterov(true)).unwrap_err());
    assert_eq!(e, "invalid rmsprop configuration: nesterov = true needs momentum > 0");
    let e = msg(Optimizer::<f64>::new(Sgd::default().with_nesterov(true), &[("w", &[1][..])]).unwrap_err());
    assert_eq!(e, "invalid sgd configuration: nesterov = true needs momentum > 0 and dampening = 0");
    let sgd = Sgd::default().with_momentum(0.9, SgdMomentum::Torch).with_nesterov(true);
    assert!(Optimizer::<f64>::new(sgd, &[("w", &[1][..])]).is_ok());
}

#[test]
fn adam_beta_one_is_refused() {
    let e = msg(Optimizer::<f64>::new(Adam::default().with_betas(0.9, 1.0), &[("w", &[1][..])]).unwrap_err());
    assert_eq!(e, "invalid hyperparameter adam.beta2 = 1: expected a number in [0, 1)");
}

#[test]
fn gradient_length_not_matching_its_parameter() {
    let mut opt = new(RmsProp::default()).unwrap();
    let mut p = vec![vec![0.0; 5], vec![0.0]];
    let e = msg(opt.step(&mut p, &[vec![1.0; 4], vec![1.0]]).unwrap_err());
    assert_eq!(e, "gradient of tensor \"w\" has 4 elements, expected 5 (shape [5, 1])");
    let e = msg(opt.step(&mut p, &[vec![1.0; 5]]).unwrap_err());
    assert_eq!(e, "step got 1 gradient tensors, expected 2 (w, b)");
    let mut short = vec![vec![0.0; 5], vec![]];
    let e = msg(opt.step(&mut short, &[vec![1.0; 5], vec![1.0]]).unwrap_err());
    assert_eq!(e, "parameter of tensor \"b\" has 0 elements, expected 1 (shape [1])");
    assert_eq!(opt.step_count(), 0);
}

#[test]
fn duplicate_tensor_names() {
    let e = msg(Optimizer::<f32>::new(RmsProp::default(), &[("w", &[1][..]), ("w", &[2][..])]).unwrap_err());
    assert_eq!(e, "tensor name \"w\" is used twice");
}

#[test]
fn unknown_hyperparameter_name() {
    let e = msg(by_name::config("rmsprop", [("learning_rate", 0.01), ("gamma3", 0.9)]).unwrap_err());
    assert!(e.starts_with("unknown hyperparameter \"gamma3\" for rmsprop (did you mean \"gamma\", \"gamma1\" or \"gamma2\"?): expected one of lr, learning_rate"), "{e}");
    assert!(e.contains("gamma1"), "{e}");
    let e = msg(by_name::config("rmsprops", [("lr", 0.01)]).unwrap_err());
    assert!(e.starts_with("unknown optimizer \"rmsprops\""), "{e}");
    let e = msg(by_name::config("jax.rmsprop", [("lr", 0.01)]).unwrap_err());
    assert!(e.starts_with("unknown flavor \"jax\""), "{e}");
    let e = msg(by_name::config("rmsprop", [("centered", 1.0)]).unwrap_err());
    assert_eq!(e, "hyperparameter \"centered\" has the wrong type: expected true or false, got 1");
    let e = msg(by_name::config("rmsprop", [("gamma1", 1.5)]).unwrap_err());
    assert!(e.contains("rmsprop.gamma1 = 1.5"), "{e}"); // named as given
}

#[test]
fn by_name_accepts_every_frameworks_spelling() {
    for key in ["decay", "alpha", "rho", "gamma", "gamma1"] {
        let c = by_name::config("rmsprop", [(key, 0.5)]).unwrap();
        let rmsprop::OptimizerConfig::RmsProp(r) = c else { panic!() };
        assert_eq!(r.decay, 0.5, "{key}");
    }
    for key in ["lr", "learning_rate", "eta"] {
        assert_eq!(by_name::config("adam", [(key, 0.5)]).unwrap().common().lr, 0.5, "{key}");
    }
    let c = by_name::config("rmsprop", [("flavor", by_name::Value::from("pytorch"))]).unwrap();
    assert_eq!(c, rmsprop::Flavor::PyTorch.rmsprop().into());
    let c = by_name::config("pytorch.adam", [("rounding", by_name::Value::from("as_written"))]).unwrap();
    assert_eq!(c.common().rounding, rmsprop::Rounding::AsWritten);
    let e = msg(by_name::config("adam", [("rounding", by_name::Value::from("fma"))]).unwrap_err());
    assert!(e.contains("as_written") && e.contains("torch"), "{e}");
}

#[test]
fn nonfinite_gradient_is_refused_and_nothing_changes() {
    let mut opt =
        new(RmsProp::default().with_centered(true).with_momentum(0.9, MomentumStyle::LrOutsideBuffer)).unwrap();
    let mut p = vec![vec![0.5; 5], vec![0.25]];
    opt.step(&mut p, &[vec![1.0; 5], vec![2.0]]).unwrap();
    let (p0, s0, m0) =
        (p.clone(), opt.state("b", "square_avg").unwrap().to_vec(), opt.state("w", "grad_avg").unwrap().to_vec());
    let e = msg(opt.step(&mut p, &[vec![1.0, 1.0, 1.0, 1.0, 1.0], vec![f64::NAN]]).unwrap_err());
    assert_eq!(e, "non-finite gradient in tensor \"b\" at element 0: NaN; nothing was updated");
    let e = msg(opt.step(&mut p, &[vec![1.0, 1.0, f64::INFINITY, 1.0, 1.0], vec![1.0]]).unwrap_err());
    assert!(e.contains("tensor \"w\" at element 2: inf"), "{e}");
    assert_eq!(p, p0);
    assert_eq!(opt.state("b", "square_avg").unwrap(), &s0[..]);
    assert_eq!(opt.state("w", "grad_avg").unwrap(), &m0[..]);
    assert_eq!(opt.step_count(), 1);
}

#[test]
fn skip_policy_counts_and_propagate_applies() {
    let mut opt = new(RmsProp::default()).unwrap().with_nonfinite_policy(NonFinitePolicy::Skip);
    let mut p = vec![vec![0.5; 5], vec![0.25]];
    let out = opt.step(&mut p, &[vec![f64::NAN; 5], vec![1.0]]).unwrap();
    assert_eq!(out, StepOutcome::Skipped);
    assert_eq!((opt.skipped_steps(), opt.step_count()), (1, 0));
    assert_eq!(p, vec![vec![0.5; 5], vec![0.25]]);

    let mut opt = new(RmsProp::default()).unwrap().with_nonfinite_policy(NonFinitePolicy::Propagate);
    opt.step(&mut p, &[vec![f64::NAN; 5], vec![1.0]]).unwrap();
    assert!(p[0][0].is_nan(), "as the frameworks do, NaN flows into the parameters");
    assert!(p[1][0] < 0.25);
}

#[test]
fn invalid_change_after_construction_is_caught_at_step() {
    let mut opt = new(RmsProp::default()).unwrap();
    opt.group_mut(0).unwrap().common_mut().lr = f64::INFINITY;
    let mut p = vec![vec![0.5; 5], vec![0.25]];
    let e = msg(opt.step(&mut p, &[vec![1.0; 5], vec![1.0]]).unwrap_err());
    assert!(e.contains("rmsprop.lr = inf"), "{e}");
    assert_eq!(p, vec![vec![0.5; 5], vec![0.25]]);
}

/// In a step large enough to be scanned in blocks and across threads, the error names
/// the first non-finite element in step order, whatever lies after it.
#[test]
fn the_first_nonfinite_element_is_named_in_a_large_step() {
    use rmsprop::Parallelism;
    let sizes = [1_000usize, 300_000, 70_000];
    let specs: Vec<rmsprop::TensorSpec> =
        sizes.iter().enumerate().map(|(i, &n)| rmsprop::TensorSpec::new(format!("t{i}"), &[n])).collect();
    for (tensor, index) in [(0, 999), (1, 257), (1, 299_999), (2, 65_537)] {
        for parallelism in [Parallelism::Serial, Parallelism::Parallel] {
            let mut opt = Optimizer::<f32>::new(RmsProp::default(), &specs).unwrap().with_parallelism(parallelism);
            let mut p: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![0.5; n]).collect();
            let mut g: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![1.0; n]).collect();
            g[tensor][index] = f32::NAN;
            g[2][65_540] = f32::INFINITY; // later in step order: never the one named
            let e = msg(opt.step(&mut p, &g).unwrap_err());
            assert!(e.contains(&format!("tensor \"t{tensor}\" at element {index}: NaN")), "{parallelism:?}: {e}");
            assert!(p.iter().flatten().all(|&v| v == 0.5), "nothing was updated");
        }
    }
}

/// Tensors' state is laid out when they are registered: a change through `group_mut`
/// that needs other state (centring adds `grad_avg`) or another optimizer is refused at
/// the next step, with nothing changed, instead of running past the state it has.
#[test]
fn a_change_that_needs_other_state_is_refused() {
    use rmsprop::OptimizerConfig;
    let mut p = vec![vec![0.5; 5], vec![0.25]];
    let g = [vec![1.0; 5], vec![1.0]];
    let mut opt = new(RmsProp::default()).unwrap();
    let OptimizerConfig::RmsProp(r) = opt.group_mut(0).unwrap() else { unreachable!() };
    r.centered = true;
    let e = msg(opt.step(&mut p, &g).unwrap_err());
    assert!(e.contains("registered as rmsprop with state [square_avg]"), "{e}");
    assert!(e.contains("state [square_avg, grad_avg]"), "{e}");
    *opt.group_mut(0).unwrap() = Adam::default().into();
    let e = msg(opt.step(&mut p, &g).unwrap_err());
    assert!(e.contains("cannot become adam"), "{e}");
    assert_eq!(p, vec![vec![0.5; 5], vec![0.25]]);
    assert_eq!(opt.step_count(), 0);
    // a change that keeps the state is fine
    *opt.group_mut(0).unwrap() = RmsProp::default().with_decay(0.5).with_lr(0.1).into();
    opt.step(&mut p, &g).unwrap();
    assert_eq!(opt.step_count(), 1);
}

/// MXNet clips by comparisons (`x > c ? c : x < -c ? -c : x`, `mshadow_op::clip`), so a
/// propagated NaN gradient stays NaN through `clip_gradient`, and a NaN weight through
/// `clip_weights`, instead of becoming a bound and passing for a number.
#[test]
fn a_propagated_nan_is_not_clipped_into_a_number() {
    let mut p = vec![vec![0.5; 5], vec![0.25]];
    let config = RmsProp::default().with_clip_gradient(1.0).with_clip_weights(10.0);
    let mut opt = new(config).unwrap().with_nonfinite_policy(NonFinitePolicy::Propagate);
    opt.step(&mut p, &[vec![f64::NAN, 5.0, -5.0, 0.5, 1.0], vec![1.0]]).unwrap();
    assert!(p[0][0].is_nan(), "NaN gradient: {}", p[0][0]);
    assert!(opt.state("w", "square_avg").unwrap()[0].is_nan());
    // the clipped ones moved as a gradient of ±1 would: first step of RMSProp, lr 0.01
    let one = 0.01 / (0.1f64 + 1e-6).sqrt();
    assert!((p[0][1] - (0.5 - one)).abs() < 1e-12 && (p[0][2] - (0.5 + one)).abs() < 1e-12, "{:?}", p[0]);
}

/// An unknown name keeps the flavour it was given with, and a near miss gets a "did you
/// mean" (a swapped pair of letters is one edit); a name far from every known one gets
/// none.
#[test]
fn unknown_names_say_what_was_meant() {
    let msg = |name: &str| rmsprop::by_name::config(name, Vec::<(String, f64)>::new()).unwrap_err().to_string();
    assert!(
        msg("pytorch.rmsprp").starts_with("unknown optimizer \"pytorch.rmsprp\" (did you mean \"pytorch.rmsprop\"?)"),
        "{}",
        msg("pytorch.rmsprp")
    );
    assert!(msg("adma").starts_with("unknown optimizer \"adma\" (did you mean \"adam\"?)"), "{}", msg("adma"));
    assert!(
        msg("pytroch.adam").starts_with("unknown flavor \"pytroch\" (did you mean \"pytorch\"?)"),
        "{}",
        msg("pytroch.adam")
    );
    assert!(msg("nope").starts_with("unknown optimizer \"nope\": expected one of"), "{}", msg("nope"));
    let e = rmsprop::by_name::config("pytorch.rmsprop", [("alpah", 0.9)]).unwrap_err().to_string();
    assert!(e.starts_with("unknown hyperparameter \"alpah\" for rmsprop (did you mean \"alpha\"?)"), "{e}");
}

/// State set from outside (another framework's checkpoint) is checked whole before
/// anything changes: every used slot once, of the right length, finite, squares not
/// negative, nothing the optimizer does not have.
#[test]
fn set_state_refuses_what_does_not_fit_and_changes_nothing() {
    use rmsprop::{Optimizer, RmsProp};
    let config = RmsProp::default().with_centered(true);
    let mut opt = Optimizer::<f64>::new(config, &[("w", &[2][..]), ("b", &[1][..])]).unwrap();
    let (s, m, sb, mb) = ([1.0, 2.0], [0.5, -0.5], [3.0], [0.25]);
    let good = [
        ("w", "square_avg", &s[..]),
        ("w", "grad_avg", &m[..]),
        ("b", "square_avg", &sb[..]),
        ("b", "grad_avg", &mb[..]),
    ];
    let refused = |opt: &mut Optimizer<f64>, entries: &[(&str, &str, &[f64])], says: &str| {
        let e = opt.set_state(9, entries).unwrap_err().to_string();
        assert!(e.contains(says) && e.ends_with("nothing was changed"), "{e}");
        assert_eq!((opt.step_count(), opt.state("w", "square_avg").as_deref()), (0, Some(&[0.0, 0.0][..])));
    };
    refused(&mut opt, &good[..3], "state b.grad_avg: not given");
    refused(&mut opt, &[&good[..], &good[..1]].concat(), "state w.square_avg: given twice");
    refused(
        &mut opt,
        &[good[0], good[1], good[2], ("b", "grad_avg", &m[..])],
        "b.grad_avg: 2 values for a tensor of 1",
    );
    refused(&mut opt, &[good[0], ("w", "grad_avg", &[f64::NAN, 0.0][..]), good[2], good[3]], "element 0 is NaN");
    refused(
        &mut opt,
        &[good[0], good[1], ("b", "square_avg", &[-1.0][..]), good[3]],
        "a sum of squares is never negative",
    );
    refused(
        &mut opt,
        &[&good[..], &[("w", "momentum_buffer", &s[..])][..]].concat(),
        "w.momentum_buffer: this optimizer has no such state",
    );
    opt.set_state(9, &good).unwrap();
    assert_eq!(
        (opt.step_count(), opt.state("w", "grad_avg").as_deref(), opt.state("b", "square_avg").as_deref()),
        (9, Some(&m[..]), Some(&sb[..]))
    );
}
