//! triage: a reverse proxy, built on Pingora, that says why the upstream failed.
//!
//! The modules follow the data: [`config`] turns TOML into validated types; [`proxy`] holds the
//! Pingora hooks that record facts about each request; [`diagnosis`] turns those facts into one
//! closed taxonomy; [`render`] shows the diagnosis to the client; [`admin`] serves the operator;
//! [`server`] wires them into a running process.

pub mod accesslog;
pub mod admin;
pub mod client;
pub mod config;
pub mod demo;
pub mod diagnosis;
pub mod id;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod render;
pub mod report;
pub mod resolve;
pub mod rundir;
pub mod server;
pub mod shutdown;
pub mod tls;
pub(crate) mod window;
