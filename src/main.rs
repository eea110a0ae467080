//! The `triage` command: run the proxy, check a config, or run the demo.

use std::path::PathBuf;
use std::process::ExitCode;

// Per request, Pingora and triage allocate and free a few dozen small blocks (header maps,
// names, values, buffers). mimalloc's thread-local free lists serve them in a fraction of
// glibc malloc's instructions; see benches/README.md for the measurement.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
usage: triage -c FILE        run the proxy with this config
       triage -c FILE --upgrade
                             take the listening sockets over from a running triage (zero-downtime
                             binary upgrade; then send SIGQUIT to the old process)
       triage -t -c FILE     check the config and exit (like nginx -t)
       triage reload -c FILE reload the running triage's config (also: SIGHUP, POST /reload)
       triage demo [-c FILE] run a demo app with faults, and triage in front of it
                             (default config: conf/demo.toml)
       triage --version";

enum Command {
    Run(PathBuf, bool),
    Check(PathBuf),
    Reload(PathBuf),
    Demo(PathBuf),
    Version,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
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

/// Asks the running triage (found through the config's admin address) to reload its config,
/// with what the admin listener requires: a Host naming it, the `X-Triage-Admin` header of a
/// state change, and the token of `[admin] token_file` when there is one.
fn reload(path: &std::path::Path) -> ExitCode {
    use std::io::{Read, Write};
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => {
            eprintln!("triage: nothing sent; the running triage keeps its config");
            return code;
        }
    };
    let admin = config.boot.admin.listen;
    let authorization = config
        .boot
        .admin
        .token
        .as_ref()
        .map_or_else(String::new, |token| {
            format!("Authorization: Bearer {}\r\n", token.secret())
        });
    let request = format!(
        "POST /reload HTTP/1.1\r\nHost: localhost\r\n{}: 1\r\n{authorization}\
         Content-Length: 0\r\nConnection: close\r\n\r\n",
        triage::admin::ADMIN_HEADER
    );
    let exchange = || -> std::io::Result<String> {
        let mut stream =
            std::net::TcpStream::connect_timeout(&admin, std::time::Duration::from_secs(5))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
        stream.write_all(request.as_bytes())?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    };
    match exchange() {
        Ok(response) => {
            let ok = response.starts_with("HTTP/1.1 200");
            let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            if ok {
                print!("{body}");
                ExitCode::SUCCESS
            } else {
                eprint!("{body}");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("triage: cannot reach the admin listener at {admin}: {e}");
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
