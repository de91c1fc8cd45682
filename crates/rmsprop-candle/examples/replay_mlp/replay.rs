//! Replays golden training runs of `testdata/golden/mlp/` (format: its README) through
//! candle: candle computes the gradients, a [`Trainer`] steps the parameters; the batch
//! losses, the step-1 gradients, the full-data losses and the parameter snapshots are
//! compared with the recorded ones within the file's tolerances.

use candle_core::{DType, Device, Tensor, Var};
use rmsprop::NonFinitePolicy;
use rmsprop_candle::Trainer;
use serde_json::Value;

/// The airfoil data's raw rows (6 columns).
pub type Rows = Vec<[f64; 6]>;

/// One case's verdict: its name, and the first failure if any.
pub struct Verdict {
    pub name: String,
    pub failure: Option<String>,
}

/// Every case of the file `json` (its text), over the raw data `rows`.
pub fn replay_file(json: &str, rows: &[[f64; 6]]) -> Result<Vec<Verdict>, String> {
    let file: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    known(&file, &["format_version", "framework", "framework_version", "problem", "num_cases", "cases"], "the file")?;
    if file["format_version"] != 1 {
        return Err(format!("format_version {} (this replay reads 1)", file["format_version"]));
    }
    let problem = &file["problem"];
    let z = standardise(rows);
    check_data(&problem["data"], rows, &z)?;
    let framework = file["framework"].as_str().ok_or("no framework")?;
    let cases = file["cases"].as_array().ok_or("no cases")?;
    if file["num_cases"].as_u64() != Some(cases.len() as u64) {
        return Err(format!("num_cases {} but {} cases", file["num_cases"], cases.len()));
    }
    Ok(cases
        .iter()
        .map(|case| {
            let name = case["name"].as_str().unwrap_or("(unnamed)").to_string();
            let failure = match case["dtype"].as_str() {
                Some("float64") => replay_case(framework, case, &z, DType::F64).err(),
                Some("float32") => replay_case(framework, case, &z, DType::F32).err(),
                other => Some(format!("dtype {other:?}")),
            };
            Verdict { name, failure }
        })
        .collect())
}

const CASE_FIELDS: [&str; 22] = [
    "name",
    "variant",
    "optimizer",
    "framework",
    "framework_version",
    "framework_call",
    "hyperparams",
    "dtype",
    "init_seed",
    "batch_seed",
    "batch_size",
    "steps",
    "param_names",
    "param_shapes",
    "init",
    "batches",
    "grads_step1",
    "train_loss",
    "full_loss_steps",
    "full_loss",
    "snapshots",
    "tolerance",
];

/// Every field of `v` is one of `fields`: a field this replay does not understand fails it.
fn known(v: &Value, fields: &[&str], what: &str) -> Result<(), String> {
    let object = v.as_object().ok_or_else(|| format!("{what} is not an object"))?;
    match object.keys().find(|k| !fields.contains(&k.as_str())) {
        Some(k) => Err(format!("{what} has a field this replay does not understand: {k:?}")),
        None => Ok(()),
    }
}

/// Per column, the mean and the population std (ddof 0) in `f64` (the README's *Data*).
fn moments(rows: &[[f64; 6]]) -> ([f64; 6], [f64; 6]) {
    let n = rows.len() as f64;
    let mean: [f64; 6] = std::array::from_fn(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n);
    let std = std::array::from_fn(|j| (rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n).sqrt());
    (mean, std)
}

/// Column-wise `(v - mean) / std`.
fn standardise(rows: &[[f64; 6]]) -> Rows {
    let (mean, std) = moments(rows);
    rows.iter().map(|r| std::array::from_fn(|j| (r[j] - mean[j]) / std[j])).collect()
}

fn numbers(v: &Value, what: &str) -> Result<Vec<f64>, String> {
    v.as_array()
        .ok_or_else(|| format!("{what} is not an array"))?
        .iter()
        .map(|x| x.as_f64().ok_or_else(|| format!("{what} holds {x}, not a number")))
        .collect()
}

