//! The front controller WordPress, Laravel and Symfony need, as Caddy's `php_fastcgi` and
//! nginx's `try_files $uri $uri/ /index.php?$query_string` give it: a request for a file under
//! `root` that is not a PHP script is served from disk, a `.php` script that exists runs, a
//! directory runs its `index`, and anything else runs `/index` with the original URI, for the
//! framework's router. With `front_controller = false` every request runs `root` + its path
//! (a path ending in `/` its `index`) and nothing is read from disk.
//!
//! A path never leaves `root`: it is decoded once, a `.` or `..` segment that survives the
//! router's normalizing (`%2e%2e` decoded here) is refused, and a file is only served or run
//! when its path with every symlink resolved is still under `root`'s. Dotfiles (`/.env`,
//! `/.git/config`) are never served (only `/.well-known/`); they go to the front controller
//! like any missing file. PHP sources and their kin (`.phtml`, `.inc`, ...) are never served
//! either: they run, or go to the front controller.
//!
//! Only `GET` and `HEAD` are served from disk; any other method goes to the front controller,
//! so a `POST` to a path that happens to be a file reaches the app. A file is answered as nginx
//! answers it: `Content-Type` by extension, `Last-Modified` and an `ETag` of modification time
//! and size, `304` to a matching `If-None-Match` or `If-Modified-Since`, one byte range
//! (`Range`, `If-Range`; `416` when unsatisfiable), headers alone to `HEAD`.

use super::params::Script;
use crate::config::Fastcgi;
use http::header::{self, HeaderMap, HeaderValue};
use std::fs::Metadata;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Extensions never served from disk: PHP sources and the files they include.
const NEVER_SERVED: [&str; 11] = [
    "php", "phtml", "phar", "php3", "php4", "php5", "php7", "php8", "phps", "inc", "htaccess",
];

/// What a request gets.
#[derive(Debug)]
pub enum Target {
    /// A file under root, served from disk.
    File { path: PathBuf, metadata: Metadata },
    /// A directory asked for without its final `/`: redirected to it (nginx's 301), so that
    /// the page's relative links resolve in it.
    AddSlash,
    /// A script run by the FastCGI server; `on_disk` when triage found it under root.
    Script { script: Script, on_disk: bool },
}

/// Why a path is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outside(pub String);

/// `path` (the router's normal form) fully percent-decoded, refused when a segment is `.` or
/// `..` once decoded, when it holds a NUL, or when it is not UTF-8 (a file name triage could
/// not give the FastCGI server as the client wrote it).
pub fn decode(path: &str) -> Result<String, Outside> {
    let mut decoded = Vec::with_capacity(path.len());
    let mut rest = path.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        match (byte, tail) {
            (b'%', [high, low, after @ ..]) => match (hex(*high), hex(*low)) {
                (Some(h), Some(l)) => {
                    decoded.push(h << 4 | l);
                    rest = after;
                }
                _ => return Err(Outside(format!("`{path}` has a bad percent-encoding"))),
            },
            (b'%', _) => return Err(Outside(format!("`{path}` has a bad percent-encoding"))),
            _ => {
                decoded.push(byte);
                rest = tail;
            }
        }
    }
    let decoded = String::from_utf8(decoded)
        .map_err(|_| Outside("the path is not UTF-8 once decoded".to_owned()))?;
    if decoded.contains('\0') {
        return Err(Outside("the path has a NUL once decoded".to_owned()));
    }
    if decoded.split('/').any(|s| s == "." || s == "..") {
        return Err(Outside(format!(
            "the path climbs with a dot-segment once decoded: {decoded}"
        )));
    }
    Ok(decoded)
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

/// The script part of `path` and what follows it: split after the first `.php` that a `/`
/// follows (`/index.php/a/b`), as Caddy's `split_path .php`.
fn split_path_info(path: &str) -> (&str, &str) {
    match path.find(".php/") {
        Some(at) => path.split_at(at + 4),
        None => (path, ""),
    }
}

/// The script for `path` without looking at the disk: `root` + its path, its `index` for a path
/// ending in `/` (the front controller off).
pub fn script_of(cfg: &Fastcgi, path: &str) -> Script {
    let (name, path_info) = split_path_info(path);
    let mut name = name.to_owned();
    if name.ends_with('/') {
        name.push_str(&cfg.index);
    }
    Script {
        name,
        path_info: path_info.to_owned(),
    }
}

