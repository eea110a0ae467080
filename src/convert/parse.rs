//! nginx's configuration as a tree of directives, with `include`s read in place.
//!
//! A directive is a name, its arguments, and a block when it ends in `{ ... }` instead of `;`.
//! Each keeps the file, line and column it was written at, so a warning can name it. An
//! `include` (a path or a glob) is replaced by the directives of the files it names, in the
//! sorted order nginx reads them: a relative path is looked for under the prefix (nginx's
//! configuration prefix: the main file's directory unless `--prefix` says otherwise), then
//! under the including file's directory; an absolute one under `sysroot` when one is given (a
//! copy of another machine's files). A glob that matches nothing is no error, as in nginx; a
//! path that names no file is. The few files nginx ships whose content triage builds in
//! (`fastcgi_params`, `fastcgi.conf`, `proxy_params`, `mime.types`, Debian's
//! `snippets/fastcgi-php.conf`) are not read: the `include` stays, for the mapping to say so.
//!
//! Everything is bounded: each file's size, the number of files, the depth of includes and of
//! blocks, so a cycle or a huge file is an error, never a hang.

use super::lexer::{self, Token, TokenKind};
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// The largest file read (nginx configurations are a few KiB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// The most files one conversion reads, includes included.
pub const MAX_FILES: usize = 256;
/// The deepest chain of includes.
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// The deepest nesting of blocks.
pub const MAX_BLOCK_DEPTH: usize = 32;

/// Where a directive was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: Arc<Path>,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One directive: `name args...;` or `name args... { block }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub block: Option<Vec<Directive>>,
    pub at: Place,
}

impl Directive {
    /// The directive as written, shortened: its name and arguments, for a message.
    pub fn written(&self) -> String {
        let mut text = self.name.clone();
        for arg in &self.args {
            text.push(' ');
            if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == ';') {
                text.push('"');
                text.push_str(arg);
                text.push('"');
            } else {
                text.push_str(arg);
            }
        }
        if text.len() > 120 {
            let mut end = 117;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push_str("...");
        }
        text.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    }
}

/// A configuration that cannot be read: the file, line and column (both 0 for a whole file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// Where relative and absolute include paths are read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roots {
    /// nginx's configuration prefix; default: the main file's directory.
    pub prefix: Option<PathBuf>,
    /// Absolute include paths are read under this directory (a copy of another machine's
    /// files); default: as they are.
    pub sysroot: Option<PathBuf>,
}

/// The files nginx ships whose directives triage builds in: included by name, never read.
pub const BUILT_IN_INCLUDES: [&str; 5] = [
    "fastcgi_params",
    "fastcgi.conf",
    "fastcgi-php.conf",
    "proxy_params",
    "mime.types",
];

/// Reads the main file at `path` and every file it includes.
pub fn parse_file(path: &Path, roots: &Roots) -> Result<Vec<Directive>, ParseError> {
    let prefix = roots.prefix.clone().unwrap_or_else(|| {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    });
    let mut reader = Reader {
        prefix,
        sysroot: roots.sysroot.clone(),
        files_read: 0,
        chain: Vec::new(),
    };
    reader.file(path, None)
}

/// Parses `text` as the file `name`, whose includes are read as [`parse_file`] reads them,
/// relative to `roots.prefix` (default: the current directory).
pub fn parse_text(text: &str, name: &Path, roots: &Roots) -> Result<Vec<Directive>, ParseError> {
    let mut reader = Reader {
        prefix: roots.prefix.clone().unwrap_or_else(|| PathBuf::from(".")),
        sysroot: roots.sysroot.clone(),
        files_read: 0,
        chain: vec![name.to_path_buf()],
    };
    let file: Arc<Path> = Arc::from(name);
    reader.text(text, &file)
}

struct Reader {
    prefix: PathBuf,
    sysroot: Option<PathBuf>,
    files_read: usize,
    /// The files being read, outermost first: an include of one of them is a cycle.
    chain: Vec<PathBuf>,
}

