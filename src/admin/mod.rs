//! The admin listener: health and readiness for orchestrators, on its own port (loopback by
//! default), never on the public one.

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

/// Serves the admin endpoints.
pub struct Admin;

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        let (status, body): (StatusCode, &[u8]) = match path {
            // The process answers: it is alive.
            "/healthz" => (StatusCode::OK, b"ok\n"),
            // This listener starts only after the config loaded and the proxy listeners were
            // added, so answering at all means ready.
            "/readyz" => (StatusCode::OK, b"ready\n"),
            _ => (StatusCode::NOT_FOUND, b"not found\n"),
        };
        plain(status, body.to_vec())
    }
}

fn plain(status: StatusCode, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
