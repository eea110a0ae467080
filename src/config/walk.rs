//! The error-collecting reader that the schema in `mod.rs` is written against.
//!
//! Every getter records what is wrong with the value it was asked for and returns `None`, so the
//! schema code reads straight through, falls back to defaults, and the caller gets every problem
//! in the file instead of the first. Positions are kept as byte offsets while walking and turned
//! into lines and columns once, at the end.

use super::{ConfigError, ConfigErrors};
use std::fmt::Display;
use toml_edit::{Item, TableLike, Value};

/// The keys a table may contain, in the order the docs list them, and which must be present.
pub(super) struct Schema {
    pub keys: &'static [&'static str],
    pub required: &'static [&'static str],
}

/// A value and the byte offset where it was written, for checks made after it was read.
#[derive(Debug, Clone)]
pub(super) struct Spanned<T> {
    pub value: T,
    pub at: usize,
}

/// A table being read, and where to point errors about the table as a whole.
pub(super) struct Section<'t> {
    /// `None` when the file leaves the table out (or gives it the wrong type): every key then
    /// reads as unset, so defaults apply without a separate code path.
    table: Option<&'t dyn TableLike>,
    /// Dotted path used in messages; empty for the top level.
    path: String,
    in_array: bool,
    /// Byte offset of the table's header, or of its key when it has no header of its own.
    pub at: usize,
}

struct Entry<'t> {
    item: &'t Item,
    at: usize,
}

impl<'t> Section<'t> {
    pub fn top(table: &'t dyn TableLike) -> Self {
        Section {
            table: Some(table),
            path: String::new(),
            in_array: false,
            at: 0,
        }
    }

    fn label(&self) -> String {
        match (self.path.is_empty(), self.in_array) {
            (true, _) => "the top level".to_owned(),
            (false, true) => format!("[[{}]]", self.path),
            (false, false) => format!("[{}]", self.path),
        }
    }

    fn child(&self, key: &str, table: Option<&'t dyn TableLike>, at: usize) -> Section<'t> {
        let path = match self.path.is_empty() {
            true => key.to_owned(),
            false => format!("{}.{key}", self.path),
        };
        Section {
            table,
            path,
            in_array: false,
            at,
        }
    }

    /// Whether the table has `key`.
    pub fn has(&self, key: &str) -> bool {
        self.entry(key).is_some()
    }

    fn entry(&self, key: &str) -> Option<Entry<'t>> {
        let (key, item) = self.table?.get_key_value(key)?;
        // Implicit and dotted tables have no span of their own; their key is the best place to point.
        let at = item
            .span()
            .or_else(|| key.span())
            .map_or(self.at, |span| span.start);
        Some(Entry { item, at })
    }
}

fn value_at(value: &Value, fallback: usize) -> usize {
    value.span().map_or(fallback, |span| span.start)
}

pub(super) struct Walker<'s> {
    text: &'s str,
    errors: Vec<(usize, String)>,
}

impl<'s> Walker<'s> {
    pub fn new(text: &'s str) -> Self {
        Walker {
            text,
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, at: usize, message: impl Into<String>) {
        self.errors.push((at, message.into()));
    }

    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    pub fn line_of(&self, at: usize) -> usize {
        line_column(self.text, at).0
    }

    /// Hands back `value` if nothing was wrong, else every error in file order.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        let Walker { text, mut errors } = self;
        if errors.is_empty() {
            return Ok(value);
        }
        errors.sort_by_key(|(at, _)| *at);
        let errors = errors
            .into_iter()
            .map(|(at, message)| {
                let (line, column) = line_column(text, at);
                ConfigError {
                    line,
                    column,
                    message,
                }
            })
            .collect();
        Err(ConfigErrors(errors))
    }

