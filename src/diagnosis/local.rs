//! Failures triage decides itself, carried through Pingora as an error's cause.
//!
//! A hook that ends a request for a reason of triage's own (no server in rotation, a hostname
//! that does not resolve, a server held off after a refusal, a body over `max_body_size`) has
//! to return a `pingora::Error` for Pingora to end the attempt. The reason travels inside that
//! error as a [`LocalFailure`] cause, and [`super::classify`] reads it before anything else: no
//! Pingora error type is borrowed to mean something it does not, and no side channel carries
//! the real reason beside the error.

use super::{Diagnosis, Finding};
use pingora::{Error, ErrorSource, ErrorType};
use std::fmt;

/// A failure triage decided itself, with the detail that explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFailure(pub Finding);

impl LocalFailure {
    /// The error a hook returns for this failure. Its type names the diagnosis (Pingora only
    /// logs or matches it as text); it is never retried.
    pub fn error(diagnosis: Diagnosis, detail: String) -> Box<Error> {
        let mut error = Error::create(
            ErrorType::Custom(diagnosis.token()),
            ErrorSource::Internal,
            None,
            Some(Box::new(LocalFailure(Finding { diagnosis, detail }))),
        );
        error.set_retry(false);
        error
    }
}

impl fmt::Display for LocalFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Finding { diagnosis, detail } = &self.0;
        if detail.is_empty() {
            f.write_str(diagnosis.token())
        } else {
            write!(f, "{}: {detail}", diagnosis.token())
        }
    }
}

impl std::error::Error for LocalFailure {}
