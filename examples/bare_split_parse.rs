//! The yardstick of `scripts/bench`: a bare split-and-parse loop over a
//! flow-log file, as a whole process like `analyze`, so the two are
//! measured the same way. Reads the file into memory first, then splits
//! lines and parses the version-2 columns with the standard library
//! (`split_ascii_whitespace` + `parse`): no validation, no counting by
//! kind, no correlation. What a parser that does nothing else costs.
//!
//!     cargo build --release --example bare_split_parse   # or rustc -C opt-level=3, as scripts/bench does
//!     target/release/examples/bare_split_parse FILE   # prints a checksum: nothing is optimised away

use std::net::IpAddr;

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: bare_split_parse FILE");
        std::process::exit(2);
    };
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("bare_split_parse: {}: {error}", path.to_string_lossy());
            std::process::exit(1);
        }
    };
    let mut checksum = 0u64;
    for line in text.split(|&byte| byte == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        for (index, token) in line.split_ascii_whitespace().enumerate() {
            checksum = checksum.wrapping_add(match index {
                3 | 4 => token.parse::<IpAddr>().map_or(0, |_| 1),
                5..=11 => token.parse::<u64>().unwrap_or(0),
                _ => token.len() as u64,
            });
        }
    }
    println!("{checksum}");
}
