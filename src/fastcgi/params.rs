//! The FastCGI params of a request: what PHP reads into `$_SERVER`. The set nginx's
//! `fastcgi_params` file sends, plus `SCRIPT_FILENAME` and `PATH_INFO` (what every PHP
//! `location` adds), `HTTPS` and `REQUEST_SCHEME`, and each request header as `HTTP_*`; then the
//! upstream's own `params`, each replacing the param of its name.
//!
//! Request headers whose name has an `_` are not sent, as nginx does not (its
//! `underscores_in_headers off`): `X_Forwarded_For` and `X-Forwarded-For` would both become
//! `HTTP_X_FORWARDED_FOR`, and a client could set the one a proxy's filter does not know. A
//! `Proxy` header is never sent either (httpoxy: `HTTP_PROXY` is where HTTP clients in PHP look
//! for a proxy), nor the hop-by-hop headers.

use super::record::put_pair;
use crate::config::Fastcgi;
use http::HeaderMap;
use std::net::SocketAddr;

/// What `SERVER_SOFTWARE` says.
const SOFTWARE: &str = concat!("triage/", env!("CARGO_PKG_VERSION"));

/// Request headers never sent as `HTTP_*`: hop-by-hop ones, `Proxy` (httpoxy), and the two
/// that travel as `CONTENT_TYPE` and `CONTENT_LENGTH`.
const NOT_SENT: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy",
    "content-type",
    "content-length",
];

/// The request, as the params describe it.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub method: &'a str,
    /// The request target as the app gets it: path and query.
    pub request_uri: &'a str,
    pub query: &'a str,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub protocol: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    pub client: Option<SocketAddr>,
    /// The address the client connected to.
    pub server: Option<SocketAddr>,
    /// The host the request is for, without its port.
    pub server_name: &'a str,
    /// The body's length: absent without a body.
    pub content_length: Option<u64>,
    /// The headers the app gets (the client's, with the forwarding headers set).
    pub headers: &'a HeaderMap,
}

/// The script a request runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// `SCRIPT_NAME`: the script's path under the root, `/index.php`.
    pub name: String,
    /// `PATH_INFO`: what follows the script in the path (`/index.php/a/b` gives `/a/b`).
    pub path_info: String,
}

/// `SCRIPT_FILENAME`: the root, then the script's path.
pub fn script_filename(cfg: &Fastcgi, script: &Script) -> String {
    let mut filename = String::with_capacity(cfg.root.len() + script.name.len());
    filename.push_str(&cfg.root);
    filename.push_str(&script.name);
    filename
}