/// The data loaded is the data recorded: checksums, moments, first and last rows.
fn check_data(data: &Value, rows: &[[f64; 6]], z: &[[f64; 6]]) -> Result<(), String> {
    let n = rows.len();
    if data["rows"].as_u64() != Some(n as u64) {
        return Err(format!("the data has {n} rows, the file {}", data["rows"]));
    }
    let close = |a: f64, e: f64, tol: f64| (a - e).abs() <= tol;
    let sums: [[f64; 6]; 3] = [
        std::array::from_fn(|j| z.iter().map(|r| r[j]).sum()),
        std::array::from_fn(|j| z.iter().map(|r| r[j] * r[j]).sum()),
        std::array::from_fn(|j| z.iter().enumerate().map(|(i, r)| (i + 1) as f64 / n as f64 * r[j]).sum()),
    ];
    for (k, name) in ["sum", "sum_sq", "weighted_sum"].iter().enumerate() {
        let expected = numbers(&data["checksum"][name], name)?;
        for (j, e) in expected.iter().enumerate() {
            if !close(sums[k][j], *e, 1e-9 * e.abs().max(1.0)) {
                return Err(format!("data checksum {name}[{j}]: {} here, {e} recorded", sums[k][j]));
            }
        }
    }
    let (mean, std) = moments(rows);
    for (name, row) in [("raw_mean", &mean), ("raw_std", &std), ("first_row", &z[0]), ("last_row", &z[n - 1])] {
        for (j, e) in numbers(&data[name], name)?.iter().enumerate() {
            if !close(row[j], *e, 1e-12 * e.abs()) {
                return Err(format!("data {name}[{j}]: {} here, {e} recorded", row[j]));
            }
        }
    }
    Ok(())
}

/// The model `y = W2 tanh(W1 x + b1) + b2` and its loss `mean 0.5 (y - t)²` on rows `idx`.
fn loss(params: &[Var], x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    let [w1, b1, w2, b2] = params else { candle_core::bail!("four parameters") };
    let h = x.matmul(&w1.t()?)?.broadcast_add(b1)?.tanh()?;
    let y_hat = h.matmul(&w2.t()?)?.broadcast_add(b2)?.squeeze(1)?;
    (y_hat - y)?.sqr()?.mean_all()? * 0.5
}

/// The rows `idx` of `z` as features `[B, 5]` and targets `[B]` in `dtype`.
fn batch(z: &[[f64; 6]], idx: &[usize], dtype: DType) -> candle_core::Result<(Tensor, Tensor)> {
    let x: Vec<f64> = idx.iter().flat_map(|&i| z[i][..5].to_vec()).collect();
    let y: Vec<f64> = idx.iter().map(|&i| z[i][5]).collect();
    let x = Tensor::from_vec(x, (idx.len(), 5), &Device::Cpu)?.to_dtype(dtype)?;
    let y = Tensor::from_vec(y, idx.len(), &Device::Cpu)?.to_dtype(dtype)?;
    Ok((x, y))
}

fn values(t: &Tensor) -> Result<Vec<f64>, String> {
    let t = t.flatten_all().and_then(|t| t.to_dtype(DType::F64)).map_err(|e| e.to_string())?;
    t.to_vec1::<f64>().map_err(|e| e.to_string())
}

