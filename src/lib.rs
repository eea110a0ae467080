//! triage: a reverse proxy, built on Pingora, that says why the upstream failed.
//!
//! The modules follow the data: [`config`] turns TOML into validated types; [`proxy`] holds the
//! Pingora hooks that record facts about each request; [`diagnosis`] turns those facts into one
//! closed taxonomy; [`render`] shows the diagnosis to the client; [`outcome`] is the one record of a
//! finished request that metrics, the access log and reports read; [`admin`] serves the operator;
//! [`registry`] keeps what is known of each upstream server across reloads; [`fastcgi`] speaks
//! FastCGI to PHP-FPM upstreams; [`convert`] turns an nginx configuration into a triage one;
//! [`cause`] turns a
//! diagnosis and that history into the likely cause; [`server`] wires them into a running
//! process; [`allocator`] is the memory allocator the binary runs on.

pub(crate) mod accesslog;
pub mod admin;
pub mod allocator;
pub mod app_evidence;
pub mod cause;
pub mod client;
pub mod config;
pub mod convert;
pub mod demo;
pub mod deploys;
pub mod diagnosis;
pub(crate) mod export;
pub mod fastcgi;
pub mod id;
pub mod incidents;
pub mod machine;
pub mod metrics;
pub mod outcome;
pub(crate) mod proxy;
pub mod registry;
pub(crate) mod reload;
pub mod render;
pub(crate) mod report;
pub(crate) mod resolve;
pub(crate) mod rundir;
pub mod server;
pub(crate) mod shutdown;
pub(crate) mod tls;
pub(crate) mod window;
