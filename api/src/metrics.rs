//! Prometheus metrics in text format: HTTP requests by route and status with a latency histogram (recorded in
//! this process), and job metrics by queue read from the database at scrape time (so every api process reports
//! the same, whole-system numbers for the queues, whichever process the scrape hits).

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write,
    sync::Mutex,
    time::Duration,
};

use poem::{
    http::{Method, StatusCode},
    Endpoint, EndpointExt, IntoEndpoint, PathPattern, Response,
};
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

/// The label of requests that matched no route. Everything an anonymous client can choose (a path, a method)
/// folds into a fixed set of labels, so the metrics cannot be grown without bound by random requests.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The label of a method outside the standard set (methods are free text in HTTP).
const OTHER_METHOD: &str = "OTHER";

/// Marks a response that no route answered, set by [`routed`] on the not-found answer of a nested router. A nested
/// router's miss would otherwise carry its parent's pattern (the nesting prefix) as if it were a route.
#[derive(Clone, Copy, Debug)]
struct Unmatched;

/// Wraps a nested router so that a path it does not know is labelled [`UNMATCHED_ROUTE`], not its prefix.
pub fn routed<E: IntoEndpoint>(inner: E) -> impl Endpoint<Output = Response>
where
    E::Endpoint: 'static,
{
    inner
        .into_endpoint()
        .map_to_response()
        .after(|result| async move {
            match result {
                Ok(mut response) => {
                    if response.status() == StatusCode::NOT_FOUND
                        && response.data::<PathPattern>().is_none()
                    {
                        response.set_data(Unmatched);
                    }
                    Ok(response)
                }
                Err(mut error) => {
                    if error.status() == StatusCode::NOT_FOUND
                        && error.data::<PathPattern>().is_none()
                    {
                        error.set_data(Unmatched);
                    }
                    Err(error)
                }
            }
        })
}

/// poem-openapi routes an operation under a pattern with positional names (`/api/v1/transfers/:param0`); its
/// label is the documented template instead (`/api/v1/transfers/{id}`, as in `/openapi.json`). Maps the one to
/// the other for the documented paths given.
pub fn documented_templates<'a>(
    documented: impl IntoIterator<Item = &'a str>,
) -> HashMap<String, String> {
    documented
        .into_iter()
        .map(|template| {
            let mut position = 0;
            let pattern = template
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') && segment.ends_with('}') {
                        position += 1;
                        format!(":param{}", position - 1)
                    } else {
                        segment.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            (pattern, template.to_owned())
        })
        .collect()
}

/// The route label of an answered request: the template of the route that matched it (poem's `PathPattern`,
/// such as `/admin/jobs/:id`, or its documented form from `templates`), or [`UNMATCHED_ROUTE`].
pub fn route_label(response: &Response, templates: &HashMap<String, String>) -> String {
    if response.data::<Unmatched>().is_some() {
        return UNMATCHED_ROUTE.to_owned();
    }
    match response.data::<PathPattern>() {
        Some(pattern) if !pattern.0.is_empty() => templates
            .get(&*pattern.0)
            .cloned()
            .unwrap_or_else(|| pattern.0.to_string()),
        _ => UNMATCHED_ROUTE.to_owned(),
    }
}

/// The method label: one of the standard methods, or `OTHER`.
pub fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or(OTHER_METHOD, Method::as_str)
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
    use poem::{get, handler, http::Method, Endpoint, Request, Route};

    use super::{documented_templates, method_label, route_label, routed, UNMATCHED_ROUTE};

    #[handler]
    fn ok() -> &'static str {
        "ok"
    }

    /// The label a request gets, with routers nested as the api nests them.
    async fn label_of(path: &str) -> String {
        let app = Route::new()
            .at("/healthz", get(ok))
            .nest(
                "/admin",
                routed(Route::new().at("/jobs/:id", get(ok)).at("/", get(ok))),
            )
            .nest(
                "/",
                routed(Route::new().at("/api/v1/transfers/:param0", get(ok))),
            );
        let response = app
            .get_response(Request::builder().uri_str(path).finish())
            .await;
        let templates = documented_templates(["/api/v1/transfers/{transfer_id}"]);
        route_label(&response, &templates)
    }

    #[tokio::test]
    async fn requests_are_labelled_by_the_template_of_the_route_they_matched() {
        assert_eq!(label_of("/healthz").await, "/healthz");
        assert_eq!(
            label_of("/api/v1/transfers/0190f3a2-7b1c-7cde-8f00-0123456789ab").await,
            "/api/v1/transfers/{transfer_id}"
        );
        assert_eq!(
            label_of("/api/v1/transfers/anything").await,
            "/api/v1/transfers/{transfer_id}"
        );
        assert_eq!(label_of("/admin/jobs/42").await, "/admin/jobs/:id");
    }

    #[tokio::test]
    async fn paths_no_route_matches_share_one_label() {
        for path in [
            "/no/such/route",
            "/admin/nothing-here",
            "/api/v1/x9f8e7",
            "/",
        ] {
            assert_eq!(label_of(path).await, UNMATCHED_ROUTE, "{path}");
        }
    }

    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        let invented = Method::from_bytes(b"FROBNICATE").expect("an extension method");
        assert_eq!(method_label(&invented), "OTHER");
    }
}
