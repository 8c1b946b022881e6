//! The `vpc-flow-exporter` binary: flags and wiring only.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};
use vpc_flow_exporter::commands::analyze::{self, AnalyzeRequest, S3Location};
use vpc_flow_exporter::commands::generate::{self, GeneratorConfig, RealisticConfig, Shape, Style};
use vpc_flow_exporter::commands::inspect::{self, FollowError, InspectRequest};
use vpc_flow_exporter::commands::report::{self, OutputFormat, ReportRequest};
use vpc_flow_exporter::flow::{FormatChoice, RecordFilter, Settings, correlate};
use vpc_flow_exporter::input::InputFormat;
use vpc_flow_exporter::source::aws_clients::{DEFAULT_SESSION_NAME, Role};
use vpc_flow_exporter::source::s3::listing::S3Url;
use vpc_flow_exporter::{Error, config, exporter, web};

#[derive(Parser)]
#[command(
    name = "vpc-flow-exporter",
    version,
    about = "Prometheus exporter for AWS VPC Flow Logs: which conversations were established, rejected in, rejected out, or never answered"
)]
struct Cli {
    /// error, warn, info, debug or trace.
    #[arg(long = "log.level", global = true, default_value = "info")]
    log_level: String,
    /// Log lines as text or JSON (one object per line).
    #[arg(long = "log.format", global = true, value_enum, default_value = "text")]
    log_output: LogFormatArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the exporter: poll the source, serve /metrics, /healthz and /ready.
    Serve(ServeArgs),
    /// Read a window of a log group from CloudWatch Logs and print its sessions.
    Inspect(InspectArgs),
    /// Analyze flow-log files offline: S3 text (plain or gzip), CloudWatch
    /// exports, CLI or subscription JSON (`-` for stdin).
    Analyze(AnalyzeArgs),
    /// Write synthetic flow logs with known verdicts (tests, benchmarks, demos).
    Generate(GenerateArgs),
}

#[derive(Args)]
struct AnalyzeArgs {
    /// Flow-log files, plain or gzip; `-` reads stdin; or `s3://bucket/prefix`
    /// (every object under it; --since/--until list only the date
    /// partitions they need).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// How the files hold their records; `auto` tells from their content.
    #[arg(long = "input-format", value_enum, default_value = "auto")]
    input_format: InputFormat,
    /// Worker threads, sessions sharded by interface (same results on
    /// any number): 0 for one per core, 1 for a single thread.
    #[arg(long, default_value_t = 0, value_name = "N")]
    threads: usize,
    /// For s3:// arguments: AWS region (default: the AWS configuration chain's).
    #[arg(long)]
    region: Option<String>,
    /// For s3:// arguments: the S3 endpoint (VPC endpoints, LocalStack, moto).
    #[arg(long = "endpoint-url", value_name = "URL")]
    endpoint_url: Option<String>,
    #[command(flatten)]
    report: ReportArgs,
}

#[derive(Args)]
struct InspectArgs {
    /// The flow log's CloudWatch Logs log group.
    #[arg(long = "log-group", value_name = "GROUP")]
    log_group: String,
    /// AWS region (default: the AWS configuration chain's).
    #[arg(long)]
    region: Option<String>,
    /// CloudWatch Logs endpoint (VPC endpoints, LocalStack, moto).
    #[arg(long = "endpoint-url", value_name = "URL")]
    endpoint_url: Option<String>,
    /// A log group of another account: read with credentials from STS
    /// AssumeRole of this role, as `serve` reads a group with `role_arn`.
    #[arg(long = "role-arn", value_name = "ARN")]
    role_arn: Option<String>,
    /// With --role-arn: the ExternalId the role's trust policy requires.
    #[arg(long = "external-id", value_name = "ID", requires = "role_arn")]
    external_id: Option<String>,
    /// Keep polling and print each session as it is decided, like `tail -f`
    /// (one line each; JSON Lines with --output json). Ctrl-C stops.
    #[arg(long)]
    follow: bool,
    /// With --follow: time between two polls.
    #[arg(long = "poll-interval", default_value = "10s", value_name = "DURATION")]
    poll_interval: humantime::Duration,
    #[command(flatten)]
    report: ReportArgs,
}

