//! Filling a hint's template: `{name}` becomes the value the evidence gave for `name`.

use super::Cause;
use std::sync::OnceLock;

/// A piece of a template: text as it is, or the name of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Text(&'static str),
    Value(&'static str),
}

/// `template` cut into its pieces, as [`fill`] reads it: an unclosed `{` is text.
fn pieces(template: &'static str) -> Box<[Piece]> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            break;
        };
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        out.push(Piece::Value(&after[..close]));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out.into_boxed_slice()
}

/// The hint of `cause` filled from `values`, as [`fill`] fills its template; the template is
/// cut into pieces once, not searched for braces in every failure of a storm.
pub(super) fn fill_hint(cause: Cause, values: &[(&str, &str)]) -> String {
    static PIECES: OnceLock<[Box<[Piece]>; Cause::COUNT]> = OnceLock::new();
    let pieces = &PIECES.get_or_init(|| Cause::ALL.map(|c| pieces(c.hint_template())))[cause];
    let template = cause.hint_template();
    let mut out = String::with_capacity(template.len() + 64);
    for piece in pieces.iter() {
        match *piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Value(name) => match values.iter().find(|(n, _)| *n == name) {
                Some((_, value)) => out.push_str(value),
                None => {
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                }
            },
        }
    }
    out
}

/// `template` with each `{name}` replaced by its value in `values`. A name without a value is
/// left as `{name}`: a test of each cause checks that none is. The reading [`fill_hint`] must
/// agree with, searched afresh.
#[cfg(test)]
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match values.iter().find(|(n, _)| *n == name) {
                    Some((_, value)) => out.push_str(value),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_known_names_and_keeps_the_rest() {
        assert_eq!(
            fill("{a} and {b}, {c}", &[("a", "1"), ("b", "two")]),
            "1 and two, {c}"
        );
        assert_eq!(fill("no braces", &[]), "no braces");
        assert_eq!(fill("open { only", &[]), "open { only");
    }

    /// Every cause's hint reads the same cut into pieces once as searched every time.
    #[test]
    fn pieces_fill_as_the_template_does() {
        let values = [
            ("address", "127.0.0.1:9"),
            ("id", "vm-1"),
            ("time", "20:19:02"),
        ];
        for cause in Cause::ALL {
            assert_eq!(
                fill_hint(cause, &values),
                fill(cause.hint_template(), &values),
                "{cause:?}"
            );
        }
        assert_eq!(
            &*pieces("a {b} {c"),
            &[Piece::Text("a "), Piece::Value("b"), Piece::Text(" {c")]
        );
    }
}
