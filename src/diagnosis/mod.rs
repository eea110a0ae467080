//! The diagnosis: what went wrong with a request, in which phase, whose fault it is, and what to
//! do first.
//!
//! [`Diagnosis`] is the one closed taxonomy every other part of triage reads: the response
//! headers and error page, the metrics labels, the access log and the reports. Each variant
//! carries a stable token (never renamed: operators alert on it), the status the client gets, the
//! phase, the RFC 9209 `Proxy-Status` error type and a one-line hint. Every `match` on it is
//! exhaustive with no `_` arm, so a new variant does not compile until every place handles it.
//!
//! [`classify`] turns the facts the proxy hooks recorded (a `pingora::Error`, the phase reached,
//! the upstream's TLS setting) into a [`Diagnosis`] plus a detail string.

pub mod classify;
pub mod policy;
pub(crate) mod taxonomy;
pub mod tls;

pub use classify::{classify, diagnose, Facts, Finding};
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

/// Everything that can go wrong with a proxied request, as one closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diagnosis {
    /// The upstream's hostname did not resolve.
    DnsError,
    /// TCP connect answered with RST: nothing listens on that port.
    ConnectRefused,
    /// No route to the upstream's network or host (ENETUNREACH, EHOSTUNREACH).
    ConnectUnreachable,
    /// TCP connect failed for another reason (an errno that is neither refused nor unreachable).
    ConnectFailed,
    /// TCP connect (or the TLS handshake on top of it) did not finish in `connect_timeout`.
    ConnectTimeout,
    /// The TLS handshake failed for a reason other than those below.
    TlsHandshakeFailed,
    /// The upstream's certificate is outside its validity period.
    TlsCertificateExpired,
    /// The upstream's certificate does not chain to a trusted CA.
    TlsCertificateUntrusted,
    /// The upstream's certificate is not valid for the name triage asked for (SNI).
    TlsCertificateNameMismatch,
    /// TLS is configured, but the upstream answered in plain HTTP.
    TlsUpstreamPlaintext,
    /// Plain HTTP is configured, but the upstream speaks TLS.
    UpstreamExpectsTls,
    /// The upstream reset the connection before sending response headers.
    ConnectionReset,
    /// The upstream closed the connection before sending a complete response header.
    ConnectionClosed,
    /// Sending the request to the upstream failed.
    RequestSendFailed,
    /// Sending the request to the upstream did not finish in `write_timeout`.
    RequestSendTimeout,
    /// The upstream sent no response headers within `read_timeout`.
    ResponseTimeout,
    /// The upstream's response was not valid HTTP (garbage, malformed status line or headers, bad
    /// framing).
    InvalidResponse,
    /// The upstream's response headers exceeded the size triage accepts.
    ResponseHeadersTooLarge,
    /// The upstream reset the connection while sending the body; the client got a cut response.
    BodyReset,
    /// The upstream closed the connection before the body was complete; the client got a cut
    /// response.
    BodyClosed,
    /// The upstream stopped sending the body for longer than `read_timeout`; the client got a cut
    /// response.
    BodyTimeout,
    /// No route matches the request's host and path.
    NoRoute,
    /// Every server of the upstream is marked down by health checks or passive ejection.
    NoHealthyUpstream,
    /// The request body is larger than the route's `max_body_size`.
    RequestBodyTooLarge,
    /// The client asked for a protocol upgrade (WebSocket) and the upstream broke the connection
    /// before switching protocols.
    UpgradeFailed,
    /// The client asked for a protocol upgrade and the upstream answered without switching
    /// protocols; its answer passes through.
    UpgradeRefused,
    /// The upstream itself answered with a 5xx status, passed through untouched.
    UpstreamStatus,
    /// The client went away before the response was complete (logged as 499).
    ClientClosed,
    /// The client's request could not be read as HTTP.
    BadRequest,
    /// A failure inside triage itself, not caused by the upstream.
    InternalError,
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

impl Diagnosis {
    /// Every variant, for tables, docs and pre-resolved metric handles.
    pub const ALL: [Diagnosis; 30] = [
        Diagnosis::DnsError,
        Diagnosis::ConnectRefused,
        Diagnosis::ConnectUnreachable,
        Diagnosis::ConnectFailed,
        Diagnosis::ConnectTimeout,
        Diagnosis::TlsHandshakeFailed,
        Diagnosis::TlsCertificateExpired,
        Diagnosis::TlsCertificateUntrusted,
        Diagnosis::TlsCertificateNameMismatch,
        Diagnosis::TlsUpstreamPlaintext,
        Diagnosis::UpstreamExpectsTls,
        Diagnosis::ConnectionReset,
        Diagnosis::ConnectionClosed,
        Diagnosis::RequestSendFailed,
        Diagnosis::RequestSendTimeout,
        Diagnosis::ResponseTimeout,
        Diagnosis::InvalidResponse,
        Diagnosis::ResponseHeadersTooLarge,
        Diagnosis::BodyReset,
        Diagnosis::BodyClosed,
        Diagnosis::BodyTimeout,
        Diagnosis::NoRoute,
        Diagnosis::NoHealthyUpstream,
        Diagnosis::RequestBodyTooLarge,
        Diagnosis::UpgradeFailed,
        Diagnosis::UpgradeRefused,
        Diagnosis::UpstreamStatus,
        Diagnosis::ClientClosed,
        Diagnosis::BadRequest,
        Diagnosis::InternalError,
    ];

