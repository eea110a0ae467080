//! FastCGI upstreams (`protocol = "fastcgi"`): PHP-FPM and other FastCGI responders, spoken to
//! as nginx's `fastcgi_pass` does, one request per connection.
//!
//! The pieces, each without Pingora's session: [`record`] the records codec, [`params`] the
//! params of a request, [`response`] the CGI response header turned into HTTP, [`stderr`] the
//! bounded capture of the server's stderr, [`files`] the front controller and the static files
//! it serves, [`connection`] the connection to a server. `proxy::fastcgi` runs them inside the
//! proxy's hooks, so timeouts, retries, metrics, reports and causes are those of HTTP upstreams.
//!
//! The codec is triage's own, not the `fastcgi-client` crate (0.11, Apache-2.0, the maintained
//! one), because of what that crate does on the failure paths triage exists to tell apart:
//! - a connection closed before `FCGI_END_REQUEST` ends its response stream as if the response
//!   were complete (its end-of-request flag is private), so a PHP worker killed mid-response
//!   would pass as a short `200` instead of `worker_killed`;
//! - it never checks a record's version, so an HTTP server's `HTTP/1.1 400` is read as records
//!   of unknown types and the bytes that say "this is HTTP" are lost;
//! - it writes the whole request before reading any answer, with the body as an `AsyncRead`,
//!   which Pingora's session is not: a body could not be streamed from the client while the
//!   answer is read, and an early answer would wait for the upload;
//! - params are a `HashMap` of `str`: header values that are not UTF-8 cannot be sent, and the
//!   order is random; each request allocates three zeroed 64 KiB buffers.
//!
//! The protocol is small (8-byte headers, length-prefixed pairs): this codec reads records
//! without copying their content, checks every header, and is tested against a real php-fpm.

pub mod check;
pub mod connection;
pub mod files;
pub mod params;
pub mod record;
pub mod response;
pub mod stderr;

pub use stderr::Stderr;
