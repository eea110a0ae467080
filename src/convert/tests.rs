//! Tests of the nginx lexer and parser: quoting, escapes, comments, variables, blocks,
//! includes with globs, the bounds, and errors with their line and column.

use super::*;
use std::path::PathBuf;

fn words(text: &str) -> Vec<String> {
    tokens(text)
        .expect("tokens")
        .into_iter()
        .map(|t| match t.kind {
            TokenKind::Word { text, .. } => text,
            TokenKind::Semicolon => ";".to_owned(),
            TokenKind::OpenBrace => "{".to_owned(),
            TokenKind::CloseBrace => "}".to_owned(),
        })
        .collect()
}

/// Quotes hold spaces, `;`, braces and `#`; escapes resolve as nginx resolves them (a regex's
/// `\.` stays); `#` starts a comment only at the start of a word; `${var}` opens no block.
#[test]
fn lexer_follows_nginx_quoting() {
    assert_eq!(
        words("add_header X-A \"1; mode=block\"; # a comment { ;\n"),
        ["add_header", "X-A", "1; mode=block", ";"]
    );
    assert_eq!(
        words(r#"a 'it\'s' "say \"hi\"" \\ \t x\;y;"#),
        // `\;` is an ordinary `;` kept with its backslash, as nginx keeps it.
        ["a", "it's", "say \"hi\"", "\\", "\t", "x\\;y", ";"]
    );
    assert_eq!(
        words(r"location ~ \.php$ { }"),
        ["location", "~", "\\.php$", "{", "}"]
    );
    assert_eq!(words("set $a ${b}c;"), ["set", "$a", "${b}c", ";"]);
    assert_eq!(words("a b#c;"), ["a", "b#c", ";"]);
    assert_eq!(words("a \"\";"), ["a", "", ";"]);
}

/// Each token knows where it starts, 1-based, across lines.
#[test]
fn tokens_have_line_and_column() {
    let tokens = tokens("http {\n  listen 80;\n}\n").expect("tokens");
    let places: Vec<(usize, usize)> = tokens.iter().map(|t| (t.line, t.column)).collect();
    assert_eq!(places, [(1, 1), (1, 6), (2, 3), (2, 10), (2, 12), (3, 1)]);
}

fn parse(text: &str) -> Result<Vec<Directive>, ParseError> {
    parse_text(text, Path::new("test.conf"), &Roots::default())
}

/// Directives nest in blocks, each with its arguments and place.
#[test]
fn parser_builds_the_tree() {
    let tree = parse("http {\n  server {\n    listen 80 default_server;\n  }\n}\nuser www;\n")
        .expect("parses");
    assert_eq!(tree.len(), 2);
    let server = &tree[0].block.as_ref().expect("http block")[0];
    assert_eq!(server.name, "server");
    let listen = &server.block.as_ref().expect("server block")[0];
    assert_eq!(listen.args, ["80", "default_server"]);
    assert_eq!((listen.at.line, listen.at.column), (3, 5));
    assert_eq!(tree[1].block, None);
}

/// Every malformed input is an error at its line and column, never a panic.
#[test]
fn syntax_errors_have_line_and_column() {
    for (text, line, column, says) in [
        ("a \"b;\n", 1, 3, "unterminated"),
        ("http {\n  listen 80\n}\n", 3, 1, "not ended by `;`"),
        ("http {\n  listen 80;\n", 1, 6, "not closed"),
        ("listen 80;\n}\n", 2, 1, "unexpected `}`"),
        ("listen 80", 1, 1, "neither `;` nor `{`"),
        (";\n", 1, 1, "unexpected `;`"),
        ("a \"b\"c;\n", 1, 6, "after a quoted string"),
        ("a \\", 1, 3, "after `\\`"),
    ] {
        let error = parse(text).expect_err(text);
        assert_eq!(
            (error.line, error.column),
            (line, column),
            "{text:?}: {error}"
        );
        assert!(error.message.contains(says), "{text:?}: {error}");
        assert_eq!(error.file, Path::new("test.conf"));
    }
}

/// Blocks nested past the bound are an error, not a deep recursion.
#[test]
fn block_depth_is_bounded() {
    let deep = "a {".repeat(MAX_BLOCK_DEPTH + 2) + &"}".repeat(MAX_BLOCK_DEPTH + 2);
    let error = parse(&deep).expect_err("too deep");
    assert!(error.message.contains("nested deeper"), "{error}");
    let fine = "a {".repeat(MAX_BLOCK_DEPTH) + &"}".repeat(MAX_BLOCK_DEPTH);
    assert!(parse(&fine).is_ok());
}

/// A scratch directory for include tests, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("triage-convert-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("dir");
        }
        std::fs::write(&path, text).expect("write");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn names(tree: &[Directive]) -> Vec<String> {
    tree.iter()
        .map(|d| format!("{} {}", d.name, d.args.join(" ")))
        .collect()
}