/// The params of `req` running `script`, encoded as FastCGI name-value pairs.
pub fn encode(req: &RequestInfo<'_>, script: &Script, cfg: &Fastcgi) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024 + req.request_uri.len());
    let mut put = |name: &str, value: &[u8]| {
        // The upstream's own params replace triage's of the same name.
        if !cfg.params.iter().any(|(own, _)| own == name) {
            put_pair(&mut out, name.as_bytes(), value);
        }
    };
    let filename = script_filename(cfg, script);
    let mut document_uri = String::with_capacity(script.name.len() + script.path_info.len());
    document_uri.push_str(&script.name);
    document_uri.push_str(&script.path_info);
    put("SCRIPT_FILENAME", filename.as_bytes());
    put("SCRIPT_NAME", script.name.as_bytes());
    put("PATH_INFO", script.path_info.as_bytes());
    put("QUERY_STRING", req.query.as_bytes());
    put("REQUEST_METHOD", req.method.as_bytes());
    let content_type = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .map_or(&b""[..], |v| v.as_bytes());
    put("CONTENT_TYPE", content_type);
    let length = req
        .content_length
        .map(|n| n.to_string())
        .unwrap_or_default();
    put("CONTENT_LENGTH", length.as_bytes());
    put("REQUEST_URI", req.request_uri.as_bytes());
    put("DOCUMENT_URI", document_uri.as_bytes());
    put("DOCUMENT_ROOT", cfg.root.as_bytes());
    put("SERVER_PROTOCOL", req.protocol.as_bytes());
    put("REQUEST_SCHEME", req.scheme.as_bytes());
    if req.scheme == "https" {
        put("HTTPS", b"on");
    }
    put("GATEWAY_INTERFACE", b"CGI/1.1");
    put("SERVER_SOFTWARE", SOFTWARE.as_bytes());
    if let Some(client) = req.client {
        put(
            "REMOTE_ADDR",
            client.ip().to_canonical().to_string().as_bytes(),
        );
        put("REMOTE_PORT", client.port().to_string().as_bytes());
    }
    if let Some(server) = req.server {
        put(
            "SERVER_ADDR",
            server.ip().to_canonical().to_string().as_bytes(),
        );
        put("SERVER_PORT", server.port().to_string().as_bytes());
    }
    put("SERVER_NAME", req.server_name.as_bytes());
    // php-cgi refuses to run without it (cgi.force_redirect); nginx sends it too.
    put("REDIRECT_STATUS", b"200");
    let mut name = String::with_capacity(64);
    let mut joined = Vec::new();
    for header in req.headers.keys() {
        let lower = header.as_str();
        if lower.contains('_') || NOT_SENT.contains(&lower) {
            continue;
        }
        name.clear();
        name.push_str("HTTP_");
        name.extend(lower.chars().map(|c| match c {
            '-' => '_',
            c => c.to_ascii_uppercase(),
        }));
        // A header sent several times is one param, its values joined as nginx joins them.
        let separator: &[u8] = if header == http::header::COOKIE {
            b"; "
        } else {
            b", "
        };
        joined.clear();
        for (i, value) in req.headers.get_all(header).iter().enumerate() {
            if i > 0 {
                joined.extend_from_slice(separator);
            }
            joined.extend_from_slice(value.as_bytes());
        }
        put(&name, &joined);
    }
    for (own, value) in &cfg.params {
        put_pair(&mut out, own.as_bytes(), value.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name-value pair of `encoded`, in order.
    fn pairs(mut encoded: &[u8]) -> Vec<(String, String)> {
        fn length(bytes: &mut &[u8]) -> usize {
            if bytes[0] < 128 {
                let n = usize::from(bytes[0]);
                *bytes = &bytes[1..];
                n
            } else {
                let n = u32::from_be_bytes([bytes[0] & 0x7f, bytes[1], bytes[2], bytes[3]]);
                *bytes = &bytes[4..];
                n as usize
            }
        }
        let mut out = Vec::new();
        while !encoded.is_empty() {
            let name_len = length(&mut encoded);
            let value_len = length(&mut encoded);
            let name = String::from_utf8_lossy(&encoded[..name_len]).into_owned();
            let value = String::from_utf8_lossy(&encoded[name_len..name_len + value_len]);
            out.push((name, value.into_owned()));
            encoded = &encoded[name_len + value_len..];
        }
        out
    }

    fn cfg(params: &[(&str, &str)]) -> Fastcgi {
        Fastcgi {
            root: "/srv/app/public".to_owned(),
            index: "index.php".to_owned(),
            params: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            front_controller: false,
            local_root: None,
        }
    }

    /// The params PHP and frameworks read are there with the request's values; headers become
    /// HTTP_*, joined when repeated, except those with `_`, Proxy and the hop-by-hop ones; the
    /// upstream's params replace triage's.
    #[test]
    fn params_php_reads() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "shop.example:8080".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.append("x-forwarded-for", "10.0.0.1".parse().unwrap());
        headers.append("x-forwarded-for", "127.0.0.1".parse().unwrap());
        headers.append("cookie", "a=1".parse().unwrap());
        headers.append("cookie", "b=2".parse().unwrap());
        headers.insert("x_forwarded_for", "6.6.6.6".parse().unwrap());
        headers.insert("proxy", "http://evil".parse().unwrap());
        headers.insert("connection", "keep-alive".parse().unwrap());
        let req = RequestInfo {
            method: "POST",
            request_uri: "/cart/add?id=3",
            query: "id=3",
            protocol: "HTTP/1.1",
            scheme: "https",
            client: Some("[::ffff:127.0.0.1]:50000".parse().unwrap()),
            server: Some("127.0.0.1:8080".parse().unwrap()),
            server_name: "shop.example",
            content_length: Some(12),
            headers: &headers,
        };
        let script = Script {
            name: "/index.php".to_owned(),
            path_info: String::new(),
        };
        let got = pairs(&encode(
            &req,
            &script,
            &cfg(&[("APP_ENV", "prod"), ("SERVER_NAME", "shop")]),
        ));
        let get = |name: &str| {
            let found: Vec<&str> = got
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            assert!(found.len() <= 1, "{name} sent twice");
            found.first().map(|v| v.to_string())
        };
        for (name, value) in [
            ("SCRIPT_FILENAME", "/srv/app/public/index.php"),
            ("SCRIPT_NAME", "/index.php"),
            ("PATH_INFO", ""),
            ("REQUEST_URI", "/cart/add?id=3"),
            ("QUERY_STRING", "id=3"),
            ("REQUEST_METHOD", "POST"),
            ("CONTENT_TYPE", "application/json"),
            ("CONTENT_LENGTH", "12"),
            ("DOCUMENT_ROOT", "/srv/app/public"),
            ("DOCUMENT_URI", "/index.php"),
            ("HTTPS", "on"),
            ("REQUEST_SCHEME", "https"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("REMOTE_PORT", "50000"),
            ("SERVER_PORT", "8080"),
            ("SERVER_NAME", "shop"),
            ("HTTP_HOST", "shop.example:8080"),
            ("HTTP_X_FORWARDED_FOR", "10.0.0.1, 127.0.0.1"),
            ("HTTP_COOKIE", "a=1; b=2"),
            ("APP_ENV", "prod"),
            ("REDIRECT_STATUS", "200"),
        ] {
            assert_eq!(get(name).as_deref(), Some(value), "{name}");
        }
        for absent in ["HTTP_PROXY", "HTTP_CONNECTION", "HTTP_CONTENT_TYPE"] {
            assert_eq!(get(absent), None, "{absent}");
        }
        let xff: Vec<_> = got
            .iter()
            .filter(|(n, _)| n == "HTTP_X_FORWARDED_FOR")
            .collect();
        assert_eq!(xff.len(), 1, "the underscore header never reaches the app");
    }
}
