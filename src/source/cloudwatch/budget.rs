//! A request budget per account and region: [`Budgeted`] wraps a
//! [`LogsApi`] so that every attempt of a call, retries included, first
//! takes its turn from a shared [`RequestBudget`], and the poller,
//! unchanged, never sends more than `max_requests_per_second` requests to
//! one account-region, however many log groups read there, even while the
//! service throttles. FilterLogEvents allows 5 requests/s per account and
//! region, shared with every other tool: the default budget, 2/s, leaves
//! the rest to them. A retry waits for its backoff, then for its turn
//! (`attempts`).
//!
//! The budget is a token bucket of depth one: never a burst, calls spaced
//! `(1 s + JITTER_ALLOWANCE) / rate` apart on tokio's clock. The quota is
//! counted where the calls arrive, and each call's way there (signing, the
//! connection, the network) takes a little more or less time than the
//! last one's: `rate + 1` consecutive calls span 1.05 s, so however a
//! second is cut, the calls arriving in it stay within ⌈rate⌉ as long as
//! no call travels 50 ms longer than the one `rate` calls after it. This
//! costs under 5 % of the rate. An attempt that has to wait for its turn is
//! counted, a retry's as well (its backoff is not a wait for the budget);
//! how much of the budget the attempts use and how much the groups' polls
//! need ([`RequestBudget::set_demand`]: calls per poll at the poll
//! interval) are reported to a [`BudgetObserver`], so the exporter can say
//! when the budget cannot cover the interfaces at the interval.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::api::{ApiError, EventsPage, FilterRequest, LogsApi, StreamsPage, Turns};

/// How long calls are remembered to measure the budget used.
const USE_WINDOW: Duration = Duration::from_secs(60);

/// Added to each second of the budget: the difference in travel time
/// between calls that the spacing absorbs (see the module's opening).
pub const JITTER_ALLOWANCE: Duration = Duration::from_millis(50);

/// Told what the budget of one account-region does.
pub trait BudgetObserver: Send + Sync {
    /// An attempt (a call's first or a retry) waited `seconds` for its turn.
    fn delayed(&self, seconds: f64);
    /// Attempts of the last minute over what the budget allows in a minute.
    fn used(&self, ratio: f64);
    /// Calls the polls need per second over the budget: above 1, the
    /// interfaces cannot all be read every poll interval.
    fn demand(&self, ratio: f64);
}

/// The requests one account-region may take; shared by its groups.
pub struct RequestBudget {
    interval: Duration,
    per_second: f64,
    /// Who it is, for logs: `account/region`.
    name: String,
    observer: Arc<dyn BudgetObserver>,
    state: Mutex<State>,
}

struct State {
    /// The earliest time the next call may go.
    next_free: Option<Instant>,
    /// When recent calls went, for the budget used.
    recent: VecDeque<Instant>,
    /// FilterLogEvents calls per second each group's polls need.
    demand: HashMap<String, f64>,
    /// Whether the last demand was over budget (warn once per crossing).
    over: bool,
}