/// A glob include reads the matching files in sorted order (not dotfiles), in place, with
/// each directive's own file; a relative path is read under the prefix; a glob matching
/// nothing is fine; the files triage builds in are not read; a missing file is an error at
/// the include.
#[test]
fn includes_are_read_in_place() {
    let dir = Scratch::new("include");
    dir.write("sites/b.conf", "server_name b;\n");
    dir.write("sites/a.conf", "server_name a;\n");
    dir.write("sites/.hidden.conf", "server_name hidden;\n");
    dir.write("sites/c.txt", "server_name c;\n");
    let main = dir.write(
        "nginx.conf",
        "first;\ninclude sites/*.conf;\ninclude none/*.conf;\ninclude fastcgi_params;\nlast;\n",
    );
    let tree = parse_file(&main, &Roots::default()).expect("parses");
    assert_eq!(
        names(&tree),
        [
            "first ",
            "server_name a",
            "server_name b",
            "include fastcgi_params",
            "last "
        ]
    );
    assert!(tree[1].at.file.ends_with("sites/a.conf"));
    assert_eq!(tree[1].at.line, 1);

    let missing = dir.write("missing.conf", "a;\n  include nothere.conf;\n");
    let error = parse_file(&missing, &Roots::default()).expect_err("missing include");
    assert_eq!((error.line, error.column), (2, 3), "{error}");
    assert!(error.message.contains("no such file"), "{error}");
}

/// --sysroot reads absolute includes under it; --prefix is where relative ones are read.
#[test]
fn sysroot_and_prefix() {
    let dir = Scratch::new("roots");
    dir.write("copy/etc/nginx/sites-enabled/site", "server_name copied;\n");
    dir.write("other/snippet.conf", "server_name prefixed;\n");
    let main = dir.write(
        "copy/etc/nginx/nginx.conf",
        "include /etc/nginx/sites-enabled/*;\ninclude snippet.conf;\n",
    );
    let roots = Roots {
        sysroot: Some(dir.0.join("copy")),
        prefix: Some(dir.0.join("other")),
    };
    let tree = parse_file(&main, &roots).expect("parses");
    assert_eq!(names(&tree), ["server_name copied", "server_name prefixed"]);
}

/// A file that includes itself, directly or through another, is an error naming the cycle,
/// not a hang; so is a chain deeper than the bound.
#[test]
fn include_cycles_are_bounded() {
    let dir = Scratch::new("cycle");
    dir.write("a.conf", "include b.conf;\n");
    dir.write("b.conf", "include a.conf;\n");
    let main = dir.write("nginx.conf", "include a.conf;\n");
    let error = parse_file(&main, &Roots::default()).expect_err("cycle");
    assert!(error.message.contains("include cycle"), "{error}");
    assert!(error.file.ends_with("b.conf"), "{error}");

    for n in 0..=MAX_INCLUDE_DEPTH + 1 {
        dir.write(
            &format!("d{n}.conf"),
            &format!("include d{}.conf;\n", n + 1),
        );
    }
    let error = parse_file(&dir.0.join("d0.conf"), &Roots::default()).expect_err("too deep");
    assert!(error.message.contains("nested deeper"), "{error}");
}

/// A file larger than the bound is refused before it is read whole.
#[test]
fn file_size_is_bounded() {
    let dir = Scratch::new("size");
    let big = dir.write(
        "big.conf",
        &"# padding\n".repeat(MAX_FILE_BYTES as usize / 10 + 1),
    );
    let error = parse_file(&big, &Roots::default()).expect_err("too big");
    assert!(error.message.contains("big.conf"), "{error}");
}

/// Glob patterns: `*`, `?`, classes and ranges, negation; dotfiles only by a dot pattern.
#[test]
fn wildcards() {
    for (pattern, name, matches) in [
        ("*.conf", "a.conf", true),
        ("*.conf", "a.conf.bak", false),
        ("*", ".hidden", false),
        (".*", ".hidden", true),
        ("?.conf", "ab.conf", false),
        ("[ab].conf", "b.conf", true),
        ("[a-c]*", "cat", true),
        ("[!a]*", "apple", false),
        ("*a*b*c", "xaxbxc", true),
        ("*a*b*c", "xaxbx", false),
    ] {
        assert_eq!(
            wildcard_match(pattern, name),
            matches,
            "{pattern} vs {name}"
        );
    }
}

/// nginx's time and size syntax.
#[test]
fn nginx_units() {
    assert_eq!(nginx_time_ms("30"), Some(30_000));
    assert_eq!(nginx_time_ms("500ms"), Some(500));
    assert_eq!(nginx_time_ms("1h30m"), Some(5_400_000));
    assert_eq!(nginx_time_ms("1h 30m"), Some(5_400_000));
    assert_eq!(nginx_time_ms("5x"), None);
    assert_eq!(nginx_time_ms(""), None);
    assert_eq!(nginx_size("13m"), Some(13 << 20));
    assert_eq!(nginx_size("4G"), Some(4 << 30));
    assert_eq!(nginx_size("8k"), Some(8192));
    assert_eq!(nginx_size("m"), None);
}
