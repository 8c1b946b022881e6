//! Printing a [`Summary`]: the table a network engineer reads at a glance,
//! or the JSON that scripts and tests read (names fixed by DESIGN.md).

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use std::collections::HashMap;

use crate::flow::summary::RecordCounts;
use crate::flow::{
    FormatChoice, InterfaceFacts, Pipeline, RecordFilter, SessionDetail, Settings, Summary,
    Verdict, VerdictCounts,
};

/// How many ports the "top" tables show.
const TOP_PORTS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// How records are read, narrowed, correlated and shown: what `analyze`
/// and `inspect` share.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    pub format: FormatChoice,
    pub output: OutputFormat,
    pub details: bool,
    pub filter: RecordFilter,
    pub settings: Settings,
    pub facts: HashMap<String, InterfaceFacts>,
}

impl ReportRequest {
    /// A pipeline and an empty summary for this request.
    pub fn start(&self) -> (Pipeline, Summary) {
        let pipeline = Pipeline::new(
            self.format.clone(),
            self.settings.clone(),
            self.facts.clone(),
            self.filter.clone(),
        );
        let summary = Summary::new(pipeline.correlator().service_ports().clone(), self.details);
        (pipeline, summary)
    }

    /// End of input: decides what is pending, orders the details.
    pub fn finish(&self, mut pipeline: Pipeline, mut summary: Summary) -> Summary {
        pipeline.finish(&mut summary);
        summary.sort_details();
        summary
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    records: &'a RecordCounts,
    sessions: &'a VerdictCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a [SessionDetail]>,
}

pub fn render(summary: &Summary, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => render_json(summary),
        OutputFormat::Table => render_table(summary),
    }
}

pub fn render_json(summary: &Summary) -> String {
    let report = JsonReport {
        records: &summary.records,
        sessions: &summary.sessions,
        details: summary.details.as_deref(),
    };
    let mut text = serde_json::to_string_pretty(&report).expect("a report always serializes");
    text.push('\n');
    text
}

pub fn render_table(summary: &Summary) -> String {
    let mut out = String::new();
    let records = &summary.records;
    let _ = write!(
        out,
        "Records: {} total, {} OK, {} NODATA, {} SKIPDATA, {} malformed",
        records.total, records.ok, records.nodata, records.skipdata, records.malformed
    );
    if !summary.malformed_by_reason.is_empty() {
        let reasons: Vec<String> = summary
            .malformed_by_reason
            .iter()
            .map(|(reason, count)| format!("{} {count}", reason.as_str()))
            .collect();
        let _ = write!(out, " ({})", reasons.join(", "));
    }
    out.push('\n');
    if records.skipdata > 0 {
        let _ = writeln!(
            out,
            "Warning: {} SKIPDATA record(s): flow records were lost at capture; totals below are incomplete.",
            records.skipdata
        );
    }
    if summary.evicted > 0 {
        let _ = writeln!(
            out,
            "Warning: {} pending session(s) were decided early to stay within max_open_sessions.",
            summary.evicted
        );
    }
    if summary.direction_fallbacks > 0 {
        let _ = writeln!(
            out,
            "Note: {} session(s) took the request's destination as local: their interface's records never told its own address (set [interfaces.<id>] addresses, or [ec2] describe_interfaces).",
            summary.direction_fallbacks
        );
    }
    out.push('\n');

    let headers = [
        "INTERFACE",
        "ACCEPTED",
        "REJECTED_IN",
        "REJECTED_OUT",
        "UNANSWERED",
        "REFUSED",
    ];
    let mut by_interface: Vec<_> = summary.by_interface.iter().collect();
    by_interface.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut rows: Vec<Vec<String>> = by_interface
        .into_iter()
        .map(|(interface, counts)| verdict_row(interface, counts))
        .collect();
    rows.push(verdict_row("total", &summary.sessions));
    let _ = writeln!(out, "Sessions by interface");
    write_columns(&mut out, &headers, &rows);

    for (title, verdicts) in [
        (
            "Top unanswered service ports (let in, never answered)",
            &[Verdict::Unanswered][..],
        ),
        (
            "Top rejected service ports (blocked in or out)",
            &[Verdict::RejectedInbound, Verdict::RejectedOutbound][..],
        ),
        (
            "Top refused service ports (reset: nothing listening)",
            &[Verdict::Refused][..],
        ),
    ] {
        let top = summary.top_services(verdicts, TOP_PORTS);
        if top.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}");
        let rows: Vec<Vec<String>> = top
            .iter()
            .map(|(service, count)| {
                vec![
                    format!("{}/{}", service.protocol, service.port),
                    count.to_string(),
                ]
            })
            .collect();
        write_columns(&mut out, &["PORT", "SESSIONS"], &rows);
    }

    if let Some(details) = &summary.details {
        let _ = writeln!(out, "\nSessions");
        let rows: Vec<Vec<String>> = details
            .iter()
            .map(|detail| {
                vec![
                    detail.verdict.as_str().to_string(),
                    detail.direction.as_str().to_string(),
                    detail.interface_id.clone(),
                    crate::flow::verdict::protocol_name(detail.protocol).into_owned(),
                    detail.initiator.clone(),
                    detail.responder.clone(),
                    detail.packets.to_string(),
                    detail.bytes.to_string(),
                    time_text(detail.start),
                    time_text(detail.end),
                ]
            })
            .collect();
        write_columns(
            &mut out,
            &[
                "VERDICT",
                "DIRECTION",
                "INTERFACE",
                "PROTO",
                "INITIATOR",
                "RESPONDER",
                "PACKETS",
                "BYTES",
                "START",
                "END",
            ],
            &rows,
        );
    }
    out
}

fn verdict_row(label: &str, counts: &VerdictCounts) -> Vec<String> {
    std::iter::once(label.to_string())
        .chain(
            Verdict::ALL
                .iter()
                .map(|verdict| counts.get(*verdict).to_string()),
        )
        .collect()
}

/// RFC 3339 when the time is a plausible date, else the number as read.
fn time_text(time: Option<u64>) -> String {
    const YEAR_10000: u64 = 253_402_300_800;
    match time {
        Some(seconds) if seconds < YEAR_10000 => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
        }
        Some(seconds) => seconds.to_string(),
        None => "-".to_string(),
    }
}

/// Left-aligns the first column, right-aligns numbers.
fn write_columns(out: &mut String, headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let numeric = |column: usize| {
        rows.iter()
            .all(|row| row[column].bytes().all(|byte| byte.is_ascii_digit()))
    };
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (column, cell) in cells.enumerate() {
            if column > 0 {
                text.push_str("  ");
            }
            if column > 0 && numeric(column) {
                let _ = write!(text, "{cell:>width$}", width = widths[column]);
            } else {
                let _ = write!(text, "{cell:<width$}", width = widths[column]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(out, &mut headers.iter().copied());
    for row in rows {
        line(out, &mut row.iter().map(String::as_str));
    }
}
