//! `triage convert` on real-world nginx configurations written by others (tests/nginx/: the
//! Debian default site, WordPress's, Laravel's, gunicorn's and PM2's documented configs): each
//! converts (exit 0), warns for what it drops naming the file and line (once per directive),
//! carries over what it maps, and the output passes `triage -t`.
//!
//! The certificates those configs name (/etc/ssl/main.crt, ...) are not on this machine: the
//! test points the converted `[[tls.certificates]]` at the repository's example certificate
//! and key before the check, and says so; nothing else in the output is changed.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::triage::{check_config, triage_binary};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn convert(args: &[&str]) -> Output {
    Command::new(triage_binary())
        .arg("convert")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run triage convert")
}

/// What a conversion printed.
struct Converted {
    toml: String,
    stderr: String,
}

impl Converted {
    fn of(args: &[&str]) -> Converted {
        let out = convert(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{args:?}:\n{stderr}");
        Converted {
            toml: String::from_utf8(out.stdout).expect("UTF-8 output"),
            stderr,
        }
    }

    fn warnings(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("warning: "))
            .collect()
    }

    /// Asserts a warning names `file:line` and `directive`, and that every warning has the
    /// documented form and no directive is warned twice.
    fn assert_warns(&self, expected: &[(&str, usize, &str)]) {
        let warnings = self.warnings();
        for (file, line, directive) in expected {
            let head = format!("warning: {file}:{line}: {directive}");
            assert!(
                warnings.iter().any(|w| w.starts_with(&head)),
                "no `{head}` in:\n{}",
                self.stderr
            );
        }
        let mut places = Vec::new();
        for warning in &warnings {
            assert!(
                warning.contains(": not carried over ("),
                "not the documented form: {warning}"
            );
            let place: String = warning
                .trim_start_matches("warning: ")
                .splitn(3, ':')
                .take(2)
                .collect::<Vec<_>>()
                .join(":");
            if !place.ends_with(":0") {
                assert!(
                    !places.contains(&place),
                    "{place} is warned twice:\n{}",
                    self.stderr
                );
                places.push(place);
            }
        }
    }

    fn document(&self) -> toml_edit::DocumentMut {
        self.toml.parse().expect("the output is TOML")
    }