/// A script that exists under root.
fn found(name: String, path_info: &str) -> Target {
    Target::Script {
        script: Script {
            name,
            path_info: path_info.to_owned(),
        },
        on_disk: true,
    }
}

/// The front controller's answer for the decoded `path` under root (blocking: it reads the
/// file system). `served` says whether the method may be served from disk.
pub fn resolve(cfg: &Fastcgi, path: &str, served: bool) -> Result<Target, Outside> {
    let found_now;
    let local_root = match cfg.local_root.as_deref() {
        Some(root) => root,
        None => match std::fs::canonicalize(&cfg.root).ok().filter(|r| r.is_dir()) {
            Some(root) => {
                found_now = root;
                &found_now
            }
            // Not on this machine: nothing is served from disk; a script runs, any other path
            // goes to the front controller, and the FastCGI server decides.
            None => {
                let script = script_of(cfg, path);
                let script = match script.name.ends_with(".php") {
                    true => script,
                    false => Script {
                        name: format!("/{}", cfg.index),
                        path_info: String::new(),
                    },
                };
                return Ok(Target::Script {
                    script,
                    on_disk: false,
                });
            }
        },
    };
    let front = || Target::Script {
        script: Script {
            name: format!("/{}", cfg.index),
            path_info: String::new(),
        },
        on_disk: local_root.join(&cfg.index).is_file(),
    };
    let (script, path_info) = split_path_info(path);
    let candidate = local_root.join(script.trim_start_matches('/'));
    let real = match std::fs::canonicalize(&candidate) {
        Ok(real) => real,
        // Missing, a file where a directory was expected, unreadable: the app's router decides.
        Err(_) => return Ok(front()),
    };
    if !real.starts_with(local_root) {
        return Err(Outside(format!(
            "{} resolves to {}, outside root",
            candidate.display(),
            real.display()
        )));
    }
    let Ok(metadata) = std::fs::metadata(&real) else {
        return Ok(front());
    };
    if metadata.is_dir() {
        let index = real.join(&cfg.index);
        let runs_index = path_info.is_empty()
            && std::fs::canonicalize(&index)
                .is_ok_and(|i| i.starts_with(local_root) && i.is_file());
        return Ok(match (runs_index, script.ends_with('/')) {
            (false, _) => front(),
            (true, false) => Target::AddSlash,
            (true, true) => found(format!("{script}{}", cfg.index), ""),
        });
    }
    if !metadata.is_file() {
        return Ok(front());
    }
    if script.ends_with(".php") {
        return Ok(found(script.to_owned(), path_info));
    }
    let extension = script.rsplit_once('.').map_or("", |(_, e)| e);
    let hidden = script
        .split('/')
        .any(|segment| segment.starts_with('.') && segment != ".well-known");
    let never = NEVER_SERVED
        .iter()
        .any(|e| e.eq_ignore_ascii_case(extension));
    if !served || !path_info.is_empty() || hidden || never {
        return Ok(front());
    }
    Ok(Target::File {
        path: real,
        metadata,
    })
}

/// How a file is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileAnswer {
    pub status: http::StatusCode,
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
    /// The bytes sent, start and length; none for 304, 416 and HEAD.
    pub body: Option<(u64, u64)>,
}

