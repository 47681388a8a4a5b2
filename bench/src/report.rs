//! Options, percentiles and result files shared by every scenario.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::Serialize;

#[derive(Debug, Clone)]
pub struct Options {
    pub values: BTreeMap<String, String>,
}

impl Options {
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut values = BTreeMap::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let name = arg
                .strip_prefix("--")
                .ok_or_else(|| anyhow::anyhow!("expected --option value, got {arg:?}"))?;
            let value = iter
                .next()
                .ok_or_else(|| anyhow::anyhow!("--{name} needs a value"))?;
            values.insert(name.to_owned(), value.clone());
        }
        Ok(Self { values })
    }

    pub fn number(&self, name: &str, default: u64) -> anyhow::Result<u64> {
        match self.values.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|_| anyhow::anyhow!("--{name} must be a whole number")),
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub fn percentiles(mut samples: Vec<Duration>) -> Percentiles {
    samples.sort();
    let at = |fraction_percent: usize| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let index = ((samples.len() * fraction_percent).div_ceil(100)).saturating_sub(1);
        samples[index.min(samples.len() - 1)].as_secs_f64() * 1000.0
    };
    Percentiles {
        samples: samples.len(),
        p50_ms: at(50),
        p95_ms: at(95),
        p99_ms: at(99),
        max_ms: samples
            .last()
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0),
    }
}

/// One measured line of a scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub target: Option<String>,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub started_at: String,
    pub machine: String,
    pub measurements: Vec<Measurement>,
    pub correctness: Vec<String>,
}

pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {}", std::env::consts::ARCH)
}

pub fn markdown(result: &ScenarioResult) -> String {
    let mut out = format!(
        "### `{}` ({}, {})\n\n| measurement | value | target |\n|---|---|---|\n",
        result.scenario, result.started_at, result.machine
    );
    for m in &result.measurements {
        out.push_str(&format!(
            "| {} | {:.1} {} | {} |\n",
            m.name,
            m.value,
            m.unit,
            m.target.as_deref().unwrap_or("")
        ));
    }
    if !result.correctness.is_empty() {
        out.push_str("\nCorrectness checks after the run:\n");
        for check in &result.correctness {
            out.push_str(&format!("- {check}\n"));
        }
    }
    out
}

pub fn write(scenario: &str, result: &ScenarioResult) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = PathBuf::from("bench-results");
    std::fs::create_dir_all(&dir)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let json = dir.join(format!("{scenario}-{stamp}.json"));
    let md = dir.join(format!("{scenario}-{stamp}.md"));
    std::fs::write(&json, serde_json::to_vec_pretty(result)?)?;
    std::fs::write(&md, markdown(result))?;
    Ok((json, md))
}
