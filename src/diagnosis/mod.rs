//! The diagnosis: what went wrong with a request, in which phase, whose fault it is, and what to
//! do first.
//!
//! [`Diagnosis`] is the one closed taxonomy every other part of triage reads: the response
//! headers and error page, the metrics labels, the access log and the reports. Each variant
//! carries a stable token (never renamed: operators alert on it), the status the client gets, the
//! phase, the RFC 9209 `Proxy-Status` error type, the broken hop of the request path and a
//! one-line hint. All of it is one entry of one table (see [`taxonomy`]): a new variant is one
//! entry, and an entry missing an attribute does not compile. Every `match` on it elsewhere is
//! exhaustive with no `_` arm, so a new variant does not compile until every place handles it.
//!
//! [`classify`] turns the facts the proxy hooks recorded (a `pingora::Error`, the phase reached,
//! the upstream's TLS setting) into a [`Diagnosis`] plus a detail string.

pub mod classify;
pub mod local;
pub mod policy;
pub(crate) mod taxonomy;
pub mod tls;

pub use classify::{classify, diagnose, Facts, Finding, MAX_DETAIL};
pub use local::LocalFailure;
pub use policy::Disclosure;

use http::StatusCode;
use taxonomy::taxonomy;

taxonomy! {
    /// Where in the life of a request the failure happened, in the order a request goes through
    /// them. The token is sent in `X-Diagnosis-Phase` and used as a metric label.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Phase {
        unknown: UnknownPhase,
        /// Choosing an upstream for the request (no route matched).
        Route => "route",
        /// Resolving the upstream's hostname.
        Dns => "dns",
        /// Opening the TCP connection.
        Connect => "connect",
        /// The TLS handshake with the upstream.
        Tls => "tls",
        /// Sending the request (headers and body) to the upstream.
        Request => "request",
        /// Waiting for and parsing the upstream's response headers.
        ResponseHeaders => "response_headers",
        /// Relaying the response body, after the status was sent to the client.
        ResponseBody => "response_body",
    }
}

taxonomy! {
    /// Who produced the status the client received. The token is sent in `X-Diagnosis-Source`
    /// and used as a metric label.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Source {
        unknown: UnknownSource,
        /// triage generated the status (the upstream failed or was never reached).
        Proxy => "proxy",
        /// The upstream app produced the status; triage passed it through.
        Upstream => "upstream",
    }
}

taxonomy! {
    /// The RFC 9209 `Proxy-Status` error types triage uses; the token is the registered one
    /// (RFC 9209 section 2.3).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ProxyStatusError {
        unknown: UnknownProxyStatusError,
        DnsError => "dns_error",
        DestinationNotFound => "destination_not_found",
        DestinationUnavailable => "destination_unavailable",
        DestinationIpUnroutable => "destination_ip_unroutable",
        ConnectionRefused => "connection_refused",
        ConnectionTerminated => "connection_terminated",
        ConnectionTimeout => "connection_timeout",
        ConnectionReadTimeout => "connection_read_timeout",
        ConnectionWriteTimeout => "connection_write_timeout",
        TlsProtocolError => "tls_protocol_error",
        TlsCertificateError => "tls_certificate_error",
        HttpRequestError => "http_request_error",
        HttpRequestDenied => "http_request_denied",
        HttpUpgradeFailed => "http_upgrade_failed",
        HttpResponseIncomplete => "http_response_incomplete",
        HttpResponseHeaderSectionSize => "http_response_header_section_size",
        HttpResponseTimeout => "http_response_timeout",
        HttpProtocolError => "http_protocol_error",
        ProxyInternalError => "proxy_internal_error",
    }
}

/// What the client is sent for a diagnosis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientOutcome {
    /// triage answers with this status and its own error page.
    Generated(StatusCode),
    /// The upstream's status (and body) pass through; triage only adds headers.
    PassedThrough,
    /// The status line already went out; the client sees the body cut short.
    CutBody,
    /// The client is gone; nothing is sent, and the access log records this code.
    Nothing { logged_as: u16 },
}

