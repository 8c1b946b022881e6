//! The HTTP endpoints: `/metrics`, `/healthz`, `/ready`; the landing page
//! and `/api/v1/…` are handled in `crate::api`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::api::{self, SessionLog};
use crate::metrics::Metrics;

/// What the endpoints read.
pub struct ServerState {
    pub metrics: Arc<Metrics>,
    /// Set once the first poll of every source is done.
    pub ready: AtomicBool,
    /// Interfaces and their configured names, for the landing page.
    pub interfaces: Vec<(String, Option<String>)>,
    /// One line describing the source, for the landing page.
    pub source: String,
    /// The most recently decided sessions, for `/api/v1/sessions`.
    pub sessions: Arc<SessionLog>,
}

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How long open connections may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves until `shutdown` resolves, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ServerState>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "Accepting a connection failed");
                        continue;
                    }
                };
                let state = state.clone();
                let service = service_fn(move |request| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(route(&state, &request)) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, %error, "Connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("Open connections did not finish in time");
    }
}

fn route(state: &ServerState, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n");
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(state.metrics.render())));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/ready" if state.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n"),
        "/ready" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first poll is not done\n",
        ),
        "/" => api::landing_page(&state.api_view()),
        "/api/v1/sessions" => api::sessions(&state.api_view(), request.uri().query()),
        "/api/v1/interfaces" => api::interfaces(&state.api_view(), request.uri().query()),
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
