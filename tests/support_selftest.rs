//! The test harness checks itself: each fault the origin injects, the DNS server, the client.

#[path = "support/selftest.rs"]
mod selftest;
mod support;
