//! The error-collecting table reader the readers in `read.rs` are written against.
//!
//! Each key is declared once, where it is read: [`Table`] remembers every key it was asked for,
//! and when it is dropped (after its reader is done with it) reports every key the file has that
//! nobody asked for as an unknown key, listing the ones that were asked for, in the order they
//! were asked. So a reader asks for its keys in the order the docs list them, and a key read is
//! a key known: there is no separate list of keys to keep equal to the reader.
//!
//! Every getter records what is wrong with the value it was asked for and returns `None`, so a
//! reader reads straight through, falls back to defaults, and the caller gets every problem in
//! the file instead of the first. Positions are kept as byte offsets while reading and turned
//! into lines and columns once, at the end.

use super::values::usable_text;
use super::{ConfigError, ConfigErrors};
use std::cell::RefCell;
use std::fmt::Display;
use toml_edit::{Item, TableLike, Value};

/// A value and the byte offset where it was written, for checks made after it was read.
#[derive(Debug, Clone)]
pub(super) struct Spanned<T> {
    pub value: T,
    pub at: usize,
}

/// The values of spanned values, in order.
pub(super) fn values<T>(spanned: Vec<Spanned<T>>) -> Vec<T> {
    spanned.into_iter().map(|s| s.value).collect()
}

/// Every problem found so far, by byte offset. Shared by all the tables of one file, which
/// report into it while they are read and when they are dropped.
pub(super) struct Errors<'s> {
    text: &'s str,
    found: RefCell<Vec<(usize, String)>>,
}

impl<'s> Errors<'s> {
    pub fn new(text: &'s str) -> Self {
        Errors {
            text,
            found: RefCell::new(Vec::new()),
        }
    }

    pub fn error(&self, at: usize, message: impl Into<String>) {
        self.found.borrow_mut().push((at, message.into()));
    }

    pub fn count(&self) -> usize {
        self.found.borrow().len()
    }

    pub fn line_of(&self, at: usize) -> usize {
        line_column(self.text, at).0
    }

    /// Reports every entry equal to an earlier one, at the later entry.
    pub fn reject_duplicates<T: PartialEq + Display>(&self, key: &str, values: &[Spanned<T>]) {
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

    /// Hands back `value` if nothing was wrong, else every error in file order.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        let Errors { text, found } = self;
        let mut found = found.into_inner();
        if found.is_empty() {
            return Ok(value);
        }
        // Stable: errors at one position keep the order they were found in.
        found.sort_by_key(|(at, _)| *at);
        let errors = found
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
}

/// A key a reader asks for: its name, and whether the file must have it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Key {
    name: &'static str,
    required: bool,
}

impl From<&'static str> for Key {
    fn from(name: &'static str) -> Self {
        Key {
            name,
            required: false,
        }
    }
}

/// A key whose absence is an error, reported at its table's header.
pub(super) fn required(name: &'static str) -> Key {
    Key {
        name,
        required: true,
    }
}

/// A table being read, and where to point errors about the table as a whole.
pub(super) struct Table<'a> {
    /// `None` when the file leaves the table out (or gives it the wrong type): every key then
    /// reads as unset, so defaults apply without a separate code path.
    table: Option<&'a dyn TableLike>,
    errors: &'a Errors<'a>,
    /// Dotted path used in messages; empty for the top level.
    path: String,
    in_array: bool,
    /// Every key of the table is a name the operator chose (`[upstreams.NAME]`), so none is
    /// unknown.
    names_only: bool,
    /// The keys asked for so far, in the order asked: the known keys.
    asked: Vec<&'static str>,
    /// Byte offset of the table's header, or of its key when it has no header of its own.
    pub at: usize,
}

struct Entry<'a> {
    item: &'a Item,
    at: usize,
}

fn value_at(value: &Value, fallback: usize) -> usize {
    value.span().map_or(fallback, |span| span.start)
}

impl<'a> Table<'a> {
    /// The document's top level.
    pub fn top(table: &'a dyn TableLike, errors: &'a Errors<'a>) -> Self {
        Table {
            table: Some(table),
            errors,
            path: String::new(),
            in_array: false,
            names_only: false,
            asked: Vec::new(),
            at: 0,
        }
    }

    /// The error list this table reports into, to report what a reader finds itself.
    pub fn errors(&self) -> &'a Errors<'a> {
        self.errors
    }

    pub fn error(&self, at: usize, message: impl Into<String>) {
        self.errors.error(at, message);
    }

