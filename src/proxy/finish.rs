//! The end of every request: one [`Outcome`] of what the request did, and from it the metrics,
//! the failure report and the access-log line.

use super::{client_ip, request_host, RequestCtx, Triage};
use crate::cause::CauseFinding;
use crate::client::CloseReason;
use crate::diagnosis::Diagnosis;
use crate::diagnosis::Finding;
use crate::outcome::{Outcome, Timings};
use crate::render;
use crate::render::page::BodyFormat;
use crate::report::{self, Attempt, Report};
use bytes::Bytes;
use pingora::apps::HeadFailure;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Error;
use std::sync::Arc;

impl Triage {
    /// Records a finished request: metrics, its report if it failed, its access line.
    pub(super) fn finish(&self, session: &Session, ctx: &mut RequestCtx) {
        let finding = ctx.request.finding.take();
        if let Some(reason) = finding.as_ref().and_then(|f| CloseReason::of(f.diagnosis)) {
            self.clients.count(reason);
        }
        let cause = ctx.request.cause.take();
        let attempts = std::mem::take(&mut ctx.request.failed_attempts);
        let upstream_status = ctx.attempt.upstream_status;
        let status = finding.as_ref().map_or(upstream_status.unwrap_or(0), |f| {
            f.diagnosis.logged_status(upstream_status)
        });
        let req = session.req_header();
        let header = |name: http::header::HeaderName| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        // Redacted as in reports: a path's `;` parameters (a session id), and all of the
        // Referer but where it points. Each is borrowed unless it has something to redact.
        let path = report::redact_path_params(req.uri.path());
        let referer = report::redact_url(header(http::header::REFERER));
        let outcome = Outcome {
            id: ctx.request.id,
            time: ctx.request.received_at,
            client: client_ip(session),
            method: req.method.as_str(),
            path: &path,
            version: match req.version {
                http::Version::HTTP_10 => "HTTP/1.0",
                http::Version::HTTP_2 => "HTTP/2.0",
                _ => "HTTP/1.1",
            },
            host: request_host(session).unwrap_or(""),
            referer: &referer,
            user_agent: header(http::header::USER_AGENT),
            route: ctx.request.route,
            route_label: ctx.route_label(),
            upstream: ctx.request.upstream,
            upstream_name: ctx.upstream_name(),
            address: ctx.attempt.address.as_ref(),
            status,
            finding: finding.as_ref(),
            cause: cause.as_deref(),
            attempts: ctx.request.attempts,
            reused: ctx.attempt.reused_connection,
            timings: ctx.timings(),
            bytes_sent: session.as_ref().body_bytes_sent(),
        };
        ctx.state.handles.record(&outcome);
        if let Some(finding) = &finding {
            let cause = cause
                .clone()
                .unwrap_or_else(|| Arc::new(crate::cause::without_evidence(finding.diagnosis)));
            self.store_report(session, ctx, &outcome, finding, cause, attempts);
        }
        // After the report, so that it is stored as soon as it can be: a client may ask for
        // it by the id it just got.
        if outcome.upstream.is_some() {
            // The client's own failures are no incident of the upstream's.
            let failure = finding
                .as_ref()
                .filter(|f| !matches!(f.diagnosis.fault(), crate::diagnosis::Fault::Client))
                .map(|f| {
                    let cause = outcome.cause.map_or_else(
                        || crate::cause::without_evidence(f.diagnosis).cause,
                        |c| c.cause,
                    );
                    (cause, outcome.id)
                });
            self.incidents
                .record(outcome.upstream_name, outcome.time, failure, || {
                    self.deploys.latest(
                        outcome.upstream_name,
                        outcome.time,
                        ctx.state.thresholds.deploy_window,
                    )
                });
        }
        self.access_log.write(&outcome);
    }

