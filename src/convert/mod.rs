//! `triage convert nginx.conf`: an nginx configuration turned into an equivalent triage.toml,
//! with a note for each directive it cannot carry over.
//!
//! Someone moving from nginx has a working configuration, often spread over `sites-enabled/`
//! and snippets; rewriting it by hand is where routes get lost. This reads it as nginx does
//! (`lexer.rs` its tokens, `parse.rs` its directives with `include`s read in place, bounded),
//! maps what has an equivalent (`map.rs`: listeners, certificates, upstreams, routes, FastCGI
//! sites, timeouts, body size) and writes the TOML (`emit.rs`), each table with a comment
//! naming the nginx file and line it came from. What it cannot carry over is said, once per
//! directive, as `warning: FILE:LINE: DIRECTIVE: not carried over (why)`.
//!
//! The result is checked as `triage -t` would check it: a problem only this machine shows (a
//! certificate file that is not here, or not readable by this user) is one more warning, since
//! the config is usually converted on one machine for another.

mod emit;
mod lexer;
mod map;
mod parse;

pub use lexer::{tokens, SyntaxError, Token, TokenKind};
pub use map::{nginx_size, nginx_time_ms, Level, Note};
pub use parse::{
    glob, parse_file, parse_text, wildcard_match, Directive, ParseError, Place, Roots,
    MAX_BLOCK_DEPTH, MAX_FILES, MAX_FILE_BYTES, MAX_INCLUDE_DEPTH,
};

use std::path::{Path, PathBuf};

/// A converted configuration.
#[derive(Debug)]
pub struct Conversion {
    /// The triage.toml text.
    pub toml: String,
    /// What each directive became, when it needs saying: warnings first in file order, then
    /// the info notes.
    pub notes: Vec<Note>,
}

/// Converts the nginx configuration at `main` (and what it includes).
pub fn convert(main: &Path, roots: &Roots) -> Result<Conversion, ParseError> {
    let directives = parse_file(main, roots)?;
    let prefix = roots.prefix.clone().unwrap_or_else(|| {
        main.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    });
    Ok(convert_directives(&directives, &prefix, main))
}

/// Converts parsed directives; `prefix` is what relative paths are relative to.
pub fn convert_directives(directives: &[Directive], prefix: &Path, main: &Path) -> Conversion {
    let mapped = map::map(directives, prefix);
    let heading = vec![
        format!(
            "Converted from {} by `triage convert`. Check it: triage -t -c FILE",
            main.display()
        ),
        "Each table names the nginx file and line it came from; what was not carried over is"
            .to_owned(),
        "listed on stderr as `warning: FILE:LINE: ...`.".to_owned(),
    ];
    let toml = emit::document(&heading, &mapped.tables);
    let mut notes = mapped.notes;
    // A problem this machine shows, as `triage -t` would report it.
    if let Err(errors) = crate::config::parse(&toml, Path::new("/")) {
        let place = Place {
            file: std::sync::Arc::from(main),
            line: 0,
            column: 0,
        };
        for error in errors.0 {
            notes.push(Note {
                level: Level::Warning,
                at: place.clone(),
                directive: "(the converted config)".to_owned(),
                message: format!(
                    "`triage -t` on this machine says, at line {} column {} of the output: {}",
                    error.line, error.column, error.message
                ),
            });
        }
    }
    // Warnings first, each group in file order.
    notes.sort_by(|a, b| {
        (a.level == Level::Info)
            .cmp(&(b.level == Level::Info))
            .then_with(|| a.at.file.cmp(&b.at.file))
            .then_with(|| a.at.line.cmp(&b.at.line))
    });
    Conversion { toml, notes }
}

#[cfg(test)]
mod tests;
