//! Who the admin listener answers, and the headers every answer carries.
//!
//! The admin listener is on loopback, which a browser on the same machine can reach: a page
//! from anywhere may point requests at it. What keeps that page out:
//! - **Host**: a request must name the listener itself (its address, or the address the
//!   connection came in on), `localhost`, or a name of `[admin] hosts`; anything else gets
//!   421 Misdirected Request, the status for "not a name this server answers for". A DNS
//!   rebinding attack points a name of the attacker's at 127.0.0.1, so the browser sends that
//!   name as the Host, and is refused before any report is read. The port is not compared: a
//!   tunnel or port mapping changes it, and no attacker can make a browser send one of these
//!   names for a page of theirs. A request without a Host (HTTP/1.0: a probe, never a
//!   browser) is answered.
//! - **State changes** (`POST /reload`, `POST /deploys`) need `Content-Type:
//!   application/json` or an `X-Triage-Admin` header, which a page cannot send cross-site
//!   without a CORS preflight this listener never grants; a plain form or `text/plain` POST
//!   gets 403.
//! - **`[admin] token_file`**: when set, every endpoint but `/healthz` and `/readyz` needs
//!   `Authorization: Bearer <token>`, compared in constant time; else 401 with
//!   `WWW-Authenticate: Bearer`.
//! - **Every answer** carries `X-Content-Type-Options: nosniff`, a CSP that allows only the
//!   pages' inline style and no framing, `Cache-Control: no-store` and
//!   `Referrer-Policy: no-referrer`.

use crate::config::{Admin as AdminSettings, AdminToken};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use std::net::IpAddr;

/// The header a client of triage's (`triage reload`) sends to make a state change, which a
/// browser will not send cross-site without a preflight.
pub const ADMIN_HEADER: &str = "x-triage-admin";

/// The admin HTML pages have an inline `<style>` and links; nothing else may load or frame.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'none'";

/// What the admin listener checks before it answers.
pub struct Access {
    /// The listener's own address (unspecified for 0.0.0.0 and [::]).
    listen: IpAddr,
    /// `[admin] hosts`: lowercase names, and IP addresses as `Display` writes them.
    hosts: Vec<String>,
    token: Option<AdminToken>,
}

/// A refusal, before the endpoint is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The Host names something else: 421.
    MisdirectedHost,
    /// The bearer token is missing or wrong: 401.
    Unauthenticated,
}

impl Access {
    pub fn new(settings: &AdminSettings) -> Access {
        Access {
            listen: settings.listen.ip().to_canonical(),
            hosts: settings.hosts.clone(),
            token: settings.token.clone(),
        }
    }

    /// Whether a request for `path` may go on: its Host names this listener (`local` is the
    /// address the connection came in on), and it carries the token where one is needed.
    pub fn check(
        &self,
        headers: &HeaderMap,
        authority: Option<&str>,
        local: Option<IpAddr>,
        path: &str,
    ) -> Result<(), Refusal> {
        let host = authority.or_else(|| {
            headers
                .get(http::header::HOST)
                .map(|h| h.to_str().unwrap_or("\u{0}"))
        });
        if let Some(host) = host {
            if !self.names_this_listener(host, local) {
                return Err(Refusal::MisdirectedHost);
            }
        }
        // Orchestrators probe these without credentials; they tell nothing but "up".
        let open = matches!(path, "/healthz" | "/readyz");
        match &self.token {
            Some(token) if !open && !bearer_matches(headers, token) => {
                Err(Refusal::Unauthenticated)
            }
            _ => Ok(()),
        }
    }

    /// Whether `host` (a Host header, with or without its port) names this listener.
    fn names_this_listener(&self, host: &str, local: Option<IpAddr>) -> bool {
        let name = host_name(host);
        let unbracketed = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        match unbracketed.parse::<IpAddr>() {
            Ok(ip) => {
                let ip = ip.to_canonical();
                (ip == self.listen && !ip.is_unspecified())
                    || local.is_some_and(|local| local.to_canonical() == ip)
                    || self.hosts.iter().any(|h| *h == ip.to_string())
            }
            Err(_) => {
                name.eq_ignore_ascii_case("localhost")
                    || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
            }
        }
    }
}

