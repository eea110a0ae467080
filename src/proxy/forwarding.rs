//! The forwarding headers apps expect behind a proxy, set the way nginx configs usually set them:
//! `X-Forwarded-For` (appended, `$proxy_add_x_forwarded_for`), `X-Real-IP` (the peer's address,
//! `$remote_addr`), `X-Forwarded-Proto`, `X-Forwarded-Host`, and `X-Request-Id` (the client's
//! when well-formed, else the request's diagnosis id, so app logs and triage's reports share an
//! id).
//!
//! Headers that claim a client address and that an app may trust without knowing who set them
//! are the proxy's to write: a client's `X-Real-IP` is replaced, and its `Forwarded` (RFC 7239)
//! and `True-Client-IP` (a CDN's) are removed, so a client cannot pose as another address.

use crate::id::RequestId;
use crate::render::text::AddrText;
use http::{HeaderName, HeaderValue};
use pingora::http::{HeaderLineName, RequestHeader};
use pingora::proxy::Session;
use std::net::IpAddr;

/// The longest `X-Request-Id` passed through as is.
const MAX_REQUEST_ID: usize = 200;

// Parsed once: Pingora's `remove_header` by text would parse the name on every request.
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static TRUE_CLIENT_IP: HeaderName = HeaderName::from_static("true-client-ip");

/// The scheme the client used.
pub fn scheme_of(session: &Session) -> &'static str {
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    if tls {
        "https"
    } else {
        "http"
    }
}

/// A request id worth passing on: short, and only characters that are safe everywhere.
fn is_well_formed_request_id(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID
        && value.iter().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'+' | b'/' | b'=')
        })
}

/// What the client's request already carries of the headers the proxy sets, found in one
/// walk over its headers (cheaper than a hashed lookup of each).
#[derive(Default)]
struct Carried {
    /// The first `X-Forwarded-For` value, when there is one.
    forwarded_for: Option<HeaderValue>,
    /// The first `Host` value.
    host: Option<HeaderValue>,
    /// Whether the first `X-Request-Id` is worth passing on.
    request_id_kept: bool,
    /// The proxy's own headers the client sent, to be removed (the proxy writes its own).
    real_ip: bool,
    proto: bool,
    forwarded_host: bool,
    request_id: bool,
    /// The client-address claims removed without a replacement.
    forwarded: bool,
    true_client_ip: bool,
}

impl Carried {
    fn of(req: &RequestHeader) -> Carried {
        let mut carried = Carried::default();
        for (name, value) in req.headers.iter() {
            if *name == http::header::HOST {
                carried.host.get_or_insert_with(|| value.clone());
                continue;
            }
            match name.as_str() {
                "x-forwarded-for" => {
                    carried.forwarded_for.get_or_insert_with(|| value.clone());
                }
                "x-real-ip" => carried.real_ip = true,
                "x-forwarded-proto" => carried.proto = true,
                "x-forwarded-host" => carried.forwarded_host = true,
                "x-request-id" => {
                    if !carried.request_id {
                        carried.request_id_kept = is_well_formed_request_id(value.as_bytes());
                    }
                    carried.request_id = true;
                }
                "forwarded" => carried.forwarded = true,
                "true-client-ip" => carried.true_client_ip = true,
                _ => {}
            }
        }
        carried
    }
}

/// Sets the forwarding headers on the request going upstream.
#[derive(Debug)]
pub struct Forwarding {
    forwarded_for: HeaderLineName,
    real_ip: HeaderLineName,
    proto: HeaderLineName,
    forwarded_host: HeaderLineName,
    request_id: HeaderLineName,
}

impl Default for Forwarding {
    fn default() -> Self {
        Self::new()
    }
}

impl Forwarding {
    pub fn new() -> Forwarding {
        Forwarding {
            forwarded_for: HeaderLineName::new(&X_FORWARDED_FOR),
            real_ip: HeaderLineName::new(&X_REAL_IP),
            proto: HeaderLineName::new(&X_FORWARDED_PROTO),
            forwarded_host: HeaderLineName::new(&X_FORWARDED_HOST),
            request_id: HeaderLineName::new(&X_REQUEST_ID),
        }
    }

    /// Sets the forwarding headers on `req`, the request going upstream: the client's own
    /// values of them are removed from its map, and the proxy's are written as lines after
    /// the client's headers (nothing reads them back: pingora-http patch 5).
    pub fn add(
        &self,
        req: &mut RequestHeader,
        client: Option<IpAddr>,
        scheme: &'static str,
        id: RequestId,
    ) -> pingora::Result<()> {
        let carried = Carried::of(req);
        // Written once for both headers that carry it.
        let client = client.map(AddrText::ip);
        let earlier = carried
            .forwarded_for
            .as_ref()
            .map(|v| v.as_bytes().trim_ascii())
            .filter(|v| !v.is_empty());
        let host = carried.host.clone().or_else(|| {
            req.uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        for (sent, name) in [
            (
                carried.forwarded_for.is_some() && client.is_some(),
                &X_FORWARDED_FOR,
            ),
            (carried.real_ip, &X_REAL_IP),
            (carried.proto, &X_FORWARDED_PROTO),
            (carried.forwarded_host, &X_FORWARDED_HOST),
            (
                carried.request_id && !carried.request_id_kept,
                &X_REQUEST_ID,
            ),
            (carried.forwarded, &FORWARDED),
            (carried.true_client_ip, &TRUE_CLIENT_IP),
        ] {
            if sent {
                req.remove_header(name);
            }
        }
        let lines = req.appended_lines_mut();
        if let Some(client) = &client {
            let client = client.as_str().as_bytes();
            // `$proxy_add_x_forwarded_for`: appended to what earlier proxies wrote.
            match earlier {
                None => lines.push(&self.forwarded_for, client)?,
                Some(earlier) => lines.push_with(&self.forwarded_for, |out| {
                    out.extend_from_slice(earlier);
                    out.extend_from_slice(b", ");
                    out.extend_from_slice(client);
                })?,
            }
            lines.push(&self.real_ip, client)?;
        }
        lines.push(&self.proto, scheme.as_bytes())?;
        if let Some(host) = &host {
            lines.push(&self.forwarded_host, host.as_bytes())?;
        }
        if !carried.request_id_kept {
            lines.push(&self.request_id, id.as_str().as_bytes())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).expect("request");
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).expect("header");
        }
        req
    }

