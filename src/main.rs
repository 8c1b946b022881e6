//! The `vpc-flow-exporter` binary: flags and wiring only.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};
use vpc_flow_exporter::analyze::{self, AnalyzeRequest};
use vpc_flow_exporter::flow::{FormatChoice, RecordFilter, Settings};
use vpc_flow_exporter::generate::{self, GeneratorConfig, Style};
use vpc_flow_exporter::report::OutputFormat;

#[derive(Parser)]
#[command(
    name = "vpc-flow-exporter",
    version,
    about = "Prometheus exporter for AWS VPC Flow Logs: which conversations were established, rejected in, rejected out, or never answered"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Analyze flow-log files offline (plain or gzip, `-` for stdin).
    Analyze(AnalyzeArgs),
    /// Write synthetic flow logs with known verdicts (tests, benchmarks, demos).
    Generate(GenerateArgs),
}

#[derive(Args)]
struct AnalyzeArgs {
    /// Flow-log files, plain or gzip; `-` reads stdin.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
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
    /// Only records ending at or after this time (Unix seconds, RFC 3339, or a duration ago like 30m).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only records ending at or before this time.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// How long a lone record waits for its other direction.
    #[arg(long = "reply-grace", default_value = "2m", value_parser = humantime::parse_duration)]
    reply_grace: std::time::Duration,
    /// A session idle this long is closed.
    #[arg(long = "session-idle-timeout", default_value = "10m", value_parser = humantime::parse_duration)]
    session_idle_timeout: std::time::Duration,
    /// Service ports besides those below 1024 (comma-separated).
    #[arg(
        long = "service-ports",
        value_delimiter = ',',
        default_value = "22,80,443,3389,5432"
    )]
    service_ports: Vec<u16>,
}

#[derive(Args)]
struct GenerateArgs {
    /// About this many records (sessions are never cut in half).
    #[arg(long, default_value_t = 10_000)]
    records: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 4)]
    interfaces: usize,
    /// Sessions started in each 60-second capture window.
    #[arg(long = "sessions-per-window", default_value_t = 400)]
    sessions_per_window: usize,
    /// `v2`: default format, no header; `rich`: S3 header with tcp-flags, refused and NAT traffic.
    #[arg(long, default_value = "v2", value_parser = ["v2", "rich"])]
    style: String,
    /// Unix time of the first capture window.
    #[arg(long, default_value_t = 1_700_000_000)]
    start: u64,
    /// Write the expected totals (JSON) to this file.
    #[arg(long, value_name = "FILE")]
    expected: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
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

fn run_analyze(args: AnalyzeArgs) -> Result<(), String> {
    let format =
        FormatChoice::parse(&args.log_format).map_err(|error| format!("--log-format: {error}"))?;
    let now = SystemTime::now();
    let time = |flag: &str, text: &Option<String>| {
        text.as_deref()
            .map(|text| analyze::parse_time(text, now).map_err(|error| format!("{flag}: {error}")))
            .transpose()
    };
    let request = AnalyzeRequest {
        paths: args.files,
        format,
        output: args.output,
        details: args.details,
        filter: RecordFilter {
            interface_id: args.interface,
            address: args.address,
            port: args.port,
            since: time("--since", &args.since)?,
            until: time("--until", &args.until)?,
        },
        settings: Settings {
            reply_grace: args.reply_grace.as_secs(),
            session_idle_timeout: args.session_idle_timeout.as_secs(),
            service_ports: args.service_ports,
        },
        facts: Default::default(),
    };
    let text = analyze::run(&request).map_err(|error| error.to_string())?;
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|error| format!("writing the report: {error}"))
}

fn run_generate(args: GenerateArgs) -> Result<(), String> {
    let config = GeneratorConfig {
        seed: args.seed,
        records: args.records,
        interfaces: args.interfaces,
        sessions_per_window: args.sessions_per_window,
        start_time: args.start,
        style: if args.style == "rich" {
            Style::Rich
        } else {
            Style::V2
        },
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let expected = generate::generate(&config, &mut out)
        .map_err(|error| format!("writing records: {error}"))?;
    out.flush()
        .map_err(|error| format!("writing records: {error}"))?;
    if let Some(path) = args.expected {
        let json = serde_json::json!({
            "records": expected.records,
            "nodata": expected.nodata,
            "skipdata": expected.skipdata,
            "sessions": expected.sessions,
            "without_verdict": expected.without_verdict,
        });
        std::fs::write(&path, format!("{json:#}\n"))
            .map_err(|error| format!("{}: {error}", path.display()))?;
    }
    Ok(())
}
