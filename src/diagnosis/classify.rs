//! The classifier: the facts a request's hooks recorded in, one [`Diagnosis`] out.
//!
//! A failure triage decided itself (a [`LocalFailure`] cause) is taken as it is. Otherwise it
//! reads typed causes first: Pingora's `ErrorType` and source, then the `io::Error` errno or
//! the `h2::Error` at the bottom of the cause chain, and the reason of a client's HTTP/2 stream
//! reset. Text is read only where Pingora keeps nothing else: the TLS
//! failure reason (see [`super::tls`]), the "header too large" and the raw bytes of an invalid
//! response header, which tell a TLS record apart from garbage.

use super::local::LocalFailure;
use super::tls::classify_tls_text;
use super::{Diagnosis, Phase};
use pingora::{Error, ErrorSource, ErrorType};

/// How far the request got before the error, as recorded by the proxy hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Progress {
    /// No upstream was chosen yet.
    #[default]
    Started,
    /// An upstream was chosen and a connection is being opened.
    Connecting,
    /// The connection (and TLS, if any) is up; the request is being sent.
    Connected,
    /// The upstream's response header arrived.
    ResponseHeaders,
    /// The response header went out to the client: from here on, failures cut the body.
    ResponseStarted,
}

/// What the classifier needs to know about a failed request.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub error: &'a Error,
    pub progress: Progress,
    /// Whether the chosen upstream is configured for TLS.
    pub upstream_tls: bool,
    /// Whether the attempt's server is a unix socket (`unix:/path`), whose connect failures
    /// say more than a TCP port's: the file is missing, not ours to connect to, left behind by
    /// a dead app, or its listen queue is full.
    pub unix_socket: bool,
    /// Whether the client asked for a protocol upgrade (WebSocket).
    pub upgrade: bool,
    /// Whether part of the client's request body was still to be sent upstream. A reset
    /// during an upload surfaces either on the write of the body or on the read of the
    /// response, whichever Pingora polls first; with this fact both read the same.
    pub request_unsent: bool,
    /// The reason the client reset its HTTP/2 stream with, if it did, as the stream itself
    /// says: Pingora reports a reset it notices while waiting for the upstream only as text.
    pub client_reset: Option<h2::Reason>,
}

/// A diagnosis with the detail that explains it (errno text, TLS reason, bytes received).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub diagnosis: Diagnosis,
    pub detail: String,
}

/// The longest [`Finding::detail`], in bytes. Upstream text (the bytes of an invalid response,
/// up to Pingora's 1 MiB header buffer) is cut here, once, where it is classified, so every
/// output that shows it (headers, error page, problem+json, report, log line) is bounded.
pub const MAX_DETAIL: usize = 1024;

/// What ends a detail that was cut to [`MAX_DETAIL`].
pub const CUT_MARK: &str = "...";

/// Turns the facts of a failed request into a diagnosis, with its detail of at most
/// [`MAX_DETAIL`] bytes.
pub fn classify(facts: &Facts<'_>) -> Finding {
    if let Some(LocalFailure(finding)) = cause::<LocalFailure>(facts.error) {
        return Finding {
            diagnosis: finding.diagnosis,
            detail: bounded(finding.detail.clone()),
        };
    }
    let diagnosis = diagnose(facts);
    Finding {
        diagnosis,
        detail: bounded(detail_of(facts, diagnosis)),
    }
}

/// The failure triage decided itself that `error` carries, if it carries one.
pub fn local_failure(error: &Error) -> Option<&LocalFailure> {
    cause::<LocalFailure>(error)
}

/// `detail` cut to at most [`MAX_DETAIL`] bytes, on a char boundary, ending in [`CUT_MARK`]
/// when cut.
pub(crate) fn bounded(mut detail: String) -> String {
    if detail.len() > MAX_DETAIL {
        detail.truncate(floor_boundary(&detail, MAX_DETAIL - CUT_MARK.len()));
        detail.push_str(CUT_MARK);
    }
    detail
}

/// The largest char boundary of `text` at or below `at`.
fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// At most the first `max` bytes of `text` and then some, without copying: enough for
/// [`bounded`] to see that it was cut, so no huge context is copied only to be cut later.
fn head(text: &str, max: usize) -> &str {
    // A char has at most 4 bytes: the boundary at or below max + 4 is past max when text is.
    &text[..floor_boundary(text, max + 4)]
}

