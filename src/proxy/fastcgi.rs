//! FastCGI upstreams inside the proxy: a request routed to an upstream with `protocol =
//! "fastcgi"` is served here, from `request_filter`, instead of by Pingora's HTTP proxy.
//!
//! It goes through the very hooks an HTTP request goes through, in the same order, so the facts
//! recorded, the retries, the metrics, the access line, the report and the cause are the same:
//! `upstream_peer` picks and resolves a server (and says `no_healthy_upstream`, `dns_error`, a
//! held-off refusal), `fail_to_connect` records a connect failure and decides the retry,
//! `connected_to_upstream` the connection, `upstream_request_filter` the headers the app gets,
//! `request_body_filter` each piece of the body (and `max_body_size`),
//! `upstream_response_filter` and `response_filter` the answer, `upstream_response_body_filter`
//! each piece of its body, and `error_while_proxy` a failure once connected. A failure is
//! returned as the error, which Pingora hands to `fail_to_proxy`: the client gets the same
//! headers and page as from an HTTP upstream.
//!
//! The request body streams to `FCGI_STDIN` as the client sends it, while the answer is read:
//! only a body without a length (chunked) is read whole first, since PHP reads exactly
//! `CONTENT_LENGTH` bytes of stdin (nginx buffers it too). The answer's body streams to the
//! client as the server writes it.

use super::context::FastcgiAttempt;
use super::request_checks::PathCheck;
use super::{request_host, RequestCtx, Triage};
use crate::diagnosis::{Diagnosis, Finding, LocalFailure};
use crate::fastcgi::connection::{self, Connection};
use crate::fastcgi::files::{self, Target};
use crate::fastcgi::params::{self, RequestInfo, Script};
use crate::fastcgi::record::{self, EndStatus, Record};
use crate::fastcgi::response::{Head, HeadError, HeadReader};
use crate::fastcgi::stderr::Refused;
use crate::render::text;
use bytes::{Bytes, BytesMut};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// How much is read from the server, or from a file, at a time.
const READ_CHUNK: usize = 64 * 1024;

/// How much of an error answer's body is read before its header goes on, as for HTTP.
const BODY_START: usize = super::BODY_START;

/// The longest detail of a failure quoting php-fpm's stderr.
const MAX_SAID: usize = 512;

impl Triage {
    /// Serves a request whose upstream speaks FastCGI: a file from disk, a redirect, or a script
    /// run by one of the upstream's servers. `Ok(false)` for an upstream that speaks HTTP, which
    /// Pingora then proxies.
    pub(super) async fn serve_fastcgi(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        path_check: &PathCheck,
    ) -> Result<bool> {
        // An HTTP upstream's request pays no more than this look.
        if ctx.upstream().is_none_or(|u| u.fastcgi.is_none()) {
            return Ok(false);
        }
        let state = Arc::clone(&ctx.state);
        let Some(index) = ctx.request.upstream else {
            return Ok(false);
        };
        let Some(cfg) = state.upstreams.get(index).and_then(|u| u.fastcgi.as_ref()) else {
            return Ok(false);
        };
        let decoded = files::decode(path_check.matching(session.req_header().uri.path()))
            .map_err(|files::Outside(why)| LocalFailure::error(Diagnosis::OutsideRoot, why))?;
        let target = match cfg.front_controller {
            true => {
                let method = &session.req_header().method;
                let served = method == http::Method::GET || method == http::Method::HEAD;
                let state = Arc::clone(&state);
                let path = decoded.clone();
                // The file system is read off the proxy's threads: a slow disk never stalls them.
                tokio::task::spawn_blocking(move || {
                    let cfg = state.upstreams.get(index).and_then(|u| u.fastcgi.as_ref());
                    match cfg {
                        Some(cfg) => files::resolve(cfg, &path, served),
                        None => Err(files::Outside("the upstream changed".to_owned())),
                    }
                })
                .await
                .map_err(|e| {
                    LocalFailure::error(Diagnosis::InternalError, format!("front controller: {e}"))
                })?
                .map_err(|files::Outside(why)| LocalFailure::error(Diagnosis::OutsideRoot, why))?
            }
            false => Target::Script {
                script: files::script_of(cfg, &decoded),
                on_disk: false,
            },
        };
        match target {
            Target::File { path, metadata } => {
                self.serve_file(session, ctx, &decoded, &path, &metadata)
                    .await?
            }
            Target::AddSlash => self.add_slash(session, ctx).await?,
            Target::Script { script, on_disk } => {
                let body = self.body_before_connecting(session, ctx).await?;
                let run = Run {
                    script,
                    on_disk,
                    body,
                };
                let result = self.run_script(session, ctx, &run).await;
                self.log_stderr(ctx);
                result?;
            }
        }
        Ok(true)
    }

