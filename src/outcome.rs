//! One finished request, as every record of it reads it: the metrics, the access log and the
//! failure report are all written from one [`Outcome`], so they cannot disagree about what
//! happened.

use crate::cause::CauseFinding;
use crate::config::PeerAddr;
use crate::diagnosis::{Diagnosis, Finding, Source};
use crate::id::RequestId;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// Timings of one request, as far as it got.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// TCP (and TLS) connect to the upstream; absent when the connection was reused or never made.
    pub connect: Option<Duration>,
    /// From sending the request to receiving the upstream's response headers.
    pub response: Option<Duration>,
    /// From receiving the request to now.
    pub total: Duration,
}

/// A finished request: what it asked, where it went, and how it ended.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    pub id: RequestId,
    pub time: SystemTime,
    pub client: Option<IpAddr>,
    /// "-" when the request could not be parsed.
    pub method: &'a str,
    /// The path without its query, path parameters redacted.
    pub path: &'a str,
    pub version: &'a str,
    pub host: &'a str,
    /// Redacted to where it points.
    pub referer: &'a str,
    pub user_agent: &'a str,
    /// The route's index and metric label, when one matched.
    pub route: Option<usize>,
    pub route_label: &'a str,
    /// The upstream's index and config name, when one was chosen.
    pub upstream: Option<usize>,
    pub upstream_name: &'a str,
    /// The address of the last attempt.
    pub address: Option<&'a PeerAddr>,
    /// The status the client got (0 when it got none and none is logged).
    pub status: u16,
    pub finding: Option<&'a Finding>,
    pub cause: Option<&'a CauseFinding>,
    /// Upstream attempts made.
    pub attempts: u32,
    /// Whether the last attempt reused a pooled connection.
    pub reused: bool,
    pub timings: Timings,
    /// Body bytes sent to the client.
    pub bytes_sent: usize,
}

impl Outcome<'_> {
    pub fn diagnosis(&self) -> Option<Diagnosis> {
        self.finding.map(|f| f.diagnosis)
    }

    /// Who made the status the client saw.
    pub fn source(&self) -> Source {
        self.diagnosis().map_or(Source::Upstream, |d| d.source())
    }

    /// Whether this is a failure worth an error line: any diagnosis but a client that left.
    pub fn is_failure(&self) -> bool {
        self.diagnosis()
            .is_some_and(|d| d != Diagnosis::ClientClosed)
    }

    /// The detail of the diagnosis, or "".
    pub fn detail(&self) -> &str {
        self.finding.map_or("", |f| f.detail.as_str())
    }
}