/// The diagnosis alone, without the detail text: no allocation except for TLS failures, whose
/// reason only exists as text.
pub fn diagnose(facts: &Facts<'_>) -> Diagnosis {
    let error = facts.error;
    // A failure triage decided itself says what it is.
    if let Some(LocalFailure(finding)) = cause::<LocalFailure>(error) {
        return finding.diagnosis;
    }
    match error.esource() {
        ErrorSource::Downstream => match error.etype() {
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => {
                Diagnosis::ClientClosed
            }
            // The client's own timeouts ([client] body_timeout and send_timeout): the request
            // head is read before any hook runs, so a read that times out here is the body's.
            ErrorType::ReadTimedout => Diagnosis::ClientBodyTimeout,
            ErrorType::WriteTimedout => Diagnosis::ClientSendTimeout,
            ErrorType::H2Error if client_went_away(facts) => Diagnosis::ClientClosed,
            _ => Diagnosis::BadRequest,
        },
        ErrorSource::Upstream | ErrorSource::Internal | ErrorSource::Unset => {
            match classify_upstream(facts) {
                // Broken before the protocol switch: the upgrade failed, whatever the way.
                Diagnosis::ConnectionReset
                | Diagnosis::ConnectionClosed
                | Diagnosis::InvalidResponse
                    if facts.upgrade =>
                {
                    Diagnosis::UpgradeFailed
                }
                // Dropped before taking the whole request: the send failed, whichever side
                // of the connection noticed first.
                Diagnosis::ConnectionReset | Diagnosis::ConnectionClosed
                    if facts.request_unsent && facts.progress == Progress::Connected =>
                {
                    Diagnosis::RequestSendFailed
                }
                diagnosis => diagnosis,
            }
        }
    }
}

fn classify_upstream(facts: &Facts<'_>) -> Diagnosis {
    let error = facts.error;
    let in_body = facts.progress >= Progress::ResponseStarted;
    if facts.unix_socket && facts.progress <= Progress::Connecting {
        // By errno, whatever type Pingora gave it (it makes EACCES an internal error).
        match errno(error) {
            Some(Errno::NotFound) => return Diagnosis::SocketMissing,
            Some(Errno::PermissionDenied) => return Diagnosis::SocketPermissionDenied,
            Some(Errno::Refused) => return Diagnosis::SocketRefused,
            Some(Errno::WouldBlock) => return Diagnosis::SocketBacklogFull,
            Some(Errno::Unreachable | Errno::TimedOut | Errno::Reset | Errno::Other) | None => {}
        }
    }
    match error.etype() {
        ErrorType::ConnectRefused => Diagnosis::ConnectRefused,
        ErrorType::ConnectNoRoute => Diagnosis::ConnectUnreachable,
        ErrorType::ConnectTimedout | ErrorType::TLSHandshakeTimedout => Diagnosis::ConnectTimeout,
        ErrorType::ConnectError
        | ErrorType::BindError
        | ErrorType::SocketError
        | ErrorType::ConnectProxyFailure
        | ErrorType::AcceptError => match errno(error) {
            Some(Errno::Refused) => Diagnosis::ConnectRefused,
            Some(Errno::Unreachable) => Diagnosis::ConnectUnreachable,
            Some(Errno::TimedOut) => Diagnosis::ConnectTimeout,
            Some(
                Errno::Reset
                | Errno::NotFound
                | Errno::PermissionDenied
                | Errno::WouldBlock
                | Errno::Other,
            )
            | None => Diagnosis::ConnectFailed,
        },
        ErrorType::TLSHandshakeFailure
        | ErrorType::TLSWantX509Lookup
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError => classify_tls_text(&error.to_string()).diagnosis,
        ErrorType::InvalidHTTPHeader
        | ErrorType::H1Error
        | ErrorType::H2Error
        | ErrorType::InvalidH2
        | ErrorType::H2Downgrade => {
            if in_body {
                Diagnosis::BodyClosed
            } else if header_too_large(error) {
                Diagnosis::ResponseHeadersTooLarge
            } else if !facts.upstream_tls && starts_with_tls_record(error) {
                Diagnosis::UpstreamExpectsTls
            } else {
                Diagnosis::InvalidResponse
            }
        }
        ErrorType::ReadError => {
            if in_body {
                Diagnosis::BodyReset
            } else if facts.progress < Progress::Connected && facts.upstream_tls {
                Diagnosis::TlsHandshakeFailed
            } else {
                Diagnosis::ConnectionReset
            }
        }
        ErrorType::ConnectionClosed => {
            if in_body {
                Diagnosis::BodyClosed
            } else {
                Diagnosis::ConnectionClosed
            }
        }
        ErrorType::ReadTimedout => {
            if in_body {
                Diagnosis::BodyTimeout
            } else {
                Diagnosis::ResponseTimeout
            }
        }
        ErrorType::WriteError => {
            if in_body {
                Diagnosis::BodyReset
            } else {
                Diagnosis::RequestSendFailed
            }
        }
        ErrorType::WriteTimedout => Diagnosis::RequestSendTimeout,
        // Pingora's own body-framing errors (e.g. "InvalidChunk") are custom types.
        ErrorType::Custom(_) | ErrorType::CustomCode(..) => {
            if in_body {
                Diagnosis::BodyClosed
            } else if facts.progress >= Progress::Connected {
                Diagnosis::InvalidResponse
            } else {
                Diagnosis::InternalError
            }
        }
        ErrorType::HTTPStatus(_)
        | ErrorType::FileOpenError
        | ErrorType::FileCreateError
        | ErrorType::FileReadError
        | ErrorType::FileWriteError
        | ErrorType::InternalError
        | ErrorType::UnknownError => Diagnosis::InternalError,
    }
}

