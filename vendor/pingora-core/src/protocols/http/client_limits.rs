// triage patch (PATCHES.md 3): this whole file.

//! Limits on a server's client connections: how long a client may take to send its request head
//! and body, stay idle between requests and leave the response unread, and how large its head
//! may be. Without them (0.9.1) a client sending one header byte every few seconds, or idling on
//! a kept-alive connection, holds its connection and its buffers for ever.
//!
//! [`ClientLimits`] goes into [`HttpServerOptions`](crate::apps::HttpServerOptions); the HTTP/1
//! session enforces the head and body limits, the HTTP/2 accept loop the idle limit (with a
//! GOAWAY), and both sessions the send limit. The connections the server closes itself, with
//! nothing sent and no request for the application to see, are reported to the limits'
//! [`ClientCloseObserver`]; the request heads that fail are reported as errors
//! [`HeadFailure::of`] reads, for the application to answer.

use pingora_error::{Error, ErrorType};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The limits on a client connection.
#[derive(Clone)]
pub struct ClientLimits {
    /// How long the whole request head may take: from the start of the connection for its
    /// first request, from the first byte of a later request on a kept-alive connection. Also
    /// bounds the HTTP/2 handshake (the client's preface and SETTINGS).
    pub header_timeout: Duration,
    /// How long a read of the request body may wait for data.
    pub body_timeout: Duration,
    /// How long a kept-alive connection may wait for the first byte of its next request, and an
    /// HTTP/2 connection without a request in flight for its next one (then it gets a GOAWAY).
    pub keepalive_timeout: Duration,
    /// How long a write to the client may wait for the client to read.
    pub send_timeout: Duration,
    /// The largest HTTP/1 request head, in bytes (HTTP/2: the decoded header list).
    pub max_header_bytes: usize,
    /// Told of each connection closed for one of these limits with nothing sent.
    pub observer: Option<Arc<dyn ClientCloseObserver>>,
}

impl fmt::Debug for ClientLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientLimits")
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("keepalive_timeout", &self.keepalive_timeout)
            .field("send_timeout", &self.send_timeout)
            .field("max_header_bytes", &self.max_header_bytes)
            .finish_non_exhaustive()
    }
}

impl ClientLimits {
    pub(crate) fn report(&self, why: ClientClose) {
        if let Some(observer) = &self.observer {
            observer.closed(why);
        }
    }
}

/// Why the server closed a client connection with nothing sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientClose {
    /// Not a byte of a request head (on HTTP/2: no complete handshake) within
    /// `header_timeout` of the connection's start.
    HeaderTimeout,
    /// A kept-alive connection idle for `keepalive_timeout` (HTTP/2: after a GOAWAY).
    KeepaliveTimeout,
}

/// Is told of the connections closed for a [`ClientLimits`] limit with nothing sent, to count
/// them. Called on the connection's task: it must not block.
pub trait ClientCloseObserver: Send + Sync {
    fn closed(&self, why: ClientClose);
}

/// Why a request head could not be read, from the error `read_request` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadFailure {
    /// Not valid HTTP (400).
    Malformed,
    /// Larger than the limit (431).
    TooLarge,
    /// Part of it arrived, not all of it within `header_timeout` (408).
    TimedOut,
}

/// The error type of a request head larger than the limit.
pub const HEAD_TOO_LARGE: ErrorType = ErrorType::Custom("RequestHeadTooLarge");
/// The error type of a request head not complete within `header_timeout`.
pub const HEAD_TIMED_OUT: ErrorType = ErrorType::Custom("RequestHeadTimedout");

impl HeadFailure {
    /// The failure `error` (from `read_request`) stands for, or `None` for an error of the
    /// connection itself (a reset, a close mid-head), where nothing can be answered.
    pub fn of(error: &Error) -> Option<HeadFailure> {
        match error.etype() {
            ErrorType::InvalidHTTPHeader => Some(HeadFailure::Malformed),
            etype if *etype == HEAD_TOO_LARGE => Some(HeadFailure::TooLarge),
            etype if *etype == HEAD_TIMED_OUT => Some(HeadFailure::TimedOut),
            _ => None,
        }
    }

    /// The status Pingora answers with when the application does not answer itself.
    pub fn status(self) -> u16 {
        match self {
            HeadFailure::Malformed => 400,
            HeadFailure::TooLarge => 431,
            HeadFailure::TimedOut => 408,
        }
    }
}
