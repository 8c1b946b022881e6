//! Throughput of the pure core: parse and correlate generated version-2
//! records, as `analyze` does, without I/O; and, for scale, a bare
//! split-and-parse loop over the same records.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vpc_flow_exporter::commands::generate::{GeneratorConfig, generate};
use vpc_flow_exporter::flow::{
    FormatChoice, LineSplitter, Pipeline, RecordFilter, Settings, Summary,
};

fn records(count: usize) -> (Vec<u8>, u64) {
    let mut text = Vec::new();
    let expected = generate(
        &GeneratorConfig {
            records: count,
            ..GeneratorConfig::default()
        },
        &mut text,
    )
    .expect("writing to memory");
    (text, expected.records)
}

fn parse_and_correlate(c: &mut Criterion) {
    let (text, count) = records(200_000);
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(count));
    group.sample_size(10);
    group.bench_function("parse_and_correlate_200k_v2_records", |b| {
        b.iter(|| {
            let mut pipeline = Pipeline::new(
                FormatChoice::Auto,
                Settings::default(),
                Default::default(),
                RecordFilter::default(),
            );
            let mut summary = Summary::new(pipeline.correlator().service_ports().clone(), false);
            let mut splitter = LineSplitter::default();
            splitter.push(&text, |line| {
                pipeline.push_line(line, None, &mut summary);
            });
            pipeline.finish(&mut summary);
            summary.sessions.total()
        })
    });
    // For scale, in the same run: a bare split-and-parse loop (what a
    // parser with no correlation, no validation and no counting costs).
    group.bench_function("bare_split_and_parse_200k_v2_records", |b| {
        b.iter(|| {
            let mut checksum = 0u64;
            for line in text.split(|&byte| byte == b'\n') {
                let Ok(line) = std::str::from_utf8(line) else {
                    continue;
                };
                for (index, token) in line.split_ascii_whitespace().enumerate() {
                    checksum = checksum.wrapping_add(match index {
                        3 | 4 => token.parse::<std::net::IpAddr>().map_or(0, |_| 1),
                        5..=11 => token.parse::<u64>().unwrap_or(0),
                        _ => token.len() as u64,
                    });
                }
            }
            checksum
        })
    });
    group.finish();
}

criterion_group!(benches, parse_and_correlate);
criterion_main!(benches);