/// Whether an HTTP/2 error on the client's side means the client went away: it cancelled its
/// stream (RST_STREAM(CANCEL), what a browser does when the user navigates away) or its
/// connection broke. A stream reset for another reason (PROTOCOL_ERROR, ...) stays a request
/// triage could not take.
fn client_went_away(facts: &Facts<'_>) -> bool {
    if facts.client_reset == Some(h2::Reason::CANCEL) {
        return true;
    }
    cause::<h2::Error>(facts.error)
        .is_some_and(|e| e.reason() == Some(h2::Reason::CANCEL) || e.is_io())
}

/// The part of an errno that matters for a diagnosis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Errno {
    Refused,
    Unreachable,
    TimedOut,
    Reset,
    /// ENOENT: on a unix socket, no file at its path.
    NotFound,
    /// EACCES.
    PermissionDenied,
    /// EAGAIN: on a unix socket, a full listen queue.
    WouldBlock,
    Other,
}

/// Walks the cause chain down to the first `io::Error`.
fn io_error(error: &Error) -> Option<&std::io::Error> {
    cause::<std::io::Error>(error)
}

/// Walks the cause chain down to the first error of type `T`. `pingora::Error` does not
/// implement `source()`, so its `cause` is followed by downcasting; other errors (such as
/// Pingora's connect-error wrapper, which carries the local address) are followed through
/// `source()`.
fn cause<T: std::error::Error + 'static>(error: &Error) -> Option<&T> {
    let mut cause: &(dyn std::error::Error + 'static) = error.cause.as_deref()?;
    // Bounded: a cause chain is a handful of links; this guards against a cycle-shaped bug.
    for _ in 0..16 {
        if let Some(found) = cause.downcast_ref::<T>() {
            return Some(found);
        }
        cause = match cause.downcast_ref::<Box<Error>>() {
            Some(inner) => inner.cause.as_deref()?,
            None => cause.source()?,
        };
    }
    None
}

/// The errno of the cause, by its `io::ErrorKind` (the standard library maps each OS's codes).
fn errno(error: &Error) -> Option<Errno> {
    use std::io::ErrorKind;
    Some(match io_error(error)?.kind() {
        ErrorKind::ConnectionRefused => Errno::Refused,
        ErrorKind::NetworkUnreachable | ErrorKind::HostUnreachable => Errno::Unreachable,
        ErrorKind::TimedOut => Errno::TimedOut,
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => Errno::Reset,
        ErrorKind::NotFound => Errno::NotFound,
        ErrorKind::PermissionDenied => Errno::PermissionDenied,
        ErrorKind::WouldBlock => Errno::WouldBlock,
        // `ErrorKind` is open-ended (non_exhaustive): every other kind is just "failed".
        _ => Errno::Other,
    })
}

fn context(error: &Error) -> &str {
    error.context.as_ref().map_or("", |c| c.as_str())
}