    /// What of the body must be read before a server is connected to: `Expect: 100-continue`
    /// answered, and a body without a length read whole (PHP reads exactly `CONTENT_LENGTH`
    /// bytes of stdin, so it must be known), bounded by the route's `max_body_size` through the
    /// body filter, as nginx buffers it: no worker waits for a slow upload of it.
    async fn body_before_connecting(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Body> {
        if session.is_body_empty() {
            return Ok(Body::None);
        }
        if expects_continue(session.req_header()) {
            // The client waits for this before its body (curl does, for a second); an HTTP
            // upstream would answer it, php-fpm never does.
            let go_on = ResponseHeader::build(http::StatusCode::CONTINUE, Some(0))?;
            session
                .write_response_header(Box::new(go_on), false)
                .await
                .map_err(|e| e.into_down())?;
        }
        let declared = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        Ok(match declared {
            Some(length) => Body::Streamed(length),
            None => Body::Whole(self.read_whole_body(session, ctx).await?),
        })
    }

    /// Tries the upstream's servers as Pingora's proxy loop does: a connect failure is recorded
    /// and retried on another server when `fail_to_connect` says so.
    async fn run_script(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        run: &Run,
    ) -> Result<()> {
        loop {
            let peer = self.upstream_peer(session, ctx).await?;
            let connection = match connection::connect(&peer).await {
                Ok(connection) => connection,
                Err(mut e) => {
                    e.as_up();
                    let e = self.fail_to_connect(session, &peer, ctx, e);
                    if e.retry() {
                        continue;
                    }
                    return Err(e);
                }
            };
            self.connected_to_upstream(session, false, &peer, connection.fd, None, ctx)
                .await?;
            let timeouts = Timeouts {
                read: peer.options.read_timeout,
                write: peer.options.write_timeout,
            };
            return match self.exchange(session, ctx, connection, run, timeouts).await {
                Ok(()) => Ok(()),
                Err(e) => Err(self.error_while_proxy(&peer, session, e, ctx, false)),
            };
        }
    }

    /// One request on one connection: the params and the body out, the answer back.
    async fn exchange(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut connection: Connection,
        run: &Run,
        timeouts: Timeouts,
    ) -> Result<()> {
        let state = Arc::clone(&ctx.state);
        let Some(cfg) = ctx
            .request
            .upstream
            .and_then(|i| state.upstreams.get(i))
            .and_then(|u| u.fastcgi.as_ref())
        else {
            return Error::e_explain(InternalError, "the request has no FastCGI upstream");
        };
        // The request as the app gets it, as for an HTTP upstream: forwarding headers, Host,
        // the path in normal form.
        let mut request: RequestHeader = session.req_header().clone();
        self.upstream_request_filter(session, &mut request, ctx)
            .await?;
        // The params are built from the map: the forwarding headers, written as lines for an
        // HTTP/1 upstream, join it.
        request.merge_appended_lines()?;
        ctx.attempt.fastcgi = Some(Box::new(FastcgiAttempt {
            script_filename: params::script_filename(cfg, &run.script),
            script_on_disk: run.on_disk,
            ..FastcgiAttempt::default()
        }));
        let content_length = match &run.body {
            Body::None => None,
            Body::Streamed(length) => Some(*length),
            Body::Whole(bytes) => Some(bytes.len() as u64),
        };
        let request_uri = String::from_utf8_lossy(request.raw_path()).into_owned();
        let server = session
            .as_downstream()
            .server_addr()
            .and_then(|a| a.as_inet())
            .copied();
        let client = session
            .as_downstream()
            .client_addr()
            .and_then(|a| a.as_inet())
            .copied();
        let host = request_host(session).unwrap_or("");
        let server_name = host
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(name, _)| name);
        let info = RequestInfo {
            method: request.method.as_str(),
            request_uri: &request_uri,
            query: request.uri.query().unwrap_or(""),
            protocol: protocol_of(request.version),
            scheme: super::forwarding::scheme_of(session),
            client,
            server,
            server_name,
            content_length,
            headers: &request.headers,
        };
        let pairs = params::encode(&info, &run.script, cfg);
        let mut out = BytesMut::with_capacity(pairs.len() + 64);
        record::begin_request(&mut out);
        record::params(&mut out, &pairs);
        let mut body_done = match &run.body {
            Body::Whole(bytes) => {
                record::stdin(&mut out, bytes, true);
                true
            }
            Body::None => {
                record::stdin(&mut out, &[], true);
                true
            }
            Body::Streamed(_) => false,
        };
        let head = self
            .send_request(session, ctx, &mut connection, out, &mut body_done, timeouts)
            .await?;
        if !body_done {
            // The server answered before it had the whole body: the rest is never read, so the
            // client's connection cannot carry another request.
            session.set_keepalive(None);
        }
        self.relay_answer(session, ctx, &mut connection, head, timeouts)
            .await
    }