/// Which element of the request path (client → triage → upstream) broke; the error page marks
/// it, so whoever hits the page can tell at a glance whose fault it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokenHop {
    /// Between the client and triage: the request itself was not valid, or the client left.
    ClientToProxy,
    /// triage itself: no route, or an internal failure.
    Proxy,
    /// Between triage and the upstream: the upstream failed or could not be reached.
    ProxyToUpstream,
}

/// Whose failure a diagnosis is, for what it may count against. Only [`Fault::Server`] counts
/// towards passive ejection; [`Fault::Client`] reports go to a ring of their own, so client
/// noise cannot push the upstream's failures out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The server refused, failed, timed out or broke the exchange before answering.
    Server,
    /// The app answered (its final header already counted as a success): its own status, a
    /// refused upgrade, or a body cut after the status went out.
    App,
    /// The client's doing: a request that cannot be forwarded or is not routed, a body over the
    /// limit, a client gone (hung up, upload abandoned, HTTP/2 stream cancelled).
    Client,
    /// No server was reached for a reason of triage's side: none in rotation, its name did not
    /// resolve, or triage's own failure.
    Proxy,
}

/// A diagnosis's row of the table: everything about it but its token. Each field is required in
/// every entry, so a new diagnosis does not compile until it has all of them.
#[derive(Debug, Clone, Copy)]
struct Row {
    outcome: ClientOutcome,
    phase: Phase,
    proxy_status_error: Option<ProxyStatusError>,
    broken_hop: BrokenHop,
    fault: Fault,
    hint: &'static str,
}