    /// The answer to a request whose head Pingora could not read (see
    /// `ProxyHttp::invalid_request`), recorded as any other: metrics and the access line.
    pub(super) fn answer_unparsed(
        &self,
        error: &Error,
        failure: HeadFailure,
        client: Option<&pingora::protocols::l4::socket::SocketAddr>,
    ) -> Option<(ResponseHeader, Bytes)> {
        let mut ctx = RequestCtx::new(self.state.load_full(), self.in_flight.enter());
        let client = client.and_then(|a| a.as_inet()).map(|a| a.ip());
        ctx.request.trusted = ctx.state.disclosure.shows_detail(client);
        let diagnosis = match failure {
            HeadFailure::Malformed => Diagnosis::BadRequest,
            HeadFailure::TooLarge => Diagnosis::RequestHeadersTooLarge,
            HeadFailure::TimedOut => Diagnosis::ClientHeaderTimeout,
        };
        if let Some(reason) = CloseReason::of(diagnosis) {
            self.clients.count(reason);
        }
        let finding = Finding {
            diagnosis,
            detail: render::text::header_text(&error.to_string(), render::text::MAX_HEADER_TEXT),
        };
        let logged = diagnosis.logged_status(None);
        let status = http::StatusCode::from_u16(logged).unwrap_or(http::StatusCode::BAD_REQUEST);
        let cause = crate::cause::without_evidence(finding.diagnosis);
        let response = self
            .renderer
            .failure_response(&self.failure(&ctx, &finding, status), BodyFormat::Html)
            .ok();
        let outcome = Outcome {
            id: ctx.request.id,
            time: ctx.request.received_at,
            client,
            method: "-",
            path: "-",
            version: "-",
            host: "",
            referer: "",
            user_agent: "",
            route: None,
            route_label: "",
            upstream: None,
            upstream_name: "",
            address: None,
            status: status.as_u16(),
            finding: Some(&finding),
            cause: Some(&cause),
            attempts: 0,
            reused: false,
            timings: Timings {
                total: ctx.request.received.elapsed(),
                ..Timings::default()
            },
            bytes_sent: response.as_ref().map_or(0, |(_, body)| body.len()),
        };
        ctx.state.handles.record(&outcome);
        self.access_log.write(&outcome);
        response
    }

    /// Stores the report of a request that has a diagnosis.
    fn store_report(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        outcome: &Outcome<'_>,
        finding: &Finding,
        cause: Arc<CauseFinding>,
        attempts: Vec<Attempt>,
    ) {
        let req = session.req_header();
        let headers = req
            .headers
            .iter()
            .map(|(name, value)| self.redaction.header(name.as_str(), value.as_bytes()))
            .collect();
        let path = report::redact_path(
            req.uri
                .path_and_query()
                .map_or_else(|| req.uri.path(), |pq| pq.as_str()),
        );
        // The app's evidence: the lines read so far now, the whole window once it closed (the
        // evidence thread amends the report then; see `app_evidence`).
        let watched = outcome
            .upstream
            .and_then(|_| self.app_evidence.watched(outcome.upstream_name));
        let now = std::time::SystemTime::now();
        let app_log = watched
            .as_ref()
            .filter(|w| !w.settings.log_files.is_empty())
            .map(|w| crate::app_evidence::report_lines(&w.at_failure(now).lines));
        let app_process = watched.as_ref().and_then(|w| w.process());
        let stored = self.reports.insert(Report {
            id: outcome.id,
            time: outcome.time,
            method: outcome.method.to_owned(),
            host: render::text::header_text(outcome.host, 256),
            path: render::text::header_text(&path, 2048),
            headers,
            route: outcome.route_label.to_owned(),
            upstream: outcome.upstream_name.to_owned(),
            diagnosis: finding.diagnosis,
            detail: finding.detail.clone(),
            deploy: outcome.upstream.and_then(|_| {
                self.deploys.latest(
                    outcome.upstream_name,
                    outcome.time,
                    ctx.state.thresholds.deploy_window,
                )
            }),
            cause,
            machine: Some(self.machine.latest()).filter(|m| m.at.is_some()),
            app_log,
            app_process,
            status: outcome.status,
            attempts,
            bytes_sent_upstream: ctx.request.bytes_sent_upstream,
            bytes_received_upstream: ctx.request.bytes_received_upstream,
            total: outcome.timings.total,
        });
        self.metrics.set_stored(stored.stored);
        self.metrics.count_evicted(stored.evicted);
        if let Some(watched) = watched {
            match finding.diagnosis.fault() {
                crate::diagnosis::Fault::Client => {}
                crate::diagnosis::Fault::Server
                | crate::diagnosis::Fault::App
                | crate::diagnosis::Fault::Proxy => self.app_evidence.amend_later(
                    outcome.id,
                    watched,
                    finding.diagnosis,
                    now,
                    ctx.age(),
                ),
            }
        }
    }
}
