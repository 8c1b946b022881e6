//! The HTTP endpoints: `/metrics`, `/healthz`, `/ready` (the landing page
//! and `/api/v1/…` are handled in `crate::api`), behind what `crate::web` provides: TLS, basic authentication, response
//! headers and connection limits.
//!
//! `serve` accepts connections (at most `max_connections` at once), each
//! with a clock that closes it when headers or a TLS handshake take too
//! long or it sits idle; `respond` applies the web configuration that was in
//! force when the connection was accepted; `route` is the plain mapping of
//! paths to handlers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::api::{self, SessionLog};
use crate::metrics::Metrics;
use crate::web::limits::{ActivityIo, ConnectionClock};
use crate::web::{Limits, WatchedConfig, WebConfig};

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
/// A pause after a failed accept (e.g. out of file descriptors), so the
/// loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves until `shutdown` resolves, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ServerState>,
    web: Arc<WatchedConfig>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let watching = tokio::spawn(web.clone().watch());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Past max_connections, new clients wait in the listen backlog.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "Accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = Connection {
            config: web.current(),
            clock: ConnectionClock::start(limits),
            state: state.clone(),
            peer,
            client_verified: false,
        };
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let clock = connection.clock.clone();
            tokio::select! {
                reason = clock.expired() => {
                    tracing::debug!(%peer, reason, "Closing a connection");
                }
                () = connection.run(stream, watcher) => {}
            }
        });
    }
    watching.abort();
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("Open connections did not finish in time");
    }
}

/// One accepted connection and the web configuration it is served with.
struct Connection {
    config: Arc<WebConfig>,
    clock: Arc<ConnectionClock>,
    state: Arc<ServerState>,
    peer: SocketAddr,
    /// The TLS client presented a certificate that verified.
    client_verified: bool,
}

impl Connection {
    async fn run(mut self, stream: TcpStream, watcher: Watcher) {
        let io = ActivityIo::new(stream, self.clock.clone());
        let Some(tls) = &self.config.tls else {
            return self.serve_http(io, watcher).await;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
        match acceptor.accept(io).await {
            Ok(stream) => {
                self.client_verified = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|chain| !chain.is_empty());
                self.serve_http(stream, watcher).await;
            }
            Err(error) => {
                tracing::debug!(peer = %self.peer, %error, "TLS handshake failed");
            }
        }
    }

    async fn serve_http<I>(self, io: I, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = self.peer;
        let connection = Arc::new(self);
        let service = service_fn(move |request| {
            let connection = connection.clone();
            async move {
                connection.clock.request_started();
                let response = connection.respond(request).await;
                connection.clock.request_finished();
                Ok::<_, Infallible>(response)
            }
        });
        // Header and idle timeouts are the connection clock's; hyper's own
        // header timer would restart on every kept-alive request.
        let served = hyper::server::conn::http1::Builder::new()
            .header_read_timeout(None)
            .serve_connection(TokioIo::new(io), service);
        if let Err(error) = watcher.watch(served).await {
            tracing::debug!(%peer, %error, "Connection ended with an error");
        }
    }

    /// Credentials first (unless the path is excluded), then the route;
    /// the configured headers on every answer.
    async fn respond(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let config = &self.config;
        let open = config.is_excluded(request.uri().path());
        let needs_certificate = config
            .tls
            .as_ref()
            .is_some_and(|tls| tls.client_cert_per_request);
        let mut response = if !open && needs_certificate && !self.client_verified {
            text(
                StatusCode::FORBIDDEN,
                "forbidden: a client certificate is required\n",
            )
        } else if !open
            && !config.basic_auth.is_empty()
            && !config
                .basic_auth
                .allows(request.headers().get(AUTHORIZATION))
                .await
        {
            let mut response = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            response
        } else {
            route(&self.state, &request)
        };
        for (name, value) in &config.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response
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
