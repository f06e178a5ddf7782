//! The `raft-injector` binary: parses flags, sets up logging, runs one command.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use raft_injector::cli::{Cli, Command, InputArgs, LogFormat, MemberCommand};
use raft_injector::offline::{self, DefaultNamespace, Report};
use raft_injector::policy::Settings;

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Prints warnings and denials the way kubectl would, and says whether all passed.
fn report(report: &Report) -> bool {
    for warning in &report.warnings {
        eprintln!("Warning: {warning}");
    }
    for denial in &report.denials {
        eprintln!("Error: {denial}");
    }
    report.denials.is_empty()
}

/// Reads the inputs and runs the offline rules over all of them together.
fn offline(input: &InputArgs, settings: &Settings, inject: bool) -> anyhow::Result<Report> {
    let inputs = offline::inputs::read(&input.files, input.recursive)?;
    let namespace = DefaultNamespace::resolve(input.namespace.clone());
    Ok(offline::run(&inputs, settings, &namespace, inject)?)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let config = args.config()?;
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(raft_injector::server::run(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Inject(args) => {
            let result = offline(&args.input, &args.rules.settings(), true)?;
            if !report(&result) {
                return Ok(ExitCode::FAILURE);
            }
            print!("{}", result.output);
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate(args) => {
            let result = offline(&args.input, &args.rules.settings(), false)?;
            if !report(&result) {
                return Ok(ExitCode::FAILURE);
            }
            eprintln!(
                "{} Raft StatefulSet(s) pass, among {} object(s)",
                result.checked, result.objects
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Certs(args) => {
            use raft_injector::certs;
            let ca = match args.new_ca {
                true => None,
                false => certs::read_ca(&args.out)?,
            };
            let request = args.request();
            let issued = certs::issue(&request, ca.as_ref())?;
            certs::write_to(&args.out, &issued)?;
            eprintln!(
                "wrote tls.crt and tls.key for {} to {}, signed by {} CA (ca.crt, ca.key)",
                request.dns_names().join(", "),
                args.out.display(),
                if issued.ca_reused {
                    "the existing"
                } else {
                    "a new"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Member(member) => member_command(member),
        Command::Install(args) => {
            let target = raft_injector::install::install(&args.to)?;
            eprintln!("installed {}", target.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn member_command(command: MemberCommand) -> anyhow::Result<ExitCode> {
    use raft_injector::member::{etcd::Gateway, exec, join, leave, MemberEnv};
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
    };
    match command {
        MemberCommand::Leave { timeout_seconds } => {
            let outcome = runtime()?.block_on(leave::run(Duration::from_secs(timeout_seconds)))?;
            tracing::info!("member leave: {outcome}");
            Ok(ExitCode::SUCCESS)
        }
        MemberCommand::Join {
            dir,
            timeout_seconds,
        } => {
            let env = MemberEnv::from_process_env()?;
            let outcome = runtime()?.block_on(join::join(
                &env,
                &Gateway::default(),
                &dir,
                Duration::from_secs(timeout_seconds),
            ))?;
            tracing::info!(?outcome, "member join");
            Ok(ExitCode::SUCCESS)
        }
        MemberCommand::Exec { dir, command } => Err(exec::exec(&dir, &command).into()),
    }
}

/// The error and its causes on one line, each cause once: most error types here already
/// print their cause in their own message, and the chain would repeat it.
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("Error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}