    /// Done reading: reports the unknown keys now rather than at the end of the scope, for a
    /// reader that counts errors afterwards.
    pub fn finish(self) {}

    /// Whether the table has `key`, without asking for it.
    pub fn has(&self, key: &str) -> bool {
        self.table.is_some_and(|table| table.contains_key(key))
    }

    fn label(&self) -> String {
        match (self.path.is_empty(), self.in_array) {
            (true, _) => "the top level".to_owned(),
            (false, true) => format!("[[{}]]", self.path),
            (false, false) => format!("[{}]", self.path),
        }
    }

    fn child(&self, key: &str, table: Option<&'a dyn TableLike>, at: usize) -> Table<'a> {
        // Keys can be names the operator chose, with any character: messages show them escaped.
        let key = key.escape_debug();
        let path = match self.path.is_empty() {
            true => key.to_string(),
            false => format!("{}.{key}", self.path),
        };
        Table {
            table,
            errors: self.errors,
            path,
            in_array: false,
            names_only: false,
            asked: Vec::new(),
            at,
        }
    }

    /// Asks for `key`: records it as known, and reports it missing if it is required.
    fn entry(&mut self, key: Key) -> Option<Entry<'a>> {
        if !self.asked.contains(&key.name) {
            self.asked.push(key.name);
        }
        let table = self.table?;
        let Some((name, item)) = table.get_key_value(key.name) else {
            if key.required {
                let message = match self.path.is_empty() {
                    true => format!("missing required table `{}`", key.name),
                    false => format!("missing required key `{}` in {}", key.name, self.label()),
                };
                self.error(self.at, message);
            }
            return None;
        };
        // Implicit and dotted tables have no span of their own; their key is the best place to point.
        let at = item
            .span()
            .or_else(|| name.span())
            .map_or(self.at, |span| span.start);
        Some(Entry { item, at })
    }

    fn wrong_type(&self, at: usize, key: &str, expected: &str, found: &str) {
        let key = key.escape_debug();
        self.error(at, format!("{key}: expected {expected}, found {found}"));
    }

