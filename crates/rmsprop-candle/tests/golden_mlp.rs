//! Every golden MLP training run (`testdata/golden/mlp/`, recorded from PyTorch and optax)
//! replayed through candle: gradients by candle's autodiff, steps by the `Trainer`.

#[path = "../examples/replay_mlp/replay.rs"]
mod replay;

fn golden(file: &str) -> String {
    let path = format!("{}/../../testdata/golden/mlp/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rows() -> replay::Rows {
    let text = String::from_utf8_lossy(rmsprop_lab::data::EMBEDDED);
    rmsprop_lab::data::parse(&text, std::path::Path::new(rmsprop_lab::data::FILE_NAME)).unwrap()
}

#[test]
fn every_recorded_training_run_is_reproduced() {
    let rows = rows();
    for (file, cases) in [("torch.json", 6), ("optax.json", 1)] {
        let verdicts = replay::replay_file(&golden(file), &rows).unwrap();
        assert_eq!(verdicts.len(), cases, "{file}");
        for v in verdicts {
            assert!(v.failure.is_none(), "{file}: {}: {}", v.name, v.failure.unwrap());
        }
    }
}

#[test]
fn a_changed_hyperparameter_or_an_unknown_field_fails_its_case() {
    let rows = rows();
    let mut file: serde_json::Value = serde_json::from_str(&golden("torch.json")).unwrap();
    file["cases"][0]["hyperparams"]["framework"]["momentum"] = 0.0.into();
    file["cases"][2]["tolerance"]["param_rtol"] = (-1.0).into();
    file["cases"][4]["surprise"] = 1.into();
    let verdicts = replay::replay_file(&file.to_string(), &rows).unwrap();
    let failed: Vec<usize> = (0..verdicts.len()).filter(|&i| verdicts[i].failure.is_some()).collect();
    assert_eq!(failed, [0, 2, 4]);
    assert!(verdicts[4].failure.as_ref().unwrap().contains("surprise"));
}
