//! The HTTP health check of a FastCGI upstream (`kind = "http"`): `GET path` as a FastCGI
//! request for the script at `path` (php-fpm answers its `ping.path`, `/ping`, with `pong`),
//! passing on 2xx or 3xx as an HTTP check does.

use super::params::{self, RequestInfo};
use super::record::{self, Record, RecordReader};
use super::response::HeadReader;
use super::{files, response};
use crate::config::Fastcgi;
use crate::diagnosis::{Diagnosis, LocalFailure};
use bytes::BytesMut;
use pingora::{Error, ErrorType, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Sends `GET path` over `stream` and reads the status of the answer.
pub async fn status_of<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    cfg: &Fastcgi,
    path: &str,
) -> Result<u16> {
    let (script_path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static("triage-health-check"),
    );
    let info = RequestInfo {
        method: "GET",
        request_uri: path,
        query,
        protocol: "HTTP/1.1",
        scheme: "http",
        client: None,
        server: None,
        server_name: "localhost",
        content_length: None,
        headers: &headers,
    };
    let pairs = params::encode(&info, &files::script_of(cfg, script_path), cfg);
    let mut out = BytesMut::with_capacity(pairs.len() + 64);
    record::begin_request(&mut out);
    record::params(&mut out, &pairs);
    record::stdin(&mut out, &[], true);
    stream
        .write_all(&out)
        .await
        .map_err(|e| Error::because(ErrorType::WriteError, "sending the check", e))?;
    let mut records = RecordReader::default();
    let mut head = HeadReader::default();
    loop {
        while let Some(record) = records
            .take()
            .map_err(|m| LocalFailure::error(Diagnosis::InvalidResponse, m.reason))?
        {
            match record {
                Record::Stdout(stdout) => match head.push(&stdout) {
                    Ok(Some(head)) => return Ok(head.response.status.as_u16()),
                    Ok(None) => {}
                    Err(response::HeadError::TooLarge) => {
                        return Err(LocalFailure::error(
                            Diagnosis::ResponseHeadersTooLarge,
                            "the CGI response header is too large".to_owned(),
                        ))
                    }
                    Err(response::HeadError::Invalid(why)) => {
                        return Err(LocalFailure::error(Diagnosis::InvalidResponse, why))
                    }
                },
                Record::Stderr(_) => {}
                Record::End { status, .. } => {
                    return Err(LocalFailure::error(
                        Diagnosis::FastcgiRejected,
                        format!("FCGI_END_REQUEST ({}) before an answer", status.name()),
                    ))
                }
            }
        }
        let read = stream
            .read_buf(records.buffer(16 * 1024))
            .await
            .map_err(|e| Error::because(ErrorType::ReadError, "reading the check's answer", e))?;
        if read == 0 {
            return Error::e_explain(
                ErrorType::ConnectionClosed,
                "the FastCGI server closed the connection before answering the check",
            );
        }
    }
}
