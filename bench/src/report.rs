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

    /// `--clients 8,32,64`.
    pub fn list(&self, name: &str, default: &[usize]) -> anyhow::Result<Vec<usize>> {
        match self.values.get(name) {
            None => Ok(default.to_vec()),
            Some(raw) => raw
                .split(',')
                .map(|n| {
                    n.trim()
                        .parse()
                        .map_err(|_| anyhow::anyhow!("--{name} takes numbers like 8,32,64"))
                })
                .collect(),
        }
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
    /// HTTP scenarios: one row per concurrency level.
    pub levels: Vec<LevelResult>,
    /// `pgbench -N` transactions per second on the same server in the same run.
    pub pgbench_tps: Option<f64>,
    /// Peak resident memory of the api and worker processes, in MiB.
    pub peak_rss_mib: Option<(f64, f64)>,
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
    if let Some(tps) = result.pgbench_tps {
        out.push_str(&format!(
            "\n`pgbench -N` (8 clients, same server, same run): {tps:.0} tps\n"
        ));
    }
    if !result.levels.is_empty() {
        out.push_str("\n| clients | settled/s | of pgbench | p50 ms | p95 ms | p99 ms | max ms | not settled in wait | rejected | errors |\n|---|---|---|---|---|---|---|---|---|---|\n");
        for level in &result.levels {
            let ratio = result
                .pgbench_tps
                .map(|tps| format!("{:.0} %", 100.0 * level.throughput_per_s / tps))
                .unwrap_or_default();
            out.push_str(&format!(
                "| {} | {:.0} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} |\n",
                level.clients,
                level.throughput_per_s,
                ratio,
                level.latency.p50_ms,
                level.latency.p95_ms,
                level.latency.p99_ms,
                level.latency.max_ms,
                level.accepted_unsettled,
                level.rejected,
                level.errors
            ));
        }
    }
    if result.levels.iter().any(|l| l.cpu_ms_per_settled.is_some()) {
        out.push_str("\nCPU per settled request (ms; two cores give 2,000 ms of CPU per second):\n\n| level | api | worker | PostgreSQL | benchmark client | other | total | CPU time stolen by the hypervisor |\n|---|---|---|---|---|---|---|---|\n");
        for level in &result.levels {
            if let Some(cpu) = level.cpu_ms_per_settled {
                out.push_str(&format!(
                    "| {} clients | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} % |\n",
                    level.clients,
                    cpu.api,
                    cpu.worker,
                    cpu.postgres,
                    cpu.bench,
                    cpu.other,
                    cpu.total,
                    cpu.stolen_percent
                ));
            }
        }
    }
    if let Some((api, worker)) = result.peak_rss_mib {
        out.push_str(&format!(
            "\nPeak resident memory: api {api:.0} MiB, worker {worker:.0} MiB\n"
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
    if !result.levels.is_empty() {
        std::fs::write(
            dir.join(format!("{scenario}-{stamp}.svg")),
            svg_chart(result),
        )?;
        std::fs::write(
            dir.join(format!("{scenario}-latest.svg")),
            svg_chart(result),
        )?;
    }
    Ok((json, md))
}

/// Throughput (bars) and p99 latency (line) per concurrency level, as a standalone SVG.
pub fn svg_chart(result: &ScenarioResult) -> String {
    const W: f64 = 560.0;
    const H: f64 = 260.0;
    const PAD: f64 = 48.0;
    let levels = &result.levels;
    let max_tps = levels
        .iter()
        .map(|l| l.throughput_per_s)
        .fold(1.0, f64::max);
    let max_p99 = levels.iter().map(|l| l.latency.p99_ms).fold(1.0, f64::max);
    let slot = (W - 2.0 * PAD) / levels.len().max(1) as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"11\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"{PAD}\" y=\"18\" font-size=\"13\">{}: settled/s (bars, left) and p99 ms (line, right)</text>",
        result.scenario
    );
    let mut points = Vec::new();
    for (i, level) in levels.iter().enumerate() {
        let x = PAD + i as f64 * slot;
        let h = (H - 2.0 * PAD) * level.throughput_per_s / max_tps;
        svg.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#fca311\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0}/s</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{} clients</text>",
            x + slot * 0.15,
            H - PAD - h,
            slot * 0.7,
            x + slot / 2.0,
            H - PAD - h - 4.0,
            level.throughput_per_s,
            x + slot / 2.0,
            H - PAD + 14.0,
            level.clients
        ));
        points.push(format!(
            "{:.1},{:.1}",
            x + slot / 2.0,
            H - PAD - (H - 2.0 * PAD) * level.latency.p99_ms / max_p99
        ));
    }
    svg.push_str(&format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#14213d\" stroke-width=\"2\"/>",
        points.join(" ")
    ));
    for (point, level) in points.iter().zip(levels) {
        let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
        svg.push_str(&format!(
            "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"#14213d\"/><text x=\"{x}\" y=\"{y}\" dx=\"6\" dy=\"-6\" fill=\"#14213d\">p99 {:.0} ms</text>",
            level.latency.p99_ms
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// What one concurrency level produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LevelResult {
    pub clients: usize,
    pub seconds: f64,
    pub requests: u64,
    /// Answered 200/201: settled while the client waited.
    pub settled: u64,
    /// Answered 202: accepted but not settled within the wait.
    pub accepted_unsettled: u64,
    /// Answered 4xx.
    pub rejected: u64,
    /// Transport errors and 5xx.
    pub errors: u64,
    pub throughput_per_s: f64,
    pub latency: Percentiles,
    /// CPU time spent per settled request, by process, while this level ran (set by the scenario).
    pub cpu_ms_per_settled: Option<crate::system::CpuSplit>,
}
