//! Test support for triage's integration tests: each `tests/*.rs` file says `mod support;`
//! and uses what it needs.
//!
//! - [`apps`]: real app servers (node, gunicorn, a supervisor loop) as child processes that
//!   really die;
//! - [`origin`]: a fault-injecting HTTP/1.1 origin (refuse, reset, close, stall, garbage, cut
//!   bodies, slow answers, TLS with any certificate, an echo of the request headers);
//! - [`certs`]: a test CA and the certificates TLS tests need (valid, expired, wrong name,
//!   self-signed);
//! - [`dns`]: a UDP DNS server whose records a test sets and changes;
//! - [`client`]: a raw HTTP/1.1 client that shows exactly what a client of triage receives;
//! - [`triage`]: runs the built `triage` binary on free loopback ports with a test's config.
//! - [`php_fpm`]: a real php-fpm on loopback ports, with its scripts, config and workers.
//! - [`ports`]: ports picked for a child to bind, never handed to two tests at once.
//!
//! Every server here binds loopback on port 0, and every wait is bounded.
//!
//! The self-tests of this code are in `selftest.rs`, which is not a module of this one: each
//! integration test binary compiles `support` and would otherwise run them all again. A test
//! file of their own runs them once:
//! `mod support; #[path = "support/selftest.rs"] mod selftest;`

// Each integration test binary compiles this whole module but uses only part of it; the rest
// would be reported as dead code (and fail clippy's -D warnings) in every one of them.
#![allow(dead_code)]

pub mod apps;
pub mod certs;
pub mod client;
pub mod dns;
pub mod http1;
pub mod origin;
pub mod php_fpm;
pub mod ports;
pub mod triage;
