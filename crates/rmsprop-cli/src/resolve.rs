//! From the command line's optimizer names, `--lr`, `--gamma` and `--set` to configurations.
//!
//! A preset keeps its own defaults; `--lr` and `--gamma` replace them only when given
//! (`--gamma` is RMSProp's decay γ, so it goes to the RMSProp runs of an overlay).
//! `--set KEY=VALUE` goes to every optimizer of the run, `--set NAME.KEY=VALUE` to the one
//! named `NAME` (`--set sgd.momentum=0.9`, `--set pytorch.rmsprop.centered=true`).

use anyhow::{Context, Result, bail};
use rmsprop::OptimizerConfig;
use rmsprop::by_name::{self, Value};

/// Values given on the command line.
pub struct Overrides<'a> {
    /// `--lr`.
    pub lr: Option<f64>,
    /// `--gamma`.
    pub gamma: Option<f64>,
    /// `--set`, as written.
    pub sets: &'a [String],
    /// Whether `lr` and `gamma` were typed (`--lr`, `--gamma`) rather than the command's
    /// own defaults (the chapter's demo at 0.4), which a `--set` replaces.
    pub typed: [bool; 2],
}

/// One `--set`.
struct Set {
    /// The optimizer it is for (`sgd` in `sgd.momentum=0.9`), or every one.
    scope: Option<String>,
    key: String,
    value: Value,
    text: String,
}

fn parse_set(text: &str) -> Result<Set> {
    let (lhs, v) =
        text.split_once('=').with_context(|| format!("--set {text:?}: expected KEY=VALUE or NAME.KEY=VALUE"))?;
    let (scope, key) = match lhs.trim().rsplit_once('.') {
        Some((scope, key)) => (Some(scope.to_string()), key.to_string()),
        None => (None, lhs.trim().to_string()),
    };
    if key.is_empty() {
        bail!("--set {text:?}: expected KEY=VALUE or NAME.KEY=VALUE");
    }
    Ok(Set { scope, key, value: Value::parse(v.trim()), text: text.to_string() })
}

/// The `--set`s of a command with one optimizer, `name`, as by-name hyperparameters (a
/// `NAME.KEY=VALUE` must name it).
pub fn sets_of(name: &str, sets: &[String]) -> Result<Vec<(String, Value)>> {
    sets.iter()
        .map(|text| {
            let s = parse_set(text)?;
            if let Some(scope) = s.scope.filter(|sc| sc != name) {
                bail!("--set {text}: no --optimizer {scope:?} in this run (it has {name})");
            }
            Ok((s.key, s.value))
        })
        .collect()
}

/// Whether `--set` `s` sets `field` of optimizer `name` (under any of its spellings): set
/// after a marker value, the marker is gone.
fn sets_field(name: &str, s: &Set, field: &str) -> bool {
    const MARKER: f64 = 0.123_456_789;
    let h = [(field.to_string(), Value::Num(MARKER)), (s.key.clone(), s.value.clone())];
    by_name::config(name, h)
        .is_ok_and(|c| by_name::hyperparameters(&c).into_iter().any(|(k, v)| k == field && v != Value::Num(MARKER)))
}

