//! Configuration: the TOML file an operator writes, checked and turned into the typed values the
//! proxy runs on.
//!
//! A broken config should cost one edit, not one restart per mistake, so every problem in a file
//! is reported together, in file order, each with the 1-based line and column of the offending
//! key or value (or of the table header, for a missing key). The document is parsed with
//! `toml_edit`, which keeps byte spans, and read by hand through `table::Table`, which records
//! errors instead of stopping and knows a key because a reader asked for it. A TOML syntax error
//! is reported alone, since nothing after it can be read reliably. Nothing here panics on input.
//!
//! Every value is bounded where it is parsed, so every key gets the bounds of its kind: each
//! string value is at most [`MAX_STRING`] bytes without control characters (checked by
//! `table::Table` before any parser sees it), each duration lies within the range of its kind
//! ([`TIMEOUT`], [`WAIT`], [`INTERVAL`]), each integer within the range its reader gives, and
//! each file is a regular file of at most [`MAX_FILE_SIZE`] bytes, read with a bounded read.
//!
//! The files: `boot.rs` and `live.rs` hold the types, with their defaults; `read.rs` the
//! readers, one per table; `values.rs` (with `addr.rs`, `cidr.rs`, `duration.rs`) the value
//! parsers; `files.rs` reads the CA, certificate and admin token files a config names, once,
//! bounded;
//! `table.rs` is the reader API; `tests.rs` the tests.

mod addr;
mod boot;
mod cidr;
mod duration;
mod files;
mod live;
mod read;
mod table;
mod values;

pub use addr::{PeerAddr, ServerAddr, UnixPath};
pub use boot::{
    Admin, AdminToken, BootConfig, Certificate, ClientSettings, Listen, Log, LogFormat, LogLevel,
    ReportExport, Reports, ServerSettings, DEFAULT_RUNTIME_DIR, MAX_SHUTDOWN_TIMEOUT,
};
pub use cidr::Cidr;
pub use duration::{parse_duration, DurationBounds, INTERVAL, TIMEOUT, WAIT};
pub use files::{read_file, MAX_CONFIG_SIZE, MAX_FILE_SIZE};
pub use live::{
    AppEvidence, CaFile, DetailPolicy, DiagnosisPolicy, Fastcgi, HealthCheck, HealthCheckKind,
    LiveConfig, Resolver, Route, RouteTimeouts, Upstream,
};
pub use values::MAX_STRING;

use std::fmt;
use std::path::Path;
use table::{Errors, Table};

/// One problem in a config file. `line` and `column` are 1-based; both are 0 when the file could
/// not be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Every problem found in a config file, sorted by position. Displays one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A checked config file, split by when it takes effect: `boot` is fixed when the process
/// starts, `live` is replaced by each reload. Code on the reload path takes only the live part,
/// so it cannot act on a boot-only setting the running process cannot change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub boot: BootConfig,
    pub live: LiveConfig,
}

/// Reads and parses the config file at `path`; relative file paths resolve against its directory.
/// The file must be a regular file of at most [`MAX_CONFIG_SIZE`] bytes.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let whole_file = |message| {
        ConfigErrors(vec![ConfigError {
            line: 0,
            column: 0,
            message,
        }])
    };
    let bytes = files::read_file(path, MAX_CONFIG_SIZE).map_err(whole_file)?;
    let text = String::from_utf8(bytes).map_err(|error| {
        whole_file(format!(
            "cannot read {}: not UTF-8 text ({error})",
            path.display()
        ))
    })?;
    parse(&text, path.parent().unwrap_or(Path::new("")))
}

/// Parses and checks config text. `origin` is the directory relative `ca_file`, `cert_file` and
/// `key_file` paths resolve against (the config file's directory); the files themselves are read
/// and parsed here, once.
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigErrors> {
    let document = toml_edit::ImDocument::parse(text).map_err(|error| {
        let (line, column) = table::line_column(text, error.span().map_or(0, |span| span.start));
        let message = error.message().trim().replace('\n', "; ");
        ConfigErrors(vec![ConfigError {
            line,
            column,
            message: format!("invalid TOML: {message}"),
        }])
    })?;
    let errors = Errors::new(text);
    let config = read::config(Table::top(document.as_table(), &errors), origin);
    errors.finish(config)
}

#[cfg(test)]
mod tests;
