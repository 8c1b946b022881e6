//! The files source on its timer: one pass, or a pass every `replay_interval`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::{Health, SourceHealth, now_seconds, sleep_or_stop, update_load_gauges};
use crate::config::FilesConfig;
use crate::flow::{Pipeline, Summary};
use crate::input::InputError;
use crate::metrics::{FlowMetrics, Metrics};
use crate::source::files::{self, TimeSpan};

pub async fn run(
    config: FilesConfig,
    pipeline: Pipeline,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) {
    let paths = Arc::new(config.paths.clone());
    // The pipeline goes to a blocking thread for each pass and comes back.
    let mut pipeline = Some(pipeline);
    let mut span: Option<TimeSpan> = None;
    let mut source = SourceHealth::default();
    loop {
        let started = Instant::now();
        let Some(mut moved) = pipeline.take() else {
            return;
        };
        let (pass_metrics, pass_paths, replay) = (metrics.clone(), paths.clone(), config.replay);
        let done = tokio::task::spawn_blocking(move || {
            let result = pass(&pass_paths, &mut moved, &pass_metrics, replay, span);
            (moved, result)
        })
        .await;
        let (moved, result) = match done {
            Ok(done) => done,
            Err(error) => {
                tracing::error!(%error, "A pass over the files panicked");
                return;
            }
        };
        update_load_gauges(&metrics, &moved);
        let watched = moved.correlator().load().count();
        metrics
            .interfaces_watched
            .set(i64::try_from(watched).unwrap_or(i64::MAX));
        pipeline = Some(moved);
        match result {
            Ok(pass_span) => {
                span = span.or(Some(pass_span));
                health.poll_succeeded(&mut source, started.elapsed());
            }
            Err(error) => {
                health.poll_failed(&mut source, started.elapsed());
                tracing::error!(%error, "Reading flow-log files failed; retrying after replay_interval");
            }
        }
        if !config.replay && !source.failing {
            let _ = shutdown.wait_for(|stop| *stop).await;
            return;
        }
        if sleep_or_stop(config.replay_interval, &mut shutdown).await {
            return;
        }
    }
}

/// One pass over the files. When replaying, record times are shifted so the
/// last record ends now (the first time, a dry pass finds the span).
fn pass(
    paths: &[PathBuf],
    pipeline: &mut Pipeline,
    metrics: &Metrics,
    replay: bool,
    known_span: Option<TimeSpan>,
) -> Result<TimeSpan, InputError> {
    pipeline.set_wall_clock(now_seconds());
    let service_ports = pipeline.correlator().service_ports().clone();
    let offset = if replay {
        let span = match known_span {
            Some(span) => span,
            None => {
                let mut dry_run = Summary::new(service_ports.clone(), false);
                files::pass(paths, pipeline, 0, &mut dry_run)?
            }
        };
        files::offset_to_now(span, now_seconds())
    } else {
        0
    };
    let mut observer = FlowMetrics::new(metrics, &service_ports);
    files::pass(paths, pipeline, offset, &mut observer)
}