    /// The output with its certificates pointed at the repository's example pair, checked by
    /// `triage -t`.
    fn assert_passes_check(&self) {
        let mut doc = self.document();
        if let Some(certificates) = doc
            .get_mut("tls")
            .and_then(|t| t.get_mut("certificates"))
            .and_then(|c| c.as_array_of_tables_mut())
        {
            for certificate in certificates.iter_mut() {
                certificate["cert_file"] =
                    toml_edit::value(repo("conf/example-cert.pem").display().to_string());
                certificate["key_file"] =
                    toml_edit::value(repo("conf/example-key.pem").display().to_string());
            }
        }
        let text = doc.to_string();
        let out = check_config(&text);
        assert!(
            out.status.success(),
            "triage -t refused the converted config:\n{}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Debian's nginx.conf with its default site (read through `include
/// /etc/nginx/sites-enabled/*` under --sysroot): a static site, so the conversion warns that
/// it proxies nothing, and routes to a placeholder it names; both IPv4 and IPv6 listeners.
#[test]
fn debian_default_site() {
    let root = "tests/nginx/debian";
    let main = "tests/nginx/debian/etc/nginx/nginx.conf";
    let site = "tests/nginx/debian/etc/nginx/sites-enabled/default";
    let converted = Converted::of(&["--sysroot", root, main]);
    converted.assert_warns(&[
        (main, 8, "error_log"),
        (main, 37, "ssl_protocols TLSv1 TLSv1.1"),
        (main, 44, "access_log"),
        (main, 50, "gzip on"),
        (site, 45, "root /var/www/html"),
        (site, 52, "location /"),
        (site, 25, "(the whole configuration)"),
    ]);
    let doc = converted.document();
    assert_eq!(
        doc["listen"]["http"].to_string().trim(),
        r#"["0.0.0.0:80", "[::]:80"]"#
    );
    converted.assert_passes_check();
}

/// Without --sysroot the site is looked for in the real /etc/nginx: an absolute include is
/// read where it says. Here a missing one (not a glob) is an error with the include's place.
#[test]
fn missing_include_is_an_error_with_its_place() {
    let dir = support::triage::temp_dir();
    let main = dir.write_file(
        "nginx.conf",
        "http {\n  include /nonexistent/triage-test/site.conf;\n}\n",
    );
    let out = convert(&[main.to_str().expect("UTF-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2:3: include", main.display())),
        "{stderr}"
    );
}

/// A syntax error exits 1 with file:line:column, and prints no config.
#[test]
fn syntax_error_exits_1_with_line_and_column() {
    let dir = support::triage::temp_dir();
    let main = dir.write_file(
        "nginx.conf",
        "server {\n  listen 80;\n  server_name \"unterminated;\n}\n",
    );
    let out = convert(&[main.to_str().expect("UTF-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:3:15: unterminated", main.display())),
        "{stderr}"
    );
}

/// gunicorn's deployment config: its unix-socket upstream with fail_timeout=0 (never
/// ejected), the 4G body limit, keepalive_timeout, and the static error page warned.
#[test]
fn gunicorn() {
    let main = "tests/nginx/gunicorn/nginx.conf";
    let converted = Converted::of(&[main]);
    converted.assert_warns(&[
        (main, 21, "error_log"),
        (main, 53, "gzip on"),
        (main, 92, "root /path/to/app/current/public"),
        (main, 124, "error_page 500 502 503 504"),
        (main, 125, "location = /500.html"),
    ]);
    let doc = converted.document();
    let upstream = &doc["upstreams"]["app_server"];
    assert_eq!(
        upstream["servers"].to_string().trim(),
        r#"["unix:/tmp/gunicorn.sock"]"#
    );
    assert_eq!(upstream["max_fails"].as_integer(), Some(0));
    let route = &doc["routes"][0];
    assert_eq!(route["path_prefix"].as_str(), Some("/"));
    assert_eq!(route["upstream"].as_str(), Some("app_server"));
    assert_eq!(route["max_body_size"].as_integer(), Some(4 << 30));
    assert_eq!(doc["client"]["keepalive_timeout"].as_str(), Some("5s"));
    converted.assert_passes_check();
}

/// Laravel's config (a file of one server block): the PHP location becomes a FastCGI
/// upstream on php-fpm's socket with the server's root and index, routed from /; the headers
/// it adds and its error page are warned, the dotfile rule is the front controller's own.
#[test]
fn laravel() {
    let main = "tests/nginx/laravel/example.com.conf";
    let converted = Converted::of(&[main]);
    converted.assert_warns(&[
        (main, 11, "add_header X-Frame-Options"),
        (main, 17, "charset utf-8"),
        (main, 23, "access_log off"),
        (main, 26, "error_page 404 /index.php"),
    ]);
    assert!(
        !converted.stderr.contains(&format!("warning: {main}:34:")),
        "the dotfile rule is the front controller's: {}",
        converted.stderr
    );
    let doc = converted.document();
    let php = &doc["upstreams"]["php"];
    assert_eq!(php["protocol"].as_str(), Some("fastcgi"));
    assert_eq!(
        php["servers"].to_string().trim(),
        r#"["unix:/var/run/php/php7.4-fpm.sock"]"#
    );
    assert_eq!(php["root"].as_str(), Some("/srv/example.com/public"));
    assert_eq!(php["index"].as_str(), Some("index.php"));
    assert_eq!(doc["routes"][0]["upstream"].as_str(), Some("php"));
    converted.assert_passes_check();
}

/// WordPress's handbook config, over four files (sites-enabled/* by glob, global/*.conf by
/// relative include): the `upstream php` becomes the FastCGI upstream of example.com's
/// routes with the http block's 13m body limit; the redirect server, the uploads-PHP denial,
/// the static caching location, the site's routes answering on the HTTPS listeners too, and
/// the HTTPS server's wildcard name, HSTS header and old TLS versions are warned; its
/// certificate is carried over.
#[test]
fn wordpress() {
    let main = "tests/nginx/wordpress/nginx.conf";
    let site = "tests/nginx/wordpress/sites-enabled/example.com.conf";
    let https = "tests/nginx/wordpress/sites-enabled/https.conf";
    let rules = "tests/nginx/wordpress/global/wordpress.conf";
    let restrictions = "tests/nginx/wordpress/global/restrictions.conf";
    let converted = Converted::of(&[main]);
    converted.assert_warns(&[
        (main, 16, "error_log"),
        (site, 12, "return 302"),
        // Its routes answer on the HTTPS server's listeners too.
        (site, 15, "server"),
        (restrictions, 30, "location ~* /(?:uploads|files)/.*\\.php$"),
        (rules, 23, "fastcgi_intercept_errors on"),
        (rules, 27, "location ~* \\.(js|css|png|jpg|jpeg|gif|ico)$"),
        (https, 20, "server_name example.com *.example.com"),
        (https, 23, "add_header Strict-Transport-Security"),
        (https, 28, "ssl_protocols TLSv1 TLSv1.1 TLSv1.2"),
    ]);
    let doc = converted.document();
    let php = &doc["upstreams"]["php"];
    assert_eq!(php["protocol"].as_str(), Some("fastcgi"));
    assert_eq!(
        php["servers"].to_string().trim(),
        r#"["unix:/tmp/php-fpm.sock"]"#
    );
    assert_eq!(php["root"].as_str(), Some("/var/www/example.com"));
    let route = &doc["routes"][0];
    assert_eq!(route["host"].as_str(), Some("example.com"));
    assert_eq!(route["upstream"].as_str(), Some("php"));
    assert_eq!(route["max_body_size"].as_integer(), Some(13 << 20));
    assert_eq!(
        doc["listen"]["https"].to_string().trim(),
        r#"["0.0.0.0:443", "[::]:443"]"#
    );
    assert_eq!(
        doc["tls"]["certificates"][0]["cert_file"].as_str(),
        Some("/srv/www/ssl/ssl.crt")
    );
    converted.assert_passes_check();
}

/// PM2's Node.js guide: an https-only server with its certificate, the upstream block
/// (keepalive is triage's own), the WebSocket headers and Host built in, and
/// proxy_read_timeout 240s as the route's read_timeout. It warns for nothing.
#[test]
fn pm2_node() {
    let main = "tests/nginx/pm2/nginx.conf";
    let converted = Converted::of(&[main]);
    let dropped: Vec<&str> = converted
        .warnings()
        .into_iter()
        .filter(|w| !w.contains("(the converted config)"))
        .collect();
    assert!(dropped.is_empty(), "{}", converted.stderr);
    let doc = converted.document();
    assert_eq!(
        doc["listen"]["https"].to_string().trim(),
        r#"["0.0.0.0:443"]"#
    );
    assert_eq!(
        doc["tls"]["certificates"][0]["cert_file"].as_str(),
        Some("/etc/ssl/main.crt")
    );
    assert_eq!(
        doc["upstreams"]["my_nodejs_upstream"]["servers"]
            .to_string()
            .trim(),
        r#"["127.0.0.1:3001"]"#
    );
    let route = &doc["routes"][0];
    assert_eq!(route["upstream"].as_str(), Some("my_nodejs_upstream"));
    assert_eq!(route["read_timeout"].as_str(), Some("4m"));
    converted.assert_passes_check();
}

/// The mapping beyond the guides: server names as hosts (the default server's routes take
/// any host), a host:port proxy_pass, `http://unix:` sockets, weights and max_fails, exact
/// and regex locations, timeouts, a literal Host, rewrites warned, and a named location a
/// try_files falls back to (its proxy_pass and timeout become the route's).
#[test]
fn mapping_of_each_directive() {
    let dir = support::triage::temp_dir();
    let main = dir.write_file(
        "nginx.conf",
        r#"http {
  upstream api {
    server 10.0.0.1:8080 weight=3 max_fails=5 fail_timeout=30s;
    server 10.0.0.2:8080 max_fails=5 fail_timeout=30s;
    keepalive 16;
  }
  server {
    listen 8080 default_server;
    location / { proxy_pass http://127.0.0.1:3000; }
  }
  server {
    listen 8080;
    server_name shop.example.com www.shop.example.com;
    client_max_body_size 0;
    location /api/ {
      proxy_pass http://api;
      proxy_connect_timeout 2s;
      proxy_read_timeout 1h30m;
      proxy_set_header Host api.internal;
    }
    location = /socket { proxy_pass http://unix:/run/app.sock:; }
    location ~ ^/old/(.*)$ { return 301 /new/$1; }
    rewrite ^/a$ /b last;
  }
  server {
    listen 8080;
    server_name named.example;
    location / { try_files $uri @app; }
    location @app { proxy_pass http://localhost:4000; proxy_read_timeout 5s; }
  }
}
"#,
    );
    let file = main.display().to_string();
    let converted = Converted::of(&[&file]);
    converted.assert_warns(&[
        (&file, 22, "location ~ ^/old/(.*)$"),
        (&file, 23, "rewrite"),
        // The files try_files looks for first are not served; the app gets every request.
        (&file, 28, "try_files $uri @app"),
    ]);
    let doc = converted.document();
    let api = &doc["upstreams"]["api"];
    assert_eq!(
        api["servers"].to_string().trim(),
        r#"["10.0.0.1:8080 weight=3", "10.0.0.2:8080"]"#
    );
    assert_eq!(api["max_fails"].as_integer(), Some(5));
    assert_eq!(api["fail_timeout"].as_str(), Some("30s"));
    assert_eq!(api["host_header"].as_str(), Some("api.internal"));
    assert_eq!(
        doc["upstreams"]["app"]["servers"].to_string().trim(),
        r#"["127.0.0.1:3000"]"#
    );
    let routes = doc["routes"].as_array_of_tables().expect("routes");
    let find = |host: Option<&str>, prefix: &str| {
        routes
            .iter()
            .find(|r| {
                r.get("host").and_then(|h| h.as_str()) == host
                    && r["path_prefix"].as_str() == Some(prefix)
            })
            .unwrap_or_else(|| panic!("no route {host:?} {prefix} in\n{}", converted.toml))
    };
    assert_eq!(find(None, "/")["upstream"].as_str(), Some("app"));
    for host in ["shop.example.com", "www.shop.example.com"] {
        let route = find(Some(host), "/api/");
        assert_eq!(route["upstream"].as_str(), Some("api"));
        assert_eq!(route["connect_timeout"].as_str(), Some("2s"));
        assert_eq!(route["read_timeout"].as_str(), Some("90m"));
        assert_eq!(route["max_body_size"].as_integer(), Some(1 << 40));
        let socket = find(Some(host), "/socket");
        let upstream = socket["upstream"].as_str().expect("upstream");
        assert_eq!(
            doc["upstreams"][upstream]["servers"].to_string().trim(),
            r#"["unix:/run/app.sock"]"#
        );
    }
    let named = find(Some("named.example"), "/");
    assert_eq!(named["read_timeout"].as_str(), Some("5s"));
    let upstream = named["upstream"].as_str().expect("upstream");
    assert_eq!(
        doc["upstreams"][upstream]["servers"].to_string().trim(),
        r#"["localhost:4000"]"#
    );
    assert_eq!(
        doc["listen"]["http"].to_string().trim(),
        r#"["0.0.0.0:8080"]"#
    );
    converted.assert_passes_check();
}