/// How records are read, narrowed, correlated and shown (`analyze`, `inspect`).
#[derive(Args)]
struct ReportArgs {
    /// `auto` (the S3 header line, else the default format), a LogFormat
    /// (`${version} ${account-id} …`) or field names separated by spaces.
    #[arg(long = "log-format", default_value = "auto", value_name = "FORMAT")]
    log_format: String,
    #[arg(long, value_enum, default_value = "table")]
    output: OutputFormat,
    /// List every session.
    #[arg(long)]
    details: bool,
    /// Only records of this interface (eni-…).
    #[arg(long, value_name = "ENI")]
    interface: Option<String>,
    /// Only records with this address on either side.
    #[arg(long, value_name = "IP", value_parser = analyze::parse_address)]
    address: Option<std::net::IpAddr>,
    /// Only records with this port on either side.
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    /// From this time: Unix seconds, RFC 3339, or a duration ago like 30m
    /// (inspect: default 30m; records land up to ~15 minutes after they start).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Up to this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// How long a lone record waits for its other direction.
    #[arg(long = "reply-grace", default_value_t = seconds(correlate::DEFAULT_REPLY_GRACE_SECONDS))]
    reply_grace: humantime::Duration,
    /// A session idle this long is closed.
    #[arg(long = "session-idle-timeout", default_value_t = seconds(correlate::DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS))]
    session_idle_timeout: humantime::Duration,
    /// An interface's own address, as `ENI=IP` (repeatable): its first
    /// sessions then get their direction right before it can be learned.
    #[arg(long = "interface-address", value_name = "ENI=IP", value_parser = analyze::parse_interface_address)]
    interface_address: Vec<(String, std::net::IpAddr)>,
    /// Service ports besides those below 1024 (comma-separated).
    #[arg(long = "service-ports", value_delimiter = ',', default_values_t = correlate::DEFAULT_SERVICE_PORTS)]
    service_ports: Vec<u16>,
    /// Sessions held at most (memory bound); past it the oldest pending are decided early.
    #[arg(long = "max-open-sessions", default_value_t = correlate::DEFAULT_MAX_OPEN_SESSIONS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_open_sessions: usize,
    /// Decided sessions that wait, per interface, for the interface's own
    /// address to be told by its records (to the end of input); past it the
    /// fallback "the request's destination is local" decides. 0: never wait.
    #[arg(long = "max-awaiting-address-per-interface", default_value_t = correlate::DEFAULT_MAX_AWAITING_ADDRESS)]
    max_awaiting_address: usize,
}

#[derive(Args)]
struct ServeArgs {
    /// The configuration file (TOML); every key can also be set by a
    /// VPC_FLOW_EXPORTER__SECTION__KEY environment variable.
    #[arg(long, value_name = "FILE", env = "VPC_FLOW_EXPORTER_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides server.listen_address.
    #[arg(long = "web.listen-address", value_name = "ADDR")]
    listen_address: Option<std::net::SocketAddr>,
    /// The Prometheus exporter-toolkit web configuration (YAML: TLS, basic
    /// auth, headers); overrides server.web_config_file. Re-read when it changes.
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config_file: Option<PathBuf>,
    /// Validate the configuration (and the web configuration) and exit.
    #[arg(long = "check-config")]
    check_config: bool,
}

#[derive(Args)]
struct GenerateArgs {
    /// About this many records (sessions are never cut in half).
    #[arg(long, default_value_t = 10_000)]
    records: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `scenarios`: every case the rules know, on a few interfaces;
    /// `realistic`: a busy VPC's mix (pairs, scanners' rejects, NODATA, …).
    #[arg(long, value_enum, default_value = "scenarios")]
    shape: Shape,
    /// Interfaces with traffic (default: 4; 200 with --shape realistic).
    #[arg(long)]
    interfaces: Option<usize>,
    /// Sessions started in each 60-second capture window (scenarios shape).
    #[arg(long = "sessions-per-window", default_value_t = 400)]
    sessions_per_window: usize,
    /// Records in each 60-second capture window (realistic shape).
    #[arg(long = "records-per-window", default_value_t = 20_000)]
    records_per_window: usize,
    /// `v2`: default format, no header; `rich`: S3 header with tcp-flags, refused and NAT traffic.
    #[arg(long, value_enum, default_value = "v2")]
    style: Style,
    /// Unix time of the first capture window.
    #[arg(long, default_value_t = 1_700_000_000)]
    start: u64,
    /// Write the expected totals (JSON) to this file.
    #[arg(long, value_name = "FILE")]
    expected: Option<PathBuf>,
}