    /// Reads a body without a length whole, through the body filter (`max_body_size`).
    async fn read_whole_body(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Bytes> {
        let mut body = BytesMut::new();
        loop {
            let mut chunk = session
                .read_request_body()
                .await
                .map_err(|e| e.into_down())?;
            let end = chunk.is_none() || session.is_body_done();
            self.request_body_filter(session, &mut chunk, end, ctx)
                .await?;
            if let Some(chunk) = chunk {
                body.extend_from_slice(&chunk);
            }
            if end {
                return Ok(body.freeze());
            }
        }
    }

    /// Sends `out` and the rest of the body while reading the answer, until its CGI header is
    /// complete. A body with a length streams from the client as it comes; the wait is bounded
    /// by `write_timeout` while sending, and by `read_timeout` once everything is sent.
    async fn send_request(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        connection: &mut Connection,
        mut out: BytesMut,
        body_done: &mut bool,
        timeouts: Timeouts,
    ) -> Result<Head> {
        let mut head = HeadReader::default();
        loop {
            // What the exchange waits for: the server to read (true) or to answer (false).
            let wait = match (out.is_empty(), *body_done) {
                (false, _) => timeouts.write.map(|t| (t, true)),
                (true, true) => timeouts.read.map(|t| (t, false)),
                // Waiting for the client's body: the client's own timeouts apply.
                (true, false) => None,
            };
            let limit = wait.map_or(Duration::MAX, |(t, _)| t);
            tokio::select! {
                biased;
                read = connection.reader.read_buf(connection.records.buffer(READ_CHUNK)) => {
                    let read = read.map_err(|e| {
                        Error::because(ReadError, "while reading the FastCGI answer", e).into_up()
                    })?;
                    let eof = read == 0;
                    while let Some(record) = next_record(ctx, connection)? {
                        match record {
                            Record::Stdout(stdout) => match head.push(&stdout) {
                                Ok(Some(complete)) => return Ok(complete),
                                Ok(None) => {}
                                Err(e) => return Err(head_error(e, head.unfinished())),
                            },
                            Record::Stderr(stderr) => capture_stderr(ctx, &stderr),
                            Record::End { status, app_status } => {
                                return Err(ended_early(status, app_status, head.unfinished()));
                            }
                        }
                    }
                    if eof {
                        return Err(closed_early(head.unfinished().len()));
                    }
                }
                written = connection.writer.write_all_buf(&mut out), if !out.is_empty() => {
                    written.map_err(|e| {
                        Error::because(WriteError, "while writing the FastCGI request", e).into_up()
                    })?;
                }
                chunk = session.read_request_body(), if out.is_empty() && !*body_done => {
                    let mut chunk = chunk.map_err(|e| e.into_down())?;
                    let end = chunk.is_none() || session.is_body_done();
                    self.request_body_filter(session, &mut chunk, end, ctx).await?;
                    record::stdin(&mut out, chunk.as_deref().unwrap_or_default(), end);
                    *body_done = end;
                }
                () = tokio::time::sleep(limit), if wait.is_some() => {
                    return Err(match wait {
                        Some((timeout, true)) => Error::explain(
                            WriteTimedout,
                            format!("writing the FastCGI request, timeout {timeout:?}"),
                        ),
                        _ => Error::explain(
                            ReadTimedout,
                            format!("waiting for the FastCGI answer, timeout {limit:?}"),
                        ),
                    }
                    .into_up());
                }
            }
        }
    }

    /// Turns the CGI header into the response, through the response hooks, and streams the
    /// body to the client until `FCGI_END_REQUEST`.
    async fn relay_answer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        connection: &mut Connection,
        head: Head,
        timeouts: Timeouts,
    ) -> Result<()> {
        let Head {
            mut response,
            content_length,
            body_start,
        } = head;
        ctx.attempt.said = said_of(ctx, response.status);
        self.upstream_response_filter(session, &mut response, ctx)
            .await?;
        let mut pending: Vec<Bytes> = vec![body_start];
        let mut ended = false;
        let status = response.status;
        if status.is_server_error() || status == http::StatusCode::BAD_REQUEST {
            // The start of an error answer's body says why (a database error), as for HTTP.
            while !ended && pending.iter().map(Bytes::len).sum::<usize>() < BODY_START {
                match read_answer(ctx, connection, timeouts).await? {
                    Some(stdout) => pending.push(stdout),
                    None => ended = true,
                }
            }
            let mut start = BytesMut::new();
            for piece in &pending {
                start.extend_from_slice(&piece[..piece.len().min(BODY_START - start.len())]);
            }
            ctx.attempt.body_start = Some(start.freeze());
        }
        // As Pingora's proxy does for an HTTP/1 answer without a length: chunked, so the
        // connection stays reusable and a cut body shows as one.
        let no_body = session.req_header().method == http::Method::HEAD
            || matches!(status.as_u16(), 204 | 304);
        if !no_body && content_length.is_none() && !session.as_downstream().is_http2() {
            response.set_version(http::Version::HTTP_11);
            response.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        self.response_filter(session, &mut response, ctx).await?;
        session
            .write_response_header(Box::new(response), false)
            .await
            .map_err(|e| e.into_down())?;
        let mut left = content_length.unwrap_or(u64::MAX);
        let send = |piece: Bytes, left: &mut u64| {
            // Never more than the Content-Length the script announced.
            let keep = piece
                .len()
                .min(usize::try_from(*left).unwrap_or(usize::MAX));
            *left -= keep as u64;
            piece.slice(..keep)
        };
        for piece in pending {
            let piece = send(piece, &mut left);
            self.send_body(session, ctx, piece).await?;
        }
        while !ended {
            match read_answer(ctx, connection, timeouts).await? {
                Some(stdout) => {
                    let piece = send(stdout, &mut left);
                    self.send_body(session, ctx, piece).await?;
                }
                None => ended = true,
            }
        }
        session
            .write_response_body(None, true)
            .await
            .map_err(|e| e.into_down())
    }

    /// A piece of the answer's body to the client, through the body hook.
    async fn send_body(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        piece: Bytes,
    ) -> Result<()> {
        if piece.is_empty() {
            return Ok(());
        }
        let mut body = Some(piece);
        self.upstream_response_body_filter(session, &mut body, false, ctx)?;
        session
            .write_response_body(body, false)
            .await
            .map_err(|e| e.into_down())
    }

    /// A file under root, as nginx serves it.
    async fn serve_file(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        name: &str,
        path: &std::path::Path,
        metadata: &std::fs::Metadata,
    ) -> Result<()> {
        let head = session.req_header().method == http::Method::HEAD;
        let answer = files::answer(name, metadata, &session.req_header().headers, head);
        // Opened before anything is sent: a file gone since it was found is the app's to answer.
        let file = match answer.body {
            Some(_) => Some(tokio::fs::File::open(path).await.map_err(|e| {
                LocalFailure::error(
                    Diagnosis::InternalError,
                    format!("opening {}: {e}", path.display()),
                )
            })?),
            None => None,
        };
        let mut response = ResponseHeader::build(answer.status, Some(answer.headers.len() + 4))?;
        for (name, value) in answer.headers {
            response.insert_header(name, value)?;
        }
        ctx.attempt.upstream_status = Some(answer.status.as_u16());
        self.renderer.decorate_upstream_response(
            &mut response,
            ctx.request.id,
            None,
            0,
            self.disclosed(ctx, "", std::time::Instant::now()).as_ref(),
            None,
        )?;
        session
            .write_response_header(Box::new(response), false)
            .await
            .map_err(|e| e.into_down())?;
        if let (Some(mut file), Some((start, count))) = (file, answer.body) {
            if let Err(e) = send_file(session, &mut file, start, count).await {
                // Cut by a read error: the connection closes, so the client sees the cut.
                tracing::warn!(id = %ctx.request.id, file = %path.display(), error = %e, "file cut while sent");
                session.set_keepalive(None);
                return Ok(());
            }
        }
        session
            .write_response_body(None, true)
            .await
            .map_err(|e| e.into_down())
    }

    /// A directory asked for without its final `/`: `301` to it, as nginx answers.
    async fn add_slash(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let uri = &session.req_header().uri;
        let mut location = format!("{}/", uri.path());
        if let Some(query) = uri.query() {
            location.push('?');
            location.push_str(query);
        }
        let mut response = ResponseHeader::build(http::StatusCode::MOVED_PERMANENTLY, Some(4))?;
        response.insert_header(http::header::LOCATION, location)?;
        response.insert_header(http::header::CONTENT_LENGTH, 0)?;
        ctx.attempt.upstream_status = Some(301);
        self.renderer.decorate_upstream_response(
            &mut response,
            ctx.request.id,
            None,
            0,
            self.disclosed(ctx, "", std::time::Instant::now()).as_ref(),
            None,
        )?;
        session
            .write_response_header(Box::new(response), true)
            .await
            .map_err(|e| e.into_down())?;
        session
            .write_response_body(None, true)
            .await
            .map_err(|e| e.into_down())
    }

    /// What the server wrote to stderr, on one warning line as nginx's "FastCGI sent in
    /// stderr", at most as many a second as error lines.
    fn log_stderr(&self, ctx: &RequestCtx) {
        let Some(stderr) = ctx.attempt.fastcgi.as_ref().map(|f| &f.stderr) else {
            return;
        };
        if stderr.is_empty() {
            return;
        }
        if let Some(suppressed) = self.fastcgi_stderr_lines.admit() {
            tracing::warn!(
                target: "fastcgi",
                id = ctx.request.id.as_str(),
                upstream = ctx.upstream_name(),
                address = ctx.attempt.address.as_ref().map(tracing::field::display),
                stderr = stderr.summary(1024),
                suppressed,
                "FastCGI server wrote to stderr"
            );
        }
    }
}

/// What a request runs: the script, whether the front controller saw it, and the body.
struct Run {
    script: Script,
    on_disk: bool,
    body: Body,
}

/// The request body, as it goes to `FCGI_STDIN`.
enum Body {
    None,
    /// Of this length, streamed from the client as it arrives.
    Streamed(u64),
    /// Read whole before connecting: it had no length.
    Whole(Bytes),
}

/// The waits of one attempt, from the peer the proxy built for it.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    read: Option<Duration>,
    write: Option<Duration>,
}

