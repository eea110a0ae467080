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
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use std::net::IpAddr;

/// The longest `X-Request-Id` passed through as is.
const MAX_REQUEST_ID: usize = 200;

// Parsed once: Pingora's `insert_header` would parse and copy a name on every request.
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

/// `X-Forwarded-For`: the client's address (`client`, as text and as the value `X-Real-IP`
/// gets) appended to what earlier proxies wrote, if any.
fn forwarded_for(
    earlier: Option<&HeaderValue>,
    client: &AddrText,
    client_value: &HeaderValue,
) -> Option<HeaderValue> {
    let earlier = earlier
        .map(|v| v.as_bytes().trim_ascii())
        .filter(|v| !v.is_empty());
    match earlier {
        // The same bytes as X-Real-IP's: shared, not copied again.
        None => Some(client_value.clone()),
        Some(earlier) => {
            let mut value = Vec::with_capacity(earlier.len() + 2 + client.as_str().len());
            value.extend_from_slice(earlier);
            value.extend_from_slice(b", ");
            value.extend_from_slice(client.as_str().as_bytes());
            HeaderValue::from_maybe_shared(bytes::Bytes::from(value)).ok()
        }
    }
}

/// Sets the forwarding headers on the request going upstream.
pub fn add_forwarding_headers(
    req: &mut RequestHeader,
    client: Option<IpAddr>,
    scheme: &'static str,
    id: RequestId,
) -> pingora::Result<()> {
    // The request going upstream is a clone of the client's, with no spare room in its maps:
    // room for all five at once instead of growing on the first.
    req.reserve(5)?;
    // Written once for both headers that carry it.
    let client = client
        .map(AddrText::ip)
        .and_then(|ip| Some((HeaderValue::from_str(ip.as_str()).ok()?, ip)));
    match client {
        Some((value, ip)) => {
            if let Some(forwarded) = forwarded_for(req.headers.get(&X_FORWARDED_FOR), &ip, &value) {
                req.insert_static_header(&X_FORWARDED_FOR, forwarded)?;
            }
            req.insert_static_header(&X_REAL_IP, value)?;
        }
        None => {
            req.remove_header(&X_REAL_IP);
        }
    }
    for claimed in [&FORWARDED, &TRUE_CLIENT_IP] {
        if req.headers.contains_key(claimed) {
            req.remove_header(claimed);
        }
    }
    req.insert_static_header(&X_FORWARDED_PROTO, HeaderValue::from_static(scheme))?;
    let host = req.headers.get(http::header::HOST).cloned().or_else(|| {
        req.uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if let Some(host) = host {
        req.insert_static_header(&X_FORWARDED_HOST, host)?;
    }
    let keep_id = req
        .headers
        .get(&X_REQUEST_ID)
        .is_some_and(|v| is_well_formed_request_id(v.as_bytes()));
    if !keep_id {
        req.insert_static_header(&X_REQUEST_ID, id.header_value())?;
    }
    Ok(())
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

    fn header<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
        req.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// X-Forwarded-For is appended to, as nginx's $proxy_add_x_forwarded_for does.
    #[test]
    fn forwarded_for_appends() {
        let id = RequestId::next();
        let mut req = request(&[("x-forwarded-for", "203.0.113.7"), ("host", "app.example")]);
        add_forwarding_headers(&mut req, "127.0.0.1".parse().ok(), "http", id).expect("ok");
        assert_eq!(
            header(&req, "x-forwarded-for"),
            Some("203.0.113.7, 127.0.0.1")
        );
        assert_eq!(header(&req, "x-forwarded-proto"), Some("http"));
        assert_eq!(header(&req, "x-forwarded-host"), Some("app.example"));
        assert_eq!(header(&req, "x-request-id"), Some(id.as_str()));
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
        add_forwarding_headers(
            &mut req,
            "192.0.2.9".parse().ok(),
            "http",
            RequestId::next(),
        )
        .expect("ok");
        assert_eq!(header(&req, "x-real-ip"), Some("192.0.2.9"));
        assert_eq!(header(&req, "forwarded"), None);
        assert_eq!(header(&req, "true-client-ip"), None);
        let mut req = request(&claims);
        add_forwarding_headers(&mut req, None, "http", RequestId::next()).expect("ok");
        assert_eq!(header(&req, "x-real-ip"), None);
    }

    /// An empty or blank X-Forwarded-For is replaced by the client's address, not appended to.
    #[test]
    fn blank_forwarded_for_is_replaced() {
        for earlier in ["", "  "] {
            let mut req = request(&[("x-forwarded-for", earlier)]);
            add_forwarding_headers(&mut req, "::1".parse().ok(), "https", RequestId::next())
                .expect("ok");
            assert_eq!(header(&req, "x-forwarded-for"), Some("::1"), "{earlier:?}");
            assert_eq!(header(&req, "x-forwarded-proto"), Some("https"));
        }
    }

    /// A well-formed X-Request-Id passes through; a malformed one is replaced by the id.
    #[test]
    fn request_id_kept_only_when_well_formed() {
        let id = RequestId::next();
        let mut req = request(&[("x-request-id", "abc-123_XYZ")]);
        add_forwarding_headers(&mut req, None, "http", id).expect("ok");
        assert_eq!(header(&req, "x-request-id"), Some("abc-123_XYZ"));
        let long = "a".repeat(300);
        for bad in ["has space", "quote\"", long.as_str()] {
            let mut req = request(&[("x-request-id", bad)]);
            add_forwarding_headers(&mut req, None, "http", id).expect("ok");
            assert_eq!(header(&req, "x-request-id"), Some(id.as_str()), "{bad}");
        }
    }
}