/// A clap default in the spelling users type (`2m`).
fn seconds(seconds: u64) -> humantime::Duration {
    std::time::Duration::from_secs(seconds).into()
}

/// glibc raises its mmap threshold each time a large block is freed; after
/// that, buffers that grow by doubling (the session index, the deadline
/// heaps) come from the heap, and the blocks they left stay resident. A
/// fixed threshold keeps every block of 128 KiB or more a mapping of its
/// own, returned to the system when freed: 129 -> 120 bytes per open
/// session in `scripts/bench`'s flood, no change in speed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_large_blocks_mapped() {
    // SAFETY: mallopt only sets an allocator parameter; called first
    // thing, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_large_blocks_mapped() {}

fn main() -> ExitCode {
    keep_large_blocks_mapped();
    let cli = Cli::parse();
    if let Err(message) = init_logging(&cli.log_level, cli.log_output) {
        eprintln!("vpc-flow-exporter: --log.level: {message}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Serve(args) => run_serve(args),
        Command::Inspect(args) => run_inspect(args),
        Command::Analyze(args) => run_analyze(args),
        Command::Generate(args) => run_generate(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("vpc-flow-exporter: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str, format: LogFormatArg) -> Result<(), String> {
    let level: tracing::Level = level
        .parse()
        .map_err(|_| format!("\"{level}\" is not one of error, warn, info, debug, trace"))?;
    // Our own events at the chosen level; the AWS SDK's only from warn up.
    // rustls warns once per handshake about a client's quirks (an IP
    // address sent as SNI, as wrk and `curl --resolve` do): any client could
    // fill the log with them, so only its errors.
    let filter =
        tracing_subscriber::EnvFilter::new(format!("warn,rustls=error,vpc_flow_exporter={level}"));
    // Colour escapes only for a person at a terminal: a file, journald or
    // ECS's awslogs driver would keep them as garbage in every line.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormatArg::Text => builder.init(),
        LogFormatArg::Json => builder.json().init(),
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            what: "starting the runtime",
            source,
        })
}

fn run_serve(args: ServeArgs) -> Result<(), Error> {
    let mut config = config::load(args.config.as_deref()).map_err(|error| match &args.config {
        Some(_) => Error::Config(error),
        None => Error::Usage(format!(
            "{error}\n(no --config file given: the configuration came from VPC_FLOW_EXPORTER__ variables only)"
        )),
    })?;
    if let Some(address) = args.listen_address {
        config.server.listen_address = address;
    }
    if let Some(path) = args.web_config_file {
        config.server.web_config_file = Some(path);
    }
    if let Some(path) = &config.server.web_config_file {
        web::load(path).map_err(|error| Error::Usage(format!("web configuration {error}")))?;
    }
    if args.check_config {
        config::check_files_exist(&config).map_err(Error::Usage)?;
        println!("configuration is valid");
        return Ok(());
    }
    runtime()?.block_on(async {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = stop.send(true);
        });
        Ok(exporter::run(config, stopped).await?)
    })
}

/// SIGTERM (ECS stopping a task) or SIGINT.
async fn wait_for_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "Cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// The parts of `analyze` and `inspect` that read the same flags.
fn report_request(args: &ReportArgs) -> Result<ReportRequest, Error> {
    let format = FormatChoice::parse(&args.log_format)
        .map_err(|error| Error::Usage(format!("--log-format: {error}")))?;
    let now = SystemTime::now();
    let time = |flag: &str, text: &Option<String>| {
        text.as_deref()
            .map(|text| {
                analyze::parse_time(text, now)
                    .map_err(|error| Error::Usage(format!("{flag}: {error}")))
            })
            .transpose()
    };
    Ok(ReportRequest {
        format,
        output: args.output,
        details: args.details,
        filter: RecordFilter {
            interface_id: args.interface.clone(),
            address: args.address,
            port: args.port,
            since: time("--since", &args.since)?,
            until: time("--until", &args.until)?,
        },
        settings: Settings {
            reply_grace: args.reply_grace.as_secs(),
            session_idle_timeout: args.session_idle_timeout.as_secs(),
            service_ports: args.service_ports.clone(),
            max_open_sessions: args.max_open_sessions,
            max_awaiting_address: args.max_awaiting_address,
            // Offline, a session waits for its interface's address up to the
            // end of input: the result is that of reading it all first.
            ..Settings::default()
        },
        facts: analyze::facts_from_addresses(&args.interface_address),
    })
}

