//! The `triage` command: run the proxy, check a config, or run the demo.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: triage -c FILE        run the proxy with this config
       triage -t -c FILE     check the config and exit (like nginx -t)
       triage demo [-c FILE] run a demo app with faults, and triage in front of it
                             (default config: conf/demo.toml)
       triage --version";

enum Command {
    Run(PathBuf),
    Check(PathBuf),
    Demo(PathBuf),
    Version,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut config = None;
    let mut check = false;
    let mut demo = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-c" | "--config" => {
                let path = iter.next().ok_or("-c needs a file")?;
                config = Some(PathBuf::from(path));
            }
            "-t" | "--test" => check = true,
            "demo" => demo = true,
            "-V" | "--version" => return Ok(Command::Version),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    match (demo, check, config) {
        (true, false, config) => Ok(Command::Demo(
            config.unwrap_or_else(|| PathBuf::from("conf/demo.toml")),
        )),
        (false, true, Some(path)) => Ok(Command::Check(path)),
        (false, false, Some(path)) => Ok(Command::Run(path)),
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

fn run(path: &std::path::Path, with_demo: bool) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    triage::server::init_logging(&config.log.level, &config.log.format);
    if with_demo {
        if let Err(e) = triage::demo::spawn(&config) {
            eprintln!("triage: cannot start the demo app: {e}");
            return ExitCode::FAILURE;
        }
    }
    match triage::server::build(config) {
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
        Ok(Command::Run(path)) => run(&path, false),
        Ok(Command::Demo(path)) => run(&path, true),
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
