//! The report's explorer in a real browser: `rmsprop chapter` writes the report, Debian's
//! chromium opens it headless through chromedriver (WebDriver), the test moves the η and γ
//! sliders with the keyboard, switches the optimizer and the ε placement, and each time
//! compares the end point the page shows with `rmsprop trace2d --json` for the same
//! settings. A screenshot of the explorer is saved as a test artifact.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`;
//! or set `CHROMIUM` and `CHROMEDRIVER` to their paths). Where they are absent the test says
//! so loudly and passes, unless `RMSPROP_REQUIRE_BROWSER=1` (set by `.ci/run`), which makes
//! their absence a failure.

mod common;
use common::{json, rmsprop, stderr, tmp};
use fantoccini::{ClientBuilder, Locator};
use rmsprop_lab::explorer::{BETA2S, GAMMAS, LRS};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// WebDriver's keys (the WebDriver spec's code points).
const ARROW_LEFT: &str = "\u{E012}";
const ARROW_RIGHT: &str = "\u{E014}";

/// The browser and its driver: from `CHROMIUM`/`CHROMEDRIVER`, else Debian's paths.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let find = |var: &str, default: &str| {
        let p = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
        p.is_file().then_some(p)
    };
    Some((find("CHROMIUM", "/usr/bin/chromium")?, find("CHROMEDRIVER", "/usr/bin/chromedriver")?))
}

/// chromedriver, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The end point `rmsprop trace2d` prints for these arguments.
fn cli_end(args: &[&str], dir: &std::path::Path) -> (String, usize) {
    let mut all = vec!["trace2d", "--json", "--steps", "20"];
    all.extend_from_slice(args);
    let j = json(&all, dir);
    let run = &j["runs"][0];
    (run["printed"].as_str().unwrap().to_string(), run["points"].as_array().unwrap().len())
}