/// The next record, or the failure a malformed one is; its bytes are kept for the cause (an
/// HTTP server's `HTTP/1.1 400`), as the start of an error answer is.
fn next_record(ctx: &mut RequestCtx, connection: &mut Connection) -> Result<Option<Record>> {
    connection.records.take().map_err(|malformed| {
        let shown = text::header_text(&String::from_utf8_lossy(&malformed.head), 160);
        ctx.attempt.body_start = Some(malformed.head.clone());
        LocalFailure::error(
            Diagnosis::InvalidResponse,
            format!("{}; received: {shown}", malformed.reason),
        )
    })
}

/// The next piece of the answer's body, `None` at `FCGI_END_REQUEST`; stderr is captured on
/// the way, and every wait is bounded by `read_timeout`.
async fn read_answer(
    ctx: &mut RequestCtx,
    connection: &mut Connection,
    timeouts: Timeouts,
) -> Result<Option<Bytes>> {
    loop {
        while let Some(record) = next_record(ctx, connection)? {
            match record {
                Record::Stdout(stdout) if stdout.is_empty() => {}
                Record::Stdout(stdout) => return Ok(Some(stdout)),
                Record::Stderr(stderr) => capture_stderr(ctx, &stderr),
                // The answer is out: however the server ends the request now, it is complete.
                Record::End { .. } => return Ok(None),
            }
        }
        let read = connection
            .reader
            .read_buf(connection.records.buffer(READ_CHUNK));
        let read = match timeouts.read {
            Some(timeout) => tokio::time::timeout(timeout, read).await.map_err(|_| {
                Error::explain(
                    ReadTimedout,
                    format!("reading the FastCGI answer's body, timeout {timeout:?}"),
                )
                .into_up()
            })?,
            None => read.await,
        };
        let read = read.map_err(|e| {
            Error::because(ReadError, "while reading the FastCGI answer's body", e).into_up()
        })?;
        if read == 0 {
            return Err(Error::explain(
                ConnectionClosed,
                "the FastCGI server closed the connection before FCGI_END_REQUEST",
            )
            .into_up());
        }
    }
}

