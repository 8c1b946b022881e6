//! Format and header parsing on arbitrary text: `--log-format` values
//! (`${…}` or plain names, `auto`), S3 header lines and the warnings a
//! format gets. No panic; a header line that parses is a format whose
//! field names parse back to the same format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpc_flow_exporter::flow::{FormatChoice, LogFormat, RecordParser};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = FormatChoice::parse(text);
    if let Ok(format) = LogFormat::parse(text) {
        let _ = format.warnings(true);
        let _ = format.warnings(false);
        let _ = RecordParser::new(format).parse(text);
    }
    if let Some(header) = LogFormat::from_header_line(text) {
        let names: Vec<&str> = header.fields().iter().map(|field| field.name()).collect();
        let again = LogFormat::parse(&names.join(" ")).expect("a header's names parse");
        assert_eq!(again, header);
        let _ = header.warnings(false);
    }
});
