//! `by_name::hyperparameters` describes a configuration completely: reading the description
//! back gives the same configuration, for every preset and with every kind of option set.

use rmsprop::by_name::{self, Value};
use rmsprop::{Flavor, OptimizerConfig};

fn round_trip(name: &str, c: &OptimizerConfig) {
    let h = by_name::hyperparameters(c);
    let back = by_name::config(name, h.clone()).unwrap_or_else(|e| panic!("{name}: {h:?} refused: {e}"));
    assert_eq!(&back, c, "{name}: {h:?}");
    // and under the flavour's own names, each once
    if let Some(flavor) = name.split_once('.').and_then(|(f, _)| f.parse::<Flavor>().ok()) {
        let own = by_name::hyperparameters_as(c, flavor);
        let back = by_name::config(name, own.clone()).unwrap_or_else(|e| panic!("{name}: {own:?} refused: {e}"));
        assert_eq!(&back, c, "{name}: {own:?}");
        let mut names: Vec<&str> = own.iter().map(|(k, _)| *k).collect();
        names.sort_unstable();
        assert!(names.windows(2).all(|w| w[0] != w[1]), "{name}: a name twice in {own:?}");
    }
    let json = by_name::hyperparameters_json(c);
    assert_eq!(by_name::config_json(name, &json).unwrap(), *c, "{name}: {json}");
}

#[test]
fn every_preset_reads_back_from_its_description() {
    let mut seen = 0;
    for flavor in Flavor::ALL {
        for opt in by_name::optimizers() {
            let name = format!("{}.{opt}", flavor.name());
            let Ok(c) = by_name::config(&name, Vec::<(String, Value)>::new()) else {
                assert_ne!(opt, "rmsprop", "every flavour has an RMSProp");
                continue;
            };
            round_trip(&name, &c);
            seen += 1;
        }
    }
    assert!(seen >= 23, "only {seen} presets");
}

#[test]
fn options_read_back_too() {
    let cases: [(&str, Vec<(&str, Value)>); 6] = [
        ("pytorch.rmsprop", vec![("centered", true.into()), ("momentum", 0.9.into()), ("weight_decay", 0.01.into())]),
        ("optax.rmsprop", vec![("nesterov", true.into()), ("momentum", 0.5.into()), ("bias_correction", true.into())]),
        ("keras.rmsprop", vec![("clipnorm", 1.0.into()), ("maximize", true.into())]),
        ("mxnet.rmsprop", vec![("clip_gradient", 5.0.into()), ("clip_weights", 2.0.into()), ("centered", true.into())]),
        ("pytorch.adam", vec![("amsgrad", true.into()), ("global_clipnorm", 3.0.into()), ("rounding", "xla".into())]),
        ("sgd", vec![("momentum", 0.9.into()), ("nesterov", true.into()), ("dampening", 0.0.into())]),
    ];
    for (name, sets) in cases {
        let c = by_name::config(name, sets).unwrap();
        round_trip(name, &c);
    }
}

#[test]
fn the_description_names_what_the_flavour_means() {
    let c = by_name::config("pytorch.rmsprop", Vec::<(String, Value)>::new()).unwrap();
    let h = by_name::hyperparameters(&c);
    for (k, v) in [("lr", Value::Num(0.01)), ("decay", Value::Num(0.99)), ("eps", Value::Num(1e-8))] {
        assert!(h.contains(&(k, v.clone())), "{k} = {v} missing from {h:?}");
    }
    assert!(h.contains(&("eps_placement", "outside_sqrt".into())));
    // each framework's own words where it has them
    for (name, key, value) in [
        ("pytorch.rmsprop", "alpha", 0.99),
        ("keras.rmsprop", "rho", 0.9),
        ("keras.rmsprop", "epsilon", 1e-7),
        ("mxnet.rmsprop", "gamma1", 0.9),
        ("mxnet.rmsprop", "gamma2", 0.9),
        ("d2l.rmsprop", "gamma", 0.9),
        ("tf1.rmsprop", "learning_rate", 0.001),
        ("optax.adam", "b2", 0.999),
        ("pytorch.adagrad", "initial_accumulator_value", 0.0),
    ] {
        let flavor: Flavor = name.split_once('.').unwrap().0.parse().unwrap();
        let own = by_name::hyperparameters_as(&by_name::config(name, Vec::<(String, Value)>::new()).unwrap(), flavor);
        assert!(own.contains(&(key, Value::Num(value))), "{name}: {key} = {value} missing from {own:?}");
    }
    let names: Vec<&str> = h.iter().map(|(k, _)| *k).collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "no name twice in {names:?}");
}

/// A refused value is named as the caller wrote it: PyTorch's `alpha`, Keras's `rho`,
/// MXNet's `learning_rate` and `wd`, not this crate's `decay`, `lr`, `weight_decay`.
#[test]
fn a_refused_hyperparameter_is_named_as_given() {
    for (name, key, value, says) in [
        ("pytorch.rmsprop", "alpha", 2.0, "invalid hyperparameter rmsprop.alpha = 2: expected a number in [0, 1]"),
        ("keras.rmsprop", "rho", -1.0, "invalid hyperparameter rmsprop.rho = -1: expected a number in [0, 1]"),
        ("mxnet.rmsprop", "learning_rate", -1.0, "invalid hyperparameter rmsprop.learning_rate = -1: expected"),
        ("mxnet.rmsprop", "wd", -0.5, "invalid hyperparameter rmsprop.wd = -0.5: expected"),
        ("pytorch.rmsprop", "decay", 2.0, "invalid hyperparameter rmsprop.decay = 2: expected"),
    ] {
        let e = by_name::config(name, [(key, value)]).unwrap_err().to_string();
        assert!(e.starts_with(says), "{name} {key}: {e}");
    }
}
