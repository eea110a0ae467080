//! The admin listener, on its own port (loopback by default), never on the public one:
//! `/metrics` for Prometheus, `/healthz` and `/readyz` for orchestrators, and `/diagnoses` with
//! the report of every recent failure, so whoever holds an `X-Diagnosis-Id` can read the whole
//! story of that request, and `POST /reload` to reload the config. Who it answers, and the
//! headers every answer carries, are in `access.rs`.

mod access;
mod views;

pub use access::ADMIN_HEADER;

use crate::config::Admin as AdminSettings;
use crate::diagnosis::{Diagnosis, UnknownDiagnosis};
use crate::id::RequestId;
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::render::page::BodyFormat;
use crate::report::ReportStore;
use access::Access;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

/// The most reports `/diagnoses` lists at once.
const MAX_LIST: usize = 500;

/// Serves the admin endpoints.
pub struct Admin {
    metrics: Arc<Metrics>,
    reports: Arc<ReportStore>,
    reloader: Option<Arc<Reloader>>,
    access: Access,
}

impl Admin {
    /// `settings` (`[admin]`) says which Host names it answers and which token it requires.
    pub fn new(
        metrics: Arc<Metrics>,
        reports: Arc<ReportStore>,
        reloader: Option<Arc<Reloader>>,
        settings: &AdminSettings,
    ) -> Admin {
        Admin {
            metrics,
            reports,
            reloader,
            access: Access::new(settings),
        }
    }
}

/// The value of `name` in a query string (no percent-decoding: values are tokens and names).
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

#[async_trait]
impl ServeHttp for Admin {
    /// Checks the Host and the token, then answers the endpoint; every answer, refusals
    /// included, gets the protective headers.
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let local = session
            .server_addr()
            .and_then(|addr| addr.as_inet())
            .map(|addr| addr.ip());
        let req = session.req_header();
        let checked = self.access.check(
            &req.headers,
            req.uri.authority().map(|a| a.as_str()),
            local,
            req.uri.path(),
        );
        access::secure(match checked {
            Ok(()) => self.endpoint(session).await,
            Err(refusal) => access::refusal(refusal),
        })
    }
}

impl Admin {
    async fn endpoint(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path = req.uri.path();
        let query = req.uri.query().unwrap_or("");
        // `?format=json` for scripts; otherwise the rule error pages follow.
        let format = match query_param(query, "format") {
            Some("json") => BodyFormat::Json,
            Some(_) | None => {
                BodyFormat::from_accept(req.headers.get(http::header::ACCEPT).map(|v| v.as_bytes()))
            }
        };
        if path == "/reload" {
            if req.method != http::Method::POST {
                return text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "POST /reload to reload the config\n",
                );
            }
            if !access::is_non_simple(&req.headers) {
                return text(
                    StatusCode::FORBIDDEN,
                    "POST /reload needs Content-Type: application/json or an X-Triage-Admin \
                     header, which a web page cannot send cross-site\n",
                );
            }
            return match &self.reloader {
                Some(reloader) => match reloader.reload().await {
                    Ok(message) => text(StatusCode::OK, &message),
                    Err(message) => text(StatusCode::BAD_REQUEST, &format!("{message}\n")),
                },
                None => text(StatusCode::NOT_FOUND, "reload is not available\n"),
            };
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            // This listener starts only after the config loaded and the proxy listeners were
            // added, so answering at all means ready.
            "/readyz" => text(StatusCode::OK, "ready\n"),
            "/metrics" => {
                if let Some(reloader) = &self.reloader {
                    reloader.shared_state().load().refresh_health_gauges();
                }
                let mut resp = Response::new(self.metrics.encode().into_bytes());
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            "/diagnoses" | "/diagnoses/" => {
                let upstream = query_param(query, "upstream");
                let diagnosis = match query_param(query, "diagnosis")
                    .map(str::parse::<Diagnosis>)
                    .transpose()
                {
                    Ok(diagnosis) => diagnosis,
                    Err(UnknownDiagnosis) => {
                        return text(StatusCode::BAD_REQUEST, "unknown diagnosis token\n")
                    }
                };
                let limit = query_param(query, "limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(100)
                    .min(MAX_LIST);
                let reports = self.reports.recent(limit, |r| {
                    upstream.is_none_or(|u| r.upstream == u)
                        && diagnosis.is_none_or(|d| r.diagnosis == d)
                });
                match format {
                    BodyFormat::Json => json(StatusCode::OK, views::list_json(&reports)),
                    BodyFormat::Html => html(StatusCode::OK, views::list_html(&reports)),
                }
            }
            _ => match path.strip_prefix("/diagnoses/").and_then(RequestId::parse) {
                Some(id) => match self.reports.get(id) {
                    Some(report) => match format {
                        BodyFormat::Json => json(StatusCode::OK, views::report_json(&report)),
                        BodyFormat::Html => html(StatusCode::OK, views::report_html(&report)),
                    },
                    None => text(
                        StatusCode::NOT_FOUND,
                        "no report with this id: it succeeded, or it was evicted from the ring\n",
                    ),
                },
                None => text(StatusCode::NOT_FOUND, "not found\n"),
            },
        }
    }
}

fn with_type(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}

fn text(status: StatusCode, body: &str) -> Response<Vec<u8>> {
    with_type(
        status,
        body.as_bytes().to_vec(),
        "text/plain; charset=utf-8",
    )
}

fn json(status: StatusCode, body: String) -> Response<Vec<u8>> {
    with_type(status, body.into_bytes(), "application/json")
}

fn html(status: StatusCode, body: String) -> Response<Vec<u8>> {
    with_type(status, body.into_bytes(), "text/html; charset=utf-8")
}
