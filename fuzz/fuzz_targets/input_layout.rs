//! File-layout detection and every reader behind it (gzip, text with
//! header lines anywhere, CloudWatch export lines, AWS CLI / subscription
//! JSON, Parquet) on arbitrary bytes, as `analyze FILE` reads them. No
//! panic, and the counts add up: every record is ok, nodata, skipdata or
//! malformed, and malformed ones are counted by reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpc_flow_exporter::flow::{FormatChoice, Pipeline, RecordFilter, Settings, Summary};
use vpc_flow_exporter::input::{self, InputFormat, Origin};

fuzz_target!(|data: &[u8]| {
    let _ = input::detect(data);
    let mut pipeline = Pipeline::new(
        FormatChoice::Auto,
        Settings::default(),
        Default::default(),
        RecordFilter::default(),
    );
    let mut summary = Summary::new(pipeline.correlator().service_ports().clone(), true);
    let origin = Origin {
        stream: Some("eni-0123456789abcdef0-all".to_owned()),
    };
    // An error is a file that cannot be read (bad gzip, bad Parquet): fine.
    let _ = input::feed_reader(
        data,
        &origin,
        InputFormat::Auto,
        &mut pipeline,
        &mut summary,
    );
    pipeline.finish(&mut summary);
    let records = &summary.records;
    assert_eq!(
        records.total,
        records.ok + records.nodata + records.skipdata + records.malformed
    );
    assert_eq!(
        records.malformed,
        summary.malformed_by_reason.values().sum::<u64>()
    );
    let details = summary.details.as_ref().map_or(0, Vec::len) as u64;
    assert_eq!(details, summary.sessions.total());
});
