//! Connection limits that hold with and without TLS: how long a client may
//! take to send its request headers (counted from the moment the
//! connection opens, so a TLS handshake that never starts is cut too), how
//! long a kept-alive connection may sit idle, and how many connections are
//! served at once.
//!
//! hyper's own header timer restarts on every read of a kept-alive
//! connection and knows nothing of the TLS handshake below it, so the
//! timing lives here: [`ActivityIo`] sits directly on the TCP stream and
//! tells a [`ConnectionClock`] when bytes move, the request handler tells
//! it when a request starts and ends, and [`ConnectionClock::expired`]
//! resolves when the connection has outlived its phase.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The knobs, from `[server]` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From the connection's first moment (or the first byte of a later
    /// request) to the end of the request headers, TLS handshake included.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer than a 1-minute scrape interval, so Prometheus keeps reusing its
/// connection (and its TLS session) between scrapes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Room for 1,000 slow or idle clients and the scrapes beside them, within
/// the usual open-file limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for request headers (or the TLS handshake) since then.
    Reading { since: Instant },
    /// A request is being answered: no deadline.
    Busy,
    /// Answered; bytes were last written then.
    Idle { since: Instant },
}

/// One connection's phase and deadline.
#[derive(Debug)]
pub struct ConnectionClock {
    limits: Limits,
    phase: Mutex<Phase>,
    changed: Notify,
}

impl ConnectionClock {
    /// A connection that has just been accepted.
    pub fn start(limits: Limits) -> Arc<Self> {
        Arc::new(ConnectionClock {
            limits,
            phase: Mutex::new(Phase::Reading {
                since: Instant::now(),
            }),
            changed: Notify::new(),
        })
    }

    fn set(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        *phase = change(*phase);
        drop(phase);
        self.changed.notify_one();
    }

    /// The request headers are complete.
    pub fn request_started(&self) {
        self.set(|_| Phase::Busy);
    }

    /// The handler has answered.
    pub fn request_finished(&self) {
        self.set(|_| Phase::Idle {
            since: Instant::now(),
        });
    }

    fn bytes_read(&self) {
        let idle = matches!(
            *self.phase.lock().unwrap_or_else(|e| e.into_inner()),
            Phase::Idle { .. }
        );
        if idle {
            // The first byte of the next request starts its header timer.
            self.set(|_| Phase::Reading {
                since: Instant::now(),
            });
        }
    }

    fn bytes_written(&self) {
        let idle = matches!(
            *self.phase.lock().unwrap_or_else(|e| e.into_inner()),
            Phase::Idle { .. }
        );
        if idle {
            // A response still being flushed to a slow reader is not idle.
            self.set(|_| Phase::Idle {
                since: Instant::now(),
            });
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match *self.phase.lock().unwrap_or_else(|e| e.into_inner()) {
            Phase::Reading { since } => Some(since + self.limits.header_read_timeout),
            Phase::Busy => None,
            Phase::Idle { since } => Some(since + self.limits.idle_timeout),
        }
    }

    /// Resolves when the connection has outlived its phase: close it.
    pub async fn expired(&self) -> &'static str {
        loop {
            let changed = self.changed.notified();
            match self.deadline() {
                None => changed.await,
                Some(deadline) if deadline <= Instant::now() => {
                    return match *self.phase.lock().unwrap_or_else(|e| e.into_inner()) {
                        Phase::Idle { .. } => "idle timeout",
                        _ => "header read timeout",
                    };
                }
                Some(deadline) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    }
                }
            }
        }
    }
}

/// A byte stream that reports its reads and writes to a [`ConnectionClock`].
pub struct ActivityIo<T> {
    inner: T,
    clock: Arc<ConnectionClock>,
}

impl<T> ActivityIo<T> {
    pub fn new(inner: T, clock: Arc<ConnectionClock>) -> Self {
        ActivityIo { inner, clock }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_read();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.bytes_written();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.bytes_written();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            max_connections: 1,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_expires_after_the_header_read_timeout() {
        let clock = ConnectionClock::start(limits());
        let started = Instant::now();
        assert_eq!(clock.expired().await, "header read timeout");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answered_connection_waits_the_idle_timeout_then_a_new_header_timer() {
        let clock = ConnectionClock::start(limits());
        clock.request_started();
        tokio::time::sleep(Duration::from_secs(60)).await;
        clock.request_finished();
        let finished = Instant::now();
        let expiry = tokio::spawn({
            let clock = clock.clone();
            async move { clock.expired().await }
        });
        tokio::time::sleep(Duration::from_secs(80)).await;
        clock.bytes_read();
        assert_eq!(expiry.await.unwrap(), "header read timeout");
        assert_eq!(finished.elapsed(), Duration::from_secs(90));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_expires_after_the_idle_timeout() {
        let clock = ConnectionClock::start(limits());
        clock.request_started();
        clock.request_finished();
        let finished = Instant::now();
        assert_eq!(clock.expired().await, "idle timeout");
        assert_eq!(finished.elapsed(), Duration::from_secs(90));
    }
}