impl RequestBudget {
    /// `per_second` > 0.
    pub fn new(per_second: f64, name: String, observer: Arc<dyn BudgetObserver>) -> Arc<Self> {
        let per_second = per_second.max(f64::MIN_POSITIVE);
        Arc::new(RequestBudget {
            interval: (Duration::from_secs(1) + JITTER_ALLOWANCE).div_f64(per_second),
            per_second,
            name,
            observer,
            state: Mutex::new(State {
                next_free: None,
                recent: VecDeque::new(),
                demand: HashMap::new(),
                over: false,
            }),
        })
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Waits for this attempt's turn; returns how long it waited.
    pub async fn take_turn(&self) -> Duration {
        let wait = {
            let mut state = self.lock();
            let now = Instant::now();
            let at = state.next_free.map_or(now, |next| next.max(now));
            state.next_free = Some(at + self.interval);
            while state
                .recent
                .front()
                .is_some_and(|sent| now.saturating_duration_since(*sent) > USE_WINDOW)
            {
                state.recent.pop_front();
            }
            state.recent.push_back(at);
            let allowed = self.per_second * USE_WINDOW.as_secs_f64();
            self.observer.used(state.recent.len() as f64 / allowed);
            at - now
        };
        if !wait.is_zero() {
            self.observer.delayed(wait.as_secs_f64());
            tokio::time::sleep(wait).await;
        }
        wait
    }

    /// Group `group` needs `calls_per_poll` calls every `poll_interval`.
    /// Logs a warning, with what to do, when the groups of this
    /// account-region together need more than the budget.
    pub fn set_demand(&self, group: &str, calls_per_poll: u32, poll_interval: Duration) {
        let rate = f64::from(calls_per_poll) / poll_interval.as_secs_f64().max(1e-3);
        self.set_rate(group, Some(rate));
    }

    /// Group `group` now draws from `to` (its account became known): its
    /// demand goes with it, and `to`'s next call waits as long as this
    /// budget's would, so the hand-over makes no burst.
    pub fn hand_over(&self, group: &str, to: &RequestBudget) {
        let (rate, next_free) = {
            let state = self.lock();
            (state.demand.get(group).copied(), state.next_free)
        };
        self.set_rate(group, None);
        if let Some(rate) = rate {
            to.set_rate(group, Some(rate));
        }
        let mut target = to.lock();
        target.next_free = target.next_free.max(next_free);
    }

    /// `None`: the group no longer draws from this budget.
    fn set_rate(&self, group: &str, rate: Option<f64>) {
        let mut state = self.lock();
        match rate {
            Some(rate) => state.demand.insert(group.to_owned(), rate),
            None => state.demand.remove(group),
        };
        let needed: f64 = state.demand.values().sum();
        let ratio = needed / self.per_second;
        self.observer.demand(ratio);
        let over = ratio > 1.0;
        if over && !state.over {
            tracing::warn!(
                budget = %self.name,
                needed_per_second = needed,
                max_requests_per_second = self.per_second,
                "The request budget cannot cover these interfaces at poll_interval: polls will fall behind. Raise poll_interval, split the interfaces over more replicas per account and region ([shard]) with their own share of the quota, or move to S3 delivery"
            );
        }
        state.over = over;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A [`LogsApi`] whose every attempt takes a turn from a shared budget
/// (the inner API's `…_taking_turns`, with this as its [`Turns`]).
/// Clones draw from the same budget, and [`Budgeted::move_to`] moves them
/// all to another one.
#[derive(Clone)]
pub struct Budgeted<A> {
    inner: A,
    budget: Arc<Mutex<Arc<RequestBudget>>>,
}

impl<A> Budgeted<A> {
    pub fn new(inner: A, budget: Arc<RequestBudget>) -> Budgeted<A> {
        Budgeted {
            inner,
            budget: Arc::new(Mutex::new(budget)),
        }
    }

    /// The budget the calls draw from now.
    pub fn budget(&self) -> Arc<RequestBudget> {
        self.slot().clone()
    }

    /// From now on the calls of `group` (this API) draw from `budget`; its
    /// demand goes along ([`RequestBudget::hand_over`]). Returns the budget
    /// it left.
    pub fn move_to(&self, group: &str, budget: Arc<RequestBudget>) -> Arc<RequestBudget> {
        let mut slot = self.slot();
        if Arc::ptr_eq(&slot, &budget) {
            return budget;
        }
        slot.hand_over(group, &budget);
        std::mem::replace(&mut *slot, budget)
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Arc<RequestBudget>> {
        self.budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The budget the calls draw from at each attempt: a group moved to
/// another budget between attempts takes its next turn there.
impl<A: Sync> Turns for Budgeted<A> {
    async fn take_turn(&self) {
        let budget = self.budget();
        budget.take_turn().await;
    }
}

impl<A: LogsApi> LogsApi for Budgeted<A> {
    async fn interface_streams_page(
        &self,
        log_group: &str,
        next_token: Option<String>,
    ) -> Result<StreamsPage, ApiError> {
        self.inner
            .interface_streams_page_taking_turns(log_group, next_token, self)
            .await
    }

    async fn filter_log_events(&self, req: &FilterRequest) -> Result<EventsPage, ApiError> {
        self.inner.filter_log_events_taking_turns(req, self).await
    }
}

#[cfg(test)]
mod tests;
