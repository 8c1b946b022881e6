//! The files source on its timer: one pass, or a pass every `replay_interval`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::{Health, SourceHealth, now_seconds, sleep_or_stop, update_load_gauges};
use crate::api::{ProofSource, Recorded, SessionLog};
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
    let proof = Arc::new(ProofSource::Files {
        paths: config
            .paths
            .iter()
            .map(|path| path.display().to_string())
            .collect(),
        log_format: config.log_format.clone(),
        replayed: config.replay,
    });
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
        let (sessions, pass_proof) = (health.state.sessions.clone(), proof.clone());
        let done = tokio::task::spawn_blocking(move || {
            let recorder = Recorder {
                sessions: &sessions,
                proof: &pass_proof,
            };
            let result = pass(
                &pass_paths,
                &mut moved,
                &pass_metrics,
                recorder,
                replay,
                span,
            );
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

/// Where a pass keeps the sessions it decides.
struct Recorder<'a> {
    sessions: &'a SessionLog,
    proof: &'a ProofSource,
}

/// One pass over the files. When replaying, record times are shifted so the
/// last record ends now (the first time, a dry pass finds the span).
fn pass(
    paths: &[PathBuf],
    pipeline: &mut Pipeline,
    metrics: &Metrics,
    recorder: Recorder<'_>,
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
    let flow_metrics = FlowMetrics::new(metrics, &service_ports);
    let mut observer = Recorded::new(
        flow_metrics,
        recorder.sessions,
        recorder.proof,
        now_seconds(),
    );
    files::pass(paths, pipeline, offset, &mut observer)
}