fn replay_case(framework: &str, case: &Value, z: &[[f64; 6]], dtype: DType) -> Result<(), String> {
    known(case, &CASE_FIELDS, "the case")?;
    known(&case["hyperparams"], &["framework", "normalized", "effective_float64"], "hyperparams")?;
    known(&case["tolerance"], &["param_rtol", "loss_rtol", "grad_rtol"], "tolerance")?;
    let tol = |k: &str| case["tolerance"][k].as_f64().filter(|t| t.is_finite() && *t >= 0.0);
    let (param_rtol, loss_rtol, grad_rtol) = match (tol("param_rtol"), tol("loss_rtol"), tol("grad_rtol")) {
        (Some(p), Some(l), Some(g)) => (p, l, g),
        _ => return Err("tolerances must be numbers >= 0".into()),
    };
    let e = |e: candle_core::Error| e.to_string();
    let names: Vec<String> = serde_json::from_value(case["param_names"].clone()).map_err(|e| e.to_string())?;
    let shapes: Vec<Vec<usize>> = serde_json::from_value(case["param_shapes"].clone()).map_err(|e| e.to_string())?;
    if names.len() != 4 || shapes.len() != 4 {
        return Err("the model has four parameters".into());
    }
    let mut params = Vec::new();
    for (name, shape) in names.iter().zip(&shapes) {
        let init = numbers(&case["init"][name], name)?;
        let t = Tensor::from_vec(init, shape.as_slice(), &Device::Cpu).and_then(|t| t.to_dtype(dtype)).map_err(e)?;
        params.push(Var::from_tensor(&t).map_err(e)?);
    }
    let optimizer = case["optimizer"].as_str().ok_or("no optimizer")?;
    let config = rmsprop::by_name::config_json(&format!("{framework}.{optimizer}"), &case["hyperparams"]["framework"])
        .map_err(|e| e.to_string())?;
    let named = names.iter().cloned().zip(params.iter().cloned());
    let mut trainer = Trainer::from_named(named, config)
        .map_err(|e| e.to_string())?
        .with_nonfinite_policy(NonFinitePolicy::Propagate);

    let steps = case["steps"].as_u64().ok_or("no steps")? as usize;
    let batches: Vec<Vec<usize>> = serde_json::from_value(case["batches"].clone()).map_err(|e| e.to_string())?;
    let train_loss = numbers(&case["train_loss"], "train_loss")?;
    let full_steps: Vec<usize> = serde_json::from_value(case["full_loss_steps"].clone()).map_err(|e| e.to_string())?;
    let full_loss = numbers(&case["full_loss"], "full_loss")?;
    let snapshots = case["snapshots"].as_array().ok_or("no snapshots")?;
    if steps == 0 || batches.len() != steps || train_loss.len() != steps || full_steps.len() != full_loss.len() {
        return Err("steps, batches, train_loss and full_loss do not agree in length".into());
    }
    if snapshots.is_empty() || full_steps.is_empty() {
        return Err("nothing to compare: no snapshot or no full-data loss".into());
    }
    // the per-tensor scale of the parameter tolerance: the largest |value| over init and snapshots
    let mut scale: Vec<f64> = names
        .iter()
        .map(|n| numbers(&case["init"][n], n).map(|v| v.iter().fold(0.0f64, |m, x| m.max(x.abs()))))
        .collect::<Result<_, _>>()?;
    for s in snapshots {
        for (k, n) in names.iter().enumerate() {
            scale[k] = numbers(&s["params"][n], n)?.iter().fold(scale[k], |m, x| m.max(x.abs()));
        }
    }
    let all: Vec<usize> = (0..z.len()).collect();
    let (x_all, y_all) = batch(z, &all, dtype).map_err(e)?;
    let check_loss = |what: String, actual: f64, expected: f64| {
        if (actual - expected).abs() <= loss_rtol * expected.abs() {
            Ok(())
        } else {
            Err(format!("{what}: {actual} here, {expected} recorded (loss_rtol {loss_rtol})"))
        }
    };
    let full = |params: &[Var]| -> Result<f64, String> {
        let l = loss(params, &x_all, &y_all).map_err(e)?;
        Ok(values(&l)?[0])
    };
    let mut compared = 0;
    for (s, step) in full_steps.iter().enumerate() {
        if *step == 0 {
            check_loss("full-data loss at step 0".into(), full(&params)?, full_loss[s])?;
            compared += 1;
        }
    }
    for t in 1..=steps {
        let idx = &batches[t - 1];
        if idx.iter().any(|&i| i >= z.len()) {
            return Err(format!("batch {t} names a row past the data"));
        }
        let (x, y) = batch(z, idx, dtype).map_err(e)?;
        let l = loss(&params, &x, &y).map_err(e)?;
        check_loss(format!("batch loss before step {t}"), values(&l)?[0], train_loss[t - 1])?;
        let grads = l.backward().map_err(e)?;
        if t == 1 {
            for (name, p) in names.iter().zip(&params) {
                let expected = numbers(&case["grads_step1"][name], name)?;
                let g = values(grads.get(p.as_tensor()).ok_or("no gradient")?)?;
                let bound = grad_rtol * expected.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                if let Some(i) = (0..g.len()).find(|&i| (g[i] - expected[i]).abs() > bound) {
                    return Err(format!("step-1 gradient of {name}[{i}]: {} here, {} recorded", g[i], expected[i]));
                }
            }
        }
        trainer.step(&grads).map_err(|e| e.to_string())?;
        for snapshot in snapshots.iter().filter(|s| s["step"].as_u64() == Some(t as u64)) {
            for (k, (name, p)) in names.iter().zip(&params).enumerate() {
                let expected = numbers(&snapshot["params"][name], name)?;
                let actual = values(p.as_tensor())?;
                if actual.len() != expected.len() {
                    return Err(format!(
                        "snapshot {t} of {name}: {} values, {} recorded",
                        actual.len(),
                        expected.len()
                    ));
                }
                if let Some(i) = (0..actual.len()).find(|&i| (actual[i] - expected[i]).abs() > param_rtol * scale[k]) {
                    return Err(format!(
                        "{name}[{i}] after step {t}: {} here, {} recorded (param_rtol {param_rtol} of {})",
                        actual[i], expected[i], scale[k]
                    ));
                }
            }
            compared += 1;
        }
        for (s, step) in full_steps.iter().enumerate() {
            if *step == t {
                check_loss(format!("full-data loss after step {t}"), full(&params)?, full_loss[s])?;
                compared += 1;
            }
        }
    }
    if compared != snapshots.len() + full_steps.len() {
        return Err("a snapshot or full-data loss names a step outside the run".into());
    }
    Ok(())
}