/// The configuration of each of `names` (in order) with the command line's values applied.
/// The error says which value an optimizer refused, and why.
pub fn configs(names: &[String], given: &Overrides) -> Result<Vec<OptimizerConfig>> {
    if let Some(name) = names.iter().find(|n| n.contains(',')) {
        let each: Vec<String> = name.split(',').map(|n| format!("--optimizer {}", n.trim())).collect();
        bail!("--optimizer {name:?}: one optimizer per flag, repeat it ({})", each.join(" "));
    }
    let sets = given.sets.iter().map(|s| parse_set(s)).collect::<Result<Vec<_>>>()?;
    for s in &sets {
        if let Some(scope) = s.scope.as_ref().filter(|sc| !names.contains(sc)) {
            bail!("--set {}: no --optimizer {scope:?} in this run (it has {})", s.text, names.join(", "));
        }
    }
    let presets =
        names.iter().map(|n| Ok(by_name::config(n, Vec::<(String, Value)>::new())?)).collect::<Result<Vec<_>>>()?;
    let is_rmsprop = |c: &OptimizerConfig| matches!(c, OptimizerConfig::RmsProp(_));
    if given.gamma.is_some() && !presets.iter().any(is_rmsprop) {
        bail!(
            "--gamma sets RMSProp's decay γ and none of {} is RMSProp; set another optimizer's own with --set \
             (e.g. adam.beta2=0.99, adadelta.rho=0.9)",
            names.join(", ")
        );
    }
    names
        .iter()
        .zip(&presets)
        .map(|(name, preset)| {
            let mut h: Vec<(String, Value)> = Vec::new();
            if let Some(lr) = given.lr {
                h.push(("lr".into(), Value::Num(lr)));
            }
            if let Some(g) = given.gamma.filter(|_| is_rmsprop(preset)) {
                h.push(("decay".into(), Value::Num(g)));
            }
            let mut config = by_name::config(name, h.clone()).with_context(|| format!("{name} with --lr/--gamma"))?;
            for s in sets.iter().filter(|s| s.scope.as_ref().is_none_or(|sc| sc == name)) {
                // two flags for one value would leave one of them silently ignored
                let both = |flag: &str, v: Option<f64>, field: &str, what: &str| match v {
                    Some(v) if sets_field(name, s, field) => {
                        bail!("--{flag} {v} and --set {} both set {name}'s {what}: give one of them", s.text)
                    }
                    _ => Ok(()),
                };
                both("lr", given.lr.filter(|_| given.typed[0]), "lr", "learning rate")?;
                let gamma = given.gamma.filter(|_| given.typed[1] && is_rmsprop(preset));
                both("gamma", gamma, "decay", "decay γ")?;
                h.push((s.key.clone(), s.value.clone()));
                config = by_name::config(name, h.clone()).with_context(|| match &s.scope {
                    // "scope it" only where there is another optimizer to scope it away from
                    Some(_) => format!("--set {}", s.text),
                    None if names.len() == 1 => format!("--set {}", s.text),
                    None => format!(
                        "--set {} goes to every --optimizer and {name} refuses it (scope it: --set NAME.{}=...)",
                        s.text, s.key
                    ),
                })?;
            }
            Ok(config)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(names: &[&str], lr: Option<f64>, gamma: Option<f64>, sets: &[&str]) -> Result<Vec<OptimizerConfig>> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        configs(&names, &Overrides { lr, gamma, sets: &sets, typed: [true, true] })
    }

    #[test]
    fn presets_keep_their_defaults_unless_given() {
        let c = run(&["pytorch.rmsprop"], None, None, &[]).unwrap();
        let OptimizerConfig::RmsProp(r) = &c[0] else { panic!() };
        assert_eq!((r.common.lr, r.decay), (0.01, 0.99));
        let c = run(&["pytorch.rmsprop", "adam"], Some(0.4), Some(0.9), &[]).unwrap();
        let (OptimizerConfig::RmsProp(r), OptimizerConfig::Adam(a)) = (&c[0], &c[1]) else { panic!() };
        assert_eq!((r.common.lr, r.decay, a.common.lr, a.beta2), (0.4, 0.9, 0.4, 0.999));
    }

    #[test]
    fn scoped_sets_go_to_one_optimizer() {
        let c = run(&["rmsprop", "sgd", "adam"], None, None, &["sgd.momentum=0.9", "pytorch.rmsprop.centered=true"]);
        let e = c.unwrap_err().to_string();
        assert!(e.contains("no --optimizer \"pytorch.rmsprop\" in this run"), "{e}");
        let c = run(&["rmsprop", "sgd", "adam"], None, None, &["sgd.momentum=0.9", "weight_decay=0.01"]).unwrap();
        let (OptimizerConfig::RmsProp(r), OptimizerConfig::Sgd(s), OptimizerConfig::Adam(a)) = (&c[0], &c[1], &c[2])
        else {
            panic!()
        };
        assert_eq!((r.momentum, s.momentum), (0.0, 0.9));
        assert_eq!([r.common.weight_decay, s.common.weight_decay, a.common.weight_decay], [0.01; 3]);
        let c = run(&["pytorch.rmsprop"], None, None, &["pytorch.rmsprop.centered=true"]).unwrap();
        assert!(matches!(&c[0], OptimizerConfig::RmsProp(r) if r.centered));
    }

    #[test]
    fn an_unscoped_set_names_who_refuses_it() {
        let e = format!("{:#}", run(&["rmsprop", "adam"], None, None, &["momentum=0.9"]).unwrap_err());
        assert!(e.starts_with("--set momentum=0.9 goes to every --optimizer and adam refuses it"), "{e}");
        assert!(e.contains("unknown hyperparameter \"momentum\" for adam"), "{e}");
    }

    #[test]
    fn gamma_needs_an_rmsprop() {
        let e = run(&["adam", "sgd"], None, Some(0.9), &[]).unwrap_err().to_string();
        assert!(e.starts_with("--gamma sets RMSProp's decay"), "{e}");
        assert!(run(&["nope"], None, None, &[]).unwrap_err().to_string().contains("unknown optimizer \"nope\""));
        assert!(run(&["rmsprop"], None, None, &["centered"]).is_err());
    }
}