taxonomy! {
    /// Everything that can go wrong with a proxied request, as one closed set. The token is sent
    /// in `X-Diagnosis` and used as a metric label.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Diagnosis {
        unknown: UnknownDiagnosis,
        row: Row,
        /// The upstream's hostname did not resolve.
        DnsError => "dns_error" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::Dns,
            proxy_status_error: Some(ProxyStatusError::DnsError),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Proxy,
            hint: "the upstream's hostname does not resolve: check the name in the config and the DNS record",
        },
        /// TCP connect answered with RST: nothing listens on that port.
        ConnectRefused => "connect_refused" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::Connect,
            proxy_status_error: Some(ProxyStatusError::ConnectionRefused),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "nothing is listening: the app process crashed, is restarting, or the port in the config is wrong; check its logs and the port",
        },
        /// No route to the upstream's network or host (ENETUNREACH, EHOSTUNREACH).
        ConnectUnreachable => "connect_unreachable" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::Connect,
            proxy_status_error: Some(ProxyStatusError::DestinationIpUnroutable),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "no network route to the upstream: the host is down or its address changed; check the address and the network",
        },
        /// TCP connect failed for another reason (an errno that is neither refused nor
        /// unreachable).
        ConnectFailed => "connect_failed" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::Connect,
            proxy_status_error: Some(ProxyStatusError::DestinationUnavailable),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the connection to the upstream could not be opened: see the detail for the system error",
        },
        /// TCP connect (or the TLS handshake on top of it) did not finish in `connect_timeout`.
        ConnectTimeout => "connect_timeout" {
            outcome: ClientOutcome::Generated(StatusCode::GATEWAY_TIMEOUT),
            phase: Phase::Connect,
            proxy_status_error: Some(ProxyStatusError::ConnectionTimeout),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the upstream did not accept the connection in time: it is overloaded, down, or firewalled; check that it is up and reachable",
        },
        /// The unix socket's file does not exist (ENOENT).
        SocketMissing => "socket_missing" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::Connect,
            proxy_status_error: Some(ProxyStatusError::DestinationUnavailable),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the unix socket's file does not exist: the app is not running (never started, or removed its socket as it stopped), or the path in the config is wrong",
        },
        /// triage's user may not connect to the unix socket (EACCES): the socket file's mode,
        /// or a directory on its path.
        SocketPermissionDenied => "socket_permission_denied" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::Connect,
            proxy_status_error: Some(ProxyStatusError::ConnectionRefused),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "triage's user may not connect to the unix socket: that needs write permission on the socket file and search permission on its directories; the detail says who and what",
        },
        /// The unix socket's file exists but nothing listens on it (ECONNREFUSED).
        SocketRefused => "socket_refused" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::Connect,
            proxy_status_error: Some(ProxyStatusError::ConnectionRefused),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the socket file exists but nothing listens on it: the app died (crashed or was killed) and left its socket file behind; check its logs and restart it",
        },
        /// The unix socket's listen queue is full (EAGAIN): the app accepts connections slower
        /// than they come.
        SocketBacklogFull => "socket_backlog_full" {
            outcome: ClientOutcome::Generated(StatusCode::SERVICE_UNAVAILABLE),
            phase: Phase::Connect,
            proxy_status_error: Some(ProxyStatusError::ConnectionRefused),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the app's listen queue on its unix socket is full: it accepts connections slower than they come (overloaded, or its workers are stuck); add workers or capacity",
        },
        /// The TLS handshake failed for a reason other than those below.
        TlsHandshakeFailed => "tls_handshake_failed" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::Tls,
            proxy_status_error: Some(ProxyStatusError::TlsProtocolError),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the TLS handshake with the upstream failed: check the upstream's TLS setup and that both sides share a protocol version",
        },
        /// The upstream's certificate is outside its validity period.
        TlsCertificateExpired => "tls_certificate_expired" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::Tls,
            proxy_status_error: Some(ProxyStatusError::TlsCertificateError),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the upstream's certificate has expired or is not yet valid: renew it, and check the clocks",
        },
        /// The upstream's certificate does not chain to a trusted CA.
        TlsCertificateUntrusted => "tls_certificate_untrusted" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::Tls,
            proxy_status_error: Some(ProxyStatusError::TlsCertificateError),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the upstream's certificate is not signed by a trusted CA: set ca_file to the CA that signed it, or install a publicly trusted certificate",
        },
        /// The upstream's certificate is not valid for the name triage asked for (SNI).
        TlsCertificateNameMismatch => "tls_certificate_name_mismatch" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::Tls,
            proxy_status_error: Some(ProxyStatusError::TlsCertificateError),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the upstream's certificate is for another name: set sni to a name the certificate covers, or fix the certificate",
        },
        /// TLS is configured, but the upstream answered in plain HTTP.
        TlsUpstreamPlaintext => "tls_upstream_plaintext" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::Tls,
            proxy_status_error: Some(ProxyStatusError::TlsProtocolError),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the upstream answered in plain HTTP on a port configured for TLS: set tls = false, or point at its TLS port",
        },
        /// Plain HTTP is configured, but the upstream speaks TLS.
        UpstreamExpectsTls => "upstream_expects_tls" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::ResponseHeaders,
            proxy_status_error: Some(ProxyStatusError::HttpProtocolError),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the upstream speaks TLS on a port configured for plain HTTP: set tls = true, or point at its plain HTTP port",
        },
        /// The upstream reset the connection before sending response headers.
        ConnectionReset => "connection_reset" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::ResponseHeaders,
            proxy_status_error: Some(ProxyStatusError::ConnectionTerminated),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the upstream reset the connection before answering: the app crashed or was killed mid-request (out of memory?), or a deploy restarted it; check its logs",
        },
        /// The upstream closed the connection before sending a complete response header.
        ConnectionClosed => "connection_closed" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::ResponseHeaders,
            proxy_status_error: Some(ProxyStatusError::HttpResponseIncomplete),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the upstream closed the connection without answering: the app crashed mid-request or closed an idle connection; check its logs",
        },
        /// Sending the request to the upstream failed.
        RequestSendFailed => "request_send_failed" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::Request,
            proxy_status_error: Some(ProxyStatusError::ConnectionTerminated),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the upstream dropped the connection while the request was being sent: check its logs and its request size limits",
        },
        /// Sending the request to the upstream did not finish in `write_timeout`.
        RequestSendTimeout => "request_send_timeout" {
            outcome: ClientOutcome::Generated(StatusCode::GATEWAY_TIMEOUT),
            phase: Phase::Request,
            proxy_status_error: Some(ProxyStatusError::ConnectionWriteTimeout),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the upstream stopped reading the request: it is overloaded or stuck; check its load",
        },
        /// The upstream sent no response headers within `read_timeout`.
        ResponseTimeout => "response_timeout" {
            outcome: ClientOutcome::Generated(StatusCode::GATEWAY_TIMEOUT),
            phase: Phase::ResponseHeaders,
            proxy_status_error: Some(ProxyStatusError::HttpResponseTimeout),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the upstream accepted the request but did not answer within read_timeout: it is overloaded or stuck (slow query, deadlock); check its load and slow requests",
        },
        /// The upstream's response was not valid HTTP (garbage, malformed status line or
        /// headers, bad framing).
        InvalidResponse => "invalid_response" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::ResponseHeaders,
            proxy_status_error: Some(ProxyStatusError::HttpProtocolError),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the upstream's answer is not valid HTTP: another service may be on that port, or the app wrote garbage; check what listens there",
        },
        /// The upstream's response headers exceeded the size triage accepts.
        ResponseHeadersTooLarge => "response_headers_too_large" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::ResponseHeaders,
            proxy_status_error: Some(ProxyStatusError::HttpResponseHeaderSectionSize),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the upstream sent response headers larger than triage accepts: look for a runaway cookie or header in the app",
        },
        /// A FastCGI server ended the request with `FCGI_OVERLOADED` instead of running it.
        FastcgiOverloaded => "fastcgi_overloaded" {
            outcome: ClientOutcome::Generated(StatusCode::SERVICE_UNAVAILABLE),
            phase: Phase::ResponseHeaders,
            proxy_status_error: Some(ProxyStatusError::DestinationUnavailable),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the FastCGI server refused the request as overloaded (FCGI_OVERLOADED): it is out of workers or connections; add workers or capacity",
        },
        /// A FastCGI server ended the request with `FCGI_CANT_MPX_CONN`, `FCGI_UNKNOWN_ROLE` or
        /// an unknown protocol status instead of running it.
        FastcgiRejected => "fastcgi_rejected" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::ResponseHeaders,
            proxy_status_error: Some(ProxyStatusError::HttpProtocolError),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the FastCGI server ended the request without running it (see the detail): it is not a FastCGI responder as triage uses one; check what listens there",
        },
        /// The upstream reset the connection while sending the body; the client got a cut response.
        BodyReset => "body_reset" {
            outcome: ClientOutcome::CutBody,
            phase: Phase::ResponseBody,
            proxy_status_error: Some(ProxyStatusError::ConnectionTerminated),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::App,
            hint: "the upstream reset the connection mid-body: the app crashed or was killed while streaming (out of memory?); the client got a cut response",
        },
        /// The upstream closed the connection before the body was complete; the client got a cut
        /// response.
        BodyClosed => "body_closed" {
            outcome: ClientOutcome::CutBody,
            phase: Phase::ResponseBody,
            proxy_status_error: Some(ProxyStatusError::HttpResponseIncomplete),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::App,
            hint: "the upstream closed the connection before the body was complete: the app crashed or lied about Content-Length; the client got a cut response",
        },
        /// The upstream stopped sending the body for longer than `read_timeout`; the client got
        /// a cut response.
        BodyTimeout => "body_timeout" {
            outcome: ClientOutcome::CutBody,
            phase: Phase::ResponseBody,
            proxy_status_error: Some(ProxyStatusError::ConnectionReadTimeout),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::App,
            hint: "the upstream stopped sending the body for longer than read_timeout; the client got a cut response",
        },
        /// No route matches the request's host and path.
        NoRoute => "no_route" {
            outcome: ClientOutcome::Generated(StatusCode::NOT_FOUND),
            phase: Phase::Route,
            proxy_status_error: Some(ProxyStatusError::DestinationNotFound),
            broken_hop: BrokenHop::Proxy,
            fault: Fault::Client,
            hint: "no route matches this host and path: check [[routes]] in the config",
        },
        /// Every server of the upstream is marked down by health checks or passive ejection.
        NoHealthyUpstream => "no_healthy_upstream" {
            outcome: ClientOutcome::Generated(StatusCode::SERVICE_UNAVAILABLE),
            phase: Phase::Route,
            proxy_status_error: Some(ProxyStatusError::DestinationUnavailable),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Proxy,
            hint: "every server of this upstream failed its health checks or was ejected after repeated failures: check the servers and their logs",
        },
        /// The request body is larger than the route's `max_body_size`.
        RequestBodyTooLarge => "request_body_too_large" {
            outcome: ClientOutcome::Generated(StatusCode::PAYLOAD_TOO_LARGE),
            phase: Phase::Request,
            proxy_status_error: Some(ProxyStatusError::HttpRequestDenied),
            broken_hop: BrokenHop::ClientToProxy,
            fault: Fault::Client,
            hint: "the request body is larger than this route's max_body_size: send less, or raise the limit",
        },
        /// The path leads outside a FastCGI upstream's `root` (a dot-segment decoding reveals, a
        /// symlink out of root): nothing is served or run.
        OutsideRoot => "outside_root" {
            outcome: ClientOutcome::Generated(StatusCode::FORBIDDEN),
            phase: Phase::Route,
            proxy_status_error: Some(ProxyStatusError::HttpRequestDenied),
            broken_hop: BrokenHop::Proxy,
            fault: Fault::Client,
            hint: "the path leads outside the upstream's root (a dot-segment or a symlink out of root): triage serves and runs nothing outside root",
        },
        /// The client asked for a protocol upgrade (WebSocket) and the upstream broke the
        /// connection before switching protocols.
        UpgradeFailed => "upgrade_failed" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_GATEWAY),
            phase: Phase::ResponseHeaders,
            proxy_status_error: Some(ProxyStatusError::HttpUpgradeFailed),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::Server,
            hint: "the upstream broke the connection during the protocol upgrade (WebSocket): check the app's logs and that it serves WebSockets on this path",
        },
        /// The client asked for a protocol upgrade and the upstream answered without switching
        /// protocols; its answer passes through.
        UpgradeRefused => "upgrade_refused" {
            outcome: ClientOutcome::PassedThrough,
            phase: Phase::ResponseHeaders,
            proxy_status_error: Some(ProxyStatusError::HttpUpgradeFailed),
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::App,
            hint: "the app answered the protocol upgrade (WebSocket) without switching protocols: check that it serves WebSockets on this path; its answer is passed on",
        },
        /// The upstream itself answered with a 5xx status, passed through untouched.
        UpstreamStatus => "upstream_status" {
            outcome: ClientOutcome::PassedThrough,
            phase: Phase::ResponseHeaders,
            proxy_status_error: None,
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::App,
            hint: "the app itself answered with this error status: triage only passed it on; check the app's logs (database down?)",
        },
        /// php-fpm answered 404 "Primary script unknown": no file at the `SCRIPT_FILENAME` triage
        /// sent, as php-fpm sees its files; its answer passes through.
        ScriptNotFound => "script_not_found" {
            outcome: ClientOutcome::PassedThrough,
            phase: Phase::ResponseHeaders,
            proxy_status_error: None,
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::App,
            hint: "php-fpm found no script at the SCRIPT_FILENAME triage sent (Primary script unknown): root is not the document root php-fpm sees, or the script is missing",
        },
        /// php-fpm answered 403 "Access denied": `security.limit_extensions` does not let it run
        /// the file; its answer passes through.
        ScriptDenied => "script_denied" {
            outcome: ClientOutcome::PassedThrough,
            phase: Phase::ResponseHeaders,
            proxy_status_error: None,
            broken_hop: BrokenHop::ProxyToUpstream,
            fault: Fault::App,
            hint: "php-fpm refused to run the file (security.limit_extensions): serve files that are not scripts from disk (front_controller = true), or allow the extension",
        },
        /// The client went away before the response was complete (logged as 499).
        ClientClosed => "client_closed" {
            outcome: ClientOutcome::Nothing { logged_as: 499 },
            phase: Phase::Request,
            proxy_status_error: None,
            broken_hop: BrokenHop::ClientToProxy,
            fault: Fault::Client,
            hint: "the client went away before the response was complete",
        },
        /// The client's request could not be read as HTTP.
        BadRequest => "bad_request" {
            outcome: ClientOutcome::Generated(StatusCode::BAD_REQUEST),
            phase: Phase::Request,
            proxy_status_error: Some(ProxyStatusError::HttpRequestError),
            broken_hop: BrokenHop::ClientToProxy,
            fault: Fault::Client,
            hint: "the client's request was not valid HTTP",
        },
        /// The client's request head (request line and headers) is larger than `[client]
        /// max_header_bytes`.
        RequestHeadersTooLarge => "request_headers_too_large" {
            outcome: ClientOutcome::Generated(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
            phase: Phase::Request,
            proxy_status_error: Some(ProxyStatusError::HttpRequestDenied),
            broken_hop: BrokenHop::ClientToProxy,
            fault: Fault::Client,
            hint: "the request's headers are larger than [client] max_header_bytes: look for a runaway cookie or header in the client, or raise the limit",
        },
        /// Part of the client's request head arrived, not all of it within `[client]
        /// header_timeout`.
        ClientHeaderTimeout => "client_header_timeout" {
            outcome: ClientOutcome::Generated(StatusCode::REQUEST_TIMEOUT),
            phase: Phase::Request,
            proxy_status_error: None,
            broken_hop: BrokenHop::ClientToProxy,
            fault: Fault::Client,
            hint: "the client did not send its whole request head within [client] header_timeout: a stalled or very slow client, or a slowloris attack; nothing reached the app",
        },
        /// The client sent nothing of its request body for longer than `[client] body_timeout`.
        ClientBodyTimeout => "client_body_timeout" {
            outcome: ClientOutcome::Generated(StatusCode::REQUEST_TIMEOUT),
            phase: Phase::Request,
            proxy_status_error: None,
            broken_hop: BrokenHop::ClientToProxy,
            fault: Fault::Client,
            hint: "the client stopped sending its request body for longer than [client] body_timeout: a stalled upload or a very slow network",
        },
        /// The client read nothing of the response for longer than `[client] send_timeout`;
        /// the connection is closed, nothing more can be sent (logged as 408).
        ClientSendTimeout => "client_send_timeout" {
            outcome: ClientOutcome::Nothing { logged_as: 408 },
            phase: Phase::ResponseBody,
            proxy_status_error: None,
            broken_hop: BrokenHop::ClientToProxy,
            fault: Fault::Client,
            hint: "the client stopped reading the response for longer than [client] send_timeout: a stalled client or a very slow network; the connection was closed",
        },
        /// A failure inside triage itself, not caused by the upstream.
        InternalError => "internal_error" {
            outcome: ClientOutcome::Generated(StatusCode::INTERNAL_SERVER_ERROR),
            phase: Phase::Request,
            proxy_status_error: Some(ProxyStatusError::ProxyInternalError),
            broken_hop: BrokenHop::Proxy,
            fault: Fault::Proxy,
            hint: "a failure inside triage itself, not caused by the upstream: please report it with the id",
        },
    }
}

