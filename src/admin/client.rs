//! The client of the admin listener, for the commands that talk to a running triage
//! (`triage reload`, `triage deployed`): one `POST` over plain HTTP/1.1 to the address of the
//! config's `[admin] listen`, on loopback when it listens on all addresses, with what the
//! listener requires (see `access.rs`): a Host naming it (`localhost`), a request no web page
//! could send cross-site (`Content-Type: application/json` with a JSON body, else
//! `X-Triage-Admin`), and the token of `[admin] token_file` when there is one.

use super::ADMIN_HEADER;
use crate::config::Admin as AdminSettings;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A reload reads the config and may build a DNS resolver: give it time.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an answer read; the admin's answers to a POST are a few lines.
const MAX_ANSWER: u64 = 1 << 20;

/// The admin listener's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Where the client connects for an admin listener on `listen`: the address itself, or the
/// loopback address of its family when it listens on all of them (0.0.0.0, [::]).
pub fn address(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, listen.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, listen.port()).into(),
        _ => listen,
    }
}

/// Sends `POST path` with `json` as the body (or no body) to the admin listener `settings`
/// describe, and returns its answer; `Err` says why no answer came, naming the address.
pub fn post(settings: &AdminSettings, path: &str, json: Option<&str>) -> Result<Answer, String> {
    let addr = address(settings.listen);
    let authorization = settings.token.as_ref().map_or_else(String::new, |token| {
        format!("Authorization: Bearer {}\r\n", token.secret())
    });
    let (kind, body) = match json {
        Some(body) => ("Content-Type: application/json".to_owned(), body),
        None => (format!("{ADMIN_HEADER}: 1"), ""),
    };
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\n{kind}\r\n{authorization}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = || -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        stream.write_all(request.as_bytes())?;
        let mut answer = Vec::new();
        stream.take(MAX_ANSWER).read_to_end(&mut answer)?;
        Ok(answer)
    };
    let answer =
        exchange().map_err(|e| format!("cannot reach the admin listener at {addr}: {e}"))?;
    parse_answer(&answer)
        .ok_or_else(|| format!("the admin listener at {addr} did not answer in HTTP/1.1"))
}

/// The status and body of an HTTP/1.1 answer whose body ends with the connection (the admin
/// listener's answers have no Content-Length) or at its Content-Length.
fn parse_answer(answer: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()?
        .strip_prefix("HTTP/1.")?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()?;
    let length = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    let body = match length {
        Some(length) => body.get(..length).unwrap_or(body),
        None => body,
    };
    Some(Answer {
        status,
        body: body.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener on all addresses is reached on loopback; any other address as it is.
    #[test]
    fn a_wildcard_listener_is_reached_on_loopback() {
        let addr = |text: &str| address(text.parse().unwrap()).to_string();
        assert_eq!(addr("0.0.0.0:9901"), "127.0.0.1:9901");
        assert_eq!(addr("[::]:9901"), "[::1]:9901");
        assert_eq!(addr("127.0.0.1:9901"), "127.0.0.1:9901");
        assert_eq!(addr("10.0.0.5:9901"), "10.0.0.5:9901");
    }

    /// The status and body, cut at Content-Length when there is one; not HTTP is `None`.
    #[test]
    fn an_answer_is_read_to_its_end() {
        let answer =
            parse_answer(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\r\n{}\n")
                .unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (201, "{}\n"));
        assert!(answer.is_success());
        let answer = parse_answer(
            b"HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 3\r\n\r\nno\nextra",
        )
        .unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (422, "no\n"));
        assert!(!answer.is_success());
        assert_eq!(parse_answer(b"SSH-2.0-OpenSSH_9.2\r\n"), None);
        assert_eq!(parse_answer(b"HTTP/1.1 abc\r\n\r\n"), None);
    }
}
