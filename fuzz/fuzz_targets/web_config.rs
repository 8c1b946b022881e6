//! The `--web.config.file` loader on arbitrary YAML: no panic, and every
//! error names the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vpc_flow_exporter::web;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Files it names resolve under a folder that does not exist.
    let path = Path::new("/nonexistent-fuzz-dir/web.yml");
    if let Err(error) = web::config::parse(path, text) {
        assert!(
            error
                .to_string()
                .starts_with("/nonexistent-fuzz-dir/web.yml: ")
        );
    }
});