    /// The stable token, as sent in `X-Diagnosis` and used as a metric label.
    pub const fn token(self) -> &'static str {
        match self {
            Diagnosis::DnsError => "dns_error",
            Diagnosis::ConnectRefused => "connect_refused",
            Diagnosis::ConnectUnreachable => "connect_unreachable",
            Diagnosis::ConnectFailed => "connect_failed",
            Diagnosis::ConnectTimeout => "connect_timeout",
            Diagnosis::TlsHandshakeFailed => "tls_handshake_failed",
            Diagnosis::TlsCertificateExpired => "tls_certificate_expired",
            Diagnosis::TlsCertificateUntrusted => "tls_certificate_untrusted",
            Diagnosis::TlsCertificateNameMismatch => "tls_certificate_name_mismatch",
            Diagnosis::TlsUpstreamPlaintext => "tls_upstream_plaintext",
            Diagnosis::UpstreamExpectsTls => "upstream_expects_tls",
            Diagnosis::ConnectionReset => "connection_reset",
            Diagnosis::ConnectionClosed => "connection_closed",
            Diagnosis::RequestSendFailed => "request_send_failed",
            Diagnosis::RequestSendTimeout => "request_send_timeout",
            Diagnosis::ResponseTimeout => "response_timeout",
            Diagnosis::InvalidResponse => "invalid_response",
            Diagnosis::ResponseHeadersTooLarge => "response_headers_too_large",
            Diagnosis::BodyReset => "body_reset",
            Diagnosis::BodyClosed => "body_closed",
            Diagnosis::BodyTimeout => "body_timeout",
            Diagnosis::NoRoute => "no_route",
            Diagnosis::NoHealthyUpstream => "no_healthy_upstream",
            Diagnosis::RequestBodyTooLarge => "request_body_too_large",
            Diagnosis::UpgradeFailed => "upgrade_failed",
            Diagnosis::UpgradeRefused => "upgrade_refused",
            Diagnosis::UpstreamStatus => "upstream_status",
            Diagnosis::ClientClosed => "client_closed",
            Diagnosis::BadRequest => "bad_request",
            Diagnosis::InternalError => "internal_error",
        }
    }

    /// What the client gets. Every timeout is a 504; no upstream failure is ever a 500.
    pub const fn outcome(self) -> ClientOutcome {
        use ClientOutcome::*;
        match self {
            Diagnosis::DnsError
            | Diagnosis::ConnectRefused
            | Diagnosis::ConnectUnreachable
            | Diagnosis::ConnectFailed
            | Diagnosis::TlsHandshakeFailed
            | Diagnosis::TlsCertificateExpired
            | Diagnosis::TlsCertificateUntrusted
            | Diagnosis::TlsCertificateNameMismatch
            | Diagnosis::TlsUpstreamPlaintext
            | Diagnosis::UpstreamExpectsTls
            | Diagnosis::ConnectionReset
            | Diagnosis::ConnectionClosed
            | Diagnosis::RequestSendFailed
            | Diagnosis::InvalidResponse
            | Diagnosis::ResponseHeadersTooLarge
            | Diagnosis::UpgradeFailed => Generated(StatusCode::BAD_GATEWAY),
            Diagnosis::NoHealthyUpstream => Generated(StatusCode::SERVICE_UNAVAILABLE),
            Diagnosis::RequestBodyTooLarge => Generated(StatusCode::PAYLOAD_TOO_LARGE),
            Diagnosis::ConnectTimeout
            | Diagnosis::RequestSendTimeout
            | Diagnosis::ResponseTimeout => Generated(StatusCode::GATEWAY_TIMEOUT),
            Diagnosis::NoRoute => Generated(StatusCode::NOT_FOUND),
            Diagnosis::BadRequest => Generated(StatusCode::BAD_REQUEST),
            Diagnosis::InternalError => Generated(StatusCode::INTERNAL_SERVER_ERROR),
            Diagnosis::BodyReset | Diagnosis::BodyClosed | Diagnosis::BodyTimeout => CutBody,
            Diagnosis::UpstreamStatus | Diagnosis::UpgradeRefused => PassedThrough,
            Diagnosis::ClientClosed => Nothing { logged_as: 499 },
        }
    }

    /// The phase the failure happened in.
    pub const fn phase(self) -> Phase {
        match self {
            Diagnosis::NoRoute | Diagnosis::NoHealthyUpstream => Phase::Route,
            Diagnosis::DnsError => Phase::Dns,
            Diagnosis::ConnectRefused
            | Diagnosis::ConnectUnreachable
            | Diagnosis::ConnectFailed
            | Diagnosis::ConnectTimeout => Phase::Connect,
            Diagnosis::TlsHandshakeFailed
            | Diagnosis::TlsCertificateExpired
            | Diagnosis::TlsCertificateUntrusted
            | Diagnosis::TlsCertificateNameMismatch
            | Diagnosis::TlsUpstreamPlaintext => Phase::Tls,
            Diagnosis::RequestSendFailed
            | Diagnosis::RequestSendTimeout
            | Diagnosis::RequestBodyTooLarge
            | Diagnosis::BadRequest
            | Diagnosis::ClientClosed
            | Diagnosis::InternalError => Phase::Request,
            Diagnosis::UpstreamExpectsTls
            | Diagnosis::ConnectionReset
            | Diagnosis::ConnectionClosed
            | Diagnosis::ResponseTimeout
            | Diagnosis::InvalidResponse
            | Diagnosis::ResponseHeadersTooLarge
            | Diagnosis::UpgradeFailed
            | Diagnosis::UpgradeRefused
            | Diagnosis::UpstreamStatus => Phase::ResponseHeaders,
            Diagnosis::BodyReset | Diagnosis::BodyClosed | Diagnosis::BodyTimeout => {
                Phase::ResponseBody
            }
        }
    }

    /// Who produced the status the client saw.
    pub const fn source(self) -> Source {
        match self.outcome() {
            ClientOutcome::Generated(_) | ClientOutcome::Nothing { .. } => Source::Proxy,
            ClientOutcome::PassedThrough | ClientOutcome::CutBody => Source::Upstream,
        }
    }

    /// The RFC 9209 error type; `None` where the upstream answered (it carries
    /// `received-status` instead) or the client is gone.
    pub const fn proxy_status_error(self) -> Option<ProxyStatusError> {
        use ProxyStatusError as P;
        Some(match self {
            Diagnosis::DnsError => P::DnsError,
            Diagnosis::ConnectRefused => P::ConnectionRefused,
            Diagnosis::ConnectUnreachable => P::DestinationIpUnroutable,
            Diagnosis::ConnectFailed => P::DestinationUnavailable,
            Diagnosis::ConnectTimeout => P::ConnectionTimeout,
            Diagnosis::TlsHandshakeFailed | Diagnosis::TlsUpstreamPlaintext => P::TlsProtocolError,
            Diagnosis::TlsCertificateExpired
            | Diagnosis::TlsCertificateUntrusted
            | Diagnosis::TlsCertificateNameMismatch => P::TlsCertificateError,
            Diagnosis::UpstreamExpectsTls | Diagnosis::InvalidResponse => P::HttpProtocolError,
            Diagnosis::ConnectionReset | Diagnosis::RequestSendFailed | Diagnosis::BodyReset => {
                P::ConnectionTerminated
            }
            Diagnosis::ConnectionClosed | Diagnosis::BodyClosed => P::HttpResponseIncomplete,
            Diagnosis::RequestSendTimeout => P::ConnectionWriteTimeout,
            Diagnosis::ResponseTimeout => P::HttpResponseTimeout,
            Diagnosis::BodyTimeout => P::ConnectionReadTimeout,
            Diagnosis::ResponseHeadersTooLarge => P::HttpResponseHeaderSectionSize,
            Diagnosis::NoRoute => P::DestinationNotFound,
            Diagnosis::NoHealthyUpstream => P::DestinationUnavailable,
            Diagnosis::RequestBodyTooLarge => P::HttpRequestDenied,
            Diagnosis::UpgradeFailed | Diagnosis::UpgradeRefused => P::HttpUpgradeFailed,
            Diagnosis::BadRequest => P::HttpRequestError,
            Diagnosis::InternalError => P::ProxyInternalError,
            Diagnosis::UpstreamStatus | Diagnosis::ClientClosed => return None,
        })
    }

    /// One line: the likely cause, then the first thing to do.
    pub const fn hint(self) -> &'static str {
        match self {
            Diagnosis::DnsError => "the upstream's hostname does not resolve: check the name in the config and the DNS record",
            Diagnosis::ConnectRefused => "nothing is listening: the app process crashed, is restarting, or the port in the config is wrong; check its logs and the port",
            Diagnosis::ConnectUnreachable => "no network route to the upstream: the host is down or its address changed; check the address and the network",
            Diagnosis::ConnectFailed => "the connection to the upstream could not be opened: see the detail for the system error",
            Diagnosis::ConnectTimeout => "the upstream did not accept the connection in time: it is overloaded, down, or firewalled; check that it is up and reachable",
            Diagnosis::TlsHandshakeFailed => "the TLS handshake with the upstream failed: check the upstream's TLS setup and that both sides share a protocol version",
            Diagnosis::TlsCertificateExpired => "the upstream's certificate has expired or is not yet valid: renew it, and check the clocks",
            Diagnosis::TlsCertificateUntrusted => "the upstream's certificate is not signed by a trusted CA: set ca_file to the CA that signed it, or install a publicly trusted certificate",
            Diagnosis::TlsCertificateNameMismatch => "the upstream's certificate is for another name: set sni to a name the certificate covers, or fix the certificate",
            Diagnosis::TlsUpstreamPlaintext => "the upstream answered in plain HTTP on a port configured for TLS: set tls = false, or point at its TLS port",
            Diagnosis::UpstreamExpectsTls => "the upstream speaks TLS on a port configured for plain HTTP: set tls = true, or point at its plain HTTP port",
            Diagnosis::ConnectionReset => "the upstream reset the connection before answering: the app crashed or was killed mid-request (out of memory?), or a deploy restarted it; check its logs",
            Diagnosis::ConnectionClosed => "the upstream closed the connection without answering: the app crashed mid-request or closed an idle connection; check its logs",
            Diagnosis::RequestSendFailed => "the upstream dropped the connection while the request was being sent: check its logs and its request size limits",
            Diagnosis::RequestSendTimeout => "the upstream stopped reading the request: it is overloaded or stuck; check its load",
            Diagnosis::ResponseTimeout => "the upstream accepted the request but did not answer within read_timeout: it is overloaded or stuck (slow query, deadlock); check its load and slow requests",
            Diagnosis::InvalidResponse => "the upstream's answer is not valid HTTP: another service may be on that port, or the app wrote garbage; check what listens there",
            Diagnosis::ResponseHeadersTooLarge => "the upstream sent response headers larger than triage accepts: look for a runaway cookie or header in the app",
            Diagnosis::BodyReset => "the upstream reset the connection mid-body: the app crashed or was killed while streaming (out of memory?); the client got a cut response",
            Diagnosis::BodyClosed => "the upstream closed the connection before the body was complete: the app crashed or lied about Content-Length; the client got a cut response",
            Diagnosis::BodyTimeout => "the upstream stopped sending the body for longer than read_timeout; the client got a cut response",
            Diagnosis::NoRoute => "no route matches this host and path: check [[routes]] in the config",
            Diagnosis::NoHealthyUpstream => "every server of this upstream failed its health checks or was ejected after repeated failures: check the servers and their logs",
            Diagnosis::RequestBodyTooLarge => "the request body is larger than this route's max_body_size: send less, or raise the limit",
            Diagnosis::UpgradeFailed => "the upstream broke the connection during the protocol upgrade (WebSocket): check the app's logs and that it serves WebSockets on this path",
            Diagnosis::UpgradeRefused => "the app answered the protocol upgrade (WebSocket) without switching protocols: check that it serves WebSockets on this path; its answer is passed on",
            Diagnosis::UpstreamStatus => "the app itself answered with this error status: triage only passed it on; check the app's logs (database down?)",
            Diagnosis::ClientClosed => "the client went away before the response was complete",
            Diagnosis::BadRequest => "the client's request was not valid HTTP",
            Diagnosis::InternalError => "a failure inside triage itself, not caused by the upstream: please report it with the id",
        }
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
            let d = Diagnosis::ALL
                .into_iter()
                .find(|d| d.token() == token)
                .unwrap_or_else(|| panic!("missing token {token}"));
            assert_eq!(d.logged_status(None), status, "{token}");
        }
    }

    /// No upstream failure surfaces as a 500, and every timeout is a 504.
    #[test]
    fn timeouts_are_504_and_only_internal_errors_are_500() {
        for d in Diagnosis::ALL {
            let status = d.logged_status(Some(200));
            if d.token().contains("timeout") && d.phase() != Phase::ResponseBody {
                assert_eq!(status, 504, "{}", d.token());
            }
            if status == 500 {
                assert_eq!(d, Diagnosis::InternalError);
            }
        }
    }

    /// The README's table lists every diagnosis with its current status, phase, RFC 9209 type
    /// and hint, so the documentation cannot drift from the code.
    #[test]
    fn readme_table_matches_the_taxonomy() {
        let readme = include_str!("../../README.md");
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
