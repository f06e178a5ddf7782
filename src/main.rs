//! The `raft-injector` binary: parses flags, sets up logging, runs one command.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use raft_injector::cli::{Cli, Command, InputArgs, LogFormat, MemberCommand, StatusFormat};
use raft_injector::offline::{self, DefaultNamespace, Report};
use raft_injector::policy::Settings;

// mimalloc: malloc and free were about a third of an admission's time with glibc's
// allocator, and musl's (the static image) is slower still; `make bench` shows both.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(format: LogFormat, also_to_container_log: bool, default_filter: &str) {
    use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let writer = match also_to_container_log.then(container_log).flatten() {
        Some(log) => BoxMakeWriter::new(std::io::stderr.and(std::sync::Mutex::new(log))),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    // Colours only on a terminal: in a container log they are escape-code noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The stderr of the container's main process, whose output is the container log.
/// `member leave` runs as a preStop hook, and kubelet keeps a hook's own output only when
/// it fails; writing there too puts every leave decision in `kubectl logs`.
fn container_log() -> Option<std::fs::File> {
    if std::process::id() == 1 {
        return None;
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open("/proc/1/fd/2")
        .ok()
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
        Command::Check(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let report = runtime.block_on(async {
                let client = raft_injector::check::client(
                    args.kubeconfig.as_deref(),
                    args.context.as_deref(),
                )
                .await?;
                anyhow::Ok(raft_injector::check::run(client, &args.options()).await)
            })?;
            match args.output {
                StatusFormat::Text => print!("{}", report.render()),
                StatusFormat::Json => {
                    println!("{}", serde_json::to_string_pretty(&report.to_json())?)
                }
            }
            Ok(if report.failed() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
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
    use raft_injector::member::etcd::join;
    use raft_injector::member::events::{record, Kind};
    use raft_injector::member::JoinOutcome;
    use raft_injector::member::{etcd::Gateway, exec, leave, reconcile, status, MemberEnv};
    const EVENT_TIMEOUT: Duration = Duration::from_secs(3);
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
    };
    match command {
        MemberCommand::Leave { timeout_seconds } => {
            let env = MemberEnv::from_process_env()?;
            runtime()?.block_on(async {
                match leave::run(&env, Duration::from_secs(timeout_seconds)).await {
                    Ok(outcome) => {
                        tracing::info!("member leave: {}", outcome.message);
                        record(
                            &env,
                            Kind::Normal,
                            outcome.reason,
                            &outcome.message,
                            EVENT_TIMEOUT,
                        )
                        .await;
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(error) => {
                        let message = format!("leave failed: {}", describe(&error.into()));
                        record(
                            &env,
                            Kind::Warning,
                            "MemberLeaveFailed",
                            &message,
                            EVENT_TIMEOUT,
                        )
                        .await;
                        Err(anyhow::anyhow!(message))
                    }
                }
            })
        }
        MemberCommand::Join {
            dir,
            timeout_seconds,
            cold_start_wait_seconds,
        } => {
            let env = MemberEnv::from_process_env()?;
            runtime()?.block_on(async {
                let budget = Duration::from_secs(timeout_seconds);
                let cold_start_wait = Duration::from_secs(cold_start_wait_seconds);
                let joined = match env.etcd {
                    None if env.kraft.is_some() => {
                        raft_injector::member::kraft::join::prepare(&env, &dir, budget, cold_start_wait).await
                    }
                    Some(_) => {
                        match Gateway::for_member(&env) {
                            Ok(gateway) => join::join(&env, &gateway, &dir, budget, cold_start_wait).await,
                            Err(error) => Err(error),
                        }
                    }
                    None => raft_injector::member::generic::join_generic(&env, &dir, budget).await,
                };
                match joined {
                    Ok(outcome) => {
                        if matches!(outcome, JoinOutcome::HasData | JoinOutcome::Joined { .. }) {
                            // A member resumed or joined: the cluster formed. Record it now,
                            // rather than only at the sidecar's next pass.
                            if let Ok(Some(cluster)) = raft_injector::member::flavors::for_member(&env, None) {
                                raft_injector::member::formation::ensure_quietly(&env, &cluster, EVENT_TIMEOUT * 2)
                                    .await;
                            }
                        }
                        let (reason, message) = match &outcome {
                            JoinOutcome::Bootstrap => (
                                "MemberBootstrapping",
                                "starts as a bootstrap member of a new cluster".to_owned(),
                            ),
                            JoinOutcome::HasData => (
                                "MemberResumed",
                                "has its data and is still a member; resumes".to_owned(),
                            ),
                            JoinOutcome::Joined {
                                why,
                                initial_cluster,
                                data_set_aside,
                            } => {
                                if let Some(aside) = data_set_aside {
                                    let message = format!(
                                        "its data belongs to a member removed earlier (the volume was kept); \
                                         moved to {} (kept, not deleted) and joining as a new member",
                                        aside.display()
                                    );
                                    tracing::warn!("member join: {message}");
                                    record(&env, Kind::Warning, "MemberDataSetAside", &message, EVENT_TIMEOUT)
                                        .await;
                                }
                                (
                                    "MemberJoined",
                                    format!("added to the running cluster ({why}); initial cluster {initial_cluster}"),
                                )
                            }
                            JoinOutcome::BootstrapPeer => (
                                "MemberBootstrapping",
                                format!(
                                    "a bootstrap member (ordinal {}, one of the {} named in RAFT_PEERS); no join call needed",
                                    env.ordinal, env.bootstrap_size
                                ),
                            ),
                            JoinOutcome::JoinedThroughUrl { url, status } => (
                                "MemberJoined",
                                format!("the join URL {url} accepted this member (HTTP {status})"),
                            ),
                            JoinOutcome::KraftFormatted { why, directory_id } => (
                                "MemberFormatted",
                                format!("formatted its metadata directory (directory id {directory_id}): {why}"),
                            ),
                            JoinOutcome::NoJoinUrl => {
                                let message = "annotation raft-injector.io/join-url is not set, so this member \
                                     beyond the bootstrap set starts without joining; the application must add it";
                                tracing::warn!("member join: {message}");
                                record(&env, Kind::Warning, "MemberJoinSkipped", message, EVENT_TIMEOUT).await;
                                return Ok(ExitCode::SUCCESS);
                            }
                        };
                        tracing::info!("member join: {message}");
                        record(&env, Kind::Normal, reason, &message, EVENT_TIMEOUT).await;
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(error) => {
                        let message = format!("join failed: {}", describe(&error.into()));
                        record(&env, Kind::Warning, "MemberJoinFailed", &message, EVENT_TIMEOUT).await;
                        Err(anyhow::anyhow!(message))
                    }
                }
            })
        }
        MemberCommand::Status {
            output,
            members_url,
        } => {
            let env = MemberEnv::from_process_env()?;
            let status = runtime()?.block_on(status::collect(&env, members_url.as_deref()));
            match output {
                StatusFormat::Text => print!("{}", status::render(&status)),
                StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&status)?),
            }
            Ok(if status.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        MemberCommand::Reconcile { interval_seconds } => {
            let env = MemberEnv::from_process_env()?;
            runtime()?.block_on(reconcile::run(&env, Duration::from_secs(interval_seconds)))?;
            Ok(ExitCode::SUCCESS)
        }
        MemberCommand::Exec { dir, command } => {
            // kubelet kills what is left at the end of the grace period anyway.
            let leave_wait = Duration::from_secs(30);
            let settings = exec::join_settings(&dir)?;
            let runtime = runtime()?;
            // The env is the etcd container's own; a container that was not injected (or
            // lacks what the helper reads) simply starts with the join's settings.
            let settings = match MemberEnv::from_process_env().and_then(|env| {
                if env.etcd.is_none() {
                    // Only etcd's settings can go stale before it starts.
                    return Err(raft_injector::member::MemberError::MissingEnv(
                        "ETCD_ADVERTISE_CLIENT_URLS",
                    ));
                }
                Gateway::for_member(&env).map(|gateway| (env, gateway))
            }) {
                Ok((env, gateway)) => runtime.block_on(join::refresh_settings(
                    &env,
                    &gateway,
                    &dir,
                    settings,
                    Duration::from_secs(5),
                )),
                Err(raft_injector::member::MemberError::MissingEnv(_)) => settings,
                Err(error) if !settings.is_empty() => {
                    tracing::warn!(%error, "starting with the join's settings as written");
                    settings
                }
                Err(_) => settings,
            };
            // Kraft: the official image's own command cannot start a dynamic quorum's
            // controller; the helper runs its configuration step and starts Kafka itself.
            let kraft = MemberEnv::from_process_env().ok().and_then(|env| env.kraft);
            let command = match kraft {
                Some(kraft) if raft_injector::member::kraft::launch::is_official(&command) => {
                    runtime.block_on(raft_injector::member::kraft::launch::configure(
                        &kraft,
                        &settings,
                        Duration::from_secs(120),
                    ))?
                }
                _ => command,
            };
            let code = runtime.block_on(exec::run(settings, &command, leave_wait))?;
            Ok(ExitCode::from(code))
        }
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
    let is_leave = matches!(&cli.command, Command::Member(MemberCommand::Leave { .. }));
    // check reports every failed call itself; the client's own error logs would repeat them.
    let default_filter = match &cli.command {
        Command::Check(_) => "warn,kube_client=off",
        _ => "info",
    };
    init_logging(cli.log_format, is_leave, default_filter);
    match run(cli) {
        Ok(code) => code,
        Err(error) if is_leave => {
            tracing::error!("member {}", describe(&error));
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("Error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}
