//! The end of every request: one [`Outcome`] of what the request did, and from it the metrics,
//! the failure report and the access-log line.

use super::{client_ip, request_host, RequestCtx, State, Triage};
use crate::cause::CauseFinding;
use crate::client::CloseReason;
use crate::diagnosis::Finding;
use crate::outcome::Outcome;
use crate::render;
use crate::report::{self, Attempt, Report};
use pingora::proxy::Session;

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
            cause: cause.as_ref(),
            attempts: ctx.request.attempts,
            reused: ctx.attempt.reused_connection,
            timings: ctx.timings(),
            bytes_sent: session.as_ref().body_bytes_sent(),
        };
        ctx.state.handles.record(&outcome);
        if let Some(finding) = &finding {
            let cause = cause
                .clone()
                .unwrap_or_else(|| crate::cause::without_evidence(finding.diagnosis));
            self.store_report(session, ctx, &outcome, finding, cause, attempts);
        }
        self.access_log.write(&outcome);
    }

    /// Records a request that never got a context of its own through the hooks (Pingora could
    /// not parse it): metrics and the access line.
    pub(super) fn finish_unparsed(&self, state: &State, outcome: &Outcome<'_>) {
        state.handles.record(outcome);
        self.access_log.write(outcome);
    }

    /// Stores the report of a request that has a diagnosis.
    fn store_report(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        outcome: &Outcome<'_>,
        finding: &Finding,
        cause: CauseFinding,
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
            status: outcome.status,
            attempts,
            bytes_sent_upstream: ctx.request.bytes_sent_upstream,
            bytes_received_upstream: ctx.request.bytes_received_upstream,
            total: outcome.timings.total,
        });
        self.metrics.set_stored(stored);
    }
}
