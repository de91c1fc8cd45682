//! The explorer's embedded runs: valid JSON that cannot close its script element, one run
//! for every setting the controls can reach, each the core's own run for that setting.

use rmsprop_lab::explorer::{self, CHOICES, LRS, OBJECTIVES, PLACEMENTS, START, STEPS};
use rmsprop_lab::trace2d;

#[test]
fn every_setting_the_controls_reach_has_the_cores_run() {
    let text = explorer::data().unwrap();
    assert!(!text.contains("</"), "the data could close its script element");
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    let runs = d["runs"].as_object().unwrap();
    let mut expected = 0;
    for c in &CHOICES {
        let placements: Vec<Option<&str>> = if c.placement { PLACEMENTS.map(Some).to_vec() } else { vec![None] };
        let gammas: Vec<Option<usize>> =
            if c.gamma_key.is_some() { (0..c.gammas.len()).map(Some).collect() } else { vec![None] };
        for p in &placements {
            for o in OBJECTIVES {
                for (li, &lr) in LRS.iter().enumerate() {
                    for g in &gammas {
                        expected += 1;
                        let key = format!(
                            "{}|{}|{o}|{li}|{}",
                            c.name,
                            p.unwrap_or("-"),
                            g.map_or("-".into(), |g| g.to_string())
                        );
                        let run = runs.get(&key).unwrap_or_else(|| panic!("no run {key}"));
                        let (config, args) = explorer::run_config(c, lr, g.map(|g| c.gammas[g]), *p, o);
                        assert_eq!(run["cmd"], format!("rmsprop trace2d {}", args.join(" ")));
                        match config {
                            Ok(config) => {
                                let t = trace2d::run(&trace2d::objective(o).unwrap(), config, START, STEPS).unwrap();
                                assert_eq!(run["end"], t.printed(), "{key}");
                                assert_eq!(run["p"].as_array().unwrap().len(), t.points.len(), "{key}");
                                assert_eq!(run["r"].as_array().unwrap().len(), t.steps.len(), "{key}");
                            }
                            // the sliders offer only values each optimizer takes (Adam's β2 < 1)
                            Err(e) => panic!("{key}: the page offers a refused setting: {e}"),
                        }
                    }
                }
            }
        }
    }
    assert_eq!(runs.len(), expected);
    // each choice's slider values are in the page, and the objectives' minima
    for (i, c) in CHOICES.iter().enumerate() {
        let offered: Vec<f64> =
            d["choices"][i]["gammas"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(offered, c.gammas, "{}", c.name);
    }
    assert_eq!(d["objectives"]["chapter"]["minimum"], serde_json::json!([0, 0]));
    assert!(explorer::holdings().contains(&format!("holds {expected} runs")));
}