impl Reader {
    fn file(&mut self, path: &Path, from: Option<&Place>) -> Result<Vec<Directive>, ParseError> {
        let error = |message: String| match from {
            Some(at) => ParseError {
                file: at.file.to_path_buf(),
                line: at.line,
                column: at.column,
                message,
            },
            None => ParseError {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                message,
            },
        };
        if self.files_read >= MAX_FILES {
            return Err(error(format!(
                "more than {MAX_FILES} files included; not reading {}",
                path.display()
            )));
        }
        if self.chain.len() > MAX_INCLUDE_DEPTH {
            return Err(error(format!(
                "includes nested deeper than {MAX_INCLUDE_DEPTH}; not reading {}",
                path.display()
            )));
        }
        let identity = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if self.chain.contains(&identity) {
            return Err(error(format!(
                "include cycle: {} includes itself (through {})",
                path.display(),
                self.chain
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" -> ")
            )));
        }
        self.files_read += 1;
        let bytes = crate::config::read_file(path, MAX_FILE_BYTES).map_err(error)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| error(format!("{} is not UTF-8 text", path.display())))?;
        self.chain.push(identity);
        let file: Arc<Path> = Arc::from(path);
        let directives = self.text(&text, &file);
        self.chain.pop();
        directives
    }

    fn text(&mut self, text: &str, file: &Arc<Path>) -> Result<Vec<Directive>, ParseError> {
        let tokens = lexer::tokens(text).map_err(|e| ParseError {
            file: file.to_path_buf(),
            line: e.line,
            column: e.column,
            message: e.message,
        })?;
        let mut at = 0;
        let directives = self.block(&tokens, &mut at, file, 0)?;
        if let Some(token) = tokens.get(at) {
            return Err(ParseError {
                file: file.to_path_buf(),
                line: token.line,
                column: token.column,
                message: "unexpected `}`".to_owned(),
            });
        }
        Ok(directives)
    }

    /// Reads directives up to the `}` that closes the block (left unread) or the end of the
    /// tokens.
    fn block(
        &mut self,
        tokens: &[Token],
        at: &mut usize,
        file: &Arc<Path>,
        depth: usize,
    ) -> Result<Vec<Directive>, ParseError> {
        let error = |token: &Token, message: String| ParseError {
            file: file.to_path_buf(),
            line: token.line,
            column: token.column,
            message,
        };
        let mut directives = Vec::new();
        while let Some(first) = tokens.get(*at) {
            let name = match &first.kind {
                TokenKind::CloseBrace => return Ok(directives),
                TokenKind::Semicolon => return Err(error(first, "unexpected `;`".to_owned())),
                TokenKind::OpenBrace => return Err(error(first, "unexpected `{`".to_owned())),
                TokenKind::Word { text, .. } => text.clone(),
            };
            *at += 1;
            let place = Place {
                file: file.clone(),
                line: first.line,
                column: first.column,
            };
            let mut args = Vec::new();
            let block = loop {
                let Some(token) = tokens.get(*at) else {
                    return Err(ParseError {
                        file: file.to_path_buf(),
                        line: place.line,
                        column: place.column,
                        message: format!(
                            "unexpected end of file: `{name}` ends with neither `;` nor `{{`"
                        ),
                    });
                };
                *at += 1;
                match &token.kind {
                    TokenKind::Word { text, .. } => args.push(text.clone()),
                    TokenKind::Semicolon => break None,
                    TokenKind::CloseBrace => {
                        return Err(error(
                            token,
                            format!("unexpected `}}`: `{name}` is not ended by `;`"),
                        ))
                    }
                    TokenKind::OpenBrace => {
                        if depth + 1 > MAX_BLOCK_DEPTH {
                            return Err(error(
                                token,
                                format!("blocks nested deeper than {MAX_BLOCK_DEPTH}"),
                            ));
                        }
                        let inner = self.block(tokens, at, file, depth + 1)?;
                        match tokens.get(*at) {
                            Some(Token {
                                kind: TokenKind::CloseBrace,
                                ..
                            }) => *at += 1,
                            _ => {
                                return Err(ParseError {
                                    file: file.to_path_buf(),
                                    line: token.line,
                                    column: token.column,
                                    message: format!(
                                        "unexpected end of file: the block of `{name}` opened here is not closed"
                                    ),
                                })
                            }
                        }
                        break Some(inner);
                    }
                }
            };
            let directive = Directive {
                name,
                args,
                block,
                at: place,
            };
            if directive.name == "include" && directive.block.is_none() {
                directives.extend(self.include(directive)?);
            } else {
                directives.push(directive);
            }
        }
        Ok(directives)
    }

    /// The directives of the files an `include` names, or the `include` itself for a file
    /// whose content triage builds in.
    fn include(&mut self, include: Directive) -> Result<Vec<Directive>, ParseError> {
        let error = |message: String| ParseError {
            file: include.at.file.to_path_buf(),
            line: include.at.line,
            column: include.at.column,
            message,
        };
        let [pattern] = include.args.as_slice() else {
            return Err(error("include takes exactly one path".to_owned()));
        };
        let file_name = Path::new(pattern)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        if BUILT_IN_INCLUDES.contains(&file_name) {
            return Ok(vec![include]);
        }
        let candidates = self.include_paths(pattern, &include.at);
        let has_glob = pattern.contains(['*', '?', '[']);
        let mut directives = Vec::new();
        for base in &candidates {
            let files = if has_glob {
                glob(base, MAX_FILES).map_err(|m| error(format!("include {pattern}: {m}")))?
            } else if base.is_file() {
                vec![base.clone()]
            } else {
                continue;
            };
            if files.is_empty() {
                continue;
            }
            for path in files {
                directives.extend(self.file(&path, Some(&include.at))?);
            }
            return Ok(directives);
        }
        if has_glob {
            return Ok(directives);
        }
        let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        Err(error(format!(
            "include {pattern}: no such file (looked for {})",
            looked.join(" and ")
        )))
    }

    /// Where an include's path may be: under the prefix, then the including file's
    /// directory, for a relative one; under the sysroot, for an absolute one.
    fn include_paths(&self, pattern: &str, from: &Place) -> Vec<PathBuf> {
        let path = Path::new(pattern);
        if path.is_absolute() {
            return match &self.sysroot {
                Some(root) => vec![root.join(path.strip_prefix("/").unwrap_or(path))],
                None => vec![path.to_path_buf()],
            };
        }
        let mut paths = vec![self.prefix.join(path)];
        if let Some(dir) = from.file.parent() {
            let beside = dir.join(path);
            if !paths.contains(&beside) {
                paths.push(beside);
            }
        }
        paths
    }
}

