//! Throughput of the pure core: parse and correlate generated version-2
//! records, as `analyze` does, without I/O.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vpc_flow_exporter::flow::{
    FormatChoice, LineSplitter, Pipeline, RecordFilter, Settings, Summary,
};
use vpc_flow_exporter::generate::{GeneratorConfig, generate};

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
    group.finish();
}

criterion_group!(benches, parse_and_correlate);
criterion_main!(benches);