    /// A header as the upstream gets it: the map's, then the lines after it.
    fn header(req: &RequestHeader, name: &str) -> Option<String> {
        let parts = req.as_owned_parts();
        let values: Vec<_> = parts.headers.get_all(name).iter().collect();
        assert!(values.len() <= 1, "{name} sent {} times", values.len());
        values
            .first()
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// X-Forwarded-For is appended to, as nginx's $proxy_add_x_forwarded_for does.
    #[test]
    fn forwarded_for_appends() {
        let id = RequestId::next();
        let mut req = request(&[("x-forwarded-for", "203.0.113.7"), ("host", "app.example")]);
        Forwarding::new()
            .add(&mut req, "127.0.0.1".parse().ok(), "http", id)
            .expect("ok");
        assert_eq!(
            header(&req, "x-forwarded-for").as_deref(),
            Some("203.0.113.7, 127.0.0.1")
        );
        assert_eq!(header(&req, "x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(
            header(&req, "x-forwarded-host").as_deref(),
            Some("app.example")
        );
        assert_eq!(header(&req, "x-request-id").as_deref(), Some(id.as_str()));
    }

    /// A client cannot pose as another address: its X-Real-IP is replaced by the peer's, its
    /// Forwarded and True-Client-IP are removed (without a peer address, X-Real-IP is removed).
    #[test]
    fn client_address_claims_are_replaced_or_removed() {
        let claims = [
            ("x-real-ip", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1;proto=https"),
            ("true-client-ip", "10.0.0.1"),
        ];
        let mut req = request(&claims);
        Forwarding::new()
            .add(
                &mut req,
                "192.0.2.9".parse().ok(),
                "http",
                RequestId::next(),
            )
            .expect("ok");
        assert_eq!(header(&req, "x-real-ip").as_deref(), Some("192.0.2.9"));
        assert_eq!(header(&req, "forwarded").as_deref(), None);
        assert_eq!(header(&req, "true-client-ip").as_deref(), None);
        let mut req = request(&claims);
        Forwarding::new()
            .add(&mut req, None, "http", RequestId::next())
            .expect("ok");
        assert_eq!(header(&req, "x-real-ip").as_deref(), None);
    }

    /// An empty or blank X-Forwarded-For is replaced by the client's address, not appended to.
    #[test]
    fn blank_forwarded_for_is_replaced() {
        for earlier in ["", "  "] {
            let mut req = request(&[("x-forwarded-for", earlier)]);
            Forwarding::new()
                .add(&mut req, "::1".parse().ok(), "https", RequestId::next())
                .expect("ok");
            assert_eq!(
                header(&req, "x-forwarded-for").as_deref(),
                Some("::1"),
                "{earlier:?}"
            );
            assert_eq!(header(&req, "x-forwarded-proto").as_deref(), Some("https"));
        }
    }

    /// A well-formed X-Request-Id passes through; a malformed one is replaced by the id.
    #[test]
    fn request_id_kept_only_when_well_formed() {
        let id = RequestId::next();
        let mut req = request(&[("x-request-id", "abc-123_XYZ")]);
        Forwarding::new()
            .add(&mut req, None, "http", id)
            .expect("ok");
        assert_eq!(header(&req, "x-request-id").as_deref(), Some("abc-123_XYZ"));
        let long = "a".repeat(300);
        for bad in ["has space", "quote\"", long.as_str()] {
            let mut req = request(&[("x-request-id", bad)]);
            Forwarding::new()
                .add(&mut req, None, "http", id)
                .expect("ok");
            assert_eq!(
                header(&req, "x-request-id").as_deref(),
                Some(id.as_str()),
                "{bad}"
            );
        }
    }

    /// On the wire the client's headers come first, without the ones the proxy sets, then
    /// the proxy's, each once; without a client address the client's X-Forwarded-For passes
    /// as it came.
    #[test]
    fn wire_is_client_headers_then_forwarding_lines() {
        let id = RequestId::next();
        let mut req = request(&[
            ("Host", "app.example"),
            ("X-Forwarded-Proto", "gopher"),
            ("Accept", "*/*"),
            ("X-Request-Id", "bad id"),
        ]);
        Forwarding::new()
            .add(&mut req, "10.1.2.3".parse().ok(), "https", id)
            .expect("ok");
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        assert_eq!(
            String::from_utf8(wire).expect("ascii"),
            format!(
                "Host: app.example\r\nAccept: */*\r\nX-Forwarded-For: 10.1.2.3\r\n\
                 X-Real-Ip: 10.1.2.3\r\nX-Forwarded-Proto: https\r\n\
                 X-Forwarded-Host: app.example\r\nX-Request-Id: {id}\r\n"
            )
        );
        let mut req = request(&[("x-forwarded-for", "203.0.113.7")]);
        Forwarding::new()
            .add(&mut req, None, "http", id)
            .expect("ok");
        assert_eq!(
            header(&req, "x-forwarded-for").as_deref(),
            Some("203.0.113.7")
        );
    }
}
