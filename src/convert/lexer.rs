//! nginx's configuration syntax as tokens: words (bare or quoted), `;`, `{` and `}`, each with
//! the line and column it starts at.
//!
//! The rules are nginx's own (`ngx_conf_read_token`): whitespace separates words; `#` at the
//! start of a word comments out the rest of the line; `"..."` and `'...'` quote a word, which
//! may then hold spaces, `;`, `{`, `}` and `#`; a backslash makes the next character ordinary,
//! and `\"`, `\'`, `\\`, `\t`, `\r`, `\n` become that character (any other pair is kept whole,
//! so a regex's `\.` stays `\.`); `${name}` is a variable whose braces open no block. Variables
//! are left as text: nothing here evaluates them.

use std::fmt;

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// A word: a directive's name or argument, with quotes and escapes resolved.
    Word {
        text: String,
        quoted: bool,
    },
    Semicolon,
    OpenBrace,
    CloseBrace,
}

/// A token and where it starts (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub line: usize,
    pub column: usize,
}

/// A syntax error at a line and column (1-based) of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// The longest word: far beyond any path, regex or header value a configuration holds; a longer
/// one is a file that is not an nginx configuration.
pub const MAX_WORD: usize = 64 * 1024;

/// The most tokens one file may hold (a file of at most 1 MiB holds fewer).
pub const MAX_TOKENS: usize = 1 << 20;

/// Splits `text` into tokens.
pub fn tokens(text: &str) -> Result<Vec<Token>, SyntaxError> {
    let mut lexer = Lexer {
        chars: text.chars().collect(),
        at: 0,
        line: 1,
        column: 1,
    };
    let mut tokens = Vec::new();
    while let Some(token) = lexer.next_token()? {
        if tokens.len() >= MAX_TOKENS {
            return Err(SyntaxError {
                line: token.line,
                column: token.column,
                message: format!("more than {MAX_TOKENS} tokens in one file"),
            });
        }
        tokens.push(token);
    }
    Ok(tokens)
}

struct Lexer {
    chars: Vec<char>,
    at: usize,
    line: usize,
    column: usize,
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.at).copied()?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn error(&self, line: usize, column: usize, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            line,
            column,
            message: message.into(),
        }
    }

    fn next_token(&mut self) -> Result<Option<Token>, SyntaxError> {
        loop {
            match self.peek() {
                None => return Ok(None),
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('#') => {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                Some(_) => break,
            }
        }
        let (line, column) = (self.line, self.column);
        let simple = |kind| Token { kind, line, column };
        let kind = match self.peek() {
            Some(';') => Some(TokenKind::Semicolon),
            Some('{') => Some(TokenKind::OpenBrace),
            Some('}') => Some(TokenKind::CloseBrace),
            _ => None,
        };
        if let Some(kind) = kind {
            self.bump();
            return Ok(Some(simple(kind)));
        }
        let kind = match self.peek() {
            Some(quote @ ('"' | '\'')) => {
                self.bump();
                self.quoted(quote, line, column)?
            }
            _ => self.bare(line, column)?,
        };
        Ok(Some(simple(kind)))
    }

    /// Appends `c`, refusing a word longer than [`MAX_WORD`].
    fn push(
        &self,
        word: &mut String,
        c: char,
        line: usize,
        column: usize,
    ) -> Result<(), SyntaxError> {
        if word.len() >= MAX_WORD {
            return Err(self.error(line, column, format!("a word longer than {MAX_WORD} bytes")));
        }
        word.push(c);
        Ok(())
    }

    /// After a backslash: the escaped character, as nginx keeps it.
    fn escape(&mut self, word: &mut String, line: usize, column: usize) -> Result<(), SyntaxError> {
        let Some(next) = self.bump() else {
            return Err(self.error(line, column, "unexpected end of file after `\\`"));
        };
        match next {
            '"' | '\'' | '\\' => self.push(word, next, line, column),
            't' => self.push(word, '\t', line, column),
            'r' => self.push(word, '\r', line, column),
            'n' => self.push(word, '\n', line, column),
            other => {
                self.push(word, '\\', line, column)?;
                self.push(word, other, line, column)
            }
        }
    }

    fn quoted(
        &mut self,
        quote: char,
        line: usize,
        column: usize,
    ) -> Result<TokenKind, SyntaxError> {
        let mut word = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(self.error(
                        line,
                        column,
                        format!("unterminated {quote}-quoted string"),
                    ))
                }
                Some('\\') => self.escape(&mut word, line, column)?,
                Some(c) if c == quote => break,
                Some(c) => self.push(&mut word, c, line, column)?,
            }
        }
        // nginx wants a separator after a closing quote: `"a"b` is an error there too.
        match self.peek() {
            None | Some(';' | '{' | '}') => {}
            Some(c) if c.is_whitespace() => {}
            Some(c) => {
                return Err(self.error(
                    self.line,
                    self.column,
                    format!("unexpected `{c}` after a quoted string"),
                ))
            }
        }
        Ok(TokenKind::Word {
            text: word,
            quoted: true,
        })
    }

    fn bare(&mut self, line: usize, column: usize) -> Result<TokenKind, SyntaxError> {
        let mut word = String::new();
        while let Some(c) = self.peek() {
            match c {
                ';' | '{' | '}' => break,
                c if c.is_whitespace() => break,
                '\\' => {
                    self.bump();
                    self.escape(&mut word, line, column)?;
                }
                '$' => {
                    self.bump();
                    self.push(&mut word, '$', line, column)?;
                    // `${name}`: the braces belong to the variable.
                    if self.peek() == Some('{') {
                        while let Some(c) = self.bump() {
                            self.push(&mut word, c, line, column)?;
                            if c == '}' {
                                break;
                            }
                            if c == '\n' {
                                return Err(self.error(line, column, "unterminated `${` variable"));
                            }
                        }
                    }
                }
                c => {
                    self.bump();
                    self.push(&mut word, c, line, column)?;
                }
            }
        }
        Ok(TokenKind::Word {
            text: word,
            quoted: false,
        })
    }
}