/// The answer to a request with `headers` for a file of `metadata` named `name`.
pub fn answer(name: &str, metadata: &Metadata, headers: &HeaderMap, head: bool) -> FileAnswer {
    let length = metadata.len();
    let modified = metadata.modified().unwrap_or(UNIX_EPOCH);
    let mtime = modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let etag = format!("\"{mtime:x}-{length:x}\"");
    let last_modified = httpdate::fmt_http_date(modified);
    let mut out = vec![
        (header::ETAG, value(&etag)),
        (header::LAST_MODIFIED, value(&last_modified)),
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
    ];
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let not_modified = match (text(header::IF_NONE_MATCH), text(header::IF_MODIFIED_SINCE)) {
        (Some(tags), _) => tags
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag),
        (None, Some(since)) => {
            httpdate::parse_http_date(since).is_ok_and(|since| truncated(modified) <= since)
        }
        (None, None) => false,
    };
    if not_modified {
        return FileAnswer {
            status: http::StatusCode::NOT_MODIFIED,
            headers: out,
            body: None,
        };
    }
    out.push((
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    ));
    // If-Range: the range applies only to the file the client has.
    let range_applies = text(header::IF_RANGE).is_none_or(|condition| {
        condition == etag
            || httpdate::parse_http_date(condition).is_ok_and(|at| at == truncated(modified))
    });
    let range = text(header::RANGE)
        .filter(|_| range_applies)
        .map(|r| byte_range(r, length));
    let (status, start, count) = match range {
        Some(Some(Ok((start, count)))) => {
            let end = start + count - 1;
            out.push((
                header::CONTENT_RANGE,
                value(&format!("bytes {start}-{end}/{length}")),
            ));
            (http::StatusCode::PARTIAL_CONTENT, start, count)
        }
        Some(Some(Err(Unsatisfiable))) => {
            out.push((header::CONTENT_RANGE, value(&format!("bytes */{length}"))));
            out.push((header::CONTENT_LENGTH, HeaderValue::from(0)));
            return FileAnswer {
                status: http::StatusCode::RANGE_NOT_SATISFIABLE,
                headers: out,
                body: None,
            };
        }
        // No range, several, or one triage does not read: the whole file, as RFC 9110 allows.
        Some(None) | None => (http::StatusCode::OK, 0, length),
    };
    out.push((header::CONTENT_LENGTH, HeaderValue::from(count)));
    FileAnswer {
        status,
        headers: out,
        body: (!head && count > 0).then_some((start, count)),
    }
}

/// A header value from text triage wrote (digits, hex, an HTTP date, ASCII).
fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `at` to the second, as HTTP dates carry it.
fn truncated(at: SystemTime) -> SystemTime {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

#[derive(Debug, PartialEq, Eq)]
struct Unsatisfiable;

/// One range of `bytes=` (`a-b`, `a-`, `-n`) as start and length: `None` for anything else
/// (several ranges, another unit, a syntax triage does not read), which is answered whole.
fn byte_range(range: &str, length: u64) -> Option<Result<(u64, u64), Unsatisfiable>> {
    let spec = range.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let number = |text: &str| -> Option<u64> {
        let text = text.trim();
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    Some(match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, true) => return None,
        // The last n bytes.
        (true, false) => {
            let n = number(last)?;
            if n == 0 || length == 0 {
                Err(Unsatisfiable)
            } else {
                let n = n.min(length);
                Ok((length - n, n))
            }
        }
        (false, open) => {
            let start = number(first)?;
            let end = if open { u64::MAX } else { number(last)? };
            if end < start {
                return None;
            }
            if start >= length {
                Err(Unsatisfiable)
            } else {
                let end = end.min(length - 1);
                Ok((start, end - start + 1))
            }
        }
    })
}