    /// The table under `key`; an absent one reads as empty.
    pub fn table(&mut self, key: impl Into<Key>) -> Table<'a> {
        let key = key.into();
        match self.entry(key) {
            Some(entry) => self.table_in(key.name, entry),
            None => self.child(key.name, None, self.at),
        }
    }

    /// The table under `key`, or `None` if the file has none.
    pub fn optional_table(&mut self, key: &'static str) -> Option<Table<'a>> {
        let entry = self.entry(key.into())?;
        Some(self.table_in(key, entry))
    }

    fn table_in(&self, key: &str, entry: Entry<'a>) -> Table<'a> {
        let table = entry.item.as_table_like();
        if table.is_none() {
            self.wrong_type(entry.at, key, "a table", entry.item.type_name());
        }
        self.child(key, table, entry.at)
    }

    /// The tables under `key` whose names the operator chooses (`[upstreams.NAME]`), with their
    /// names.
    pub fn named_tables(&mut self, key: &'static str) -> Vec<(Spanned<String>, Table<'a>)> {
        let mut container = self.table(key);
        container.names_only = true;
        let Some(table) = container.table else {
            return Vec::new();
        };
        let mut tables = Vec::new();
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
            let child = container.child(name, Some(child), at);
            let name = Spanned {
                value: name.to_owned(),
                at: name_at,
            };
            tables.push((name, child));
        }
        tables
    }

    /// The tables of a non-empty `[[key]]` array (or `key = [{...}]`).
    pub fn table_array(&mut self, key: impl Into<Key>) -> Vec<Table<'a>> {
        let key = key.into();
        let Some(entry) = self.entry(key) else {
            return Vec::new();
        };
        let name = key.name;
        let tables: Vec<(&'a dyn TableLike, usize)> = match entry.item {
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
                            self.wrong_type(at, name, "a table", value.type_name());
                            None
                        }
                    }
                })
                .collect(),
            other => {
                self.wrong_type(entry.at, name, "an array of tables", other.type_name());
                return Vec::new();
            }
        };
        if entry.item.as_array().is_some_and(|a| a.is_empty()) {
            self.error(entry.at, format!("{name}: at least one entry is required"));
        }
        tables
            .into_iter()
            .map(|(table, at)| {
                let mut child = self.child(name, Some(table), at);
                child.in_array = true;
                child
            })
            .collect()
    }

    /// The string under `key`, once it passed [`usable_text`], which every string value of the
    /// file does before any parser sees it.
    fn string(&mut self, key: Key) -> Option<Spanned<&'a str>> {
        let entry = self.entry(key)?;
        match entry.item.as_str() {
            Some(value) => match usable_text(value) {
                Ok(()) => Some(Spanned {
                    value,
                    at: entry.at,
                }),
                Err(reason) => {
                    self.error(entry.at, format!("{}: {reason}", key.name));
                    None
                }
            },
            None => {
                self.wrong_type(entry.at, key.name, "a string", entry.item.type_name());
                None
            }
        }
    }

    /// The string under `key` converted by `parse`, with its position; `None` if absent or invalid.
    pub fn spanned<T>(
        &mut self,
        key: impl Into<Key>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Spanned<T>> {
        let key = key.into();
        let text = self.string(key)?;
        match parse(text.value) {
            Ok(value) => Some(Spanned { value, at: text.at }),
            Err(reason) => {
                self.error(text.at, format!("{}: {reason}", key.name));
                None
            }
        }
    }

    /// The string under `key` converted by `parse`; `None` if absent or invalid.
    pub fn value<T>(
        &mut self,
        key: impl Into<Key>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.spanned(key, parse).map(|spanned| spanned.value)
    }

    pub fn boolean(&mut self, key: impl Into<Key>) -> Option<bool> {
        self.spanned_boolean(key).map(|spanned| spanned.value)
    }

    /// The boolean under `key`, with its position.
    pub fn spanned_boolean(&mut self, key: impl Into<Key>) -> Option<Spanned<bool>> {
        let key = key.into();
        let entry = self.entry(key)?;
        let value = entry.item.as_bool();
        if value.is_none() {
            self.wrong_type(entry.at, key.name, "a boolean", entry.item.type_name());
        }
        value.map(|value| Spanned {
            value,
            at: entry.at,
        })
    }

    /// The integer under `key`, which must lie in `range`; `None` if absent or invalid.
    pub fn integer(
        &mut self,
        key: impl Into<Key>,
        range: std::ops::RangeInclusive<i64>,
    ) -> Option<u64> {
        let key = key.into();
        let entry = self.entry(key)?;
        let Some(value) = entry.item.as_integer() else {
            self.wrong_type(entry.at, key.name, "an integer", entry.item.type_name());
            return None;
        };
        if !range.contains(&value) {
            let message = format!(
                "{}: {value} is out of range {}..={}",
                key.name,
                range.start(),
                range.end()
            );
            self.error(entry.at, message);
            return None;
        }
        u64::try_from(value).ok()
    }

    /// The entries of the table under `key` whose keys the operator chooses and whose values
    /// are strings (`params = { APP_ENV = "prod" }`), each key converted by `name` and each
    /// value checked as every string is; `None` if absent or not a table. Invalid entries are
    /// reported and left out.
    pub fn string_entries(
        &mut self,
        key: impl Into<Key>,
        name: impl Fn(&str) -> Result<String, String>,
    ) -> Option<Vec<Spanned<(String, String)>>> {
        let key = key.into();
        let entry = self.entry(key)?;
        let Some(table) = entry.item.as_table_like() else {
            self.wrong_type(entry.at, key.name, "a table", entry.item.type_name());
            return None;
        };
        let mut entries = Vec::new();
        for (entry_name, item) in table.iter() {
            let at = table
                .key(entry_name)
                .and_then(|k| k.span())
                .map_or(entry.at, |span| span.start);
            let checked = item.as_str().map(|text| usable_text(text).map(|()| text));
            match (name(entry_name), checked) {
                (Err(reason), _) | (Ok(_), Some(Err(reason))) => {
                    self.error(at, format!("{}: {reason}", key.name));
                }
                (Ok(_), None) => self.wrong_type(at, key.name, "a string", item.type_name()),
                (Ok(entry_name), Some(Ok(value))) => entries.push(Spanned {
                    value: (entry_name, value.to_owned()),
                    at,
                }),
            }
        }
        Some(entries)
    }

    /// The strings of the array under `key`, each converted by `parse`; `None` if absent or not an
    /// array. Invalid entries are reported and left out.
    pub fn list<T>(
        &mut self,
        key: impl Into<Key>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Vec<Spanned<T>>> {
        self.read_list(key.into(), false, parse)
    }

    /// One string or an array of strings under `key` (`log_file = "a"` or `log_file = ["a",
    /// "b"]`), each converted by `parse`; `None` if absent or neither.
    pub fn string_or_list<T>(
        &mut self,
        key: impl Into<Key>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Vec<Spanned<T>>> {
        let key = key.into();
        let is_string = self
            .table
            .and_then(|table| table.get(key.name))
            .is_some_and(|item| item.is_str());
        match is_string {
            true => self.spanned(key, parse).map(|one| vec![one]),
            false => self.read_list(key, false, parse),
        }
    }

    /// Like [`Table::list`], and an empty array is an error.
    pub fn non_empty_list<T>(
        &mut self,
        key: impl Into<Key>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Vec<Spanned<T>>> {
        self.read_list(key.into(), true, parse)
    }

    fn read_list<T>(
        &mut self,
        key: Key,
        non_empty: bool,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Vec<Spanned<T>>> {
        let entry = self.entry(key)?;
        let name = key.name;
        let Some(array) = entry.item.as_array() else {
            let found = entry.item.type_name();
            self.wrong_type(entry.at, name, "an array of strings", found);
            return None;
        };
        if non_empty && array.is_empty() {
            self.error(entry.at, format!("{name}: at least one entry is required"));
        }
        let mut values = Vec::new();
        for element in array.iter() {
            let at = value_at(element, entry.at);
            let checked = element
                .as_str()
                .map(|text| usable_text(text).map(|()| text));
            match checked.map(|text| text.and_then(&parse)) {
                Some(Ok(value)) => values.push(Spanned { value, at }),
                Some(Err(reason)) => self.error(at, format!("{name}: {reason}")),
                None => self.wrong_type(at, name, "a string", element.type_name()),
            }
        }
        Some(values)
    }
}

impl Drop for Table<'_> {
    /// Reports the keys of the file no reader asked for.
    fn drop(&mut self) {
        let Some(table) = self.table.filter(|_| !self.names_only) else {
            return;
        };
        for (key, _) in table.iter() {
            if self.asked.contains(&key) {
                continue;
            }
            let at = table
                .key(key)
                .and_then(|k| k.span())
                .map_or(self.at, |span| span.start);
            let message = format!(
                "unknown key `{}` in {}; expected one of: {}",
                key.escape_debug(),
                self.label(),
                self.asked.join(", ")
            );
            self.error(at, message);
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

    fn read(text: &str, reader: impl FnOnce(Table)) -> Vec<String> {
        let document = toml_edit::ImDocument::parse(text).unwrap();
        let errors = Errors::new(text);
        reader(Table::top(document.as_table(), &errors));
        match errors.finish(()) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
        }
    }

    /// A key is known because it was asked for, whether or not the file has it; the unknown ones
    /// are reported when the table is dropped, listing the known ones in the order asked.
    #[test]
    fn keys_asked_for_are_the_known_keys() {
        let text = "b = true
zz = 1
[t]
x = 1
";
        let errors = read(text, |mut top| {
            assert_eq!(top.boolean("b"), Some(true));
            assert_eq!(top.integer("a", 0..=9), None);
            let mut t = top.table("t");
            assert_eq!(t.integer("x", 0..=9), Some(1));
        });
        assert_eq!(
            errors,
            ["2:1: unknown key `zz` in the top level; expected one of: b, a, t"]
        );
    }

    /// A required key that is absent is reported at its table's header, once per asking.
    #[test]
    fn required_keys_are_reported_at_the_header() {
        let errors = read(
            "[t]
x = 1
",
            |mut top| {
                let mut t = top.table(required("t"));
                assert_eq!(t.integer(required("x"), 0..=9), Some(1));
                assert_eq!(t.boolean(required("y")), None);
                assert!(top.table_array(required("routes")).is_empty());
            },
        );
        assert_eq!(
            errors,
            [
                "1:1: missing required key `y` in [t]",
                "1:1: missing required table `routes`"
            ]
        );
    }

    /// The tables under a table of names are each checked, and the names are never unknown.
    #[test]
    fn named_tables_check_their_own_keys() {
        let errors = read(
            "[u.one]
k = 1
[u.two]
j = 1
",
            |mut top| {
                for (_, mut t) in top.named_tables("u") {
                    let _ = t.integer("k", 0..=9);
                }
            },
        );
        assert_eq!(
            errors,
            ["4:1: unknown key `j` in [u.two]; expected one of: k"]
        );
    }

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
