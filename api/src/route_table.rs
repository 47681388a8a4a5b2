//! The API's routes as templates (`/api/v1/transfers/{transfer_id}`) with their methods, read once from the
//! OpenAPI document the server publishes, so the two cannot disagree.
//!
//! Used where a request must be named by the route it matched rather than by its raw path, and to answer a
//! wrong method with `405` and the `Allow` header RFC 9110 requires.

use std::collections::BTreeSet;

/// One route: its template and the methods it answers.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub template: String,
    pub methods: BTreeSet<String>,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Parameter,
}

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<RouteEntry>,
}

impl RouteTable {
    /// The routes of an OpenAPI document (its `paths` and their operations).
    pub fn from_openapi(spec: &serde_json::Value) -> Self {
        let mut table = Self::default();
        if let Some(paths) = spec.get("paths").and_then(|paths| paths.as_object()) {
            for (template, operations) in paths {
                let methods = operations
                    .as_object()
                    .map(|operations| {
                        operations
                            .keys()
                            .filter(|key| {
                                matches!(
                                    key.as_str(),
                                    "get"
                                        | "put"
                                        | "post"
                                        | "delete"
                                        | "patch"
                                        | "head"
                                        | "options"
                                )
                            })
                            .map(|key| key.to_ascii_uppercase())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                table = table.with(template, &methods);
            }
        }
        table
    }

    /// Adds a route the document does not describe (a webhook receiver, the dashboard).
    pub fn with(mut self, template: &str, methods: &[impl AsRef<str>]) -> Self {
        let segments = template
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(|segment| {
                if segment.starts_with('{') || segment.starts_with(':') {
                    Segment::Parameter
                } else {
                    Segment::Literal(segment.to_owned())
                }
            })
            .collect();
        let mut methods: BTreeSet<String> = methods
            .iter()
            .map(|method| method.as_ref().to_ascii_uppercase())
            .collect();
        // Every route that answers GET also answers HEAD.
        if methods.contains("GET") {
            methods.insert("HEAD".to_owned());
        }
        self.routes.push(RouteEntry {
            template: template.to_owned(),
            methods,
            segments,
        });
        self
    }

    /// The route a path matches; where several do, the one with the most literal segments
    /// (`/admin/jobs/actions` over `/admin/jobs/{job_id}`).
    pub fn find(&self, path: &str) -> Option<&RouteEntry> {
        let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
        self.routes
            .iter()
            .filter(|route| {
                route.segments.len() == parts.len()
                    && route
                        .segments
                        .iter()
                        .zip(&parts)
                        .all(|(segment, part)| match segment {
                            Segment::Literal(literal) => literal == part,
                            Segment::Parameter => true,
                        })
            })
            .max_by_key(|route| {
                route
                    .segments
                    .iter()
                    .filter(|segment| matches!(segment, Segment::Literal(_)))
                    .count()
            })
    }

    /// The `Allow` header's value for a path, when a route matches it.
    pub fn allow(&self, path: &str) -> Option<String> {
        self.find(path)
            .map(|route| route.methods.iter().cloned().collect::<Vec<_>>().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn table() -> RouteTable {
        RouteTable::from_openapi(&json!({"paths": {
            "/api/v1/admin/jobs/{job_id}": {"get": {}},
            "/api/v1/admin/jobs/actions": {"post": {}, "parameters": []},
            "/api/v1/transfers": {"post": {}, "get": {}},
        }}))
        .with("/api/v1/webhooks/paystack", &["post"])
    }

    #[test]
    fn a_literal_segment_wins_over_a_parameter() {
        let table = table();
        assert_eq!(
            table
                .find("/api/v1/admin/jobs/actions")
                .map(|r| &*r.template),
            Some("/api/v1/admin/jobs/actions")
        );
        assert_eq!(
            table.find("/api/v1/admin/jobs/0123").map(|r| &*r.template),
            Some("/api/v1/admin/jobs/{job_id}")
        );
        assert!(table.find("/api/v1/admin/jobs/0123/extra").is_none());
    }

    #[test]
    fn allow_lists_the_methods_and_head_with_get() {
        let table = table();
        assert_eq!(
            table.allow("/api/v1/transfers").as_deref(),
            Some("GET, HEAD, POST")
        );
        assert_eq!(
            table.allow("/api/v1/admin/jobs/actions").as_deref(),
            Some("POST")
        );
        assert_eq!(
            table.allow("/api/v1/webhooks/paystack").as_deref(),
            Some("POST")
        );
        assert_eq!(table.allow("/nowhere"), None);
    }
}