    /// Reports keys the schema does not know and required keys that are absent.
    pub fn check_keys(&mut self, section: &Section, schema: &Schema) {
        let Some(table) = section.table else { return };
        for (key, _) in table.iter() {
            if !schema.keys.contains(&key) {
                let at = table
                    .key(key)
                    .and_then(|k| k.span())
                    .map_or(section.at, |span| span.start);
                let message = format!(
                    "unknown key `{key}` in {}; expected one of: {}",
                    section.label(),
                    schema.keys.join(", ")
                );
                self.error(at, message);
            }
        }
        for key in schema.required {
            if !table.contains_key(key) {
                let message = match section.path.is_empty() {
                    true => format!("missing required table `{key}`"),
                    false => format!("missing required key `{key}` in {}", section.label()),
                };
                self.error(section.at, message);
            }
        }
    }

    fn wrong_type(&mut self, at: usize, key: &str, expected: &str, found: &str) {
        self.error(at, format!("{key}: expected {expected}, found {found}"));
    }

    /// The table under `key`, checked against `schema`.
    pub fn section<'t>(&mut self, parent: &Section<'t>, key: &str, schema: &Schema) -> Section<'t> {
        let section = self.table_under(parent, key);
        self.check_keys(&section, schema);
        section
    }

    fn table_under<'t>(&mut self, parent: &Section<'t>, key: &str) -> Section<'t> {
        let Some(entry) = parent.entry(key) else {
            return parent.child(key, None, parent.at);
        };
        let table = entry.item.as_table_like();
        if table.is_none() {
            self.wrong_type(entry.at, key, "a table", entry.item.type_name());
        }
        parent.child(key, table, entry.at)
    }

    /// The tables under `key` whose names the operator chooses (`[upstreams.NAME]`), each checked
    /// against `schema`, with their names.
    pub fn named_sections<'t>(
        &mut self,
        parent: &Section<'t>,
        key: &str,
        schema: &Schema,
    ) -> Vec<(Spanned<String>, Section<'t>)> {
        let container = self.table_under(parent, key);
        let Some(table) = container.table else {
            return Vec::new();
        };
        let mut sections = Vec::new();
        for (name, item) in table.iter() {
            let name_at = table
                .key(name)
                .and_then(|k| k.span())
                .map_or(container.at, |span| span.start);
            let at = item.span().map_or(name_at, |span| span.start);
            let Some(child) = item.as_table_like() else {
                self.wrong_type(at, name, "a table", item.type_name());
                continue;
            };
            let section = container.child(name, Some(child), at);
            self.check_keys(&section, schema);
            let name = Spanned {
                value: name.to_owned(),
                at: name_at,
            };
            sections.push((name, section));
        }
        sections
    }

    /// The tables of a non-empty `[[key]]` array (or `key = [{...}]`), each checked against `schema`.
    pub fn table_array<'t>(
        &mut self,
        parent: &Section<'t>,
        key: &str,
        schema: &Schema,
    ) -> Vec<Section<'t>> {
        let Some(entry) = parent.entry(key) else {
            return Vec::new();
        };
        let tables: Vec<(&'t dyn TableLike, usize)> = match entry.item {
            Item::ArrayOfTables(array) => array
                .iter()
                .map(|t| (t as &dyn TableLike, t.span().map_or(entry.at, |s| s.start)))
                .collect(),
            Item::Value(Value::Array(array)) => array
                .iter()
                .filter_map(|value| {
                    let at = value_at(value, entry.at);
                    match value.as_inline_table() {
                        Some(t) => Some((t as &dyn TableLike, at)),
                        None => {
                            self.wrong_type(at, key, "a table", value.type_name());
                            None
                        }
                    }
                })
                .collect(),
            other => {
                self.wrong_type(entry.at, key, "an array of tables", other.type_name());
                return Vec::new();
            }
        };
        if entry.item.as_array().is_some_and(|a| a.is_empty()) {
            self.error(entry.at, format!("{key}: at least one entry is required"));
        }
        tables
            .into_iter()
            .map(|(table, at)| {
                let mut section = parent.child(key, Some(table), at);
                section.in_array = true;
                self.check_keys(&section, schema);
                section
            })
            .collect()
    }

    fn string<'t>(&mut self, section: &Section<'t>, key: &str) -> Option<Spanned<&'t str>> {
        let entry = section.entry(key)?;
        match entry.item.as_str() {
            Some(value) => Some(Spanned {
                value,
                at: entry.at,
            }),
            None => {
                self.wrong_type(entry.at, key, "a string", entry.item.type_name());
                None
            }
        }
    }

    /// The string under `key` converted by `parse`, with its position; `None` if absent or invalid.
    pub fn spanned<T>(
        &mut self,
        section: &Section,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Spanned<T>> {
        let text = self.string(section, key)?;
        match parse(text.value) {
            Ok(value) => Some(Spanned { value, at: text.at }),
            Err(reason) => {
                self.error(text.at, format!("{key}: {reason}"));
                None
            }
        }
    }

    /// The string under `key` converted by `parse`; `None` if absent or invalid.
    pub fn value<T>(
        &mut self,
        section: &Section,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.spanned(section, key, parse)
            .map(|spanned| spanned.value)
    }

    pub fn boolean(&mut self, section: &Section, key: &str) -> Option<bool> {
        let entry = section.entry(key)?;
        let value = entry.item.as_bool();
        if value.is_none() {
            self.wrong_type(entry.at, key, "a boolean", entry.item.type_name());
        }
        value
    }

    /// The integer under `key`, which must lie in `range`; `None` if absent or invalid.
    pub fn integer(
        &mut self,
        section: &Section,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Option<u64> {
        let entry = section.entry(key)?;
        let Some(value) = entry.item.as_integer() else {
            self.wrong_type(entry.at, key, "an integer", entry.item.type_name());
            return None;
        };
        if !range.contains(&value) {
            let message = format!(
                "{key}: {value} is out of range {}..={}",
                range.start(),
                range.end()
            );
            self.error(entry.at, message);
            return None;
        }
        u64::try_from(value).ok()
    }

    /// The strings of the array under `key`, each converted by `parse`; `None` if absent or not an
    /// array. Invalid entries are reported and left out.
    pub fn list<T>(
        &mut self,
        section: &Section,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Vec<Spanned<T>>> {
        self.read_list(section, key, false, parse)
    }

    /// Like [`Walker::list`], and an empty array is an error.
    pub fn non_empty_list<T>(
        &mut self,
        section: &Section,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Vec<Spanned<T>>> {
        self.read_list(section, key, true, parse)
    }

    fn read_list<T>(
        &mut self,
        section: &Section,
        key: &str,
        non_empty: bool,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Vec<Spanned<T>>> {
        let entry = section.entry(key)?;
        let Some(array) = entry.item.as_array() else {
            let found = entry.item.type_name();
            self.wrong_type(entry.at, key, "an array of strings", found);
            return None;
        };
        if non_empty && array.is_empty() {
            self.error(entry.at, format!("{key}: at least one entry is required"));
        }
        let mut values = Vec::new();
        for element in array.iter() {
            let at = value_at(element, entry.at);
            match element.as_str().map(&parse) {
                Some(Ok(value)) => values.push(Spanned { value, at }),
                Some(Err(reason)) => self.error(at, format!("{key}: {reason}")),
                None => self.wrong_type(at, key, "a string", element.type_name()),
            }
        }
        Some(values)
    }

    /// Reports every entry equal to an earlier one, at the later entry.
    pub fn reject_duplicates<T: PartialEq + Display>(&mut self, key: &str, values: &[Spanned<T>]) {
        for (index, current) in values.iter().enumerate() {
            if values[..index]
                .iter()
                .any(|earlier| earlier.value == current.value)
            {
                let message = format!("{key}: `{}` is listed more than once", current.value);
                self.error(current.at, message);
            }
        }
    }
}

/// The 1-based line and column (in characters) of a byte offset.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    // Counting bytes that do not continue a UTF-8 sequence counts characters, without needing
    // `offset` to sit on a character boundary.
    let column = before[line_start..]
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80)
        .count()
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines and columns are 1-based, and columns count characters rather than bytes.
    #[test]
    fn line_column_counts_characters() {
        let text = "a = 1\nb = \"é\" x\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        let x = text.find('x').unwrap();
        assert_eq!(line_column(text, x), (2, 9));
        assert_eq!(line_column(text, 1000), (3, 1));
    }
}
