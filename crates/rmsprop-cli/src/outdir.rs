//! Where a command writes: `--out DIR`, by default `rmsprop-out/<command>/`, and file names
//! made from what the run was asked, so that trying the exercises one after another keeps
//! every figure (`chapter_rmsprop_gamma=0.svg` next to `chapter_rmsprop_gamma=1.svg`).

use crate::DataArgs;
use rmsprop_lab::hyper::number;
use std::path::{Path, PathBuf};

/// `out`, or `rmsprop-out/<command>`.
pub fn dir(out: Option<&Path>, command: &str) -> PathBuf {
    out.map_or_else(|| Path::new("rmsprop-out").join(command), Path::to_path_buf)
}

/// A file stem from the parts of a run's description: joined by `_`, every character that is
/// not a letter, digit, `_`, `.`, `=`, `+` or `-` replaced by `-`, and a long one shortened to 100
/// characters plus a hash of the whole, so that different runs keep different names.
pub fn stem(parts: &[String]) -> String {
    let joined = parts.join("_");
    let clean: String = joined
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '=' | '+' | '-') { c } else { '-' })
        .collect();
    if clean.len() <= 100 {
        return clean;
    }
    // FNV-1a: the same name for the same run on every machine and toolchain
    let hash = joined.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{}-{hash:016x}", &clean[..100])
}

fn given(name: &str, v: Option<f64>) -> Option<String> {
    v.map(|v| format!("{name}={}", number(v)))
}

fn data_parts(d: &DataArgs) -> impl Iterator<Item = String> {
    let file = d.data.as_ref().map(|p| format!("data={}", p.file_stem().unwrap_or_default().to_string_lossy()));
    file.into_iter().chain(d.rows.map(|r| format!("rows={r}")))
}

/// `chapter_rmsprop+adagrad_lr=0.4_sgd.momentum=0.9`: the objective, the optimizers, and what
/// was given beside them.
pub fn trace2d_parts(
    objective: &str,
    optimizers: &[String],
    lr: Option<f64>,
    gamma: Option<f64>,
    sets: &[String],
    steps: u64,
    start: [f64; 2],
) -> Vec<String> {
    let mut parts = vec![objective.to_string(), optimizers.join("+")];
    parts.extend(given("lr", lr));
    parts.extend(given("gamma", gamma));
    parts.extend(sets.iter().cloned());
    if steps != 20 {
        parts.push(format!("steps={steps}"));
    }
    if start != [-5.0, -2.0] {
        parts.push(format!("start={},{}", number(start[0]), number(start[1])));
    }
    parts
}

/// `mxnet.rmsprop_gamma=1_seed=3`.
pub fn train_parts(
    optimizer: &str,
    lr: Option<f64>,
    gamma: Option<f64>,
    sets: &[String],
    seed: u64,
    data: &DataArgs,
) -> Vec<String> {
    let mut parts = vec![optimizer.to_string()];
    parts.extend(given("lr", lr));
    parts.extend(given("gamma", gamma));
    parts.extend(sets.iter().cloned());
    if seed != 0 {
        parts.push(format!("seed={seed}"));
    }
    parts.extend(data_parts(data));
    parts
}

/// `mxnet.rmsprop_lrs=0.01+0.1_gammas=0.9+1_seeds=2`.
pub fn sweep_parts(
    optimizer: &str,
    lrs: &[f64],
    gammas: &[f64],
    sets: &[String],
    seeds: u64,
    data: &DataArgs,
) -> Vec<String> {
    let list = |v: &[f64]| v.iter().map(|&x| number(x)).collect::<Vec<_>>().join("+");
    let mut parts = vec![optimizer.to_string(), format!("lrs={}", list(lrs))];
    if !gammas.is_empty() {
        parts.push(format!("gammas={}", list(gammas)));
    }
    parts.extend(sets.iter().cloned());
    parts.push(format!("seeds={seeds}"));
    parts.extend(data_parts(data));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_asked_differently_get_different_names() {
        let names = |gamma| stem(&trace2d_parts("chapter", &["rmsprop".into()], None, gamma, &[], 20, [-5.0, -2.0]));
        assert_eq!(names(Some(0.0)), "chapter_rmsprop_gamma=0");
        assert_eq!(names(Some(1.0)), "chapter_rmsprop_gamma=1");
        assert_eq!(names(None), "chapter_rmsprop");
        let odd = stem(&["a/b c".into(), "x*y".into()]);
        assert_eq!(odd, "a-b-c_x-y");
        let long: Vec<String> = (0..40).map(|i| format!("part{i}")).collect();
        let (a, b) = (stem(&long), stem(&long[1..]));
        assert!(a.len() <= 117 && a != b, "{a} {b}");
        assert_eq!(dir(None, "train"), Path::new("rmsprop-out/train"));
    }
}