#[test]
fn the_explorer_follows_its_sliders_in_a_real_browser() {
    let Some((chromium, chromedriver)) = tools() else {
        let msg = "the browser test needs chromium and chromedriver: install them with \
                   `apt-get install chromium chromium-driver` (Debian), or set CHROMIUM and CHROMEDRIVER";
        if std::env::var_os("RMSPROP_REQUIRE_BROWSER").is_some_and(|v| v != "0") {
            panic!("{msg} (RMSPROP_REQUIRE_BROWSER is set: a missing browser is a failure)");
        }
        eprintln!("\n*** SKIPPED the_explorer_follows_its_sliders_in_a_real_browser: {msg} ***\n");
        return;
    };
    let dir = tmp("explorer-browser");
    let o = rmsprop(&["chapter", "--out", "ch"], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = dir.join("ch/index.html");

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _driver = Driver(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", chromedriver.display())),
    );
    let profile = dir.join("chromium-profile");
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--no-first-run", format!("--user-data-dir={}", profile.display()), "--window-size=1200,2000"]
        }
    }))
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        // chromedriver takes a moment to listen
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if started.elapsed() < Duration::from_secs(30) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no WebDriver session from {}: {e}", chromedriver.display()),
            }
        };
        client.goto(&format!("file://{}", report.display())).await.unwrap();
        let text = |id: &'static str| {
            let client = client.clone();
            async move { client.find(Locator::Id(id)).await.unwrap().text().await.unwrap() }
        };
        let points = || {
            let client = client.clone();
            async move { client.find_all(Locator::Css("#explorer-contour .explorer-point")).await.unwrap().len() }
        };
        let lr = |i: usize| format!("{}", LRS[i]);
        let gamma = |i: usize| format!("{}", GAMMAS[i]);
        let (mut li, mut gi) =
            (LRS.iter().position(|&l| l == 0.4).unwrap(), GAMMAS.iter().position(|&g| g == 0.9).unwrap());

        // as it opens: the chapter's demo
        let (end, n) = cli_end(&["--optimizer", "rmsprop", "--lr", &lr(li), "--gamma", &gamma(gi)], &dir);
        assert_eq!(text("explorer-end").await, end);
        assert_eq!(end, "epoch 20, x1 -0.010599, x2 0.000000");
        assert_eq!(points().await, n);

        // η one step right, γ two steps left, with the keyboard as a reader would
        let slider = client.find(Locator::Id("explorer-lr")).await.unwrap();
        slider.send_keys(ARROW_RIGHT).await.unwrap();
        li += 1;
        let slider = client.find(Locator::Id("explorer-gamma")).await.unwrap();
        slider.send_keys(&ARROW_LEFT.repeat(2)).await.unwrap();
        gi -= 2;
        assert_eq!(text("explorer-lr-value").await, lr(li));
        assert_eq!(text("explorer-gamma-value").await, gamma(gi));
        let (end, n) = cli_end(&["--optimizer", "rmsprop", "--lr", &lr(li), "--gamma", &gamma(gi)], &dir);
        assert_eq!(text("explorer-end").await, end, "η {}, γ {}", lr(li), gamma(gi));
        assert_eq!(points().await, n);

        // ε outside the root
        client.find(Locator::Id("explorer-placement")).await.unwrap().select_by_value("outside_sqrt").await.unwrap();
        let (end, _) = cli_end(
            &["--optimizer", "rmsprop", "--lr", &lr(li), "--gamma", &gamma(gi), "--set", "eps_placement=outside_sqrt"],
            &dir,
        );
        assert_eq!(text("explorer-end").await, end);

        // another optimizer: Adagrad has no γ
        client.find(Locator::Id("explorer-optimizer")).await.unwrap().select_by_value("adagrad").await.unwrap();
        let (end, n) =
            cli_end(&["--optimizer", "adagrad", "--lr", &lr(li), "--set", "eps_placement=outside_sqrt"], &dir);
        assert_eq!(text("explorer-end").await, end);
        assert_eq!(points().await, n);
        assert!(text("explorer-settings").await.starts_with("Adagrad"));

        // Adam on the rotated problem, β2 back at 0.99
        client.find(Locator::Id("explorer-optimizer")).await.unwrap().select_by_value("adam").await.unwrap();
        client.find(Locator::Id("explorer-objective")).await.unwrap().select_by_value("rotated").await.unwrap();
        let slider = client.find(Locator::Id("explorer-gamma")).await.unwrap();
        slider.send_keys(&ARROW_RIGHT.repeat(3)).await.unwrap();
        gi += 3;
        let beta2 = format!("beta2={}", BETA2S[gi]);
        assert_eq!(text("explorer-gamma-value").await, format!("{}", BETA2S[gi]));
        let (end, n) =
            cli_end(&["--optimizer", "adam", "--lr", &lr(li), "--set", &beta2, "--objective", "rotated"], &dir);
        assert_eq!(text("explorer-end").await, end);
        assert_eq!(points().await, n);

        // the contour panel has ticks on both axes, numbers, and marks the minimum
        let ticks = client.find_all(Locator::Css("#explorer-contour .explorer-tick")).await.unwrap();
        assert!(ticks.len() >= 8, "{} ticks", ticks.len());
        for t in ticks {
            let label = t.text().await.unwrap();
            assert!(label.parse::<f64>().is_ok(), "a tick reads {label:?}");
        }
        assert_eq!(client.find_all(Locator::Css("#explorer-contour .explorer-minimum")).await.unwrap().len(), 1);

        // Adam's β2 slider ends below 1, at a value Adam takes: its command runs
        let slider = client.find(Locator::Id("explorer-gamma")).await.unwrap();
        slider.send_keys(ARROW_RIGHT).await.unwrap();
        gi += 1;
        assert_eq!(text("explorer-gamma-value").await, "0.999");
        let beta2 = format!("beta2={}", BETA2S[gi]);
        let (end, _) =
            cli_end(&["--optimizer", "adam", "--lr", &lr(li), "--set", &beta2, "--objective", "rotated"], &dir);
        assert_eq!(text("explorer-end").await, end);

        // RMSProp at γ = 1 on the chapter's problem diverges at step 1: the rates panel says so
        client.find(Locator::Id("explorer-optimizer")).await.unwrap().select_by_value("rmsprop").await.unwrap();
        client.find(Locator::Id("explorer-objective")).await.unwrap().select_by_value("chapter").await.unwrap();
        client.find(Locator::Id("explorer-placement")).await.unwrap().select_by_value("inside_sqrt").await.unwrap();
        client.find(Locator::Id("explorer-lr")).await.unwrap().send_keys(ARROW_LEFT).await.unwrap();
        li -= 1;
        assert_eq!((lr(li), gamma(gi)), ("0.4".to_string(), "1".to_string()));
        let (end, _) = cli_end(&["--optimizer", "rmsprop", "--lr", &lr(li), "--gamma", &gamma(gi)], &dir);
        assert!(end.contains("diverged at step 1"), "{end}");
        assert_eq!(text("explorer-end").await, end);
        assert_eq!(text("explorer-rates-note").await, "diverged at step 1");

        // the artifact: the explorer with its trajectory
        let shot = client.find(Locator::Id("explorer")).await.unwrap().screenshot().await.unwrap();
        assert!(shot.starts_with(b"\x89PNG") && shot.len() > 10_000, "a blank screenshot ({} bytes)", shot.len());
        let artifact = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("explorer.png");
        std::fs::write(&artifact, &shot).unwrap();
        eprintln!("screenshot of the explorer: {}", artifact.display());
        client.close().await.unwrap();
    });
}