/// The files matching `pattern` (`*`, `?` and `[...]` in any of its components), sorted, at
/// most `max`. Names starting with `.` match only a pattern starting with `.`, as glob(3).
pub fn glob(pattern: &Path, max: usize) -> Result<Vec<PathBuf>, String> {
    let mut found = vec![PathBuf::new()];
    for component in pattern.components() {
        let part = match component {
            Component::Normal(part) => part.to_string_lossy().into_owned(),
            other => {
                for path in &mut found {
                    path.push(other.as_os_str());
                }
                continue;
            }
        };
        if !part.contains(['*', '?', '[']) {
            for path in &mut found {
                path.push(&part);
            }
            continue;
        }
        let mut next = Vec::new();
        for dir in &found {
            let listing = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir.as_path()
            };
            let Ok(entries) = std::fs::read_dir(listing) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| wildcard_match(&part, name))
                .collect();
            names.sort();
            for name in names {
                if next.len() >= max {
                    return Err(format!("matches more than {max} paths"));
                }
                next.push(dir.join(name));
            }
        }
        found = next;
    }
    Ok(found.into_iter().filter(|p| p.is_file()).collect())
}

/// Whether `name` matches the glob `pattern` (`*`, `?`, `[abc]`, `[a-z]`, `[!a]`).
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    matches_from(&pattern, &name)
}

fn matches_from(pattern: &[char], name: &[char]) -> bool {
    // Iterative with one backtrack point for `*`: linear in practice, never exponential.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some('?') => Some(p + 1),
            Some('[') => class(pattern, p, name[n]),
            Some(&c) if c == name[n] => Some(p + 1),
            _ => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                n += 1;
            }
            (None, Some((star_p, star_n))) => {
                p = star_p + 1;
                n = star_n + 1;
                star = Some((star_p, star_n + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `pattern[open]` (`[`): the index after its `]`
/// when it matches. An unclosed `[` is an ordinary character.
fn class(pattern: &[char], open: usize, c: char) -> Option<usize> {
    let mut i = open + 1;
    let negated = matches!(pattern.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let start = i;
    let mut matched = false;
    while let Some(&item) = pattern.get(i) {
        if item == ']' && i > start {
            return (matched != negated).then_some(i + 1);
        }
        if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|&e| e != ']') {
            let end = pattern[i + 2];
            matched |= item <= c && c <= end;
            i += 3;
        } else {
            matched |= item == c;
            i += 1;
        }
    }
    (c == '[').then_some(open + 1)
}