/// The media type of a file, by its extension: the types a web app's public directory holds;
/// anything else is `application/octet-stream`, as nginx's `default_type` usually is.
pub fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map_or("", |(_, e)| e);
    const TYPES: [(&str, &str); 40] = [
        ("html", "text/html; charset=utf-8"),
        ("htm", "text/html; charset=utf-8"),
        ("css", "text/css; charset=utf-8"),
        ("js", "text/javascript; charset=utf-8"),
        ("mjs", "text/javascript; charset=utf-8"),
        ("json", "application/json"),
        ("map", "application/json"),
        ("webmanifest", "application/manifest+json"),
        ("xml", "application/xml"),
        ("txt", "text/plain; charset=utf-8"),
        ("csv", "text/csv; charset=utf-8"),
        ("md", "text/markdown; charset=utf-8"),
        ("svg", "image/svg+xml"),
        ("png", "image/png"),
        ("jpg", "image/jpeg"),
        ("jpeg", "image/jpeg"),
        ("gif", "image/gif"),
        ("webp", "image/webp"),
        ("avif", "image/avif"),
        ("ico", "image/x-icon"),
        ("bmp", "image/bmp"),
        ("woff", "font/woff"),
        ("woff2", "font/woff2"),
        ("ttf", "font/ttf"),
        ("otf", "font/otf"),
        ("eot", "application/vnd.ms-fontobject"),
        ("pdf", "application/pdf"),
        ("zip", "application/zip"),
        ("gz", "application/gzip"),
        ("tar", "application/x-tar"),
        ("wasm", "application/wasm"),
        ("mp4", "video/mp4"),
        ("webm", "video/webm"),
        ("ogv", "video/ogg"),
        ("mp3", "audio/mpeg"),
        ("ogg", "audio/ogg"),
        ("wav", "audio/wav"),
        ("m4a", "audio/mp4"),
        ("rss", "application/rss+xml"),
        ("atom", "application/atom+xml"),
    ];
    TYPES
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(extension))
        .map_or("application/octet-stream", |(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A directory of its own under the system's temp dir, removed at the end.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("triage-files-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            TempDir(std::fs::canonicalize(dir).expect("canonical"))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn run(root: &Path, path: &str, served: bool) -> Result<String, Outside> {
        let cfg = Fastcgi {
            root: "/srv/public".to_owned(),
            index: "index.php".to_owned(),
            params: Vec::new(),
            front_controller: true,
            local_root: Some(root.to_owned()),
        };
        resolve(&cfg, path, served).map(|t| match t {
            Target::File { path, .. } => format!("file {}", path.display()),
            Target::AddSlash => "add slash".to_owned(),
            Target::Script { script, on_disk } => {
                format!(
                    "run {} [{}]{}",
                    script.name,
                    script.path_info,
                    if on_disk { "" } else { " (not on disk)" }
                )
            }
        })
    }

    /// The front controller's choices, as try_files $uri $uri/ /index.php makes them.
    #[test]
    fn front_controller_choices() {
        let dir = TempDir::new("choices");
        let root = &dir.0;
        for file in [
            "index.php",
            "style.css",
            "admin/index.php",
            "info.php",
            ".env",
            ".well-known/x.txt",
            "lib.inc",
        ] {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
            std::fs::write(&path, "x").expect("write");
        }
        std::fs::create_dir_all(root.join("empty")).expect("dir");
        let file = |name: &str| format!("file {}", root.join(name).display());
        assert_eq!(run(root, "/style.css", true), Ok(file("style.css")));
        assert_eq!(
            run(root, "/.well-known/x.txt", true),
            Ok(file(".well-known/x.txt"))
        );
        for routed in [
            "/blog/hello-world",
            "/style.css/x",
            "/.env",
            "/lib.inc",
            "/empty/",
            "/missing.php",
        ] {
            assert_eq!(
                run(root, routed, true),
                Ok("run /index.php []".to_owned()),
                "{routed}"
            );
        }
        // Not GET or HEAD: the app gets it.
        assert_eq!(
            run(root, "/style.css", false),
            Ok("run /index.php []".to_owned())
        );
        assert_eq!(
            run(root, "/info.php/a/b", true),
            Ok("run /info.php [/a/b]".to_owned())
        );
        assert_eq!(
            run(root, "/admin/", true),
            Ok("run /admin/index.php []".to_owned())
        );
        assert_eq!(run(root, "/admin", true), Ok("add slash".to_owned()));
    }

    /// With root not on this machine, nothing is served from disk: a script runs, anything else
    /// goes to the front controller, neither seen on disk.
    #[test]
    fn root_elsewhere() {
        let cfg = Fastcgi {
            root: "/nowhere/triage-test/public".to_owned(),
            index: "index.php".to_owned(),
            params: Vec::new(),
            front_controller: true,
            local_root: None,
        };
        let run = |path: &str| match resolve(&cfg, path, true) {
            Ok(Target::Script { script, on_disk }) => (script.name, on_disk),
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(run("/style.css"), ("/index.php".to_owned(), false));
        assert_eq!(run("/wp-login.php"), ("/wp-login.php".to_owned(), false));
    }

    /// A symlink out of root is refused, one inside it is followed; dot-segments and NULs
    /// that only decoding reveals are refused before the disk is looked at.
    #[test]
    fn nothing_outside_root() {
        let outside = TempDir::new("outside");
        std::fs::write(outside.0.join("secret.txt"), "secret").expect("write");
        let dir = TempDir::new("inside");
        let root = &dir.0;
        std::fs::write(root.join("real.txt"), "x").expect("write");
        std::os::unix::fs::symlink(outside.0.join("secret.txt"), root.join("leak.txt"))
            .expect("link");
        std::os::unix::fs::symlink(&outside.0, root.join("leakdir")).expect("link");
        std::os::unix::fs::symlink(root.join("real.txt"), root.join("alias.txt")).expect("link");
        assert!(run(root, "/leak.txt", true).is_err());
        assert!(run(root, "/leakdir/secret.txt", true).is_err());
        assert_eq!(
            run(root, "/alias.txt", true),
            Ok(format!("file {}", root.join("real.txt").display()))
        );
        for bad in [
            "/a/%2e%2e/b",
            "/%2E%2e/etc/passwd",
            "/a/%00",
            "/%ff",
            "/a/%2",
        ] {
            assert!(decode(bad).is_err(), "{bad}");
        }
        assert_eq!(decode("/my%20file.css").as_deref(), Ok("/my file.css"));
    }

    fn metadata_of(content: &[u8]) -> (TempDir, Metadata) {
        let dir = TempDir::new(&format!("answer-{}", content.len()));
        let path = dir.0.join("f.css");
        std::fs::write(&path, content).expect("write");
        let metadata = std::fs::metadata(&path).expect("metadata");
        (dir, metadata)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("value"));
        }
        map
    }

    fn get<'a>(answer: &'a FileAnswer, name: &str) -> Option<&'a str> {
        answer
            .headers
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    /// Validators, 304s, one range, 416 and HEAD, as nginx answers them.
    #[test]
    fn answers_as_nginx_does() {
        let (_dir, metadata) = metadata_of(b"0123456789");
        let whole = answer("/f.css", &metadata, &HeaderMap::new(), false);
        assert_eq!(whole.status, 200);
        assert_eq!(whole.body, Some((0, 10)));
        assert_eq!(get(&whole, "content-type"), Some("text/css; charset=utf-8"));
        assert_eq!(get(&whole, "content-length"), Some("10"));
        let etag = get(&whole, "etag").expect("etag").to_owned();
        let modified = get(&whole, "last-modified")
            .expect("last-modified")
            .to_owned();
        for conditional in [
            headers(&[("if-none-match", &etag)]),
            headers(&[("if-none-match", &format!("\"x\", W/{etag}"))]),
            headers(&[("if-modified-since", &modified)]),
        ] {
            let answer = answer("/f.css", &metadata, &conditional, false);
            assert_eq!((answer.status.as_u16(), answer.body), (304, None));
        }
        let stale = answer(
            "/f.css",
            &metadata,
            &headers(&[("if-none-match", "\"other\"")]),
            false,
        );
        assert_eq!(stale.status, 200);
        for (range, status, body, content_range) in [
            ("bytes=2-4", 206, Some((2, 3)), Some("bytes 2-4/10")),
            ("bytes=7-", 206, Some((7, 3)), Some("bytes 7-9/10")),
            ("bytes=-3", 206, Some((7, 3)), Some("bytes 7-9/10")),
            ("bytes=5-100", 206, Some((5, 5)), Some("bytes 5-9/10")),
            ("bytes=10-", 416, None, Some("bytes */10")),
            ("bytes=0-1,4-5", 200, Some((0, 10)), None),
            ("items=0-1", 200, Some((0, 10)), None),
        ] {
            let answer = answer("/f.css", &metadata, &headers(&[("range", range)]), false);
            assert_eq!(answer.status.as_u16(), status, "{range}");
            assert_eq!(answer.body, body, "{range}");
            assert_eq!(get(&answer, "content-range"), content_range, "{range}");
        }
        let other_file = headers(&[("range", "bytes=2-4"), ("if-range", "\"other\"")]);
        assert_eq!(answer("/f.css", &metadata, &other_file, false).status, 200);
        let same_file = headers(&[("range", "bytes=2-4"), ("if-range", &etag)]);
        assert_eq!(answer("/f.css", &metadata, &same_file, false).status, 206);
        let head = answer("/f.css", &metadata, &HeaderMap::new(), true);
        assert_eq!((head.status.as_u16(), head.body), (200, None));
        assert_eq!(get(&head, "content-length"), Some("10"));
    }
}