fn capture_stderr(ctx: &mut RequestCtx, bytes: &[u8]) {
    if let Some(fastcgi) = ctx.attempt.fastcgi.as_mut() {
        fastcgi.stderr.push(bytes);
    }
}

/// What php-fpm's stderr makes of an answer with `status`: its own refusals, and the script's
/// error messages behind a 5xx.
fn said_of(ctx: &RequestCtx, status: http::StatusCode) -> Option<Finding> {
    let fastcgi = ctx.attempt.fastcgi.as_ref()?;
    let stderr = &fastcgi.stderr;
    if stderr.is_empty() {
        return None;
    }
    let message = stderr.first_message(MAX_SAID);
    let diagnosis = match (stderr.refused(), status.as_u16()) {
        (Some(Refused::ScriptUnknown), 404) => Diagnosis::ScriptNotFound,
        (Some(Refused::AccessDenied), 403) => Diagnosis::ScriptDenied,
        (_, 500..=599) => Diagnosis::UpstreamStatus,
        _ => return None,
    };
    let detail = match diagnosis {
        Diagnosis::ScriptNotFound => format!(
            "{message}: SCRIPT_FILENAME {}",
            text::header_text(&fastcgi.script_filename, 256)
        ),
        _ => message,
    };
    Some(Finding { diagnosis, detail })
}

