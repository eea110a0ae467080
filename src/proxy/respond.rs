//! The answers triage writes itself: the error response of a failure (headers and page, or
//! problem+json), with the fields only trusted clients see.

use super::request_checks::Refusal;
use super::{RequestCtx, Triage};
use crate::diagnosis::{Diagnosis, Finding};
use crate::render::page::BodyFormat;
use crate::render::{self, Disclosed, Failure};
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

impl Triage {
    /// What a trusted client may see of this request; `None` for anyone else.
    pub(super) fn disclosed<'a>(
        &'a self,
        ctx: &'a RequestCtx,
        detail: &'a str,
        now: std::time::Instant,
    ) -> Option<Disclosed<'a>> {
        ctx.request.trusted.then(|| Disclosed {
            upstream: ctx.upstream().map(|u| u.name.as_str()),
            address: ctx
                .attempt
                .address
                .as_ref()
                .map(render::text::AddrText::peer),
            detail,
            timings: ctx.timings_at(now),
            report_url: self.report_url.as_deref(),
        })
    }

    /// The failure as the renderer takes it.
    pub(super) fn failure<'a>(
        &'a self,
        ctx: &'a RequestCtx,
        finding: &'a Finding,
        status: http::StatusCode,
    ) -> Failure<'a> {
        Failure {
            id: ctx.request.id,
            diagnosis: finding.diagnosis,
            status,
            at: ctx.request.received_at,
            attempts: ctx.request.attempts,
            disclosed: self.disclosed(ctx, &finding.detail, std::time::Instant::now()),
            cause: ctx.request.cause.as_deref(),
        }
    }

    /// Writes the error response for a failure triage answers itself; true when all of it was
    /// written. `keep_alive: false` tells the client the connection closes after it.
    pub(super) async fn respond_failure(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        finding: &Finding,
        status: http::StatusCode,
        keep_alive: bool,
    ) -> bool {
        let format = BodyFormat::from_accept(
            session
                .req_header()
                .headers
                .get(http::header::ACCEPT)
                .map(|v| v.as_bytes()),
        );
        let response = self
            .renderer
            .failure_response(&self.failure(ctx, finding, status), format);
        let written = match response {
            Ok((resp, body)) if keep_alive => write_response(session, resp, body).await,
            Ok((resp, body)) => session.write_error_response(resp, body).await,
            Err(e) => Err(e),
        };
        match written {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(id = %ctx.request.id, error = %e, "could not write the error response");
                false
            }
        }
    }

    /// Answers a failure found before any upstream was tried (`request_filter`) and makes it
    /// the request's diagnosis.
    pub(super) async fn answer_early(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        finding: Finding,
        status: http::StatusCode,
        keep_alive: bool,
    ) {
        self.respond_failure(session, ctx, &finding, status, keep_alive)
            .await;
        ctx.request.finding = Some(finding);
    }

    /// Answers a request that `request_checks` refused: 400 `bad_request` with what was wrong,
    /// and the connection closes after it (as nginx closes it after a 400; when the body's
    /// framing is in doubt, nothing else read from that connection could be trusted).
    pub(super) async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        refusal: Refusal,
    ) {
        let finding = Finding {
            diagnosis: Diagnosis::BadRequest,
            detail: refusal.detail().to_owned(),
        };
        self.answer_early(session, ctx, finding, http::StatusCode::BAD_REQUEST, false)
            .await;
    }
}

async fn write_response(
    session: &mut Session,
    resp: ResponseHeader,
    body: Bytes,
) -> pingora::Result<()> {
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}