/// The name part of a Host value: `a.example:9901` → `a.example`, `[::1]:9901` → `[::1]`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether the request's `Authorization` is `Bearer <token>` (the scheme in any case).
fn bearer_matches(headers: &HeaderMap, token: &AdminToken) -> bool {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let scheme = b"bearer ";
    if value.len() <= scheme.len() || !value[..scheme.len()].eq_ignore_ascii_case(scheme) {
        return false;
    }
    constant_time_eq(
        value[scheme.len()..].trim_ascii(),
        token.secret().as_bytes(),
    )
}

/// Compares in a time that depends only on the lengths, so the answer's timing tells nothing
/// about how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// Whether a state-changing request is one a browser cannot send cross-site without a
/// preflight: `Content-Type: application/json` (parameters allowed) or an `X-Triage-Admin`
/// header.
pub fn is_non_simple(headers: &HeaderMap) -> bool {
    let json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    json || headers.contains_key(ADMIN_HEADER)
}

/// Adds the headers every admin answer carries.
pub fn secure(mut resp: Response<Vec<u8>>) -> Response<Vec<u8>> {
    let headers = resp.headers_mut();
    for (name, value) in [
        (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            http::header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY,
        ),
        (http::header::CACHE_CONTROL, "no-store"),
        (http::header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    resp
}

/// The answer to a refused request.
pub fn refusal(refusal: Refusal) -> Response<Vec<u8>> {
    match refusal {
        Refusal::MisdirectedHost => super::text(
            StatusCode::MISDIRECTED_REQUEST,
            "this is triage's admin listener: it answers a Host naming its own address, \
             localhost, or a name of [admin] hosts\n",
        ),
        Refusal::Unauthenticated => {
            let mut resp = super::text(
                StatusCode::UNAUTHORIZED,
                "send the token of [admin] token_file as Authorization: Bearer <token>\n",
            );
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"triage admin\""),
            );
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn access(listen: &str, hosts: &[&str]) -> Access {
        Access::new(&AdminSettings {
            listen: listen.parse::<SocketAddr>().unwrap(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            token: None,
        })
    }

    fn with_token(mut access: Access, secret: &str) -> Access {
        access.token = Some(AdminToken::for_tests(secret));
        access
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn host_check(access: &Access, host: &str, local: Option<&str>) -> Result<(), Refusal> {
        let local = local.map(|ip| ip.parse().unwrap());
        access.check(&headers(&[("host", host)]), None, local, "/diagnoses")
    }

    /// The listener's own address, the connection's local address, localhost and the
    /// configured names pass, with or without a port; a rebinding attacker's name does not.
    #[test]
    fn only_a_host_naming_this_listener_passes() {
        let access = access("127.0.0.1:9901", &["triage-admin.internal", "10.0.0.5"]);
        for host in [
            "127.0.0.1:9901",
            "127.0.0.1",
            "localhost:9901",
            "LOCALHOST",
            "localhost:8000",
            "Triage-Admin.Internal:9901",
            "10.0.0.5:9901",
        ] {
            assert_eq!(host_check(&access, host, None), Ok(()), "{host}");
        }
        for host in [
            "attacker.example:9901",
            "localhost.attacker.example",
            "127.0.0.2:9901",
            "[::1]:9901",
            "",
            "localhost:x",
        ] {
            assert_eq!(
                host_check(&access, host, None),
                Err(Refusal::MisdirectedHost),
                "{host}"
            );
        }
        // No Host at all (HTTP/1.0): not a browser, answered.
        assert_eq!(
            access.check(&HeaderMap::new(), None, None, "/diagnoses"),
            Ok(())
        );
        // An absolute-form target is checked as the Host is.
        assert_eq!(
            access.check(
                &headers(&[("host", "localhost")]),
                Some("attacker.example"),
                None,
                "/diagnoses"
            ),
            Err(Refusal::MisdirectedHost)
        );
    }

    /// On 0.0.0.0 or [::], the address the connection came in on is the listener's own,
    /// IPv4-mapped or not; the unspecified address itself is no name.
    #[test]
    fn a_wildcard_listener_answers_its_local_address() {
        let v4 = access("0.0.0.0:9901", &[]);
        assert_eq!(host_check(&v4, "192.0.2.7:9901", Some("192.0.2.7")), Ok(()));
        assert_eq!(
            host_check(&v4, "192.0.2.8:9901", Some("192.0.2.7")),
            Err(Refusal::MisdirectedHost)
        );
        assert_eq!(
            host_check(&v4, "0.0.0.0:9901", Some("192.0.2.7")),
            Err(Refusal::MisdirectedHost)
        );
        let v6 = access("[::]:9901", &[]);
        assert_eq!(
            host_check(&v6, "127.0.0.1:9901", Some("::ffff:127.0.0.1")),
            Ok(())
        );
        assert_eq!(host_check(&v6, "[::1]:9901", Some("::1")), Ok(()));
    }

    /// With a token, every endpoint but the probes needs `Authorization: Bearer <token>`.
    #[test]
    fn the_token_guards_everything_but_the_probes() {
        let access = with_token(access("127.0.0.1:9901", &[]), "0123456789abcdef");
        let check = |pairs: &[(&str, &str)], path| access.check(&headers(pairs), None, None, path);
        assert_eq!(check(&[], "/healthz"), Ok(()));
        assert_eq!(check(&[], "/readyz"), Ok(()));
        for path in [
            "/metrics",
            "/diagnoses",
            "/diagnoses/0123456789abcdef",
            "/reload",
        ] {
            assert_eq!(check(&[], path), Err(Refusal::Unauthenticated), "{path}");
        }
        let bearer = |value: &str| check(&[("authorization", value)], "/metrics");
        assert_eq!(bearer("Bearer 0123456789abcdef"), Ok(()));
        assert_eq!(bearer("bearer 0123456789abcdef"), Ok(()));
        for wrong in [
            "Bearer 0123456789abcdeX",
            "Bearer 0123456789abcde",
            "Bearer 0123456789abcdef0",
            "Basic 0123456789abcdef",
            "Bearer",
            "0123456789abcdef",
        ] {
            assert_eq!(bearer(wrong), Err(Refusal::Unauthenticated), "{wrong}");
        }
        // The Host is checked first: a rebinding request learns nothing about the token.
        assert_eq!(
            check(&[("host", "attacker.example")], "/healthz"),
            Err(Refusal::MisdirectedHost)
        );
    }

    /// A state change needs what a cross-site form or `text/plain` POST cannot send.
    #[test]
    fn state_changes_need_a_non_simple_request() {
        assert!(is_non_simple(&headers(&[(
            "content-type",
            "application/json"
        )])));
        assert!(is_non_simple(&headers(&[(
            "content-type",
            "Application/JSON; charset=utf-8"
        )])));
        assert!(is_non_simple(&headers(&[("x-triage-admin", "1")])));
        for simple in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain; application/json",
        ] {
            assert!(
                !is_non_simple(&headers(&[("content-type", simple)])),
                "{simple}"
            );
        }
        assert!(!is_non_simple(&HeaderMap::new()));
    }

    /// Every answer, refusals included, carries the protective headers.
    #[test]
    fn every_answer_is_secured() {
        let resp = secure(refusal(Refusal::Unauthenticated));
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok());
        assert_eq!(
            header("www-authenticate"),
            Some("Bearer realm=\"triage admin\"")
        );
        assert_eq!(header("x-content-type-options"), Some("nosniff"));
        assert_eq!(header("cache-control"), Some("no-store"));
        assert_eq!(header("referrer-policy"), Some("no-referrer"));
        assert!(header("content-security-policy")
            .is_some_and(|csp| csp.starts_with("default-src 'none'")
                && csp.contains("frame-ancestors 'none'")));
    }
}