fn run_analyze(args: AnalyzeArgs) -> Result<(), Error> {
    let urls: Vec<S3Url> = args
        .files
        .iter()
        .filter_map(|path| path.to_str().and_then(S3Url::parse))
        .collect();
    let request = AnalyzeRequest {
        report: report_request(&args.report)?,
        paths: args.files,
        input_format: args.input_format,
        threads: args.threads,
    };
    let (text, warnings) = if urls.is_empty() {
        analyze::run(&request)?
    } else {
        if urls.len() != request.paths.len() {
            return Err(Error::Usage(
                "analyze reads either files or s3:// URLs, not both in one run".into(),
            ));
        }
        let location = S3Location {
            urls,
            region: args.region,
            endpoint_url: args.endpoint_url,
        };
        let summary = runtime()?.block_on(analyze::analyze_s3(&request, &location))?;
        let text = report::render(&summary, request.report.output);
        (text, summary.warnings)
    };
    for warning in warnings {
        eprintln!("vpc-flow-exporter: warning: {warning}");
    }
    write_stdout(&text)
}

fn run_inspect(args: InspectArgs) -> Result<(), Error> {
    let request = InspectRequest {
        report: report_request(&args.report)?,
        log_group: args.log_group,
        region: args.region,
        endpoint_url: args.endpoint_url,
        role: args.role_arn.map(|arn| Role {
            arn,
            external_id: args.external_id,
            session_name: DEFAULT_SESSION_NAME.to_owned(),
        }),
    };
    if args.follow {
        return run_follow(&request, args.poll_interval.into());
    }
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let text = runtime()?
        .block_on(inspect::run(&request, now))
        .map_err(|source| Error::Api {
            log_group: request.log_group.clone(),
            source,
        })?;
    write_stdout(&text)
}

fn run_follow(request: &InspectRequest, poll_interval: std::time::Duration) -> Result<(), Error> {
    if request.report.filter.until.is_some() {
        return Err(Error::Usage(
            "--until: --follow reads on from now, it cannot stop at a time".into(),
        ));
    }
    if poll_interval < std::time::Duration::from_secs(1) {
        return Err(Error::Usage("--poll-interval: at least 1s".into()));
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = runtime()?.block_on(inspect::follow(
        request,
        poll_interval,
        &mut out,
        wait_for_signal(),
    ));
    match result {
        Ok(()) => Ok(()),
        // The reader went away (`| head`): as tail -f, stop quietly.
        Err(FollowError::Write(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(FollowError::Write(source)) => Err(Error::Io {
            what: "writing the sessions",
            source,
        }),
        Err(FollowError::Api(source)) => Err(Error::Api {
            log_group: request.log_group.clone(),
            source,
        }),
    }
}

fn write_stdout(text: &str) -> Result<(), Error> {
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|source| Error::Io {
            what: "writing the report",
            source,
        })
}

fn run_generate(args: GenerateArgs) -> Result<(), Error> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written = match args.shape {
        Shape::Scenarios => generate::generate(
            &GeneratorConfig {
                seed: args.seed,
                records: args.records,
                interfaces: args.interfaces.unwrap_or(4),
                sessions_per_window: args.sessions_per_window,
                start_time: args.start,
                style: args.style,
            },
            &mut out,
        ),
        Shape::Realistic if args.style != Style::V2 => {
            return Err(Error::Usage(
                "--shape realistic writes version-2 records only: drop --style".to_string(),
            ));
        }
        Shape::Realistic => generate::generate_realistic(
            &RealisticConfig {
                seed: args.seed,
                records: args.records,
                interfaces: args.interfaces.unwrap_or(200),
                records_per_window: args.records_per_window,
                start_time: args.start,
            },
            &mut out,
        ),
    };
    let expected = written.map_err(|source| Error::Io {
        what: "writing records",
        source,
    })?;
    out.flush().map_err(|source| Error::Io {
        what: "writing records",
        source,
    })?;
    if let Some(path) = args.expected {
        let json = serde_json::to_string_pretty(&expected).expect("totals always serialize");
        std::fs::write(&path, format!("{json}\n")).map_err(|source| Error::Io {
            what: "writing the expected totals",
            source,
        })?;
    }
    Ok(())
}
