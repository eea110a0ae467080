//! `triage -t -c FILE` checks a config like `nginx -t`: every problem at once, each with its
//! line and column, a non-zero exit, and never a panic.

mod support;

use support::triage::check_config;

/// A valid config passes the check with exit code 0.
#[test]
fn valid_config_passes() {
    let out = check_config(
        "[listen]\nhttp = [\"127.0.0.1:8080\"]\n[upstreams.app]\nservers = [\"127.0.0.1:3000\"]\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("is valid"));
}

/// Unknown keys, bad addresses, bad durations and routes naming missing upstreams are all
/// reported in one run, each with its line and column.
#[test]
fn every_error_is_reported_with_its_position() {
    let text = "\
[listen]
http = [\"not-an-address\"]
[upstreams.app]
servers = [\"127.0.0.1:3000\"]
connect_timeout = \"5 parsecs\"
colour = \"blue\"
[[routes]]
path_prefix = \"/\"
upstream = \"missing\"
";
    let out = check_config(text);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (line, column, what) in [
        (2, 9, "http"),
        (5, 19, "connect_timeout"),
        (6, 1, "colour"),
        (9, 12, "missing"),
    ] {
        let position = format!(":{line}:{column}: ");
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&position) && l.contains(what)),
            "no error at {line}:{column} about {what} in:\n{stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A TOML syntax error is reported with its position, without a panic.
#[test]
fn syntax_error_has_a_position() {
    let out = check_config("[listen\nhttp = 1\n");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(":1:"), "{stderr}");
    assert!(stderr.contains("invalid TOML"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A missing file is an error, not a panic.
#[test]
fn missing_file_is_an_error() {
    let out = std::process::Command::new(support::triage::triage_binary())
        .args(["-t", "-c", "/nonexistent/triage.toml"])
        .output()
        .expect("run triage");
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

/// Every example config shipped in conf/ is valid.
#[test]
fn shipped_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("conf/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = std::process::Command::new(support::triage::triage_binary())
                .arg("-t")
                .arg("-c")
                .arg(&path)
                .output()
                .expect("run triage -t");
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "only {checked} configs in conf/");
}

/// The bounds of config values, in one `triage -t` run: a duration that would overflow an
/// `Instant`, /dev/zero as a certificate, a directory as its key, a FIFO as a CA file, control
/// characters in a path_prefix and a health-check path. Each is reported at its line and
/// column, the check exits 1, and nothing is read until memory runs out or waits forever: the
/// check runs under a 4 GiB address-space limit (so a /dev/zero read fails at once instead of
/// taking the machine's memory) and is killed after 15 s.
#[test]
fn unusable_values_are_reported_with_their_positions() {
    let dir = support::triage::temp_dir();
    let fifo = dir.path().join("ca.pem");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo {}", fifo.display());
    let text = format!(
        "\
[listen]
http = [\"127.0.0.1:8080\"]
https = [\"127.0.0.1:8443\"]
[[tls.certificates]]
cert_file = \"/dev/zero\"
key_file = \"{dir}\"
[upstreams.app]
servers = [\"127.0.0.1:3000\"]
connect_timeout = \"9223372036854775807s\"
[upstreams.secure]
servers = [\"127.0.0.1:3443\"]
tls = true
ca_file = \"{fifo}\"
[upstreams.checked]
servers = [\"127.0.0.1:3001\"]
[upstreams.checked.health_check]
path = \"/health\\r\\nX-Injected: 1\"
[[routes]]
path_prefix = \"/api\\u0000\"
upstream = \"app\"
",
        dir = dir.path().display(),
        fifo = fifo.display(),
    );
    let out = support::triage::check_config_command(&text, |config| {
        let mut command = std::process::Command::new("sh");
        command
            .args(["-c", "ulimit -v 4194304 && exec \"$0\" \"$@\""])
            .arg(support::triage::triage_binary())
            .args(["-t", "-c"])
            .arg(config);
        command
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for (line, column, what) in [
        (
            5,
            13,
            "cert_file: /dev/zero is not a regular file but a character device",
        ),
        (6, 12, "key_file: "),
        (6, 12, "is not a regular file but a directory"),
        (
            9,
            19,
            "connect_timeout: `9223372036854775807s` is longer than the 1h maximum",
        ),
        (13, 11, "is not a regular file but a FIFO"),
        (
            17,
            8,
            "path: `/health\\r\\nX-Injected: 1` contains the control character U+000D",
        ),
        (
            19,
            15,
            "path_prefix: `/api\\0` contains the control character U+0000",
        ),
    ] {
        let position = format!(":{line}:{column}: ");
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&position) && l.contains(what)),
            "no error at {line}:{column} saying {what:?} in:\n{stderr}"
        );
    }
    assert_eq!(stderr.lines().count(), 7, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
