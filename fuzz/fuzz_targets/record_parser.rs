//! One flow-log line through the record parser, in the default format or
//! one with every field (the first byte picks): no panic, and a record
//! that parses has an event time that is one of its own times.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpc_flow_exporter::flow::{LogFormat, RecordParser};

const EVERY_FIELD: &str = "version account-id interface-id srcaddr dstaddr srcport dstport \
    protocol packets bytes start end action log-status vpc-id subnet-id instance-id tcp-flags \
    type pkt-srcaddr pkt-dstaddr region az-id sublocation-type sublocation-id \
    pkt-src-aws-service pkt-dst-aws-service flow-direction traffic-path";

fuzz_target!(|data: &[u8]| {
    let Some((&choice, line)) = data.split_first() else {
        return;
    };
    let format = if choice % 2 == 0 {
        LogFormat::default_v2()
    } else {
        LogFormat::parse(EVERY_FIELD).expect("every field is a valid format")
    };
    let parser = RecordParser::new(format);
    if let Ok(record) = parser.parse_bytes(line) {
        if let Some(time) = record.time() {
            assert!(record.end == Some(time) || record.start == Some(time));
        }
        let _ = record.marks_intermediate();
    }
    if let Ok(text) = std::str::from_utf8(line) {
        // The &str and &[u8] entry points agree.
        assert_eq!(parser.parse(text).is_ok(), parser.parse_bytes(line).is_ok());
    }
});