/// The failure of a CGI header that cannot become a response.
fn head_error(error: HeadError, received: &[u8]) -> Box<Error> {
    match error {
        HeadError::TooLarge => LocalFailure::error(
            Diagnosis::ResponseHeadersTooLarge,
            format!(
                "the CGI response header is larger than {} bytes",
                crate::fastcgi::response::MAX_HEAD
            ),
        ),
        HeadError::Invalid(why) => LocalFailure::error(
            Diagnosis::InvalidResponse,
            format!(
                "not a CGI response header ({why}); received: {}",
                text::header_text(
                    &String::from_utf8_lossy(&received[..received.len().min(160)]),
                    160
                )
            ),
        ),
    }
}

/// `FCGI_END_REQUEST` before a complete CGI header.
fn ended_early(status: EndStatus, app_status: u32, stdout: &[u8]) -> Box<Error> {
    let (diagnosis, what) = match status {
        EndStatus::Overloaded => (Diagnosis::FastcgiOverloaded, status.name()),
        EndStatus::CantMultiplex | EndStatus::UnknownRole | EndStatus::Other(_) => {
            (Diagnosis::FastcgiRejected, status.name())
        }
        EndStatus::Complete => (
            Diagnosis::InvalidResponse,
            "FCGI_REQUEST_COMPLETE before a complete CGI response header",
        ),
    };
    LocalFailure::error(
        diagnosis,
        format!(
            "FCGI_END_REQUEST: {what} (app status {app_status}), after {} bytes of stdout",
            stdout.len()
        ),
    )
}

/// The connection closed before a complete CGI header: what Pingora says of an HTTP upstream
/// that closes before its response header, so the classifier reads it the same.
fn closed_early(stdout: usize) -> Box<Error> {
    Error::explain(
        ConnectionClosed,
        format!("the FastCGI server closed the connection before answering, stdout bytes already read: {stdout}"),
    )
    .into_up()
}

/// `Expect: 100-continue`.
fn expects_continue(request: &RequestHeader) -> bool {
    request
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

fn protocol_of(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
}

/// `count` bytes of `file` from `start`, to the client.
async fn send_file(
    session: &mut Session,
    file: &mut tokio::fs::File,
    start: u64,
    count: u64,
) -> Result<()> {
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .or_err(FileReadError, "seeking in the file")?;
    let mut left = count;
    while left > 0 {
        let mut buf =
            BytesMut::with_capacity(READ_CHUNK.min(usize::try_from(left).unwrap_or(READ_CHUNK)));
        let read = file
            .read_buf(&mut buf)
            .await
            .or_err(FileReadError, "reading the file")?;
        if read == 0 {
            return Error::e_explain(FileReadError, "the file got shorter while sent");
        }
        let piece = buf.freeze();
        let piece = piece.slice(..piece.len().min(usize::try_from(left).unwrap_or(usize::MAX)));
        left -= piece.len() as u64;
        session
            .write_response_body(Some(piece), false)
            .await
            .map_err(|e| e.into_down())?;
    }
    Ok(())
}
