//! The `triage` command: run the proxy, check a config, run the demo, ask a running triage
//! to reload its config or to record a deploy marker, or convert an nginx configuration.

use std::path::PathBuf;
use std::process::ExitCode;

// mimalloc, for the few dozen small blocks every request allocates (triage::allocator says why
// and how).
#[global_allocator]
static ALLOCATOR: triage::allocator::Mimalloc = triage::allocator::Mimalloc;

const USAGE: &str = "\
usage: triage -c FILE        run the proxy with this config
       triage -c FILE --upgrade
                             take the listening sockets over from a running triage (zero-downtime
                             binary upgrade; then send SIGQUIT to the old process)
       triage -t -c FILE     check the config and exit (like nginx -t)
       triage reload -c FILE reload the running triage's config (also: SIGHUP, POST /reload)
       triage deployed -c FILE [--upstream NAME] [--version V]
                             record a deploy marker in the running triage (also: POST
                             /deploys): of upstream NAME (default: all upstreams), version V
                             (default: unknown); failures soon after it name the deploy
       triage convert [--prefix DIR] [--sysroot DIR] NGINX_CONF
                             print the triage.toml equivalent to an nginx configuration (its
                             includes read as nginx does: relative to DIR, default the file's
                             directory; absolute ones under --sysroot when given), with a
                             warning on stderr for each directive not carried over
       triage demo [-c FILE] run a demo app with faults, and triage in front of it
                             (default config: conf/demo.toml)
       triage --version";

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Run(PathBuf, bool),
    Check(PathBuf),
    Reload(PathBuf),
    Deployed(PathBuf, Deployed),
    Demo(PathBuf),
    Convert(PathBuf, triage::convert::Roots),
    Version,
}

/// What `triage deployed` records.
#[derive(Debug, Default, PartialEq, Eq)]
struct Deployed {
    upstream: Option<String>,
    version: Option<String>,
}

impl Deployed {
    /// The `POST /deploys` body.
    fn body(&self) -> String {
        serde_json::json!({ "upstream": self.upstream, "version": self.version }).to_string()
    }
}

/// `triage deployed`'s options (after the word `deployed`), which have values of their own:
/// `--version` here is the deploy's version, not triage's.
fn parse_deployed(args: &[String]) -> Result<Command, String> {
    let mut config = None;
    let mut deployed = Deployed::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = |what: &str| {
            iter.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs {what}"))
        };
        match arg.as_str() {
            "-c" | "--config" => config = Some(PathBuf::from(value("a file")?)),
            "--upstream" => deployed.upstream = Some(value("an upstream name")?),
            "--version" => deployed.version = Some(value("the deployed version")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument of deployed: {other}")),
        }
    }
    match config {
        Some(path) => Ok(Command::Deployed(path, deployed)),
        None => Err("deployed needs the config file: -c FILE".to_owned()),
    }
}

/// `triage convert`'s options (after the word `convert`) and the nginx file.
fn parse_convert(args: &[String]) -> Result<Command, String> {
    let mut roots = triage::convert::Roots::default();
    let mut file = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut dir = || {
            iter.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{arg} needs a directory"))
        };
        match arg.as_str() {
            "--prefix" | "-p" => roots.prefix = Some(dir()?),
            "--sysroot" => roots.sysroot = Some(dir()?),
            "-h" | "--help" => return Err(String::new()),
            other if other.starts_with('-') && other.len() > 1 => {
                return Err(format!("unknown argument of convert: {other}"))
            }
            path if file.is_none() => file = Some(PathBuf::from(path)),
            extra => return Err(format!("convert takes one nginx file; also given: {extra}")),
        }
    }
    match file {
        Some(path) => Ok(Command::Convert(path, roots)),
        None => Err(
            "convert needs the nginx configuration file: triage convert /etc/nginx/nginx.conf"
                .to_owned(),
        ),
    }
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    match args
        .split_first()
        .map(|(first, rest)| (first.as_str(), rest))
    {
        Some(("deployed", rest)) => return parse_deployed(rest),
        Some(("convert", rest)) => return parse_convert(rest),
        _ => {}
    }
    let mut config = None;
    let mut check = false;
    let mut demo = false;
    let mut reload = false;
    let mut upgrade = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-c" | "--config" => {
                let path = iter.next().ok_or("-c needs a file")?;
                config = Some(PathBuf::from(path));
            }
            "-t" | "--test" => check = true,
            "demo" => demo = true,
            "reload" => reload = true,
            "-u" | "--upgrade" => upgrade = true,
            "-V" | "--version" => return Ok(Command::Version),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    if reload {
        return match (demo || check || upgrade, config) {
            (false, Some(path)) => Ok(Command::Reload(path)),
            (true, _) => Err("reload takes only -c FILE".to_owned()),
            (false, None) => Err("reload needs the config file: -c FILE".to_owned()),
        };
    }
    match (demo, check, config) {
        (true, false, config) => Ok(Command::Demo(
            config.unwrap_or_else(|| PathBuf::from("conf/demo.toml")),
        )),
        (false, true, Some(path)) => Ok(Command::Check(path)),
        (false, false, Some(path)) => Ok(Command::Run(path, upgrade)),
        (true, true, _) => Err("demo does not take -t".to_owned()),
        (false, _, None) => Err("a config file is required: -c FILE".to_owned()),
    }
}

fn load(path: &std::path::Path) -> Result<triage::config::Config, ExitCode> {
    triage::config::load(path).map_err(|errors| {
        eprintln!("triage: {} has errors:", path.display());
        for e in &errors.0 {
            eprintln!("{}:{}:{}: {}", path.display(), e.line, e.column, e.message);
        }
        ExitCode::FAILURE
    })
}

