//! How one CloudWatch Logs call is attempted: up to [`MAX_ATTEMPTS`]
//! attempts, each after its turn in the request budget ([`Turns`]), a
//! retry also after its backoff. The SDK client makes one attempt per
//! call: its own retryer would send the retries outside the budget, so
//! that while the service throttles, the calls reaching it would exceed
//! the budget by those retries. This loop retries instead, on the SDK's
//! standard schedule: exponential backoff from [`INITIAL_BACKOFF`], capped
//! at [`MAX_BACKOFF`], with full jitter. Only throttling and transient
//! failures are retried ([`ApiError::is_retried_within_call`]; `retry`
//! classifies them).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::api::{ApiError, Turns};

/// Attempts per call, the first one included: for CloudWatch Logs counted
/// here, for the other AWS clients by the SDK's standard retryer.
pub const MAX_ATTEMPTS: u32 = 3;
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// The wait before retry `retry` (1 before the second attempt): `jitter`
/// (from 0 to 1) of `INITIAL_BACKOFF × 2^(retry - 1)`, at most
/// `MAX_BACKOFF` — the SDK standard retryer's "full jitter".
pub fn backoff(retry: u32, jitter: f64) -> Duration {
    let ceiling = 2u32
        .checked_pow(retry.saturating_sub(1))
        .and_then(|factor| INITIAL_BACKOFF.checked_mul(factor))
        .map_or(MAX_BACKOFF, |wait| wait.min(MAX_BACKOFF));
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

/// One call, attempted.
#[derive(Debug)]
pub struct Attempted<T> {
    /// The last attempt's.
    pub result: Result<T, ApiError>,
    /// When the first attempt went (after its turn).
    pub first_sent: Instant,
    pub attempts: u32,
}

/// Makes the attempts of one call: each waits for its turn from `turns`,
/// a retry first for its backoff; stops at the first success, at a failure
/// no retry fixes, or after [`MAX_ATTEMPTS`].
pub async fn call<T, F, Fut>(turns: &impl Turns, mut attempt: F) -> Attempted<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let mut first_sent = None;
    let mut attempts = 0;
    loop {
        turns.take_turn().await;
        let sent = *first_sent.get_or_insert_with(Instant::now);
        attempts += 1;
        match attempt().await {
            Err(error) if error.is_retried_within_call() && attempts < MAX_ATTEMPTS => {
                let wait = backoff(attempts, fastrand::f64());
                tracing::debug!(
                    operation = error.operation(),
                    attempt = attempts,
                    wait_seconds = wait.as_secs_f64(),
                    %error,
                    "Retrying after backoff and a turn of the request budget"
                );
                tokio::time::sleep(wait).await;
            }
            result => {
                return Attempted {
                    result,
                    first_sent: sent,
                    attempts,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_doubles_from_the_initial_up_to_the_cap_with_full_jitter() {
        assert_eq!(backoff(1, 1.0), INITIAL_BACKOFF);
        assert_eq!(backoff(2, 1.0), INITIAL_BACKOFF * 2);
        assert_eq!(backoff(3, 1.0), INITIAL_BACKOFF * 4);
        assert_eq!(backoff(6, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(2, 0.5), INITIAL_BACKOFF);
        assert_eq!(backoff(1, 0.0), Duration::ZERO);
        // A jitter outside 0..=1 stays within the bounds.
        assert_eq!(backoff(1, 7.0), INITIAL_BACKOFF);
        assert_eq!(backoff(1, -1.0), Duration::ZERO);
    }

    /// Notes when each turn was taken.
    #[derive(Default)]
    struct Noted(Mutex<Vec<Instant>>);

    impl Turns for Noted {
        async fn take_turn(&self) {
            self.0.lock().unwrap().push(Instant::now());
        }
    }

    fn throttled() -> ApiError {
        ApiError::Throttled {
            operation: "FilterLogEvents",
            message: "Rate exceeded".into(),
        }
    }

    /// Answers the attempts with `answers` in order, then succeeds.
    async fn run(answers: Vec<ApiError>) -> (Attempted<u32>, Vec<Instant>) {
        let turns = Noted::default();
        let made = AtomicU32::new(0);
        let answers = Mutex::new(answers.into_iter());
        let call = call(&turns, || async {
            let n = made.fetch_add(1, Ordering::Relaxed) + 1;
            match answers.lock().unwrap().next() {
                Some(error) => Err(error),
                None => Ok(n),
            }
        })
        .await;
        assert_eq!(call.attempts, made.load(Ordering::Relaxed));
        (call, turns.0.into_inner().unwrap())
    }

    /// A throttled and a transient failure are retried, each retry after
    /// its backoff and then its own turn.
    #[tokio::test(start_paused = true)]
    async fn each_retry_waits_its_backoff_then_takes_its_turn() {
        let retriable = ApiError::Retriable {
            operation: "FilterLogEvents",
            message: "503".into(),
        };
        let (call, turns) = run(vec![throttled(), retriable]).await;
        assert_eq!(call.result.unwrap(), 3);
        assert_eq!(turns.len(), 3, "one turn per attempt");
        assert_eq!(call.first_sent, turns[0]);
        assert!(turns[1] - turns[0] <= backoff(1, 1.0));
        assert!(turns[2] - turns[1] <= backoff(2, 1.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_gives_up_after_max_attempts_with_the_last_error() {
        let (call, turns) = run(vec![throttled(); 5]).await;
        assert_eq!(call.attempts, MAX_ATTEMPTS);
        assert_eq!(turns.len() as u32, MAX_ATTEMPTS);
        assert_eq!(call.result.unwrap_err(), throttled());
    }

    /// A fatal failure and an expired token end the call at once (the
    /// poller starts a paging run over after an expired token).
    #[tokio::test(start_paused = true)]
    async fn failures_no_retry_fixes_are_not_retried() {
        for error in [
            ApiError::Fatal {
                operation: "FilterLogEvents",
                message: "AccessDenied".into(),
            },
            ApiError::ExpiredToken {
                operation: "FilterLogEvents",
                message: "expired".into(),
            },
        ] {
            let (call, turns) = run(vec![error.clone()]).await;
            assert_eq!(call.attempts, 1);
            assert_eq!(turns.len(), 1);
            assert_eq!(call.result.unwrap_err(), error);
        }
    }
}