fn header_too_large(error: &Error) -> bool {
    innermost_context(error).starts_with("Response header larger than")
}

/// Pingora keeps the bytes of an unparsable response header as escaped text (`buf: ...`). A TLS
/// record starts with content type 0x15 (alert) or 0x16 (handshake) and major version 3: that
/// is a TLS server answering our plain-text request.
fn starts_with_tls_record(error: &Error) -> bool {
    let buf = innermost_context(error).strip_prefix("buf: ").unwrap_or("");
    buf.starts_with("\\x15\\x03") || buf.starts_with("\\x16\\x03")
}

/// What the detail header and the report say, beyond the token. What explains a diagnosis
/// follows from its phase: a TLS failure's reason only exists as text; the innermost Pingora
/// context says what was going on ("while reading response headers, bytes already read: 0",
/// "buf: ..."), while outer layers only repeat the peer, which the report shows on its own;
/// connect contexts also just name the peer, so connect failures show the OS's words alone.
fn detail_of(facts: &Facts<'_>, diagnosis: Diagnosis) -> String {
    let error = facts.error;
    let ctx = match diagnosis.phase() {
        Phase::Tls => return classify_tls_text(&error.to_string()).reason.to_owned(),
        Phase::Connect => "",
        Phase::Route
        | Phase::Dns
        | Phase::Request
        | Phase::ResponseHeaders
        | Phase::ResponseBody => head(innermost_context(error), MAX_DETAIL),
    };
    // An HTTP/2 error says in its own words what broke (a reset, a broken pipe).
    let cause = io_error(error)
        .map(io_text)
        .or_else(|| cause::<h2::Error>(error).map(|e| e.to_string().into()));
    match cause {
        Some(cause) if ctx.is_empty() => cause.into_owned(),
        Some(cause) => format!("{ctx}: {cause}"),
        None if ctx.is_empty() => error.etype().as_str().to_owned(),
        None => ctx.to_owned(),
    }
}

/// `io::Error`'s own text ("Connection refused (os error 111)"). An OS error's text depends only
/// on its errno, so it is formatted once per errno and then copied: `strerror` and the formatter
/// cost more than the rest of a classification, which runs for every failure in a storm.
fn io_text(io: &std::io::Error) -> std::borrow::Cow<'static, str> {
    const CACHED: usize = 256;
    static TEXTS: [std::sync::OnceLock<Box<str>>; CACHED] =
        [const { std::sync::OnceLock::new() }; CACHED];
    let errno = io
        .raw_os_error()
        .and_then(|code| usize::try_from(code).ok())
        .filter(|&code| code < CACHED);
    match errno {
        Some(code) => {
            std::borrow::Cow::Borrowed(TEXTS[code].get_or_init(|| io.to_string().into_boxed_str()))
        }
        None => std::borrow::Cow::Owned(io.to_string()),
    }
}