/// Asks the running triage (found through the config's admin address) to reload its config.
fn reload(path: &std::path::Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => {
            eprintln!("triage: nothing sent; the running triage keeps its config");
            return code;
        }
    };
    match triage::admin::client::post(&config.boot.admin, "/reload", None) {
        Ok(answer) if answer.is_success() => {
            print!("{}", answer.body);
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            eprint!("{}", answer.body);
            ExitCode::FAILURE
        }
        Err(message) => {
            eprintln!("triage: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Records a deploy marker in the running triage (found through the config's admin address)
/// and prints it as recorded.
fn deployed(path: &std::path::Path, deployed: &Deployed) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => {
            eprintln!("triage: no deploy marker recorded");
            return code;
        }
    };
    match triage::admin::client::post(&config.boot.admin, "/deploys", Some(&deployed.body())) {
        Ok(answer) if answer.is_success() => {
            println!("{}", answer.body.trim_end());
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            eprintln!(
                "triage: no deploy marker recorded: the admin listener answered {}: {}",
                answer.status,
                answer.body.trim_end()
            );
            ExitCode::FAILURE
        }
        Err(message) => {
            eprintln!("triage: no deploy marker recorded: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the triage config converted from an nginx one, and its warnings on stderr.
fn convert(path: &std::path::Path, roots: &triage::convert::Roots) -> ExitCode {
    match triage::convert::convert(path, roots) {
        Ok(conversion) => {
            for note in &conversion.notes {
                eprintln!("{note}");
            }
            print!("{}", conversion.toml);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("triage: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path, with_demo: bool, upgrade: bool) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    triage::server::init_logging(
        &config.boot.log.level,
        &config.boot.log.format,
        config.boot.log.error_lines_per_second,
    );
    if with_demo {
        if let Err(e) = triage::demo::spawn(&config.live) {
            eprintln!("triage: cannot start the demo app: {e}");
            return ExitCode::FAILURE;
        }
    }
    match triage::server::build(config, path, upgrade) {
        Ok(server) => server.run_forever(),
        Err(e) => {
            eprintln!("triage: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Ok(Command::Version) => {
            println!("triage {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Check(path)) => match load(&path) {
            Ok(_) => {
                println!("triage: {} is valid", path.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Ok(Command::Run(path, upgrade)) => run(&path, false, upgrade),
        Ok(Command::Demo(path)) => run(&path, true, false),
        Ok(Command::Reload(path)) => reload(&path),
        Ok(Command::Deployed(path, marker)) => deployed(&path, &marker),
        Ok(Command::Convert(path, roots)) => convert(&path, &roots),
        Err(message) => {
            if !message.is_empty() {
                eprintln!("triage: {message}");
            }
            eprintln!("{USAGE}");
            if message.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    /// `convert` takes one nginx file and its two directory options; anything else is an
    /// error naming it.
    #[test]
    fn convert_takes_a_file_and_its_roots() {
        assert_eq!(
            parse(&[
                "convert",
                "--sysroot",
                "copy",
                "--prefix",
                "/etc/nginx",
                "nginx.conf"
            ]),
            Ok(Command::Convert(
                PathBuf::from("nginx.conf"),
                triage::convert::Roots {
                    prefix: Some(PathBuf::from("/etc/nginx")),
                    sysroot: Some(PathBuf::from("copy")),
                },
            ))
        );
        for (args, message) in [
            (
                &["convert"][..],
                "convert needs the nginx configuration file",
            ),
            (
                &["convert", "a", "b"],
                "convert takes one nginx file; also given: b",
            ),
            (&["convert", "-t", "a"], "unknown argument of convert: -t"),
            (&["convert", "a", "--prefix"], "--prefix needs a directory"),
        ] {
            let error = parse(args).err().unwrap_or_default();
            assert!(error.starts_with(message), "{args:?}: {error}");
        }
    }

    /// After `deployed`, `--version` is the deploy's version, not triage's; both options are
    /// optional, the config is not, and an option without its value is an error.
    #[test]
    fn deployed_takes_its_own_options() {
        let marker = |upstream: Option<&str>, version: Option<&str>| {
            Command::Deployed(
                PathBuf::from("t.toml"),
                Deployed {
                    upstream: upstream.map(str::to_owned),
                    version: version.map(str::to_owned),
                },
            )
        };
        assert_eq!(
            parse(&[
                "deployed",
                "-c",
                "t.toml",
                "--upstream",
                "app",
                "--version",
                "v1.2"
            ]),
            Ok(marker(Some("app"), Some("v1.2")))
        );
        assert_eq!(
            parse(&["deployed", "--version", "v2", "-c", "t.toml"]),
            Ok(marker(None, Some("v2")))
        );
        assert_eq!(parse(&["deployed", "-c", "t.toml"]), Ok(marker(None, None)));
        assert!(matches!(parse(&["--version"]), Ok(Command::Version)));
        for (args, message) in [
            (&["deployed"][..], "deployed needs the config file: -c FILE"),
            (
                &["deployed", "-c", "t.toml", "--version"],
                "--version needs the deployed version",
            ),
            (
                &["deployed", "-c", "t.toml", "--upstream"],
                "--upstream needs an upstream name",
            ),
            (
                &["deployed", "-c", "t.toml", "-t"],
                "unknown argument of deployed: -t",
            ),
        ] {
            assert_eq!(parse(args).err().as_deref(), Some(message), "{args:?}");
        }
        assert_eq!(
            Deployed::default().body(),
            r#"{"upstream":null,"version":null}"#
        );
    }
}
