//! The admin listener, on its own port (loopback by default), never on the public one:
//! `/metrics` for Prometheus, `/healthz` and `/readyz` for orchestrators, and `/diagnoses` with
//! the report of every recent failure, so whoever holds an `X-Diagnosis-Id` can read the whole
//! story of that request, `POST /reload` to reload the config, and `/deploys`, where deploy
//! scripts record deploy markers (`POST`) and operators list them. Who it answers, and the
//! headers every answer carries, are in `access.rs`.

mod access;
pub mod client;
mod incidents_view;
mod views;

pub use access::ADMIN_HEADER;
pub(crate) use views::report_json;

use crate::config::Admin as AdminSettings;
use crate::deploys::{Deploy, DeployLog, MarkerRequest, MAX_BODY};
use crate::diagnosis::{Diagnosis, UnknownDiagnosis};
use crate::id::RequestId;
use crate::incidents::Incidents;
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
use std::time::{Duration, SystemTime};

/// The most reports `/diagnoses` lists at once.
const MAX_LIST: usize = 500;

/// The longest a `POST /deploys` body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the admin endpoints.
pub struct Admin {
    metrics: Arc<Metrics>,
    reports: Arc<ReportStore>,
    deploys: Arc<DeployLog>,
    incidents: Arc<Incidents>,
    reloader: Option<Arc<Reloader>>,
    access: Access,
}

impl Admin {
    /// `settings` (`[admin]`) says which Host names it answers and which token it requires.
    pub fn new(
        metrics: Arc<Metrics>,
        reports: Arc<ReportStore>,
        deploys: Arc<DeployLog>,
        incidents: Arc<Incidents>,
        reloader: Option<Arc<Reloader>>,
        settings: &AdminSettings,
    ) -> Admin {
        Admin {
            metrics,
            reports,
            deploys,
            incidents,
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
        if path == "/incidents" || path == "/incidents/" {
            let now = std::time::SystemTime::now();
            let incidents = self.incidents.list();
            return match format {
                BodyFormat::Json => json(StatusCode::OK, incidents_view::json(&incidents, now)),
                BodyFormat::Html => html(
                    StatusCode::OK,
                    incidents_view::html(
                        &self.incidents.timelines(now),
                        &incidents,
                        now,
                        views::STYLE,
                    ),
                ),
            };
        }
        if path == "/deploys" || path == "/deploys/" {
            return match req.method {
                http::Method::GET | http::Method::HEAD => {
                    let deploys = self.deploys.recent();
                    match format {
                        BodyFormat::Json => json(StatusCode::OK, views::deploys_json(&deploys)),
                        BodyFormat::Html => html(StatusCode::OK, views::deploys_html(&deploys)),
                    }
                }
                http::Method::POST => self.record_deploy(session).await,
                _ => {
                    let mut resp = text(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "GET /deploys lists the deploy markers, POST /deploys records one\n",
                    );
                    resp.headers_mut().insert(
                        http::header::ALLOW,
                        http::HeaderValue::from_static("GET, HEAD, POST"),
                    );
                    resp
                }
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
                        BodyFormat::Html => html(
                            StatusCode::OK,
                            views::report_html(
                                &report,
                                self.incidents.of(&report.upstream, report.time).as_ref(),
                            ),
                        ),
                    },
                    // A fleet's ids name their instance: say where to look instead of "evicted".
                    None if id.instance() != crate::id::instance() => text(
                        StatusCode::NOT_FOUND,
                        &format!(
                            "no report with this id here: it was made by instance {}, and this is {}\n",
                            id.instance().unwrap_or("(none)"),
                            crate::id::instance().unwrap_or("(none)")
                        ),
                    ),
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

impl Admin {
    /// `POST /deploys`: checks the request and its body, records the marker, counts and logs
    /// it, and answers 201 with the marker as `GET /deploys?format=json` lists it.
    async fn record_deploy(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if !access::is_non_simple(&session.req_header().headers) {
            return text(
                StatusCode::FORBIDDEN,
                "POST /deploys needs Content-Type: application/json or an X-Triage-Admin \
                 header, which a web page cannot send cross-site\n",
            );
        }
        let body = match read_body(session, MAX_BODY).await {
            Ok(body) => body,
            Err(refusal) => return refusal,
        };
        let upstreams: Vec<String> = self.reloader.as_ref().map_or_else(Vec::new, |reloader| {
            let state = reloader.shared_state().load_full();
            state
                .config
                .upstreams
                .iter()
                .map(|u| u.name.clone())
                .collect()
        });
        let names: Vec<&str> = upstreams.iter().map(String::as_str).collect();
        let marker = match MarkerRequest::parse(&body, &names) {
            Ok(marker) => marker,
            Err(refused) => {
                let status =
                    StatusCode::from_u16(refused.status).unwrap_or(StatusCode::BAD_REQUEST);
                return text(status, &format!("{}\n", refused.message));
            }
        };
        let deploy = Deploy {
            upstream: marker.upstream,
            version: marker.version,
            time: SystemTime::now(),
        };
        self.metrics.count_deploy(deploy.upstream.as_deref());
        tracing::info!(
            upstream = deploy
                .upstream
                .as_deref()
                .unwrap_or(crate::metrics::ALL_UPSTREAMS_LABEL),
            version = deploy.version.as_str(),
            "deploy marker recorded"
        );
        let answer = views::deploy_json(&deploy).to_string();
        self.deploys.record(deploy);
        json(StatusCode::CREATED, answer)
    }
}

/// The request body, at most `max` bytes, within [`BODY_TIMEOUT`]; else the refusal to send
/// (413, 408, 400), after which the connection closes instead of reading the rest.
async fn read_body(session: &mut ServerSession, max: usize) -> Result<Vec<u8>, Response<Vec<u8>>> {
    let read = async {
        let mut body = Vec::new();
        while let Some(chunk) = session.read_request_body().await? {
            body.extend_from_slice(&chunk);
            if body.len() > max {
                break;
            }
        }
        Ok::<_, Box<pingora::Error>>(body)
    };
    let refusal = match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(body)) if body.len() <= max => return Ok(body),
        Ok(Ok(_)) => text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than {max} bytes\n"),
        ),
        Ok(Err(e)) => text(
            StatusCode::BAD_REQUEST,
            &format!("cannot read the body: {}\n", e.etype().as_str()),
        ),
        Err(_) => text(
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive in time\n",
        ),
    };
    session.set_keepalive(None);
    Err(refusal)
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
