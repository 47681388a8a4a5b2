//! Prometheus metrics in text format: HTTP requests by route and status with a latency histogram (recorded in
//! this process), and job metrics by queue read from the database at scrape time (so every api process reports
//! the same, whole-system numbers for the queues, whichever process the scrape hits).

use std::{collections::BTreeMap, fmt::Write, sync::Mutex, time::Duration};

use sqlx::PgPool;

/// Upper bounds of the latency histogram, in seconds.
const LATENCY_BUCKETS_SECONDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS_SECONDS.len()],
    count: u64,
    sum_seconds: f64,
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

/// Replaces ids in a path with `{id}` so that routes, not resources, are counted.
pub fn route_label(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            let looks_like_id = segment.len() >= 8
                && segment.chars().any(|c| c.is_ascii_digit())
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-');
            let numeric = !segment.is_empty() && segment.chars().all(|c| c.is_ascii_digit());
            if looks_like_id || numeric {
                "{id}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl Metrics {
    pub fn record(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests
                .entry((route.to_owned(), method.to_owned(), status))
                .or_default() += 1;
        }
        if let Ok(mut latency) = self.latency.lock() {
            let histogram = latency.entry(route.to_owned()).or_default();
            let seconds = elapsed.as_secs_f64();
            for (bucket, bound) in histogram.buckets.iter_mut().zip(LATENCY_BUCKETS_SECONDS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
            histogram.count += 1;
            histogram.sum_seconds += seconds;
        }
    }

    pub async fn render(&self, pool: &PgPool) -> Result<String, sqlx::Error> {
        let mut out = String::new();
        out.push_str(
            "# HELP paycore_http_requests_total HTTP requests by route, method and status.\n",
        );
        out.push_str("# TYPE paycore_http_requests_total counter\n");
        if let Ok(requests) = self.requests.lock() {
            for ((route, method, status), count) in requests.iter() {
                let _ = writeln!(
                    out,
                    "paycore_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {count}"
                );
            }
        }
        out.push_str(
            "# HELP paycore_http_request_duration_seconds HTTP request latency by route.\n",
        );
        out.push_str("# TYPE paycore_http_request_duration_seconds histogram\n");
        if let Ok(latency) = self.latency.lock() {
            for (route, histogram) in latency.iter() {
                for (count, bound) in histogram.buckets.iter().zip(LATENCY_BUCKETS_SECONDS) {
                    let _ = writeln!(
                        out,
                        "paycore_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                    );
                }
                let _ = writeln!(
                    out,
                    "paycore_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n\
                     paycore_http_request_duration_seconds_sum{{route=\"{route}\"}} {}\n\
                     paycore_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                    histogram.count, histogram.sum_seconds, histogram.count
                );
            }
        }
        render_jobs(pool, &mut out).await?;
        Ok(out)
    }
}

async fn render_jobs(pool: &PgPool, out: &mut String) -> Result<(), sqlx::Error> {
    let stats = paycore_jobs::engine::control::queue_stats(pool).await?;
    out.push_str("# HELP paycore_jobs Jobs by queue and state.\n# TYPE paycore_jobs gauge\n");
    for queue in &stats {
        for (state, count) in &queue.counts {
            let _ = writeln!(
                out,
                "paycore_jobs{{queue=\"{}\",state=\"{state}\"}} {count}",
                queue.queue
            );
        }
    }
    out.push_str(
        "# HELP paycore_queue_oldest_due_job_age_seconds Age of the oldest job that is due.\n",
    );
    out.push_str("# TYPE paycore_queue_oldest_due_job_age_seconds gauge\n");
    for queue in &stats {
        let age_ms = queue.oldest_due_age_ms.unwrap_or(0);
        let _ = writeln!(
            out,
            "paycore_queue_oldest_due_job_age_seconds{{queue=\"{}\"}} {}.{:03}",
            queue.queue,
            age_ms / 1000,
            age_ms % 1000
        );
    }
    // Recorded runs (within the retention window): outcomes, retries and run time per queue.
    let runs: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "select queue, outcome, count(*),
                coalesce(sum((extract(epoch from finished_at - started_at) * 1000)::bigint), 0)::bigint
         from job_attempt group by 1, 2 order by 1, 2",
    )
    .fetch_all(pool)
    .await?;
    out.push_str("# HELP paycore_job_runs_total Recorded job runs by queue and outcome (transient and retry_after runs are retries).\n");
    out.push_str("# TYPE paycore_job_runs_total counter\n");
    for (queue, outcome, count, _) in &runs {
        let _ = writeln!(
            out,
            "paycore_job_runs_total{{queue=\"{queue}\",outcome=\"{outcome}\"}} {count}"
        );
    }
    out.push_str("# HELP paycore_job_run_seconds Time spent running jobs, by queue.\n");
    out.push_str("# TYPE paycore_job_run_seconds summary\n");
    let mut per_queue: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for (queue, _, count, total_ms) in &runs {
        let entry = per_queue.entry(queue.as_str()).or_default();
        entry.0 += count;
        entry.1 += total_ms;
    }
    for (queue, (count, total_ms)) in per_queue {
        let _ = writeln!(
            out,
            "paycore_job_run_seconds_sum{{queue=\"{queue}\"}} {}.{:03}\npaycore_job_run_seconds_count{{queue=\"{queue}\"}} {count}",
            total_ms / 1000,
            total_ms % 1000
        );
    }
    let events: Vec<(String, String, i64)> = sqlx::query_as(
        "select coalesce(j.job_type, 'unknown'), e.action, count(*) from job_event e
         left join apalis.jobs j on j.id = e.job_id group by 1, 2 order by 1, 2",
    )
    .fetch_all(pool)
    .await?;
    out.push_str(
        "# HELP paycore_job_events_total Rescues, hand-backs and admin actions by queue.\n",
    );
    out.push_str("# TYPE paycore_job_events_total counter\n");
    for (queue, action, count) in events {
        let _ = writeln!(
            out,
            "paycore_job_events_total{{queue=\"{queue}\",action=\"{action}\"}} {count}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::route_label;

    #[test]
    fn ids_in_paths_are_folded_into_one_route() {
        assert_eq!(
            route_label("/api/v1/operations/0190f3a2-7b1c-7cde-8f00-0123456789ab"),
            "/api/v1/operations/{id}"
        );
        assert_eq!(
            route_label("/api/v1/jobs/01M7ZWGVZ8H9BKF55WDXDG83JH/retry"),
            "/api/v1/jobs/{id}/retry"
        );
        assert_eq!(route_label("/healthz"), "/healthz");
    }
}
