//! The converted configuration as TOML text: the tables triage reads, each with a comment
//! naming the nginx file and line it came from. Written by hand rather than through
//! `toml_edit`'s document model, so the comments sit where a reader looks for them; every
//! string goes through [`string`], TOML's basic-string escaping.

use std::fmt::Write as _;

/// A value of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(u64),
    Bool(bool),
    /// A list of strings.
    List(Vec<String>),
    /// An inline table of strings (`params = { APP_ENV = "prod" }`).
    Map(Vec<(String, String)>),
}

/// One key of a table, with an optional comment after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub value: Value,
    pub comment: Option<String>,
}

impl Key {
    pub fn new(name: &'static str, value: Value) -> Key {
        Key {
            name,
            value,
            comment: None,
        }
    }

    pub fn commented(name: &'static str, value: Value, comment: String) -> Key {
        Key {
            name,
            value,
            comment: Some(comment),
        }
    }
}

/// A table: its header (`[listen]`, `[[routes]]`, `[upstreams.app]`), the comment lines
/// above it, and its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub header: String,
    pub comments: Vec<String>,
    pub keys: Vec<Key>,
}

/// The whole file: a heading comment, then the tables in order.
pub fn document(heading: &[String], tables: &[Table]) -> String {
    let mut out = String::new();
    for line in heading {
        comment_line(&mut out, line);
    }
    for table in tables {
        out.push('\n');
        for line in &table.comments {
            comment_line(&mut out, line);
        }
        out.push_str(&table.header);
        out.push('\n');
        for key in &table.keys {
            let _ = write!(out, "{} = {}", key.name, value(&key.value));
            if let Some(comment) = &key.comment {
                out.push_str("  # ");
                out.push_str(&one_line(comment));
            }
            out.push('\n');
        }
    }
    out
}

fn comment_line(out: &mut String, line: &str) {
    out.push_str("# ");
    out.push_str(&one_line(line));
    out.push('\n');
}

/// A comment's text on one line: control characters (a newline would end the comment and
/// start TOML) become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn value(value: &Value) -> String {
    match value {
        Value::Str(text) => string(text),
        Value::Int(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::List(items) => {
            let items: Vec<String> = items.iter().map(|i| string(i)).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Map(entries) => {
            let entries: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{} = {}", bare_key(k), string(v)))
                .collect();
            format!("{{ {} }}", entries.join(", "))
        }
    }
}

/// A key as TOML writes it: bare when it can be, else quoted.
pub fn bare_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        string(key)
    }
}

/// A TOML basic string: `"` and `\` escaped, control characters as `\uXXXX`.
pub fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quotes, backslashes and control characters are escaped, so any nginx text is a valid
    /// TOML string that reads back as itself.
    #[test]
    fn strings_read_back_as_written() {
        for text in [
            "plain",
            "a \"quoted\" \\ path",
            "tab\there",
            "new\nline",
            "ünï",
        ] {
            let toml = format!("key = {}\n", string(text));
            let doc: toml_edit::DocumentMut = toml.parse().expect("valid TOML");
            assert_eq!(doc["key"].as_str(), Some(text), "{toml}");
        }
    }
}