impl Diagnosis {
    /// What the client gets. Every timeout is a 504; no upstream failure is ever a 500.
    pub const fn outcome(self) -> ClientOutcome {
        self.row().outcome
    }

    /// The phase the failure happened in.
    pub const fn phase(self) -> Phase {
        self.row().phase
    }

    /// Who produced the status the client saw: follows from the outcome, so it is not a column.
    pub const fn source(self) -> Source {
        match self.outcome() {
            ClientOutcome::Generated(_) | ClientOutcome::Nothing { .. } => Source::Proxy,
            ClientOutcome::PassedThrough | ClientOutcome::CutBody => Source::Upstream,
        }
    }

    /// The RFC 9209 error type; `None` where the upstream answered (it carries
    /// `received-status` instead) or the client is gone.
    pub const fn proxy_status_error(self) -> Option<ProxyStatusError> {
        self.row().proxy_status_error
    }

    /// The element of the request path that broke, as the error page marks it.
    pub const fn broken_hop(self) -> BrokenHop {
        self.row().broken_hop
    }

    /// One line: the likely cause, then the first thing to do.
    pub const fn hint(self) -> &'static str {
        self.row().hint
    }

    /// Whose failure this is.
    pub const fn fault(self) -> Fault {
        self.row().fault
    }

    /// Whether this failure of an attempt counts against the server it went to, towards passive
    /// ejection (`max_fails` within `fail_timeout`). Only failures the server caused count:
    /// nothing a client does may take a server out of rotation.
    pub const fn counts_against_upstream(self) -> bool {
        matches!(self.fault(), Fault::Server)
    }

    /// The status the access log and metrics record, given what the upstream sent (if anything).
    pub fn logged_status(self, upstream_status: Option<u16>) -> u16 {
        match self.outcome() {
            ClientOutcome::Generated(status) => status.as_u16(),
            ClientOutcome::Nothing { logged_as } => logged_as,
            ClientOutcome::PassedThrough | ClientOutcome::CutBody => upstream_status.unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Tokens are unique, lowercase snake_case and safe as header values and metric labels.
    #[test]
    fn tokens_are_unique_and_label_safe() {
        let mut seen = HashSet::new();
        for d in Diagnosis::ALL {
            let token = d.token();
            assert!(seen.insert(token), "duplicate token {token}");
            assert!(token.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
        assert_eq!(seen.len(), Diagnosis::ALL.len());
    }

    /// The statuses the issue fixes for each required token hold.
    #[test]
    fn required_statuses() {
        let expect: [(&str, u16); 18] = [
            ("dns_error", 502),
            ("connect_refused", 502),
            ("connect_unreachable", 502),
            ("connect_timeout", 504),
            ("tls_handshake_failed", 502),
            ("tls_certificate_expired", 502),
            ("tls_certificate_untrusted", 502),
            ("tls_certificate_name_mismatch", 502),
            ("tls_upstream_plaintext", 502),
            ("upstream_expects_tls", 502),
            ("connection_reset", 502),
            ("connection_closed", 502),
            ("response_timeout", 504),
            ("invalid_response", 502),
            ("response_headers_too_large", 502),
            ("request_send_failed", 502),
            ("no_route", 404),
            ("client_closed", 499),
        ];
        for (token, status) in expect {
            let d: Diagnosis = token
                .parse()
                .unwrap_or_else(|_| panic!("missing token {token}"));
            assert_eq!(d.logged_status(None), status, "{token}");
        }
    }

    /// Every token of every taxonomy parses back to its variant, and only an exact token
    /// parses: another case, surrounding space or an empty string is refused.
    #[test]
    fn tokens_parse_back_to_their_variant() {
        fn round_trip<T: std::str::FromStr + PartialEq>(all: &[T], token: fn(&T) -> &'static str) {
            for variant in all {
                let token = token(variant);
                assert!(token.parse::<T>().is_ok_and(|v| v == *variant), "{token}");
                assert!(token.to_uppercase().parse::<T>().is_err(), "{token}");
                assert!(format!(" {token}").parse::<T>().is_err(), "{token}");
            }
            assert!("".parse::<T>().is_err());
        }
        round_trip(&Diagnosis::ALL, |d| d.token());
        round_trip(&Phase::ALL, |p| p.token());
        round_trip(&Source::ALL, |s| s.token());
        round_trip(&ProxyStatusError::ALL, |e| e.token());
        assert_eq!("not_a_token".parse::<Diagnosis>(), Err(UnknownDiagnosis));
    }

    /// An array built from `ALL` and indexed by a variant gives that variant's own slot.
    #[test]
    fn per_variant_arrays_line_up_with_all() {
        let labels: [&str; Diagnosis::COUNT] = Diagnosis::ALL.map(Diagnosis::token);
        for d in Diagnosis::ALL {
            assert_eq!(labels[d], d.token());
        }
    }

    /// No upstream failure surfaces as a 500, every timeout of the upstream is a 504 and every
    /// timeout of the client a 408.
    #[test]
    fn timeouts_are_504_or_408_and_only_internal_errors_are_500() {
        for d in Diagnosis::ALL {
            let status = d.logged_status(Some(200));
            if d.token().contains("timeout") && d.fault() == Fault::Client {
                assert_eq!(status, 408, "{}", d.token());
            } else if d.token().contains("timeout") && d.phase() != Phase::ResponseBody {
                assert_eq!(status, 504, "{}", d.token());
            }
            if status == 500 {
                assert_eq!(d, Diagnosis::InternalError);
            }
        }
    }

    /// The README's table lists every diagnosis, in `ALL`'s order and nothing else, with its
    /// current status, phase, RFC 9209 type and hint, so the documentation cannot drift from the
    /// code.
    #[test]
    fn readme_table_matches_the_taxonomy() {
        let readme = include_str!("../../README.md");
        let table = readme
            .split_once("## Every diagnosis\n")
            .map(|(_, rest)| rest)
            .expect("README has an \"Every diagnosis\" section");
        let tokens: Vec<&str> = table
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.strip_prefix("| `")?.split_once('`').map(|(t, _)| t))
            .collect();
        assert_eq!(
            tokens,
            Diagnosis::ALL.map(Diagnosis::token),
            "README's rows"
        );
        for d in Diagnosis::ALL {
            let prefix = format!("| `{}` | ", d.token());
            let row = readme
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("README has no row for {}", d.token()));
            let cells: Vec<&str> = row.split(" | ").collect();
            let status = match d.outcome() {
                ClientOutcome::Generated(s) => s.as_u16().to_string(),
                ClientOutcome::PassedThrough => "the app's".to_owned(),
                ClientOutcome::CutBody => "the app's, body cut".to_owned(),
                ClientOutcome::Nothing { logged_as } => format!("none (logged {logged_as})"),
            };
            assert_eq!(cells[1], status, "status of {}", d.token());
            assert_eq!(cells[2], d.phase().token(), "phase of {}", d.token());
            assert_eq!(cells[3], d.source().token(), "source of {}", d.token());
            let rfc = d
                .proxy_status_error()
                .map_or("—".to_owned(), |e| format!("`{}`", e.token()));
            assert!(cells[4].starts_with(&rfc), "RFC 9209 type of {}", d.token());
            assert_eq!(
                cells[5].trim_end_matches(" |"),
                d.hint(),
                "hint of {}",
                d.token()
            );
        }
    }

    /// Nothing a client does, and no answer of the app, counts against a server: what counts
    /// happened while triage reached or waited for the server, and triage made the status.
    #[test]
    fn only_server_caused_failures_count_against_it() {
        for client_caused in [
            Diagnosis::BadRequest,
            Diagnosis::RequestBodyTooLarge,
            Diagnosis::ClientClosed,
            Diagnosis::RequestHeadersTooLarge,
            Diagnosis::ClientHeaderTimeout,
            Diagnosis::ClientBodyTimeout,
            Diagnosis::ClientSendTimeout,
        ] {
            assert!(!client_caused.counts_against_upstream());
        }
        assert!(!Diagnosis::UpstreamStatus.counts_against_upstream());
        assert!(Diagnosis::ConnectRefused.counts_against_upstream());
        assert!(Diagnosis::ConnectionReset.counts_against_upstream());
        for d in Diagnosis::ALL
            .into_iter()
            .filter(|d| d.counts_against_upstream())
        {
            assert_eq!(d.source(), Source::Proxy, "{}", d.token());
            assert!(
                matches!(
                    d.phase(),
                    Phase::Connect | Phase::Tls | Phase::Request | Phase::ResponseHeaders
                ),
                "{}",
                d.token()
            );
        }
    }

    /// The README's passive-ejection paragraph lists exactly the tokens that count against a
    /// server, then every other token as one that never does.
    #[test]
    fn readme_lists_what_counts_against_a_server() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("**Passive ejection counts only what the server caused.**")
            .expect("README has the passive ejection paragraph");
        let paragraph = &readme[start..];
        let paragraph = &paragraph[..paragraph.find("\n\n").unwrap_or(paragraph.len())];
        let (counted, never) = paragraph
            .split_once("No other token ever counts")
            .expect("the paragraph names the tokens that never count");
        let tokens = |text: &str| -> HashSet<&'static str> {
            Diagnosis::ALL
                .into_iter()
                .map(|d| d.token())
                .filter(|t| text.contains(&format!("`{t}`")))
                .collect()
        };
        let expected: HashSet<_> = Diagnosis::ALL
            .into_iter()
            .filter(|d| d.counts_against_upstream())
            .map(|d| d.token())
            .collect();
        assert_eq!(tokens(counted), expected);
        let rest: HashSet<_> = Diagnosis::ALL
            .into_iter()
            .filter(|d| !d.counts_against_upstream())
            .map(|d| d.token())
            .collect();
        assert_eq!(tokens(never), rest);
    }

    /// Hints are single lines that fit a header comfortably.
    #[test]
    fn hints_are_one_short_line() {
        for d in Diagnosis::ALL {
            let hint = d.hint();
            assert!(!hint.contains('\n') && !hint.contains('\r'));
            assert!(hint.len() <= 200, "{} hint too long", d.token());
            assert!(hint.is_ascii());
        }
    }
}