/// The context of the deepest `pingora::Error` in the cause chain.
fn innermost_context(error: &Error) -> &str {
    let mut current = error;
    for _ in 0..16 {
        match current
            .cause
            .as_deref()
            .and_then(|c| c.downcast_ref::<Box<Error>>())
        {
            Some(inner) => current = inner,
            None => break,
        }
    }
    context(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn upstream(etype: ErrorType, context: &str) -> Box<Error> {
        let mut e = Error::explain(etype, context.to_owned());
        e.as_up();
        e
    }

    fn upstream_io(etype: ErrorType, context: &'static str, errno: i32) -> Box<Error> {
        let mut e = Error::because(etype, context, io::Error::from_raw_os_error(errno));
        e.as_up();
        e
    }

    fn run(error: &Error, progress: Progress, upstream_tls: bool) -> Finding {
        classify(&Facts {
            error,
            progress,
            upstream_tls,
            unix_socket: false,
            upgrade: false,
            request_unsent: false,
            client_reset: None,
        })
    }

    /// An invalid response's bytes, however many, make a detail of at most MAX_DETAIL bytes,
    /// cut on a char boundary and marked; a short one is kept whole.
    #[test]
    fn detail_is_bounded() {
        for filler in ["z", "é", "😀"] {
            let garbage = format!("buf: HTTP/1.1 200 OK\\r\\nX: {}", filler.repeat(300_000));
            let e = upstream(ErrorType::InvalidHTTPHeader, &garbage);
            let detail = run(&e, Progress::Connected, false).detail;
            assert!(detail.len() <= MAX_DETAIL, "{}", detail.len());
            assert!(detail.len() > MAX_DETAIL - 8, "{}", detail.len());
            assert!(detail.starts_with("buf: HTTP/1.1") && detail.ends_with(CUT_MARK));
        }
        let e = upstream(ErrorType::InvalidHTTPHeader, "buf: HELLO");
        assert_eq!(run(&e, Progress::Connected, false).detail, "buf: HELLO");
        let exact = "x".repeat(MAX_DETAIL);
        let e = upstream(ErrorType::InvalidHTTPHeader, &exact);
        assert_eq!(run(&e, Progress::Connected, false).detail, exact);
    }

    /// A refused connect is connect_refused, with the OS's words as the detail.
    #[test]
    fn refused_from_etype_and_errno() {
        let e = upstream_io(ErrorType::ConnectRefused, "Fail to connect", 111);
        let f = run(&e, Progress::Connecting, false);
        assert_eq!(f.diagnosis, Diagnosis::ConnectRefused);
        assert!(f.detail.contains("Connection refused"), "{}", f.detail);
        // A catch-all ConnectError still classifies by its errno.
        let e = upstream_io(ErrorType::ConnectError, "Fail to connect", 111);
        assert_eq!(
            run(&e, Progress::Connecting, false).diagnosis,
            Diagnosis::ConnectRefused
        );
        let e = upstream_io(ErrorType::ConnectError, "Fail to connect", 113);
        assert_eq!(
            run(&e, Progress::Connecting, false).diagnosis,
            Diagnosis::ConnectUnreachable
        );
    }

    /// A unix socket's connect failures, typed as Pingora types them (EACCES as an internal
    /// error), are diagnosed by their errno; the same errnos from a TCP connect keep their TCP
    /// diagnoses, and a unix socket's failure once connected is no connect failure.
    #[test]
    fn unix_socket_connect_failures_by_errno() {
        let diagnose = |etype: ErrorType, errno: i32, unix_socket: bool, progress: Progress| {
            let error = upstream_io(etype, "Fail to connect to /run/app.sock", errno);
            classify(&Facts {
                error: &error,
                progress,
                upstream_tls: false,
                unix_socket,
                upgrade: false,
                request_unsent: false,
                client_reset: None,
            })
        };
        let connecting = Progress::Connecting;
        for (etype, errno, unix, tcp) in [
            (
                ErrorType::ConnectError,
                2,
                Diagnosis::SocketMissing,
                Diagnosis::ConnectFailed,
            ),
            (
                ErrorType::InternalError,
                13,
                Diagnosis::SocketPermissionDenied,
                Diagnosis::InternalError,
            ),
            (
                ErrorType::ConnectRefused,
                111,
                Diagnosis::SocketRefused,
                Diagnosis::ConnectRefused,
            ),
            (
                ErrorType::ConnectError,
                11,
                Diagnosis::SocketBacklogFull,
                Diagnosis::ConnectFailed,
            ),
        ] {
            let found = diagnose(etype.clone(), errno, true, connecting);
            assert_eq!(found.diagnosis, unix, "errno {errno}");
            assert_eq!(
                found.detail,
                io::Error::from_raw_os_error(errno).to_string(),
                "the OS's words alone, as for any connect failure"
            );
            assert_eq!(diagnose(etype, errno, false, connecting).diagnosis, tcp);
        }
        assert_eq!(
            diagnose(ErrorType::ReadError, 104, true, Progress::Connected).diagnosis,
            Diagnosis::ConnectionReset
        );
        assert_eq!(
            diagnose(ErrorType::ConnectTimedout, 110, true, connecting).diagnosis,
            Diagnosis::ConnectTimeout
        );
    }

    /// The errno is found through several layers of Pingora context.
    #[test]
    fn errno_through_nested_context() {
        let e = upstream_io(ErrorType::ConnectError, "inner", 101).more_context("Peer: x");
        assert_eq!(
            run(&e, Progress::Connecting, false).diagnosis,
            Diagnosis::ConnectUnreachable
        );
    }

    /// The same read failure is a header-phase or a body-phase diagnosis depending on progress.
    #[test]
    fn phase_decides_between_header_and_body_variants() {
        let reset = upstream_io(ErrorType::ReadError, "while reading", 104);
        assert_eq!(
            run(&reset, Progress::Connected, false).diagnosis,
            Diagnosis::ConnectionReset
        );
        assert_eq!(
            run(&reset, Progress::ResponseStarted, false).diagnosis,
            Diagnosis::BodyReset
        );
        let closed = upstream(ErrorType::ConnectionClosed, "bytes already read: 0");
        assert_eq!(
            run(&closed, Progress::Connected, false).diagnosis,
            Diagnosis::ConnectionClosed
        );
        assert_eq!(
            run(&closed, Progress::ResponseStarted, false).diagnosis,
            Diagnosis::BodyClosed
        );
        let timeout = upstream(ErrorType::ReadTimedout, "while reading response headers");
        assert_eq!(
            run(&timeout, Progress::Connected, false).diagnosis,
            Diagnosis::ResponseTimeout
        );
        assert_eq!(
            run(&timeout, Progress::ResponseStarted, false).diagnosis,
            Diagnosis::BodyTimeout
        );
    }

    /// Invalid headers split into too large, a TLS server on a plain port, and garbage.
    #[test]
    fn invalid_header_variants() {
        let big = upstream(
            ErrorType::InvalidHTTPHeader,
            "Response header larger than 1048575",
        );
        assert_eq!(
            run(&big, Progress::Connected, false).diagnosis,
            Diagnosis::ResponseHeadersTooLarge
        );
        let tls = upstream(
            ErrorType::InvalidHTTPHeader,
            "buf: \\x15\\x03\\x03\\x00\\x02\\x02\\x32",
        );
        assert_eq!(
            run(&tls, Progress::Connected, false).diagnosis,
            Diagnosis::UpstreamExpectsTls
        );
        // Pingora's error_while_proxy wraps every error in a "Peer: ..." context.
        let wrapped = upstream(ErrorType::InvalidHTTPHeader, "buf: \\x16\\x03\\x01")
            .more_context("Peer: addr: 127.0.0.1:1");
        assert_eq!(
            run(&wrapped, Progress::Connected, false).diagnosis,
            Diagnosis::UpstreamExpectsTls
        );
        let wrapped = upstream(
            ErrorType::InvalidHTTPHeader,
            "Response header larger than 1048575",
        )
        .more_context("Peer: addr: 127.0.0.1:1");
        assert_eq!(
            run(&wrapped, Progress::Connected, false).diagnosis,
            Diagnosis::ResponseHeadersTooLarge
        );
        let garbage = upstream(ErrorType::InvalidHTTPHeader, "buf: HELLO WORLD");
        assert_eq!(
            run(&garbage, Progress::Connected, false).diagnosis,
            Diagnosis::InvalidResponse
        );
    }

    /// A client that went away is client_closed, not an upstream failure.
    #[test]
    fn downstream_errors_are_the_clients() {
        let mut e = Error::explain(ErrorType::WriteError, "writing to client");
        e.as_down();
        assert_eq!(
            run(&e, Progress::ResponseStarted, false).diagnosis,
            Diagnosis::ClientClosed
        );
        let mut e = Error::explain(ErrorType::InvalidHTTPHeader, "bad request");
        e.as_down();
        assert_eq!(
            run(&e, Progress::Started, false).diagnosis,
            Diagnosis::BadRequest
        );
    }

    /// An HTTP/2 client cancelling its stream is client_closed, whether Pingora kept the h2
    /// error (a reset seen while writing) or only its text (a reset seen while waiting for the
    /// upstream, whose reason the stream itself then gives); a reset for another reason, or an
    /// h2 error with neither, stays bad_request.
    #[test]
    fn http2_cancel_is_client_closed() {
        let diagnose = |error: &Error, client_reset| {
            classify(&Facts {
                error,
                progress: Progress::Connected,
                upstream_tls: false,
                unix_socket: false,
                upgrade: false,
                request_unsent: false,
                client_reset,
            })
            .diagnosis
        };
        let mut seen_idle = Error::explain(
            ErrorType::H2Error,
            "Client closed H2, reason: stream no longer needed",
        );
        seen_idle.as_down();
        assert_eq!(
            diagnose(&seen_idle, Some(h2::Reason::CANCEL)),
            Diagnosis::ClientClosed
        );
        assert_eq!(
            diagnose(&seen_idle, Some(h2::Reason::PROTOCOL_ERROR)),
            Diagnosis::BadRequest
        );
        assert_eq!(diagnose(&seen_idle, None), Diagnosis::BadRequest);
        let typed = |reason: h2::Reason| {
            let mut e = Error::because(
                ErrorType::H2Error,
                "while waiting for capacity",
                h2::Error::from(reason),
            );
            e.as_down();
            e
        };
        assert_eq!(
            diagnose(&typed(h2::Reason::CANCEL), None),
            Diagnosis::ClientClosed
        );
        assert_eq!(
            diagnose(&typed(h2::Reason::PROTOCOL_ERROR), None),
            Diagnosis::BadRequest
        );
        let detail = run(&typed(h2::Reason::CANCEL), Progress::Connected, false).detail;
        assert_eq!(
            detail,
            format!(
                "while waiting for capacity: {}",
                h2::Error::from(h2::Reason::CANCEL)
            )
        );
        // The same reason from the upstream's side is the upstream's failure.
        let mut upstream_reset = typed(h2::Reason::CANCEL);
        upstream_reset.as_up();
        assert_eq!(
            diagnose(&upstream_reset, Some(h2::Reason::CANCEL)),
            Diagnosis::InvalidResponse
        );
    }

    /// An errno's cached text is exactly what `io::Error` prints, on every call.
    #[test]
    fn io_text_is_the_io_error_text() {
        for code in [111, 104, 110, 113, 0, 255, 4095] {
            let io = std::io::Error::from_raw_os_error(code);
            assert_eq!(io_text(&io), io.to_string());
            assert_eq!(io_text(&io), io.to_string());
        }
        let custom = std::io::Error::other("custom words");
        assert_eq!(io_text(&custom), "custom words");
    }

    /// The detail is the innermost context with the errno, not the outer "Peer:" wrapper.
    #[test]
    fn detail_is_innermost_context() {
        let e = upstream_io(
            ErrorType::ReadError,
            "while reading response headers, bytes already read: 0",
            104,
        )
        .more_context("Peer: addr: 127.0.0.1:3000");
        assert_eq!(
            run(&e, Progress::Connected, false).detail,
            "while reading response headers, bytes already read: 0: Connection reset by peer (os error 104)"
        );
        let e = upstream_io(ErrorType::ConnectRefused, "Fail to connect to addr: x", 111);
        assert_eq!(
            run(&e, Progress::Connecting, false).detail,
            "Connection refused (os error 111)"
        );
    }

    /// A reset before the protocol switch of an upgrade request is upgrade_failed.
    #[test]
    fn broken_upgrade() {
        let reset = upstream_io(ErrorType::ReadError, "while reading", 104);
        let f = classify(&Facts {
            error: &reset,
            progress: Progress::Connected,
            upstream_tls: false,
            unix_socket: false,
            upgrade: true,
            request_unsent: false,
            client_reset: None,
        });
        assert_eq!(f.diagnosis, Diagnosis::UpgradeFailed);
    }

    /// A reset or close while the request body is still being sent is request_send_failed,
    /// whether it surfaced on the write or on the read of the response.
    #[test]
    fn dropped_during_upload() {
        let reset = upstream_io(ErrorType::ReadError, "while reading", 104);
        let closed = upstream_io(ErrorType::ConnectionClosed, "while reading", 104);
        let write = upstream_io(ErrorType::WriteError, "while writing", 32);
        let diagnose = |error: &Error, request_unsent| {
            classify(&Facts {
                error,
                progress: Progress::Connected,
                upstream_tls: false,
                unix_socket: false,
                upgrade: false,
                request_unsent,
                client_reset: None,
            })
            .diagnosis
        };
        for error in [&reset, &closed, &write] {
            assert_eq!(diagnose(error, true), Diagnosis::RequestSendFailed);
        }
        // The whole request went out: a reset is the connection's, as before.
        assert_eq!(diagnose(&reset, false), Diagnosis::ConnectionReset);
    }

    /// Timeouts never fall into a 502 bucket.
    #[test]
    fn connect_timeout_is_connect_timeout() {
        let e = upstream(
            ErrorType::ConnectTimedout,
            "connecting to server, timeout 1s",
        );
        assert_eq!(
            run(&e, Progress::Connecting, true).diagnosis,
            Diagnosis::ConnectTimeout
        );
    }
}
